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

use super::error::{SendError, StreamError};

/// The receiving half of a stream.
#[derive(Debug)]
pub(crate) struct RecvBody(Recv, Option<ActiveStream>);

/// Where a [`RecvBody`]'s bytes come from: an h2 stream, or (with the `tower` feature) any
/// HTTP body a tower layer handed on. Without the feature this is the h2 stream alone, laid
/// out and matched at no cost.
#[derive(Debug)]
enum Recv {
    H2(h2::RecvStream),
    #[cfg(feature = "tower")]
    Body(Box<super::pipe::BodyIn>),
    #[cfg(feature = "engine")]
    Engine(super::engine::handles::EngineRecv),
}

impl RecvBody {
    pub(crate) fn new(inner: h2::RecvStream) -> RecvBody {
        RecvBody(Recv::H2(inner), None)
    }

    /// A body that is not an h2 stream (a tower layer's).
    #[cfg(feature = "tower")]
    pub(crate) fn from_body(body: super::pipe::BodyIn) -> RecvBody {
        RecvBody(Recv::Body(Box::new(body)), None)
    }

    /// A stream of Volley's own engine.
    #[cfg(feature = "engine")]
    pub(crate) fn engine(inner: super::engine::handles::EngineRecv) -> RecvBody {
        RecvBody(Recv::Engine(inner), None)
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
        match &mut self.0 {
            Recv::H2(stream) => match stream.poll_data(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let _ = stream.flow_control().release_capacity(chunk.len());
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(StreamError::from(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            #[cfg(feature = "tower")]
            Recv::Body(body) => body.poll_data(cx),
            #[cfg(feature = "engine")]
            Recv::Engine(stream) => stream.poll_data(cx),
        }
    }

    /// The trailers, once the DATA is over.
    pub(crate) fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, StreamError>> {
        match &mut self.0 {
            Recv::H2(stream) => stream.poll_trailers(cx).map_err(StreamError::from),
            #[cfg(feature = "tower")]
            Recv::Body(body) => body.poll_trailers(cx),
            #[cfg(feature = "engine")]
            Recv::Engine(stream) => stream.poll_trailers(cx),
        }
    }

    /// Whether nothing more can come (the peer ended the stream).
    #[cfg(feature = "tower")]
    pub(crate) fn is_end_stream(&self) -> bool {
        match &self.0 {
            Recv::H2(stream) => stream.is_end_stream(),
            Recv::Body(body) => body.is_end_stream(),
            #[cfg(feature = "engine")]
            Recv::Engine(stream) => stream.is_end_stream(),
        }
    }
}

/// The sending half of a stream.
#[derive(Debug)]
pub(crate) struct SendBody(Send);

/// Where a [`SendBody`]'s frames go: an h2 stream, or (with the `tower` feature) the
/// response body a tower stack hands back to the connection.
#[derive(Debug)]
enum Send {
    H2(h2::SendStream<Bytes>),
    #[cfg(feature = "tower")]
    Pipe(super::pipe::PipeSender),
    #[cfg(feature = "engine")]
    Engine(super::engine::handles::EngineSend),
}

impl SendBody {
    pub(crate) fn new(inner: h2::SendStream<Bytes>) -> SendBody {
        SendBody(Send::H2(inner))
    }

    #[cfg(feature = "tower")]
    pub(crate) fn pipe(inner: super::pipe::PipeSender) -> SendBody {
        SendBody(Send::Pipe(inner))
    }

    /// A stream of Volley's own engine.
    #[cfg(feature = "engine")]
    pub(crate) fn engine(inner: super::engine::handles::EngineSend) -> SendBody {
        SendBody(Send::Engine(inner))
    }

    /// Queues DATA without waiting for flow-control window (for one bounded message).
    pub(crate) fn send_data(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
    ) -> Result<(), StreamError> {
        match &mut self.0 {
            Send::H2(stream) => stream
                .send_data(data, end_of_stream)
                .map_err(StreamError::from),
            #[cfg(feature = "tower")]
            Send::Pipe(pipe) => pipe.send_data(data, end_of_stream),
            #[cfg(feature = "engine")]
            Send::Engine(stream) => stream.send_data(data, end_of_stream),
        }
    }

    /// Sends the trailers, ending the stream.
    pub(crate) fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        match &mut self.0 {
            Send::H2(stream) => stream.send_trailers(trailers).map_err(StreamError::from),
            #[cfg(feature = "tower")]
            Send::Pipe(pipe) => pipe.send_trailers(trailers),
            #[cfg(feature = "engine")]
            Send::Engine(stream) => stream.send_trailers(trailers),
        }
    }

    /// Ends the stream with `grpc-status: 0` alone as trailers (Volley's engine sends them as
    /// pre-encoded bytes, with no header map built).
    pub(crate) fn send_ok_trailers(&mut self) -> Result<(), StreamError> {
        #[cfg(feature = "engine")]
        if let Send::Engine(stream) = &mut self.0 {
            return stream.send_ok_trailers();
        }
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert(
            http::HeaderName::from_static("grpc-status"),
            http::HeaderValue::from_static("0"),
        );
        self.send_trailers(trailers)
    }

    /// Resets the stream with RST_STREAM(CANCEL).
    pub(crate) fn cancel(&mut self) {
        match &mut self.0 {
            Send::H2(stream) => stream.send_reset(h2::Reason::CANCEL),
            #[cfg(feature = "tower")]
            Send::Pipe(pipe) => pipe.cancel(),
            #[cfg(feature = "engine")]
            Send::Engine(stream) => stream.cancel(),
        }
    }

    /// Ready when the peer has reset the stream.
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Send::H2(stream) => stream.poll_reset(cx).map(drop),
            #[cfg(feature = "tower")]
            Send::Pipe(pipe) => pipe.poll_reset(cx),
            #[cfg(feature = "engine")]
            Send::Engine(stream) => stream.poll_reset(cx),
        }
    }

    /// Sends `data`, waiting for HTTP/2 flow-control capacity so that a slow reader bounds the
    /// memory a fast writer uses. Stops early if the peer resets the stream or `stop`
    /// completes.
    pub(crate) async fn send_flow_controlled<F: Future>(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
        stop: Pin<&mut F>,
    ) -> Result<(), SendError> {
        match &mut self.0 {
            Send::H2(stream) => h2_send_flow_controlled(stream, data, end_of_stream, stop).await,
            #[cfg(feature = "tower")]
            Send::Pipe(pipe) => pipe.send_flow_controlled(data, end_of_stream, stop).await,
            #[cfg(feature = "engine")]
            Send::Engine(stream) => stream.send_flow_controlled(data, end_of_stream, stop).await,
        }
    }
}

/// [`SendBody::send_flow_controlled`] on an h2 stream.
async fn h2_send_flow_controlled<F: Future>(
    stream: &mut h2::SendStream<Bytes>,
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
