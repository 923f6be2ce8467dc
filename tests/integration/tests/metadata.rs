//! ASCII and binary metadata, sent by the client and echoed by the server in response headers
//! and trailers, for unary and streaming calls.

use volley::{MetadataMap, Request};
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{TestServer, bounded};

fn with_metadata<T>(message: T) -> Request<T> {
    let mut req = Request::new(message);
    let md = req.metadata_mut();
    md.insert("x-echo-ascii", "hello value").unwrap();
    md.append("x-echo-ascii", "second").unwrap();
    md.insert_bin("x-echo-data-bin", &[0xab, 0xab, 0xab])
        .unwrap();
    md.insert_bin("x-echo-empty-bin", b"").unwrap();
    md.insert("x-not-echoed", "nope").unwrap();
    req
}

fn check(md: &MetadataMap, where_: &str) {
    assert_eq!(
        md.get_all("x-echo-ascii").collect::<Vec<_>>(),
        vec!["hello value", "second"],
        "{where_}"
    );
    assert_eq!(
        md.get_bin("x-echo-data-bin").unwrap().unwrap().as_ref(),
        &[0xab, 0xab, 0xab],
        "{where_}"
    );
    assert_eq!(md.get_bin("x-echo-empty-bin").unwrap().unwrap().len(), 0);
    assert!(!md.contains_key("x-not-echoed"), "{where_}");
}

#[tokio::test]
async fn unary_headers_and_trailers() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = bounded(10, client.unary(with_metadata(EchoRequest::default())))
        .await
        .unwrap();
    check(resp.metadata(), "headers");
    check(resp.trailers(), "trailers");
}

#[tokio::test]
async fn server_streaming_headers_and_trailers() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let resp = client
            .server_stream(with_metadata(EchoRequest {
                count: 3,
                ..Default::default()
            }))
            .await
            .unwrap();
        check(resp.metadata(), "headers");
        let mut stream = resp.into_inner();
        while stream.message().await.unwrap().is_some() {}
        check(stream.trailers().unwrap(), "trailers");
    })
    .await;
}

#[tokio::test]
async fn bidi_and_client_streaming_headers_and_trailers() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let msgs = vec![EchoRequest::default(); 2];
        let resp = client
            .client_stream(with_metadata(tokio_stream::iter(msgs.clone())))
            .await
            .unwrap();
        check(resp.metadata(), "client-streaming headers");
        check(resp.trailers(), "client-streaming trailers");

        let resp = client
            .bidi(with_metadata(tokio_stream::iter(msgs)))
            .await
            .unwrap();
        // A bidirectional call returns before its headers: the stream waits for them.
        assert!(resp.metadata().is_empty());
        let mut stream = resp.into_inner();
        check(stream.headers().await.unwrap(), "bidi headers");
        while stream.message().await.unwrap().is_some() {}
        check(stream.trailers().unwrap(), "bidi trailers");
    })
    .await;
}
