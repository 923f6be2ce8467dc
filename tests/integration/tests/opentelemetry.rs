//! The `opentelemetry` feature over loopback: gRFC A66 metrics read back from the SDK's
//! in-memory exporter, and W3C trace context carrying one trace through a client -> server
//! -> client -> server chain, read back from the in-memory span exporter.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prost::Message;
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt;
use volley::otel::Metrics;
use volley::{Channel, Code, Request, Response, Server, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{TestServer, bounded};

/// One data point: its attributes (`key=value`, sorted) and its value (a counter's sum, or
/// a histogram's count and sum).
#[derive(Debug, Clone, PartialEq)]
enum Point {
    Count(u64),
    Histogram { count: u64, sum: f64 },
}

type Points = BTreeMap<String, Vec<(String, Point)>>;

fn attributes<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> String {
    let mut list: Vec<String> = attributes
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect();
    list.sort();
    list.join(",")
}

/// Everything the exporter holds, by instrument name.
fn collect(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> Points {
    provider.force_flush().unwrap();
    let mut points = Points::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let entry = points.entry(metric.name().to_owned()).or_default();
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            entry.push((attributes(p.attributes()), Point::Count(p.value())));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            entry.push((
                                attributes(p.attributes()),
                                Point::Histogram {
                                    count: p.count(),
                                    sum: p.sum() as f64,
                                },
                            ));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            let bounds: Vec<f64> = p.bounds().collect();
                            assert_eq!(bounds.len(), 41, "A66's latency buckets");
                            entry.push((
                                attributes(p.attributes()),
                                Point::Histogram {
                                    count: p.count(),
                                    sum: p.sum(),
                                },
                            ));
                        }
                    }
                    other => panic!("unexpected data for {}: {other:?}", metric.name()),
                }
            }
        }
    }
    // A cumulative exporter repeats points at each flush: keep the last export only.
    exporter.reset();
    points
}

fn count(points: &Points, name: &str, attrs: &str) -> Option<u64> {
    points.get(name)?.iter().find_map(|(a, p)| match p {
        _ if a != attrs => None,
        Point::Count(n) => Some(*n),
        Point::Histogram { count, .. } => Some(*count),
    })
}

fn sum(points: &Points, name: &str, attrs: &str) -> Option<f64> {
    points.get(name)?.iter().find_map(|(a, p)| match p {
        Point::Histogram { sum, .. } if a == attrs => Some(*sum),
        _ => None,
    })
}

