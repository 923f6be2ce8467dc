//! One accepted connection: the HTTP/2 handshake, then a loop that accepts streams and runs
//! each call as its own task until the connection closes or the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::call::ServerCall;
use super::router::Router;
use super::{ConnectionConfig, ServerConfig};
use crate::transport::server::ServerConnection;

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) connection: ConnectionConfig,
}

/// Serves one accepted connection; `remote` is the peer's address (none on Unix sockets).
pub(crate) async fn serve_connection<T>(
    socket: T,
    remote: Option<SocketAddr>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = Peer(remote);
    let handshake = ServerConnection::handshake(socket, &shared.connection.http2);
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
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
                        ServerCall::accept(request, respond, shared.config.clone(), remote)
                    {
                        if let Some(fut) = shared.router.route(path.path(), call) {
                            calls.spawn(fut);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                    break;
                }
                None => break,
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            _ = shutdown.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.graceful_shutdown();
                if let Some(t) = shared.connection.drain_timeout {
                    drain_deadline
                        .as_mut()
                        .reset(tokio::time::Instant::now() + t);
                }
            }
            _ = &mut drain_deadline, if draining => {
                tracing::debug!(%peer, active = calls.len(), "drain timeout: closing connection");
                break;
            }
        }
    }
    // Dropping the set aborts calls still running (after a drain timeout or a broken
    // connection); dropping `conn` closes the socket.
    calls.abort_all();
}

/// A peer address for logs: `ip:port`, or `unix` for a Unix socket.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unix"),
        }
    }
}
