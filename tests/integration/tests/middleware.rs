//! Server middleware over loopback: awaiting, changing metadata, rejecting, following calls
//! of all four kinds to their end, ordering, cancellation and deadlines.

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use volley::middleware::{
    CallObserver, CallOutcome, CallStart, MessageEvent, Middleware, RpcKind, Side, StartFuture,
};
use volley::server::WithMiddleware;
use volley::{Code, MetadataMap, Request, Status};
use volley_integration_tests::echo::{EchoClient, EchoRequest, EchoServer};
use volley_integration_tests::{
    EchoService, Event, GRPC_HEADERS, TestServer, bounded, frame, raw_unary,
};

/// What the recording middleware saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Start(&'static str, RpcKind, String),
    Headers(&'static str),
    Request(&'static str, String),
    Response(&'static str, String),
    End(&'static str, Code),
}

/// Records every event of every call, named `name`; rejects calls whose metadata has
/// `x-reject: <name>`.
struct Recorder {
    name: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
    side: Side,
}

struct RecordCall {
    name: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Middleware for Recorder {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        Box::pin(async move {
            assert_eq!(call.side(), self.side);
            if self.side == Side::Client {
                call.metadata_mut().insert("x-echo-by", self.name).unwrap();
            }
            let _ = self
                .seen
                .send(Seen::Start(self.name, call.kind(), call.path().to_owned()));
            if call.metadata().get("x-reject") == Some(self.name) {
                return Err(Status::permission_denied(format!("{} says no", self.name)));
            }
            Ok(Some(Box::new(RecordCall {
                name: self.name,
                seen: self.seen.clone(),
            }) as Box<dyn CallObserver>))
        })
    }
}

fn text(event: &MessageEvent<'_>) -> String {
    let any = event.message();
    if let Some(r) = any.downcast_ref::<EchoRequest>() {
        return r.message.clone();
    }
    if let Some(r) = any.downcast_ref::<volley_integration_tests::echo::EchoReply>() {
        return r.message.clone();
    }
    "?".into()
}

impl CallObserver for RecordCall {
    fn wants_messages(&self) -> bool {
        true
    }

    fn response_headers(&mut self, _headers: &MetadataMap) {
        let _ = self.seen.send(Seen::Headers(self.name));
    }

    fn request_message(&mut self, message: &MessageEvent<'_>) {
        let _ = self.seen.send(Seen::Request(self.name, text(message)));
    }

    fn response_message(&mut self, message: &MessageEvent<'_>) {
        let _ = self.seen.send(Seen::Response(self.name, text(message)));
    }

    fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
        let _ = self
            .seen
            .send(Seen::End(self.name, outcome.status().code()));
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s);
    }
    out
}

/// Waits for `name`'s end of the current call, returning everything seen up to it.
async fn until_end(rx: &mut mpsc::UnboundedReceiver<Seen>, name: &str) -> Vec<Seen> {
    let mut out = Vec::new();
    while let Some(s) = rx.recv().await {
        let end = matches!(&s, Seen::End(n, _) if *n == name);
        out.push(s);
        if end {
            break;
        }
    }
    out
}

/// An echo server whose calls a `Recorder` named "m" follows.
async fn recorded_server() -> (TestServer, mpsc::UnboundedReceiver<Seen>) {
    let (tx, seen) = mpsc::unbounded_channel();
    let recorder = Recorder {
        name: "m",
        seen: tx,
        side: Side::Server,
    };
    (
        TestServer::start_with(|b| b.middleware(recorder)).await,
        seen,
    )
}

fn say(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

/// Makes a call of each kind; checks what `name` saw of the unary, server-streaming and
/// client-streaming ones (the same on either side), and returns what it saw of the bidi one
/// (whose order differs: a server sends its headers before reading).
async fn four_kinds(
    client: &EchoClient,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    name: &'static str,
) -> Vec<Seen> {
    client.unary(say("u")).await.unwrap();
    assert_eq!(
        until_end(seen, name).await,
        [
            Seen::Start(name, RpcKind::Unary, "/volley.test.Echo/Unary".into()),
            Seen::Request(name, "u".into()),
            Seen::Headers(name),
            Seen::Response(name, "u".into()),
            Seen::End(name, Code::Ok),
        ]
    );

    let request = EchoRequest {
        count: 2,
        ..say("s")
    };
    let mut replies = client.server_stream(request).await.unwrap().into_inner();
    while replies.message().await.unwrap().is_some() {}
    assert_eq!(
        until_end(seen, name).await,
        [
            Seen::Start(
                name,
                RpcKind::ServerStreaming,
                "/volley.test.Echo/ServerStream".into()
            ),
            Seen::Request(name, "s".into()),
            Seen::Headers(name),
            Seen::Response(name, "s".into()),
            Seen::Response(name, "s".into()),
            Seen::End(name, Code::Ok),
        ]
    );

    let messages = tokio_stream::iter([say("a"), say("b")]);
    client.client_stream(messages).await.unwrap();
    assert_eq!(
        until_end(seen, name).await,
        [
            Seen::Start(
                name,
                RpcKind::ClientStreaming,
                "/volley.test.Echo/ClientStream".into()
            ),
            Seen::Request(name, "a".into()),
            Seen::Request(name, "b".into()),
            Seen::Headers(name),
            Seen::Response(name, "ab".into()),
            Seen::End(name, Code::Ok),
        ]
    );

    let (tx, rx) = mpsc::channel(4);
    let mut replies = client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(say("x")).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().message, "x");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    until_end(seen, name).await
}

#[tokio::test]
async fn an_observer_follows_calls_of_all_four_kinds() {
    let (server, mut seen) = recorded_server().await;
    let client = server.client();
    bounded(10, async {
        let events = four_kinds(&client, &mut seen, "m").await;
        assert_eq!(
            events[0],
            Seen::Start("m", RpcKind::BidiStreaming, "/volley.test.Echo/Bidi".into())
        );
        assert!(events.contains(&Seen::Request("m", "x".into())));
        assert!(events.contains(&Seen::Response("m", "x".into())));
        assert_eq!(events.last(), Some(&Seen::End("m", Code::Ok)));

        // An error from the handler ends the call with it.
        let failing = EchoRequest {
            status_code: Code::NotFound as i32,
            ..say("f")
        };
        assert_eq!(
            client.unary(failing).await.unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            until_end(&mut seen, "m").await.last(),
            Some(&Seen::End("m", Code::NotFound))
        );
    })
    .await;
}

/// Asks an "auth service" (a task) whether the token is good, and tells the handler who
/// called through the metadata.
struct AsyncAuth {
    ask: mpsc::Sender<(String, oneshot::Sender<Option<String>>)>,
}

impl Middleware for AsyncAuth {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        Box::pin(async move {
            let token = call
                .metadata()
                .get("authorization")
                .unwrap_or("")
                .to_owned();
            let (tx, rx) = oneshot::channel();
            self.ask
                .send((token, tx))
                .await
                .map_err(|_| Status::unavailable("auth service gone"))?;
            match rx.await {
                Ok(Some(user)) => {
                    call.metadata_mut().insert("x-echo-user", &user).unwrap();
                    Ok(None)
                }
                _ => Err(Status::unauthenticated("bad token")),
            }
        })
    }
}

