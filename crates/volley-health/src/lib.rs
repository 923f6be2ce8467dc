//! gRPC's health checking service, `grpc.health.v1.Health` (`doc/health-checking.md` in
//! grpc/grpc), for Volley servers: `Check`, `Watch` and `List`, and a [`HealthReporter`]
//! that sets the status of the server (`""`) and of each service from any task.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let (reporter, health) = volley_health::health_service();
//! reporter.set_serving("helloworld.Greeter");
//! volley::Server::builder()
//!     .add_service(health)
//!     .serve_with_shutdown(
//!         "127.0.0.1:50051".parse().unwrap(),
//!         // On the signal (here: never), every service NOT_SERVING (watchers are told),
//!         // then the drain.
//!         reporter.shutdown_on(std::future::pending()),
//!     )
//!     .await
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use volley::{Request, Response, Status};

/// The health protocol's messages and service, generated from the crate's own copy of
/// `grpc/health/v1/health.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `grpc/health/v1/health.proto`, for a reflection service
/// (`volley_reflection::Builder::register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

pub use proto::health_check_response::ServingStatus;
use proto::{
    Health, HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    HealthServer,
};

/// `List` answers RESOURCE_EXHAUSTED above this many services (grpc-go's limit).
pub const MAX_LISTED_SERVICES: usize = 100;

/// The statuses, and whether the server is shutting down (then every status is NOT_SERVING
/// and stays so, and `Watch` streams end after saying it).
#[derive(Debug, Clone, Default)]
struct State {
    statuses: BTreeMap<String, ServingStatus>,
    shut_down: bool,
}

/// Sets the health of the server and its services. Cheap to clone; every clone changes the
/// same statuses, from any task or thread. The server as a whole (`""`) starts `SERVING`;
/// other services are unknown (`Check`: NOT_FOUND, `Watch`: `SERVICE_UNKNOWN`) until set.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    state: Arc<watch::Sender<State>>,
}

impl HealthReporter {
    /// Sets `service`'s status (`""` for the whole server). Watchers of the service are told
    /// when it changes. Ignored once [`HealthReporter::shutdown`] has run.
    pub fn set_status(&self, service: &str, status: ServingStatus) {
        self.state.send_if_modified(|state| {
            if state.shut_down || state.statuses.get(service) == Some(&status) {
                return false;
            }
            state.statuses.insert(service.to_owned(), status);
            true
        });
    }

    /// `set_status(service, SERVING)`.
    pub fn set_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::Serving);
    }

    /// `set_status(service, NOT_SERVING)`.
    pub fn set_not_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::NotServing);
    }

    /// Forgets `service`: it is unknown again (watchers are told `SERVICE_UNKNOWN`).
    pub fn clear(&self, service: &str) {
        self.state
            .send_if_modified(|state| state.statuses.remove(service).is_some());
    }

    /// The status `Check` would answer now (`None`: unknown).
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.state.borrow().statuses.get(service).copied()
    }

    /// Marks every service (and the server) NOT_SERVING for good, as a server about to drain
    /// does: watchers are told, then their streams end (so that they do not hold the drain
    /// open); later changes are ignored.
    pub fn shutdown(&self) {
        self.state.send_modify(|state| {
            state.shut_down = true;
            for status in state.statuses.values_mut() {
                *status = ServingStatus::NotServing;
            }
        });
    }

    /// A server shutdown signal: waits for `signal`, then runs [`HealthReporter::shutdown`]
    /// before the server starts draining. Give it to `serve_with_shutdown`.
    pub fn shutdown_on<F: Future<Output = ()>>(
        &self,
        signal: F,
    ) -> impl Future<Output = ()> + use<F> {
        let reporter = self.clone();
        async move {
            signal.await;
            reporter.shutdown();
        }
    }
}

/// The health service and the reporter that sets its statuses. Add the service to a server
/// with `Server::builder().add_service(..)`.
pub fn health_service() -> (HealthReporter, HealthServer<HealthService>) {
    let mut state = State::default();
    state.statuses.insert(String::new(), ServingStatus::Serving);
    let (sender, _) = watch::channel(state);
    let state = Arc::new(sender);
    (
        HealthReporter {
            state: state.clone(),
        },
        HealthServer::new(HealthService { state }),
    )
}

/// The `grpc.health.v1.Health` implementation; made by [`health_service`].
#[derive(Debug)]
pub struct HealthService {
    state: Arc<watch::Sender<State>>,
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.state.borrow().statuses.get(service) {
            Some(status) => Ok(Response::new(response(*status))),
            // Debug quotes and escapes the name; it is cut to 128 characters, so that an
            // unknown name cannot make the answer large.
            None => Err(Status::not_found(format!(
                "unknown service {:?}",
                service.chars().take(128).collect::<String>()
            ))),
        }
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        let state = self.state.borrow();
        if state.statuses.len() > MAX_LISTED_SERVICES {
            return Err(Status::resource_exhausted(format!(
                "the server has {} services, more than List returns ({MAX_LISTED_SERVICES})",
                state.statuses.len()
            )));
        }
        let statuses = state
            .statuses
            .iter()
            .map(|(name, status)| (name.clone(), response(*status)))
            .collect();
        Ok(Response::new(HealthListResponse { statuses }))
    }

    type WatchStream = volley::BoxStream<HealthCheckResponse>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let mut changes = self.state.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (status, shut_down) = {
                    let state = changes.borrow_and_update();
                    let status = state
                        .statuses
                        .get(&service)
                        .copied()
                        .unwrap_or(ServingStatus::ServiceUnknown);
                    (status, state.shut_down)
                };
                // Only changes are sent (a burst of them may come as its last state).
                if last != Some(status) {
                    last = Some(status);
                    if tx.send(Ok(response(status))).await.is_err() {
                        return; // the call ended
                    }
                }
                if shut_down {
                    return; // the stream ends: it must not hold the server's drain open
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
