//! `least_request` (gRFC A48) steers calls away from a slow backend, where `round_robin`
//! gives it its third.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use volley::resolver::{Address, ManualResolver, ResolverUpdate};
use volley::{Channel, Request, Response, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::bounded;

/// A greeter that counts its calls and takes `delay` over each.
struct Timed {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl Greeter for Timed {
    async fn say_hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        Ok(Response::new(HelloReply::default()))
    }
}

/// Three backends (the first slow: 40 ms a call, the others 1 ms), `workers` callers making
/// `calls` calls each through `policy`; returns the calls each backend served.
async fn split(policy: &str, scheme: &str, workers: usize, calls: usize) -> Vec<usize> {
    let mut addrs = Vec::new();
    let mut counters = Vec::new();
    let mut stops = Vec::new();
    for delay in [40, 1, 1] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(Address::tcp(listener.local_addr().unwrap()));
        let count = Arc::new(AtomicUsize::new(0));
        counters.push(count.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        let greeter = Timed {
            calls: count,
            delay: Duration::from_millis(delay),
        };
        tokio::spawn(
            volley::Server::builder()
                .add_service(GreeterServer::new(greeter))
                .serve_with_listener(listener, async {
                    let _ = stopped.await;
                }),
        );
    }
    let manual = ManualResolver::new(scheme);
    manual.update(ResolverUpdate::new(addrs));
    let client = GreeterClient::new(
        Channel::builder(&format!("{scheme}:///timed"))
            .resolver(manual)
            .load_balancing_policy(policy)
            .build()
            .unwrap(),
    );
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..calls {
                    client
                        .say_hello(HelloRequest::default())
                        .await
                        .expect("every call succeeds");
                }
            })
        })
        .collect();
    for task in tasks {
        bounded(60, task).await.unwrap();
    }
    counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_a_slow_backend_far_fewer_calls_than_round_robin() {
    let (workers, calls) = (16, 60);
    let total = workers * calls;
    let rr = split("round_robin", "lr-rr", workers, calls).await;
    let lr = split("least_request", "lr-lr", workers, calls).await;
    eprintln!("slow, fast, fast: round_robin {rr:?}, least_request {lr:?}");
    assert_eq!(rr.iter().sum::<usize>(), total);
    assert_eq!(lr.iter().sum::<usize>(), total);
    // round_robin: a third each, slow or not.
    assert!(
        rr[0] * 4 > total,
        "round_robin gave the slow backend {rr:?}"
    );
    // least_request: the slow backend holds calls open, so it wins a comparison only when
    // both random choices land on it (1 in 9 with two choices among three): 11-15% measured,
    // under 20% asserted (a loaded host makes the fast ones hold calls longer too).
    assert!(
        lr[0] * 5 < total,
        "least_request gave the slow backend {lr:?} (round_robin {rr:?})"
    );
}
