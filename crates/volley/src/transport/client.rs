//! The client side of one HTTP/2 connection: handshake, a cloneable handle that opens
//! streams, and the future that drives the connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::data_frame_budget;
use super::stream::{RecvBody, SendBody, StreamError};

/// HTTP/2 settings of a client connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
}

/// Opens streams on one connection; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Sender {
    inner: h2::client::SendRequest<Bytes>,
}

/// Sends the client preface and SETTINGS. Returns the stream opener and the future that drives
/// the connection (run it on a task; it ends when the connection closes).
pub(crate) async fn handshake<T>(
    io: T,
    settings: &ClientSettings,
) -> Result<
    (
        Sender,
        impl Future<Output = Result<(), StreamError>> + Send + use<T>,
    ),
    StreamError,
>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (inner, connection) = h2::client::Builder::new()
        .initial_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .enable_push(false)
        // Open no stream before the server's SETTINGS arrive (as grpc-go waits for them):
        // streams beyond its SETTINGS_MAX_CONCURRENT_STREAMS would be refused. h2 queues
        // them until then and replaces this with the server's limit.
        .initial_max_send_streams(0)
        .data_frame_budget(data_frame_budget(settings.initial_connection_window_size))
        .handshake::<_, Bytes>(io)
        .await?;
    let driver = async move { connection.await.map_err(StreamError::from) };
    Ok((Sender { inner }, driver))
}

impl Sender {
    /// Opens a stream with `request`'s headers. Fails when the connection no longer accepts
    /// streams (after GOAWAY, or closed): the server never saw the request.
    pub(crate) async fn open(
        self,
        request: http::Request<()>,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendBody), StreamError> {
        let mut ready = self.inner.ready().await?;
        let (response, send) = ready.send_request(request, end_of_stream)?;
        Ok((ResponseFuture { inner: response }, SendBody::new(send)))
    }
}

/// The response headers of a stream, to come.
#[derive(Debug)]
pub(crate) struct ResponseFuture {
    inner: h2::client::ResponseFuture,
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<RecvBody>, StreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx).map(|r| {
            r.map(|resp| resp.map(RecvBody::new))
                .map_err(StreamError::from)
        })
    }
}
