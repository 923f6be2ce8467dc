//! A subchannel: one address, at most one HTTP/2 connection to it, and its connectivity state.
//!
//! `connect` starts attempts when IDLE; failed attempts make it TRANSIENT_FAILURE and are
//! retried after the backoff of `doc/connection-backoff.md` until one succeeds (READY). A
//! READY subchannel whose connection is lost or receives GOAWAY goes back to IDLE at once
//! (streams open on the old connection finish there) and waits for its balancer to ask for a
//! connection again; one whose keepalive ping goes unanswered closes the connection, goes to
//! TRANSIENT_FAILURE and reconnects. Every state change is reported to the channel's control
//! task.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::config::ChannelConfig;
use super::connectivity::ConnectivityState;
use super::resolver::Address;
use super::resolver::address::Kind;
use crate::Status;
use crate::transport::client::{self, ClientSettings, ConnectionSignals, Sender, StreamCount};
use crate::transport::keepalive::{KeepaliveParams, Pinger, keepalive};
use crate::transport::watch::Activity;

/// A subchannel, as balancers see it: a handle to share, compare and ask to connect. Clones
/// are the same subchannel.
#[derive(Clone)]
pub struct Subchannel {
    inner: Arc<dyn SubchannelImpl>,
}

/// What a [`Subchannel`] handle drives: the channel's own (below), or a test's fake
/// (`crate::testing`).
pub(crate) trait SubchannelImpl: Send + Sync + 'static {
    fn id(&self) -> u64;
    fn address(&self) -> &Address;
    fn state(&self) -> ConnectivityState;
    fn connect(&self);
    fn shutdown(&self);
    /// The stream opener of the connection and its generation, when READY.
    fn sender(&self) -> Option<(Sender, u64)>;
    /// How many calls are open on the current connection.
    fn active_streams(&self) -> usize;
    /// Connection `generation` refused a new stream.
    fn connection_refused_stream(&self, generation: u64);
}

/// A subchannel's state change, as the channel's control task receives it; `error` says why
/// for TRANSIENT_FAILURE and for a READY subchannel that went IDLE.
#[derive(Debug)]
pub(crate) struct SubchannelEvent {
    pub(crate) subchannel: Subchannel,
    pub(crate) state: ConnectivityState,
    pub(crate) error: Option<Status>,
}

/// Where subchannels report their state changes.
pub(crate) type EventSink = mpsc::UnboundedSender<SubchannelEvent>;

/// A new process-wide subchannel id.
pub(crate) fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Subchannel {
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn from_impl(inner: Arc<dyn SubchannelImpl>) -> Subchannel {
        Subchannel { inner }
    }

    /// A new IDLE subchannel of the channel's own kind, for `address`.
    pub(crate) fn new(
        address: Address,
        config: Arc<ChannelConfig>,
        events: EventSink,
        health_service: Option<String>,
    ) -> Subchannel {
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            id: next_id(),
            address,
            health_service,
            config,
            events,
            state: Mutex::new(State {
                state: ConnectivityState::Idle,
                connection: None,
                generation: 0,
            }),
            stop: Notify::new(),
            connection_gone: Notify::new(),
        });
        Subchannel { inner }
    }

    /// A number that identifies the subchannel within the process.
    pub fn id(&self) -> u64 {
        self.inner.id()
    }

    /// The address it connects to.
    pub fn address(&self) -> &Address {
        self.inner.address()
    }

    /// Its connectivity state now.
    pub fn state(&self) -> ConnectivityState {
        self.inner.state()
    }

    /// Starts connecting if IDLE (otherwise does nothing): attempts go on, with backoff,
    /// until one succeeds or the subchannel shuts down.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Shuts the subchannel down for good: no new calls; calls open on its connection
    /// finish, then the connection closes.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// The stream opener of the connection and its generation, when READY.
    pub(crate) fn sender(&self) -> Option<(Sender, u64)> {
        self.inner.sender()
    }

    /// How many calls are open on the current connection.
    pub(crate) fn active_streams(&self) -> usize {
        self.inner.active_streams()
    }

    /// Connection `generation` refused a new stream (it received GOAWAY or closed): back to
    /// IDLE, as if the GOAWAY had been seen.
    pub(crate) fn connection_refused_stream(&self, generation: u64) {
        self.inner.connection_refused_stream(generation);
    }
}

