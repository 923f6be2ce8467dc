//! The client side of an engine connection: [`EngineClient`] drives
//! `volley_http2::client::ClientConnection` over a socket, and [`EngineSender`] opens streams
//! on it.
//!
//! Opening a stream does not wait for the connection: the sender names the stream by a key
//! of its own (the HTTP/2 stream id is only known once the headers go out) and queues an
//! [`Command::Open`]; the call may queue request DATA at once. The task sends the headers
//! when SETTINGS_MAX_CONCURRENT_STREAMS leaves room, in the order the opens arrived, then
//! the DATA waiting behind them. A stream the connection never sent (the server went away,
//! or the connection failed first) fails with [`Failure::Refused`], which the channel retries
//! elsewhere as gRPC's transparent retry allows.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use volley_http2::client::{ClientConnection, Config};
use volley_http2::hpack::{Field, Indexing};
use volley_http2::{Event, StreamIdHasher};

use super::{
    Command, Failure, KEEPALIVE_PING, Link, OpenStream, PingSlot, StreamShared, header_map,
    poll_write_output,
};
use crate::transport::error::StreamError;
use crate::transport::watch::{Activity, TOO_MANY_PINGS};

/// Reading pauses while this many bytes wait to be written.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// How much is read at once.
const READ_SIZE: usize = 32 * 1024;
/// HTTP/2 error codes.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// Keys handed out per connection: HTTP/2 has 2^30 client stream ids, so a key past this
/// could never be sent.
const MAX_KEY: u32 = 1 << 30;

type StreamIds<V> = HashMap<u32, V, BuildHasherDefault<StreamIdHasher>>;

/// What the senders and the connection's task share.
#[derive(Debug)]
struct ConnState {
    /// New streams are taken (no GOAWAY, no failure, ids left).
    accepting: AtomicBool,
    next_key: AtomicU32,
}

/// Opens streams on one engine connection; clones share it. When the last clone goes, the
/// connection closes once its open streams end.
#[derive(Debug, Clone)]
pub(crate) struct EngineSender {
    inner: Arc<SenderInner>,
}

#[derive(Debug)]
struct SenderInner {
    commands: UnboundedSender<Command>,
    state: Arc<ConnState>,
}

impl Drop for SenderInner {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::SendersGone);
    }
}

/// A stream opened by [`EngineSender::open`]: its response headers to come, and the link
/// its handles share.
pub(crate) type Opened = (
    oneshot::Receiver<Result<http::response::Parts, Failure>>,
    Arc<Link>,
);

impl EngineSender {
    /// Queues a stream for `head` (with `end_stream`, a request without a body). Fails at
    /// once when the connection no longer takes streams: the server never saw it.
    pub(crate) fn open(
        &self,
        head: http::request::Parts,
        end_stream: bool,
    ) -> Result<Opened, StreamError> {
        let state = &self.inner.state;
        if !state.accepting.load(Ordering::Acquire) {
            return Err(StreamError::engine(Failure::Refused(
                "the connection no longer takes new streams",
            )));
        }
        let key = state.next_key.fetch_add(1, Ordering::Relaxed);
        if key >= MAX_KEY {
            return Err(StreamError::engine(Failure::Refused(
                "the connection's stream ids are used up",
            )));
        }
        let shared = StreamShared::new(key, false);
        let (response, receiver) = oneshot::channel();
        let open = OpenStream {
            shared: shared.clone(),
            head,
            end_stream,
            response,
        };
        if self
            .inner
            .commands
            .send(Command::Open(Box::new(open)))
            .is_err()
        {
            return Err(StreamError::engine(Failure::Refused(
                "the connection is closed",
            )));
        }
        let link = Arc::new(Link {
            shared,
            commands: self.inner.commands.clone(),
        });
        Ok((receiver, link))
    }
}

/// What the connection's task keeps per stream.
#[derive(Debug)]
struct Entry {
    shared: Arc<StreamShared>,
    /// The HTTP/2 stream id, once the headers are sent.
    wire: Option<u32>,
    /// The request's head, until it is sent.
    head: Option<(http::request::Parts, bool)>,
    /// Where the response headers go, until they come.
    response: Option<oneshot::Sender<Result<http::response::Parts, Failure>>>,
    /// DATA the call queued that has not gone into the output yet, in order.
    pending: VecDeque<(Bytes, bool)>,
    /// Waiting for flow-control window or for the output to drain.
    blocked: bool,
    /// The response's end was handed to the handles. (The protocol state runs ahead of the
    /// events: it has taken in the whole read before they are handled, so whether it still
    /// has the stream open says nothing about what the handles were told.)
    recv_ended: bool,
    /// The request's END_STREAM is in the output.
    send_ended: bool,
    /// Every handle is gone.
    dropped: bool,
}

