//! Every server call runs in a `grpc.server` span with OpenTelemetry's RPC fields, recorded
//! by a real `tracing` subscriber (a small one written here, recording spans in memory).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use volley::Code;
use volley_integration_tests::echo::EchoRequest;
use volley_integration_tests::{TestServer, bounded};

/// One recorded span: its name and fields.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: BTreeMap<String, String>,
    /// Messages of the events logged inside it.
    events: Vec<String>,
}

/// Records every span and the events inside them.
#[derive(Clone, Default)]
struct Spans {
    next: Arc<AtomicU64>,
    spans: Arc<Mutex<BTreeMap<u64, SpanRecord>>>,
    current: Arc<Mutex<Vec<u64>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut record = SpanRecord {
            name: span.metadata().name().to_owned(),
            ..Default::default()
        };
        span.record(&mut Fields(&mut record.fields));
        self.spans.lock().unwrap().insert(id, record);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(record) = self.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut record.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(&current) = self.current.lock().unwrap().last() else {
            return;
        };
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        if let Some(record) = self.spans.lock().unwrap().get_mut(&current) {
            record
                .events
                .push(fields.remove("message").unwrap_or_default());
        }
    }

    fn enter(&self, span: &Id) {
        self.current.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.current.lock().unwrap().pop();
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

/// A recording subscriber, the default while the guard lives, and an echo server. The tests'
/// runtime is single-threaded, so the subscriber covers the server's tasks too.
async fn traced_server() -> (Spans, tracing::subscriber::DefaultGuard, TestServer) {
    let spans = Spans::default();
    let guard = tracing::subscriber::set_default(spans.clone());
    (spans, guard, TestServer::start().await)
}

fn say(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_server_call_runs_in_a_span_with_the_rpc_fields() {
    let (spans, _guard, server) = traced_server().await;
    let client = server.client();
    bounded(10, async {
        client.unary(say("hi")).await.unwrap();
        let failing = EchoRequest {
            status_code: Code::NotFound as i32,
            ..say("no")
        };
        client.unary(failing).await.unwrap_err();
    })
    .await;
    let calls = spans.named("grpc.server");
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (call, code) in calls.iter().zip(["0", "5"]) {
        let field = |name: &str| call.fields.get(name).map(String::as_str);
        assert_eq!(field("rpc.system"), Some("grpc"));
        assert_eq!(field("rpc.service"), Some("volley.test.Echo"));
        assert_eq!(field("rpc.method"), Some("Unary"));
        assert_eq!(field("otel.name"), Some("volley.test.Echo/Unary"));
        assert_eq!(field("otel.kind"), Some("server"));
        assert_eq!(field("network.peer.address"), Some("127.0.0.1"));
        assert!(field("network.peer.port").is_some());
        assert_eq!(field("rpc.grpc.status_code"), Some(code), "{call:?}");
    }
}

#[tokio::test]
async fn every_client_call_runs_in_a_span_that_ends_with_its_status() {
    let (spans, _guard, server) = traced_server().await;
    let client = server.client();
    bounded(10, async {
        client.unary(say("hi")).await.unwrap();
        // A stream's span records the status when the stream ends.
        let two = EchoRequest {
            count: 2,
            ..say("s")
        };
        let mut replies = client.server_stream(two).await.unwrap().into_inner();
        while replies.message().await.unwrap().is_some() {}
        // A stream dropped before its end is CANCELLED.
        let many = EchoRequest {
            count: 1000,
            ..say("d")
        };
        drop(client.server_stream(many).await.unwrap());
    })
    .await;
    let calls = spans.named("grpc.client");
    assert_eq!(calls.len(), 3, "{calls:?}");
    for (call, (method, code)) in
        calls
            .iter()
            .zip([("Unary", "0"), ("ServerStream", "0"), ("ServerStream", "1")])
    {
        let field = |name: &str| call.fields.get(name).map(String::as_str);
        assert_eq!(field("rpc.system"), Some("grpc"));
        assert_eq!(field("otel.kind"), Some("client"));
        assert_eq!(field("rpc.service"), Some("volley.test.Echo"));
        assert_eq!(field("rpc.method"), Some(method));
        assert_eq!(field("server.address"), Some(&*server.addr.to_string()));
        assert_eq!(field("rpc.grpc.status_code"), Some(code), "{call:?}");
    }
}
