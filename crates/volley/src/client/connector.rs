//! [`Connector`]: how a channel's subchannels open their byte streams, when the program
//! dials them itself (a proxy, a custom socket option, an in-memory pipe for tests).

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use super::resolver::Address;

/// A byte stream a [`Connector`] opened: anything readable and writable.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// What [`Connector::connect`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send + 'static>>;

/// Opens the byte stream a subchannel runs HTTP/2 (and TLS, when the channel has it) over,
/// instead of the channel's own TCP or Unix socket: set one with
/// [`crate::ChannelBuilder::connector`]. Connection attempts keep their timeout and backoff.
/// A closure `Fn(Address) -> impl Future<Output = io::Result<BoxIo>>` is a connector.
///
/// ```no_run
/// # async fn demo() -> Result<(), volley::Error> {
/// use volley::{BoxIo, Channel};
///
/// let channel = Channel::builder("dns:///backend.internal:50051")
///     .connector(|address: volley::resolver::Address| async move {
///         // e.g. through a SOCKS proxy, or with socket options of your own
///         let tcp = tokio::net::TcpStream::connect(address.to_string()).await?;
///         Ok(Box::new(tcp) as BoxIo)
///     })
///     .build()?;
/// # Ok(()) }
/// ```
pub trait Connector: Send + Sync + 'static {
    /// Opens a byte stream to `address`.
    fn connect(&self, address: &Address) -> ConnectFuture;
}

impl<F, Fut> Connector for F
where
    F: Fn(Address) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<BoxIo>> + Send + 'static,
{
    fn connect(&self, address: &Address) -> ConnectFuture {
        Box::pin(self(address.clone()))
    }
}
