//! Backend load reports (ORCA, gRFC A51): a server attaches an `xds.data.orca.v3`
//! [`OrcaLoadReport`] to each call's trailers, as `endpoint-load-metrics-bin`, and client
//! balancers such as `weighted_round_robin` (gRFC A58) read it from the call's end.
//!
//! On the server, [`crate::server::ServerBuilder::call_metrics`] turns reporting on: every
//! call then carries a [`CallMetricsRecorder`] (in its request's extensions) that the handler
//! fills, and the report (the server-wide values of a [`ServerMetricsRecorder`], overridden by
//! the call's own) is sent with the call's trailers, whatever its status. As grpc-go's
//! `orca.CallMetricsRecorder` and `orca.ServerMetricsRecorder`.
//!
//! ```
//! use volley::orca::CallMetricsRecorder;
//! # async fn handler(request: volley::Request<()>) -> Result<volley::Response<()>, volley::Status> {
//! if let Some(metrics) = CallMetricsRecorder::from_request(&request) {
//!     metrics.set_cpu_utilization(0.4);
//!     metrics.set_named_metric("queue_depth", 12.0);
//! }
//! # Ok(volley::Response::new(())) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::metadata::MetadataMap;

/// The trailer that carries a call's load report (binary, base64 on the wire).
pub const ENDPOINT_LOAD_METRICS_BIN: &str = "endpoint-load-metrics-bin";

/// `xds.data.orca.v3.OrcaLoadReport`: what a backend reports about its load. Field numbers
/// and types are upstream's (`xds/data/orca/v3/orca_load_report.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrcaLoadReport {
    /// CPU utilization, as a fraction of the CPU available (may exceed 1).
    #[prost(double, tag = "1")]
    pub cpu_utilization: f64,
    /// Memory utilization, as a fraction of the memory available.
    #[prost(double, tag = "2")]
    pub mem_utilization: f64,
    /// Requests per second, whole (deprecated upstream in favour of `rps_fractional`).
    #[prost(uint64, tag = "3")]
    pub rps: u64,
    /// Application-specific costs of this request.
    #[prost(map = "string, double", tag = "4")]
    pub request_cost: HashMap<String, f64>,
    /// Resource utilizations, each a fraction of the resource available.
    #[prost(map = "string, double", tag = "5")]
    pub utilization: HashMap<String, f64>,
    /// Requests per second served by the backend.
    #[prost(double, tag = "6")]
    pub rps_fractional: f64,
    /// Errors per second served by the backend.
    #[prost(double, tag = "7")]
    pub eps: f64,
    /// Application-specific metrics.
    #[prost(map = "string, double", tag = "8")]
    pub named_metrics: HashMap<String, f64>,
    /// Application-specific utilization (e.g. the larger of CPU and memory); balancers prefer
    /// it to `cpu_utilization` when set.
    #[prost(double, tag = "9")]
    pub application_utilization: f64,
}

impl OrcaLoadReport {
    /// The report in a call's `trailers`, if there is one that decodes.
    pub fn from_trailers(trailers: &MetadataMap) -> Option<OrcaLoadReport> {
        let bytes = trailers.get_bin(ENDPOINT_LOAD_METRICS_BIN)?.ok()?;
        prost::Message::decode(bytes).ok()
    }

    /// Values of `other` that are set (non-zero, or present in a map) replace these.
    fn overlay(&mut self, other: &OrcaLoadReport) {
        let set = |mine: &mut f64, theirs: f64| {
            if theirs != 0.0 {
                *mine = theirs;
            }
        };
        set(&mut self.cpu_utilization, other.cpu_utilization);
        set(&mut self.mem_utilization, other.mem_utilization);
        set(&mut self.rps_fractional, other.rps_fractional);
        set(&mut self.eps, other.eps);
        set(
            &mut self.application_utilization,
            other.application_utilization,
        );
        if other.rps != 0 {
            self.rps = other.rps;
        }
        for (mine, theirs) in [
            (&mut self.request_cost, &other.request_cost),
            (&mut self.utilization, &other.utilization),
            (&mut self.named_metrics, &other.named_metrics),
        ] {
            mine.extend(theirs.iter().map(|(k, v)| (k.clone(), *v)));
        }
    }
}

/// Shared, lockable report behind both recorders.
#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<OrcaLoadReport>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, OrcaLoadReport> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

