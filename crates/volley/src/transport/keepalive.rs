//! Keepalive: PINGs sent on a connection that has been quiet, and the verdict when one goes
//! unanswered (gRFC A8 for clients, A9 for servers; grpc-go's `keepalive()` loops).

use std::future::poll_fn;
use std::time::Duration;

use tokio::time::Instant;

use super::watch::Activity;

/// Sends PINGs on one connection and waits for their ACKs.
pub(crate) struct Pinger {
    inner: Pings,
    /// A PING was sent and its ACK has not arrived yet.
    outstanding: bool,
}

/// Whose PINGs: h2's, or (feature `engine`) those of a connection on Volley's own engine.
enum Pings {
    H2(h2::PingPong),
    #[cfg(feature = "engine")]
    Engine {
        acks: std::sync::Arc<super::engine::PingSlot>,
        commands: tokio::sync::mpsc::UnboundedSender<super::engine::Command>,
    },
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger")
            .field("outstanding", &self.outstanding)
            .finish()
    }
}

impl Pinger {
    pub(crate) fn new(inner: h2::PingPong) -> Pinger {
        Pinger {
            inner: Pings::H2(inner),
            outstanding: false,
        }
    }

    /// The pinger of a connection on Volley's engine.
    #[cfg(feature = "engine")]
    pub(crate) fn engine(
        (acks, commands): (
            std::sync::Arc<super::engine::PingSlot>,
            tokio::sync::mpsc::UnboundedSender<super::engine::Command>,
        ),
    ) -> Pinger {
        Pinger {
            inner: Pings::Engine { acks, commands },
            outstanding: false,
        }
    }

    /// Sends a PING; `Err` when the connection is closing.
    fn send_ping(&mut self) -> Result<(), ()> {
        match &mut self.inner {
            Pings::H2(inner) => inner.send_ping(h2::Ping::opaque()).map_err(drop),
            #[cfg(feature = "engine")]
            Pings::Engine { commands, .. } => {
                commands.send(super::engine::Command::Ping).map_err(drop)
            }
        }
    }

    /// Ready when the PING's ACK arrived (`Err`: the connection is closing).
    fn poll_pong(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
        match &mut self.inner {
            Pings::H2(inner) => inner.poll_pong(cx).map(|r| r.map(drop).map_err(drop)),
            #[cfg(feature = "engine")]
            Pings::Engine { acks, .. } => acks.poll_ack(cx).map(Ok),
        }
    }
}

/// How keepalive runs on one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepaliveParams {
    /// Ping after this long without receiving anything.
    pub(crate) time: Duration,
    /// Give up when nothing arrives for this long after a ping.
    pub(crate) timeout: Duration,
}

/// Keeps a connection's liveness in check; completes only when a PING went unanswered (and
/// nothing else arrived) for `params.timeout`: the connection is dead and should be closed.
/// Pings only when `may_ping` says so (a client without calls, unless configured otherwise,
/// does not).
///
/// The connection must be driven meanwhile (the ACK is read by whoever polls it).
pub(crate) async fn keepalive(
    pinger: &mut Pinger,
    activity: &Activity,
    params: KeepaliveParams,
    mut may_ping: impl FnMut() -> bool,
) {
    let mut wake = activity.last_read() + params.time;
    loop {
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        let quiet_until = activity.last_read() + params.time;
        if quiet_until > now {
            wake = quiet_until;
            continue;
        }
        if !may_ping() {
            wake = now + params.time;
            continue;
        }
        if !pinger.outstanding {
            if pinger.send_ping().is_err() {
                // The connection is closing; its owner learns that from the connection.
                return std::future::pending().await;
            }
            pinger.outstanding = true;
        }
        let pong = poll_fn(|cx| pinger.poll_pong(cx));
        match tokio::time::timeout(params.timeout, pong).await {
            Ok(Ok(_)) => pinger.outstanding = false,
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) if activity.last_read() >= now => {
                // No ACK yet, but the peer is sending: it is alive (grpc-go counts any read).
            }
            Err(_) => {
                tracing::debug!(
                    timeout = ?params.timeout,
                    "keepalive: no answer to PING; closing the connection"
                );
                return;
            }
        }
        wake = activity.last_read().max(now) + params.time;
    }
}
