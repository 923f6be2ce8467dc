//! The server side of an engine connection: [`EngineConnection`] drives
//! `volley_http2::server::ServerConnection` over a socket.
//!
//! Each turn ([`EngineConnection::poll_io`]) applies the calls' commands, reads what the
//! socket has (into one buffer, whose DATA payloads the calls get as slices, not copies),
//! and writes what the turn produced in one write. Reading pauses while more than
//! [`OUTPUT_LIMIT`] bytes wait to be written, so a client that does not read cannot make the
//! server buffer without bound (its PINGs, SETTINGS and requests all produce output).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use volley_http2::hpack::Field;
use volley_http2::server::{Config, ServerConnection};
use volley_http2::{Event, ReusableBlock, StreamIdHasher};

use super::handles::{EngineRecv, EngineRespond};
use super::{
    Command, Failure, KEEPALIVE_PING, Link, PingSlot, StreamShared, header_map, header_name,
    poll_write_output,
};
use crate::transport::error::StreamError;
use crate::transport::watch::{Activity, Enforcer, PingPolicy, TOO_MANY_PINGS};

/// Reading pauses while this many bytes wait to be written.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// How much is read at once.
const READ_SIZE: usize = 32 * 1024;
/// The payload of the PING that follows a graceful shutdown's first GOAWAY (gRFC A9).
const DRAIN_PING: [u8; 8] = *b"vlgoaway";
/// HTTP/2 error codes.
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// How long a closing connection waits for the client to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// How many streams the client may reset before the server took them (h2's default).
const MAX_PENDING_RESETS: usize = 20;
/// The last stream id of a graceful shutdown's first GOAWAY.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// A stream the connection accepted: the request and its response's start.
pub(crate) type Accepted = (http::Request<EngineRecv>, EngineRespond);

/// What the connection's task keeps per open stream.
#[derive(Debug)]
struct Entry {
    shared: Arc<StreamShared>,
    /// What the call sent that has not gone into the output yet, in order.
    pending: VecDeque<Out>,
    /// Waiting for flow-control window or for the output to drain.
    blocked: bool,
    /// The call queued the end of its response.
    ended: bool,
    /// Every handle is gone.
    dropped: bool,
    /// `poll_accept` handed the stream to the server.
    handed_out: bool,
    /// The request's end was handed to the handles. (The protocol state runs ahead of the
    /// events: it has taken in the whole read before they are handled, so a stream it no
    /// longer has open may still have a Reset event on its way, which the call must see.)
    recv_ended: bool,
}

#[derive(Debug)]
enum Out {
    Headers(http::response::Parts, bool),
    /// gRPC's usual response headers.
    GrpcHead,
    Data(Bytes, bool),
    /// `grpc-status: 0` alone.
    OkTrailers,
    Trailers(HeaderMap),
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Open,
    /// The first GOAWAY (2^31-1) and its PING are out; the final GOAWAY follows the ACK.
    Draining,
    /// The final GOAWAY is out: done once the open streams end.
    GoneAway,
    /// Closing: no more reading; done once the output is written.
    Closing,
    /// Everything is written and our side shut down; what the client still sends is read
    /// and dropped until it closes too or [`LINGER`] passes. Closing a socket with unread
    /// input makes the kernel send RST, which can destroy our last frames (the GOAWAY)
    /// before the client reads them.
    Lingering,
    /// Done.
    Closed,
}

/// A server connection on Volley's engine.
pub(crate) struct EngineConnection<T> {
    io: T,
    w: Writer,
    read_buf: BytesMut,
    events: Vec<Event>,
    streams: HashMap<u32, Entry, BuildHasherDefault<StreamIdHasher>>,
    blocked: Vec<u32>,
    accepted: VecDeque<Accepted>,
    commands: UnboundedReceiver<Command>,
    sender: UnboundedSender<Command>,
    activity: Arc<Activity>,
    pings: Arc<PingSlot>,
    life: Life,
    /// The client sent GOAWAY: done once the open streams end.
    peer_gone: bool,
    /// Streams the client reset before the server took them from the accept queue, since
    /// it was last empty (rapid reset, CVE-2023-44487: h2's rule and limit).
    pending_resets: usize,
    /// Why the connection ended, reported once by `poll_accept`.
    error: Option<StreamError>,
    /// While lingering: when to give up on the client, and whether our side is shut down.
    linger: Option<(Pin<Box<tokio::time::Sleep>>, bool)>,
    /// The last request's URI, by the fields it was made of.
    last_uri: Option<UriMemo>,
}

