//! The observability example, alone in its test binary: it sets a thread-local `tracing`
//! subscriber, and `tracing` caches each callsite's interest process-wide, so a test calling
//! on another thread at the same moment (without that subscriber) could leave Volley's span
//! callsites disabled for it.

use volley_integration_tests::bounded;

/// One thread: the example's tracing subscriber is this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn observability_example_prints_linked_spans_and_serves_prometheus_text() {
    let mut out = Vec::new();
    let seen = bounded(30, volley_examples::observability::run(&mut out, 4))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    // Four calls, each a client span and its child server span in one trace.
    assert_eq!(seen.spans.len(), 8, "{out}");
    let field = |line: &str, name: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .unwrap()
    };
    for server in seen.spans.iter().filter(|l| l.starts_with("Server ")) {
        let parent = field(server, "parent");
        let client = seen
            .spans
            .iter()
            .find(|l| l.starts_with("Client ") && field(l, "span") == parent)
            .unwrap_or_else(|| panic!("the server span's parent is a client span:\n{out}"));
        assert_eq!(field(server, "trace"), field(client, "trace"));
    }
    assert_eq!(
        seen.spans
            .iter()
            .filter(|l| l.ends_with("rpc.grpc.status_code=3"))
            .count(),
        2,
        "the rejected call, on both sides:\n{out}"
    );
    let p = &seen.prometheus;
    assert!(
        p.contains(r#"grpc_server_call_started_total{grpc_method="helloworld.Greeter/SayHello",otel_scope_name="volley"} 4"#),
        "{p}"
    );
    assert!(
        p.lines()
            .any(|l| l.starts_with("grpc_client_call_duration_seconds_count")
                && l.contains(r#"grpc_status="INVALID_ARGUMENT""#)
                && l.ends_with(" 1")),
        "{p}"
    );
    assert!(p.contains("grpc_client_attempt_started_total"), "{p}");
}
