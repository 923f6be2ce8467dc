//! Interceptors on both sides: a client interceptor adds credentials, a server interceptor
//! checks them, passes the caller to the handler through extensions, or rejects the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use volley::{Code, Request, Status};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{Caller, Event, TestServer, bounded};

fn check_token(req: &mut Request<()>) -> Result<(), Status> {
    match req.metadata().get("authorization") {
        Some("Bearer alice-token") => {
            req.extensions_mut().insert(Caller("alice".into()));
            Ok(())
        }
        Some(_) => Err(Status::permission_denied("unknown token")),
        None => Err(Status::unauthenticated("no authorization metadata")),
    }
}

fn message(text: &str) -> EchoRequest {
    EchoRequest {
        message: text.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn server_interceptor_rejects_or_passes_the_caller_on() {
    let mut server = TestServer::start_with(|b| b.interceptor(check_token)).await;
    let client = server.client();
    bounded(10, async {
        let status = client.unary(message("anonymous")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");

        let mut req = Request::new(message("hi"));
        req.metadata_mut()
            .insert("authorization", "Bearer bob-token")
            .unwrap();
        let status = client.unary(req).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status}");

        let mut req = Request::new(message("hi"));
        req.metadata_mut()
            .insert("authorization", "Bearer alice-token")
            .unwrap();
        let reply = client.unary(req).await.unwrap().into_inner();
        assert_eq!(reply.message, "alice: hi");

        // Streaming calls go through the interceptor too (a bidirectional call returns
        // before the server answers: the refusal comes with the first read).
        let mut stream = client
            .bidi(tokio_stream::iter(vec![message("x")]))
            .await
            .unwrap()
            .into_inner();
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    })
    .await;
    // Rejected calls never reached the handler.
    assert_eq!(server.next_event().await, Event::Started("hi".into()));
    assert!(
        server.events.try_recv().is_ok(),
        "the accepted call finished"
    );
    assert!(server.events.try_recv().is_err(), "no other handler ran");
}

#[tokio::test]
async fn client_interceptor_adds_metadata_and_can_reject_before_sending() {
    let server = TestServer::start_with(|b| b.interceptor(check_token)).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let channel = volley::Channel::builder(&server.target())
        .interceptor(move |req: &mut Request<()>| {
            if req.metadata().contains_key("x-refuse") {
                return Err(Status::cancelled("refused by the client interceptor"));
            }
            counter.fetch_add(1, Ordering::SeqCst);
            req.metadata_mut()
                .insert("authorization", "Bearer alice-token")
                .map_err(|e| Status::internal(e.to_string()))
        })
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        let reply = client.unary(message("hello")).await.unwrap().into_inner();
        assert_eq!(reply.message, "alice: hello");

        let mut req = Request::new(message("nope"));
        req.metadata_mut().insert("x-refuse", "1").unwrap();
        let status = client.unary(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Cancelled);
        assert_eq!(status.message(), "refused by the client interceptor");
    })
    .await;
    assert_eq!(sent.load(Ordering::SeqCst), 1);
}
