//! With the `tower` feature: the HTTP bodies Volley hands to tower code (re-exported by
//! `volley::tower`): a server's [`RequestBody`] and [`ResponseBody`], a client's
//! [`ResponseBody`], and [`BoxBody`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};

use super::pipe::PipeReader;
pub use super::pipe::{BoxBody, BoxError};
use super::stream::{RecvBody, SendBody};
use crate::{Code, Status};

/// What runs when a client stream's body ends: its status and trailers.
pub(crate) type OnEnd = Box<dyn FnOnce(&Status, &HeaderMap) + Send>;

/// A request's body as a server's tower layer sees it: the stream's DATA, then its
/// trailers.
#[derive(Debug)]
pub struct RequestBody {
    body: RecvBody,
    data_done: bool,
}

/// A response's body: on a server, the call's messages and trailers as Volley sends them; on
/// a [`Channel`](crate::Channel) used as a tower service, the stream's DATA and trailers as they arrive.
#[derive(Debug)]
pub struct ResponseBody(Incoming);

enum Incoming {
    Pipe(PipeReader),
    Stream {
        body: RecvBody,
        data_done: bool,
        /// Runs once, when the body ends (dropping it first runs it with CANCELLED).
        on_end: Option<OnEnd>,
    },
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incoming::Pipe(_) => f.write_str("Incoming::Pipe"),
            Incoming::Stream { data_done, .. } => f
                .debug_struct("Incoming::Stream")
                .field("data_done", data_done)
                .finish_non_exhaustive(),
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Incoming::Stream { on_end, .. } = self
            && let Some(on_end) = on_end.take()
        {
            on_end(
                &Status::cancelled("the response body was dropped"),
                &HeaderMap::new(),
            );
        }
    }
}

impl RequestBody {
    pub(crate) fn new(body: RecvBody) -> RequestBody {
        RequestBody {
            body,
            data_done: false,
        }
    }

    pub(crate) fn into_inner(self) -> RecvBody {
        self.body
    }
}

impl ResponseBody {
    /// A server call's response, read from its pipe.
    pub(crate) fn pipe(reader: PipeReader) -> ResponseBody {
        ResponseBody(Incoming::Pipe(reader))
    }

    /// A client stream's response; `on_end` runs when it ends.
    pub(crate) fn stream(body: RecvBody, on_end: OnEnd) -> ResponseBody {
        ResponseBody(Incoming::Stream {
            body,
            data_done: false,
            on_end: Some(on_end),
        })
    }
}

/// One poll of a stream's DATA, then its trailers.
fn poll_stream(
    body: &mut RecvBody,
    data_done: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
    if !*data_done {
        match body.poll_data(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.to_status()))),
            Poll::Ready(None) => *data_done = true,
        }
    }
    match body.poll_trailers(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
        Poll::Ready(Ok(None)) => Poll::Ready(None),
        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.to_status()))),
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        poll_stream(&mut this.body, &mut this.data_done, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match &mut self.0 {
            Incoming::Pipe(pipe) => pipe.poll_frame(cx),
            Incoming::Stream {
                body,
                data_done,
                on_end,
            } => {
                let polled = poll_stream(body, data_done, cx);
                let ended = match &polled {
                    Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|trailers| {
                        let status = Status::from_trailers(trailers)
                            .unwrap_or_else(|| Status::new(Code::Ok, ""));
                        (status, trailers.clone())
                    }),
                    Poll::Ready(Some(Err(status))) => Some((status.clone(), HeaderMap::new())),
                    Poll::Ready(None) => Some((Status::new(Code::Ok, ""), HeaderMap::new())),
                    Poll::Pending => None,
                };
                if let (Some((status, trailers)), Some(on_end)) = (ended, on_end.take()) {
                    on_end(&status, &trailers);
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Incoming::Pipe(pipe) => pipe.is_end_stream(),
            Incoming::Stream { body, .. } => body.is_end_stream(),
        }
    }
}

/// Sends `body` on `send`: its DATA under flow control, then its trailers (or an empty DATA
/// frame with END_STREAM when it has none). A body error resets the stream (CANCEL); the peer
/// resetting the stream stops it (and drops the body).
pub(crate) async fn send_body<B: Body<Data = Bytes>>(send: &mut SendBody, body: B) {
    let mut body = std::pin::pin!(body);
    let mut never = std::pin::pin!(std::future::pending::<()>());
    loop {
        // The error is dropped at once: it need not be `Send`.
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => {
                frame.map(|r| r.map_err(drop))
            }
            () = std::future::poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(())) => {
                send.cancel();
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if send
                        .send_flow_controlled(data, false, never.as_mut())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                    }
                    return;
                }
            },
        }
    }
}
