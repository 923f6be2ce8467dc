//! `Channel`: a cheap-to-clone handle to a target that every generated client calls through.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Authority, Scheme};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::backoff::BackoffConfig;
use super::balancer::{self, CallDone, Pick, PickInfo, PickResult};
use super::config::{ChannelConfig, ClientKeepalive};
use super::connectivity::ConnectivityState;
use super::control::{self, Activity, ControlEvent, ControlSetup, PickerState};
use super::method_config::MethodConfig;
use super::resolver::{self, Address, ResolverBuilder, Target};
use super::retry::{RetryLimits, Throttle};
use super::service_config::ServiceConfig;
use super::subchannel::Subchannel;
use crate::defaults;
use crate::interceptor::Interceptors;
use crate::metadata::MetadataMap;
use crate::timeout::capped;
use crate::transport::SendBody;
use crate::transport::client::{ResponseFuture, Sender};
use crate::{Error, Interceptor, Status};

struct ChannelInner {
    target: Target,
    /// The target in its canonical form (`dns:///host:port`), for middleware.
    target_uri: String,
    authority: Authority,
    config: Arc<ChannelConfig>,
    /// The headers every request starts with (`content-type`, `te`, `user-agent`,
    /// `grpc-accept-encoding`): cloned per call rather than inserted one by one.
    request_headers: http::HeaderMap,
    picker: watch::Receiver<Arc<PickerState>>,
    /// The service config in force: the resolver's, else the default (published by the
    /// control task).
    service_config: watch::Receiver<Option<Arc<ServiceConfig>>>,
    states: broadcast::Sender<ConnectivityState>,
    events: mpsc::UnboundedSender<ControlEvent>,
    /// The control task's setup until the channel is first used (it needs a runtime).
    setup: Mutex<Option<ControlSetup>>,
    started: std::sync::atomic::AtomicBool,
    activity: Arc<Activity>,
    /// Dropped with the last handle: the control task then shuts everything down.
    _shutdown: oneshot::Sender<()>,
}

/// A virtual connection to a target, shared by every clone: it resolves the target, keeps
/// connections (subchannels) to the addresses its balancer chooses, and sends each call on the
/// subchannel the balancer's picker picks. Connects on the first call, reconnects with
/// backoff, and multiplexes concurrent calls over HTTP/2.
///
/// Targets follow gRPC's naming (`doc/naming.md`): `host:port` or `dns:///host:port`,
/// `ipv4:10.0.0.1:50051,10.0.0.2:50051`, `ipv6:[::1]:50051`, `unix:/path`,
/// `unix-abstract:name`, `passthrough:///host:port`, `http://host:port`, and any scheme
/// registered with [`crate::resolver::register`] or [`ChannelBuilder::resolver`].
///
/// ```no_run
/// # async fn demo() -> Result<(), volley::Error> {
/// let channel = volley::Channel::builder("dns:///backends.internal:50051")
///     .load_balancing_policy("round_robin")
///     .timeout(std::time::Duration::from_secs(5))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("target", &format_args!("{}", self.inner.target))
            .field("state", &self.state(false))
            .finish()
    }
}

/// A handle on a [`Channel`] that does not keep it alive (made by [`Channel::downgrade`]): for
/// code the channel itself holds, such as a middleware that makes calls on its own channel,
/// where a strong handle would be a cycle and the channel would never shut down.
#[derive(Clone)]
pub struct WeakChannel {
    inner: std::sync::Weak<ChannelInner>,
}

impl WeakChannel {
    /// The channel, if a [`Channel`] handle on it still exists.
    pub fn upgrade(&self) -> Option<Channel> {
        self.inner.upgrade().map(|inner| Channel { inner })
    }
}

impl std::fmt::Debug for WeakChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakChannel")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

/// How many times a call is sent again after the server refused it unprocessed (GOAWAY,
/// REFUSED_STREAM) before it fails.
pub(crate) const MAX_TRANSPARENT_RETRIES: usize = 8;