#[tokio::test]
async fn a_middleware_awaits_changes_metadata_and_rejects() {
    let (ask, mut questions) = mpsc::channel::<(String, oneshot::Sender<Option<String>>)>(4);
    tokio::spawn(async move {
        while let Some((token, answer)) = questions.recv().await {
            let _ = answer.send((token == "Bearer good").then(|| "alice".to_owned()));
        }
    });
    let mut server = TestServer::start_with(|b| b.middleware(AsyncAuth { ask })).await;
    let client = server.client();
    bounded(10, async {
        let mut request = Request::new(say("hi"));
        request
            .metadata_mut()
            .insert("authorization", "Bearer good")
            .unwrap();
        let reply = client.unary(request).await.unwrap();
        // The echo service echoes x-echo-* request metadata: the middleware's, here.
        assert_eq!(reply.metadata().get("x-echo-user"), Some("alice"));
        assert_eq!(server.next_event().await, Event::Started("hi".into()));

        let mut request = Request::new(say("intruder"));
        request
            .metadata_mut()
            .insert("authorization", "Bearer bad")
            .unwrap();
        let status = client.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        // The handler never ran: the next call is the next event.
        client.unary(Request::new(say("x"))).await.unwrap_err();
        let mut request = Request::new(say("after"));
        request
            .metadata_mut()
            .insert("authorization", "Bearer good")
            .unwrap();
        client.unary(request).await.unwrap();
        assert_eq!(server.next_event().await, Event::Finished("hi".into()));
        assert_eq!(server.next_event().await, Event::Started("after".into()));
    })
    .await;
}

