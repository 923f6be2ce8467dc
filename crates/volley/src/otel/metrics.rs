//! gRFC A66's metrics, recorded by a middleware.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::Status;
use crate::middleware::{
    AttemptOutcome, CallObserver, CallOutcome, CallStart, MessageEvent, Middleware, Side,
    StartFuture,
};

/// A66's bucket boundaries for latencies, in seconds.
const LATENCY_BUCKETS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// A66's bucket boundaries for message sizes, in bytes.
const SIZE_BUCKETS: [f64; 14] = [
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// A middleware that records gRFC A66's metrics for every call it sees:
///
/// | instrument | kind, unit | attributes |
/// |---|---|---|
/// | `grpc.client.attempt.started` | counter, `{attempt}` | `grpc.method`, `grpc.target` |
/// | `grpc.client.attempt.duration` | histogram, `s` | `grpc.method`, `grpc.target`, `grpc.status` |
/// | `grpc.client.attempt.sent_total_compressed_message_size` | histogram, `By` | same |
/// | `grpc.client.attempt.rcvd_total_compressed_message_size` | histogram, `By` | same |
/// | `grpc.client.call.duration` | histogram, `s` | `grpc.method`, `grpc.target`, `grpc.status` |
/// | `grpc.server.call.started` | counter, `{call}` | `grpc.method` |
/// | `grpc.server.call.duration` | histogram, `s` | `grpc.method`, `grpc.status` |
/// | `grpc.server.call.sent_total_compressed_message_size` | histogram, `By` | same |
/// | `grpc.server.call.rcvd_total_compressed_message_size` | histogram, `By` | same |
///
/// `grpc.method` is the full method name (`package.Service/Method`), `grpc.status` the code's
/// name (`OK`, `UNAVAILABLE`...), `grpc.target` the channel's canonical target
/// (`dns:///host:port`). Histograms use A66's bucket boundaries. A client call has one attempt
/// per try (retries, hedges and transparent retries each count); an attempt that did not
/// commit ends with its own failure, or CANCELLED when another attempt won.
///
/// Message sizes are the messages' protobuf sizes: exact for uncompressed calls, while for
/// compressed calls they are the sizes before compression (A66 asks for the compressed
/// sizes). An attempt's sizes are the bytes the call had sent and received when it ended
/// (every attempt in flight is sent every request message, and responses only arrive on the
/// attempt that committed).
///
/// Cheap to clone: clones share their instruments.
#[derive(Clone)]
pub struct Metrics {
    instruments: Arc<Instruments>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Instruments {
    client_attempt_started: Counter<u64>,
    client_attempt_duration: Histogram<f64>,
    client_attempt_sent: Histogram<u64>,
    client_attempt_rcvd: Histogram<u64>,
    client_call_duration: Histogram<f64>,
    server_call_started: Counter<u64>,
    server_call_duration: Histogram<f64>,
    server_call_sent: Histogram<u64>,
    server_call_rcvd: Histogram<u64>,
}

impl Metrics {
    /// Creates A66's instruments on `meter`.
    pub fn new(meter: &Meter) -> Metrics {
        let duration = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(what)
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let size = |name: &'static str, what: &'static str| {
            meter
                .u64_histogram(name)
                .with_description(what)
                .with_unit("By")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build()
        };
        Metrics {
            instruments: Arc::new(Instruments {
                client_attempt_started: meter
                    .u64_counter("grpc.client.attempt.started")
                    .with_description("Number of client call attempts started.")
                    .with_unit("{attempt}")
                    .build(),
                client_attempt_duration: duration(
                    "grpc.client.attempt.duration",
                    "End-to-end time taken to complete a client call attempt.",
                ),
                client_attempt_sent: size(
                    "grpc.client.attempt.sent_total_compressed_message_size",
                    "Compressed message bytes sent per client call attempt.",
                ),
                client_attempt_rcvd: size(
                    "grpc.client.attempt.rcvd_total_compressed_message_size",
                    "Compressed message bytes received per call attempt.",
                ),
                client_call_duration: duration(
                    "grpc.client.call.duration",
                    "Time taken by gRPC to complete an RPC from application's perspective.",
                ),
                server_call_started: meter
                    .u64_counter("grpc.server.call.started")
                    .with_description("Number of server calls started.")
                    .with_unit("{call}")
                    .build(),
                server_call_duration: duration(
                    "grpc.server.call.duration",
                    "End-to-end time taken to complete a call from server transport's perspective.",
                ),
                server_call_sent: size(
                    "grpc.server.call.sent_total_compressed_message_size",
                    "Compressed message bytes sent per server call.",
                ),
                server_call_rcvd: size(
                    "grpc.server.call.rcvd_total_compressed_message_size",
                    "Compressed message bytes received per server call.",
                ),
            }),
        }
    }
}

impl Middleware for Metrics {
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
        let method = KeyValue::new(
            "grpc.method",
            crate::method_path::name(call.path()).to_owned(),
        );
        let observer: Box<dyn CallObserver> = match call.side() {
            Side::Client => {
                let target = KeyValue::new("grpc.target", call.target().unwrap_or("").to_owned());
                Box::new(ClientCall {
                    instruments: self.instruments.clone(),
                    attributes: [method, target],
                    sent: 0,
                    rcvd: 0,
                })
            }
            Side::Server => {
                self.instruments
                    .server_call_started
                    .add(1, std::slice::from_ref(&method));
                Box::new(ServerCall {
                    instruments: self.instruments.clone(),
                    method,
                    sent: 0,
                    rcvd: 0,
                })
            }
        };
        Box::pin(std::future::ready(Ok(Some(observer))))
    }
}

fn status(status: &Status) -> KeyValue {
    KeyValue::new("grpc.status", status.code().name())
}

/// One client call: `grpc.method` and `grpc.target`, and the message bytes so far.
struct ClientCall {
    instruments: Arc<Instruments>,
    attributes: [KeyValue; 2],
    sent: u64,
    rcvd: u64,
}

impl ClientCall {
    fn with_status(&self, outcome: &Status) -> [KeyValue; 3] {
        let [method, target] = &self.attributes;
        [method.clone(), target.clone(), status(outcome)]
    }
}

impl CallObserver for ClientCall {
    fn wants_messages(&self) -> bool {
        true
    }

    fn request_message(&mut self, message: &MessageEvent<'_>) {
        self.sent += message.encoded_len() as u64;
    }

    fn response_message(&mut self, message: &MessageEvent<'_>) {
        self.rcvd += message.encoded_len() as u64;
    }

    fn attempt_started(&mut self) {
        self.instruments
            .client_attempt_started
            .add(1, &self.attributes);
    }

    fn attempt_ended(&mut self, attempt: &AttemptOutcome<'_>) {
        let attributes = self.with_status(attempt.status());
        let i = &self.instruments;
        i.client_attempt_duration
            .record(attempt.elapsed().as_secs_f64(), &attributes);
        i.client_attempt_sent.record(self.sent, &attributes);
        i.client_attempt_rcvd.record(self.rcvd, &attributes);
    }

    fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
        let attributes = self.with_status(outcome.status());
        self.instruments
            .client_call_duration
            .record(outcome.elapsed().as_secs_f64(), &attributes);
    }
}

/// One server call: `grpc.method`, and the message bytes so far.
struct ServerCall {
    instruments: Arc<Instruments>,
    method: KeyValue,
    sent: u64,
    rcvd: u64,
}

impl CallObserver for ServerCall {
    fn wants_messages(&self) -> bool {
        true
    }

    fn request_message(&mut self, message: &MessageEvent<'_>) {
        self.rcvd += message.encoded_len() as u64;
    }

    fn response_message(&mut self, message: &MessageEvent<'_>) {
        self.sent += message.encoded_len() as u64;
    }

    fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
        let attributes = [self.method, status(outcome.status())];
        let i = &self.instruments;
        i.server_call_duration
            .record(outcome.elapsed().as_secs_f64(), &attributes);
        i.server_call_sent.record(self.sent, &attributes);
        i.server_call_rcvd.record(self.rcvd, &attributes);
    }
}