impl Channel {
    /// A lazily connecting channel to `target` with default options.
    pub fn new(target: &str) -> Result<Channel, Error> {
        Channel::builder(target).build()
    }

    /// A builder for a channel to `target`.
    pub fn builder(target: &str) -> ChannelBuilder {
        ChannelBuilder {
            target: target.to_owned(),
            resolver: None,
            config: ChannelConfig {
                connect_timeout: defaults::CONNECT_TIMEOUT,
                backoff: BackoffConfig::default(),
                timeout: None,
                wait_for_ready: false,
                idle_timeout: Some(defaults::CHANNEL_IDLE_TIMEOUT),
                load_balancing_policy: defaults::LOAD_BALANCING_POLICY.to_owned(),
                user_agent: HeaderValue::from_static(concat!("volley/", env!("CARGO_PKG_VERSION"))),
                initial_stream_window_size: defaults::STREAM_WINDOW,
                initial_connection_window_size: defaults::CONNECTION_WINDOW,
                max_header_list_size: defaults::MAX_HEADER_LIST_SIZE,
                #[cfg(feature = "engine")]
                engine: crate::transport::Http2Engine::default(),
                tcp_nodelay: true,
                disable_health_check: false,
                interceptors: Interceptors::default(),
                tls: None,
                default_service_config: None,
                connector: None,
                keepalive: None,
                retry: RetryLimits::new(defaults::CHANNEL_RETRY_BUFFER),
                middlewares: crate::middleware::Middlewares::default(),
            },
            tls: None,
            default_service_config: None,
            authority: None,
            keepalive: KeepaliveOptions {
                time: None,
                timeout: defaults::CLIENT_KEEPALIVE_TIMEOUT,
                without_calls: false,
                floor: defaults::MIN_CLIENT_KEEPALIVE_TIME,
            },
        }
    }

