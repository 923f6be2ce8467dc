//! OpenTelemetry (cargo feature `opentelemetry`): gRFC A66 metrics and W3C trace context.
//!
//! - **Metrics**: [`Metrics`] is a [`Middleware`](crate::middleware::Middleware) that records
//!   gRFC A66's per-call and per-attempt instruments on any OpenTelemetry
//!   [`Meter`](opentelemetry::metrics::Meter); set it on a server, a service or a channel
//!   (one value serves both sides).
//! - **Trace context**: with this feature, a call's `grpc.client` span sends its OpenTelemetry
//!   context in the W3C `traceparent` and `tracestate` metadata, and a server's `grpc.server`
//!   span takes the received context as its parent, so that a client -> server -> client
//!   chain is one trace. The spans are `tracing` spans; they become OpenTelemetry spans
//!   through [`tracing-opentelemetry`](https://docs.rs/tracing-opentelemetry)'s layer (without
//!   it, nothing is sent). Headers that are not valid W3C trace context are ignored.
//!
//! ```no_run
//! # fn demo(meter_provider: &dyn opentelemetry::metrics::MeterProvider) {
//! let meter = meter_provider.meter("volley");
//! let metrics = volley::otel::Metrics::new(&meter);
//! let server = volley::Server::builder().middleware(metrics.clone());
//! let channel = volley::Channel::builder("dns:///backend:50051").middleware(metrics);
//! # }
//! ```

mod metrics;
pub(crate) mod propagation;

pub use metrics::Metrics;
