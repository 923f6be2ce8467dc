//! Traces and metrics for every call, with no code in the handlers.
//!
//! - **Traces**: Volley opens a `grpc.client` and a `grpc.server` `tracing` span per call;
//!   `tracing-opentelemetry` turns them into OpenTelemetry spans, and the `opentelemetry`
//!   feature carries the trace context (`traceparent`) in metadata, so the server's span is
//!   the client's child. Here a small exporter collects the finished spans to print them; a
//!   real program exports them with OTLP.
//! - **Metrics**: [`volley::otel::Metrics`] records gRFC A66's instruments on both sides; the
//!   `opentelemetry-prometheus` exporter renders them as Prometheus text, served on
//!   `GET /metrics` by a few lines of HTTP/1.1 below. The program scrapes its own endpoint
//!   once and prints what a Prometheus server would read.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use volley::otel::Metrics;
use volley::{Channel, Server};

use crate::greeter::MyGreeter;
use crate::helloworld::{GreeterClient, GreeterServer, HelloRequest};

/// Keeps finished spans, to print them.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

/// What the run saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// One line per span: kind, name, trace, span and parent IDs, status code.
    pub spans: Vec<String>,
    /// The Prometheus text served on `/metrics`.
    pub prometheus: String,
}

/// Makes `calls` calls (the last one with an empty name, which the greeter rejects), then
/// prints the spans and the scraped metrics.
pub async fn run(out: &mut impl Write, calls: usize) -> Result<Seen, Box<dyn std::error::Error>> {
    // Traces: tracing spans -> OpenTelemetry spans -> the collecting exporter. The
    // subscriber is this thread's default (the caller runs a current-thread runtime, so the
    // server's tasks run here too).
    let spans = Collect::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    // Volley's spans only (h2 has TRACE spans of its own).
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(tracer_provider.tracer("observability"))
            .with_filter(Targets::new().with_target("volley", Level::INFO)),
    );
    let _default = tracing::subscriber::set_default(subscriber);

    // Metrics: A66's instruments, read by the Prometheus exporter.
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()?;
    let meter_provider = SdkMeterProvider::builder().with_reader(exporter).build();
    let metrics = Metrics::new(&meter_provider.meter("volley"));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .middleware(metrics.clone())
            .add_service(GreeterServer::new(MyGreeter::default()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let metrics_endpoint = serve_metrics(registry).await?;
    writeln!(
        out,
        "Prometheus metrics on http://{metrics_endpoint}/metrics"
    )?;

    let channel = Channel::builder(&format!("http://{addr}"))
        .middleware(metrics)
        .build()?;
    let client = GreeterClient::new(channel);
    for i in 0..calls {
        let name = if i + 1 == calls {
            String::new()
        } else {
            format!("caller {i}")
        };
        match client.say_hello(HelloRequest { name }).await {
            Ok(reply) => writeln!(out, "call {i}: {}", reply.into_inner().message)?,
            Err(status) => writeln!(out, "call {i}: {status}")?,
        }
    }
    // The server's spans end with its calls: stop it and wait.
    let _ = stop.send(());
    server.await??;
    tracer_provider.force_flush()?;

    writeln!(out, "\nspans:")?;
    let mut lines = Vec::new();
    for span in spans
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let status = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "rpc.grpc.status_code")
            .map_or("-".to_owned(), |kv| kv.value.to_string());
        lines.push(format!(
            "{:?} {} trace={} span={} parent={} rpc.grpc.status_code={status}",
            span.span_kind,
            span.name,
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.parent_span_id,
        ));
    }
    for line in &lines {
        writeln!(out, "  {line}")?;
    }

    let prometheus = scrape(metrics_endpoint).await?;
    writeln!(out, "\nGET /metrics (the grpc_ series without buckets):")?;
    for line in prometheus
        .lines()
        .filter(|l| l.starts_with("grpc_") && !l.contains("_bucket"))
    {
        writeln!(out, "  {line}")?;
    }
    Ok(Seen {
        spans: lines,
        prometheus,
    })
}

/// Serves the registry's metrics as Prometheus text on `GET /metrics` (HTTP/1.1, one
/// request per connection), until the program ends.
async fn serve_metrics(registry: prometheus::Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let response = if request[..n].starts_with(b"GET /metrics ") {
                    let text = prometheus::TextEncoder::new()
                        .encode_to_string(&registry.gather())
                        .unwrap_or_default();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// `GET /metrics` from `addr`: the response's body.
async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut socket = TcpStream::connect(addr).await?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    socket.read_to_string(&mut response).await?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!("bad response: {response}"))),
    }
}