/// A request URI and the `:scheme`, `:authority` and `:path` it was parsed from: a
/// connection's requests mostly repeat them (HPACK hands the same table entries out), so
/// the next request with the same three is a clone rather than three parses.
#[derive(Debug)]
struct UriMemo {
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    uri: http::Uri,
}

impl<T> std::fmt::Debug for EngineConnection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConnection")
            .field("streams", &self.streams.len())
            .field("life", &self.life)
            .finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> EngineConnection<T> {
    /// Starts a connection on `io` (our SETTINGS are queued) and drives it until the
    /// client's preface and first SETTINGS have arrived.
    pub(crate) async fn handshake(
        io: T,
        config: Config,
        ping_policy: Option<PingPolicy>,
    ) -> Result<EngineConnection<T>, StreamError> {
        let (sender, commands) = unbounded_channel();
        let mut conn = EngineConnection {
            io,
            w: Writer {
                conn: ServerConnection::new(config),
                written: 0,
                enforcer: ping_policy.map(Enforcer::new),
                head_block: None,
                ok_trailers_block: None,
            },
            read_buf: BytesMut::new(),
            events: Vec::new(),
            streams: HashMap::default(),
            blocked: Vec::new(),
            accepted: VecDeque::new(),
            commands,
            sender,
            activity: Activity::new(),
            pings: Arc::default(),
            life: Life::Open,
            peer_gone: false,
            pending_resets: 0,
            error: None,
            linger: None,
            last_uri: None,
        };
        std::future::poll_fn(|cx| conn.poll_handshake(cx)).await?;
        Ok(conn)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        loop {
            if self.activity.settings_seen() {
                return Poll::Ready(Ok(()));
            }
            if self.life == Life::Closed {
                return Poll::Ready(Err(self.error.take().unwrap_or_else(|| {
                    StreamError::closed_early("closed during the handshake")
                })));
            }
            if !self.poll_io(cx) {
                return Poll::Pending;
            }
        }
    }

    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Keepalive's handle on the connection's PINGs.
    pub(crate) fn ping_handle(&self) -> (Arc<PingSlot>, UnboundedSender<Command>) {
        (self.pings.clone(), self.sender.clone())
    }

    /// The next stream a client opened, driving the connection meanwhile; `None` once the
    /// connection is over. Cancel-safe: all state lives in `self`.
    pub(crate) fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Accepted, StreamError>>> {
        loop {
            if let Some(accepted) = self.accepted.pop_front() {
                let stream = accepted.1.stream_id();
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.handed_out = true;
                }
                return Poll::Ready(Some(Ok(accepted)));
            }
            self.pending_resets = 0;
            if self.life == Life::Closed {
                return Poll::Ready(self.error.take().map(Err));
            }
            if !self.poll_io(cx) {
                return Poll::Pending;
            }
        }
    }

    /// Graceful shutdown (gRFC A9): GOAWAY(2^31-1) and a PING now, the final GOAWAY with
    /// the last stream id when the PING returns; streams open then run to completion.
    pub(crate) fn graceful_shutdown(&mut self) {
        if self.life == Life::Open {
            self.w.conn.go_away(MAX_STREAM_ID, NO_ERROR, b"");
            self.w.conn.ping(DRAIN_PING);
            self.life = Life::Draining;
        }
    }

    /// Closes the connection because the client pinged too often: GOAWAY ENHANCE_YOUR_CALM
    /// `too_many_pings`, every stream reset, then the connection closes once that is written.
    pub(crate) fn close_too_many_pings(&mut self) {
        self.abort(ENHANCE_YOUR_CALM, TOO_MANY_PINGS);
    }

    /// Ends the connection for the client's misbehaviour: GOAWAY with `code` and `why` as
    /// debug data, every stream failed, closed once that is written.
    fn abort(&mut self, code: u32, why: &'static str) {
        if matches!(self.life, Life::Closing | Life::Lingering | Life::Closed) {
            return;
        }
        tracing::debug!(why, "HTTP/2 connection: GOAWAY");
        let last = self.w.conn.last_stream();
        self.w.conn.go_away(last, code, why.as_bytes());
        self.fail_all(Failure::Closed(why));
        self.error = Some(StreamError::engine(Failure::Closed(why)));
        self.life = Life::Closing;
    }

    /// One turn: commands, reading, writing. Returns whether anything happened (call
    /// again) or not (everything is registered for a wake-up).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> bool {
        if self.life == Life::Lingering {
            return self.poll_linger(cx);
        }
        let mut progress = false;
        while let Poll::Ready(Some(command)) = self.commands.poll_recv(cx) {
            self.command(command);
            progress = true;
        }
        if self.reading() {
            progress |= self.poll_read(cx);
        }
        match self.poll_write(cx) {
            Poll::Ready(Ok(wrote)) => {
                progress |= wrote;
                if !self.blocked.is_empty() && !self.output_full() {
                    self.retry_blocked();
                    progress |= self.pending_output() > 0;
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 connection: write failed");
                self.fail_all(Failure::Closed("the connection broke"));
                self.error.get_or_insert(StreamError::io(e));
                self.life = Life::Closed;
                return true;
            }
            Poll::Pending => {}
        }
        if self.life != Life::Closed && self.finished() && self.pending_output() == 0 {
            self.life = Life::Lingering;
            self.fail_all(Failure::Closed("the connection closed"));
            progress = true;
        }
        progress
    }

    /// Shuts our side down, then reads and drops what the client sends until it closes or
    /// [`LINGER`] passes; whether the connection is now closed.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> bool {
        let (deadline, shut) = self
            .linger
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER)), false));
        if !*shut && Pin::new(&mut self.io).poll_shutdown(cx).is_ready() {
            *shut = true;
        }
        loop {
            self.read_buf.clear();
            self.read_buf.reserve(READ_SIZE);
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_pending() {
                        return false;
                    }
                    break;
                }
            }
        }
        self.life = Life::Closed;
        true
    }

    fn reading(&self) -> bool {
        !matches!(self.life, Life::Closing | Life::Lingering | Life::Closed) && !self.output_full()
    }

    /// Whether nothing more will happen on the connection (once the output is written).
    fn finished(&self) -> bool {
        match self.life {
            Life::Closing | Life::Lingering => true,
            Life::GoneAway => self.streams.is_empty() && self.w.conn.open_streams() == 0,
            Life::Open | Life::Draining => {
                self.peer_gone && self.streams.is_empty() && self.w.conn.open_streams() == 0
            }
            Life::Closed => true,
        }
    }

    fn pending_output(&self) -> usize {
        self.w.conn.output_len() - self.w.written
    }

    fn output_full(&self) -> bool {
        self.pending_output() >= OUTPUT_LIMIT
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
                tracing::trace!("HTTP/2 connection: the client closed it");
                self.fail_all(Failure::Closed("the client closed the connection"));
                self.life = Life::Closed;
                true
            }
            Poll::Ready(Ok(_)) => {
                self.activity.touch();
                let result = self.w.conn.receive(&mut self.read_buf, &mut self.events);
                let mut events = std::mem::take(&mut self.events);
                for event in events.drain(..) {
                    self.event(event);
                }
                self.events = events;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP/2 connection error; GOAWAY sent");
                    self.fail_all(Failure::Closed(e.reason));
                    self.error = Some(StreamError::engine(Failure::Closed(e.reason)));
                    self.life = Life::Closing;
                }
                true
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 connection: read failed");
                self.fail_all(Failure::Closed("the connection broke"));
                self.error = Some(StreamError::io(e));
                self.life = Life::Closed;
                true
            }
        }
    }

    /// Writes the output; ready with whether anything was written once all of it is.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.life == Life::Closed {
            return Poll::Ready(Ok(false));
        }
        let Writer { conn, written, .. } = &mut self.w;
        poll_write_output(&mut self.io, conn.output(), written, cx)
    }

    /// What the client did.
    fn event(&mut self, event: Event) {
        match event {
            Event::Ready => self.activity.saw_settings(),
            Event::Headers {
                stream,
                fields,
                end_stream,
            } => self.request(stream, fields, end_stream),
            Event::HeadersTooLarge { stream } => {
                // The stream is answered here, not by a call: HTTP 431.
                self.w
                    .conn
                    .send_headers(stream, &[(b":status", b"431")], true);
                if self.w.conn.is_open(stream) {
                    self.w.conn.reset(stream, NO_ERROR);
                }
            }
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let unread = match self.streams.get_mut(&stream) {
                    Some(entry) => {
                        let back = if data.is_empty() {
                            None
                        } else {
                            entry.shared.push_data(data)
                        };
                        if end_stream {
                            entry.shared.end_recv(None);
                            entry.recv_ended = true;
                        }
                        back.map_or(0, |b| b.len())
                    }
                    None => data.len(),
                };
                if unread > 0 {
                    self.w.conn.release(stream, unread);
                }
                self.forget_if_done(stream);
            }
            Event::Trailers { stream, fields } => {
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.shared.end_recv(Some(header_map(fields.into_iter())));
                    entry.recv_ended = true;
                }
                self.forget_if_done(stream);
            }
            Event::Reset {
                stream,
                code,
                by_peer,
            } => {
                if let Some(entry) = self.streams.remove(&stream) {
                    let unread = entry.shared.fail(Failure::Reset { code, by_peer });
                    if unread > 0 {
                        self.w.conn.release(stream, unread);
                    }
                    if !entry.handed_out {
                        self.accepted
                            .retain(|(_, respond)| respond.stream_id() != stream);
                        self.pending_resets += 1;
                        if by_peer && self.pending_resets > MAX_PENDING_RESETS {
                            self.abort(ENHANCE_YOUR_CALM, "too_many_resets");
                        }
                    }
                }
            }
            Event::Ping { .. } => {
                if let Some(enforcer) = &mut self.w.enforcer
                    && enforcer.ping(self.activity.active_calls())
                    && !self.activity.too_many_pings()
                {
                    tracing::debug!("client pinged too often: GOAWAY too_many_pings");
                    self.activity.set_too_many_pings();
                }
            }
            Event::PingAck { payload } => {
                self.activity.saw_ping_ack();
                if payload == KEEPALIVE_PING {
                    self.pings.ack();
                } else if payload == DRAIN_PING && self.life == Life::Draining {
                    let last = self.w.conn.last_stream();
                    self.w.conn.go_away(last, NO_ERROR, b"");
                    self.life = Life::GoneAway;
                }
            }
            Event::GoAway { .. } => self.peer_gone = true,
            Event::WindowUpdate { stream: 0 } => self.retry_blocked(),
            Event::WindowUpdate { stream } => {
                if self.streams.get(&stream).is_some_and(|e| e.blocked) {
                    self.pump(stream);
                }
            }
        }
    }

    /// A request arrived: it becomes a stream the server accepts.
    fn request(&mut self, stream: u32, fields: Vec<Field>, end_stream: bool) {
        let Some(parts) = request_parts(fields, &mut self.last_uri) else {
            tracing::debug!(stream, "a request the http crate cannot represent: reset");
            self.w.conn.reset(stream, PROTOCOL_ERROR);
            return;
        };
        let shared = StreamShared::new(stream, end_stream);
        let link = Arc::new(Link {
            shared: shared.clone(),
            commands: self.sender.clone(),
        });
        self.streams.insert(
            stream,
            Entry {
                shared,
                pending: VecDeque::new(),
                blocked: false,
                ended: false,
                dropped: false,
                handed_out: false,
                recv_ended: end_stream,
            },
        );
        let request = http::Request::from_parts(parts, EngineRecv::new(link.clone()));
        self.accepted.push_back((request, EngineRespond::new(link)));
    }

    /// What a call asked for.
    fn command(&mut self, command: Command) {
        match command {
            Command::Headers {
                stream,
                head,
                end_stream,
            } => self.queue(stream, [Out::Headers(head, end_stream)], end_stream),
            Command::Data {
                stream,
                data,
                end_stream,
            } => self.queue(stream, [Out::Data(data, end_stream)], end_stream),
            Command::Trailers { stream, trailers } => {
                self.queue(stream, [Out::Trailers(trailers)], true)
            }
            Command::GrpcHead { stream } => self.queue(stream, [Out::GrpcHead], false),
            Command::OkTrailers { stream } => self.queue(stream, [Out::OkTrailers], true),
            Command::GrpcUnary { stream, data } => {
                let outs = [Out::GrpcHead, Out::Data(data, false), Out::OkTrailers];
                self.queue(stream, outs, true)
            }
            Command::Reset { stream, code } => {
                if let Some(entry) = self.streams.remove(&stream) {
                    let unread = entry.shared.fail(Failure::Reset {
                        code,
                        by_peer: false,
                    });
                    self.w.conn.reset(stream, code);
                    if unread > 0 {
                        self.w.conn.release(stream, unread);
                    }
                }
            }
            Command::Release { stream, n } => self.w.conn.release(stream, n),
            Command::Dropped { stream } => {
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.dropped = true;
                    let unread = entry.shared.take_unread();
                    if unread > 0 {
                        self.w.conn.release(stream, unread);
                    }
                }
                self.forget_if_done(stream);
            }
            Command::Ping => self.w.conn.ping(KEEPALIVE_PING),
            // Client-side commands.
            Command::Open(_) | Command::SendersGone => {}
        }
    }

    /// Puts a call's `outs` into the output in order, or behind what already waits on the
    /// stream; `end`: they end the response.
    fn queue<const N: usize>(&mut self, stream: u32, outs: [Out; N], end: bool) {
        // A stream gone (reset) drops what comes: its call learns that from its handles.
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        entry.ended |= end;
        for out in outs {
            // Something already waits (for window or room): this waits behind it.
            if entry.blocked {
                entry.pending.push_back(out);
                continue;
            }
            match self.w.emit(stream, &entry.shared, out) {
                Emitted::All => {}
                Emitted::Blocked(rest) => {
                    entry.pending.push_back(rest);
                    entry.blocked = true;
                    self.blocked.push(stream);
                }
                Emitted::Gone => entry.pending.clear(),
            }
        }
        self.forget_if_done(stream);
    }

    /// Moves what waits on `stream` into the output, in order, as far as the windows and the
    /// output limit allow.
    fn pump(&mut self, stream: u32) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        entry.blocked = false;
        while let Some(out) = entry.pending.pop_front() {
            match self.w.emit(stream, &entry.shared, out) {
                Emitted::All => {}
                Emitted::Blocked(rest) => {
                    entry.pending.push_front(rest);
                    entry.blocked = true;
                    self.blocked.push(stream);
                    return;
                }
                Emitted::Gone => entry.pending.clear(),
            }
        }
        self.forget_if_done(stream);
    }

    fn retry_blocked(&mut self) {
        let blocked = std::mem::take(&mut self.blocked);
        for stream in blocked {
            if self.streams.get(&stream).is_some_and(|e| e.blocked) {
                self.pump(stream);
            }
        }
    }

    /// Forgets `stream` once nothing more can happen on it: the protocol closed it and its
    /// call's output is all out, or its call is gone (a call gone before ending its response
    /// resets the stream; one gone after, with the request still coming, stops it with
    /// NO_ERROR).
    fn forget_if_done(&mut self, stream: u32) {
        let Some(entry) = self.streams.get(&stream) else {
            return;
        };
        let open = self.w.conn.is_open(stream);
        let done = if entry.dropped {
            entry.pending.is_empty() || !open
        } else {
            // Closed by the protocol: after the request's end reached the call (else a Reset
            // is still to be handled, and the call must learn of it).
            !open && entry.pending.is_empty() && entry.recv_ended
        };
        if !done {
            return;
        }
        let Some(entry) = self.streams.remove(&stream) else {
            return;
        };
        if open {
            let code = if entry.ended { NO_ERROR } else { CANCEL };
            self.w.conn.reset(stream, code);
            entry.shared.fail(Failure::Reset {
                code,
                by_peer: false,
            });
        }
    }

    /// Ends every stream: the connection is going.
    fn fail_all(&mut self, failure: Failure) {
        for (_, entry) in self.streams.drain() {
            entry.shared.fail(failure);
        }
        self.accepted.clear();
        self.blocked.clear();
    }
}

