//! Client-side health checking (gRFC A17): with `healthCheckConfig` in the service config,
//! `round_robin` sends calls only to backends whose health service says SERVING, stops when
//! one says NOT_SERVING (without failing a call and without reconnecting) and resumes when it
//! says SERVING again; a backend without the health service counts as healthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use volley::resolver::{Address, ManualResolver, ResolverUpdate, ServiceConfig};
use volley::{Channel, Request, Response, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_health::HealthReporter;
use volley_integration_tests::bounded;

/// A greeter that counts its calls.
struct Counting(Arc<AtomicUsize>);

impl Greeter for Counting {
    async fn say_hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(HelloReply::default()))
    }
}

struct Backend {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    health: Option<HealthReporter>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A greeter backend, with the health service (`helloworld.Greeter` SERVING) or without.
async fn backend(with_health: bool) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut builder =
        volley::Server::builder().add_service(GreeterServer::new(Counting(calls.clone())));
    let mut health = None;
    if with_health {
        let (reporter, service) = volley_health::health_service();
        reporter.set_serving("helloworld.Greeter");
        builder = builder.add_service(service);
        health = Some(reporter);
    }
    tokio::spawn(builder.serve_with_listener(listener, async {
        let _ = stopped.await;
    }));
    Backend {
        addr,
        calls,
        health,
        _stop: stop,
    }
}

fn channel(scheme: &str, backends: &[&Backend]) -> GreeterClient {
    channel_with(scheme, backends, false)
}

fn channel_with(scheme: &str, backends: &[&Backend], disable: bool) -> GreeterClient {
    let manual = ManualResolver::new(scheme);
    let config = ServiceConfig::from_json(
        r#"{"loadBalancingConfig": [{"round_robin": {}}],
            "healthCheckConfig": {"serviceName": "helloworld.Greeter"}}"#,
    )
    .unwrap();
    manual.update(
        ResolverUpdate::new(backends.iter().map(|b| Address::tcp(b.addr)).collect())
            .with_service_config(config),
    );
    let channel = Channel::builder(&format!("{scheme}:///greeters"))
        .resolver(manual)
        .disable_health_check(disable)
        .build()
        .unwrap();
    GreeterClient::new(channel)
}

fn counts(backends: &[&Backend]) -> Vec<usize> {
    backends
        .iter()
        .map(|b| b.calls.load(Ordering::Relaxed))
        .collect()
}

#[test]
fn the_service_config_turns_health_checking_on() {
    let on = ServiceConfig::from_json(r#"{"healthCheckConfig": {"serviceName": "a.B"}}"#).unwrap();
    assert_eq!(on.health_check_service(), Some("a.B"));
    let whole = ServiceConfig::from_json(r#"{"healthCheckConfig": {}}"#).unwrap();
    assert_eq!(whole.health_check_service(), Some(""));
    let off = ServiceConfig::from_json(r#"{}"#).unwrap();
    assert_eq!(off.health_check_service(), None);
    assert!(ServiceConfig::from_json(r#"{"healthCheckConfig": {"serviceName": 1}}"#).is_err());
}

#[tokio::test]
async fn round_robin_leaves_a_not_serving_backend_and_comes_back_to_it() {
    let (a, b, c) = (
        backend(true).await,
        backend(true).await,
        backend(true).await,
    );
    let all = [&a, &b, &c];
    let client = channel("health-rr", &all);
    let call = || {
        let client = client.clone();
        async move { client.say_hello(HelloRequest::default()).await }
    };
    bounded(30, async {
        // Every backend serves.
        for _ in 0..300 {
            call().await.expect("no call fails");
        }
        assert!(counts(&all).iter().all(|n| *n > 50), "{:?}", counts(&all));

        // b says NOT_SERVING: once the client has seen it (calls stop reaching b), no call
        // goes there and none fails.
        b.health
            .as_ref()
            .unwrap()
            .set_not_serving("helloworld.Greeter");
        let mut missed = 0;
        while missed < 30 {
            let before = b.calls.load(Ordering::Relaxed);
            call().await.expect("no call fails while b leaves");
            missed = if b.calls.load(Ordering::Relaxed) == before {
                missed + 1
            } else {
                0
            };
        }
        let at_change = b.calls.load(Ordering::Relaxed);
        for _ in 0..300 {
            call().await.expect("no call fails without b");
        }
        assert_eq!(
            b.calls.load(Ordering::Relaxed),
            at_change,
            "{:?}",
            counts(&all)
        );

        // b serves again: calls come back to it.
        b.health.as_ref().unwrap().set_serving("helloworld.Greeter");
        while b.calls.load(Ordering::Relaxed) == at_change {
            call().await.expect("no call fails while b returns");
        }
    })
    .await;
}

#[tokio::test]
async fn a_backend_without_the_health_service_counts_as_healthy() {
    let plain = backend(false).await;
    let client = channel("health-none", &[&plain]);
    bounded(10, async {
        for _ in 0..10 {
            client
                .say_hello(HelloRequest::default())
                .await
                .expect("served without a health service");
        }
    })
    .await;
    assert_eq!(plain.calls.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn disable_health_check_ignores_the_service_config() {
    let sick = backend(true).await;
    sick.health
        .as_ref()
        .unwrap()
        .set_not_serving("helloworld.Greeter");
    let client = channel_with("health-off", &[&sick], true);
    bounded(10, async {
        client
            .say_hello(HelloRequest::default())
            .await
            .expect("health checking is off: the NOT_SERVING backend takes the call");
    })
    .await;
}

/// gRFC A17: on GOAWAY the client cancels its health stream. A server that shuts down
/// (GOAWAY, then waiting for open streams, with no drain bound) therefore finishes, even
/// though its health service would keep a `Watch` stream open forever (no `shutdown_on`
/// here).
#[tokio::test]
async fn a_goaway_ends_the_health_stream_so_the_server_can_drain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = volley_health::health_service();
    reporter.set_serving("helloworld.Greeter");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(GreeterServer::new(Counting(Arc::new(AtomicUsize::new(0)))))
            .add_service(health)
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let manual = ManualResolver::new("health-goaway");
    manual.update(
        ResolverUpdate::new(vec![Address::tcp(addr)]).with_service_config(
            ServiceConfig::from_json(
                r#"{"loadBalancingConfig": [{"round_robin": {}}],
                    "healthCheckConfig": {"serviceName": "helloworld.Greeter"}}"#,
            )
            .unwrap(),
        ),
    );
    let client = GreeterClient::new(
        Channel::builder("health-goaway:///one")
            .resolver(manual)
            .build()
            .unwrap(),
    );
    bounded(10, client.say_hello(HelloRequest::default()))
        .await
        .expect("served once healthy");
    stop.send(()).unwrap();
    bounded(10, server)
        .await
        .unwrap()
        .expect("the server drained: the client cancelled its health stream on GOAWAY");
    drop(reporter);
}
