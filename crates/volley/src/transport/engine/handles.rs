//! A call's handles on one stream of an engine connection: the receiving half
//! ([`EngineRecv`]), the response's start ([`EngineRespond`]) and the sending half
//! ([`EngineSend`]). Each holds the stream's [`Link`]; the stream is reset when the last one
//! goes while it is still open.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;

use super::{Command, Link};
use crate::transport::error::{SendError, StreamError};

/// RST_STREAM's CANCEL code.
const CANCEL: u32 = 0x8;

/// The receiving half of a stream.
#[derive(Debug)]
pub(crate) struct EngineRecv {
    link: Arc<Link>,
}

impl EngineRecv {
    pub(crate) fn new(link: Arc<Link>) -> EngineRecv {
        EngineRecv { link }
    }

    /// The next DATA chunk, credited back to the peer as it is handed out.
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, StreamError>>> {
        let polled = self.link.shared.poll_data(cx);
        if let Poll::Ready(Some(Ok(data))) = &polled {
            self.link.send(Command::Release {
                stream: self.link.shared.id,
                n: data.len(),
            });
        }
        polled.map(|o| o.map(|r| r.map_err(StreamError::engine)))
    }

    pub(crate) fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, StreamError>> {
        self.link
            .shared
            .poll_trailers(cx)
            .map_err(StreamError::engine)
    }

    #[cfg(feature = "tower")]
    pub(crate) fn is_end_stream(&self) -> bool {
        self.link.shared.is_end_stream()
    }
}

impl Drop for EngineRecv {
    fn drop(&mut self) {
        let unread = self.link.shared.take_unread();
        if unread > 0 {
            self.link.send(Command::Release {
                stream: self.link.shared.id,
                n: unread,
            });
        }
    }
}

/// Starts a stream's response.
#[derive(Debug)]
pub(crate) struct EngineRespond {
    link: Arc<Link>,
}

impl EngineRespond {
    pub(crate) fn new(link: Arc<Link>) -> EngineRespond {
        EngineRespond { link }
    }

    /// Sends the response headers (with `end_stream`, the whole response). `None` when the
    /// stream is already gone.
    pub(crate) fn send_response(
        &mut self,
        response: http::Response<()>,
        end_stream: bool,
    ) -> Option<EngineSend> {
        if self.link.shared.failure().is_some() {
            return None;
        }
        let (head, ()) = response.into_parts();
        self.link
            .send(Command::Headers {
                stream: self.link.shared.id,
                head,
                end_stream,
            })
            .then(|| EngineSend {
                link: self.link.clone(),
            })
    }

    /// Sends gRPC's usual response headers (`:status: 200`, `content-type:
    /// application/grpc`, nothing else), built by the connection without a header map.
    /// `None` when the stream is already gone.
    pub(crate) fn send_grpc_head(&mut self) -> Option<EngineSend> {
        if self.link.shared.failure().is_some() {
            return None;
        }
        self.link
            .send(Command::GrpcHead {
                stream: self.link.shared.id,
            })
            .then(|| EngineSend {
                link: self.link.clone(),
            })
    }

    /// A whole unary response: gRPC's usual head, `data`, `grpc-status: 0`; one command.
    /// False when the stream is already gone.
    pub(crate) fn send_grpc_unary(&mut self, data: Bytes) -> bool {
        // `charge` fails once the stream has.
        if self.link.shared.charge(data.len()).is_err() {
            return false;
        }
        self.link.send(Command::GrpcUnary {
            stream: self.link.shared.id,
            data,
        })
    }

    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.link.shared.poll_failed(cx).map(drop)
    }

    /// The stream's id.
    pub(crate) fn stream_id(&self) -> u32 {
        self.link.shared.id
    }
}

/// The sending half of a stream.
#[derive(Debug)]
pub(crate) struct EngineSend {
    link: Arc<Link>,
}

impl EngineSend {
    /// The sending half of a client's stream (a server's comes from
    /// [`EngineRespond::send_response`]).
    pub(crate) fn new(link: Arc<Link>) -> EngineSend {
        EngineSend { link }
    }

    /// Queues DATA without waiting for quota (one bounded message).
    pub(crate) fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), StreamError> {
        self.link
            .shared
            .charge(data.len())
            .map_err(StreamError::engine)?;
        self.command(Command::Data {
            stream: self.link.shared.id,
            data,
            end_stream,
        })
    }

    pub(crate) fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), StreamError> {
        if let Some(f) = self.link.shared.failure() {
            return Err(StreamError::engine(f));
        }
        self.command(Command::Trailers {
            stream: self.link.shared.id,
            trailers,
        })
    }

    /// Ends the stream with `grpc-status: 0` alone as trailers.
    pub(crate) fn send_ok_trailers(&mut self) -> Result<(), StreamError> {
        if let Some(f) = self.link.shared.failure() {
            return Err(StreamError::engine(f));
        }
        self.command(Command::OkTrailers {
            stream: self.link.shared.id,
        })
    }

    fn command(&self, command: Command) -> Result<(), StreamError> {
        if self.link.send(command) {
            Ok(())
        } else {
            Err(StreamError::closed_early("the connection is closed"))
        }
    }

    pub(crate) fn cancel(&mut self) {
        self.link.send(Command::Reset {
            stream: self.link.shared.id,
            code: CANCEL,
        });
    }

    pub(crate) fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.link.shared.poll_failed(cx).map(drop)
    }

    /// Queues `data` a quota's worth at a time, so that a slow reader bounds what a fast
    /// writer holds in memory. Stops early if the stream fails or `stop` completes.
    pub(crate) async fn send_flow_controlled<F: Future>(
        &mut self,
        mut data: Bytes,
        end_stream: bool,
        mut stop: Pin<&mut F>,
    ) -> Result<(), SendError> {
        loop {
            let quota = poll_fn(|cx| {
                if let Poll::Ready(r) = self.link.shared.poll_quota(cx) {
                    return Poll::Ready(r.map_err(|_| SendError::Reset));
                }
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(SendError::Stopped));
                }
                Poll::Pending
            })
            .await?;
            let chunk = data.split_to(quota.min(data.len()));
            let last = data.is_empty();
            self.send_data(chunk, end_stream && last)
                .map_err(|_| SendError::Reset)?;
            if last {
                return Ok(());
            }
        }
    }
}
