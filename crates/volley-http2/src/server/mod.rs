//! The server side of an HTTP/2 connection, without I/O: bytes in, [`Event`]s and bytes out.
//!
//! [`ServerConnection::receive`] takes what the socket read; it checks the preface, parses
//! frames ([`crate::frame`]), decodes header blocks ([`crate::hpack`]), enforces RFC 9113's
//! stream states (§5.1), identifiers (§5.1.1), concurrency (§5.1.2), flow control (§5.2,
//! §6.9) and request rules (§8.2, §8.3), answers SETTINGS and PING, and reports what the
//! server acts on. Its replies, and what the server sends through it ([`send_headers`],
//! [`send_data`], [`reset`], ...), accumulate in one output buffer for one write per turn.
//! A stream error resets the stream and reports it; a connection error writes GOAWAY and is
//! returned: the caller flushes the output and closes.
//!
//! [`send_headers`]: ServerConnection::send_headers
//! [`send_data`]: ServerConnection::send_data
//! [`reset`]: ServerConnection::reset

use bytes::{Buf, Bytes, BytesMut};

use crate::common::{
    ConnectionError, StreamMap, check_trailers, connection_specific, fail, valid_field,
};
use crate::frame::{
    self, Frame, FrameDecoder, FrameError, MAX_WINDOW_SIZE, PREFACE, Settings, code,
};
use crate::hpack::{self, Field, Indexing};

/// A server connection's own settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are
    /// refused. Default: 100 (RFC 9113's recommended minimum).
    pub max_concurrent_streams: u32,
    /// Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE). Default: 65,535.
    pub initial_window_size: u32,
    /// The connection's receive window. Default: 65,535.
    pub connection_window_size: u32,
    /// The largest frame accepted (SETTINGS_MAX_FRAME_SIZE). Default: 16,384.
    pub max_frame_size: u32,
    /// The largest request header list (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one is
    /// reported as [`Event::HeadersTooLarge`]. Default: 16 KiB.
    pub max_header_list_size: u32,
    /// The largest header block kept while CONTINUATION frames arrive; past it the
    /// connection ends with ENHANCE_YOUR_CALM. Default: 64 KiB.
    pub max_header_block: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_concurrent_streams: 100,
            initial_window_size: 65_535,
            connection_window_size: 65_535,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: 16 << 10,
            max_header_block: 64 << 10,
        }
    }
}

/// What the client did, for the server to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request: its fields, pseudo-headers first, checked against §8.3.
    Request {
        /// The stream.
        stream: u32,
        /// The fields.
        fields: Vec<Field>,
        /// The client sent END_STREAM with the headers.
        end_stream: bool,
    },
    /// A request whose header list was above SETTINGS_MAX_HEADER_LIST_SIZE: the stream is
    /// open so that the server can answer it (HTTP 431, or a gRPC error).
    HeadersTooLarge {
        /// The stream.
        stream: u32,
    },
    /// Request data. Credit it back with [`ServerConnection::release`] once consumed.
    Data {
        /// The stream.
        stream: u32,
        /// The bytes (padding removed).
        data: Bytes,
        /// The client's last frame on the stream.
        end_stream: bool,
    },
    /// The request's trailers (END_STREAM).
    Trailers {
        /// The stream.
        stream: u32,
        /// The fields.
        fields: Vec<Field>,
    },
    /// A stream ended abnormally: the client reset it (`by_peer`), or it broke a rule and
    /// this connection reset it. The stream is gone.
    Reset {
        /// The stream.
        stream: u32,
        /// The error code.
        code: u32,
        /// The client sent the RST_STREAM.
        by_peer: bool,
    },
    /// The client pinged (the acknowledgement is already written).
    Ping {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The client acknowledged a PING of ours.
    PingAck {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The client is going away.
    GoAway {
        /// The last stream it may have processed.
        last_stream: u32,
        /// Error code.
        code: u32,
        /// Debug data.
        debug: Bytes,
    },
    /// The client opened send windows (stream 0: the connection, or every stream after a
    /// SETTINGS change): data held back may go now.
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
    },
}

