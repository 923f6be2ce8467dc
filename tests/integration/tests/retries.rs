//! Configured retries (gRFC A6) over loopback, against servers that fail on purpose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use volley::{Channel, Code, MetadataMap, Request, Response, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
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