impl Entry {
    /// The stream failed: its response (if still to come) and its handles learn how.
    /// Returns the received bytes never read.
    fn fail(&mut self, failure: Failure) -> usize {
        if let Some(response) = self.response.take() {
            let _ = response.send(Err(failure));
        }
        self.shared.fail(failure)
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// No more reading; done once the output is written and our side shut down.
    Closing,
    Closed,
}

/// A client connection on Volley's engine: the future that drives it is
/// [`EngineClient::poll_drive`].
pub(crate) struct EngineClient<T> {
    io: T,
    conn: ClientConnection,
    /// How much of the connection's output has been written.
    written: usize,
    read_buf: BytesMut,
    events: Vec<Event>,
    /// Streams by key.
    streams: StreamIds<Entry>,
    /// Keys by HTTP/2 stream id.
    wire: StreamIds<u32>,
    /// Keys of the streams whose headers wait for room, in order.
    waiting: VecDeque<u32>,
    /// Keys of the streams waiting for window or for the output to drain.
    blocked: Vec<u32>,
    commands: UnboundedReceiver<Command>,
    state: Arc<ConnState>,
    activity: Arc<Activity>,
    pings: Arc<PingSlot>,
    /// Fires when the connection stops taking streams.
    going_away: Option<oneshot::Sender<()>>,
    /// Every sender is gone: no stream will be opened again.
    senders_gone: bool,
    life: Life,
    /// How the connection ended, once it did.
    result: Option<Result<(), StreamError>>,
}

impl<T> std::fmt::Debug for EngineClient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient")
            .field("streams", &self.streams.len())
            .field("life", &self.life)
            .finish()
    }
}

/// What [`EngineClient::handshake`] returns: the opener, the connection, its keepalive
/// handle, what it saw, and the signal that fires when it stops taking streams.
pub(crate) type Handshake<T> = (
    EngineSender,
    EngineClient<T>,
    (Arc<PingSlot>, UnboundedSender<Command>),
    Arc<Activity>,
    oneshot::Receiver<()>,
);

impl<T: AsyncRead + AsyncWrite + Unpin> EngineClient<T> {
    /// Sends the preface and our SETTINGS on `io` and drives the connection until the
    /// server's SETTINGS arrive (as grpc-go, a connection counts as established only then).
    pub(crate) async fn handshake(io: T, config: Config) -> Result<Handshake<T>, StreamError> {
        let (sender, commands) = unbounded_channel();
        let state = Arc::new(ConnState {
            accepting: AtomicBool::new(true),
            next_key: AtomicU32::new(0),
        });
        let (going_away_tx, going_away) = oneshot::channel();
        let activity = Activity::new();
        let mut conn = EngineClient {
            io,
            conn: ClientConnection::new(config),
            written: 0,
            read_buf: BytesMut::new(),
            events: Vec::new(),
            streams: HashMap::default(),
            wire: HashMap::default(),
            waiting: VecDeque::new(),
            blocked: Vec::new(),
            commands,
            state: state.clone(),
            activity: activity.clone(),
            pings: Arc::default(),
            going_away: Some(going_away_tx),
            senders_gone: false,
            life: Life::Open,
            result: None,
        };
        std::future::poll_fn(|cx| {
            loop {
                if conn.activity.settings_seen() {
                    return Poll::Ready(Ok(()));
                }
                if conn.life != Life::Open {
                    let why = match conn.result.take() {
                        Some(Err(e)) => e,
                        _ => StreamError::closed_early(
                            "the server closed the connection before sending its SETTINGS",
                        ),
                    };
                    return Poll::Ready(Err(why));
                }
                if !conn.poll_io(cx) {
                    return Poll::Pending;
                }
            }
        })
        .await?;
        let pings = (conn.pings.clone(), sender.clone());
        let opener = EngineSender {
            inner: Arc::new(SenderInner {
                commands: sender,
                state,
            }),
        };
        Ok((opener, conn, pings, activity, going_away))
    }