    /// A handle that does not keep the channel alive; see [`WeakChannel`].
    pub fn downgrade(&self) -> WeakChannel {
        WeakChannel {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Leaves IDLE and waits until the channel is READY; fails with the balancer's status
    /// (UNAVAILABLE) when it reaches TRANSIENT_FAILURE instead.
    pub async fn connect(&self) -> Result<(), Status> {
        let mut rx = self.inner.picker.clone();
        self.start();
        loop {
            let current = rx.borrow_and_update().clone();
            match current.state {
                ConnectivityState::Ready => return Ok(()),
                ConnectivityState::TransientFailure | ConnectivityState::Shutdown => {
                    let info = PickInfo::new("");
                    return Err(match current.picker.pick(&info) {
                        PickResult::Fail(status) => status,
                        _ => Status::unavailable(format!("channel is {}", current.state)),
                    });
                }
                ConnectivityState::Idle => self.exit_idle(),
                ConnectivityState::Connecting => {}
            }
            rx.changed()
                .await
                .map_err(|_| Status::unavailable("the channel shut down"))?;
        }
    }

    /// The channel's connectivity state. With `connect`, an IDLE channel starts connecting
    /// (this needs a Tokio runtime; outside one it only reports).
    pub fn state(&self, connect: bool) -> ConnectivityState {
        let state = self.inner.picker.borrow().state;
        if connect
            && state == ConnectivityState::Idle
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.start();
            self.exit_idle();
        }
        state
    }

    /// Waits until the channel's state differs from `from`, and returns the new state.
    /// (States that last very briefly can be missed, as in grpc-go.)
    pub async fn wait_for_state_change(&self, from: ConnectivityState) -> ConnectivityState {
        let mut rx = self.inner.picker.clone();
        loop {
            let state = rx.borrow_and_update().state;
            if state != from {
                return state;
            }
            if rx.changed().await.is_err() {
                return ConnectivityState::Shutdown;
            }
        }
    }

    /// Every state the channel enters from now on, in order (unlike
    /// [`Channel::wait_for_state_change`], brief states are not missed as long as the
    /// receiver keeps up).
    pub fn state_changes(&self) -> StateChanges {
        StateChanges {
            inner: self.inner.states.subscribe(),
        }
    }

    pub(crate) fn config(&self) -> &ChannelConfig {
        &self.inner.config
    }

    /// The headers every request on this channel starts with.
    pub(crate) fn request_headers(&self) -> &http::HeaderMap {
        &self.inner.request_headers
    }

    /// The service config's settings for calls to `path`, and its retry throttle, if it has
    /// them.
    pub(crate) fn call_config(
        &self,
        path: &str,
    ) -> (Option<Arc<MethodConfig>>, Option<Arc<Throttle>>) {
        match self.inner.service_config.borrow().as_ref() {
            None => (None, None),
            Some(config) => (
                config.method_config(path).cloned(),
                config.throttle().cloned(),
            ),
        }
    }

    /// The service config in force: the resolver's latest valid one, else the channel's
    /// default ([`ChannelBuilder::default_service_config`]).
    pub fn service_config(&self) -> Option<Arc<ServiceConfig>> {
        self.inner.service_config.borrow().clone()
    }

    /// The `:authority` the channel's calls carry.
    /// The target in its canonical form, `scheme://authority/endpoint`.
    pub(crate) fn target_uri(&self) -> &str {
        &self.inner.target_uri
    }

    pub(crate) fn authority(&self) -> &str {
        self.inner.authority.as_str()
    }

    pub(crate) fn uri(&self, path: &'static str) -> http::Uri {
        self.uri_with(http::uri::PathAndQuery::from_static(path))
    }

    /// The URI of a request to `path_and_query` on this channel.
    pub(crate) fn uri_with(&self, path_and_query: http::uri::PathAndQuery) -> http::Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if self.inner.config.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query = Some(path_and_query);
        http::Uri::from_parts(parts).unwrap_or_default()
    }

    /// Starts the control task on first use.
    fn start(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.started.load(Ordering::Acquire) {
            return;
        }
        let setup = self
            .inner
            .setup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(setup) = setup {
            tokio::spawn(control::run(setup));
            self.inner.started.store(true, Ordering::Release);
        }
    }

    fn exit_idle(&self) {
        let _ = self.inner.events.send(ControlEvent::ExitIdle);
    }

    /// A READY subchannel for a call, from the current picker. Without wait-for-ready, a
    /// picker that fails the call (TRANSIENT_FAILURE) ends it; otherwise the call waits for
    /// the next picker (the caller's deadline bounds the wait).
    pub(crate) async fn pick(
        &self,
        path: &str,
        metadata: &MetadataMap,
        wait_for_ready: bool,
        attempted: &[Address],
    ) -> Result<Picked, Status> {
        self.start();
        self.inner.activity.touch();
        let info = PickInfo::with_metadata(path, metadata).after_attempts(attempted);
        // The common case reads the current picker in place: no receiver to clone, no
        // reference count to touch on the shared state.
        let first = self.inner.picker.borrow().picker.pick(&info);
        if let PickResult::Pick(pick) = first
            && let Some(picked) = Picked::new(pick)
        {
            return Ok(picked);
        }
        let mut rx = self.inner.picker.clone();
        loop {
            let current = rx.borrow_and_update().clone();
            match current.picker.pick(&info) {
                PickResult::Pick(pick) => {
                    if let Some(picked) = Picked::new(pick) {
                        return Ok(picked);
                    }
                }
                PickResult::Queue => {}
                PickResult::Fail(status) => {
                    if !wait_for_ready || current.state == ConnectivityState::Shutdown {
                        return Err(status);
                    }
                }
            }
            if current.state == ConnectivityState::Idle {
                self.exit_idle();
            }
            if rx.changed().await.is_err() {
                return Err(Status::unavailable("the channel shut down"));
            }
        }
    }

