//! One accepted connection: the HTTP/2 handshake, then a loop that accepts streams and runs
//! each call as its own task until the connection closes or the server shuts down.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::Shared;
use super::call::ServerCall;
use crate::codec::BufferQuota;
use crate::timeout::FAR_FUTURE;
use crate::transport::keepalive::keepalive;
use crate::transport::server::ServerConnection;
use crate::transport::watch::Activity;

/// Serves one accepted connection; `remote` is the peer's address (none on Unix sockets).
///
/// Besides accepting streams, the loop manages the connection's life (gRFC A9): keepalive
/// pings, the idle and age limits (graceful GOAWAY, then the age's grace), ping enforcement,
/// and the server's shutdown.
pub(crate) async fn serve_connection<T>(
    socket: T,
    remote: Option<SocketAddr>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    handshake_by: Instant,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = Peer(remote);
    let config = &shared.connection;
    let handshake = ServerConnection::handshake(socket, &config.http2, Some(config.ping_policy));
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
                return;
            }
        },
        () = sleep_until(handshake_by) => {
            tracing::debug!(%peer, "no HTTP/2 preface within the handshake timeout; closing");
            return;
        }
        _ = shutdown.wait_for(|s| *s) => return,
    };
    let activity = conn.activity().clone();
    let quota = BufferQuota::new(config.max_pending_request_bytes);
    // The preface is in; the handshake ends with the client's first SETTINGS frame, which h2
    // reads inside `accept`.
    let mut handshake_deadline = pin!(sleep_until(handshake_by));
    let mut handshaking = true;
    let mut pinger = conn.pinger();
    let keepalive = async {
        match pinger.as_mut() {
            Some(pinger) => keepalive(pinger, &activity, config.keepalive, || true).await,
            None => std::future::pending().await,
        }
    };
    let mut keepalive = pin!(keepalive);
    // The watcher flags a ping-policy breach while h2 reads the socket, which happens only
    // inside `conn.accept()` on this task: a check of the flag after it (same turn of the
    // select) sees it, with no `Notify` registration each time the connection wakes.
    let too_many_pings = std::future::poll_fn(|_| {
        if activity.too_many_pings() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let mut too_many_pings = pin!(too_many_pings);
    // Timers: the idle limit (while no call is open) and the age while open; then, once
    // draining, the grace or drain bound and the wait for the GOAWAY's PING ACK.
    let mut state = Life::Open;
    let never = Instant::now() + FAR_FUTURE;
    let mut age_deadline = pin!(sleep_until(
        config
            .max_connection_age
            .map_or(never, |age| Instant::now() + jittered(age))
    ));
    let mut idle_deadline = pin!(sleep_until(
        config
            .max_connection_idle
            .map_or(never, |idle| Instant::now() + idle)
    ));
    let mut close_deadline = pin!(sleep_until(never));
    // After the first GOAWAY of a graceful close, h2 waits for its PING's ACK before sending
    // the final GOAWAY; a client that never answers is closed after this bound (grpc-go's).
    let mut ack_deadline = pin!(sleep_until(never));
    let mut acks_before_goaway = None;
    let (has_age, has_idle) = (
        config.max_connection_age.is_some(),
        config.max_connection_idle.is_some(),
    );
    // One future for the whole loop: `wait_for` made afresh each turn would register with
    // the channel again every time the connection wakes.
    let mut shutdown_signal = pin!(shutdown.wait_for(|s| *s));
    // The idle limit counts from the moment the last call ended (only watched when set).
    let mut calls_ended = pin!(activity.calls_ended());
    loop {
        // `biased`: the connection wakes for every frame it reads and writes, so the
        // branches are polled in order of how often they fire (no random start to draw), and
        // the ones that cannot fire are switched off by their conditions.
        tokio::select! {
            biased;
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    #[cfg(feature = "tower")]
                    if let Some(stack) = &shared.stack {
                        super::tower::serve_call(
                            stack.clone(),
                            request,
                            respond,
                            remote,
                            &quota,
                            activity.call_opened(),
                        );
                        continue;
                    }
                    if let Some((call, path)) =
                        ServerCall::accept(request, respond, shared.config.clone(), remote, &quota)
                    {
                        let span = call.span();
                        if let Some(fut) = shared.router.route(path.path(), call) {
                            // A call is a task of its own, not tied to this one: when the
                            // connection ends (dropping `conn`), h2 ends every stream and
                            // each call, woken by its reset, drops its handler.
                            let open = activity.call_opened();
                            let call = async move {
                                fut.await;
                                drop(open);
                            };
                            // Inside its span only when tracing records it.
                            match span {
                                None => drop(tokio::spawn(call)),
                                Some(span) => drop(tokio::spawn(call.instrument(span))),
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                    break;
                }
                None => break,
            },
            // The condition is read when the select starts, so SETTINGS may have come since:
            // check again.
            () = &mut handshake_deadline, if handshaking => {
                if !activity.settings_seen() {
                    tracing::debug!(%peer, "no SETTINGS within the handshake timeout; closing");
                    break;
                }
                handshaking = false;
            }
            () = &mut calls_ended, if has_idle => {
                calls_ended.set(activity.calls_ended());
                if let (Some(idle), 0) = (config.max_connection_idle, activity.active_calls()) {
                    idle_deadline.as_mut().reset(Instant::now() + idle);
                }
            }
            _ = &mut shutdown_signal, if matches!(state, Life::Open | Life::Draining) => {
                // The server's drain bound applies, unless an age's grace ends sooner.
                let bound = config.drain_timeout.map_or(never, |t| Instant::now() + t);
                if state == Life::Open || bound < close_deadline.deadline() {
                    close_deadline.as_mut().reset(bound);
                }
                state = Life::ShuttingDown;
                begin_drain(&mut conn, &activity, &mut acks_before_goaway, ack_deadline.as_mut());
            }
            () = &mut age_deadline, if has_age && state == Life::Open => {
                tracing::debug!(%peer, "max_connection_age reached: GOAWAY");
                state = Life::Draining;
                begin_drain(&mut conn, &activity, &mut acks_before_goaway, ack_deadline.as_mut());
                let bound = config
                    .max_connection_age_grace
                    .map_or(never, |grace| Instant::now() + grace);
                close_deadline.as_mut().reset(bound);
            }
            () = &mut idle_deadline,
                if has_idle && state == Life::Open && activity.active_calls() == 0 =>
            {
                tracing::debug!(%peer, "max_connection_idle reached: GOAWAY");
                state = Life::Draining;
                begin_drain(&mut conn, &activity, &mut acks_before_goaway, ack_deadline.as_mut());
            }
            () = &mut close_deadline, if state != Life::Open => {
                tracing::debug!(
                    %peer,
                    active = activity.active_calls(),
                    "grace over: closing the connection"
                );
                break;
            }
            () = &mut ack_deadline,
                if acks_before_goaway.is_some_and(|n| activity.ping_acks() == n) =>
            {
                tracing::debug!(%peer, "no PING ACK after GOAWAY; closing the connection");
                break;
            }
            () = &mut keepalive => {
                tracing::debug!(%peer, "keepalive: the client stopped answering; closing");
                break;
            }
            () = &mut too_many_pings, if state != Life::Closing => {
                tracing::debug!(%peer, "the client pinged too often: GOAWAY too_many_pings");
                state = Life::Closing;
                conn.close_too_many_pings();
                // h2 closes once the GOAWAY is written; a client that reads nothing must not
                // hold the connection open.
                close_deadline.as_mut().reset(Instant::now() + Duration::from_secs(1));
            }
        }
    }
    // Dropping `conn` closes the socket and ends every stream still open (after a grace or
    // drain bound, or a broken connection): their calls see the reset and stop.
}

/// Starts a graceful close (GOAWAY 2^31-1 and a PING; h2 sends the final GOAWAY when the
/// PING returns), noting how many PING ACKs the client had sent, so that a client that never
/// answers is closed after [`GOAWAY_PING_TIMEOUT`].
fn begin_drain<T: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut ServerConnection<T>,
    activity: &Activity,
    acks_before: &mut Option<u64>,
    ack_deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) {
    if acks_before.is_none() {
        *acks_before = Some(activity.ping_acks());
        ack_deadline.reset(Instant::now() + GOAWAY_PING_TIMEOUT);
    }
    conn.graceful_shutdown();
}

/// How long a graceful close waits for the client to answer its PING (grpc-go: 1 minute).
const GOAWAY_PING_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// GOAWAY sent for age or idleness; open calls finish.
    Draining,
    /// GOAWAY sent because the server shuts down.
    ShuttingDown,
    /// Closed for too many pings; waiting for the GOAWAY to go out.
    Closing,
}

/// `age` randomised by +/-10% (gRFC A9), so that connections opened together do not all
/// close together.
fn jittered(age: Duration) -> Duration {
    crate::timeout::scaled(age, 1.0 + 0.1 * crate::random::symmetric_unit())
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