    /// Drives the connection; ready once it is closed (`Ok` when it closed cleanly: every
    /// sender gone and its streams ended, or the server went away or closed it).
    pub(crate) fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        loop {
            if self.life == Life::Closed {
                return Poll::Ready(self.result.take().unwrap_or(Ok(())));
            }
            if !self.poll_io(cx) {
                return Poll::Pending;
            }
        }
    }

    /// One turn: commands, reading, writing. Returns whether anything happened (call
    /// again) or not (everything is registered for a wake-up).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> bool {
        if self.life == Life::Closing {
            return self.poll_close(cx);
        }
        let mut progress = false;
        while let Poll::Ready(Some(command)) = self.commands.poll_recv(cx) {
            self.command(command);
            progress = true;
        }
        if self.life == Life::Open && self.pending_output() < OUTPUT_LIMIT {
            progress |= self.poll_read(cx);
        }
        if self.life == Life::Open {
            self.open_waiting();
        }
        match poll_write_output(&mut self.io, self.conn.output(), &mut self.written, cx) {
            Poll::Ready(Ok(wrote)) => {
                progress |= wrote;
                if !self.blocked.is_empty() && self.pending_output() < OUTPUT_LIMIT {
                    self.retry_blocked();
                    progress |= self.pending_output() > 0;
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 client connection: write failed");
                self.fail_all(Failure::Closed("the connection broke"));
                self.result = Some(Err(StreamError::io(e)));
                self.life = Life::Closed;
                return true;
            }
            Poll::Pending => {}
        }
        if self.life == Life::Open && self.finished() {
            if self.senders_gone && !self.conn.is_closing() {
                self.conn.go_away(NO_ERROR, b"");
            }
            self.close(Ok(()));
            progress = true;
        }
        progress
    }

    /// Writes what is left, shuts our side down, and closes; whether anything happened.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> bool {
        match poll_write_output(&mut self.io, self.conn.output(), &mut self.written, cx) {
            Poll::Pending => return false,
            Poll::Ready(Err(_)) => {}
            Poll::Ready(Ok(_)) => {
                if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                    return false;
                }
            }
        }
        self.life = Life::Closed;
        true
    }

    /// Whether nothing more will happen: no stream is open or waiting, and none can be
    /// opened (every sender is gone, or the connection takes no more).
    fn finished(&self) -> bool {
        (self.senders_gone || self.conn.is_closing())
            && self.streams.is_empty()
            && self.conn.open_streams() == 0
    }

    fn pending_output(&self) -> usize {
        self.conn.output_len() - self.written
    }

    /// Ends the connection with `result` once the output is written: every stream fails.
    fn close(&mut self, result: Result<(), StreamError>) {
        self.stop_accepting();
        self.fail_all(Failure::Closed("the connection closed"));
        self.result.get_or_insert(result);
        self.life = Life::Closing;
    }

    /// No stream is taken from now on; those not sent yet are refused (safe to retry).
    fn stop_accepting(&mut self) {
        self.state.accepting.store(false, Ordering::Release);
        if let Some(tx) = self.going_away.take() {
            let _ = tx.send(());
        }
        for key in std::mem::take(&mut self.waiting) {
            if let Some(mut entry) = self.streams.remove(&key) {
                entry.fail(Failure::Refused(
                    "the connection went away before sending it",
                ));
            }
        }
    }

    /// Reads what the socket has and handles it; whether anything was read (or the
    /// connection ended).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.read_buf.capacity() - self.read_buf.len() < READ_SIZE / 4 {
            self.read_buf.reserve(READ_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf) {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                tracing::trace!("HTTP/2 client connection: the server closed it");
                let result = if self.streams.is_empty() {
                    Ok(())
                } else {
                    Err(StreamError::engine(Failure::Closed(
                        "the server closed the connection",
                    )))
                };
                self.stop_accepting();
                self.fail_all(Failure::Closed("the server closed the connection"));
                self.result = Some(result);
                self.life = Life::Closed;
                true
            }
            Poll::Ready(Ok(_)) => {
                self.activity.touch();
                let result = self.conn.receive(&mut self.read_buf, &mut self.events);
                let mut events = std::mem::take(&mut self.events);
                for event in events.drain(..) {
                    self.event(event);
                }
                self.events = events;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP/2 client connection error; GOAWAY sent");
                    let failure = Failure::Closed(e.reason);
                    self.fail_all(failure);
                    self.close(Err(StreamError::engine(failure)));
                } else if self.conn.is_closing() {
                    self.stop_accepting();
                }
                true
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 client connection: read failed");
                self.stop_accepting();
                self.fail_all(Failure::Closed("the connection broke"));
                self.result = Some(Err(StreamError::io(e)));
                self.life = Life::Closed;
                true
            }
        }
    }

    /// What the server did.
    fn event(&mut self, event: Event) {
        match event {
            Event::Ready => self.activity.saw_settings(),
            Event::Headers {
                stream,
                fields,
                end_stream,
            } => self.response(stream, fields, end_stream),
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let Some(entry) = self.entry_of(stream) else {
                    self.conn.release(stream, data.len());
                    return;
                };
                let back = if data.is_empty() {
                    None
                } else {
                    entry.shared.push_data(data)
                };
                if end_stream {
                    entry.shared.end_recv(None);
                    self.mark_recv_ended(stream);
                }
                if let Some(back) = back {
                    self.conn.release(stream, back.len());
                }
                self.forget_if_done_wire(stream);
            }
            Event::Trailers { stream, fields } => {
                if let Some(entry) = self.entry_of(stream) {
                    entry.shared.end_recv(Some(header_map(fields.into_iter())));
                    self.mark_recv_ended(stream);
                }
                self.forget_if_done_wire(stream);
            }
            Event::Reset {
                stream,
                code,
                by_peer,
            } => {
                if let Some(key) = self.wire.remove(&stream)
                    && let Some(mut entry) = self.streams.remove(&key)
                {
                    let unread = entry.fail(Failure::Reset { code, by_peer });
                    if unread > 0 {
                        self.conn.release(stream, unread);
                    }
                }
            }
            Event::PingAck { payload } => {
                self.activity.saw_ping_ack();
                if payload == KEEPALIVE_PING {
                    self.pings.ack();
                }
            }
            Event::GoAway { code, debug, .. } => {
                if code == ENHANCE_YOUR_CALM && &debug[..] == TOO_MANY_PINGS.as_bytes() {
                    self.activity.set_too_many_pings();
                }
                tracing::debug!(code, "HTTP/2 client connection: the server sent GOAWAY");
                self.stop_accepting();
            }
            Event::WindowUpdate { stream: 0 } => self.retry_blocked(),
            Event::WindowUpdate { stream } => {
                if let Some(&key) = self.wire.get(&stream)
                    && self.streams.get(&key).is_some_and(|e| e.blocked)
                {
                    self.pump(key);
                }
            }
            // Server-side events, and PINGs (answered by the protocol code).
            Event::HeadersTooLarge { .. } | Event::Ping { .. } => {}
        }
    }

    fn entry_of(&self, stream: u32) -> Option<&Entry> {
        self.wire.get(&stream).and_then(|key| self.streams.get(key))
    }

    fn mark_recv_ended(&mut self, stream: u32) {
        if let Some(key) = self.wire.get(&stream)
            && let Some(entry) = self.streams.get_mut(key)
        {
            entry.recv_ended = true;
        }
    }

    /// The response headers of `stream` arrived (with `end_stream`, Trailers-Only).
    fn response(&mut self, stream: u32, fields: Vec<Field>, end_stream: bool) {
        let Some(&key) = self.wire.get(&stream) else {
            return;
        };
        let Some(entry) = self.streams.get_mut(&key) else {
            return;
        };
        let Some(parts) = response_parts(fields) else {
            tracing::debug!(stream, "a response the http crate cannot represent: reset");
            self.conn.reset(stream, PROTOCOL_ERROR);
            self.wire.remove(&stream);
            if let Some(mut entry) = self.streams.remove(&key) {
                entry.fail(Failure::Reset {
                    code: PROTOCOL_ERROR,
                    by_peer: false,
                });
            }
            return;
        };
        if let Some(response) = entry.response.take() {
            let _ = response.send(Ok(parts));
        }
        if end_stream {
            entry.shared.end_recv(None);
            entry.recv_ended = true;
            self.forget_if_done(key);
        }
    }

    /// What a call asked for (streams named by key).
    fn command(&mut self, command: Command) {
        match command {
            Command::Open(open) => self.queue_open(*open),
            Command::Data {
                stream,
                data,
                end_stream,
            } => self.queue(stream, data, end_stream),
            // A gRPC client ends its request with END_STREAM on DATA, never with trailers.
            Command::Trailers { stream, .. } | Command::OkTrailers { stream } => {
                self.queue(stream, Bytes::new(), true)
            }
            Command::Reset { stream, code } => {
                if let Some(mut entry) = self.streams.remove(&stream) {
                    let unread = entry.fail(Failure::Reset {
                        code,
                        by_peer: false,
                    });
                    match entry.wire {
                        Some(wire) => {
                            self.wire.remove(&wire);
                            self.conn.reset(wire, code);
                            self.conn.release(wire, unread);
                        }
                        None => self.waiting.retain(|k| *k != stream),
                    }
                }
            }
            Command::Release { stream, n } => {
                // A stream already forgotten still credits the connection window (id 0).
                let wire = self.streams.get(&stream).and_then(|e| e.wire).unwrap_or(0);
                self.conn.release(wire, n);
            }
            Command::Dropped { stream } => {
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.dropped = true;
                    let unread = entry.shared.take_unread();
                    let wire = entry.wire.unwrap_or(0);
                    if unread > 0 {
                        self.conn.release(wire, unread);
                    }
                }
                self.forget_if_done(stream);
            }
            Command::Ping => self.conn.ping(KEEPALIVE_PING),
            Command::SendersGone => self.senders_gone = true,
            // Server-side commands.
            Command::Headers { .. } | Command::GrpcHead { .. } | Command::GrpcUnary { .. } => {}
        }
    }

    fn queue_open(&mut self, open: OpenStream) {
        let key = open.shared.id;
        let mut entry = Entry {
            shared: open.shared,
            wire: None,
            head: Some((open.head, open.end_stream)),
            response: Some(open.response),
            pending: VecDeque::new(),
            blocked: false,
            recv_ended: false,
            send_ended: open.end_stream,
            dropped: false,
        };
        if self.life != Life::Open || !self.state.accepting.load(Ordering::Acquire) {
            entry.fail(Failure::Refused(
                "the connection went away before sending it",
            ));
            return;
        }
        self.streams.insert(key, entry);
        self.waiting.push_back(key);
    }

    /// Sends the headers of waiting streams while the server's stream limit allows.
    fn open_waiting(&mut self) {
        while self.conn.can_open()
            && let Some(key) = self.waiting.pop_front()
        {
            let Some(entry) = self.streams.get_mut(&key) else {
                continue;
            };
            let Some((head, end_stream)) = entry.head.take() else {
                continue;
            };
            let Some(wire) = self.conn.open(request_fields(&head), end_stream) else {
                // can_open said yes; keep the stream first in line all the same.
                entry.head = Some((head, end_stream));
                self.waiting.push_front(key);
                return;
            };
            entry.wire = Some(wire);
            self.wire.insert(wire, key);
            self.pump(key);
        }
        if self.conn.is_closing() && !self.waiting.is_empty() {
            self.stop_accepting();
        }
    }

    fn queue(&mut self, key: u32, data: Bytes, end_stream: bool) {
        let Some(entry) = self.streams.get_mut(&key) else {
            return;
        };
        entry.pending.push_back((data, end_stream));
        if entry.wire.is_some() && !entry.blocked {
            self.pump(key);
        }
    }

    /// Moves what waits on stream `key` into the output, in order, as far as the windows
    /// and the output limit allow.
    fn pump(&mut self, key: u32) {
        let Some(entry) = self.streams.get_mut(&key) else {
            return;
        };
        let Some(wire) = entry.wire else {
            return;
        };
        entry.blocked = false;
        while let Some((data, end_stream)) = entry.pending.front_mut() {
            if self.conn.output_len() - self.written >= OUTPUT_LIMIT {
                entry.blocked = true;
                self.blocked.push(key);
                return;
            }
            let before = data.len();
            let all =
                data.is_empty() && !*end_stream || self.conn.send_data(wire, data, *end_stream);
            let sent = before - data.len();
            if sent > 0 {
                entry.shared.refill(sent);
            }
            if all && *end_stream {
                entry.send_ended = true;
            }
            if !all {
                if self.conn.is_open(wire) {
                    entry.blocked = true;
                    self.blocked.push(key);
                    return;
                }
                // Gone (reset meanwhile; its Reset event is on its way): nothing more goes.
                entry.pending.clear();
                return;
            }
            entry.pending.pop_front();
        }
        self.forget_if_done(key);
    }

    fn retry_blocked(&mut self) {
        let blocked = std::mem::take(&mut self.blocked);
        for key in blocked {
            if self.streams.get(&key).is_some_and(|e| e.blocked) {
                self.pump(key);
            }
        }
    }

    fn forget_if_done_wire(&mut self, stream: u32) {
        if let Some(&key) = self.wire.get(&stream) {
            self.forget_if_done(key);
        }
    }

    /// Forgets stream `key` once nothing more can happen on it: its request is all out and
    /// its response's end was handed on, or its call is gone (then an open stream is
    /// cancelled, and one not sent yet is never sent). A reset stream is forgotten where its
    /// Reset event is handled.
    fn forget_if_done(&mut self, key: u32) {
        let Some(entry) = self.streams.get(&key) else {
            return;
        };
        let Some(wire) = entry.wire else {
            if entry.dropped {
                self.streams.remove(&key);
                self.waiting.retain(|k| *k != key);
            }
            return;
        };
        let done = entry.dropped || (entry.recv_ended && entry.send_ended);
        if !done {
            return;
        }
        let open = self.conn.is_open(wire);
        self.wire.remove(&wire);
        let Some(mut entry) = self.streams.remove(&key) else {
            return;
        };
        if open {
            self.conn.reset(wire, CANCEL);
            entry.fail(Failure::Reset {
                code: CANCEL,
                by_peer: false,
            });
        }
    }

    /// Ends every stream: the connection is going.
    fn fail_all(&mut self, failure: Failure) {
        for (_, mut entry) in self.streams.drain() {
            let refused = entry.wire.is_none();
            entry.fail(if refused {
                Failure::Refused("the connection ended before sending it")
            } else {
                failure
            });
        }
        self.wire.clear();
        self.waiting.clear();
        self.blocked.clear();
    }
}

