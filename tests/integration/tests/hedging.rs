//! Hedged calls (gRFC A6's `hedgingPolicy`) over loopback, against backends that are slow
//! or fail on purpose.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use volley::{Channel, Code, MetadataMap, Request, Response, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::bounded;

/// What a backend's handler reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// An attempt arrived, with its `grpc-previous-rpc-attempts`.
    Started(Option<String>),
    /// An attempt's handler was dropped before it answered: the client cancelled it.
    Cancelled,
}

/// How a backend answers.
#[derive(Clone, Copy)]
enum Answer {
    /// OK with its name, after this long.
    After(Duration),
    /// The first attempt of a call (no `grpc-previous-rpc-attempts`) fails with this code
    /// and pushback; later ones answer at once.
    FailFirst(Code, Option<&'static str>),
    /// Every attempt fails with this code.
    Fail(Code),
}

#[derive(Clone)]
struct Backend {
    name: &'static str,
    answer: Arc<Mutex<Answer>>,
    seen: mpsc::UnboundedSender<Seen>,
}

/// Reports `Cancelled` if dropped armed.
struct Armed(Option<mpsc::UnboundedSender<Seen>>);

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Seen::Cancelled);
        }
    }
}

impl Greeter for Backend {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let previous = request
            .metadata()
            .get("grpc-previous-rpc-attempts")
            .map(str::to_owned);
        let first = previous.is_none();
        let _ = self.seen.send(Seen::Started(previous));
        let mut armed = Armed(Some(self.seen.clone()));
        let answer = *self.answer.lock().unwrap();
        match answer {
            Answer::After(delay) => tokio::time::sleep(delay).await,
            Answer::FailFirst(code, pushback) if first => {
                armed.0 = None;
                let mut metadata = MetadataMap::new();
                if let Some(value) = pushback {
                    metadata.insert("grpc-retry-pushback-ms", value).unwrap();
                }
                return Err(Status::with_metadata(code, "first attempt fails", metadata));
            }
            Answer::FailFirst(..) => {}
            Answer::Fail(code) => {
                armed.0 = None;
                return Err(Status::new(code, "down"));
            }
        }
        armed.0 = None;
        Ok(Response::new(HelloReply {
            message: self.name.to_owned(),
        }))
    }
}

/// A running backend: what it saw, and its stop switch.
struct Running {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    answer: Arc<Mutex<Answer>>,
    _stop: oneshot::Sender<()>,
}

impl Running {
    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Everything seen so far.
    fn drain(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Ok(s) = self.seen.try_recv() {
            out.push(s);
        }
        out
    }

    fn started(&mut self) -> usize {
        self.drain()
            .iter()
            .filter(|s| matches!(s, Seen::Started(_)))
            .count()
    }
}

async fn backend(name: &'static str, answer: Answer) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let answer = Arc::new(Mutex::new(answer));
    let service = Backend {
        name,
        answer: answer.clone(),
        seen: seen_tx,
    };
    tokio::spawn(
        volley::Server::builder()
            .add_service(GreeterServer::new(service))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Running {
        addr,
        seen,
        answer,
        _stop: stop,
    }
}

fn hedging(attempts: u32, delay: &str) -> String {
    format!(
        r#"{{"loadBalancingConfig": [{{"round_robin": {{}}}}],
            "methodConfig": [{{"name": [{{"service": "helloworld.Greeter"}}],
              "hedgingPolicy": {{"maxAttempts": {attempts}, "hedgingDelay": "{delay}",
                "nonFatalStatusCodes": ["UNAVAILABLE"]}}}}]}}"#
    )
}

/// A round_robin client over `backends` under `config`, once every backend is READY (each
/// answered a call; what they saw is then forgotten).
async fn connect(backends: &mut [&mut Running], config: &str) -> GreeterClient {
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let channel = Channel::builder(&format!("ipv4:{}", addrs.join(",")))
        .default_service_config(config)
        .build()
        .unwrap();
    let client = GreeterClient::new(channel);
    // Plain calls (the hedging policy's service, but answered by whichever backend) until
    // every backend answered once.
    let mut answered = vec![false; backends.len()];
    bounded(10, async {
        while answered.contains(&false) {
            let request = Request::new(HelloRequest {
                name: "warm".into(),
            })
            .with_wait_for_ready(true);
            let _ = client.say_hello(request).await;
            for (i, b) in backends.iter_mut().enumerate() {
                if b.started() > 0 {
                    answered[i] = true;
                }
            }
        }
    })
    .await;
    client
}

fn hello() -> HelloRequest {
    HelloRequest { name: "x".into() }
}