/// One open stream.
#[derive(Debug)]
struct Stream {
    /// The client sent END_STREAM.
    recv_closed: bool,
    /// We sent END_STREAM.
    send_closed: bool,
    /// What the client may still send before we credit more.
    recv_window: i64,
    /// Consumed bytes not yet credited back.
    unreleased: u32,
    /// What we may still send.
    send_window: i64,
    /// The request's content-length, when given, and the DATA received so far.
    content_length: Option<u64>,
    received: u64,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client preface.
    Preface,
    /// Waiting for the client's first SETTINGS.
    Settings,
    /// Running.
    Open,
    /// A connection error was sent.
    Failed,
}

/// The server side of one connection.
#[derive(Debug)]
pub struct ServerConnection {
    config: Config,
    phase: Phase,
    frames: FrameDecoder,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    out: Vec<u8>,
    streams: StreamMap<Stream>,
    /// The highest stream the client opened: lower ones not in `streams` are closed.
    last_stream: u32,
    /// After our GOAWAY: streams above this are ignored.
    accept_up_to: u32,
    connection_recv_window: i64,
    connection_unreleased: u32,
    connection_send_window: i64,
    peer_initial_window: i64,
    peer_max_frame_size: usize,
}

impl ServerConnection {
    /// A connection with `config`; our SETTINGS (and a connection WINDOW_UPDATE when the
    /// window is larger than the default) are already in the output.
    pub fn new(config: Config) -> ServerConnection {
        let mut out = Vec::with_capacity(16 << 10);
        frame::encode_settings(
            &Settings {
                max_concurrent_streams: Some(config.max_concurrent_streams),
                initial_window_size: Some(config.initial_window_size.min(MAX_WINDOW_SIZE)),
                max_frame_size: Some(config.max_frame_size),
                max_header_list_size: Some(config.max_header_list_size),
                ..Settings::default()
            },
            &mut out,
        );
        let connection_window = config.connection_window_size.min(MAX_WINDOW_SIZE);
        if connection_window > 65_535 {
            frame::encode_window_update(0, connection_window - 65_535, &mut out);
        }
        ServerConnection {
            frames: FrameDecoder::new(config.max_frame_size, config.max_header_block),
            phase: Phase::Preface,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            out,
            streams: StreamMap::default(),
            last_stream: 0,
            accept_up_to: MAX_WINDOW_SIZE,
            connection_recv_window: i64::from(connection_window),
            connection_unreleased: 0,
            connection_send_window: 65_535,
            peer_initial_window: 65_535,
            peer_max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            config,
        }
    }

