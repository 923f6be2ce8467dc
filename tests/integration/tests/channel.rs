//! The channel: lazy connection, reconnection after the server goes away, and clones sharing
//! one connection.

use std::time::Duration;

use tokio::net::TcpListener;
use volley::Code;
use volley_integration_tests::echo::{EchoClient, EchoRequest, EchoServer};
use volley_integration_tests::{TestServer, bounded};

#[tokio::test]
async fn lazy_channel_connects_on_first_call() {
    // Building a channel to a port where nothing listens yet does not fail.
    let server = TestServer::start().await;
    let channel = volley::Channel::new(&server.target()).unwrap();
    let client = EchoClient::new(channel.clone());
    let other = EchoClient::new(channel);
    let a = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    let b = bounded(10, other.unary(EchoRequest::default()))
        .await
        .unwrap();
    assert_eq!(
        a.get_ref().peer,
        b.get_ref().peer,
        "clones share the connection"
    );
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let mut first = TestServer::start().await;
    let addr = first.addr;
    let client = first.client();
    let before = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    bounded(10, first.shutdown()).await.unwrap().unwrap();

    // While nothing listens, calls fail fast with UNAVAILABLE.
    let status = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");

    // A new server on the same port: the same channel reconnects.
    let listener = TcpListener::bind(addr).await.unwrap();
    let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(EchoServer::new(volley_integration_tests::EchoService::new(
                events,
            )))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    // The channel is in TRANSIENT_FAILURE until its backoff (about 1 s) lets it try again; a
    // wait-for-ready call waits for that reconnection.
    let after = bounded(
        10,
        client.unary(volley::Request::new(EchoRequest::default()).with_wait_for_ready(true)),
    )
    .await
    .unwrap();
    assert_ne!(
        before.get_ref().peer,
        after.get_ref().peer,
        "a new connection"
    );
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn connect_fails_fast_with_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = bounded(
        10,
        volley::Channel::builder(&format!("http://{addr}"))
            .connect_timeout(Duration::from_secs(5))
            .connect(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("failed to connect"), "{err}");
    assert!(volley::Channel::new("ftp://nope:1").is_err());
}