    /// Opens a stream for `request` on a picked subchannel: for an attempt of a call under a
    /// retry or hedging policy, one not among `attempted` if the balancer can, which is then
    /// added to them. A connection that refuses the new stream (it
    /// received GOAWAY, or closed) leaves READY and the request goes to the next pick: the
    /// server never saw it.
    pub(crate) async fn open_stream(
        &self,
        path: &str,
        metadata: &MetadataMap,
        mut make_request: impl FnMut() -> http::Request<()>,
        wait_for_ready: bool,
        attempted: Option<&Mutex<Vec<Address>>>,
    ) -> Result<(ResponseFuture, SendBody, CallDone), Status> {
        let mut last_error = None;
        for _ in 0..MAX_TRANSPARENT_RETRIES {
            let Picked {
                subchannel,
                sender,
                generation,
                mut done,
            } = match attempted {
                None => self.pick(path, metadata, wait_for_ready, &[]).await?,
                Some(attempted) => {
                    let before = attempted
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    let picked = self.pick(path, metadata, wait_for_ready, &before).await?;
                    let address = picked.subchannel.address();
                    let mut attempted = attempted.lock().unwrap_or_else(PoisonError::into_inner);
                    if !attempted.contains(address) {
                        attempted.push(address.clone());
                    }
                    picked
                }
            };
            match sender.open(make_request(), false).await {
                Ok((response, send)) => return Ok((response, send, done)),
                Err(e) => {
                    tracing::debug!(error = %e, "connection refused a new stream; picking again");
                    subchannel.connection_refused_stream(generation);
                    done.finish_with(&Status::unavailable(format!(
                        "the connection refused a new stream: {e}"
                    )));
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            Some(e) => Status::unavailable(format!("could not open a stream: {e}")),
            None => Status::unavailable("could not open a stream"),
        })
    }
}

/// The headers every request on a channel with `config` starts with.
fn request_headers(config: &ChannelConfig) -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(8);
    headers.insert(http::header::CONTENT_TYPE, crate::codec::APPLICATION_GRPC);
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert(http::header::USER_AGENT, config.user_agent.clone());
    headers.insert(
        crate::codec::GRPC_ACCEPT_ENCODING,
        http::HeaderValue::from_static(crate::codec::ACCEPT_ALL),
    );
    headers
}

/// A READY subchannel picked for a call: its connection's stream opener, and the balancer's
/// done callback.
pub(crate) struct Picked {
    subchannel: Subchannel,
    sender: Sender,
    generation: u64,
    done: CallDone,
}

impl Picked {
    /// The pick, if its subchannel is READY (otherwise the call waits for the next picker,
    /// and the pick's callback is dropped: it reports CANCELLED).
    fn new(pick: Pick) -> Option<Picked> {
        let (subchannel, mut done) = pick.into_parts();
        match subchannel.sender() {
            Some((sender, generation)) => Some(Picked {
                subchannel,
                sender,
                generation,
                done,
            }),
            None => {
                done.finish_with(&Status::unavailable("the picked subchannel is not READY"));
                None
            }
        }
    }
}

/// The states a channel enters, from [`Channel::state_changes`].
#[derive(Debug)]
pub struct StateChanges {
    inner: broadcast::Receiver<ConnectivityState>,
}