    /// What to write to the socket; clear it once written.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The highest stream the client opened.
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// What may be sent on `stream` now (its window and the connection's).
    pub fn send_capacity(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| {
            s.send_window.min(self.connection_send_window).max(0) as usize
        })
    }

    /// Handles every complete frame in `buf` (consuming it), pushing what happened to
    /// `events`. A connection error ends the connection (GOAWAY is in the output).
    pub fn receive(
        &mut self,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        let result = self.receive_frames(buf, events);
        if let Err(e) = result
            && self.phase != Phase::Failed
        {
            self.phase = Phase::Failed;
            frame::encode_goaway(self.last_stream, e.code, e.reason.as_bytes(), &mut self.out);
        }
        result
    }

    fn receive_frames(
        &mut self,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if self.phase == Phase::Failed {
            return Err(fail(code::PROTOCOL_ERROR, "connection already failed"));
        }
        if self.phase == Phase::Preface {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                return Err(fail(code::PROTOCOL_ERROR, "not the HTTP/2 client preface"));
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            buf.advance(PREFACE.len());
            self.phase = Phase::Settings;
        }
        loop {
            match self.frames.decode(buf) {
                Ok(Some(frame)) => {
                    if self.phase == Phase::Settings {
                        if !matches!(frame, Frame::Settings { ack: false, .. }) {
                            return Err(fail(
                                code::PROTOCOL_ERROR,
                                "the first frame is not SETTINGS",
                            ));
                        }
                        self.phase = Phase::Open;
                    }
                    self.frame(frame, events)?;
                }
                Ok(None) => return Ok(()),
                Err(FrameError {
                    code,
                    stream: Some(stream),
                    ..
                }) => self.stream_error(stream, code, events),
                Err(FrameError { code, reason, .. }) => return Err(fail(code, reason)),
            }
        }
    }

    fn frame(&mut self, frame: Frame, events: &mut Vec<Event>) -> Result<(), ConnectionError> {
        match frame {
            Frame::Headers {
                stream,
                end_stream,
                priority,
                block,
            } => {
                let self_dependent = priority.is_some_and(|p| p.dependency == stream);
                self.headers(stream, end_stream, self_dependent, &block, events)?;
            }
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.data(stream, end_stream, data, flow_len, events)?,
            Frame::RstStream { stream, code } => {
                if stream > self.last_stream {
                    return Err(fail(code::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
                }
                if self.streams.remove(&stream).is_some() {
                    events.push(Event::Reset {
                        stream,
                        code,
                        by_peer: true,
                    });
                }
            }
            Frame::Settings { ack: true, .. } => {}
            Frame::Settings {
                ack: false,
                settings,
            } => {
                self.settings(settings, events)?;
                frame::encode_settings_ack(&mut self.out);
            }
            Frame::Ping {
                ack: false,
                payload,
            } => {
                frame::encode_ping(true, payload, &mut self.out);
                events.push(Event::Ping { payload });
            }
            Frame::Ping { ack: true, payload } => events.push(Event::PingAck { payload }),
            Frame::GoAway {
                last_stream,
                code,
                debug,
            } => events.push(Event::GoAway {
                last_stream,
                code,
                debug,
            }),
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                self.connection_send_window += i64::from(increment);
                if self.connection_send_window > i64::from(MAX_WINDOW_SIZE) {
                    return Err(fail(
                        code::FLOW_CONTROL_ERROR,
                        "connection window above 2^31-1",
                    ));
                }
                events.push(Event::WindowUpdate { stream: 0 });
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream > self.last_stream {
                    return Err(fail(
                        code::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
                let overflow = self.streams.get_mut(&stream).map(|s| {
                    s.send_window += i64::from(increment);
                    s.send_window > i64::from(MAX_WINDOW_SIZE)
                });
                match overflow {
                    Some(true) => self.stream_error(stream, code::FLOW_CONTROL_ERROR, events),
                    Some(false) => events.push(Event::WindowUpdate { stream }),
                    None => {}
                }
            }
            Frame::PushPromise { .. } => {
                return Err(fail(code::PROTOCOL_ERROR, "PUSH_PROMISE from a client"));
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    fn headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        self_dependent: bool,
        block: &Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if stream.is_multiple_of(2) {
            return Err(fail(
                code::PROTOCOL_ERROR,
                "a client stream with an even id",
            ));
        }
        // The block is decoded whatever becomes of the stream: the table must follow.
        let mut fields = Vec::new();
        let decoded = self
            .decoder
            .decode(block, self.config.max_header_list_size as usize, |f| {
                fields.push(f)
            })
            .map_err(|_| fail(code::COMPRESSION_ERROR, "header block does not decode"))?;
        if let Some(s) = self.streams.get(&stream) {
            // Trailers: END_STREAM, no pseudo-header, and the data content-length announced.
            let verdict = if s.recv_closed {
                Err(code::STREAM_CLOSED)
            } else if !end_stream
                || self_dependent
                || decoded.too_large
                || check_trailers(&fields).is_err()
                || s.content_length.is_some_and(|n| n != s.received)
            {
                Err(code::PROTOCOL_ERROR)
            } else {
                Ok(())
            };
            match verdict {
                Err(error) => self.stream_error(stream, error, events),
                Ok(()) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.recv_closed = true;
                    }
                    events.push(Event::Trailers { stream, fields });
                    self.close_if_done(stream);
                }
            }
            return Ok(());
        }
        if stream <= self.last_stream {
            return Err(fail(code::STREAM_CLOSED, "HEADERS on a closed stream"));
        }
        self.last_stream = stream;
        if stream > self.accept_up_to {
            // After our GOAWAY: not processed (the client retries elsewhere).
            return Ok(());
        }
        if self.streams.len() >= self.config.max_concurrent_streams as usize {
            frame::encode_rst_stream(stream, code::REFUSED_STREAM, &mut self.out);
            return Ok(());
        }
        if self_dependent {
            frame::encode_rst_stream(stream, code::PROTOCOL_ERROR, &mut self.out);
            return Ok(());
        }
        let content_length = if decoded.too_large {
            None
        } else {
            match check_request(&fields) {
                Ok(length) => length,
                Err(()) => {
                    frame::encode_rst_stream(stream, code::PROTOCOL_ERROR, &mut self.out);
                    return Ok(());
                }
            }
        };
        if end_stream && content_length.is_some_and(|n| n != 0) {
            frame::encode_rst_stream(stream, code::PROTOCOL_ERROR, &mut self.out);
            return Ok(());
        }
        self.streams.insert(
            stream,
            Stream {
                recv_closed: end_stream,
                send_closed: false,
                recv_window: i64::from(self.config.initial_window_size),
                unreleased: 0,
                send_window: self.peer_initial_window,
                content_length,
                received: 0,
            },
        );
        events.push(if decoded.too_large {
            Event::HeadersTooLarge { stream }
        } else {
            Event::Request {
                stream,
                fields,
                end_stream,
            }
        });
        Ok(())
    }

    fn data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: Bytes,
        flow_len: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        let flow = i64::from(flow_len);
        if flow > self.connection_recv_window {
            return Err(fail(
                code::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            ));
        }
        self.connection_recv_window -= flow;
        if stream > self.last_stream {
            return Err(fail(code::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        // Padding, and whatever is not delivered, is credited back at once.
        let delivered = data.len() as u32;
        let Some(s) = self.streams.get_mut(&stream) else {
            self.credit_connection(flow_len);
            frame::encode_rst_stream(stream, code::STREAM_CLOSED, &mut self.out);
            return Ok(());
        };
        if s.recv_closed {
            self.credit_connection(flow_len);
            self.stream_error(stream, code::STREAM_CLOSED, events);
            return Ok(());
        }
        if flow > s.recv_window {
            self.credit_connection(flow_len);
            self.stream_error(stream, code::FLOW_CONTROL_ERROR, events);
            return Ok(());
        }
        s.recv_window -= flow;
        s.received += u64::from(delivered);
        let over = s.content_length.is_some_and(|n| s.received > n);
        let short = end_stream && s.content_length.is_some_and(|n| s.received != n);
        if over || short {
            self.credit_connection(flow_len);
            self.stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        }
        s.recv_closed = end_stream;
        let padding = flow_len - delivered;
        if padding > 0 {
            self.release(stream, padding as usize);
        }
        events.push(Event::Data {
            stream,
            data,
            end_stream,
        });
        self.close_if_done(stream);
        Ok(())
    }

    fn settings(
        &mut self,
        settings: Settings,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if let Some(window) = settings.initial_window_size {
            let delta = i64::from(window) - self.peer_initial_window;
            self.peer_initial_window = i64::from(window);
            for s in self.streams.values_mut() {
                s.send_window += delta;
                if s.send_window > i64::from(MAX_WINDOW_SIZE) {
                    return Err(fail(
                        code::FLOW_CONTROL_ERROR,
                        "a stream window above 2^31-1",
                    ));
                }
            }
            if delta > 0 {
                events.push(Event::WindowUpdate { stream: 0 });
            }
        }
        if let Some(size) = settings.max_frame_size {
            self.peer_max_frame_size = size as usize;
        }
        if let Some(size) = settings.header_table_size {
            self.encoder.set_peer_table_size(size as usize);
        }
        Ok(())
    }

    /// Resets `stream` for breaking a rule, and reports it if it was open.
    fn stream_error(&mut self, stream: u32, code: u32, events: &mut Vec<Event>) {
        frame::encode_rst_stream(stream, code, &mut self.out);
        if self.streams.remove(&stream).is_some() {
            events.push(Event::Reset {
                stream,
                code,
                by_peer: false,
            });
        }
    }

    fn close_if_done(&mut self, stream: u32) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| s.recv_closed && s.send_closed)
        {
            self.streams.remove(&stream);
        }
    }

    fn credit_connection(&mut self, n: u32) {
        self.connection_unreleased += n;
        let window = self.config.connection_window_size.min(MAX_WINDOW_SIZE);
        if self.connection_unreleased >= window / 2 {
            frame::encode_window_update(0, self.connection_unreleased, &mut self.out);
            self.connection_recv_window += i64::from(self.connection_unreleased);
            self.connection_unreleased = 0;
        }
    }

    /// The server consumed `n` bytes of `stream`'s data: they are credited back to the
    /// client (WINDOW_UPDATE once half a window is consumed).
    pub fn release(&mut self, stream: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.credit_connection(n);
        let half = self.config.initial_window_size / 2;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.unreleased += n;
            if s.unreleased >= half && !s.recv_closed {
                frame::encode_window_update(stream, s.unreleased, &mut self.out);
                s.recv_window += i64::from(s.unreleased);
                s.unreleased = 0;
            }
        }
    }

    /// Sends a header block on `stream`: the response headers, or with `end_stream` the
    /// trailers (or a Trailers-Only response). Does nothing on a stream that is gone.
    pub fn send_headers(&mut self, stream: u32, fields: &[(&[u8], &[u8])], end_stream: bool) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.send_closed {
            return;
        }
        s.send_closed = end_stream;
        let mut block = Vec::new();
        self.encoder.encode(
            fields.iter().map(|(n, v)| {
                // Values that change per response are not worth a table entry.
                let indexing = if *n == b"grpc-message" || *n == b"date" {
                    Indexing::Without
                } else {
                    Indexing::Incremental
                };
                (*n, *v, indexing)
            }),
            &mut block,
        );
        frame::encode_headers(
            stream,
            &block,
            end_stream,
            self.peer_max_frame_size,
            &mut self.out,
        );
        self.close_if_done(stream);
    }

    /// Sends as much of `data` on `stream` as the windows allow (taking it from the front
    /// of `data`), with END_STREAM after the last byte when `end_stream`. Returns whether all
    /// of it went; the rest waits for an [`Event::WindowUpdate`].
    pub fn send_data(&mut self, stream: u32, data: &mut Bytes, end_stream: bool) -> bool {
        let Some(s) = self.streams.get_mut(&stream) else {
            return false;
        };
        if s.send_closed {
            return false;
        }
        loop {
            let allowed = s
                .send_window
                .min(self.connection_send_window)
                .min(self.peer_max_frame_size as i64)
                .max(0) as usize;
            if allowed == 0 && !data.is_empty() {
                return false;
            }
            let chunk = data.split_to(allowed.min(data.len()));
            let last = data.is_empty();
            frame::encode_data_header(stream, chunk.len(), end_stream && last, &mut self.out);
            self.out.extend_from_slice(&chunk);
            s.send_window -= chunk.len() as i64;
            self.connection_send_window -= chunk.len() as i64;
            if last {
                s.send_closed = end_stream;
                self.close_if_done(stream);
                return true;
            }
        }
    }

    /// Resets `stream` (RST_STREAM with `code`); it is gone.
    pub fn reset(&mut self, stream: u32, code: u32) {
        if self.streams.remove(&stream).is_some() {
            frame::encode_rst_stream(stream, code, &mut self.out);
        }
    }

    /// Sends a PING.
    pub fn ping(&mut self, payload: [u8; 8]) {
        frame::encode_ping(false, payload, &mut self.out);
    }

    /// Sends GOAWAY: streams above `last_stream` will not be processed (pass 2^31-1 first
    /// for a graceful shutdown, then the real last stream: gRFC A9).
    pub fn go_away(&mut self, last_stream: u32, code: u32, debug: &[u8]) {
        self.accept_up_to = self.accept_up_to.min(last_stream);
        frame::encode_goaway(last_stream, code, debug, &mut self.out);
    }
}

/// Checks a request's fields (§8.3.1); returns its content-length, if any.
fn check_request(fields: &[Field]) -> Result<Option<u64>, ()> {
    let (mut method, mut scheme, mut path, mut authority) = (None, false, false, false);
    let mut regular = false;
    let mut content_length = None;
    for field in fields {
        if !valid_field(field) {
            return Err(());
        }
        let name = &field.name[..];
        if name.starts_with(b":") {
            if regular {
                return Err(());
            }
            let seen = match name {
                b":method" => method.replace(field.value.clone()).is_some(),
                b":scheme" => std::mem::replace(&mut scheme, true),
                b":path" => {
                    if field.value.is_empty() {
                        return Err(());
                    }
                    std::mem::replace(&mut path, true)
                }
                b":authority" => std::mem::replace(&mut authority, true),
                _ => return Err(()),
            };
            if seen {
                return Err(());
            }
            continue;
        }
        regular = true;
        if connection_specific(name) || (name == b"te" && &field.value[..] != b"trailers") {
            return Err(());
        }
        if name == b"content-length" {
            let n = std::str::from_utf8(&field.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(())?;
            if content_length.replace(n).is_some_and(|m| m != n) {
                return Err(());
            }
        }
    }
    match method.as_deref() {
        // CONNECT has :authority and neither :scheme nor :path (§8.5).
        Some(b"CONNECT") if authority && !scheme && !path => Ok(content_length),
        Some(b"CONNECT") | None => Err(()),
        Some(_) if scheme && path => Ok(content_length),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests;