macro_rules! setters {
    () => {
        /// Sets the CPU utilization (a fraction of the CPU available; negative values are
        /// ignored).
        pub fn set_cpu_utilization(&self, value: f64) {
            if value >= 0.0 {
                self.0.lock().cpu_utilization = value;
            }
        }

        /// Sets the application-specific utilization (preferred to CPU by balancers;
        /// negative values are ignored).
        pub fn set_application_utilization(&self, value: f64) {
            if value >= 0.0 {
                self.0.lock().application_utilization = value;
            }
        }

        /// Sets the memory utilization (0 to 1; other values are ignored).
        pub fn set_memory_utilization(&self, value: f64) {
            if (0.0..=1.0).contains(&value) {
                self.0.lock().mem_utilization = value;
            }
        }

        /// Sets the requests per second the backend serves (negative values are ignored).
        pub fn set_qps(&self, value: f64) {
            if value >= 0.0 {
                self.0.lock().rps_fractional = value;
            }
        }

        /// Sets the errors per second the backend serves (negative values are ignored).
        pub fn set_eps(&self, value: f64) {
            if value >= 0.0 {
                self.0.lock().eps = value;
            }
        }

        /// Sets one named utilization (0 to 1; other values are ignored).
        pub fn set_utilization(&self, name: &str, value: f64) {
            if (0.0..=1.0).contains(&value) {
                self.0.lock().utilization.insert(name.to_owned(), value);
            }
        }

        /// Sets one application-specific metric.
        pub fn set_named_metric(&self, name: &str, value: f64) {
            self.0.lock().named_metrics.insert(name.to_owned(), value);
        }

        /// The report as recorded so far.
        pub fn report(&self) -> OrcaLoadReport {
            self.0.lock().clone()
        }
    };
}

/// The server-wide load values sent with every call's report (a call's own values win).
/// Cheap to clone: clones share the values, so a background task can keep them current.
#[derive(Debug, Clone, Default)]
pub struct ServerMetricsRecorder(Shared);

impl ServerMetricsRecorder {
    /// A recorder with nothing recorded.
    pub fn new() -> ServerMetricsRecorder {
        ServerMetricsRecorder::default()
    }

    setters!();
}

/// One call's load values, which its handler records; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct CallMetricsRecorder(Shared);

impl CallMetricsRecorder {
    /// The recorder of the call `request` belongs to, when the server reports call metrics.
    pub fn from_request<T>(request: &crate::Request<T>) -> Option<&CallMetricsRecorder> {
        request.extensions().get::<CallMetricsRecorder>()
    }

    /// Sets the cost of this request in `name`'s units.
    pub fn set_request_cost(&self, name: &str, value: f64) {
        self.0.lock().request_cost.insert(name.to_owned(), value);
    }

    setters!();

    /// Adds this call's report to `trailers` (nothing when nothing was recorded).
    pub(crate) fn write_to(
        &self,
        server: Option<&ServerMetricsRecorder>,
        trailers: &mut http::HeaderMap,
    ) {
        if let Some(bytes) = self.encode(server)
            && let Ok(value) = crate::metadata::binary_header_value(&bytes)
        {
            trailers.insert(
                http::HeaderName::from_static(ENDPOINT_LOAD_METRICS_BIN),
                value,
            );
        }
    }

    /// The trailer value for this call: the server's values with the call's over them, or
    /// `None` when nothing was recorded.
    pub(crate) fn encode(&self, server: Option<&ServerMetricsRecorder>) -> Option<Bytes> {
        let mut report = server.map(|s| s.report()).unwrap_or_default();
        report.overlay(&self.0.lock());
        if report == OrcaLoadReport::default() {
            return None;
        }
        Some(Bytes::from(prost::Message::encode_to_vec(&report)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_report_overlays_the_server_values_and_round_trips_through_trailers() {
        let server = ServerMetricsRecorder::new();
        server.set_cpu_utilization(0.5);
        server.set_qps(100.0);
        server.set_named_metric("a", 1.0);
        let call = CallMetricsRecorder::default();
        assert_eq!(
            CallMetricsRecorder::default().encode(None),
            None,
            "nothing recorded"
        );
        call.set_cpu_utilization(0.8);
        call.set_cpu_utilization(-1.0); // ignored
        call.set_memory_utilization(2.0); // ignored
        call.set_request_cost("bytes", 4096.0);
        call.set_named_metric("b", 2.0);
        let bytes = call.encode(Some(&server)).unwrap();
        let mut trailers = MetadataMap::new();
        trailers
            .insert_bin(ENDPOINT_LOAD_METRICS_BIN, &bytes)
            .unwrap();
        let report = OrcaLoadReport::from_trailers(&trailers).unwrap();
        assert_eq!(report.cpu_utilization, 0.8);
        assert_eq!(report.rps_fractional, 100.0);
        assert_eq!(report.mem_utilization, 0.0);
        assert_eq!(report.request_cost["bytes"], 4096.0);
        assert_eq!(report.named_metrics.len(), 2);

        trailers
            .insert_bin(ENDPOINT_LOAD_METRICS_BIN, b"\xff\xff")
            .unwrap();
        assert_eq!(OrcaLoadReport::from_trailers(&trailers), None);
    }
}
