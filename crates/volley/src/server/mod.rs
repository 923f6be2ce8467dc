//! The server: a builder of options, a router from `:path` to services, and one task per
//! connection that accepts HTTP/2 streams and runs each call.

mod call;
mod connection;
mod router;
#[cfg(feature = "tower")]
mod tower;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use call::ServerCall;
use router::Router;
#[cfg(feature = "tower")]
pub use tower::Routes;

use crate::Interceptor;
use crate::codec::{
    CompressionEncoding, DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE,
};
use crate::defaults;
use crate::interceptor::Interceptors;
use crate::middleware::{Middleware, Middlewares};
use crate::timeout::capped;
use crate::transport::keepalive::KeepaliveParams;
use crate::transport::server::ServerSettings;
use crate::transport::watch::PingPolicy;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) connection: ConnectionConfig,
    /// The tower stack every call goes through, when the server has a layer.
    #[cfg(feature = "tower")]
    pub(crate) stack: Option<tower::BoxService>,
}

/// A boxed future, as returned by [`Service::call`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A gRPC service as the server sees it; implemented by the `FooServer` types that
/// `volley-build` generates.
pub trait Service: Send + Sync + 'static {
    /// The fully-qualified service name, such as `helloworld.Greeter`.
    fn name(&self) -> &'static str;

    /// Starts the call of `method` (the last part of `:path`). When the service has no such
    /// method, answers with [`ServerCall::unknown_method`] and returns `None`.
    fn call(&self, method: &str, call: ServerCall) -> Option<BoxFuture<()>>;
}

/// A service whose calls run these middlewares, after the server's own
/// ([`ServerBuilder::middleware`]), in the order added.
///
/// ```
/// # use volley::middleware::{CallStart, Middleware, StartFuture};
/// # struct Audit;
/// # impl Middleware for Audit {
/// #     fn start<'a>(&'a self, _: &'a mut CallStart<'_>) -> StartFuture<'a> {
/// #         Box::pin(async { Ok(None) })
/// #     }
/// # }
/// # fn demo(service: impl volley::server::Service) {
/// use volley::server::WithMiddleware;
/// let _server = volley::Server::builder().add_service(WithMiddleware::new(service).middleware(Audit));
/// # }
/// ```
pub struct WithMiddleware<S> {
    inner: S,
    middlewares: Middlewares,
}

impl<S: Service> WithMiddleware<S> {
    /// `service`, with no middleware of its own yet.
    pub fn new(service: S) -> WithMiddleware<S> {
        WithMiddleware {
            inner: service,
            middlewares: Middlewares::default(),
        }
    }

    /// Adds `middleware`, after those added before.
    #[must_use]
    pub fn middleware(mut self, middleware: impl Middleware) -> WithMiddleware<S> {
        self.middlewares.push(middleware);
        self
    }
}

impl<S> std::fmt::Debug for WithMiddleware<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithMiddleware")
            .field("middlewares", &self.middlewares)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Service for WithMiddleware<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn call(&self, method: &str, mut call: ServerCall) -> Option<BoxFuture<()>> {
        call.add_middlewares(&self.middlewares, self.inner.name(), method);
        self.inner.call(method, call)
    }
}

/// Options shared by every call of a server.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) max_recv_message_size: usize,
    pub(crate) max_send_message_size: usize,
    pub(crate) accept_compressed: Vec<CompressionEncoding>,
    pub(crate) send_compressed: Option<CompressionEncoding>,
    pub(crate) interceptors: Interceptors,
    /// Every call's middleware, before its service's.
    pub(crate) middlewares: Middlewares,
    /// Per-call load reports (ORCA), with these server-wide values, when enabled.
    pub(crate) call_metrics: Option<crate::orca::ServerMetricsRecorder>,
}

