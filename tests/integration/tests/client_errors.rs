//! What Volley's client makes of servers that misbehave or are not gRPC servers: HTTP status
//! without grpc-status, wrong content-type, missing trailers, RST_STREAM codes, bad frames.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use volley::{Code, Request, Streaming};
use volley_integration_tests::bounded;
use volley_integration_tests::echo::{EchoClient, EchoReply, EchoRequest};

/// How the raw server answers every request.
#[derive(Clone)]
enum Answer {
    /// An HTTP response with this status and headers, and no body.
    Http(u16, Vec<(&'static str, &'static str)>),
    /// 200 with gRPC headers, this body, then these trailers (none: end with the data).
    Body(Bytes, Option<Vec<(&'static str, &'static str)>>),
    /// RST_STREAM with this HTTP/2 error code.
    Reset(h2::Reason),
}

/// An HTTP/2 server on a free loopback port that answers every request with `answer`.
async fn raw_server(answer: Answer) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    match &answer {
                        Answer::Http(status, headers) => {
                            let mut resp = http::Response::builder().status(*status);
                            for (k, v) in headers {
                                resp = resp.header(*k, *v);
                            }
                            let _ = respond.send_response(resp.body(()).unwrap(), true);
                        }
                        Answer::Body(body, trailers) => {
                            let resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .body(())
                                .unwrap();
                            let mut send = respond.send_response(resp, false).unwrap();
                            let _ = send.send_data(body.clone(), trailers.is_none());
                            if let Some(trailers) = trailers {
                                let mut map = http::HeaderMap::new();
                                for (k, v) in trailers {
                                    map.insert(*k, v.parse().unwrap());
                                }
                                let _ = send.send_trailers(map);
                            }
                        }
                        Answer::Reset(reason) => respond.send_reset(*reason),
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn call(answer: Answer) -> volley::Status {
    let (addr, server) = raw_server(answer).await;
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    let result = bounded(10, client.unary(Request::new(EchoRequest::default()))).await;
    server.abort();
    result.expect_err("the call must fail")
}

fn reply_frame() -> Bytes {
    volley_integration_tests::frame(&EchoReply {
        message: "ok".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn http_status_without_grpc_status_maps_per_spec() {
    let table = [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (500, Code::Unknown),
    ];
    for (http, code) in table {
        let status = call(Answer::Http(http, vec![])).await;
        assert_eq!(status.code(), code, "HTTP {http}: {status}");
    }
}

#[tokio::test]
async fn grpc_status_wins_over_http_status_and_trailers_only_ok_without_message_is_internal() {
    let status = call(Answer::Http(
        503,
        vec![
            ("content-type", "application/grpc"),
            ("grpc-status", "8"),
            ("grpc-message", "busy"),
        ],
    ))
    .await;
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "busy")
    );

    let status = call(Answer::Http(
        200,
        vec![("content-type", "application/grpc"), ("grpc-status", "0")],
    ))
    .await;
    assert_eq!(status.code(), Code::Internal, "{status}");
}

#[tokio::test]
async fn wrong_content_type_is_unknown() {
    let status = call(Answer::Http(200, vec![("content-type", "text/html")])).await;
    assert_eq!(status.code(), Code::Unknown, "{status}");
}

#[tokio::test]
async fn rst_stream_codes_map_per_spec() {
    let table = [
        (h2::Reason::REFUSED_STREAM, Code::Unavailable),
        (h2::Reason::CANCEL, Code::Cancelled),
        (h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
        (h2::Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
        (h2::Reason::INTERNAL_ERROR, Code::Internal),
        (h2::Reason::PROTOCOL_ERROR, Code::Internal),
    ];
    for (reason, code) in table {
        let status = call(Answer::Reset(reason)).await;
        assert_eq!(status.code(), code, "{reason:?}: {status}");
    }
}

#[tokio::test]
async fn missing_trailers_and_bad_frames_are_internal() {
    // Data, then END_STREAM without trailers.
    let status = call(Answer::Body(reply_frame(), None)).await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    // Trailers without grpc-status.
    let status = call(Answer::Body(reply_frame(), Some(vec![("x-other", "1")]))).await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    // A truncated message.
    let status = call(Answer::Body(
        Bytes::from_static(&[0, 0, 0, 0, 9, 1]),
        Some(vec![("grpc-status", "0")]),
    ))
    .await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    // Invalid protobuf.
    let status = call(Answer::Body(
        Bytes::from_static(&[0, 0, 0, 0, 2, 0x0a, 0x05]),
        Some(vec![("grpc-status", "0")]),
    ))
    .await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    // Two messages in a unary response.
    let mut two = reply_frame().to_vec();
    two.extend_from_slice(&reply_frame());
    let status = call(Answer::Body(two.into(), Some(vec![("grpc-status", "0")]))).await;
    assert_eq!(status.code(), Code::Internal, "{status}");
    // A malformed grpc-status.
    let status = call(Answer::Body(
        reply_frame(),
        Some(vec![("grpc-status", "x")]),
    ))
    .await;
    assert_eq!(status.code(), Code::Unknown, "{status}");
}

#[tokio::test]
async fn a_well_formed_raw_response_succeeds() {
    let (addr, server) = raw_server(Answer::Body(
        reply_frame(),
        Some(vec![("grpc-status", "0")]),
    ))
    .await;
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    let reply = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "ok");
    server.abort();
}

#[tokio::test]
async fn a_dropped_call_sends_rst_stream_cancel() {
    // A server that never answers; it reports each stream it sees (None) and how the stream
    // was reset (Some).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut resets) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            let tx = tx.clone();
            let _ = tx.send(None);
            tokio::spawn(async move {
                let reason = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
                let _ = tx.send(reason.ok());
            });
        }
    });
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    // Dropped by its caller (the future is abandoned) ...
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.unary(EchoRequest::default()).await }
    });
    assert_eq!(
        bounded(10, resets.recv()).await,
        Some(None),
        "the stream was opened"
    );
    call.abort();
    assert_eq!(
        bounded(10, resets.recv()).await,
        Some(Some(h2::Reason::CANCEL))
    );
    // ... and ended by its deadline.
    let status = client
        .unary(
            Request::new(EchoRequest::default()).with_timeout(std::time::Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        bounded(10, resets.recv()).await,
        Some(None),
        "the stream was opened"
    );
    assert_eq!(
        bounded(10, resets.recv()).await,
        Some(Some(h2::Reason::CANCEL))
    );
    server.abort();
}

