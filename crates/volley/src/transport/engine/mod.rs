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

pub(crate) mod client;
pub(crate) mod handles;
pub(crate) mod server;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use volley_http2::hpack::Field;

pub(crate) use crate::transport::error::Failure;

/// How many bytes of DATA a call may have queued on its connection (written to the socket
/// or waiting for flow-control window) before it waits (grpc-go's `defaultWriteQuota`).
pub(crate) const SEND_QUOTA: usize = 64 * 1024;

/// The payload of keepalive PINGs.
pub(crate) const KEEPALIVE_PING: [u8; 8] = *b"vlkeepal";

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
    /// Server side: gRPC's usual response headers, `:status: 200` and
    /// `content-type: application/grpc` alone (sent as a pre-encoded block).
    GrpcHead { stream: u32 },
    /// `grpc-status: 0` alone as trailers, ending the stream (a pre-encoded block on a
    /// server).
    OkTrailers { stream: u32 },
    /// Server side: a whole unary response in one command, `GrpcHead`, the message's DATA
    /// (charged to the send quota) and `OkTrailers`.
    GrpcUnary { stream: u32, data: Bytes },
    /// RST_STREAM with this code.
    Reset { stream: u32, code: u32 },
    /// The call consumed this many received bytes: credit them back to the peer.
    Release { stream: u32, n: usize },
    /// Every handle of the stream is gone: reset it if it is still open, and credit back
    /// what was received but never read.
    Dropped { stream: u32 },
    /// Send a keepalive PING.
    Ping,
    /// Client side: open a stream for this request once the connection has room for it.
    Open(Box<OpenStream>),
    /// Client side: every stream opener is gone; the connection closes once its streams end.
    SendersGone,
}

/// A request for the client's connection task to open (see [`Command::Open`]).
#[derive(Debug)]
pub(crate) struct OpenStream {
    /// The stream's shared state; its `id` is the key the handles name it by, not the
    /// HTTP/2 stream id (which the connection assigns when it sends the headers).
    pub(crate) shared: Arc<StreamShared>,
    pub(crate) head: http::request::Parts,
    pub(crate) end_stream: bool,
    /// Where the response headers go (or how the stream failed before them).
    pub(crate) response: oneshot::Sender<Result<http::response::Parts, Failure>>,
}

/// How the receiving half of a stream ended normally.
#[derive(Debug)]
enum RecvEnd {
    /// END_STREAM, with trailers not yet taken.
    Ended(Option<HeaderMap>),
}

/// DATA received on a stream and not read yet, in order.
///
/// A chunk that arrives while the call is still reading earlier ones is copied into one
/// buffer when it is small, rather than queued as a slice of the connection's read buffer:
/// a peer sending one-byte DATA frames would otherwise make every byte of window cost a
/// queued slice (32 bytes) and keep its read buffers alive, tens of megabytes per stream
/// window. A chunk that arrives while nothing waits is handed on as it is (no copy).
#[derive(Debug, Default)]
struct Received {
    chunks: VecDeque<Bytes>,
    /// Small chunks that came after `chunks`, copied together.
    tail: BytesMut,
}

/// Chunks up to this size are copied together while others wait.
const SMALL_CHUNK: usize = 1024;

impl Received {
    fn push(&mut self, data: Bytes) {
        if self.chunks.is_empty() && self.tail.is_empty() {
            self.chunks.push_back(data);
        } else if data.len() <= SMALL_CHUNK {
            self.tail.extend_from_slice(&data);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(data);
        }
    }

    fn pop(&mut self) -> Option<Bytes> {
        self.chunks
            .pop_front()
            .or_else(|| (!self.tail.is_empty()).then(|| self.tail.split().freeze()))
    }