impl<T> Drop for EngineConnection<T> {
    fn drop(&mut self) {
        for (_, entry) in self.streams.drain() {
            entry.shared.fail(Failure::Closed("the connection closed"));
        }
    }
}

/// The sending side of the connection: the protocol state, how much of its output is
/// written, ping enforcement (which sent HEADERS and DATA forgive), and gRPC's fixed header
/// blocks pre-encoded.
struct Writer {
    conn: ServerConnection,
    /// How much of the connection's output has been written.
    written: usize,
    enforcer: Option<Enforcer>,
    /// `:status: 200` and `content-type: application/grpc`, once it no longer changes the
    /// HPACK table.
    head_block: Option<ReusableBlock>,
    /// `grpc-status: 0`, likewise.
    ok_trailers_block: Option<ReusableBlock>,
}

/// What [`Writer::emit`] did.
enum Emitted {
    All,
    /// This much waits for flow-control window or for the output to drain.
    Blocked(Out),
    /// The stream is gone.
    Gone,
}

/// gRPC's usual response head and OK trailers, as fields.
const GRPC_HEAD: [(&[u8], &[u8]); 2] =
    [(b":status", b"200"), (b"content-type", b"application/grpc")];
const GRPC_OK_TRAILERS: [(&[u8], &[u8]); 1] = [(b"grpc-status", b"0")];

