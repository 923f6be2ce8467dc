//! Every status code round-trips with its message, over the wire, in both Trailers-Only and
//! trailers-after-messages responses.

use volley::{Code, Status};
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{GRPC_HEADERS, TestServer, bounded, frame, raw_unary};

const SPECIAL: &str = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

fn failing(code: Code, message: &str) -> EchoRequest {
    EchoRequest {
        status_code: code.as_i32(),
        status_message: message.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_code_round_trips_with_its_message() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(20, async {
        for code in Code::ALL.into_iter().skip(1) {
            for message in ["", "plain message", SPECIAL, "100% done"] {
                let status = client.unary(failing(code, message)).await.unwrap_err();
                assert_eq!(status.code(), code, "{message:?}");
                assert_eq!(status.message(), message);
                // The same status ends a stream that has already sent headers.
                let status = client
                    .client_stream(tokio_stream::iter(vec![failing(code, message)]))
                    .await
                    .unwrap_err();
                assert_eq!((status.code(), status.message()), (code, message));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn grpc_message_is_percent_encoded_on_the_wire() {
    let server = TestServer::start().await;
    let resp = raw_unary(
        server.addr,
        GRPC_HEADERS,
        frame(&failing(Code::NotFound, SPECIAL)),
    )
    .await;
    assert!(resp.headers_only, "an immediate error is Trailers-Only");
    assert_eq!(resp.grpc_status(), Some(5));
    let raw = resp.headers.get("grpc-message").unwrap().as_bytes();
    assert!(raw.iter().all(|b| (0x20..=0x7e).contains(b)), "{raw:?}");
    assert!(
        raw.starts_with(b"%09%0Atest with whitespace%0D%0A"),
        "{raw:?}"
    );
    assert_eq!(resp.grpc_message(), SPECIAL);
}

#[tokio::test]
async fn details_and_status_metadata_round_trip() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut request = volley::Request::new(failing(Code::Aborted, "with metadata"));
    request
        .metadata_mut()
        .insert("x-echo-reason", "conflict")
        .unwrap();
    request
        .metadata_mut()
        .insert_bin("x-echo-blob-bin", &[0, 1, 2, 255])
        .unwrap();
    let status: Status = bounded(10, client.unary(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.metadata().get("x-echo-reason"), Some("conflict"));
    assert_eq!(
        status
            .metadata()
            .get_bin("x-echo-blob-bin")
            .unwrap()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 255]
    );
}

#[tokio::test]
async fn a_panicking_handler_or_stream_ends_the_call_with_internal() {
    let server = TestServer::start().await;
    let client = server.client();
    bounded(10, async {
        let panic = || EchoRequest {
            message: "panic".into(),
            count: 3,
            ..Default::default()
        };
        let status = client.unary(panic()).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status}");

        let mut stream = client.server_stream(panic()).await.unwrap().into_inner();
        assert!(
            stream.message().await.unwrap().is_some(),
            "the first message"
        );
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status}");

        // The server goes on.
        client.unary(EchoRequest::default()).await.unwrap();
    })
    .await;
}
