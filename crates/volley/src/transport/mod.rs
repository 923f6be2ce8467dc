//! The transport seam: everything that touches HTTP/2 frames directly lives here or in the
//! stream types built on it (`streaming.rs`, `server/call.rs`, `client/call.rs`).
//!
//! Today this is the `h2` crate. The rest of the crate sees only `h2`'s stream handles through
//! these helpers, so a specialised engine can replace it behind the same functions.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use h2::SendStream;

/// Default per-stream HTTP/2 receive window: 1 MiB (h2's 64 KiB default throttles large
/// messages over any real round trip).
pub(crate) const DEFAULT_STREAM_WINDOW: u32 = 1024 * 1024;
/// Default per-connection HTTP/2 receive window: 2 MiB.
pub(crate) const DEFAULT_CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;

/// Why sending on a stream stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer reset the stream (or the connection went away).
    Reset,
    /// The caller's stop signal fired (a deadline, or the call was dropped) while waiting
    /// for flow-control window.
    Stopped,
}

/// Sends `data` on `stream`, waiting for HTTP/2 flow-control capacity so that a slow reader
/// bounds the memory a fast writer uses. Stops early if the peer resets the stream or `stop`
/// completes.
pub(crate) async fn send_flow_controlled<F: Future>(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end_of_stream: bool,
    mut stop: Pin<&mut F>,
) -> Result<(), SendError> {
    if data.is_empty() {
        return stream
            .send_data(data, end_of_stream)
            .map_err(|_| SendError::Reset);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let mut cap = stream.capacity();
        while cap == 0 {
            cap = poll_fn(|cx| {
                if let Poll::Ready(r) = stream.poll_capacity(cx) {
                    return Poll::Ready(match r {
                        Some(Ok(n)) => Ok(n),
                        Some(Err(_)) | None => Err(SendError::Reset),
                    });
                }
                if stream.poll_reset(cx).is_ready() {
                    return Poll::Ready(Err(SendError::Reset));
                }
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(SendError::Stopped));
                }
                Poll::Pending
            })
            .await?;
        }
        let chunk = data.split_to(cap.min(data.len()));
        stream
            .send_data(chunk, end_of_stream && data.is_empty())
            .map_err(|_| SendError::Reset)?;
    }
    Ok(())
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