/// A server whose one DATA frame holds a reply, a message that is not protobuf, and another
/// reply; and the response stream of a call to it.
async fn bad_message_among_buffered_ones() -> (Streaming<EchoReply>, tokio::task::JoinHandle<()>) {
    let mut body = BytesMut::new();
    body.extend_from_slice(&reply_frame());
    body.extend_from_slice(&[0, 0, 0, 0, 2, 0xff, 0xff]);
    body.extend_from_slice(&reply_frame());
    let (addr, server) = raw_server(Answer::Body(
        body.freeze(),
        Some(vec![("grpc-status", "0")]),
    ))
    .await;
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    let replies = bounded(10, client.server_stream(EchoRequest::default()))
        .await
        .unwrap()
        .into_inner();
    (replies, server)
}

#[tokio::test]
async fn bad_message_among_buffered_ones_ends_the_response_stream() {
    // The first reply is read, the bad message ends the stream with INTERNAL, and nothing
    // after it is delivered.
    let (mut replies, server) = bad_message_among_buffered_ones().await;
    let first = bounded(10, replies.message()).await.unwrap().unwrap();
    assert_eq!(first.message, "ok");
    let status = bounded(10, replies.message()).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status}");
    assert!(bounded(10, replies.message()).await.unwrap().is_none());
    server.abort();
}

#[tokio::test]
async fn bad_message_among_buffered_ones_ends_message_into_too() {
    // As above, read into one reused message.
    let (mut replies, server) = bad_message_among_buffered_ones().await;
    let mut reply = Default::default();
    assert!(bounded(10, replies.message_into(&mut reply)).await.unwrap());
    assert_eq!(reply.message, "ok");
    let status = bounded(10, replies.message_into(&mut reply))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status}");
    assert!(!bounded(10, replies.message_into(&mut reply)).await.unwrap());
    server.abort();
}