impl Writer {
    fn pending_output(&self) -> usize {
        self.conn.output_len() - self.written
    }

    /// Puts `out` into the output, as far as the windows and the output limit allow.
    fn emit(&mut self, stream: u32, shared: &StreamShared, out: Out) -> Emitted {
        match out {
            Out::Headers(head, end_stream) => {
                self.send_head(stream, &head, end_stream);
                self.forgive();
            }
            Out::Data(mut data, end_stream) => {
                if self.pending_output() >= OUTPUT_LIMIT {
                    return Emitted::Blocked(Out::Data(data, end_stream));
                }
                let before = data.len();
                let all = data.is_empty() && !end_stream
                    || self.conn.send_data(stream, &mut data, end_stream);
                let sent = before - data.len();
                if sent > 0 {
                    shared.refill(sent);
                    self.forgive();
                }
                if !all {
                    if self.conn.is_open(stream) {
                        return Emitted::Blocked(Out::Data(data, end_stream));
                    }
                    return Emitted::Gone;
                }
            }
            Out::GrpcHead => {
                if !send_block(
                    &mut self.conn,
                    &mut self.head_block,
                    &GRPC_HEAD,
                    stream,
                    false,
                ) {
                    self.conn.send_headers(stream, &GRPC_HEAD, false);
                }
                self.forgive();
            }
            Out::Trailers(trailers) => self.send_trailers(stream, &trailers),
            Out::OkTrailers => {
                if !send_block(
                    &mut self.conn,
                    &mut self.ok_trailers_block,
                    &GRPC_OK_TRAILERS,
                    stream,
                    true,
                ) {
                    self.conn.send_headers(stream, &GRPC_OK_TRAILERS, true);
                }
            }
        }
        Emitted::All
    }