    #[cfg(any(feature = "tower", test))]
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty()
    }

    /// Drops everything; returns how many bytes that was.
    fn clear(&mut self) -> usize {
        let n = self.chunks.drain(..).map(|d| d.len()).sum::<usize>() + self.tail.len();
        self.tail = BytesMut::new();
        n
    }
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
    data: Received,
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
                data: Received::default(),
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
        state.data.push(data);
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
        let unread = state.data.clear();
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
        state.data.clear()
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
        if let Some(data) = state.data.pop() {
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

/// Writes `out[*written..]` to `io`, then flushes; ready with whether anything was written
/// once all of it is (the output is then cleared), pending while the socket is full.
pub(crate) fn poll_write_output<T: AsyncWrite + Unpin>(
    io: &mut T,
    out: &mut Vec<u8>,
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<bool>> {
    let mut wrote = false;
    while *written < out.len() {
        match Pin::new(&mut *io).poll_write(cx, &out[*written..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                *written += n;
                wrote = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    if wrote {
        out.clear();
        *written = 0;
    }
    // A TLS stream may hold records back until flushed; a TCP stream's flush is a no-op.
    match Pin::new(io).poll_flush(cx) {
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        _ => Poll::Ready(Ok(wrote)),
    }
}

/// Received fields as a header map (fields `http` cannot represent are left out).
pub(crate) fn header_map(fields: impl ExactSizeIterator<Item = Field>) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        if let (Some(name), Ok(value)) = (
            header_name(&field.name),
            HeaderValue::from_maybe_shared(field.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A received field name as a `HeaderName`: the ones gRPC sends on every call as constants,
/// since `HeaderName::from_bytes` copies a name that is not one of HTTP's standard ones into
/// an allocation of its own (every `grpc-*` name, on every call). `None` for a name `http`
/// cannot represent.
pub(crate) fn header_name(name: &[u8]) -> Option<HeaderName> {
    use http::header;
    Some(match name {
        b"content-type" => header::CONTENT_TYPE,
        b"te" => header::TE,
        b"user-agent" => header::USER_AGENT,
        b"authorization" => header::AUTHORIZATION,
        b"grpc-timeout" => HeaderName::from_static("grpc-timeout"),
        b"grpc-encoding" => HeaderName::from_static("grpc-encoding"),
        b"grpc-accept-encoding" => HeaderName::from_static("grpc-accept-encoding"),
        b"grpc-status" => HeaderName::from_static("grpc-status"),
        b"grpc-message" => HeaderName::from_static("grpc-message"),
        b"grpc-status-details-bin" => HeaderName::from_static("grpc-status-details-bin"),
        b"grpc-previous-rpc-attempts" => HeaderName::from_static("grpc-previous-rpc-attempts"),
        b"grpc-retry-pushback-ms" => HeaderName::from_static("grpc-retry-pushback-ms"),
        b"traceparent" => HeaderName::from_static("traceparent"),
        b"tracestate" => HeaderName::from_static("tracestate"),
        _ => return HeaderName::from_bytes(name).ok(),
    })
}

/// Keepalive PING ACKs, from a connection's task to the keepalive loop.
#[derive(Debug, Default)]
pub(crate) struct PingSlot {
    state: Mutex<(bool, Option<Waker>)>,
}

impl PingSlot {
    pub(crate) fn ack(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = true;
        if let Some(w) = state.1.take() {
            w.wake();
        }
    }

    /// Ready once an ACK arrived since the last one taken.
    pub(crate) fn poll_ack(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut state.0) {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_data_keeps_its_order_and_copies_only_small_chunks_that_wait() {
        let mut r = Received::default();
        let first = Bytes::from_static(b"first");
        r.push(first.clone());
        // Nothing waited: handed on as it is.
        assert_eq!(r.chunks.len(), 1);
        for b in b"abc" {
            r.push(Bytes::copy_from_slice(&[*b]));
        }
        let big = Bytes::from(vec![7u8; SMALL_CHUNK + 1]);
        r.push(big.clone());
        r.push(Bytes::from_static(b"z"));
        assert_eq!(r.chunks.len(), 3, "first, abc copied together, big");
        let popped = r.pop().expect("first");
        assert_eq!(popped, first);
        assert_eq!(popped.as_ptr(), first.as_ptr(), "not copied");
        assert_eq!(r.pop().as_deref(), Some(&b"abc"[..]));
        assert_eq!(r.pop().expect("big").as_ptr(), big.as_ptr(), "not copied");
        assert_eq!(r.pop().as_deref(), Some(&b"z"[..]));
        assert!(r.pop().is_none() && r.is_empty());
        r.push(Bytes::from_static(b"12"));
        r.push(Bytes::from_static(b"345"));
        assert_eq!(r.clear(), 5);
        assert!(r.is_empty());
    }

    #[test]
    fn known_header_names_are_the_names_they_stand_for() {
        for name in [
            "content-type",
            "te",
            "user-agent",
            "authorization",
            "grpc-timeout",
            "grpc-encoding",
            "grpc-accept-encoding",
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "grpc-previous-rpc-attempts",
            "grpc-retry-pushback-ms",
            "traceparent",
            "tracestate",
            "x-custom",
        ] {
            let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
            assert_eq!(header_name(name.as_bytes()), parsed, "{name}");
        }
        assert_eq!(header_name(b"Not Valid"), None);
    }

    #[test]
    fn a_million_one_byte_chunks_cost_a_million_bytes() {
        let mut r = Received::default();
        r.push(Bytes::from_static(b"x"));
        for _ in 0..1_000_000 {
            r.push(Bytes::from_static(b"y"));
        }
        assert_eq!(r.chunks.len(), 1);
        assert_eq!(r.tail.len(), 1_000_000);
    }
}
