//! Requests that are not well-formed gRPC calls: unknown services and methods, wrong HTTP
//! method or content-type, bad framing and bad protobuf.

use bytes::Bytes;
use volley::Code;
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{GRPC_HEADERS, TestServer, bounded, frame, raw_request, raw_unary};

#[tokio::test]
async fn unknown_service_and_method_are_unimplemented_trailers_only() {
    let server = TestServer::start().await;
    for path in [
        "/no.Such/Method",
        "/volley.test.Echo/NoSuchMethod",
        "/garbage",
    ] {
        let resp = bounded(
            10,
            raw_request(
                server.addr,
                "POST",
                path,
                GRPC_HEADERS,
                frame(&EchoRequest::default()),
            ),
        )
        .await;
        assert_eq!(resp.status, 200, "{path}");
        assert!(resp.headers_only, "{path}: Trailers-Only");
        assert_eq!(
            resp.grpc_status(),
            Some(Code::Unimplemented.as_i32()),
            "{path}"
        );
    }
    // The same through Volley's client, for its status mapping.
    let channel = volley::Channel::new(&server.target()).unwrap();
    let status = bounded(
        10,
        volley::Grpc::new(channel).unary::<_, EchoRequest>(
            volley::Request::new(EchoRequest::default()),
            "/volley.test.Echo/Missing",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("Missing"), "{status}");
}

#[tokio::test]
async fn wrong_content_type_is_415_and_wrong_method_is_405() {
    let server = TestServer::start().await;
    let resp = raw_unary(
        server.addr,
        &[("content-type", "text/plain")],
        Bytes::from_static(b"hello"),
    )
    .await;
    assert_eq!(resp.status, 415);
    let resp = bounded(
        10,
        raw_request(
            server.addr,
            "GET",
            "/volley.test.Echo/Unary",
            GRPC_HEADERS,
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(resp.status, 405);
    // "application/grpc+proto" and "application/grpc;charset" are gRPC.
    for ct in ["application/grpc+proto", "application/grpc; charset=utf-8"] {
        let resp = raw_unary(
            server.addr,
            &[("content-type", ct), ("te", "trailers")],
            frame(&EchoRequest::default()),
        )
        .await;
        assert_eq!(resp.grpc_status(), Some(0), "{ct}");
    }
    // "application/grpcfoo" is not.
    let resp = raw_unary(
        server.addr,
        &[("content-type", "application/grpcfoo")],
        frame(&EchoRequest::default()),
    )
    .await;
    assert_eq!(resp.status, 415);
}

#[tokio::test]
async fn bad_frames_and_bad_protobuf_are_internal() {
    let server = TestServer::start().await;
    let cases: Vec<(&str, Bytes)> = vec![
        (
            "truncated message",
            Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]),
        ),
        ("truncated prefix", Bytes::from_static(&[0, 0, 0])),
        ("bad flag", Bytes::from_static(&[9, 0, 0, 0, 0])),
        (
            "invalid protobuf",
            Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 0x05, b'a']),
        ),
        ("no message", Bytes::new()),
    ];
    for (what, body) in cases {
        let resp = raw_unary(server.addr, GRPC_HEADERS, body).await;
        assert_eq!(
            resp.grpc_status(),
            Some(Code::Internal.as_i32()),
            "{what}: {resp:?}"
        );
    }
    // The server is still fine.
    server.client().unary(EchoRequest::default()).await.unwrap();
}

#[tokio::test]
async fn malformed_timeout_is_rejected() {
    let server = TestServer::start().await;
    let mut headers = GRPC_HEADERS.to_vec();
    headers.push(("grpc-timeout", "forever"));
    let resp = raw_unary(server.addr, &headers, frame(&EchoRequest::default())).await;
    assert_eq!(resp.grpc_status(), Some(Code::Internal.as_i32()));
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = volley_integration_tests::echo::EchoClient::new(
        volley::Channel::new(&format!("http://{addr}")).unwrap(),
    );
    let status = bounded(10, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

/// A peer's value echoed into `grpc-message` is cut to about 128 bytes and escaped, so that a
/// large or hostile header cannot make the answer larger than the question.
#[tokio::test]
async fn echoed_values_are_bounded_and_escaped() {
    let server = TestServer::start().await;
    let long_timeout = "9".repeat(10_000);
    let with_timeout: Vec<(&str, &str)> = GRPC_HEADERS
        .iter()
        .copied()
        .chain([("grpc-timeout", long_timeout.as_str())])
        .collect();
    let long_method = format!("/volley.test.Echo/{}", "M".repeat(10_000));
    let long_service = format!("/{}/Unary", "s".repeat(10_000));
    let body = frame(&EchoRequest::default());
    let answers = [
        (
            raw_unary(server.addr, &with_timeout, body.clone()).await,
            Code::Internal,
        ),
        (
            bounded(
                10,
                raw_request(
                    server.addr,
                    "POST",
                    &long_method,
                    GRPC_HEADERS,
                    body.clone(),
                ),
            )
            .await,
            Code::Unimplemented,
        ),
        (
            bounded(
                10,
                raw_request(
                    server.addr,
                    "POST",
                    &long_service,
                    GRPC_HEADERS,
                    body.clone(),
                ),
            )
            .await,
            Code::Unimplemented,
        ),
    ];
    for (resp, code) in answers {
        assert_eq!(resp.grpc_status(), Some(code.as_i32()));
        let message = resp.grpc_message();
        assert!(message.len() < 250, "{} bytes: {message}", message.len());
        assert!(
            message.contains(" bytes)"),
            "the full length is noted: {message}"
        );
    }
    // Control characters never reach the message as they are.
    let resp = raw_unary(
        server.addr,
        &[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "1\tS\u{e9}"),
        ],
        body,
    )
    .await;
    assert_eq!(resp.grpc_status(), Some(Code::Internal.as_i32()));
    assert!(
        resp.grpc_message().contains(r"1\x09S\xc3\xa9"),
        "{}",
        resp.grpc_message()
    );
}
