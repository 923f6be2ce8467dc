//! Volley's own HTTP/2 engine on a socket (feature `engine`): `volley_http2`'s sans-I/O
//! state machines driven by one task per connection.
//!
//! The connection's task ([`server::EngineConnection`]) owns the socket, the protocol state
//! and every stream's send queue: it reads into one buffer, hands what the peer sent to the
//! streams' handles, applies what the calls asked for (response headers, DATA, trailers,
//! resets, credit for consumed DATA) from one command queue, and writes everything a turn
//! produced in one write. A call's handles ([`handles`]) share only their own stream's small
//! state with it ([`StreamShared`]): received DATA and trailers, how many more bytes the
//! call may queue (its send quota), and how the stream failed. Nothing is shared across
//! streams, so there is no connection-wide lock.

pub(crate) mod handles;
pub(crate) mod server;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::mpsc::UnboundedSender;

pub(crate) use crate::transport::error::Failure;

/// How many bytes of DATA a call may have queued on its connection (written to the socket
/// or waiting for flow-control window) before it waits (grpc-go's `defaultWriteQuota`).
pub(crate) const SEND_QUOTA: usize = 64 * 1024;

/// What a call's handles ask of the connection's task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Response headers (`end_stream`: the whole response).
    Headers {
        stream: u32,
        head: http::response::Parts,
        end_stream: bool,
    },
    /// DATA (its bytes were charged to the stream's send quota).
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    /// Trailers, ending the stream.
    Trailers { stream: u32, trailers: HeaderMap },
    /// RST_STREAM with this code.
    Reset { stream: u32, code: u32 },
    /// The call consumed this many received bytes: credit them back to the peer.
    Release { stream: u32, n: usize },
    /// Every handle of the stream is gone: reset it if it is still open, and credit back
    /// what was received but never read.
    Dropped { stream: u32 },
    /// Send a keepalive PING.
    Ping,
}

/// How the receiving half of a stream ended normally.
#[derive(Debug)]
enum RecvEnd {
    /// END_STREAM, with trailers not yet taken.
    Ended(Option<HeaderMap>),
}

/// One stream's state shared between the connection's task and the call's handles.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) id: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Received DATA not yet read by the call.
    data: VecDeque<Bytes>,
    recv_end: Option<RecvEnd>,
    /// The call no longer reads: received DATA is credited back at once.
    recv_dropped: bool,
    failure: Option<Failure>,
    /// Bytes the call may still queue; may go below zero by one chunk.
    quota: isize,
    recv_waker: Option<Waker>,
    send_waker: Option<Waker>,
    reset_waker: Option<Waker>,
}