impl StateChanges {
    /// The next state the channel enters; `None` once the channel is gone. A receiver that
    /// fell more than 64 changes behind skips to the oldest it still has.
    pub async fn next(&mut self) -> Option<ConnectivityState> {
        loop {
            match self.inner.recv().await {
                Ok(state) => return Some(state),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Configures a [`Channel`]. Every setter states its default.
#[must_use]
pub struct ChannelBuilder {
    target: String,
    resolver: Option<Arc<dyn ResolverBuilder>>,
    config: ChannelConfig,
    tls: Option<crate::ClientTlsConfig>,
    authority: Option<String>,
    keepalive: KeepaliveOptions,
    default_service_config: Option<String>,
}

/// Keepalive as configured, before `build`.
#[derive(Debug)]
struct KeepaliveOptions {
    time: Option<Duration>,
    timeout: Duration,
    without_calls: bool,
    floor: Duration,
}

impl std::fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBuilder")
            .field("target", &self.target)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChannelBuilder {
    /// The minimum time one connection attempt may take (an attempt may take longer when the
    /// backoff delay is longer). Default: 20 s (`doc/connection-backoff.md`'s
    /// MIN_CONNECT_TIMEOUT).
    pub fn connect_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.config.connect_timeout = capped(timeout);
        self
    }

    /// The reconnect backoff. Default: [`BackoffConfig::default`], the spec's (1 s, x1.6,
    /// jitter 0.2, at most 120 s).
    pub fn backoff(mut self, backoff: BackoffConfig) -> ChannelBuilder {
        self.config.backoff = backoff.sanitized();
        self
    }

    /// The timeout of calls that set none themselves ([`crate::Request::set_timeout`]).
    /// Default: none.
    pub fn timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.config.timeout = Some(capped(timeout));
        self
    }

    /// Whether calls wait for a READY connection (until their deadline) rather than fail
    /// with UNAVAILABLE while the channel is in TRANSIENT_FAILURE; a call can override it
    /// ([`crate::Request::set_wait_for_ready`]). Default: false, as in gRPC.
    pub fn wait_for_ready(mut self, wait: bool) -> ChannelBuilder {
        self.config.wait_for_ready = wait;
        self
    }

    /// After this long with no calls, the channel closes its connections, stops its resolver
    /// and goes IDLE; the next call starts over. `None` keeps it connected. Default: 30 min.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> ChannelBuilder {
        self.config.idle_timeout = timeout.map(capped);
        self
    }

    /// The balancer (`pick_first`, `round_robin`, `least_request`, `weighted_round_robin`, or
    /// one added with [`crate::balancer::register`]), with its default config, unless the
    /// resolver's service config chooses one. Default: `pick_first`.
    pub fn load_balancing_policy(mut self, name: &str) -> ChannelBuilder {
        self.config.load_balancing_policy = name.to_owned();
        self
    }

    /// The service config (`doc/service_config.md`, JSON) the channel uses while its
    /// resolver provides none: balancer, health checking, per-method timeouts, wait-for-ready,
    /// message limits, retry and hedging policies, retry throttling. A config from the
    /// resolver replaces it; an invalid one from the resolver is ignored (the previous config
    /// stays). `build()` fails on an invalid default, naming the JSON path of the fault.
    /// Default: none.
    pub fn default_service_config(mut self, json: &str) -> ChannelBuilder {
        self.default_service_config = Some(json.to_owned());
        self
    }

    /// Adds a middleware that wraps every call of the channel (see [`crate::middleware`]): it
    /// may await, change the metadata or reject the call before anything is sent, and follow
    /// the call to its end. Middlewares run in the order added, after the interceptors; they
    /// run once per call, around its retries and hedges. Default: none (and no cost).
    pub fn middleware(mut self, middleware: impl crate::middleware::Middleware) -> ChannelBuilder {
        self.config.middlewares.push(middleware);
        self
    }

    /// Whether calls follow the service config's `retryPolicy` and `hedgingPolicy` (gRFC A6;
    /// off for code that retries by itself, as grpc-go's `WithDisableRetry`). Transparent
    /// retries of streams the server never processed happen either way. Default: true.
    pub fn retries(mut self, enabled: bool) -> ChannelBuilder {
        self.config.retry.enabled = enabled;
        self
    }

    /// The most attempts one call makes under a retry or hedging policy, whatever the
    /// policy's `maxAttempts` says (A6's client-side limit, so that a service config from a
    /// resolver cannot multiply the load unboundedly); at least 1 (no retries).
    /// Default: 5.
    pub fn max_call_attempts(mut self, attempts: u32) -> ChannelBuilder {
        self.config.retry.max_call_attempts = attempts.max(1);
        self
    }

    /// The request bytes one call keeps for replay by retries and hedges; a call whose
    /// request messages outgrow it commits to its current attempt and is no longer retried.
    /// Default: 256 KiB (A6's `per_rpc_buffer_limit_in_bytes`, grpc-go's value).
    pub fn per_call_retry_buffer(mut self, bytes: usize) -> ChannelBuilder {
        self.config.retry.per_call_buffer = bytes;
        self
    }

    /// The request bytes all of the channel's calls keep for replay together; a call that
    /// would pass it commits (a new call whose request does not fit is not retried).
    /// Default: 16 MiB (A6's `retry_buffer_size_in_bytes`, gRPC C++'s value).
    pub fn retry_buffer_size(mut self, bytes: usize) -> ChannelBuilder {
        self.config.retry.pool = Arc::new(super::retry::BufferPool::new(bytes));
        self
    }

    /// Resolves targets of `builder`'s scheme with it, for this channel only (before the
    /// global registry). Default: only registered resolvers.
    pub fn resolver(mut self, builder: impl ResolverBuilder) -> ChannelBuilder {
        self.resolver = Some(Arc::new(builder));
        self
    }

    /// Connects with TLS (ALPN `h2`). Default: plaintext, except for `https://` targets,
    /// which use TLS with the system's CA certificates.
    pub fn tls_config(mut self, config: crate::ClientTlsConfig) -> ChannelBuilder {
        self.tls = Some(config);
        self
    }

    /// The `:authority` of every call (gRPC's `server_host_override` for HTTP/2). Default:
    /// the target's host and port (`localhost` for Unix sockets).
    pub fn authority(mut self, authority: &str) -> ChannelBuilder {
        self.authority = Some(authority.to_owned());
        self
    }

    /// The `user-agent` sent with every call, before Volley's own. Default: `volley/<version>`.
    pub fn user_agent(mut self, user_agent: &str) -> Result<ChannelBuilder, Error> {
        let value = format!("{user_agent} volley/{}", env!("CARGO_PKG_VERSION"));
        self.config.user_agent = HeaderValue::from_str(&value)
            .map_err(|e| Error::new(format!("invalid user agent {user_agent:?}: {e}")))?;
        Ok(self)
    }

    /// The HTTP/2 receive window of each stream, at most 2^31-1 (larger values are lowered to
    /// it). Default: 1 MiB.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> ChannelBuilder {
        self.config.initial_stream_window_size = crate::transport::window_size(bytes);
        self
    }

