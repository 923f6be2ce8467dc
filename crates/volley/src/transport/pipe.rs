//! With the `tower` feature: how a call runs inside a tower stack on the server. Its request
//! body may be any HTTP body a layer handed on ([`BodyIn`]), and its response goes back up the
//! stack as an `http::Response` whose body is fed through an in-process pipe
//! ([`PipeRespond`], [`PipeSender`], [`PipeReader`]) that the connection then writes to h2.
//!
//! The pipe is bounded like an HTTP/2 stream window: a writer waiting for flow control
//! ([`PipeSender::send_flow_controlled`]) waits until the connection has taken the buffered
//! bytes, and the connection takes them only as h2's own flow control allows; a dropped
//! reader (the client reset the stream) is the writer's reset.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::oneshot;

use super::error::{SendError, StreamError};
use crate::Status;

/// An error of any kind, as tower passes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many bytes the pipe buffers before a flow-controlled writer waits: an HTTP/2
/// stream's default window.
const PIPE_WINDOW: usize = 65_535;

/// The status a failed body error becomes: its own if it is a [`Status`], else INTERNAL.
pub(crate) fn status_of(error: BoxError) -> Status {
    match error.downcast::<Status>() {
        Ok(status) => *status,
        Err(other) => Status::internal(format!("request body error: {other}")),
    }
}

/// A request body that is not an h2 stream.
pub(crate) struct BodyIn {
    body: BoxBody,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl std::fmt::Debug for BodyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyIn").field("done", &self.done).finish()
    }
}

impl BodyIn {
    pub(crate) fn new<B>(body: B) -> BodyIn
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        BodyIn {
            body: BoxBody::new(body),
            trailers: None,
            done: false,
        }
    }

    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, StreamError>>> {
        while !self.done {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(StreamError::other(status_of(e)))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                            self.done = true;
                        }
                    }
                },
            }
        }
        Poll::Ready(None)
    }

    pub(crate) fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, StreamError>> {
        // Data left unread is skipped: trailers come after it.
        while !self.done {
            match self.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(_) => {}
            }
        }
        Poll::Ready(Ok(self.trailers.take()))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }
}

/// A body of any type, boxed: what comes out of a server's tower stack.
pub struct BoxBody(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + 'static>>);

impl std::fmt::Debug for BoxBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxBody").finish_non_exhaustive()
    }
}

impl BoxBody {
    /// Boxes `body`.
    pub fn new<B>(body: B) -> BoxBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        BoxBody(Box::pin(ErrInto { body }))
    }
}

pin_project_lite::pin_project! {
    struct ErrInto<B> {
        #[pin]
        body: B,
    }
}

impl<B> Body for ErrInto<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Body for BoxBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// The state two ends of a pipe share.
#[derive(Default)]
struct Pipe {
    frames: VecDeque<Frame<Bytes>>,
    /// DATA bytes buffered and not yet taken by the reader.
    buffered: usize,
    /// The writer is done: everything it will send is in `frames`.
    ended: bool,
    /// The writer reset the stream (RST_STREAM CANCEL).
    cancelled: bool,
    /// The reader is gone: the stream was reset.
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

fn lock(pipe: &Mutex<Pipe>) -> std::sync::MutexGuard<'_, Pipe> {
    pipe.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pipe {
    fn wake_reader(&mut self) {
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }
}

/// The start of a response that goes up a tower stack: the first `send_response` hands the
/// stack its `http::Response`.
pub(crate) struct PipeRespond {
    head: Option<oneshot::Sender<http::Response<PipeReader>>>,
}

impl PipeRespond {
    pub(crate) fn new(head: oneshot::Sender<http::Response<PipeReader>>) -> PipeRespond {
        PipeRespond { head: Some(head) }
    }

    pub(crate) fn send_response(
        &mut self,
        response: http::Response<()>,
        end_of_stream: bool,
    ) -> Option<PipeSender> {
        let head = self.head.take()?;
        let pipe = Arc::new(Mutex::new(Pipe {
            ended: end_of_stream,
            ..Pipe::default()
        }));
        let reader = PipeReader { pipe: pipe.clone() };
        head.send(response.map(|()| reader)).ok()?;
        Some(PipeSender { pipe })
    }

    /// Ready when the stack dropped the response future (the client reset the stream, or a
    /// layer gave up on the call, such as a timeout).
    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.head {
            Some(head) => head.poll_closed(cx),
            None => Poll::Pending,
        }
    }
}

/// The writing end of a response pipe.
#[derive(Debug)]
pub(crate) struct PipeSender {
    pipe: Arc<Mutex<Pipe>>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("buffered", &self.buffered)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

fn gone() -> StreamError {
    StreamError::other(Status::cancelled("the stream was reset"))
}

impl PipeSender {
    pub(crate) fn send_data(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
    ) -> Result<(), StreamError> {
        let mut pipe = lock(&self.pipe);
        if pipe.reader_gone {
            return Err(gone());
        }
        pipe.buffered += data.len();
        pipe.frames.push_back(Frame::data(data));
        pipe.ended |= end_of_stream;
        pipe.wake_reader();
        Ok(())
    }