#[tokio::test]
async fn server_middleware_runs_before_the_services_and_ends_after() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let service =
        WithMiddleware::new(EchoServer::new(EchoService::new(events))).middleware(Recorder {
            name: "service",
            seen: tx.clone(),
            side: Side::Server,
        });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        volley::Server::builder()
            .middleware(Recorder {
                name: "server",
                seen: tx,
                side: Side::Server,
            })
            .add_service(service)
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let client = EchoClient::new(volley::Channel::new(&format!("http://{addr}")).unwrap());
    bounded(10, async {
        client.unary(say("o")).await.unwrap();
        let events = until_end(&mut seen, "server").await;
        let order: Vec<&Seen> = events
            .iter()
            .filter(|s| matches!(s, Seen::Start(..) | Seen::End(..)))
            .collect();
        assert_eq!(
            order,
            [
                &Seen::Start("server", RpcKind::Unary, "/volley.test.Echo/Unary".into()),
                &Seen::Start("service", RpcKind::Unary, "/volley.test.Echo/Unary".into()),
                &Seen::End("service", Code::Ok),
                &Seen::End("server", Code::Ok),
            ]
        );

        // The service's middleware rejects: the server's observer sees the call end with it.
        let mut request = Request::new(say("r"));
        request
            .metadata_mut()
            .insert("x-reject", "service")
            .unwrap();
        let status = client.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "service says no");
        let events = until_end(&mut seen, "server").await;
        assert_eq!(
            events.last(),
            Some(&Seen::End("server", Code::PermissionDenied))
        );
        assert!(!events.iter().any(|s| matches!(s, Seen::End("service", _))));
    })
    .await;
    drop(stop);
    drain(&mut seen);
}

#[tokio::test]
async fn cancelled_and_expired_calls_end_so() {
    let (server, mut seen) = recorded_server().await;
    let client = server.client();
    bounded(10, async {
        // The client goes away during the call.
        let slow = EchoRequest {
            sleep_ms: 10_000,
            ..say("slow")
        };
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.unary(slow).await }
        });
        assert!(matches!(seen.recv().await, Some(Seen::Start(..))));
        call.abort();
        let events = until_end(&mut seen, "m").await;
        assert_eq!(events.last(), Some(&Seen::End("m", Code::Cancelled)));

        // The deadline passes while the handler runs (a raw client, which does not cancel
        // at its end of the deadline).
        let mut headers = GRPC_HEADERS.to_vec();
        headers.push(("grpc-timeout", "50m"));
        let late = EchoRequest {
            sleep_ms: 10_000,
            ..say("late")
        };
        let response = raw_unary(server.addr, &headers, frame(&late)).await;
        assert_eq!(response.grpc_status(), Some(Code::DeadlineExceeded as i32));
        let events = until_end(&mut seen, "m").await;
        assert_eq!(events.last(), Some(&Seen::End("m", Code::DeadlineExceeded)));
    })
    .await;
}

#[tokio::test]
async fn a_client_middleware_follows_calls_of_all_four_kinds() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let mut server = TestServer::start().await;
    let channel = volley::Channel::builder(&server.target())
        .middleware(Recorder {
            name: "c",
            seen: tx,
            side: Side::Client,
        })
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        // The middleware's metadata reaches the server (which echoes x-echo-*).
        let reply = client.unary(say("u")).await.unwrap();
        assert_eq!(reply.metadata().get("x-echo-by"), Some("c"));
        until_end(&mut seen, "c").await;
        assert_eq!(
            four_kinds(&client, &mut seen, "c").await,
            [
                Seen::Start("c", RpcKind::BidiStreaming, "/volley.test.Echo/Bidi".into()),
                Seen::Request("c", "x".into()),
                Seen::Headers("c"),
                Seen::Response("c", "x".into()),
                Seen::End("c", Code::Ok),
            ]
        );

        // A bidi call dropped before its end ends CANCELLED.
        let (tx, rx) = mpsc::channel(4);
        let replies = client
            .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
        drop(replies);
        drop(tx);
        assert_eq!(
            until_end(&mut seen, "c").await.last(),
            Some(&Seen::End("c", Code::Cancelled))
        );

        // A rejection ends the call before anything is sent.
        while server.events.try_recv().is_ok() {}
        let mut request = Request::new(say("no"));
        request.metadata_mut().insert("x-reject", "c").unwrap();
        let status = client.unary(request).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        // The rejecting middleware has no observer to end; it saw the start.
        assert_eq!(
            drain(&mut seen),
            [Seen::Start(
                "c",
                RpcKind::Unary,
                "/volley.test.Echo/Unary".into()
            )]
        );
        client.unary(say("next")).await.unwrap();
        assert_eq!(server.next_event().await, Event::Started("next".into()));
    })
    .await;
}