#[tokio::test]
async fn a66_metrics_are_recorded_on_both_sides() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let metrics = Metrics::new(&provider.meter("volley-test"));
    let server = {
        let metrics = metrics.clone();
        TestServer::start_with(move |b| b.middleware(metrics)).await
    };
    let target = format!("127.0.0.1:{}", server.addr.port());
    let channel = Channel::builder(&target)
        .middleware(metrics)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);

    let ok = EchoRequest {
        message: "hello".into(),
        response_size: 100,
        ..Default::default()
    };
    let failing = EchoRequest {
        status_code: Code::NotFound as i32,
        status_message: "no such thing".into(),
        ..Default::default()
    };
    for _ in 0..3 {
        bounded(10, client.unary(ok.clone())).await.unwrap();
    }
    let status = bounded(10, client.unary(failing.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let reply_len = {
        let reply = bounded(10, client.unary(ok.clone())).await.unwrap();
        reply.into_inner().encoded_len() as f64
    };
    let points = collect(&provider, &exporter);

    let method = "grpc.method=volley.test.Echo/Unary";
    // The canonical target: a bare host:port is the dns scheme's.
    let target = format!("grpc.target=dns:///{target}");
    let ok_attrs = format!("{method},grpc.status=OK,{target}");
    let failed_attrs = format!("{method},grpc.status=NOT_FOUND,{target}");
    assert_eq!(
        count(
            &points,
            "grpc.client.attempt.started",
            &format!("{method},{target}")
        ),
        Some(5),
        "{points:#?}"
    );
    assert_eq!(
        count(&points, "grpc.client.attempt.duration", &ok_attrs),
        Some(4)
    );
    assert_eq!(
        count(&points, "grpc.client.attempt.duration", &failed_attrs),
        Some(1)
    );
    assert_eq!(
        count(&points, "grpc.client.call.duration", &ok_attrs),
        Some(4)
    );
    assert_eq!(
        count(&points, "grpc.client.call.duration", &failed_attrs),
        Some(1)
    );
    let request_len = ok.encoded_len() as f64;
    assert_eq!(
        sum(
            &points,
            "grpc.client.attempt.sent_total_compressed_message_size",
            &ok_attrs
        ),
        Some(4.0 * request_len)
    );
    assert_eq!(
        sum(
            &points,
            "grpc.client.attempt.rcvd_total_compressed_message_size",
            &ok_attrs
        ),
        Some(4.0 * reply_len)
    );
    assert_eq!(
        sum(
            &points,
            "grpc.client.attempt.rcvd_total_compressed_message_size",
            &failed_attrs
        ),
        Some(0.0)
    );

    let server_ok = format!("{method},grpc.status=OK");
    let server_failed = format!("{method},grpc.status=NOT_FOUND");
    assert_eq!(count(&points, "grpc.server.call.started", method), Some(5));
    assert_eq!(
        count(&points, "grpc.server.call.duration", &server_ok),
        Some(4)
    );
    assert_eq!(
        count(&points, "grpc.server.call.duration", &server_failed),
        Some(1)
    );
    assert_eq!(
        sum(
            &points,
            "grpc.server.call.rcvd_total_compressed_message_size",
            &server_ok
        ),
        Some(4.0 * request_len)
    );
    assert_eq!(
        sum(
            &points,
            "grpc.server.call.sent_total_compressed_message_size",
            &server_ok
        ),
        Some(4.0 * reply_len)
    );
    assert_eq!(
        sum(
            &points,
            "grpc.server.call.sent_total_compressed_message_size",
            &server_failed
        ),
        Some(0.0)
    );
    // Durations are real: each call took more than nothing and less than the test.
    let total = sum(&points, "grpc.client.call.duration", &ok_attrs).unwrap();
    assert!(total > 0.0 && total < 10.0, "{total}");
}

#[tokio::test]
async fn retried_calls_record_one_attempt_per_try() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let metrics = Metrics::new(&provider.meter("volley-test"));
    let server = TestServer::start().await;
    let config = r#"{"methodConfig": [{"name": [{"service": "volley.test.Echo"}],
      "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s",
        "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    let target = format!("ipv4:{}", server.addr);
    let channel = Channel::builder(&target)
        .default_service_config(config)
        .middleware(metrics)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    let status = bounded(
        10,
        client.unary(EchoRequest {
            status_code: Code::Unavailable as i32,
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let points = collect(&provider, &exporter);
    let method = "grpc.method=volley.test.Echo/Unary";
    let target = format!("grpc.target=ipv4:///{}", server.addr);
    let failed = format!("{method},grpc.status=UNAVAILABLE,{target}");
    assert_eq!(
        count(
            &points,
            "grpc.client.attempt.started",
            &format!("{method},{target}")
        ),
        Some(3),
        "{points:#?}"
    );
    assert_eq!(
        count(&points, "grpc.client.attempt.duration", &failed),
        Some(3)
    );
    assert_eq!(
        count(&points, "grpc.client.call.duration", &failed),
        Some(1)
    );
}

/// A greeter that answers itself (the last hop) or asks the next hop and passes its answer
/// on with its own name.
struct Hop {
    name: &'static str,
    next: Option<GreeterClient>,
}

impl Greeter for Hop {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let message = match &self.next {
            None => format!("{} got {}", self.name, request.into_inner().name),
            Some(next) => {
                let reply = next.say_hello(request.into_inner()).await?.into_inner();
                format!("{} <- {}", self.name, reply.message)
            }
        };
        Ok(Response::new(HelloReply { message }))
    }
}

/// Serves `hop`; the server stops (after its calls end) when the sender is used or dropped,
/// and the handle ends then.
async fn serve(
    hop: Hop,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(GreeterServer::new(hop))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, server)
}

fn greeter(addr: SocketAddr) -> GreeterClient {
    GreeterClient::new(Channel::new(&format!("http://{addr}")).unwrap())
}

/// The process's one `tracing` subscriber, which exports to an in-memory span exporter. It
/// is global, not a thread's default: `tracing` caches each callsite's interest
/// process-wide, and the other tests here call on other threads at the same time.
fn spans() -> &'static (SdkTracerProvider, InMemorySpanExporter) {
    static SPANS: std::sync::OnceLock<(SdkTracerProvider, InMemorySpanExporter)> =
        std::sync::OnceLock::new();
    SPANS.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("volley-test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        (provider, exporter)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_a_client_server_client_server_chain() {
    let (provider, exporter) = spans();
    let (last, stop_last, last_server) = serve(Hop {
        name: "b",
        next: None,
    })
    .await;
    let (middle, stop_middle, middle_server) = serve(Hop {
        name: "a",
        next: Some(greeter(last)),
    })
    .await;
    let reply = bounded(
        10,
        greeter(middle).say_hello(HelloRequest { name: "x".into() }),
    )
    .await
    .unwrap();
    assert_eq!(reply.into_inner().message, "a <- b got x");
    // The server spans end with their calls: stopping the servers waits for that.
    drop((stop_middle, stop_last));
    bounded(10, middle_server).await.unwrap();
    bounded(10, last_server).await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let grpc: Vec<_> = spans
        .iter()
        // Only this test calls the greeter.
        .filter(|s| s.name.starts_with("helloworld.Greeter/"))
        .collect();
    let kinds: Vec<String> = grpc.iter().map(|s| format!("{:?}", s.span_kind)).collect();
    assert_eq!(grpc.len(), 4, "two client and two server spans: {kinds:?}");
    let trace = grpc[0].span_context.trace_id();
    assert!(
        grpc.iter().all(|s| s.span_context.trace_id() == trace),
        "one trace: {:#?}",
        grpc.iter()
            .map(|s| (
                &s.name,
                &s.span_kind,
                s.span_context.trace_id(),
                s.parent_span_id
            ))
            .collect::<Vec<_>>()
    );
    // Each span's parent is the one before it in the chain: client -> server -> client ->
    // server, the first client span being the root.
    let by_id: std::collections::HashMap<_, _> = grpc
        .iter()
        .map(|s| (s.span_context.span_id(), *s))
        .collect();
    let leaf = grpc
        .iter()
        .find(|s| {
            !grpc
                .iter()
                .any(|o| o.parent_span_id == s.span_context.span_id())
        })
        .expect("a last span");
    let mut chain = vec![format!("{:?}", leaf.span_kind)];
    let mut current = *leaf;
    while let Some(parent) = by_id.get(&current.parent_span_id) {
        chain.push(format!("{:?}", parent.span_kind));
        current = parent;
    }
    chain.reverse();
    assert_eq!(chain, ["Client", "Server", "Client", "Server"]);
    assert_eq!(
        current.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "the first client span is the root"
    );
}