impl fmt::Debug for Subchannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subchannel")
            .field("id", &self.id())
            .field("address", self.address())
            .field("state", &self.state())
            .finish()
    }
}

impl PartialEq for Subchannel {
    fn eq(&self, other: &Subchannel) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Subchannel {}

impl std::hash::Hash for Subchannel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

/// The channel's own subchannel: the handle its connection tasks hold.
#[derive(Clone)]
struct RealSubchannel {
    inner: Arc<Inner>,
}

struct Inner {
    /// Itself, for the tasks it starts.
    me: Weak<Inner>,
    id: u64,
    address: Address,
    /// The service whose health the subchannel watches on each connection (gRFC A17), when
    /// the service config asks for health checking.
    health_service: Option<String>,
    config: Arc<ChannelConfig>,
    events: EventSink,
    state: Mutex<State>,
    /// Wakes a connect loop sleeping out its backoff when the subchannel shuts down.
    stop: Notify,
    /// Wakes the health check when the subchannel lets go of its connection (GOAWAY, loss,
    /// shutdown): its stream must end then, or it would hold the old connection open.
    connection_gone: Notify,
}

struct State {
    state: ConnectivityState,
    /// The connection, while READY.
    connection: Option<Connection>,
    /// Counts connections, so that news about an old one is ignored.
    generation: u64,
}

/// A connection just established, for `watch` to drive.
struct Established {
    generation: u64,
    driver: client::Driver,
    going_away: oneshot::Receiver<()>,
    pinger: Option<Pinger>,
    activity: Arc<Activity>,
    streams: StreamCount,
}

struct Connection {
    sender: Sender,
    generation: u64,
    /// Dropped when the subchannel lets go of the connection; it then closes once idle.
    _release: oneshot::Sender<()>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn real(&self) -> Option<RealSubchannel> {
        self.me.upgrade().map(|inner| RealSubchannel { inner })
    }
}

impl SubchannelImpl for Inner {
    fn id(&self) -> u64 {
        self.id
    }

    fn address(&self) -> &Address {
        &self.address
    }

    fn state(&self) -> ConnectivityState {
        self.lock().state
    }

    fn connect(&self) {
        if let Some(real) = self.real() {
            real.connect();
        }
    }

    fn shutdown(&self) {
        if let Some(real) = self.real() {
            real.shutdown();
        }
    }

    fn sender(&self) -> Option<(Sender, u64)> {
        self.lock()
            .connection
            .as_ref()
            .map(|c| (c.sender.clone(), c.generation))
    }

    fn active_streams(&self) -> usize {
        self.lock()
            .connection
            .as_ref()
            .map_or(0, |c| c.sender.active_streams())
    }

    fn connection_refused_stream(&self, generation: u64) {
        if let Some(real) = self.real() {
            real.connection_refused_stream(generation);
        }
    }
}

impl RealSubchannel {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock()
    }

    fn connect(&self) {
        {
            let mut state = self.lock();
            if state.state != ConnectivityState::Idle {
                return;
            }
            self.set_state(&mut state, ConnectivityState::Connecting, None);
        }
        tokio::spawn(self.clone().connect_loop());
    }

    fn shutdown(&self) {
        let mut state = self.lock();
        if state.state == ConnectivityState::Shutdown {
            return;
        }
        state.connection = None;
        self.set_state(&mut state, ConnectivityState::Shutdown, None);
        drop(state);
        self.inner.connection_gone.notify_waiters();
        self.inner.stop.notify_waiters();
    }

