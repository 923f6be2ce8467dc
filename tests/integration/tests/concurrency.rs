//! Many calls on one channel, and long streams of small messages that must not trip HTTP/2
//! flood protection (GOAWAY ENHANCE_YOUR_CALM on floods of small DATA frames).

use std::sync::Arc;

use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{TestServer, bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_unary_calls_on_one_channel() {
    let server = TestServer::start().await;
    let client = Arc::new(server.client());
    bounded(60, async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let client = client.clone();
            tasks.spawn(async move {
                let reply = client
                    .unary(EchoRequest {
                        message: i.to_string(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(reply.message, i.to_string());
                reply.peer
            });
        }
        let mut peers = std::collections::HashSet::new();
        while let Some(peer) = tasks.join_next().await {
            peers.insert(peer.unwrap());
        }
        assert_eq!(peers.len(), 1, "all calls shared one connection: {peers:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stream_of_100k_small_messages() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(120, async {
        let mut stream = client
            .server_stream(EchoRequest {
                message: "m".into(),
                count: 100_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(r) = stream.message().await.unwrap() {
            assert_eq!(r.index, n);
            n += 1;
        }
        assert_eq!(n, 100_000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_stream_of_100k_small_messages_each_way() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(120, async {
        let requests = tokio_stream::iter((0..100_000).map(|i: i32| EchoRequest {
            message: if i % 1000 == 0 {
                i.to_string()
            } else {
                String::new()
            },
            ..Default::default()
        }));
        let mut stream = client.bidi(requests).await.unwrap().into_inner();
        let mut n = 0;
        while let Some(r) = stream.message().await.unwrap() {
            assert_eq!(r.index, n);
            n += 1;
        }
        assert_eq!(n, 100_000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_data_frame_per_message_from_a_foreign_client() {
    // grpc-go writes each message as its own DATA frame; 100,000 of them must not trip the
    // server's flood protection, even while the handler lags behind.
    use bytes::{BufMut, BytesMut};
    let server = TestServer::start().await;
    bounded(120, async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(8 * 1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/volley.test.Echo/Bidi", server.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).unwrap();
        let sender = tokio::spawn(async move {
            let msg = volley_integration_tests::frame(&EchoRequest::default());
            for _ in 0..100_000 {
                send.reserve_capacity(msg.len());
                while send.capacity() < msg.len() {
                    std::future::poll_fn(|cx| send.poll_capacity(cx))
                        .await
                        .unwrap()
                        .unwrap();
                }
                send.send_data(msg.clone(), false).unwrap();
            }
            send.send_data(bytes::Bytes::new(), true).unwrap();
        });
        let mut body = resp.await.unwrap().into_body();
        let mut received = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            received.put(chunk);
        }
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        sender.await.unwrap();
        let replies = volley_integration_tests::unframe::<volley_integration_tests::echo::EchoReply>(
            received.freeze(),
        );
        assert_eq!(replies.len(), 100_000);
        drop(client);
        conn.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_queues_calls_instead_of_failing_them() {
    use volley_integration_tests::Event;
    let mut server = TestServer::start_with(|b| b.max_concurrent_streams(2)).await;
    let client = Arc::new(server.client());
    bounded(60, async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let client = client.clone();
            tasks.spawn(async move {
                client
                    .unary(EchoRequest {
                        message: i.to_string(),
                        sleep_ms: 20,
                        ..Default::default()
                    })
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    })
    .await;
    let (mut running, mut most) = (0i32, 0i32);
    for _ in 0..40 {
        match server.next_event().await {
            Event::Started(_) => running += 1,
            Event::Finished(_) => running -= 1,
            other => panic!("unexpected {other:?}"),
        }
        most = most.max(running);
    }
    assert_eq!(running, 0);
    assert!(most <= 2, "{most} handlers ran at once");
}