impl StreamShared {
    pub(crate) fn new(id: u32, end_stream: bool) -> Arc<StreamShared> {
        Arc::new(StreamShared {
            id,
            state: Mutex::new(State {
                data: VecDeque::new(),
                recv_end: end_stream.then_some(RecvEnd::Ended(None)),
                recv_dropped: false,
                failure: None,
                quota: SEND_QUOTA as isize,
                recv_waker: None,
                send_waker: None,
                reset_waker: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held cannot leave the state half-changed (every change
        // under it is a single assignment or push), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection side: DATA arrived. Returns it back when the call no longer reads (credit
    /// it at once).
    pub(crate) fn push_data(&self, data: Bytes) -> Option<Bytes> {
        let mut state = self.lock();
        if state.recv_dropped {
            return Some(data);
        }
        state.data.push_back(data);
        let waker = state.recv_waker.take();
        drop(state);
        wake(waker);
        None
    }

    /// Connection side: the peer ended its half of the stream, with these trailers.
    pub(crate) fn end_recv(&self, trailers: Option<HeaderMap>) {
        let mut state = self.lock();
        state.recv_end = Some(RecvEnd::Ended(trailers));
        let waker = state.recv_waker.take();
        drop(state);
        wake(waker);
    }

    /// Connection side: the stream failed; every handle is woken. Returns how many received
    /// bytes the call never read (to credit back to the connection window).
    pub(crate) fn fail(&self, failure: Failure) -> usize {
        let mut state = self.lock();
        if state.failure.is_none() {
            state.failure = Some(failure);
        }
        let unread = state.data.drain(..).map(|d| d.len()).sum();
        let wakers = [
            state.recv_waker.take(),
            state.send_waker.take(),
            state.reset_waker.take(),
        ];
        drop(state);
        wakers.into_iter().for_each(wake);
        unread
    }

    /// Connection side: `n` queued bytes left for the socket; the call may queue more.
    pub(crate) fn refill(&self, n: usize) {
        let mut state = self.lock();
        let was_empty = state.quota <= 0;
        state.quota += n as isize;
        let waker = (was_empty && state.quota > 0)
            .then(|| state.send_waker.take())
            .flatten();
        drop(state);
        wake(waker);
    }

    /// Connection side: the received bytes still unread (the handles are gone).
    pub(crate) fn take_unread(&self) -> usize {
        let mut state = self.lock();
        state.recv_dropped = true;
        state.data.drain(..).map(|d| d.len()).sum()
    }

    /// Call side: ready with the bytes that may be queued now (above zero), or the failure.
    pub(crate) fn poll_quota(&self, cx: &mut Context<'_>) -> Poll<Result<usize, Failure>> {
        let mut state = self.lock();
        if let Some(f) = state.failure {
            return Poll::Ready(Err(f));
        }
        if state.quota > 0 {
            return Poll::Ready(Ok(state.quota as usize));
        }
        set_waker(&mut state.send_waker, cx);
        Poll::Pending
    }

    /// Call side: `n` bytes are being queued; fails when the stream has.
    pub(crate) fn charge(&self, n: usize) -> Result<(), Failure> {
        let mut state = self.lock();
        if let Some(f) = state.failure {
            return Err(f);
        }
        state.quota -= n as isize;
        Ok(())
    }

    /// Call side: the next received DATA, `None` at the end of the stream.
    pub(crate) fn poll_data(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Failure>>> {
        let mut state = self.lock();
        if let Some(data) = state.data.pop_front() {
            return Poll::Ready(Some(Ok(data)));
        }
        if state.recv_end.is_some() {
            return Poll::Ready(None);
        }
        if let Some(f) = state.failure {
            return Poll::Ready(Some(Err(f)));
        }
        set_waker(&mut state.recv_waker, cx);
        Poll::Pending
    }

    /// Call side: the trailers once the stream ended (`None` without them).
    pub(crate) fn poll_trailers(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, Failure>> {
        let mut state = self.lock();
        if let Some(RecvEnd::Ended(trailers)) = &mut state.recv_end {
            return Poll::Ready(Ok(trailers.take()));
        }
        if let Some(f) = state.failure {
            return Poll::Ready(Err(f));
        }
        set_waker(&mut state.recv_waker, cx);
        Poll::Pending
    }

    /// Call side: whether the peer ended its half and everything was read.
    #[cfg(feature = "tower")]
    pub(crate) fn is_end_stream(&self) -> bool {
        let state = self.lock();
        state.recv_end.is_some() && state.data.is_empty()
    }

    pub(crate) fn failure(&self) -> Option<Failure> {
        self.lock().failure
    }

    /// Ready when the stream failed.
    pub(crate) fn poll_failed(&self, cx: &mut Context<'_>) -> Poll<Failure> {
        let mut state = self.lock();
        match state.failure {
            Some(f) => Poll::Ready(f),
            None => {
                set_waker(&mut state.reset_waker, cx);
                Poll::Pending
            }
        }
    }
}

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The link from a call's handles to their stream and connection: when the last handle
/// goes, the connection learns it (and resets the stream if it is still open).
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) commands: UnboundedSender<Command>,
}

impl Link {
    pub(crate) fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Dropped {
            stream: self.shared.id,
        });
    }
}