    fn forgive(&mut self) {
        if let Some(enforcer) = &mut self.enforcer {
            enforcer.forgive();
        }
    }

    /// Encodes a response head (gRPC's usual one as pre-encoded bytes).
    fn send_head(&mut self, stream: u32, head: &http::response::Parts, end_stream: bool) {
        if head.status == http::StatusCode::OK
            && head.headers.len() == 1
            && head
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes())
                == Some(GRPC_HEAD[1].1)
            && send_block(
                &mut self.conn,
                &mut self.head_block,
                &GRPC_HEAD,
                stream,
                end_stream,
            )
        {
            return;
        }
        let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(1 + head.headers.len());
        fields.push((b":status", head.status.as_str().as_bytes()));
        for (name, value) in &head.headers {
            fields.push((name.as_str().as_bytes(), value.as_bytes()));
        }
        self.conn.send_headers(stream, &fields, end_stream);
    }

    /// Encodes trailers, ending the stream (`grpc-status: 0` alone as pre-encoded bytes).
    fn send_trailers(&mut self, stream: u32, trailers: &HeaderMap) {
        if trailers.len() == 1
            && trailers.get("grpc-status").map(|v| v.as_bytes()) == Some(GRPC_OK_TRAILERS[0].1)
            && send_block(
                &mut self.conn,
                &mut self.ok_trailers_block,
                &GRPC_OK_TRAILERS,
                stream,
                true,
            )
        {
            return;
        }
        let fields: Vec<(&[u8], &[u8])> = trailers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .collect();
        self.conn.send_headers(stream, &fields, true);
    }
}

