//! Server reflection over a real loopback connection, with Volley's own reflection client:
//! every request kind of both packages, the dependencies sent with a file, and errors that
//! are answers (the stream goes on), not broken streams.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prost::Message;
use prost_types::FileDescriptorProto;
use tokio::net::TcpListener;
use volley::Channel;
use volley_reflection::proto::v1::server_reflection_request::MessageRequest;
use volley_reflection::proto::v1::server_reflection_response::MessageResponse;
use volley_reflection::proto::v1::{
    ExtensionRequest, ServerReflectionClient, ServerReflectionRequest,
};
use volley_reflection::proto::v1alpha::ServerReflectionClient as V1AlphaClient;

/// A server with health and both reflection services; returns its address.
async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let reflection = volley_reflection::Builder::new()
        .register_encoded_file_descriptor_set(volley_health::FILE_DESCRIPTOR_SET)
        .build()
        .unwrap();
    let (_reporter, health) = volley_health::health_service();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        volley::Server::builder()
            .add_service(health)
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha())
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    (addr, stop)
}

fn ask(message: MessageRequest) -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    }
}

/// Sends `requests` on one stream and returns the answers, in order.
async fn exchange(
    addr: std::net::SocketAddr,
    requests: Vec<ServerReflectionRequest>,
) -> Vec<MessageResponse> {
    let client = ServerReflectionClient::new(Channel::new(&format!("http://{addr}")).unwrap());
    let n = requests.len();
    let mut responses = tokio::time::timeout(
        Duration::from_secs(10),
        client.server_reflection_info(tokio_stream::iter(requests)),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        let response = tokio::time::timeout(Duration::from_secs(10), responses.message())
            .await
            .unwrap()
            .unwrap()
            .expect("one answer per request");
        assert!(response.original_request.is_some());
        out.push(response.message_response.unwrap());
    }
    out
}

/// The names of the files in a file descriptor answer, in order.
fn file_names(answer: &MessageResponse) -> Vec<String> {
    let MessageResponse::FileDescriptorResponse(files) = answer else {
        panic!("not a file answer: {answer:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|b| {
            FileDescriptorProto::decode(&b[..])
                .unwrap()
                .name()
                .to_owned()
        })
        .collect()
}

fn error_code(answer: &MessageResponse) -> i32 {
    match answer {
        MessageResponse::ErrorResponse(e) => e.error_code,
        other => panic!("not an error: {other:?}"),
    }
}

#[tokio::test]
async fn lists_every_service_including_health_and_reflection() {
    let (addr, _stop) = start().await;
    let answers = exchange(addr, vec![ask(MessageRequest::ListServices(String::new()))]).await;
    let MessageResponse::ListServicesResponse(list) = &answers[0] else {
        panic!("{answers:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn files_by_symbol_and_name_come_with_their_dependencies() {
    let (addr, _stop) = start().await;
    let answers = exchange(
        addr,
        vec![
            ask(MessageRequest::FileContainingSymbol(
                "grpc.health.v1.Health".into(),
            )),
            ask(MessageRequest::FileContainingSymbol(
                "grpc.health.v1.Health.Watch".into(),
            )),
            ask(MessageRequest::FileContainingSymbol(
                ".grpc.health.v1.HealthCheckRequest".into(),
            )),
            ask(MessageRequest::FileContainingSymbol(
                "grpc.health.v1.HealthCheckResponse.ServingStatus".into(),
            )),
            ask(MessageRequest::FileByFilename(
                "grpc/health/v1/health.proto".into(),
            )),
            ask(MessageRequest::FileContainingSymbol("no.Such".into())),
            ask(MessageRequest::FileByFilename("no/such.proto".into())),
            // The stream still answers after errors.
            ask(MessageRequest::FileContainingSymbol(
                "grpc.reflection.v1.ServerReflection".into(),
            )),
        ],
    )
    .await;
    for answer in &answers[..3] {
        assert_eq!(file_names(answer), ["grpc/health/v1/health.proto"]);
    }
    assert_eq!(file_names(&answers[3]), ["grpc/health/v1/health.proto"]);
    assert_eq!(file_names(&answers[4]), ["grpc/health/v1/health.proto"]);
    assert_eq!(error_code(&answers[5]), volley::Code::NotFound as i32);
    assert_eq!(error_code(&answers[6]), volley::Code::NotFound as i32);
    assert_eq!(
        file_names(&answers[7]),
        ["grpc/reflection/v1/reflection.proto"]
    );
}

#[tokio::test]
async fn extensions_and_the_v1alpha_service() {
    let (addr, _stop) = start().await;
    let answers = exchange(
        addr,
        vec![
            ask(MessageRequest::AllExtensionNumbersOfType(
                "grpc.health.v1.HealthCheckRequest".into(),
            )),
            ask(MessageRequest::FileContainingExtension(ExtensionRequest {
                containing_type: "grpc.health.v1.HealthCheckRequest".into(),
                extension_number: 100,
            })),
            ask(MessageRequest::AllExtensionNumbersOfType("no.Such".into())),
        ],
    )
    .await;
    match &answers[0] {
        MessageResponse::AllExtensionNumbersResponse(r) => {
            assert_eq!(r.base_type_name, "grpc.health.v1.HealthCheckRequest");
            assert!(r.extension_number.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error_code(&answers[1]), volley::Code::NotFound as i32);
    assert_eq!(error_code(&answers[2]), volley::Code::NotFound as i32);

    // The old package answers the same.
    let client = V1AlphaClient::new(Channel::new(&format!("http://{addr}")).unwrap());
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([ask(MessageRequest::ListServices(
            String::new(),
        ))]))
        .await
        .unwrap()
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        response.message_response,
        Some(MessageResponse::ListServicesResponse(_))
    ));
}
