//! The client side of one HTTP/2 connection: handshake, a cloneable handle that opens
//! streams, and the future that drives the connection.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::data_frame_budget;
use super::error::StreamError;
use super::keepalive::Pinger;
use super::stream::{ActiveStream, RecvBody, SendBody};
use super::watch::{Activity, Watched};

/// HTTP/2 settings of a client connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_header_list_size: u32,
    /// Which HTTP/2 implementation runs the connection.
    #[cfg(feature = "engine")]
    pub(crate) engine: super::Http2Engine,
}

/// Opens streams on one connection; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    inner: Opener,
    active: Arc<AtomicUsize>,
}

/// Whose streams a [`Sender`] opens: h2's, or (feature `engine`) Volley's own engine's.
#[derive(Clone, Debug)]
enum Opener {
    H2(h2::client::SendRequest<Bytes>),
    #[cfg(feature = "engine")]
    Engine(super::engine::client::EngineSender),
}

/// The future that drives a connection, boxed so that connections over different I/O types
/// look alike.
pub(crate) type Driver = Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send>>;

/// What a connection's owner learns from it, besides the streams.
#[derive(Debug)]
pub(crate) struct ConnectionSignals {
    /// Fires when the connection stops accepting new streams: the server sent GOAWAY, or the
    /// connection failed. Streams already open may go on.
    pub(crate) going_away: oneshot::Receiver<()>,
    /// Dropping this tells the connection that no new stream will be opened on it, so that
    /// it closes once its open streams end.
    pub(crate) release: oneshot::Sender<()>,
    /// Sends keepalive PINGs.
    pub(crate) pinger: Option<Pinger>,
    /// When the server last sent anything, and whether it said `too_many_pings`.
    pub(crate) activity: Arc<Activity>,
    /// How many streams are open on the connection.
    pub(crate) streams: StreamCount,
}

/// Counts the streams open on one connection.
#[derive(Debug, Clone)]
pub(crate) struct StreamCount(Arc<AtomicUsize>);

impl StreamCount {
    /// Streams open now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sends the client preface and SETTINGS. Returns the stream opener, the future that drives
/// the connection (run it on a task; it ends when the connection closes) and its signals.
pub(crate) async fn handshake<T>(
    io: T,
    settings: &ClientSettings,
) -> Result<(Sender, Driver, ConnectionSignals), StreamError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "engine")]
    if settings.engine == super::Http2Engine::Volley {
        return engine_handshake(io, settings).await;
    }
    let (io, activity) = Watched::client(io);
    let (inner, mut connection) = h2::client::Builder::new()
        .initial_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .max_header_list_size(settings.max_header_list_size)
        .enable_push(false)
        // Open no stream before the server's SETTINGS arrive (as grpc-go waits for them):
        // streams beyond its SETTINGS_MAX_CONCURRENT_STREAMS would be refused. h2 queues
        // them until then and replaces this with the server's limit.
        .initial_max_send_streams(0)
        .data_frame_budget(data_frame_budget(settings.initial_connection_window_size))
        .handshake::<_, Bytes>(io)
        .await?;
    // The connection counts as established once the server's SETTINGS arrive (as in grpc-go):
    // a peer that accepts TCP and then closes, or is not HTTP/2, is a failed attempt (and
    // backs off), not a READY connection that dies at once. Until then h2 allows no stream
    // (initial_max_send_streams(0) above); the server's SETTINGS raise the limit.
    let pinger = connection.ping_pong().map(Pinger::new);
    poll_fn(|cx| match Pin::new(&mut connection).poll(cx) {
        Poll::Ready(Ok(())) => Poll::Ready(Err(StreamError::closed_early(
            "the server closed the connection before sending its SETTINGS",
        ))),
        Poll::Ready(Err(e)) => Poll::Ready(Err(StreamError::from(e))),
        Poll::Pending if inner.current_max_send_streams() > 0 => Poll::Ready(Ok(())),
        Poll::Pending => Poll::Pending,
    })
    .await?;
    let (going_away_tx, going_away) = oneshot::channel();
    let (release, mut released) = oneshot::channel::<()>();
    // h2 has no GOAWAY event: it records a received GOAWAY (or a failure) as the error that
    // refuses new streams. After each turn of the connection, a probe handle asks whether new
    // streams are still accepted. The probe counts as a user of the connection, so it is
    // dropped once the owner releases the connection (or it went away), letting h2 close.
    let mut probe = Some(inner.clone());
    let mut going_away_tx = Some(going_away_tx);
    let driver = async move {
        poll_fn(|cx| {
            if probe.is_some() && Pin::new(&mut released).poll(cx).is_ready() {
                probe = None;
            }
            let result = Pin::new(&mut connection).poll(cx);
            if let Some(p) = probe.as_mut() {
                let mut noop = Context::from_waker(Waker::noop());
                if let Poll::Ready(Err(_)) = p.poll_ready(&mut noop) {
                    probe = None;
                    if let Some(tx) = going_away_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
            if result.is_ready() {
                probe = None;
            }
            result
        })
        .await
        .map_err(StreamError::from)
    };
    let active = Arc::new(AtomicUsize::new(0));
    let signals = ConnectionSignals {
        going_away,
        release,
        pinger,
        activity,
        streams: StreamCount(active.clone()),
    };
    let sender = Sender {
        inner: Opener::H2(inner),
        active,
    };
    Ok((sender, Box::pin(driver), signals))
}

/// [`handshake`] on Volley's own engine.
#[cfg(feature = "engine")]
async fn engine_handshake<T>(
    io: T,
    settings: &ClientSettings,
) -> Result<(Sender, Driver, ConnectionSignals), StreamError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = volley_http2::client::Config {
        initial_window_size: settings.initial_stream_window_size,
        connection_window_size: settings.initial_connection_window_size,
        max_header_list_size: settings.max_header_list_size,
        ..volley_http2::client::Config::default()
    };
    let (opener, mut conn, pings, activity, going_away) =
        super::engine::client::EngineClient::handshake(io, config).await?;
    let driver = async move { poll_fn(|cx| conn.poll_drive(cx)).await };
    // The engine closes a connection once every sender is gone and its streams ended; the
    // owner's release changes nothing more.
    let (release, _) = oneshot::channel();
    let active = Arc::new(AtomicUsize::new(0));
    let signals = ConnectionSignals {
        going_away,
        release,
        pinger: Some(Pinger::engine(pings)),
        activity,
        streams: StreamCount(active.clone()),
    };
    let sender = Sender {
        inner: Opener::Engine(opener),
        active,
    };
    Ok((sender, Box::pin(driver), signals))
}