    /// The HTTP/2 receive window of each connection, at most 2^31-1 (larger values are
    /// lowered to it). Default: 2 MiB.
    pub fn initial_connection_window_size(mut self, bytes: u32) -> ChannelBuilder {
        self.config.initial_connection_window_size = crate::transport::window_size(bytes);
        self
    }

    /// The largest response header list (headers or trailers with their metadata, counted
    /// as HTTP/2 does: name + value + 32 bytes per entry) accepted from a server; a response
    /// over it ends its call with INTERNAL (the stream is reset), so that a hostile server
    /// cannot fill the client's memory with headers. Default: 16 KiB, gRPC C-core's hard
    /// limit.
    pub fn max_header_list_size(mut self, bytes: u32) -> ChannelBuilder {
        self.config.max_header_list_size = bytes;
        self
    }

    /// Which HTTP/2 implementation the channel's connections run on (feature `engine`, on
    /// by default). Default: [`Http2Engine::Volley`](crate::Http2Engine::Volley), Volley's own
    /// ([`Http2Engine::H2`](crate::Http2Engine::H2) with the feature `h2-default`).
    #[cfg(feature = "engine")]
    pub fn http2_engine(mut self, engine: crate::Http2Engine) -> ChannelBuilder {
        self.config.engine = engine;
        self
    }

