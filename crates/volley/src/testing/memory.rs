//! [`in_memory`]: a client and a server connected by in-memory pipes, no sockets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::client::{BoxIo, ConnectFuture, Connector};
use crate::resolver::Address;

/// The size of each direction's in-memory buffer.
const PIPE_BUFFER: usize = 256 * 1024;

/// A server's side of [`in_memory`]: the connections clients open, for
/// [`crate::ServerBuilder::serve_with_incoming`]. It ends when every [`MemoryConnector`] is
/// dropped.
#[derive(Debug)]
pub struct MemoryIncoming {
    connections: mpsc::UnboundedReceiver<DuplexStream>,
}

impl futures_core::Stream for MemoryIncoming {
    type Item = io::Result<DuplexStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// A client's side of [`in_memory`]: a [`Connector`] whose every connection, whatever the
/// address, is a new pipe to the server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    server: mpsc::UnboundedSender<DuplexStream>,
}

impl Connector for MemoryConnector {
    fn connect(&self, _address: &Address) -> ConnectFuture {
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        let sent = self.server.send(server);
        Box::pin(async move {
            sent.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "the in-memory server is gone",
                )
            })?;
            Ok(Box::new(client) as BoxIo)
        })
    }
}

/// An in-memory transport for tests: serve `MemoryIncoming` with
/// [`crate::ServerBuilder::serve_with_incoming`], and give channels the `MemoryConnector`
/// ([`crate::ChannelBuilder::connector`]); any target then reaches the server (use
/// `passthrough:///in-memory`). Real HTTP/2 runs over the pipes, so everything but the
/// sockets is exercised.
///
/// ```
/// # async fn demo() -> Result<(), volley::Error> {
/// let (incoming, connector) = volley::testing::in_memory();
/// let server = volley::Server::builder(); // .add_service(...)
/// tokio::spawn(server.serve_with_incoming(incoming, std::future::pending()));
/// let channel = volley::Channel::builder("passthrough:///in-memory")
///     .connector(connector)
///     .build()?;
/// # Ok(()) }
/// ```
pub fn in_memory() -> (MemoryIncoming, MemoryConnector) {
    let (server, connections) = mpsc::unbounded_channel();
    (MemoryIncoming { connections }, MemoryConnector { server })
}