impl Sender {
    /// Opens a stream with `request`'s headers. Fails when the connection no longer accepts
    /// streams (after GOAWAY, or closed): the server never saw the request.
    pub(crate) async fn open(
        self,
        request: http::Request<()>,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendBody), StreamError> {
        let active = Some(ActiveStream::new(self.active.clone()));
        match self.inner {
            Opener::H2(inner) => {
                let mut ready = inner.ready().await?;
                let (response, send) = ready.send_request(request, end_of_stream)?;
                let response = ResponseFuture {
                    inner: Pending::H2(response),
                    active,
                };
                Ok((response, SendBody::new(send)))
            }
            #[cfg(feature = "engine")]
            Opener::Engine(opener) => {
                let (head, ()) = request.into_parts();
                let (response, link) = opener.open(head, end_of_stream)?;
                let send = super::engine::handles::EngineSend::new(link.clone());
                let response = ResponseFuture {
                    inner: Pending::Engine {
                        response,
                        link: Some(link),
                    },
                    active,
                };
                Ok((response, SendBody::engine(send)))
            }
        }
    }

    /// How many streams opened by this connection's senders are still in use.
    pub(crate) fn active_streams(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// The response headers of a stream, to come.
#[derive(Debug)]
pub(crate) struct ResponseFuture {
    inner: Pending,
    active: Option<ActiveStream>,
}

/// Whose response a [`ResponseFuture`] waits for.
#[derive(Debug)]
enum Pending {
    H2(h2::client::ResponseFuture),
    #[cfg(feature = "engine")]
    Engine {
        response: oneshot::Receiver<Result<http::response::Parts, super::engine::Failure>>,
        /// The stream's link, for the body (taken when the response comes).
        link: Option<Arc<super::engine::Link>>,
    },
}

impl ResponseFuture {
    /// Stops counting the stream as active on its connection (the channel's idle timer and
    /// keepalive-without-calls read the count): for the subchannel's own health-check stream,
    /// which is not a call.
    pub(crate) fn uncounted(mut self) -> ResponseFuture {
        self.active = None;
        self
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<RecvBody>, StreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match &mut this.inner {
            Pending::H2(inner) => Pin::new(inner).poll(cx).map(|r| {
                let active = this.active.take();
                r.map(|resp| resp.map(|body| RecvBody::new(body).counted(active)))
                    .map_err(StreamError::from)
            }),
            #[cfg(feature = "engine")]
            Pending::Engine { response, link } => Pin::new(response).poll(cx).map(|r| {
                use super::engine::Failure;
                let head = r
                    .unwrap_or(Err(Failure::Closed("the connection closed")))
                    .map_err(StreamError::engine)?;
                let link = link.take().ok_or(StreamError::engine(Failure::Closed(
                    "response already taken",
                )))?;
                let body = RecvBody::engine(super::engine::handles::EngineRecv::new(link))
                    .counted(this.active.take());
                Ok(http::Response::from_parts(head, body))
            }),
        }
    }
}