/// HTTP/2, socket and connection-management options of every connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionConfig {
    pub(crate) http2: ServerSettings,
    pub(crate) tcp_nodelay: bool,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_pending_request_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) drain_timeout: Option<Duration>,
    pub(crate) keepalive: KeepaliveParams,
    pub(crate) max_connection_idle: Option<Duration>,
    pub(crate) max_connection_age: Option<Duration>,
    pub(crate) max_connection_age_grace: Option<Duration>,
    pub(crate) ping_policy: PingPolicy,
}

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with every option at its default.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig {
                max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
                max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
                accept_compressed: CompressionEncoding::ALL.to_vec(),
                send_compressed: None,
                interceptors: Interceptors::default(),
                middlewares: Middlewares::default(),
                call_metrics: None,
            },
            connection: ConnectionConfig {
                http2: ServerSettings {
                    max_concurrent_streams: Some(defaults::MAX_CONCURRENT_STREAMS),
                    initial_stream_window_size: defaults::STREAM_WINDOW,
                    initial_connection_window_size: defaults::CONNECTION_WINDOW,
                    max_frame_size: None,
                    max_header_list_size: defaults::MAX_HEADER_LIST_SIZE,
                    #[cfg(feature = "engine")]
                    engine: crate::transport::Http2Engine::default(),
                },
                tcp_nodelay: true,
                max_connections: None,
                max_pending_request_bytes: defaults::MAX_PENDING_REQUEST_BYTES,
                handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
                drain_timeout: None,
                keepalive: KeepaliveParams {
                    time: defaults::SERVER_KEEPALIVE_TIME,
                    timeout: defaults::SERVER_KEEPALIVE_TIMEOUT,
                },
                max_connection_idle: None,
                max_connection_age: None,
                max_connection_age_grace: None,
                ping_policy: PingPolicy {
                    min_interval: defaults::MIN_CLIENT_PING_INTERVAL,
                    permit_without_calls: false,
                },
            },
            router: Router::default(),
            tls: None,
            #[cfg(feature = "tower")]
            layer: None,
        }
    }
}

/// Configures and runs a server. Every setter states its default.
#[must_use]
pub struct ServerBuilder {
    config: ServerConfig,
    connection: ConnectionConfig,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "tower")]
    layer: Option<tower::MakeStack>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("connection", &self.connection)
            .field("services", &self.router.names())
            .finish()
    }
}

impl ServerBuilder {
    /// Adds a service (a generated `FooServer`). Calls to its methods are routed by `:path`;
    /// calls to unknown services or methods get UNIMPLEMENTED. A service added twice under one
    /// name replaces the earlier one.
    pub fn add_service<S: Service>(mut self, service: S) -> ServerBuilder {
        self.router.add(Arc::new(service));
        self
    }

    /// The largest request message accepted, after decompression; larger ones fail the call
    /// with RESOURCE_EXHAUSTED and leave the connection usable. Default: 4 MiB.
    pub fn max_decoding_message_size(mut self, bytes: usize) -> ServerBuilder {
        self.config.max_recv_message_size = bytes;
        self
    }

    /// The largest response message sent; a larger one fails the call with
    /// RESOURCE_EXHAUSTED. Default: no limit (the wire format's 4 GiB).
    pub fn max_encoding_message_size(mut self, bytes: usize) -> ServerBuilder {
        self.config.max_send_message_size = bytes;
        self
    }

    /// The compression algorithms accepted on requests; a request in another gets
    /// UNIMPLEMENTED with the supported list in `grpc-accept-encoding`. Default: every
    /// algorithm Volley has (gzip).
    pub fn accept_compressed(mut self, encodings: &[CompressionEncoding]) -> ServerBuilder {
        self.config.accept_compressed = encodings.to_vec();
        self
    }

    /// Compresses responses with `encoding` when the client's `grpc-accept-encoding` lists
    /// it. Default: responses are not compressed.
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> ServerBuilder {
        self.config.send_compressed = Some(encoding);
        self
    }