impl<T> Drop for EngineClient<T> {
    fn drop(&mut self) {
        self.state.accepting.store(false, Ordering::Release);
        for (_, mut entry) in self.streams.drain() {
            entry.fail(Failure::Closed("the connection closed"));
        }
        // Streams queued but never seen: their handles must not wait forever.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Open(open) = command {
                let _ = open
                    .response
                    .send(Err(Failure::Refused("the connection closed")));
                open.shared.fail(Failure::Refused("the connection closed"));
            }
        }
    }
}

/// A request head as HPACK fields, pseudo-headers first. `grpc-timeout` (new on every call)
/// is not indexed, sensitive values never are.
fn request_fields(head: &http::request::Parts) -> impl Iterator<Item = (&[u8], &[u8], Indexing)> {
    let scheme = head.uri.scheme_str().unwrap_or("http");
    let authority = head.uri.authority().map(|a| a.as_str());
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let pseudo = [
        Some((&b":method"[..], head.method.as_str())),
        Some((b":scheme", scheme)),
        authority.map(|a| (&b":authority"[..], a)),
        Some((b":path", path)),
    ];
    let pseudo = pseudo
        .into_iter()
        .flatten()
        .map(|(name, value)| (name, value.as_bytes(), Indexing::Incremental));
    let regular = head.headers.iter().map(|(name, value)| {
        let indexing = if value.is_sensitive() {
            Indexing::Never
        } else if name == "grpc-timeout" {
            Indexing::Without
        } else {
            Indexing::Incremental
        };
        (name.as_str().as_bytes(), value.as_bytes(), indexing)
    });
    pseudo.chain(regular)
}

/// A response's head from its (already checked) fields: `:status` first.
fn response_parts(fields: Vec<Field>) -> Option<http::response::Parts> {
    let mut fields = fields.into_iter();
    let status = fields.next()?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.version = http::Version::HTTP_2;
    parts.status = http::StatusCode::from_bytes(&status.value).ok()?;
    parts.headers = header_map(fields);
    Some(parts)
}
