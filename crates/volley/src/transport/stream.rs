//! The two halves of one HTTP/2 stream as the rest of the crate sees them: [`RecvBody`] (DATA
//! and trailers coming in) and [`SendBody`] (DATA and trailers going out), plus
//! [`StreamError`].

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;

use crate::{Code, Status};

/// A failure on a stream or its connection.
#[derive(Debug)]
pub(crate) struct StreamError(Repr);

#[derive(Debug)]
enum Repr {
    H2(h2::Error),
    /// The connection closed before it was established.
    ClosedEarly(&'static str),
}

impl StreamError {
    /// The connection ended before it could be used (`why` says how).
    pub(crate) fn closed_early(why: &'static str) -> StreamError {
        StreamError(Repr::ClosedEarly(why))
    }

    /// True when the peer (or the connection's end) reset this stream, as opposed to an I/O
    /// error.
    pub(crate) fn is_reset(&self) -> bool {
        matches!(&self.0, Repr::H2(e) if e.reason().is_some())
    }

    /// True when the server certainly did not process the stream, so that the request can be
    /// sent again elsewhere: the stream was refused (RST_STREAM REFUSED_STREAM), or it was
    /// above the last stream id of a graceful GOAWAY.
    pub(crate) fn is_unprocessed(&self) -> bool {
        let Repr::H2(err) = &self.0 else {
            return false;
        };
        err.is_remote()
            && match err.reason() {
                Some(h2::Reason::REFUSED_STREAM) => err.is_reset(),
                Some(h2::Reason::NO_ERROR) => err.is_go_away(),
                _ => false,
            }
    }

    /// The status this failure ends a call with (`doc/PROTOCOL-HTTP2.md`: RST_STREAM codes
    /// map by its table; a GOAWAY, whatever its code, and connection failures mean the
    /// connection is gone: UNAVAILABLE, as in grpc-go).
    pub(crate) fn to_status(&self) -> Status {
        let err = match &self.0 {
            Repr::H2(err) => err,
            Repr::ClosedEarly(why) => {
                return Status::unavailable(format!("connection error: {why}"));
            }
        };
        if let Some(reason) = err.reason() {
            let code = if err.is_go_away() {
                Code::Unavailable
            } else {
                Code::from_http2_error_code(reason.into())
            };
            let kind = if err.is_go_away() {
                "GOAWAY"
            } else {
                "RST_STREAM"
            };
            return Status::new(code, format!("HTTP/2 {kind} with error code {reason:?}"));
        }
        if err.is_io() {
            return Status::unavailable(format!("connection error: {err}"));
        }
        Status::internal(format!("HTTP/2 error: {err}"))
    }
}

impl From<h2::Error> for StreamError {
    fn from(err: h2::Error) -> StreamError {
        StreamError(Repr::H2(err))
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::H2(e) => e.fmt(f),
            Repr::ClosedEarly(why) => f.write_str(why),
        }
    }
}

/// The receiving half of a stream.
#[derive(Debug)]
pub(crate) struct RecvBody(h2::RecvStream, Option<ActiveStream>);

impl RecvBody {
    pub(crate) fn new(inner: h2::RecvStream) -> RecvBody {
        RecvBody(inner, None)
    }

    /// Keeps the stream counted as active on its connection while the body lives.
    pub(crate) fn counted(mut self, active: Option<ActiveStream>) -> RecvBody {
        self.1 = active;
        self
    }

    /// The next DATA chunk. Its bytes are credited back to the peer's flow-control window at
    /// once: the caller only polls when it wants more, which is what bounds the buffering.
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, StreamError>>> {
        match self.0.poll_data(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let _ = self.0.flow_control().release_capacity(chunk.len());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(StreamError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The trailers, once the DATA is over.
    pub(crate) fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, StreamError>> {
        self.0.poll_trailers(cx).map_err(StreamError::from)
    }
}

/// The sending half of a stream.
#[derive(Debug)]
pub(crate) struct SendBody(h2::SendStream<Bytes>);

/// Why [`SendBody::send_flow_controlled`] stopped.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The peer reset the stream (or the connection went away).
    Reset,
    /// The caller's stop signal fired while waiting for flow-control window.
    Stopped,
}

impl SendBody {
    pub(crate) fn new(inner: h2::SendStream<Bytes>) -> SendBody {
        SendBody(inner)
    }

    /// Queues DATA without waiting for flow-control window (for one bounded message).
    pub(crate) fn send_data(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
    ) -> Result<(), StreamError> {
        self.0
            .send_data(data, end_of_stream)
            .map_err(StreamError::from)
    }

    /// Sends the trailers, ending the stream.
    pub(crate) fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        self.0.send_trailers(trailers).map_err(StreamError::from)
    }

    /// Resets the stream with RST_STREAM(CANCEL).
    pub(crate) fn cancel(&mut self) {
        self.0.send_reset(h2::Reason::CANCEL);
    }

    /// Ready when the peer has reset the stream.
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_reset(cx).map(drop)
    }

    /// Sends `data`, waiting for HTTP/2 flow-control capacity so that a slow reader bounds the
    /// memory a fast writer uses. Stops early if the peer resets the stream or `stop`
    /// completes.
    pub(crate) async fn send_flow_controlled<F: Future>(
        &mut self,
        mut data: Bytes,
        end_of_stream: bool,
        mut stop: Pin<&mut F>,
    ) -> Result<(), SendError> {
        let stream = &mut self.0;
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
}

/// Counts a stream as active on its connection until dropped.
#[derive(Debug)]
pub(crate) struct ActiveStream(Arc<AtomicUsize>);

impl ActiveStream {
    pub(crate) fn new(count: Arc<AtomicUsize>) -> ActiveStream {
        count.fetch_add(1, Ordering::Relaxed);
        ActiveStream(count)
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