    fn connection_refused_stream(&self, generation: u64) {
        let mut state = self.lock();
        if state.connection.as_ref().map(|c| c.generation) == Some(generation) {
            state.connection = None;
            self.set_state(
                &mut state,
                ConnectivityState::Idle,
                Some(Status::unavailable("the connection refused a new stream")),
            );
            self.inner.connection_gone.notify_waiters();
        }
    }

    fn set_state(&self, state: &mut State, new: ConnectivityState, error: Option<Status>) {
        state.state = new;
        tracing::debug!(address = %self.inner.address, state = %new, "subchannel");
        let _ = self.inner.events.send(SubchannelEvent {
            subchannel: Subchannel {
                inner: self.inner.clone(),
            },
            state: new,
            error,
        });
    }

    async fn connect_loop(self) {
        let mut backoff = Backoff::new(self.inner.config.backoff);
        loop {
            let started = Instant::now();
            let delay = backoff.next_delay();
            let timeout = delay.max(self.inner.config.connect_timeout);
            let attempt = tokio::time::timeout(timeout, self.dial());
            let result = tokio::select! {
                r = attempt => r.unwrap_or_else(|_| Err(Status::unavailable(format!(
                    "timed out connecting to {} after {timeout:?}", self.inner.address
                )))),
                () = self.inner.stop.notified() => return,
            };
            let connected = {
                let mut state = self.lock();
                if state.state == ConnectivityState::Shutdown {
                    return;
                }
                match result {
                    Ok((sender, (driver, signals))) => {
                        state.generation += 1;
                        let generation = state.generation;
                        let ConnectionSignals {
                            going_away,
                            release,
                            pinger,
                            activity,
                            streams,
                        } = signals;
                        let health = self
                            .inner
                            .health_service
                            .clone()
                            .map(|service| (service, sender.clone()));
                        state.connection = Some(Connection {
                            sender,
                            generation,
                            _release: release,
                        });
                        // With health checking, the subchannel stays CONNECTING until the
                        // first health answer (gRFC A17).
                        if health.is_none() {
                            self.set_state(&mut state, ConnectivityState::Ready, None);
                        }
                        Some((
                            health,
                            Established {
                                generation,
                                driver,
                                going_away,
                                pinger,
                                activity,
                                streams,
                            },
                        ))
                    }
                    Err(status) => {
                        tracing::debug!(address = %self.inner.address, %status, "connect failed");
                        self.set_state(
                            &mut state,
                            ConnectivityState::TransientFailure,
                            Some(status),
                        );
                        None
                    }
                }
            };
            if let Some((health, established)) = connected {
                let generation = established.generation;
                tokio::spawn(self.clone().watch(established));
                if let Some((service, sender)) = health {
                    tokio::spawn(self.clone().health_check(generation, sender, service));
                }
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(started + delay) => {}
                () = self.inner.stop.notified() => return,
            }
            {
                let mut state = self.lock();
                if state.state == ConnectivityState::Shutdown {
                    return;
                }
                self.set_state(&mut state, ConnectivityState::Connecting, None);
            }
        }
    }

    /// Sets the state for connection `generation`'s health, unless the connection is gone or
    /// the subchannel shut down meanwhile. Returns false when the connection is gone.
    fn health_state(&self, generation: u64, new: ConnectivityState, error: Option<Status>) -> bool {
        let mut state = self.lock();
        if state.connection.as_ref().map(|c| c.generation) != Some(generation) {
            return false;
        }
        if state.state != new {
            self.set_state(&mut state, new, error);
        }
        true
    }

