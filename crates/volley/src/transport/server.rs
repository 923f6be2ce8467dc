//! The server side of one HTTP/2 connection: handshake, accepting streams, responding, and
//! graceful shutdown.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::data_frame_budget;
use super::error::StreamError;
use super::keepalive::Pinger;
use super::stream::{RecvBody, SendBody};
use super::watch::{Activity, PingPolicy, Watched};

/// HTTP/2 settings of a server connection.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_frame_size: Option<u32>,
    pub(crate) max_header_list_size: u32,
    /// Which HTTP/2 implementation serves the connection.
    #[cfg(feature = "engine")]
    pub(crate) engine: super::Http2Engine,
}

/// An accepted HTTP/2 connection.
pub(crate) struct ServerConnection<T> {
    inner: Conn<T>,
    activity: Arc<Activity>,
}

/// The HTTP/2 implementation under a [`ServerConnection`]. One per connection, for its whole
/// life, so the sizes' difference costs nothing worth a box (and its indirection).
#[allow(clippy::large_enum_variant)]
enum Conn<T> {
    H2(h2::server::Connection<Watched<T>, Bytes>),
    #[cfg(feature = "engine")]
    Engine(super::engine::server::EngineConnection<T>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> ServerConnection<T> {
    /// Reads the client preface and exchanges SETTINGS. `ping_policy` limits how often the
    /// client may ping (none: no limit).
    pub(crate) async fn handshake(
        io: T,
        settings: &ServerSettings,
        ping_policy: Option<PingPolicy>,
    ) -> Result<Self, StreamError> {
        #[cfg(feature = "engine")]
        if settings.engine == super::Http2Engine::Volley {
            let config = volley_http2::server::Config {
                max_concurrent_streams: settings.max_concurrent_streams.unwrap_or(u32::MAX),
                initial_window_size: settings.initial_stream_window_size,
                connection_window_size: settings.initial_connection_window_size,
                max_frame_size: settings
                    .max_frame_size
                    .unwrap_or(volley_http2::frame::DEFAULT_MAX_FRAME_SIZE),
                max_header_list_size: settings.max_header_list_size,
                ..volley_http2::server::Config::default()
            };
            let conn =
                super::engine::server::EngineConnection::handshake(io, config, ping_policy).await?;
            return Ok(ServerConnection {
                activity: conn.activity().clone(),
                inner: Conn::Engine(conn),
            });
        }
        let (io, activity) = Watched::server(io, ping_policy);
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(settings.initial_stream_window_size)
            .initial_connection_window_size(settings.initial_connection_window_size)
            .max_header_list_size(settings.max_header_list_size)
            .data_frame_budget(data_frame_budget(settings.initial_connection_window_size));
        if let Some(n) = settings.max_concurrent_streams {
            builder.max_concurrent_streams(n);
        }
        if let Some(n) = settings.max_frame_size {
            builder.max_frame_size(n);
        }
        let inner = builder.handshake(io).await?;
        Ok(ServerConnection {
            inner: Conn::H2(inner),
            activity,
        })
    }

    /// What the connection's frames say: when the client last sent anything, and whether it
    /// broke the ping policy.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// The connection's PING sender, for keepalive (once; `None` after).
    pub(crate) fn pinger(&mut self) -> Option<Pinger> {
        match &mut self.inner {
            Conn::H2(inner) => inner.ping_pong().map(Pinger::new),
            #[cfg(feature = "engine")]
            Conn::Engine(conn) => Some(Pinger::engine(conn.ping_handle())),
        }
    }

    /// The next stream a client opened, driving the connection meanwhile. `None` once the
    /// connection is closed.
    pub(crate) async fn accept(
        &mut self,
    ) -> Option<Result<(http::Request<RecvBody>, Respond), StreamError>> {
        match &mut self.inner {
            Conn::H2(inner) => match inner.accept().await? {
                Ok((request, respond)) => {
                    Some(Ok((request.map(RecvBody::new), Respond::h2(respond))))
                }
                Err(e) => Some(Err(e.into())),
            },
            #[cfg(feature = "engine")]
            Conn::Engine(conn) => match std::future::poll_fn(|cx| conn.poll_accept(cx)).await? {
                Ok((request, respond)) => Some(Ok((
                    request.map(RecvBody::engine),
                    Respond {
                        inner: Answer::Engine(respond),
                    },
                ))),
                Err(e) => Some(Err(e)),
            },
        }
    }

    /// Starts a graceful shutdown: GOAWAY(2^31-1) and a PING, then the final GOAWAY once the
    /// PING returns, so that streams already in flight are never refused (gRFC A9). Streams
    /// open then run to completion.
    pub(crate) fn graceful_shutdown(&mut self) {
        match &mut self.inner {
            Conn::H2(inner) => inner.graceful_shutdown(),
            #[cfg(feature = "engine")]
            Conn::Engine(conn) => conn.graceful_shutdown(),
        }
    }

    /// Closes the connection because the client pinged too often: GOAWAY ENHANCE_YOUR_CALM
    /// with debug data `too_many_pings` (added by [`Watched`]), streams reset, then the
    /// connection closes once the GOAWAY is written.
    pub(crate) fn close_too_many_pings(&mut self) {
        match &mut self.inner {
            Conn::H2(inner) => inner.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM),
            #[cfg(feature = "engine")]
            Conn::Engine(conn) => conn.close_too_many_pings(),
        }
    }
}

/// Answers one stream: response headers (or a headers-only response), and resets.
pub(crate) struct Respond {
    inner: Answer,
}

/// Where a [`Respond`]'s response goes: the h2 stream, or (with the `tower` feature) back up
/// through a tower stack as an `http::Response`.
enum Answer {
    H2(h2::server::SendResponse<Bytes>),
    #[cfg(feature = "tower")]
    Pipe(super::pipe::PipeRespond),
    #[cfg(feature = "engine")]
    Engine(super::engine::handles::EngineRespond),
}

impl Respond {
    fn h2(inner: h2::server::SendResponse<Bytes>) -> Respond {
        Respond {
            inner: Answer::H2(inner),
        }
    }

