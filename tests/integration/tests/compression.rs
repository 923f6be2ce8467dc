//! gzip, deflate and zstd in both directions, and requests in an encoding the server lacks.

use volley::{Code, CompressionEncoding};
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{GRPC_HEADERS, TestServer, bounded, frame, raw_unary};

fn compressible() -> EchoRequest {
    EchoRequest {
        message: "z".repeat(10_000),
        response_size: 10_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn gzip_both_directions() {
    both_directions(CompressionEncoding::Gzip).await;
}

#[tokio::test]
async fn deflate_and_zstd_both_directions() {
    both_directions(CompressionEncoding::Deflate).await;
    both_directions(CompressionEncoding::Zstd).await;
}

/// Requests and responses compressed with `encoding`, checked on the wire for responses.
async fn both_directions(encoding: CompressionEncoding) {
    let server = TestServer::start_with(|b| b.send_compressed(encoding)).await;
    let mut headers = GRPC_HEADERS.to_vec();
    headers.push(("grpc-accept-encoding", encoding.as_str()));
    let resp = raw_unary(server.addr, &headers, frame(&compressible())).await;
    assert_eq!(resp.grpc_status(), Some(0));
    assert_eq!(
        resp.headers.get("grpc-encoding").unwrap(),
        encoding.as_str()
    );
    assert_eq!(resp.body[0], 1, "{encoding:?}: compressed flag set");
    let client = server.client().send_compressed(encoding);
    bounded(10, async {
        let reply = client.unary(compressible()).await.unwrap().into_inner();
        assert_eq!(reply.message.len(), 10_000);
        assert_eq!(reply.payload.len(), 10_000);
        let msgs = vec![compressible(); 5];
        let mut stream = client
            .bidi(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(r) = stream.message().await.unwrap() {
            assert_eq!(r.payload.len(), 10_000);
            n += 1;
        }
        assert_eq!(n, 5);
    })
    .await;
}

#[tokio::test]
async fn responses_are_gzip_on_the_wire_when_accepted() {
    let server = TestServer::start_with(|b| b.send_compressed(CompressionEncoding::Gzip)).await;
    let mut headers = GRPC_HEADERS.to_vec();
    headers.push(("grpc-accept-encoding", "gzip"));
    let resp = raw_unary(server.addr, &headers, frame(&compressible())).await;
    assert_eq!(resp.grpc_status(), Some(0));
    assert_eq!(resp.headers.get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(resp.body[0], 1, "compressed flag set");
    assert!(
        resp.body.len() < 1000,
        "10 kB of 'r' compresses: {}",
        resp.body.len()
    );

    // A client that does not accept gzip gets identity.
    let resp = raw_unary(server.addr, GRPC_HEADERS, frame(&compressible())).await;
    assert!(resp.headers.get("grpc-encoding").is_none());
    assert_eq!(resp.body[0], 0);
}

#[tokio::test]
async fn unsupported_encoding_is_unimplemented_with_the_supported_list() {
    let server = TestServer::start().await;
    let mut headers = GRPC_HEADERS.to_vec();
    headers.push(("grpc-encoding", "snappy"));
    let resp = raw_unary(server.addr, &headers, frame(&compressible())).await;
    assert_eq!(resp.grpc_status(), Some(Code::Unimplemented.as_i32()));
    assert!(
        resp.grpc_message().contains("snappy"),
        "{}",
        resp.grpc_message()
    );
    let accepted = resp
        .headers
        .get("grpc-accept-encoding")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(accepted.contains("gzip"), "{accepted}");

    // A server that accepts no compression refuses Volley's gzip requests the same way.
    let plain = TestServer::start_with(|b| b.accept_compressed(&[])).await;
    let status = bounded(
        10,
        plain
            .client()
            .send_compressed(CompressionEncoding::Gzip)
            .unary(EchoRequest::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
}

#[tokio::test]
async fn compressed_flag_without_encoding_is_internal() {
    let server = TestServer::start().await;
    let mut body = frame(&compressible()).to_vec();
    body[0] = 1;
    let resp = raw_unary(server.addr, GRPC_HEADERS, body.into()).await;
    assert_eq!(resp.grpc_status(), Some(Code::Internal.as_i32()));
}

/// A request's own compression choice overrides the client's, both ways.
#[tokio::test]
async fn a_request_chooses_its_own_compression() {
    // The server accepts no compressed request: a compressed one gets UNIMPLEMENTED.
    let server = TestServer::start_with(|b| b.accept_compressed(&[])).await;
    bounded(10, async {
        let plain_client = server.client();
        let err = plain_client
            .unary(
                volley::Request::new(compressible())
                    .with_compression(Some(CompressionEncoding::Zstd)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err}");
        let gzip_client = server.client().send_compressed(CompressionEncoding::Gzip);
        let reply = gzip_client
            .unary(volley::Request::new(compressible()).with_compression(None))
            .await
            .unwrap();
        assert_eq!(reply.into_inner().message.len(), 10_000);
    })
    .await;
}

/// A greeter whose responses pick zstd themselves.
struct ZstdGreeter;

impl volley_examples::helloworld::Greeter for ZstdGreeter {
    async fn say_hello(
        &self,
        request: volley::Request<volley_examples::helloworld::HelloRequest>,
    ) -> Result<volley::Response<volley_examples::helloworld::HelloReply>, volley::Status> {
        let mut response = volley::Response::new(volley_examples::helloworld::HelloReply {
            message: request.into_inner().name.repeat(100),
        });
        response.set_compression(Some(CompressionEncoding::Zstd));
        Ok(response)
    }
}

/// A response's own choice (on a server that compresses by default with gzip) is used when
/// the client accepts it, and dropped (identity) otherwise.
#[tokio::test]
async fn a_response_chooses_its_own_compression_if_the_client_accepts_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .send_compressed(CompressionEncoding::Gzip)
            .add_service(volley_examples::helloworld::GreeterServer::new(ZstdGreeter))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let body = frame(&volley_examples::helloworld::HelloRequest {
        name: "zzzz".into(),
    });
    let path = "/helloworld.Greeter/SayHello";
    for (accept, compressed) in [("identity,zstd", true), ("identity,gzip", false)] {
        let mut headers = GRPC_HEADERS.to_vec();
        headers.push(("grpc-accept-encoding", accept));
        let resp = bounded(
            10,
            volley_integration_tests::raw_request(addr, "POST", path, &headers, body.clone()),
        )
        .await;
        assert_eq!(resp.grpc_status(), Some(0));
        assert_eq!(
            resp.headers
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap()),
            compressed.then_some("zstd"),
            "accept {accept}"
        );
        assert_eq!(resp.body[0], u8::from(compressed), "accept {accept}");
    }
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}