/// Sends `fields` as the pre-encoded `block`, making it first when the HPACK table allows (it
/// no longer changes it); whether it was sent.
fn send_block(
    conn: &mut ServerConnection,
    block: &mut Option<ReusableBlock>,
    fields: &[(&[u8], &[u8])],
    stream: u32,
    end_stream: bool,
) -> bool {
    if let Some(b) = block
        && conn.send_block(stream, b, end_stream)
    {
        return true;
    }
    *block = conn.reusable_block(fields);
    block
        .as_ref()
        .is_some_and(|b| conn.send_block(stream, b, end_stream))
}

/// A request's head from its (already checked) fields; `None` when the `http` crate cannot
/// represent it.
fn request_parts(
    fields: Vec<Field>,
    last_uri: &mut Option<UriMemo>,
) -> Option<http::request::Parts> {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.version = http::Version::HTTP_2;
    let (mut scheme, mut authority, mut path) = (None, None, None);
    let regular = fields
        .iter()
        .filter(|f| f.name.first() != Some(&b':'))
        .count();
    parts.headers = HeaderMap::with_capacity(regular);
    for field in fields {
        if field.name.first() == Some(&b':') {
            match &field.name[..] {
                b":method" => parts.method = http::Method::from_bytes(&field.value).ok()?,
                b":scheme" => scheme = Some(field.value),
                b":authority" => authority = Some(field.value),
                b":path" => path = Some(field.value),
                _ => return None,
            }
            continue;
        }
        let name = header_name(&field.name)?;
        let value = HeaderValue::from_maybe_shared(field.value).ok()?;
        parts.headers.append(name, value);
    }
    if let Some(memo) = last_uri
        && memo.scheme == scheme
        && memo.authority == authority
        && memo.path == path
    {
        parts.uri = memo.uri.clone();
        return Some(parts);
    }
    // The memo keeps copies: the fields may be slices of the connection's read buffer,
    // which the memo must not keep alive.
    let copy = |b: Option<Bytes>| b.map(|b| Bytes::copy_from_slice(&b));
    let (scheme, authority, path) = (copy(scheme), copy(authority), copy(path));
    let uri = request_uri(scheme.clone(), authority.clone(), path.clone())?;
    parts.uri = uri.clone();
    *last_uri = Some(UriMemo {
        scheme,
        authority,
        path,
        uri,
    });
    Some(parts)
}