    /// Adds an interceptor that sees every call (its metadata, timeout, peer address and
    /// extensions) before the handler runs, and may reject it with a status. Interceptors run
    /// in the order added. Default: none.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> ServerBuilder {
        self.config.interceptors.push(interceptor);
        self
    }

    /// Runs every call inside `layer`, a tower layer over `http::Request`/`http::Response`
    /// (see [`crate::tower`]): concurrency and rate limits, load shedding, timeouts, and
    /// `tower-http`'s layers apply to gRPC calls. Compose several with
    /// `tower::ServiceBuilder`; a second call replaces the first. Default: none (calls go
    /// straight to their service, and the feature costs nothing).
    #[cfg(feature = "tower")]
    pub fn layer<L, ResBody>(mut self, layer: L) -> ServerBuilder
    where
        L: tower_layer::Layer<Routes> + Send + Sync + 'static,
        L::Service: tower_service::Service<
                http::Request<crate::transport::RequestBody>,
                Response = http::Response<ResBody>,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<http::Request<crate::transport::RequestBody>>>::Future:
            Send + 'static,
        <L::Service as tower_service::Service<http::Request<crate::transport::RequestBody>>>::Error:
            Into<crate::transport::BoxError>,
        ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        ResBody::Error: Into<crate::transport::BoxError>,
    {
        use ::tower::ServiceExt;
        self.layer = Some(Box::new(move |routes: Routes| {
            tower::BoxService::new(
                layer
                    .layer(routes)
                    .map_response(|response: http::Response<ResBody>| {
                        response.map(crate::transport::BoxBody::new)
                    })
                    .map_err(Into::into),
            )
        }));
        self
    }

    /// Adds a middleware that wraps every call (see [`crate::middleware`]): it may await,
    /// change the metadata or reject the call before the handler, and follow the call to
    /// its end. Middlewares run in the order added, after the interceptors and before a
    /// service's own ([`WithMiddleware`]). Default: none (and no cost).
    pub fn middleware(mut self, middleware: impl Middleware) -> ServerBuilder {
        self.config.middlewares.push(middleware);
        self
    }

    /// Sends a load report (ORCA, gRFC A51) in every call's trailers, for client balancers
    /// such as `weighted_round_robin`: `server`'s values (keep them current from a task of
    /// your own) under the ones the handler records through
    /// [`crate::orca::CallMetricsRecorder::from_request`]. Calls with nothing recorded send
    /// no report. Default: off.
    pub fn call_metrics(mut self, server: crate::orca::ServerMetricsRecorder) -> ServerBuilder {
        self.config.call_metrics = Some(server);
        self
    }

    /// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients: how many calls one
    /// connection may have open at once. gRPC clients queue calls above it (they cost a
    /// conforming client nothing but waiting), while each open stream holds server memory
    /// (its headers, its buffered request), so the default bounds what one connection can
    /// hold. `u32::MAX` means no limit. Default: 256 (HTTP/2 recommends at least 100; Go's
    /// `net/http2` server uses 250; grpc-go and tonic set none).
    pub fn max_concurrent_streams(mut self, max: u32) -> ServerBuilder {
        self.connection.http2.max_concurrent_streams = Some(max);
        self
    }

    /// The HTTP/2 receive window of each stream, at most 2^31-1 (larger values are lowered to
    /// it, HTTP/2's maximum). Default: 1 MiB.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> ServerBuilder {
        self.connection.http2.initial_stream_window_size = crate::transport::window_size(bytes);
        self
    }

    /// The HTTP/2 receive window of each connection, at most 2^31-1 (larger values are
    /// lowered to it). Default: 2 MiB.
    pub fn initial_connection_window_size(mut self, bytes: u32) -> ServerBuilder {
        self.connection.http2.initial_connection_window_size = crate::transport::window_size(bytes);
        self
    }

    /// The largest HTTP/2 frame payload the server accepts, within HTTP/2's range of 16 KiB
    /// to 16 MiB - 1 (values outside are raised or lowered to it). Default: 16 KiB (HTTP/2's).
    pub fn max_frame_size(mut self, bytes: u32) -> ServerBuilder {
        self.connection.http2.max_frame_size = Some(crate::transport::frame_size(bytes));
        self
    }

    /// Which HTTP/2 implementation serves the connections (feature `engine`, on by
    /// default). Default: [`Http2Engine::Volley`](crate::Http2Engine::Volley), Volley's own
    /// ([`Http2Engine::H2`](crate::Http2Engine::H2) with the feature `h2-default`).
    #[cfg(feature = "engine")]
    pub fn http2_engine(mut self, engine: crate::Http2Engine) -> ServerBuilder {
        self.connection.http2.engine = engine;
        self
    }

    /// The largest request header list (metadata, counted as HTTP/2 does: name + value + 32
    /// bytes per entry) accepted. A request over it is refused on its own (HTTP 431 and
    /// RST_STREAM; other calls on the connection go on); a header block over it on the wire
    /// closes the connection (GOAWAY COMPRESSION_ERROR). Default: 16 KiB, gRPC C-core's
    /// hard limit (grpc-go's 16 MiB let 50 streams of repeated one-byte headers grow a server
    /// by 1.2 GB).
    pub fn max_header_list_size(mut self, bytes: u32) -> ServerBuilder {
        self.connection.http2.max_header_list_size = bytes;
        self
    }

    /// The most bytes of partly received request messages (those that span DATA frames) the
    /// calls of one connection may hold together. A call whose message would pass it fails
    /// with RESOURCE_EXHAUSTED, and the connection's other calls go on. Without it a client
    /// could make every stream gather a message up to the receive limit (256 streams x 4 MiB
    /// = 1 GiB). Raise it with [`ServerBuilder::max_decoding_message_size`] and
    /// [`ServerBuilder::max_concurrent_streams`] for clients that send many large messages at
    /// once on one connection. Default: 64 MiB.
    pub fn max_pending_request_bytes(mut self, bytes: usize) -> ServerBuilder {
        self.connection.max_pending_request_bytes = bytes;
        self
    }

    /// The most connections served at once; while the server holds that many, it accepts no
    /// more (they wait in the listener's backlog) until one closes. Default: no limit.
    pub fn max_connections(mut self, max: usize) -> ServerBuilder {
        self.connection.max_connections = Some(max.max(1));
        self
    }

    /// Sets `TCP_NODELAY` on accepted sockets. Default: true.
    pub fn tcp_nodelay(mut self, enabled: bool) -> ServerBuilder {
        self.connection.tcp_nodelay = enabled;
        self
    }

    /// How long a new connection may take to finish its handshake: the TLS handshake (when
    /// TLS is on), then the client's HTTP/2 preface and its first SETTINGS frame. A connection
    /// that has not by then is closed, so that connections which never speak cannot hold file
    /// descriptors and tasks. Default: 20 s (grpc-go's is 120 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connection.handshake_timeout = capped(timeout);
        self
    }

    /// After a shutdown signal, how long in-flight calls may run before their connections are
    /// closed anyway. Default: no limit (wait for every call, as grpc-go's `GracefulStop`).
    pub fn drain_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connection.drain_timeout = Some(capped(timeout));
        self
    }

    /// After how long without receiving anything from a client the server pings it, to learn
    /// whether the connection is still alive (gRFC A9). Default: 2 hours, as grpc-go.
    pub fn keepalive_time(mut self, time: Duration) -> ServerBuilder {
        self.connection.keepalive.time = capped(time);
        self
    }

    /// How long the server waits for an answer to its keepalive ping (or anything else from
    /// the client) before it closes the connection. Default: 20 s, as grpc-go.
    pub fn keepalive_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.connection.keepalive.timeout = capped(timeout);
        self
    }

    /// A connection with no open call for this long is closed gracefully (GOAWAY); its
    /// client reconnects when it next needs to. Default: never.
    pub fn max_connection_idle(mut self, idle: Duration) -> ServerBuilder {
        self.connection.max_connection_idle = Some(capped(idle));
        self
    }

    /// A connection older than this is closed gracefully (GOAWAY, in-flight calls finish), so
    /// that clients reconnect and spread over servers that joined since, for example behind
    /// an L4 load balancer. Each connection's age is randomised by +/-10% so that clients do
    /// not reconnect all at once. Default: never.
    pub fn max_connection_age(mut self, age: Duration) -> ServerBuilder {
        self.connection.max_connection_age = Some(capped(age));
        self
    }

    /// How long calls may still run on a connection after [`ServerBuilder::max_connection_age`]
    /// closed it; calls open then are ended (their clients see UNAVAILABLE). Default: no
    /// limit.
    pub fn max_connection_age_grace(mut self, grace: Duration) -> ServerBuilder {
        self.connection.max_connection_age_grace = Some(capped(grace));
        self
    }

    /// Ping enforcement: a client ping sooner than this after the previous one is a strike,
    /// and a connection with more than two strikes is closed with GOAWAY ENHANCE_YOUR_CALM
    /// `too_many_pings` (strikes are forgiven whenever the server sends headers or data).
    /// Default: 5 minutes, as grpc-go.
    pub fn min_ping_interval(mut self, interval: Duration) -> ServerBuilder {
        self.connection.ping_policy.min_interval = capped(interval);
        self
    }

    /// Whether clients may send keepalive pings when no call is open; when not, any two pings
    /// without calls less than 2 hours apart are a strike. Default: false, as grpc-go.
    pub fn permit_keepalive_without_calls(mut self, permit: bool) -> ServerBuilder {
        self.connection.ping_policy.permit_without_calls = permit;
        self
    }

    /// Serves TLS with `config` (ALPN `h2`; clients that do not negotiate it are refused).
    /// Fails when the identity or client CA cannot be loaded. Default: plaintext.
    pub fn tls_config(
        mut self,
        config: crate::ServerTlsConfig,
    ) -> Result<ServerBuilder, crate::Error> {
        self.tls = Some(config.build()?);
        Ok(self)
    }

    /// Binds `addr` and serves until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        self.serve_with_shutdown(addr, std::future::pending()).await
    }

    /// Binds `addr` and serves until `signal` completes, then shuts down gracefully: stops
    /// accepting, sends GOAWAY, lets in-flight calls finish (within
    /// [`ServerBuilder::drain_timeout`]), and returns once every connection is closed.
    pub async fn serve_with_shutdown(
        self,
        addr: SocketAddr,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve_with_listener(listener, signal).await
    }

    /// Serves on an already bound listener (bind port 0 and read `local_addr` first to get a
    /// free port) until `signal` completes, then shuts down as
    /// [`ServerBuilder::serve_with_shutdown`] does.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_on(listener, signal).await
    }

    /// Serves on a Unix domain socket listener until `signal` completes, then shuts down as
    /// [`ServerBuilder::serve_with_shutdown`] does. Calls see no remote address.
    pub async fn serve_with_unix_listener(
        self,
        listener: UnixListener,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve_on(listener, signal).await
    }

    /// Serves the connections `incoming` yields (any byte streams: a listener of your own,
    /// connections TLS-terminated elsewhere, in-memory pipes such as
    /// `volley::testing::in_memory`'s) until `signal` completes or `incoming` ends, then
    /// shuts down as [`ServerBuilder::serve_with_shutdown`] does. An `Err` item is logged and
    /// skipped, as a failed accept is. Calls see no remote address. TLS, when configured,
    /// runs over each connection.
    pub async fn serve_with_incoming<S, Io>(
        self,
        incoming: S,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()>
    where
        S: futures_core::Stream<Item = std::io::Result<Io>>,
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_on(Incoming(Box::pin(incoming)), signal).await
    }

    async fn serve_on<L: Listen>(
        self,
        mut listener: L,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let nodelay = self.connection.tcp_nodelay;
        let max_connections = self.connection.max_connections;
        let tls = self.tls;
        #[cfg(feature = "tower")]
        let shared = {
            let layer = self.layer;
            Arc::new_cyclic(|shared| Shared {
                router: self.router,
                config: Arc::new(self.config),
                connection: self.connection,
                stack: layer.map(|make| make(Routes::new(shared.clone()))),
            })
        };
        #[cfg(not(feature = "tower"))]
        let shared = Arc::new(Shared {
            router: self.router,
            config: Arc::new(self.config),
            connection: self.connection,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut signal = std::pin::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                accepted = listener.accept_one(nodelay),
                    if max_connections.is_none_or(|max| connections.len() < max) =>
                match accepted {
                    Ok(None) => break,
                    Ok(Some((socket, remote))) => {
                        let (shared, shutdown) = (shared.clone(), shutdown_rx.clone());
                        let handshake_by =
                            crate::timeout::deadline_after(shared.connection.handshake_timeout);
                        match tls.clone() {
                            None => {
                                connections.spawn(connection::serve_connection(
                                    socket, remote, shared, shutdown, handshake_by,
                                ));
                            }
                            Some(acceptor) => {
                                connections.spawn(async move {
                                    let handshake = crate::tls::accept(&acceptor, socket);
                                    match tokio::time::timeout_at(handshake_by, handshake).await {
                                        Ok(Ok(tls)) => {
                                            connection::serve_connection(
                                                tls, remote, shared, shutdown, handshake_by,
                                            )
                                            .await;
                                        }
                                        Ok(Err(e)) => {
                                            tracing::debug!(?remote, error = %e, "TLS handshake failed");
                                        }
                                        Err(_) => {
                                            tracing::debug!(?remote, "TLS handshake timed out");
                                        }
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        // Accept errors (out of file descriptors...) are transient: log, pause
                        // briefly so a full table can drain, and go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = shutdown_tx.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// A connection accepted, and its peer's address when it has one.
type Accepted<Io> = (Io, Option<SocketAddr>);

/// A listener the server accepts connections from.
trait Listen {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;

    /// The next connection; `None` when no more will come.
    fn accept_one(
        &mut self,
        nodelay: bool,
    ) -> impl Future<Output = std::io::Result<Option<Accepted<Self::Io>>>>;
}

impl Listen for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept_one(&mut self, nodelay: bool) -> std::io::Result<Option<Accepted<Self::Io>>> {
        let (socket, remote) = self.accept().await?;
        if nodelay {
            let _ = socket.set_nodelay(true);
        }
        Ok(Some((socket, Some(remote))))
    }
}

impl Listen for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept_one(&mut self, _nodelay: bool) -> std::io::Result<Option<Accepted<Self::Io>>> {
        let (socket, _) = self.accept().await?;
        Ok(Some((socket, None)))
    }
}

/// Connections from a stream of them (`serve_with_incoming`).
struct Incoming<S>(Pin<Box<S>>);

impl<S, Io> Listen for Incoming<S>
where
    S: futures_core::Stream<Item = std::io::Result<Io>>,
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;

    async fn accept_one(&mut self, _nodelay: bool) -> std::io::Result<Option<Accepted<Io>>> {
        match std::future::poll_fn(|cx| self.0.as_mut().poll_next(cx)).await {
            Some(Ok(io)) => Ok(Some((io, None))),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}
