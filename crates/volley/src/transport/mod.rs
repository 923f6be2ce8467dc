//! The transport seam: the only module that knows the HTTP/2 engine (today the `h2` crate).
//!
//! The rest of the crate sees connections ([`server::ServerConnection`], [`client::Sender`]),
//! the two halves of a stream ([`RecvBody`], [`SendBody`]) and [`StreamError`]; a specialised
//! HTTP/2 engine can replace `h2` behind these types.

#[cfg(feature = "tower")]
mod body;
pub(crate) mod client;
#[cfg(feature = "engine")]
pub(crate) mod engine;
mod error;
pub(crate) mod keepalive;
#[cfg(feature = "tower")]
mod pipe;
pub(crate) mod server;
mod stream;
pub(crate) mod watch;

#[cfg(feature = "tower")]
pub(crate) use body::send_body;
#[cfg(feature = "tower")]
pub use body::{BoxBody, BoxError, RequestBody, ResponseBody};
pub(crate) use error::{SendError, StreamError};
#[cfg(feature = "tower")]
pub(crate) use pipe::{BodyIn, PipeRespond};
#[cfg(feature = "tower")]
pub(crate) use server::Respond;
pub(crate) use stream::{RecvBody, SendBody};

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use futures_core::Stream;

use crate::Status;
use crate::codec::{self, CompressionEncoding};
use crate::middleware::{Direction, Observers};

/// Which HTTP/2 implementation a server's or a channel's connections run on (feature
/// `engine`, on by default).
///
/// The default is [`Http2Engine::Volley`]; with the feature `h2-default` it is
/// [`Http2Engine::H2`].
#[cfg(feature = "engine")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Engine {
    /// Volley's own engine (`volley-http2`'s protocol code on a task per connection).
    Volley,
    /// The `h2` crate.
    H2,
}

#[cfg(feature = "engine")]
impl Default for Http2Engine {
    fn default() -> Http2Engine {
        if cfg!(feature = "h2-default") {
            Http2Engine::H2
        } else {
            Http2Engine::Volley
        }
    }
}

/// HTTP/2's largest flow-control window (2^31-1).
const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// A configured window size within HTTP/2's range (h2 panics on a larger one).
pub(crate) fn window_size(bytes: u32) -> u32 {
    if bytes > MAX_WINDOW_SIZE {
        tracing::warn!(bytes, "HTTP/2 window size lowered to 2^31-1");
    }
    bytes.min(MAX_WINDOW_SIZE)
}

/// A configured frame size within HTTP/2's range, 2^14 to 2^24-1 (h2 panics outside it).
pub(crate) fn frame_size(bytes: u32) -> u32 {
    let clamped = bytes.clamp(1 << 14, (1 << 24) - 1);
    if clamped != bytes {
        tracing::warn!(
            bytes,
            clamped,
            "HTTP/2 max frame size outside 16 KiB..16 MiB-1"
        );
    }
    clamped
}

/// Messages that are ready together go out in one DATA write of at most this many bytes:
/// many small messages then cost one frame, not one each.
pub(crate) const MAX_BATCH: usize = 32 * 1024;

/// The budget for h2's small-DATA-frame flood check (GOAWAY ENHANCE_YOUR_CALM
/// `too_many_data_frames`). h2 charges each buffered frame about 256 bytes minus its payload;
/// gRPC peers legitimately send one small frame per message (grpc-go does), so the budget
/// covers a full connection window of the smallest gRPC message (5 bytes).
pub(crate) fn data_frame_budget(connection_window: u32) -> usize {
    (connection_window as usize / 5).max(1) * 256
}

/// How a message stream pumped by [`send_messages`] ended.
#[derive(Debug)]
pub(crate) enum Pumped {
    /// Every message was sent; END_STREAM or trailers are the caller's to send.
    Ended,
    /// The message stream yielded an error, or a message could not be encoded.
    Failed(Status),
    /// The peer reset the stream.
    Reset,
    /// `stop` fired.
    Stopped,
}

/// Whether [`send_messages`] turns a panic in the message stream into a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Panics {
    /// A panic while polling the stream (user code: a handler's response stream) ends the
    /// pumping with `Failed(INTERNAL)`; the messages encoded before it still go out.
    Catch,
    /// A panic unwinds through the caller.
    Propagate,
}

/// What ended one fill of a batch.
enum Event {
    Flush,
    End,
    Failed(Status),
    Reset,
    Stopped,
}