    /// A response that goes back through a tower stack.
    #[cfg(feature = "tower")]
    pub(crate) fn pipe(inner: super::pipe::PipeRespond) -> Respond {
        Respond {
            inner: Answer::Pipe(inner),
        }
    }

    /// Sends the response headers; with `end_of_stream` they are the whole response
    /// (Trailers-Only or a bare HTTP error). `None` when the stream is already gone.
    pub(crate) fn send_response(
        &mut self,
        response: http::Response<()>,
        end_of_stream: bool,
    ) -> Option<SendBody> {
        match &mut self.inner {
            Answer::H2(inner) => inner
                .send_response(response, end_of_stream)
                .ok()
                .map(SendBody::new),
            #[cfg(feature = "tower")]
            Answer::Pipe(pipe) => pipe
                .send_response(response, end_of_stream)
                .map(SendBody::pipe),
            #[cfg(feature = "engine")]
            Answer::Engine(respond) => respond
                .send_response(response, end_of_stream)
                .map(SendBody::engine),
        }
    }

    /// Sends gRPC's usual response headers: `:status: 200` and `content-type:
    /// application/grpc`, nothing else (Volley's engine sends them as pre-encoded bytes,
    /// with no header map built). `None` when the stream is already gone.
    pub(crate) fn send_grpc_head(&mut self) -> Option<SendBody> {
        #[cfg(feature = "engine")]
        if let Answer::Engine(respond) = &mut self.inner {
            return respond.send_grpc_head().map(SendBody::engine);
        }
        let mut response = http::Response::new(());
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, crate::codec::APPLICATION_GRPC);
        self.send_response(response, false)
    }

    /// Sends a whole unary response: gRPC's usual headers (as
    /// [`send_grpc_head`](Self::send_grpc_head)), `data`, and `grpc-status: 0` alone as
    /// trailers (Volley's engine takes it as one command). False when the stream is already
    /// gone.
    pub(crate) fn send_grpc_unary(&mut self, data: bytes::Bytes) -> bool {
        #[cfg(feature = "engine")]
        if let Answer::Engine(respond) = &mut self.inner {
            return respond.send_grpc_unary(data);
        }
        let Some(mut stream) = self.send_grpc_head() else {
            return false;
        };
        if stream.send_data(data, false).is_ok() {
            let _ = stream.send_ok_trailers();
        }
        true
    }

    /// Ready when the client has reset the stream (or the connection is gone).
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.inner {
            Answer::H2(inner) => inner.poll_reset(cx).map(drop),
            #[cfg(feature = "tower")]
            Answer::Pipe(pipe) => pipe.poll_reset(cx),
            #[cfg(feature = "engine")]
            Answer::Engine(respond) => respond.poll_reset(cx),
        }
    }
}
