//! A bidirectional call returns as soon as it is open, before the response headers: a
//! server that sends its headers only with its first response (the C++ and Python interop
//! servers do) must not deadlock a client that sends its first request after the call
//! returned. The headers are awaited separately, with `Streaming::headers`.

use std::net::SocketAddr;

use volley::{Code, Request};
use volley_integration_tests::bounded;
use volley_integration_tests::echo::{EchoClient, EchoReply, EchoRequest};

/// An HTTP/2 server that, for every request, reads one request message and only then
/// answers: headers (with `x-first: yes`), one reply per request message, then OK. With
/// `refuse`, it answers the first message with a Trailers-Only PERMISSION_DENIED instead.
async fn headers_after_first_message(refuse: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut first = true;
                        let mut send = None;
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            if chunk.is_empty() {
                                continue; // the client's END_STREAM
                            }
                            if first && refuse {
                                let resp = http::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/grpc")
                                    .header("grpc-status", "7")
                                    .header("grpc-message", "not you")
                                    .body(())
                                    .unwrap();
                                let _ = respond.send_response(resp, true);
                                return;
                            }
                            if first {
                                let resp = http::Response::builder()
                                    .status(200)
                                    .header("content-type", "application/grpc")
                                    .header("x-first", "yes")
                                    .body(())
                                    .unwrap();
                                send = respond.send_response(resp, false).ok();
                                first = false;
                            }
                            // One reply per DATA chunk: the client sends each message in one.
                            let reply = volley_integration_tests::frame(&EchoReply {
                                message: format!("reply {}", chunk.len()),
                                ..Default::default()
                            });
                            if let Some(send) = send.as_mut() {
                                let _ = send.send_data(reply, false);
                            }
                        }
                        if let Some(mut send) = send {
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            let _ = send.send_trailers(trailers);
                        }
                    });
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_bidi_call_returns_before_the_server_sends_headers() {
    let (addr, server) = headers_after_first_message(false).await;
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    bounded(10, async {
        // The call returns with no request sent and no headers received.
        let response = client.bidi(Request::new(requests)).await.unwrap();
        assert!(response.metadata().is_empty());
        let mut stream = response.into_inner();
        tx.send(EchoRequest {
            message: "one".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let headers = stream.headers().await.unwrap();
        assert_eq!(headers.get("x-first").unwrap(), "yes");
        assert!(stream.message().await.unwrap().is_some());
        tx.send(EchoRequest {
            message: "two".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(stream.message().await.unwrap().is_some());
        drop(tx);
        assert!(stream.message().await.unwrap().is_none());
        assert!(stream.trailers().is_some());
    })
    .await;
    server.abort();
}

#[tokio::test]
async fn a_bidi_call_the_server_refuses_fails_when_read() {
    let (addr, server) = headers_after_first_message(true).await;
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    bounded(10, async {
        let requests = tokio_stream::iter([EchoRequest::default()]);
        let mut stream = client
            .bidi(Request::new(requests))
            .await
            .unwrap()
            .into_inner();
        let status = stream.headers().await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "not you");
        // The stream is over: reading gives nothing more.
        assert!(stream.message().await.unwrap().is_none());

        // Without asking for the headers, the first read fails with the status.
        let requests = tokio_stream::iter([EchoRequest::default()]);
        let mut stream = client
            .bidi(Request::new(requests))
            .await
            .unwrap()
            .into_inner();
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    })
    .await;
    server.abort();
}