/// Encodes and sends every message of `messages`, batching the ones that are ready together,
/// under flow control. Returns when the messages end, fail, the peer resets the stream, or
/// `stop` fires.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_messages<S, M, F>(
    stream: &mut SendBody,
    mut messages: Pin<&mut S>,
    compression: Option<CompressionEncoding>,
    control: Option<&codec::SendCompression>,
    max_len: usize,
    panics: Panics,
    mut stop: Pin<&mut F>,
    observe: Option<(&Observers, Direction)>,
) -> Pumped
where
    S: Stream<Item = Result<M, Status>> + ?Sized,
    M: prost::Message + 'static,
    F: Future,
{
    let mut batch = BytesMut::new();
    loop {
        let event = poll_fn(|cx| {
            // One panic guard per batch rather than per message: `catch_unwind` calls its
            // closure through a pointer, which a per-message guard would pay each time.
            let mut sealed = batch.len();
            let mut fill = || {
                let messages = messages.as_mut();
                fill_batch(
                    messages,
                    cx,
                    compression,
                    control,
                    max_len,
                    &mut batch,
                    &mut sealed,
                    observe,
                )
            };
            let filled = match panics {
                Panics::Propagate => fill(),
                Panics::Catch => {
                    std::panic::catch_unwind(AssertUnwindSafe(fill)).unwrap_or_else(|_| {
                        // A message half-encoded when the panic struck must not go out.
                        batch.truncate(sealed);
                        tracing::error!("a response stream panicked; the call ends with INTERNAL");
                        Some(Event::Failed(Status::internal("the handler panicked")))
                    })
                }
            };
            if let Some(event) = filled {
                return Poll::Ready(event);
            }
            if !batch.is_empty() {
                return Poll::Ready(Event::Flush);
            }
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(Event::Reset);
            }
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Stopped);
            }
            Poll::Pending
        })
        .await;
        // Whatever ended the loop, what was already encoded goes out first.
        if !batch.is_empty() {
            let data = batch.split().freeze();
            match stream
                .send_flow_controlled(data, false, stop.as_mut())
                .await
            {
                Ok(()) => {}
                Err(SendError::Reset) => return Pumped::Reset,
                Err(SendError::Stopped) => return Pumped::Stopped,
            }
        }
        match event {
            Event::Flush => continue,
            Event::End => return Pumped::Ended,
            Event::Failed(status) => return Pumped::Failed(status),
            Event::Reset => return Pumped::Reset,
            Event::Stopped => return Pumped::Stopped,
        }
    }
}

/// Polls `messages` and encodes what is ready into `batch` until the stream is pending
/// (`None`), the batch is full (`Flush`), or the stream ends or fails; `sealed` is the batch's
/// length after the last whole message.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fill_batch<S, M>(
    mut messages: Pin<&mut S>,
    cx: &mut std::task::Context<'_>,
    compression: Option<CompressionEncoding>,
    control: Option<&codec::SendCompression>,
    max_len: usize,
    batch: &mut BytesMut,
    sealed: &mut usize,
    observe: Option<(&Observers, Direction)>,
) -> Option<Event>
where
    S: Stream<Item = Result<M, Status>> + ?Sized,
    M: prost::Message + 'static,
{
    loop {
        match messages.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(msg))) => {
                if let Some((observers, direction)) = observe {
                    observers.message(direction, &msg);
                }
                if batch.capacity() == 0 {
                    // A whole batch at once, rather than doubling up to it.
                    batch.reserve(MAX_BATCH + 1024);
                }
                let compression = codec::SendCompression::apply(control, compression);
                if let Err(status) = codec::encode_into(&msg, compression, max_len, batch) {
                    return Some(Event::Failed(status));
                }
                *sealed = batch.len();
                if batch.len() >= MAX_BATCH {
                    return Some(Event::Flush);
                }
            }
            Poll::Ready(Some(Err(status))) => return Some(Event::Failed(status)),
            Poll::Ready(None) => return Some(Event::End),
            Poll::Pending => return None,
        }
    }
}

/// A future that completes when an optional deadline passes (never, without one).
pub(crate) fn deadline_passed(
    deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> impl Future<Output = ()> + '_ {
    poll_fn(move |cx| match deadline.as_mut() {
        Some(d) => d.as_mut().poll(cx),
        None => Poll::Pending,
    })
}
