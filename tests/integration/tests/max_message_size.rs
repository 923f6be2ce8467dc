//! Message size limits: RESOURCE_EXHAUSTED on either side, and the connection stays usable.

use volley::Code;
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{TestServer, bounded};

const FOUR_MIB: usize = 4 * 1024 * 1024;

/// The size of an EchoRequest whose payload is `n` bytes, minus the payload itself.
fn payload_for_encoded_len(total: usize) -> Vec<u8> {
    // field 6 (bytes): 1 tag byte + varint length + payload; 4 MiB needs a 4-byte varint.
    vec![7u8; total - 1 - 4]
}

#[tokio::test]
async fn oversize_request_is_rejected_and_connection_stays_usable() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(30, async {
        let first = client
            .unary(EchoRequest::default())
            .await
            .unwrap()
            .into_inner();

        let big = EchoRequest {
            payload: payload_for_encoded_len(FOUR_MIB + 1),
            ..Default::default()
        };
        assert_eq!(prost::Message::encoded_len(&big), FOUR_MIB + 1);
        let status = client.unary(big).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        assert!(status.message().contains("4194305"), "{status}");

        // Exactly the limit is fine.
        let limit = EchoRequest {
            payload: payload_for_encoded_len(FOUR_MIB),
            ..Default::default()
        };
        client.unary(limit).await.unwrap();

        let after = client
            .unary(EchoRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            after.peer, first.peer,
            "the same connection carried the next call"
        );
    })
    .await;
}

#[tokio::test]
async fn oversize_response_is_rejected_by_the_client() {
    let server = TestServer::start().await;
    let client = server.client().max_decoding_message_size(1000);
    bounded(10, async {
        let status = client
            .unary(EchoRequest {
                response_size: 2000,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        client
            .unary(EchoRequest {
                response_size: 100,
                ..Default::default()
            })
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn server_send_limit_and_client_send_limit() {
    let server = TestServer::start_with(|b| b.max_encoding_message_size(1000)).await;
    let client: EchoClient = server.client();
    bounded(10, async {
        let status = client
            .unary(EchoRequest {
                response_size: 2000,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");

        let small_sender = server.client().max_encoding_message_size(10);
        let status = small_sender
            .unary(EchoRequest {
                message: "far more than ten bytes".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    })
    .await;
}

#[tokio::test]
async fn oversize_message_in_a_request_stream() {
    let server = TestServer::start_with(|b| b.max_decoding_message_size(100)).await;
    let client = server.client();
    bounded(10, async {
        let msgs = vec![
            EchoRequest::default(),
            EchoRequest {
                payload: vec![0; 200],
                ..Default::default()
            },
        ];
        let status = client
            .client_stream(tokio_stream::iter(msgs))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        client.unary(EchoRequest::default()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn oversize_message_in_a_client_request_stream_fails_the_call_with_its_reason() {
    let server = TestServer::start().await;
    let client = server.client().max_encoding_message_size(100);
    bounded(10, async {
        let msgs = vec![
            EchoRequest::default(),
            EchoRequest {
                payload: vec![0; 200],
                ..Default::default()
            },
        ];
        let status = client
            .client_stream(tokio_stream::iter(msgs.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        // Depending on timing the failure ends the call before or after the response headers.
        let status = match client.bidi(tokio_stream::iter(msgs)).await {
            Err(status) => status,
            Ok(response) => {
                let mut replies = response.into_inner();
                loop {
                    match replies.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("the stream must fail"),
                        Err(status) => break status,
                    }
                }
            }
        };
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    })
    .await;
}