    /// Client-side health checking (gRFC A17) on connection `generation`: a
    /// `grpc.health.v1.Health/Watch` stream for `service`; the subchannel is READY while the
    /// answer is SERVING and TRANSIENT_FAILURE otherwise. A server without the health service
    /// (UNIMPLEMENTED) counts as healthy; a stream that fails is opened again after a backoff
    /// (reset by any answer). Ends with the connection.
    async fn health_check(self, generation: u64, sender: Sender, service: String) {
        let mut backoff = Backoff::new(self.inner.config.backoff);
        loop {
            let (answered, status) = match self.health_watch(generation, &sender, &service).await {
                HealthWatch::Unimplemented => {
                    tracing::debug!(
                        address = %self.inner.address,
                        "no health service: health checking is off for this connection"
                    );
                    self.health_state(generation, ConnectivityState::Ready, None);
                    return;
                }
                HealthWatch::Gone => return,
                HealthWatch::Ended { answered, status } => (answered, status),
            };
            if answered {
                backoff.reset();
            }
            if !self.health_state(
                generation,
                ConnectivityState::TransientFailure,
                Some(status),
            ) {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.inner.stop.notified() => return,
            }
            if !self.health_state(generation, ConnectivityState::Connecting, None) {
                return;
            }
        }
    }