#[tokio::test]
async fn the_fast_backend_answers_and_the_slow_attempt_is_cancelled() {
    let mut slow = backend("slow", Answer::After(Duration::from_secs(30))).await;
    let mut fast = backend("fast", Answer::After(Duration::ZERO)).await;
    // The warm-up's calls are hedged too: each answers from the fast backend.
    let client = connect(&mut [&mut slow, &mut fast], &hedging(2, "0.05s")).await;
    slow.drain();
    fast.drain();
    bounded(10, async {
        for _ in 0..4 {
            let reply = client.say_hello(hello()).await.unwrap();
            assert_eq!(reply.into_inner().message, "fast");
        }
    })
    .await;
    // Round robin sends at least two of the four first attempts to the slow backend; each
    // was hedged to the fast one after 50 ms, and cancelled when the fast one answered.
    let seen = slow.drain();
    let slow_attempts = seen
        .iter()
        .filter(|s| matches!(s, Seen::Started(_)))
        .count();
    assert!(slow_attempts >= 2, "{seen:?}");
    let mut cancelled = seen.iter().filter(|s| **s == Seen::Cancelled).count();
    bounded(10, async {
        while cancelled < slow_attempts {
            if slow.seen.recv().await == Some(Seen::Cancelled) {
                cancelled += 1;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn hedges_go_to_distinct_backends() {
    let delay = Answer::After(Duration::from_millis(100));
    let (mut a, mut b, mut c) = (
        backend("a", delay).await,
        backend("b", delay).await,
        backend("c", delay).await,
    );
    let client = connect(&mut [&mut a, &mut b, &mut c], &hedging(3, "0s")).await;
    for _ in 0..3 {
        bounded(10, client.say_hello(hello())).await.unwrap();
        // Three attempts at once, one on each backend.
        let counts = [a.started(), b.started(), c.started()];
        assert_eq!(counts, [1, 1, 1]);
    }
}

#[tokio::test]
async fn a_non_fatal_failure_sends_the_next_hedge_at_once() {
    let mut flaky = backend("flaky", Answer::FailFirst(Code::Unavailable, None)).await;
    // A 20 s hedging delay: only the failure can start the second attempt in time.
    let client = connect(&mut [&mut flaky], &hedging(2, "20s")).await;
    flaky.drain();
    let reply = bounded(10, client.say_hello(hello())).await.unwrap();
    assert_eq!(reply.into_inner().message, "flaky");
    assert_eq!(
        flaky.drain(),
        [Seen::Started(None), Seen::Started(Some("1".into()))]
    );
}

#[tokio::test]
async fn a_fatal_failure_ends_the_call() {
    let mut flaky = backend("flaky", Answer::FailFirst(Code::InvalidArgument, None)).await;
    let client = connect(&mut [&mut flaky], &hedging(3, "20s")).await;
    flaky.drain();
    // It fails at once, without waiting for the next hedge.
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(flaky.drain(), [Seen::Started(None)]);
}

#[tokio::test]
async fn pushback_stops_hedging_or_delays_the_next_hedge() {
    let mut stop = backend("stop", Answer::FailFirst(Code::Unavailable, Some("-1"))).await;
    let client = connect(&mut [&mut stop], &hedging(3, "20s")).await;
    stop.drain();
    let status = bounded(10, client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        stop.drain(),
        [Seen::Started(None)],
        "no hedge after pushback -1"
    );

    let mut later = backend("later", Answer::FailFirst(Code::Unavailable, Some("300"))).await;
    let client = connect(&mut [&mut later], &hedging(3, "20s")).await;
    later.drain();
    let started = tokio::time::Instant::now();
    let reply = bounded(10, client.say_hello(hello())).await.unwrap();
    assert_eq!(reply.into_inner().message, "later");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(10),
        "the next hedge 300 ms after the pushback, not at once nor after 20 s: {elapsed:?}"
    );
}

#[tokio::test]
async fn throttling_stops_hedges_below_half_the_tokens_and_resumes_after_successes() {
    let mut one = backend("one", Answer::After(Duration::ZERO)).await;
    let config = hedging(3, "0s").replacen(
        "{\"loadBalancingConfig\"",
        r#"{"retryThrottling": {"maxTokens": 4, "tokenRatio": 1}, "loadBalancingConfig""#,
        1,
    );
    let client = connect(&mut [&mut one], &config).await;
    one.drain();
    one.answer(Answer::Fail(Code::Unavailable));
    bounded(10, async {
        // A full bucket (4): three attempts at once; their failures leave 1 token.
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(one.started(), 3);
        // 1 token, not over half: the first attempt only (then 0).
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(one.started(), 1);
        // Three successes (one attempt each) bring it to 3, over half: hedging is back.
        one.answer(Answer::After(Duration::ZERO));
        for _ in 0..3 {
            client.say_hello(hello()).await.unwrap();
            assert_eq!(one.started(), 1);
        }
        one.answer(Answer::Fail(Code::Unavailable));
        client.say_hello(hello()).await.unwrap_err();
        assert_eq!(one.started(), 3);
    })
    .await;
}
