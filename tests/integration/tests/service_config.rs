//! The service config's per-method settings (`methodConfig`): timeouts, wait-for-ready and
//! message limits, from the channel's default config or the resolver's, and what happens to
//! invalid configs.

use std::time::Duration;

use volley::resolver::{Address, ManualResolver, ResolverUpdate, ServiceConfig};
use volley::{Channel, Code, Request};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{TestServer, bounded};

fn sleepy(ms: i64) -> EchoRequest {
    EchoRequest {
        message: "zz".into(),
        sleep_ms: ms,
        ..Default::default()
    }
}

const CONFIG: &str = r#"{"methodConfig": [
    {"name": [{"service": "volley.test.Echo", "method": "Unary"}], "timeout": "0.2s"},
    {"name": [{"service": "volley.test.Echo"}], "maxResponseMessageBytes": 1000,
     "maxRequestMessageBytes": 2000}
]}"#;

#[tokio::test]
async fn the_default_config_sets_timeouts_and_limits_per_method() {
    let server = TestServer::start().await;
    let channel = Channel::builder(&server.target())
        .default_service_config(CONFIG)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        // The method's timeout applies...
        let status = client.unary(sleepy(2_000)).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        // ...unless the call's own is sooner; a later one does not extend it.
        let started = tokio::time::Instant::now();
        let request = Request::new(sleepy(2_000)).with_timeout(Duration::from_millis(50));
        assert_eq!(
            client.unary(request).await.unwrap_err().code(),
            Code::DeadlineExceeded
        );
        assert!(
            started.elapsed() < Duration::from_millis(180),
            "{:?}",
            started.elapsed()
        );
        let request = Request::new(sleepy(2_000)).with_timeout(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        assert_eq!(
            client.unary(request).await.unwrap_err().code(),
            Code::DeadlineExceeded
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Connect has no timeout of its own: the service entry has none either.
        assert!(client.connect_rpc(sleepy(300)).await.is_ok());

        // The service's message limits: a reply over 1000 bytes, a request over 2000.
        let big_reply = EchoRequest {
            response_size: 4_000,
            ..Default::default()
        };
        let status = client.connect_rpc(big_reply).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        let big_request = EchoRequest {
            payload: vec![7; 4_000],
            ..Default::default()
        };
        let status = client.connect_rpc(big_request).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    })
    .await;
}

#[test]
fn an_invalid_default_config_fails_build_with_the_json_path() {
    let e = Channel::builder("localhost:1")
        .default_service_config(r#"{"methodConfig": [{"name": [{}], "timeout": "soon"}]}"#)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("methodConfig[0].timeout"), "{e}");
    let e = Channel::builder("localhost:1")
        .default_service_config("{")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("invalid service config"), "{e}");
}

#[tokio::test]
async fn wait_for_ready_from_the_config_holds_calls_until_their_deadline() {
    // Nothing listens on this port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let plain = EchoClient::new(Channel::new(&format!("http://{closed}")).unwrap());
    let waiting = EchoClient::new(
        Channel::builder(&format!("http://{closed}"))
            .default_service_config(r#"{"methodConfig": [{"name": [{}], "waitForReady": true}]}"#)
            .build()
            .unwrap(),
    );
    bounded(30, async {
        let status = plain.unary(EchoRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        let request = Request::new(EchoRequest::default()).with_timeout(Duration::from_millis(300));
        let status = waiting.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
        // The call's own choice wins over the config's.
        let request = Request::new(EchoRequest::default())
            .with_timeout(Duration::from_secs(5))
            .with_wait_for_ready(false);
        let status = waiting.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status}");
    })
    .await;
}

/// Calls until `server` has served one: the channel has then processed the resolver update
/// that sent it there.
async fn until_served_by(client: &EchoClient, server: &mut TestServer) {
    while server.events.try_recv().is_ok() {}
    loop {
        client.unary(EchoRequest::default()).await.unwrap();
        if server.events.try_recv().is_ok() {
            return;
        }
    }
}

#[tokio::test]
async fn the_resolvers_config_replaces_the_default_and_an_invalid_one_is_ignored() {
    let mut one = TestServer::start().await;
    let mut two = TestServer::start().await;
    let resolver = ManualResolver::new("sc-test");
    resolver.update(
        ResolverUpdate::new(vec![Address::tcp(one.addr)])
            .with_service_config(ServiceConfig::from_json(CONFIG).unwrap()),
    );
    let channel = Channel::builder("sc-test:///echo")
        .resolver(resolver.clone())
        .default_service_config(r#"{"methodConfig": [{"name": [{}], "timeout": "30s"}]}"#)
        .build()
        .unwrap();
    let client = EchoClient::new(channel.clone());
    let timeout = |c: &Channel| {
        c.service_config().and_then(|sc| {
            sc.method_config("/volley.test.Echo/Unary")
                .and_then(|m| m.timeout)
        })
    };
    bounded(20, async {
        // Before the first resolution the default is in force; the resolver's replaces it.
        assert_eq!(timeout(&channel), Some(Duration::from_secs(30)));
        until_served_by(&client, &mut one).await;
        assert_eq!(timeout(&channel), Some(Duration::from_millis(200)));
        let status = client.unary(sleepy(2_000)).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);

        // An invalid config from the resolver (with new addresses): the addresses are taken,
        // the previous config stays.
        resolver.update(
            ResolverUpdate::new(vec![Address::tcp(two.addr)])
                .with_service_config_json(r#"{"methodConfig": "nope"}"#),
        );
        until_served_by(&client, &mut two).await;
        assert_eq!(timeout(&channel), Some(Duration::from_millis(200)));

        // An update without a config: the default again.
        resolver.update(ResolverUpdate::new(vec![Address::tcp(one.addr)]));
        until_served_by(&client, &mut one).await;
        assert_eq!(timeout(&channel), Some(Duration::from_secs(30)));
    })
    .await;
}
