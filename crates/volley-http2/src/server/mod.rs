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

use crate::common::{ConnectionError, check_trailers, connection_specific, fail, valid_field};
use crate::frame::{
    self, Frame, FrameDecoder, FrameError, MAX_WINDOW_SIZE, PREFACE, Settings, code,
};
use crate::hpack::{self, Field, Indexing};
pub use crate::streams::Event;
use crate::streams::{ReusableBlock, Streams};

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
    /// How many streams may be reset for breaking a rule (REFUSED_STREAM included) over the
    /// connection's life; past it the connection ends with GOAWAY ENHANCE_YOUR_CALM
    /// `too_many_internal_resets` (h2's rule and limit). Default: 1,024.
    pub max_local_resets: usize,
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
            max_local_resets: 1024,
        }
    }
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
    streams: Streams,
    /// The highest stream the client opened: lower ones not open are closed.
    last_stream: u32,
    /// The most recent ranges of ids a client skipped when it opened a stream (clients
    /// count up by two, so this stays empty for them): HEADERS on one of those is an
    /// unexpected identifier (§5.1.1, PROTOCOL_ERROR), on any other lower id a closed stream
    /// (§5.1, STREAM_CLOSED). Kept to [`SKIPPED_KEPT`] ranges.
    skipped: Vec<(u32, u32)>,
    /// After our GOAWAY: streams above this are ignored.
    accept_up_to: u32,
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
        ServerConnection {
            frames: FrameDecoder::new(config.max_frame_size, config.max_header_block),
            phase: Phase::Preface,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            streams: Streams::new(
                config.initial_window_size,
                config.connection_window_size,
                out,
            )
            .with_max_local_resets(config.max_local_resets),
            last_stream: 0,
            skipped: Vec::new(),
            accept_up_to: MAX_WINDOW_SIZE,
            config,
        }
    }

    /// What to write to the socket; clear it once written.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.streams.out
    }

    /// How many bytes the output holds.
    pub fn output_len(&self) -> usize {
        self.streams.out.len()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.streams.map.len()
    }

    /// Whether `stream` is open (in either direction).
    pub fn is_open(&self, stream: u32) -> bool {
        self.streams.map.contains_key(&stream)
    }

    /// The highest stream the client opened.
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// What may be sent on `stream` now (its window and the connection's).
    pub fn send_capacity(&self, stream: u32) -> usize {
        self.streams.send_capacity(stream)
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
            frame::encode_goaway(
                self.last_stream,
                e.code,
                e.reason.as_bytes(),
                &mut self.streams.out,
            );
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
                        events.push(Event::Ready);
                    }
                    self.frame(frame, events)?;
                }
                Ok(None) => return Ok(()),
                Err(FrameError {
                    code,
                    stream: Some(stream),
                    ..
                }) => self.streams.stream_error(stream, code, events),
                Err(FrameError { code, reason, .. }) => return Err(fail(code, reason)),
            }
            if self.streams.too_many_resets() {
                return Err(fail(code::ENHANCE_YOUR_CALM, "too_many_internal_resets"));
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
                if self.streams.map.remove(&stream).is_some() {
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
                self.streams.peer_settings(&settings, events)?;
                if let Some(size) = settings.header_table_size {
                    self.encoder.set_peer_table_size(size as usize);
                }
                frame::encode_settings_ack(&mut self.streams.out);
            }
            Frame::Ping {
                ack: false,
                payload,
            } => {
                frame::encode_ping(true, payload, &mut self.streams.out);
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
            Frame::WindowUpdate { stream, increment } => {
                if stream > self.last_stream {
                    return Err(fail(
                        code::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
                self.streams.window_update(stream, increment, events)?;
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
        let mut fields = Vec::with_capacity(16);
        let decoded = self
            .decoder
            .decode(block, self.config.max_header_list_size as usize, |f| {
                fields.push(f)
            })
            .map_err(|_| fail(code::COMPRESSION_ERROR, "header block does not decode"))?;
        if let Some(s) = self.streams.map.get(&stream) {
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
                Err(error) => self.streams.stream_error(stream, error, events),
                Ok(()) => {
                    if let Some(s) = self.streams.map.get_mut(&stream) {
                        s.recv_closed = true;
                    }
                    events.push(Event::Trailers { stream, fields });
                    self.streams.close_if_done(stream);
                }
            }
            return Ok(());
        }
        if stream <= self.last_stream {
            if self
                .skipped
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&stream))
            {
                return Err(fail(
                    code::PROTOCOL_ERROR,
                    "a stream id lower than one already used",
                ));
            }
            return Err(fail(code::STREAM_CLOSED, "HEADERS on a closed stream"));
        }
        let next = if self.last_stream == 0 {
            1
        } else {
            self.last_stream + 2
        };
        if stream > next {
            if self.skipped.len() == SKIPPED_KEPT {
                self.skipped.remove(0);
            }
            self.skipped.push((next, stream - 2));
        }
        self.last_stream = stream;
        if stream > self.accept_up_to {
            // After our GOAWAY: not processed (the client retries elsewhere).
            return Ok(());
        }
        if self.streams.map.len() >= self.config.max_concurrent_streams as usize {
            self.streams
                .stream_error(stream, code::REFUSED_STREAM, events);
            return Ok(());
        }
        if self_dependent {
            self.streams
                .stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        }
        let content_length = if decoded.too_large {
            None
        } else {
            match check_request(&fields) {
                Ok(length) => length,
                Err(()) => {
                    self.streams
                        .stream_error(stream, code::PROTOCOL_ERROR, events);
                    return Ok(());
                }
            }
        };
        if end_stream && content_length.is_some_and(|n| n != 0) {
            self.streams
                .stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        }
        self.streams.open(stream, end_stream, false).content_length = content_length;
        events.push(if decoded.too_large {
            Event::HeadersTooLarge { stream }
        } else {
            Event::Headers {
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
        self.streams.charge_connection(flow_len)?;
        if stream > self.last_stream {
            return Err(fail(code::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        let delivered = data.len() as u32;
        let verdict = match self.streams.map.get(&stream) {
            // Closed: its bytes still count for the connection.
            None => Err(code::STREAM_CLOSED),
            Some(s) if s.recv_closed => Err(code::STREAM_CLOSED),
            Some(s) => {
                let received = s.received + u64::from(delivered);
                let over = s.content_length.is_some_and(|n| received > n);
                let short = end_stream && s.content_length.is_some_and(|n| received != n);
                if over || short {
                    Err(code::PROTOCOL_ERROR)
                } else if !self.streams.charge_stream(stream, flow_len) {
                    Err(code::FLOW_CONTROL_ERROR)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(error) = verdict {
            self.streams.credit_connection(flow_len);
            self.streams.stream_error(stream, error, events);
            return Ok(());
        }
        if let Some(s) = self.streams.map.get_mut(&stream) {
            s.received += u64::from(delivered);
            s.recv_closed = end_stream;
        }
        // Padding is credited back at once.
        if flow_len > delivered {
            self.streams
                .release(stream, (flow_len - delivered) as usize);
        }
        events.push(Event::Data {
            stream,
            data,
            end_stream,
        });
        self.streams.close_if_done(stream);
        Ok(())
    }

    /// The server consumed `n` bytes of `stream`'s data: they are credited back to the
    /// client (WINDOW_UPDATE once half a window is consumed).
    pub fn release(&mut self, stream: u32, n: usize) {
        self.streams.release(stream, n);
    }

    /// Sends a header block on `stream`: the response headers, or with `end_stream` the
    /// trailers (or a Trailers-Only response). Does nothing on a stream that is gone.
    pub fn send_headers(&mut self, stream: u32, fields: &[(&[u8], &[u8])], end_stream: bool) {
        if !self.start_block(stream, end_stream) {
            return;
        }
        let mut block = Vec::new();
        self.encoder.encode(
            fields.iter().map(|(n, v)| (*n, *v, indexing(n))),
            &mut block,
        );
        self.finish_block(stream, &block, end_stream);
    }

    /// The block `fields` encode to once they no longer change the HPACK tables (as
    /// [`send_headers`](ServerConnection::send_headers) encodes them), for
    /// [`send_block`](ServerConnection::send_block): gRPC's `:status: 200` and
    /// `content-type` head and its `grpc-status: 0` trailers are the same bytes response
    /// after response. `None` while they still change the tables (send them with
    /// `send_headers` meanwhile).
    pub fn reusable_block(&self, fields: &[(&[u8], &[u8])]) -> Option<ReusableBlock> {
        ReusableBlock::probe(
            &self.encoder,
            fields.iter().map(|(n, v)| (*n, *v, indexing(n))),
        )
    }

    /// Sends a block from [`reusable_block`](ServerConnection::reusable_block) on `stream`.
    /// `false` when it no longer holds (the HPACK table changed since: get a new one) or the
    /// stream is gone; nothing is sent then.
    pub fn send_block(&mut self, stream: u32, block: &ReusableBlock, end_stream: bool) -> bool {
        if !block.holds(&self.encoder) || !self.start_block(stream, end_stream) {
            return false;
        }
        self.finish_block(stream, block.bytes(), end_stream);
        true
    }

    /// Marks `stream` as ending with this block when `end_stream`; whether a block may go.
    fn start_block(&mut self, stream: u32, end_stream: bool) -> bool {
        match self.streams.map.get_mut(&stream) {
            Some(s) if !s.send_closed => {
                s.send_closed = end_stream;
                true
            }
            _ => false,
        }
    }

    fn finish_block(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        frame::encode_headers(
            stream,
            block,
            end_stream,
            self.streams.peer_max_frame_size,
            &mut self.streams.out,
        );
        self.streams.close_if_done(stream);
    }

    /// Sends as much of `data` on `stream` as the windows allow (taking it from the front
    /// of `data`), with END_STREAM after the last byte when `end_stream`. Returns whether all
    /// of it went; the rest waits for an [`Event::WindowUpdate`].
    pub fn send_data(&mut self, stream: u32, data: &mut Bytes, end_stream: bool) -> bool {
        self.streams.send_data(stream, data, end_stream)
    }

    /// Resets `stream` (RST_STREAM with `code`); it is gone.
    pub fn reset(&mut self, stream: u32, code: u32) {
        self.streams.reset(stream, code);
    }

    /// Sends a PING.
    pub fn ping(&mut self, payload: [u8; 8]) {
        frame::encode_ping(false, payload, &mut self.streams.out);
    }

    /// Sends GOAWAY: streams above `last_stream` will not be processed (pass 2^31-1 first
    /// for a graceful shutdown, then the real last stream: gRFC A9).
    pub fn go_away(&mut self, last_stream: u32, code: u32, debug: &[u8]) {
        self.accept_up_to = self.accept_up_to.min(last_stream);
        frame::encode_goaway(last_stream, code, debug, &mut self.streams.out);
    }
}

/// How many ranges of skipped stream ids a connection remembers.
const SKIPPED_KEPT: usize = 8;

/// How a response field is kept in the HPACK tables: values that change per response are
/// not worth an entry.
fn indexing(name: &[u8]) -> Indexing {
    if name == b"grpc-message" || name == b"date" {
        Indexing::Without
    } else {
        Indexing::Incremental
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
