//! Configured retries (gRFC A6) over loopback, against servers that fail on purpose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use volley::{Channel, Code, MetadataMap, Request, Response, Status, Streaming};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::echo::{Echo, EchoClient, EchoReply, EchoRequest, EchoServer};
use volley_integration_tests::{Event, TestServer, bounded};

/// How the flaky greeter answers.
#[derive(Clone, Copy)]
enum Plan {
    /// UNAVAILABLE for the first N attempts of every call, then OK.
    FailFirst(usize),
    /// This code, always.
    Always(Code),
    /// UNAVAILABLE with this pushback value, always.
    Pushback(&'static str),
}

/// A greeter that fails as its plan says and records each attempt's
/// `grpc-previous-rpc-attempts` (None for the first attempt).
#[derive(Clone)]
struct Flaky {
    plan: Arc<Mutex<Plan>>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Greeter for Flaky {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let previous = request
            .metadata()
            .get("grpc-previous-rpc-attempts")
            .map(str::to_owned);
        let attempt = previous
            .as_deref()
            .map_or(0, |p| p.parse::<usize>().unwrap_or(99));
        self.seen.lock().unwrap().push(previous);
        let plan = *self.plan.lock().unwrap();
        match plan {
            Plan::FailFirst(n) if attempt < n => Err(Status::unavailable("not yet")),
            Plan::FailFirst(_) => Ok(Response::new(HelloReply {
                message: format!("ok after {attempt}"),
            })),
            Plan::Always(code) => Err(Status::new(code, "no")),
            Plan::Pushback(value) => {
                let mut metadata = MetadataMap::new();
                metadata.insert("grpc-retry-pushback-ms", value).unwrap();
                Err(Status::with_metadata(Code::Unavailable, "busy", metadata))
            }
        }
    }
}

async fn flaky(
    plan: Plan,
    config: &str,
) -> (GreeterClient, Flaky, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Flaky {
        plan: Arc::new(Mutex::new(plan)),
        seen: Arc::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        volley::Server::builder()
            .add_service(GreeterServer::new(service.clone()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let channel = Channel::builder(&format!("http://{addr}"))
        .default_service_config(config)
        .build()
        .unwrap();
    (GreeterClient::new(channel), service, stop)
}

const RETRY: &str = r#"{"methodConfig": [{"name": [{"service": "helloworld.Greeter"}],
  "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;

fn hello() -> HelloRequest {
    HelloRequest { name: "x".into() }
}

#[tokio::test]
async fn a_call_succeeds_on_the_attempt_after_n_failures() {
    let (client, service, _stop) = flaky(Plan::FailFirst(3), RETRY).await;
    let reply = bounded(10, client.say_hello(hello())).await.unwrap();
    assert_eq!(reply.into_inner().message, "ok after 3");
    let seen = service.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [None, Some("1".into()), Some("2".into()), Some("3".into())],
        "grpc-previous-rpc-attempts on each retry"
    );

    // maxAttempts bounds it: four failures before success is one too many.
    *service.plan.lock().unwrap() = Plan::FailFirst(4);
    service.seen.lock().unwrap().clear();
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn codes_outside_the_policy_are_not_retried() {
    let (client, service, _stop) = flaky(Plan::Always(Code::InvalidArgument), RETRY).await;
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(service.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn pushback_delays_the_retry_and_a_negative_one_stops_it() {
    let (client, service, _stop) = flaky(Plan::Pushback("-1"), RETRY).await;
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        service.seen.lock().unwrap().len(),
        1,
        "negative pushback: no retry"
    );

    *service.plan.lock().unwrap() = Plan::Pushback("300");
    service.seen.lock().unwrap().clear();
    let started = tokio::time::Instant::now();
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.seen.lock().unwrap().len(), 4);
    // Three retries, each 300 ms after the failure before it (the backoff would be < 50 ms).
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_deadline_covers_every_attempt() {
    let (client, service, _stop) = flaky(Plan::Pushback("300"), RETRY).await;
    let request = Request::new(hello()).with_timeout(Duration::from_millis(450));
    let status = bounded(10, client.say_hello(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        service.seen.lock().unwrap().len(),
        2,
        "attempts at 0 and 300 ms"
    );
}

#[tokio::test]
async fn throttling_stops_retries_after_failures_and_resumes_after_successes() {
    // 4 tokens, a success gives 1 back; retries only while more than 2 are left.
    let config = RETRY.replacen(
        "{\"methodConfig\"",
        r#"{"retryThrottling": {"maxTokens": 4, "tokenRatio": 1}, "methodConfig""#,
        1,
    );
    let (client, service, _stop) = flaky(Plan::Always(Code::Unavailable), &config).await;
    let attempts = |service: &Flaky| {
        let mut seen = service.seen.lock().unwrap();
        let n = seen.len();
        seen.clear();
        n
    };
    bounded(10, async {
        // 4 -> 3 (retry) -> 2 (stop): two attempts; then 2 -> 1: one attempt.
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(attempts(&service), 2);
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(attempts(&service), 1);
        // Three successes: 1 -> 4 tokens. A failure takes one first (3, over half: retry),
        // the retry's failure another (2: stop).
        *service.plan.lock().unwrap() = Plan::FailFirst(0);
        for _ in 0..3 {
            client.say_hello(hello()).await.unwrap();
        }
        attempts(&service);
        *service.plan.lock().unwrap() = Plan::Always(Code::Unavailable);
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(attempts(&service), 2, "retries are back");
    })
    .await;
}

#[tokio::test]
async fn a_server_streaming_call_is_retried_until_its_headers_arrive() {
    let mut server = TestServer::start().await;
    let channel = Channel::builder(&server.target())
        .default_service_config(&RETRY.replace("helloworld.Greeter", "volley.test.Echo"))
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    let failing = EchoRequest {
        message: "fail".into(),
        status_code: Code::Unavailable as i32,
        ..Default::default()
    };
    bounded(10, async {
        // Trailers-Only UNAVAILABLE each time: four attempts, then the status.
        let status = client.server_stream(failing).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        let mut started = 0;
        while let Ok(event) = server.events.try_recv() {
            if event == Event::Started("fail".into()) {
                started += 1;
            }
        }
        assert_eq!(started, 4);
    })
    .await;
}

/// An attempt's `grpc-previous-rpc-attempts` and the request messages it received.
type Attempt = (Option<String>, Vec<String>);

/// An echo service whose first `fail_first` attempts of each call fail with UNAVAILABLE,
/// recording what every attempt received.
#[derive(Clone, Default)]
struct FlakyEcho {
    fail_first: Arc<Mutex<usize>>,
    /// Each attempt's `grpc-previous-rpc-attempts` and the request messages it received.
    attempts: Arc<Mutex<Vec<Attempt>>>,
    /// Told when an attempt has failed.
    failed: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>>,
}

impl FlakyEcho {
    /// Records a new attempt; returns its index and whether it must fail.
    fn attempt<T>(&self, request: &Request<T>) -> (usize, bool) {
        let previous = request
            .metadata()
            .get("grpc-previous-rpc-attempts")
            .map(str::to_owned);
        let number = previous.as_deref().map_or(0, |p| p.parse().unwrap_or(99));
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push((previous, Vec::new()));
        (
            attempts.len() - 1,
            number < *self.fail_first.lock().unwrap(),
        )
    }

    fn received(&self, index: usize, message: &EchoRequest) {
        self.attempts.lock().unwrap()[index]
            .1
            .push(message.message.clone());
    }

    fn fail(&self) -> Status {
        if let Some(tx) = &*self.failed.lock().unwrap() {
            let _ = tx.send(());
        }
        Status::unavailable("not this time")
    }

    fn seen(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.attempts.lock().unwrap())
    }
}

type Replies = volley::BoxStream<EchoReply>;

impl Echo for FlakyEcho {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let (index, fail) = self.attempt(&request);
        self.received(index, request.get_ref());
        if fail {
            return Err(self.fail());
        }
        Ok(Response::new(EchoReply {
            message: request.into_inner().message,
            ..Default::default()
        }))
    }

    type ServerStreamStream = Replies;

    /// Sends one reply (so the response headers go out), then fails.
    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Replies>, Status> {
        self.attempt(&request);
        let reply = EchoReply {
            message: "first".into(),
            ..Default::default()
        };
        let failure = self.fail();
        let stream = tokio_stream::iter([Ok(reply), Err(failure)]);
        Ok(Response::new(Box::pin(stream) as Replies))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let (index, fail) = self.attempt(&request);
        let mut messages = request.into_inner();
        let mut joined = String::new();
        while let Some(message) = messages.message().await? {
            self.received(index, &message);
            joined.push_str(&message.message);
        }
        if fail {
            return Err(self.fail());
        }
        Ok(Response::new(EchoReply {
            message: joined,
            ..Default::default()
        }))
    }

    type BidiStream = Replies;

    /// A failing attempt reads two messages and fails before any response; the others echo
    /// each message as it comes.
    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let (index, fail) = self.attempt(&request);
        let mut messages = request.into_inner();
        if fail {
            for _ in 0..2 {
                if let Some(message) = messages.message().await? {
                    self.received(index, &message);
                }
            }
            return Err(self.fail());
        }
        let this = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok(Some(message)) = messages.message().await {
                this.received(index, &message);
                let reply = EchoReply {
                    message: message.message,
                    ..Default::default()
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream) as Replies))
    }

    async fn connect(&self, _: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

const ECHO_RETRY: &str = r#"{"methodConfig": [{"name": [{"service": "volley.test.Echo"}],
  "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;

/// A flaky echo server, and a client under `ECHO_RETRY` configured by `configure`.
async fn flaky_echo(
    fail_first: usize,
    configure: impl FnOnce(volley::ChannelBuilder) -> volley::ChannelBuilder,
) -> (EchoClient, FlakyEcho, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = FlakyEcho::default();
    *service.fail_first.lock().unwrap() = fail_first;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        volley::Server::builder()
            .add_service(EchoServer::new(service.clone()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let builder = Channel::builder(&format!("http://{addr}")).default_service_config(ECHO_RETRY);
    let channel = configure(builder).build().unwrap();
    (EchoClient::new(channel), service, stop)
}

fn said(text: &str, payload: usize) -> EchoRequest {
    EchoRequest {
        message: text.into(),
        payload: vec![b'p'; payload],
        ..Default::default()
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_client_streaming_call_replays_its_messages_on_each_attempt() {
    let (client, service, _stop) = flaky_echo(2, |b| b).await;
    let messages = tokio_stream::iter([said("a", 0), said("b", 0), said("c", 0)]);
    let reply = bounded(10, client.client_stream(messages)).await.unwrap();
    assert_eq!(reply.into_inner().message, "abc");
    let abc = strings(&["a", "b", "c"]);
    assert_eq!(
        service.seen(),
        [
            (None, abc.clone()),
            (Some("1".into()), abc.clone()),
            (Some("2".into()), abc)
        ]
    );
}

#[tokio::test]
async fn a_bidi_call_replays_what_it_sent_and_goes_on_live() {
    let (client, service, _stop) = flaky_echo(1, |b| b).await;
    let (failed_tx, mut failed) = tokio::sync::mpsc::unbounded_channel();
    *service.failed.lock().unwrap() = Some(failed_tx);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    bounded(10, async {
        let mut replies = client
            .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(said("a", 0)).await.unwrap();
        tx.send(said("b", 0)).await.unwrap();
        // The first attempt read both and failed; "c" goes out after, on the retry.
        failed.recv().await.unwrap();
        tx.send(said("c", 0)).await.unwrap();
        drop(tx);
        let mut echoed = Vec::new();
        while let Some(reply) = replies.message().await.unwrap() {
            echoed.push(reply.message);
        }
        assert_eq!(echoed, ["a", "b", "c"]);
    })
    .await;
    assert_eq!(
        service.seen(),
        [
            (None, strings(&["a", "b"])),
            (Some("1".into()), strings(&["a", "b", "c"]))
        ]
    );
}

#[tokio::test]
async fn a_call_past_the_buffer_limit_commits_and_is_not_retried() {
    // Every attempt fails; the call's buffer holds 1000 bytes.
    let (client, service, _stop) = flaky_echo(usize::MAX, |b| b.per_call_retry_buffer(1000)).await;
    bounded(10, async {
        // Small messages fit: four attempts.
        let small = tokio_stream::iter([said("a", 100), said("b", 100)]);
        let status = client.client_stream(small).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(service.seen().len(), 4);
        // The third 600-byte message outgrows it: the call commits to its attempt, which
        // still gets every message, and is not retried.
        let large = tokio_stream::iter([said("a", 600), said("b", 600), said("c", 600)]);
        let status = client.client_stream(large).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(service.seen(), [(None, strings(&["a", "b", "c"]))]);
        // A unary request larger than the buffer goes out once.
        let status = client.unary(said("u", 2000)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(service.seen().len(), 1);
        let status = client.unary(said("u", 10)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(service.seen().len(), 4);
    })
    .await;

    // The channel's buffer, shared by its calls, limits them the same way.
    let (client, service, _stop) = flaky_echo(usize::MAX, |b| b.retry_buffer_size(1000)).await;
    let status = bounded(10, client.unary(said("u", 2000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.seen().len(), 1);
}

#[tokio::test]
async fn response_headers_commit_the_call() {
    let (client, service, _stop) = flaky_echo(usize::MAX, |b| b).await;
    bounded(10, async {
        // The server sends its headers and a message, then fails with a retryable code:
        // too late to retry.
        let mut replies = client
            .server_stream(said("x", 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replies.message().await.unwrap().unwrap().message, "first");
        let status = replies.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    })
    .await;
    assert_eq!(service.seen().len(), 1);
}

#[tokio::test]
async fn retries_can_be_turned_off_on_the_channel() {
    let (client, service, _stop) = flaky_echo(usize::MAX, |b| b.retries(false)).await;
    let status = bounded(10, client.unary(said("u", 0))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.seen().len(), 1);
}

#[tokio::test]
async fn the_channel_caps_the_policys_attempts() {
    let (client, service, _stop) = flaky_echo(usize::MAX, |b| b.max_call_attempts(2)).await;
    let status = bounded(10, client.unary(said("u", 0))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.seen().len(), 2, "the policy allows 4");
}

/// Logs a client call's attempts and its end, as a middleware observer sees them.
#[derive(Clone, Default)]
struct AttemptLog(Arc<Mutex<Vec<String>>>);

struct AttemptLogCall(Arc<Mutex<Vec<String>>>);

impl volley::middleware::Middleware for AttemptLog {
    fn start<'a>(
        &'a self,
        _call: &'a mut volley::middleware::CallStart<'_>,
    ) -> volley::middleware::StartFuture<'a> {
        let log = self.0.clone();
        Box::pin(async move {
            Ok(Some(
                Box::new(AttemptLogCall(log)) as Box<dyn volley::middleware::CallObserver>
            ))
        })
    }
}

impl volley::middleware::CallObserver for AttemptLogCall {
    fn attempt_started(&mut self) {
        self.0.lock().unwrap().push("attempt".into());
    }

    fn attempt_ended(&mut self, attempt: &volley::middleware::AttemptOutcome<'_>) {
        let code = attempt.status().code();
        self.0.lock().unwrap().push(format!("attempt {code:?}"));
    }

    fn end(self: Box<Self>, outcome: &volley::middleware::CallOutcome<'_>) {
        let code = outcome.status().code();
        self.0.lock().unwrap().push(format!("end {code:?}"));
    }
}

impl AttemptLog {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn middleware_observers_see_each_attempt_before_the_calls_end() {
    let log = AttemptLog::default();
    let (client, service, _stop) = flaky_echo(2, |b| b.middleware(log.clone())).await;
    let reply = bounded(10, client.unary(said("a", 0))).await.unwrap();
    assert_eq!(reply.into_inner().message, "a");
    let three = [
        "attempt",
        "attempt Unavailable",
        "attempt",
        "attempt Unavailable",
        "attempt",
        "attempt Ok",
        "end Ok",
    ];
    assert_eq!(log.take(), three);

    // A client stream: the committed attempt ends with the call, before its end.
    *service.fail_first.lock().unwrap() = 2;
    let messages = tokio_stream::iter([said("a", 0), said("b", 0)]);
    let reply = bounded(10, client.client_stream(messages)).await.unwrap();
    assert_eq!(reply.into_inner().message, "ab");
    assert_eq!(log.take(), three);

    // A bidi stream read to its end.
    *service.fail_first.lock().unwrap() = 2;
    let messages = tokio_stream::iter([said("a", 0)]);
    let mut stream = bounded(10, client.bidi(messages))
        .await
        .unwrap()
        .into_inner();
    while bounded(10, stream.message()).await.unwrap().is_some() {}
    drop(stream);
    assert_eq!(log.take(), three);

    // Without a policy (retries off): one attempt, whose failure is the call's.
    let (client, _service, _stop) =
        flaky_echo(1, |b| b.middleware(log.clone()).retries(false)).await;
    let status = bounded(10, client.unary(said("a", 0))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        log.take(),
        ["attempt", "attempt Unavailable", "end Unavailable"]
    );
}
