//! Graceful shutdown: in-flight calls finish, new connections are refused, and a drain timeout
//! bounds the wait.

use std::time::Duration;

use volley::Code;
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{Event, TestServer, bounded};

#[tokio::test]
async fn in_flight_call_finishes_during_graceful_shutdown() {
    let mut server = TestServer::start().await;
    let client = server.client();
    let call = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                message: "slow".into(),
                sleep_ms: 300,
                ..Default::default()
            })
            .await
    });
    assert_eq!(server.next_event().await, Event::Started("slow".into()));
    let addr = server.addr;
    let done = server.shutdown();
    let reply = bounded(10, call).await.unwrap().unwrap().into_inner();
    assert_eq!(reply.message, "slow");
    bounded(10, done).await.unwrap().unwrap();
    assert_eq!(server.next_event().await, Event::Finished("slow".into()));
    // The listener is closed: a new client cannot reach the server.
    let status = volley_integration_tests::echo::EchoClient::new(
        volley::Channel::new(&format!("http://{addr}")).unwrap(),
    )
    .unary(EchoRequest::default())
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn drain_timeout_bounds_the_shutdown() {
    let mut server = TestServer::start_with(|b| b.drain_timeout(Duration::from_millis(200))).await;
    let client = server.client();
    let call = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                message: "stuck".into(),
                sleep_ms: 60_000,
                ..Default::default()
            })
            .await
    });
    assert_eq!(server.next_event().await, Event::Started("stuck".into()));
    let done = server.shutdown();
    bounded(10, done).await.unwrap().unwrap();
    let status = bounded(10, call).await.unwrap().unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Internal | Code::Cancelled
        ),
        "{status}"
    );
    assert_eq!(server.next_event().await, Event::Dropped("stuck".into()));
}

#[tokio::test]
async fn idle_server_shuts_down_at_once_with_connected_clients() {
    let mut server = TestServer::start().await;
    let client = server.client();
    client.unary(EchoRequest::default()).await.unwrap();
    let done = server.shutdown();
    bounded(5, done).await.unwrap().unwrap();
}