    /// One `Watch` stream, until it ends.
    async fn health_watch(&self, generation: u64, sender: &Sender, service: &str) -> HealthWatch {
        let authority = match self.inner.address.as_socket_addr() {
            Some(addr) => addr.to_string(),
            None => "localhost".to_owned(),
        };
        let uri = http::Uri::builder()
            .scheme(if self.inner.config.tls.is_some() {
                "https"
            } else {
                "http"
            })
            .authority(authority.as_str())
            .path_and_query(HEALTH_WATCH)
            .build()
            .unwrap_or_default();
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, crate::codec::APPLICATION_GRPC);
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        headers.insert(
            http::header::USER_AGENT,
            self.inner.config.user_agent.clone(),
        );
        let Ok((response, mut send)) = sender.clone().open(request, false).await else {
            return HealthWatch::Gone; // the connection no longer takes streams
        };
        let message = HealthCheckRequest {
            service: service.to_owned(),
        };
        if let Ok(data) = crate::codec::encode(&message, None, usize::MAX) {
            let _ = send.send_data(data, true);
        }
        let response = match response.uncounted().await {
            Ok(response) => response,
            Err(e) => {
                return HealthWatch::Ended {
                    answered: false,
                    status: e.to_status(),
                };
            }
        };
        let (parts, body) = response.into_parts();
        let early = if parts.status != http::StatusCode::OK {
            Some(Status::from_http_status(parts.status))
        } else {
            Status::from_trailers(&parts.headers)
        };
        if let Some(status) = early {
            return HealthWatch::ended(false, status);
        }
        let mut answers = crate::streaming::Streaming::<HealthCheckResponse>::new(
            body,
            crate::streaming::Side::Client,
            64 * 1024,
            None,
            None,
            None,
        );
        // gRFC A17: the stream ends when the subchannel lets go of the connection (GOAWAY,
        // loss, shutdown), even while the server keeps it open.
        let gone = self.inner.connection_gone.notified();
        let mut gone = std::pin::pin!(gone);
        gone.as_mut().enable();
        if self.lock().connection.as_ref().map(|c| c.generation) != Some(generation) {
            return HealthWatch::Gone;
        }
        let mut answered = false;
        loop {
            let next = tokio::select! {
                next = answers.message() => next,
                () = gone.as_mut() => return HealthWatch::Gone,
            };
            match next {
                Ok(Some(answer)) => {
                    answered = true;
                    let (new, error) = if answer.status == SERVING {
                        (ConnectivityState::Ready, None)
                    } else {
                        let status = Status::unavailable(format!(
                            "health check of {service:?}: status {} (not SERVING)",
                            answer.status
                        ));
                        (ConnectivityState::TransientFailure, Some(status))
                    };
                    if !self.health_state(generation, new, error) {
                        return HealthWatch::Gone;
                    }
                }
                Ok(None) => {
                    return HealthWatch::ended(
                        answered,
                        Status::unavailable("the health-check stream ended"),
                    );
                }
                Err(status) => return HealthWatch::ended(answered, status),
            }
        }
    }

    /// Drives a connection and runs its keepalive. The first GOAWAY, or the connection's end,
    /// sends the subchannel back to IDLE; a keepalive ping left unanswered closes the
    /// connection and makes the subchannel TRANSIENT_FAILURE, then it reconnects.
    async fn watch(self, connection: Established) {
        let Established {
            generation,
            driver,
            going_away,
            mut pinger,
            activity,
            streams,
        } = connection;
        let keepalive_config = self.inner.config.keepalive.as_ref();
        let keepalive_time = keepalive_config.map(|k| k.time());
        let keepalive = async {
            match (keepalive_config, keepalive_time, pinger.as_mut()) {
                (Some(config), Some(time), Some(pinger)) => {
                    let params = KeepaliveParams {
                        time,
                        timeout: config.timeout,
                    };
                    let without_calls = config.without_calls;
                    keepalive(pinger, &activity, params, || {
                        without_calls || streams.get() > 0
                    })
                    .await
                }
                _ => std::future::pending().await,
            }
        };
        let mut keepalive = std::pin::pin!(keepalive);
        let mut driver = driver;
        let mut going_away = going_away;
        let mut gone_away = false;
        // A GOAWAY `too_many_pings` doubles the keepalive time before the subchannel leaves
        // READY, so that the next connection already uses the new time.
        let mut doubled = false;
        let mut told_off = || {
            if !doubled && activity.too_many_pings() {
                doubled = true;
                if let (Some(config), Some(time)) = (keepalive_config, keepalive_time) {
                    config.too_many_pings(time);
                }
            }
        };
        let dead = loop {
            tokio::select! {
                r = &mut driver => {
                    if let Err(e) = &r {
                        tracing::debug!(address = %self.inner.address, error = %e, "connection ended");
                    }
                    let why = match r {
                        Ok(()) => Status::unavailable("connection closed"),
                        Err(e) => e.to_status(),
                    };
                    told_off();
                    self.leave(generation, ConnectivityState::Idle, why);
                    break false;
                }
                r = &mut going_away, if !gone_away => {
                    gone_away = true;
                    if r.is_err() {
                        // The driver ended first; its own arm reports it.
                        continue;
                    }
                    // Streams already open finish on the draining connection.
                    told_off();
                    self.leave(
                        generation,
                        ConnectivityState::Idle,
                        Status::unavailable("the server sent GOAWAY"),
                    );
                }
                () = &mut keepalive => {
                    let why = Status::unavailable("keepalive ping not answered in time");
                    break self.leave(generation, ConnectivityState::TransientFailure, why);
                }
            }
        };
        if dead {
            // The connection is dropped (closed) here; connect again, with a fresh backoff.
            drop(driver);
            self.reconnect();
        }
    }

    /// From TRANSIENT_FAILURE after a lost connection: connect again at once.
    fn reconnect(&self) {
        let mut state = self.lock();
        if state.state == ConnectivityState::TransientFailure && state.connection.is_none() {
            self.set_state(&mut state, ConnectivityState::Connecting, None);
            drop(state);
            tokio::spawn(self.clone().connect_loop());
        }
    }

    /// Lets go of connection `generation` if it is still the current one, moving to `to`.
    /// True when it was.
    fn leave(&self, generation: u64, to: ConnectivityState, why: Status) -> bool {
        let mut state = self.lock();
        if state.connection.as_ref().map(|c| c.generation) != Some(generation) {
            return false;
        }
        state.connection = None;
        tracing::debug!(address = %self.inner.address, %why, "connection lost");
        self.set_state(&mut state, to, Some(why));
        self.inner.connection_gone.notify_waiters();
        true
    }

    async fn dial(&self) -> Result<(Sender, (client::Driver, ConnectionSignals)), Status> {
        let address = &self.inner.address;
        let config = &self.inner.config;
        let settings = ClientSettings {
            initial_stream_window_size: config.initial_stream_window_size,
            initial_connection_window_size: config.initial_connection_window_size,
            max_header_list_size: config.max_header_list_size,
            #[cfg(feature = "engine")]
            engine: config.engine,
        };
        let unavailable =
            |e: std::io::Error| Status::unavailable(format!("failed to connect to {address}: {e}"));
        if let Some(connector) = &config.connector {
            let io = connector.connect(address).await.map_err(unavailable)?;
            let (sender, driver, signals) = self.handshake(io, &settings).await?;
            return Ok((sender, (driver, signals)));
        }
        let (sender, driver, signals) = match &address.kind {
            Kind::Tcp(a) => {
                let tcp = tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(unavailable)?;
                self.set_nodelay(&tcp);
                self.handshake(tcp, &settings).await?
            }
            Kind::HostPort(h) => {
                let tcp = tokio::net::TcpStream::connect(h.as_str())
                    .await
                    .map_err(unavailable)?;
                self.set_nodelay(&tcp);
                self.handshake(tcp, &settings).await?
            }
            Kind::Unix(path) => {
                let unix = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unavailable)?;
                self.handshake(unix, &settings).await?
            }
            Kind::UnixAbstract(name) => {
                let unix = connect_abstract(name.clone()).await.map_err(unavailable)?;
                self.handshake(unix, &settings).await?
            }
        };
        Ok((sender, (driver, signals)))
    }

    fn set_nodelay(&self, tcp: &tokio::net::TcpStream) {
        if self.inner.config.tcp_nodelay {
            let _ = tcp.set_nodelay(true);
        }
    }

    /// TLS (when the channel has it), then the HTTP/2 handshake.
    async fn handshake<IO>(
        &self,
        io: IO,
        settings: &ClientSettings,
    ) -> Result<(Sender, client::Driver, ConnectionSignals), Status>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let address = &self.inner.address;
        let h2_failed =
            |e| Status::unavailable(format!("HTTP/2 handshake with {address} failed: {e}"));
        match &self.inner.config.tls {
            None => client::handshake(io, settings).await.map_err(h2_failed),
            Some(tls) => {
                let io = tls.connect(io).await.map_err(|e| {
                    Status::unavailable(format!("TLS handshake with {address} failed: {e}"))
                })?;
                client::handshake(io, settings).await.map_err(h2_failed)
            }
        }
    }
}