    /// Turns client-side health checking (gRFC A17) off even when the service config asks
    /// for it with `healthCheckConfig`: subchannels are then READY as soon as they connect.
    /// (With it on, and a balancer other than `pick_first`, each connection watches the
    /// backend's `grpc.health.v1.Health` and takes calls only while it says SERVING.)
    /// Default: false.
    pub fn disable_health_check(mut self, disable: bool) -> ChannelBuilder {
        self.config.disable_health_check = disable;
        self
    }

    /// Opens the subchannels' connections with `connector` instead of the channel's own TCP
    /// and Unix sockets (HTTP/2, and TLS when configured, run over what it returns).
    /// Default: none, the channel dials itself.
    pub fn connector(mut self, connector: impl crate::Connector) -> ChannelBuilder {
        self.config.connector = Some(Arc::new(connector));
        self
    }

    /// Sets `TCP_NODELAY` on the channel's sockets (not on a [`ChannelBuilder::connector`]'s).
    /// Default: true.
    pub fn tcp_nodelay(mut self, enabled: bool) -> ChannelBuilder {
        self.config.tcp_nodelay = enabled;
        self
    }

    /// Adds an interceptor that sees every call on the channel before it is sent (to add
    /// metadata such as credentials, or to reject the call). Interceptors run in the order
    /// added. Default: none.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> ChannelBuilder {
        self.config.interceptors.push(interceptor);
        self
    }

    /// Sends a keepalive PING on a connection after this long without receiving anything, and
    /// closes the connection (the subchannel goes to TRANSIENT_FAILURE and reconnects) when
    /// the ping is not answered within [`ChannelBuilder::keepalive_timeout`]. Times under 10 s
    /// are raised to 10 s, as in grpc-go. Servers limit how often clients may ping (grpc-go
    /// and Volley: 5 minutes by default); a server that answers GOAWAY `too_many_pings` makes
    /// the channel double this time for its next connections. Default: off.
    pub fn keepalive_time(mut self, time: Duration) -> ChannelBuilder {
        self.keepalive.time = Some(capped(time));
        self
    }

    /// How long to wait for the answer to a keepalive ping. Default: 20 s.
    pub fn keepalive_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.keepalive.timeout = capped(timeout);
        self
    }

    /// Whether keepalive pings are sent on connections with no open call (servers must
    /// permit it; see `ServerBuilder::permit_keepalive_without_calls`). Default: false.
    pub fn keepalive_without_calls(mut self, enabled: bool) -> ChannelBuilder {
        self.keepalive.without_calls = enabled;
        self
    }

    /// Lowers the 10 s floor of [`ChannelBuilder::keepalive_time`], for tests that cannot
    /// wait for real keepalive times (grpc-go's tests do the same through an internal
    /// variable). Not for production: servers punish frequent pings. Default: 10 s.
    #[cfg(feature = "test-util")]
    pub fn keepalive_time_floor(mut self, floor: Duration) -> ChannelBuilder {
        self.keepalive.floor = capped(floor);
        self
    }

    /// Builds the channel; it connects on the first call. Fails when the target cannot be
    /// parsed, its scheme has no resolver, or the balancer is unknown.
    pub fn build(self) -> Result<Channel, Error> {
        let own = self.resolver.clone();
        let is_registered = |scheme: &str| {
            own.as_ref().is_some_and(|r| r.scheme() == scheme) || resolver::lookup(scheme).is_some()
        };
        let target = Target::parse(&self.target, is_registered)?;
        let resolver = match own.filter(|r| r.scheme() == target.scheme()) {
            Some(r) => r,
            None => resolver::lookup(target.scheme()).ok_or_else(|| {
                Error::new(format!("no resolver for the scheme of target {target}"))
            })?,
        };
        if balancer::lookup(&self.config.load_balancing_policy).is_none() {
            return Err(Error::new(format!(
                "unknown load-balancing policy {:?}",
                self.config.load_balancing_policy
            )));
        }
        let authority: Authority = match &self.authority {
            Some(a) => a
                .parse()
                .map_err(|e| Error::new(format!("invalid authority {a:?}: {e}")))?,
            None => target
                .http_authority()
                .parse()
                .or_else(|_| "localhost".parse())
                .map_err(|e| Error::new(format!("invalid target {target}: {e}")))?,
        };
        let mut config = self.config;
        if let Some(json) = &self.default_service_config {
            let parsed = ServiceConfig::from_json(json)
                .map_err(|e| Error::new(format!("default service config: {e}")))?;
            config.default_service_config = Some(Arc::new(parsed));
        }
        config.keepalive = self.keepalive.time.map(|time| {
            let floor = self.keepalive.floor;
            if time < floor {
                tracing::warn!(?time, ?floor, "keepalive_time raised to its minimum");
            }
            ClientKeepalive {
                time_ms: AtomicU64::new(time.max(floor).as_millis() as u64),
                timeout: self.keepalive.timeout,
                without_calls: self.keepalive.without_calls,
            }
        });
        let tls = match self.tls {
            Some(tls) => Some(tls),
            None if target.https => Some(crate::ClientTlsConfig::new()),
            None => None,
        };
        if let Some(tls) = tls {
            config.tls = Some(crate::tls::ClientTls::new(&tls, &target.host())?);
        }
        let config = Arc::new(config);
        let (events, inbox) = mpsc::unbounded_channel();
        let (picker_tx, picker) = watch::channel(PickerState::idle());
        let (service_config_tx, service_config) =
            watch::channel(config.default_service_config.clone());
        let (states, _) = broadcast::channel(64);
        let (shutdown_tx, shutdown) = oneshot::channel();
        let activity = Arc::new(Activity::new());
        let setup = ControlSetup {
            target: target.clone(),
            config: config.clone(),
            resolver,
            events: events.clone(),
            inbox,
            picker: picker_tx,
            service_config: service_config_tx,
            states: states.clone(),
            shutdown,
            activity: activity.clone(),
        };
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                target_uri: target.to_string(),
                target,
                authority,
                request_headers: request_headers(&config),
                config,
                picker,
                service_config,
                states,
                events,
                setup: Mutex::new(Some(setup)),
                started: std::sync::atomic::AtomicBool::new(false),
                activity,
                _shutdown: shutdown_tx,
            }),
        })
    }

    /// Builds the channel and connects it at once (see [`Channel::connect`]).
    pub async fn connect(self) -> Result<Channel, Error> {
        let channel = self.build()?;
        channel
            .connect()
            .await
            .map_err(|s| Error::new(s.message().to_owned()))?;
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_has_scheme_authority_and_path() {
        let ch = Channel::new("http://127.0.0.1:1").expect("valid");
        assert_eq!(ch.uri("/a.B/C").to_string(), "http://127.0.0.1:1/a.B/C");
        let ch = Channel::new("unix:/tmp/x.sock").expect("valid");
        assert_eq!(ch.uri("/a.B/C").to_string(), "http://localhost/a.B/C");
    }

    #[test]
    fn a_weak_channel_does_not_keep_it_alive() {
        let channel = Channel::new("127.0.0.1:1").expect("valid");
        let weak = channel.downgrade();
        let clone = channel.clone();
        drop(channel);
        assert!(weak.upgrade().is_some(), "a clone still holds it");
        drop(clone);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn unknown_schemes_and_policies_are_errors() {
        let e = Channel::new("nope:///x").unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        let e = Channel::builder("localhost:1")
            .load_balancing_policy("weighted_nothing")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("weighted_nothing"), "{e}");
    }
}
