//! One accepted connection: the HTTP/2 handshake, then a loop that accepts streams and runs
//! each call as its own task until the connection closes or the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::call::ServerCall;
use super::router::Router;
use super::{ConnectionConfig, ServerConfig};
use crate::transport::data_frame_budget;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) connection: ConnectionConfig,
}

pub(crate) async fn serve_connection(
    socket: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let opts = &shared.connection;
    if opts.tcp_nodelay {
        let _ = socket.set_nodelay(true);
    }
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(opts.initial_stream_window_size)
        .initial_connection_window_size(opts.initial_connection_window_size)
        .max_header_list_size(opts.max_header_list_size)
        .data_frame_budget(data_frame_budget(opts.initial_connection_window_size));
    if let Some(n) = opts.max_concurrent_streams {
        builder.max_concurrent_streams(n);
    }
    if let Some(n) = opts.max_frame_size {
        builder.max_frame_size(n);
    }
    let handshake = builder.handshake::<_, bytes::Bytes>(socket);
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "HTTP/2 handshake failed");
                return;
            }
        },
        _ = shutdown.wait_for(|s| *s) => return,
    };
    let mut calls = JoinSet::new();
    let mut draining = false;
    let drain_deadline = tokio::time::sleep(std::time::Duration::MAX);
    let mut drain_deadline = std::pin::pin!(drain_deadline);
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    if let Some((call, path)) =
                        ServerCall::accept(request, respond, shared.config.clone(), Some(remote))
                    {
                        if let Some(fut) = shared.router.route(path.path(), call) {
                            calls.spawn(fut);
                        }
                    }
                }
                Some(Err(e)) => {
                    if !e.is_io() && !e.is_go_away() {
                        tracing::debug!(%remote, error = %e, "HTTP/2 connection error");
                    }
                    break;
                }
                None => break,
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            _ = shutdown.wait_for(|s| *s), if !draining => {
                draining = true;
                // h2 sends GOAWAY(2^31-1) and a PING, then the final GOAWAY once the PING
                // returns, so streams already in flight are never refused (gRFC A9).
                conn.graceful_shutdown();
                if let Some(t) = shared.connection.drain_timeout {
                    drain_deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + t);
                }
            }
            _ = &mut drain_deadline, if draining => {
                tracing::debug!(%remote, active = calls.len(), "drain timeout: closing connection");
                break;
            }
        }
    }
    // Dropping the set aborts calls still running (after a drain timeout or a broken
    // connection); dropping `conn` closes the socket.
    calls.abort_all();
}