/// Connects to a Linux abstract Unix socket.
#[cfg(target_os = "linux")]
async fn connect_abstract(name: Vec<u8>) -> std::io::Result<tokio::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    // Connecting a Unix socket does not wait on a network, but the standard library's call
    // blocks, so it runs off the runtime's threads.
    let stream = tokio::task::spawn_blocking(move || {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)?;
        let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
        stream.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(stream)
    })
    .await
    .map_err(std::io::Error::other)??;
    tokio::net::UnixStream::from_std(stream)
}

#[cfg(not(target_os = "linux"))]
async fn connect_abstract(_name: Vec<u8>) -> std::io::Result<tokio::net::UnixStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract Unix sockets exist only on Linux",
    ))
}

/// The path of the health service's `Watch` method.
const HEALTH_WATCH: &str = "/grpc.health.v1.Health/Watch";

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// `grpc.health.v1.HealthCheckRequest`, written here: the core crate cannot depend on
/// `volley-health`, and one string field is all the subchannel sends.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse` (the status as its enum's number).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// How one health `Watch` stream ended.
enum HealthWatch {
    /// The server has no health service: health checking is off for the connection.
    Unimplemented,
    /// The connection is gone (or no longer takes streams): nothing more to watch.
    Gone,
    /// The stream failed or ended; `answered` when it had delivered an answer.
    Ended { answered: bool, status: Status },
}

impl HealthWatch {
    fn ended(answered: bool, status: Status) -> HealthWatch {
        if status.code() == crate::Code::Unimplemented {
            HealthWatch::Unimplemented
        } else {
            HealthWatch::Ended { answered, status }
        }
    }
}
