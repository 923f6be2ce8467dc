//! A subchannel: one address and at most one HTTP/2 connection to it, connected lazily and
//! replaced when it breaks or the server sends GOAWAY.
//!
//! Today a channel has exactly one subchannel; the resolvers and balancers of the client
//! channel issue put several behind a picker without changing the call path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;

use super::channel::ChannelConfig;
use crate::Status;
use crate::transport::client::{self, ClientSettings, Sender};

/// A live connection: the handle that opens streams, and whether the connection still runs.
#[derive(Clone)]
struct Connection {
    sender: Sender,
    alive: Arc<AtomicBool>,
}

pub(crate) struct Subchannel {
    addr: String,
    config: Arc<ChannelConfig>,
    current: Mutex<Option<Connection>>,
    /// Serialises connection attempts so that a burst of calls opens one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl Subchannel {
    pub(crate) fn new(addr: String, config: Arc<ChannelConfig>) -> Subchannel {
        Subchannel {
            addr,
            config,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Sender> {
        let guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .filter(|c| c.alive.load(Ordering::Acquire))
            .map(|c| c.sender.clone())
    }

    /// A handle to open a stream on the live connection, connecting first if there is none.
    pub(crate) async fn sender(&self) -> Result<Sender, Status> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let conn = self.connect().await?;
        let sender = conn.sender.clone();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        Ok(sender)
    }

    /// Forgets the current connection (it refused a new stream: GOAWAY or closed), so the
    /// next call connects again. Streams already open on it finish there.
    pub(crate) fn discard_connection(&self) {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = guard.take() {
            c.alive.store(false, Ordering::Release);
        }
    }

    /// Connects now (for `Channel::connect`).
    pub(crate) async fn connect_now(&self) -> Result<(), Status> {
        self.sender().await.map(drop)
    }

    async fn connect(&self) -> Result<Connection, Status> {
        let addr = &self.addr;
        let attempt = async {
            let tcp = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| Status::unavailable(format!("failed to connect to {addr}: {e}")))?;
            if self.config.tcp_nodelay {
                let _ = tcp.set_nodelay(true);
            }
            let settings = ClientSettings {
                initial_stream_window_size: self.config.initial_stream_window_size,
                initial_connection_window_size: self.config.initial_connection_window_size,
            };
            let (sender, connection) = client::handshake(tcp, &settings).await.map_err(|e| {
                Status::unavailable(format!("HTTP/2 handshake with {addr} failed: {e}"))
            })?;
            let alive = Arc::new(AtomicBool::new(true));
            let flag = alive.clone();
            let peer = addr.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                flag.store(false, Ordering::Release);
            });
            Ok(Connection { sender, alive })
        };
        match tokio::time::timeout(self.config.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Status::unavailable(format!(
                "timed out connecting to {addr} after {:?}",
                self.config.connect_timeout
            ))),
        }
    }
}