    pub(crate) fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        let mut pipe = lock(&self.pipe);
        if pipe.reader_gone {
            return Err(gone());
        }
        pipe.frames.push_back(Frame::trailers(trailers));
        pipe.ended = true;
        pipe.wake_reader();
        Ok(())
    }

    pub(crate) fn cancel(&mut self) {
        let mut pipe = lock(&self.pipe);
        pipe.cancelled = true;
        pipe.ended = true;
        pipe.wake_reader();
    }

    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut pipe = lock(&self.pipe);
        if pipe.reader_gone {
            return Poll::Ready(());
        }
        pipe.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) async fn send_flow_controlled<F: Future>(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
        mut stop: Pin<&mut F>,
    ) -> Result<(), SendError> {
        let mut data = Some(data);
        poll_fn(|cx| {
            {
                let mut pipe = lock(&self.pipe);
                if pipe.reader_gone {
                    return Poll::Ready(Err(SendError::Reset));
                }
                if pipe.buffered < PIPE_WINDOW {
                    if let Some(data) = data.take() {
                        pipe.buffered += data.len();
                        pipe.frames.push_back(Frame::data(data));
                    }
                    pipe.ended |= end_of_stream;
                    pipe.wake_reader();
                    return Poll::Ready(Ok(()));
                }
                pipe.writer = Some(cx.waker().clone());
            }
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(SendError::Stopped));
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for PipeSender {
    fn drop(&mut self) {
        let mut pipe = lock(&self.pipe);
        pipe.ended = true;
        pipe.wake_reader();
    }
}

/// The reading end of a response pipe: an HTTP body of DATA frames, then trailers.
pub(crate) struct PipeReader {
    pipe: Arc<Mutex<Pipe>>,
}

impl std::fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeReader").finish_non_exhaustive()
    }
}

impl PipeReader {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut pipe = lock(&self.pipe);
        if let Some(frame) = pipe.frames.pop_front() {
            if let Some(data) = frame.data_ref() {
                pipe.buffered -= data.len();
                pipe.wake_writer();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if pipe.cancelled {
            return Poll::Ready(Some(Err(Status::cancelled(
                "the server cancelled the call",
            ))));
        }
        if pipe.ended {
            return Poll::Ready(None);
        }
        pipe.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        let pipe = lock(&self.pipe);
        pipe.ended && pipe.frames.is_empty() && !pipe.cancelled
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut pipe = lock(&self.pipe);
        pipe.reader_gone = true;
        pipe.frames.clear();
        pipe.wake_writer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// A response sent into a pipe: its sender and the reader the stack got.
    fn opened() -> (PipeSender, PipeReader) {
        let (tx, mut rx) = oneshot::channel();
        let send = PipeRespond::new(tx)
            .send_response(http::Response::new(()), false)
            .expect("the stack waits");
        (send, rx.try_recv().expect("the head").into_body())
    }

    #[test]
    fn a_pipe_carries_data_then_trailers_then_ends() {
        let (mut send, mut reader) = opened();
        send.send_data(Bytes::from_static(b"abc"), false)
            .expect("open");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        send.send_trailers(trailers).expect("open");
        drop(send);
        let mut cx = noop();
        let Poll::Ready(Some(Ok(first))) = reader.poll_frame(&mut cx) else {
            panic!("data first");
        };
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"abc")));
        let Poll::Ready(Some(Ok(second))) = reader.poll_frame(&mut cx) else {
            panic!("then trailers");
        };
        assert!(second.is_trailers());
        assert!(matches!(reader.poll_frame(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_dropped_reader_resets_the_writer() {
        let (mut send, reader) = opened();
        let mut cx = noop();
        assert!(send.poll_reset(&mut cx).is_pending());
        drop(reader);
        assert!(send.poll_reset(&mut cx).is_ready());
        assert!(send.send_data(Bytes::from_static(b"x"), false).is_err());
    }

    #[test]
    fn a_dropped_response_future_resets_the_call() {
        let (tx, rx) = oneshot::channel();
        let mut respond = PipeRespond::new(tx);
        let mut cx = noop();
        assert!(respond.poll_reset(&mut cx).is_pending());
        drop(rx);
        assert!(respond.poll_reset(&mut cx).is_ready());
        assert!(
            respond
                .send_response(http::Response::new(()), true)
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_flow_controlled_writer_waits_for_the_reader() {
        let (mut send, mut reader) = opened();
        let never = std::pin::pin!(std::future::pending::<()>());
        let mut never = never;
        let big = Bytes::from(vec![0u8; PIPE_WINDOW]);
        send.send_flow_controlled(big.clone(), false, never.as_mut())
            .await
            .expect("the first window fits");
        // The window is full: the next send waits until the reader takes the first.
        let mut second = Box::pin(send.send_flow_controlled(big, true, never.as_mut()));
        let mut cx = noop();
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(matches!(
            reader.poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(matches!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    }
}
