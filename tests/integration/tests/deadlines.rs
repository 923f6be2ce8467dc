//! Deadlines and cancellation: the client's deadline ends the call with DEADLINE_EXCEEDED and
//! drops the server's handler; a call dropped by its caller drops the handler too.

use std::time::{Duration, Instant};

use volley::{Code, Request};
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{Event, GRPC_HEADERS, TestServer, bounded, frame, raw_unary};

#[tokio::test]
async fn deadline_exceeded_and_handler_dropped() {
    let mut server = TestServer::start().await;
    let client = server.client();
    let request = Request::new(EchoRequest {
        message: "sleepy".into(),
        sleep_ms: 5_000,
        ..Default::default()
    })
    .with_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let status = bounded(10, client.unary(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.next_event().await, Event::Started("sleepy".into()));
    assert_eq!(server.next_event().await, Event::Dropped("sleepy".into()));
}

#[tokio::test]
async fn server_enforces_grpc_timeout_itself() {
    // A raw client that sends grpc-timeout but never cancels: the server must end the call
    // with DEADLINE_EXCEEDED on its own and drop the handler.
    let mut server = TestServer::start().await;
    let mut headers = GRPC_HEADERS.to_vec();
    headers.push(("grpc-timeout", "50m"));
    let resp = raw_unary(
        server.addr,
        &headers,
        frame(&EchoRequest {
            message: "raw".into(),
            sleep_ms: 5_000,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(resp.grpc_status(), Some(Code::DeadlineExceeded.as_i32()));
    assert_eq!(server.next_event().await, Event::Started("raw".into()));
    assert_eq!(server.next_event().await, Event::Dropped("raw".into()));
}

#[tokio::test]
async fn dropped_call_cancels_the_handler() {
    let mut server = TestServer::start().await;
    let client = server.client();
    let call = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                message: "abandoned".into(),
                sleep_ms: 10_000,
                ..Default::default()
            })
            .await
    });
    assert_eq!(
        server.next_event().await,
        Event::Started("abandoned".into())
    );
    call.abort();
    assert_eq!(
        server.next_event().await,
        Event::Dropped("abandoned".into())
    );
}

#[tokio::test]
async fn dropped_stream_cancels_the_handler() {
    let mut server = TestServer::start().await;
    let client = server.client();
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let stream = bounded(
        10,
        client.bidi(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .unwrap();
    tx.send(EchoRequest {
        message: "one".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut replies = stream.into_inner();
    assert!(bounded(10, replies.message()).await.unwrap().is_some());
    // Dropping the response stream cancels the call even though the request stream is open:
    // the server's handler sees its request stream end in CANCELLED.
    drop(replies);
    assert_eq!(
        server.next_event().await,
        Event::RequestStreamFailed(Code::Cancelled)
    );
    drop(tx);
}

#[tokio::test]
async fn lost_client_connection_drops_the_handler() {
    // Calls run as tasks of their own: when the connection goes, h2 ends its streams and each
    // call must drop its handler.
    let mut server = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, conn) = bounded(10, h2::client::handshake(tcp)).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut client = bounded(10, client.ready()).await.unwrap();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/volley.test.Echo/Unary", server.addr));
    for (k, v) in GRPC_HEADERS {
        request = request.header(*k, *v);
    }
    let (_response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let body = frame(&EchoRequest {
        message: "orphan".into(),
        sleep_ms: 10_000,
        ..Default::default()
    });
    send.send_data(body, true).unwrap();
    assert_eq!(server.next_event().await, Event::Started("orphan".into()));
    // The socket closes without RST_STREAM or GOAWAY.
    conn_task.abort();
    drop((client, send));
    assert_eq!(server.next_event().await, Event::Dropped("orphan".into()));
}

#[tokio::test]
async fn drain_bound_drops_the_handlers_still_running() {
    let mut server = TestServer::start_with(|b| b.drain_timeout(Duration::from_millis(100))).await;
    let client = server.client();
    let call = tokio::spawn(async move {
        client
            .unary(EchoRequest {
                message: "overtime".into(),
                sleep_ms: 10_000,
                ..Default::default()
            })
            .await
    });
    assert_eq!(server.next_event().await, Event::Started("overtime".into()));
    let started = Instant::now();
    bounded(10, server.shutdown()).await.unwrap().unwrap();
    assert_eq!(server.next_event().await, Event::Dropped("overtime".into()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let status = bounded(10, call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}