/// A request's URI from its pseudo-headers.
fn request_uri(
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
) -> Option<http::Uri> {
    let mut uri = http::uri::Parts::default();
    if let Some(authority) = authority {
        uri.authority = Some(http::uri::Authority::from_maybe_shared(authority).ok()?);
        if let Some(scheme) = scheme {
            uri.scheme = Some(http::uri::Scheme::try_from(&scheme[..]).ok()?);
        }
    }
    if let Some(path) = path {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(path).ok()?);
    } else if uri.authority.is_none() {
        return None;
    }
    if uri.scheme.is_none() && uri.path_and_query.is_some() {
        uri.authority = None;
    }
    http::Uri::from_parts(uri).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &'static str) -> Vec<Field> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "example.test:50051"),
            (":path", path),
            ("content-type", "application/grpc"),
        ]
        .into_iter()
        .map(|(name, value)| Field {
            name: Bytes::from_static(name.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
            never_indexed: false,
        })
        .collect()
    }

    #[test]
    fn a_repeated_request_uri_comes_from_the_memo_and_a_new_one_replaces_it() {
        let mut memo = None;
        for path in ["/a.B/C", "/a.B/C", "/a.B/D", "/a.B/C"] {
            let parts = request_parts(request(path), &mut memo).expect("a valid request");
            assert_eq!(parts.uri.path(), path);
            assert_eq!(
                parts.uri.authority().map(|a| a.as_str()),
                Some("example.test:50051")
            );
            assert_eq!(parts.uri.scheme_str(), Some("http"));
            assert_eq!(parts.headers.len(), 1);
            let kept = memo.as_ref().expect("remembered");
            assert_eq!(kept.uri, parts.uri);
            // The memo keeps copies, never the request's own buffers.
            let memo_path = kept.path.as_ref().expect("a path");
            assert_ne!(memo_path.as_ptr(), path.as_ptr());
        }
    }
}
