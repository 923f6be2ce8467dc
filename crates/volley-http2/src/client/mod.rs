//! The client side of an HTTP/2 connection, without I/O: bytes in, [`Event`]s and bytes out.
//!
//! [`ClientConnection::new`] writes the preface and our SETTINGS; [`open`] starts a stream
//! with a header block once the server's SETTINGS arrived and its
//! SETTINGS_MAX_CONCURRENT_STREAMS allows; [`receive`] takes what the socket read, enforces
//! stream states, flow control and the response rules, answers SETTINGS and PING, and reports
//! responses, data, trailers and resets. Everything to send accumulates in one output buffer
//! for one write per turn. Server push is refused (SETTINGS_ENABLE_PUSH 0).
//!
//! [`open`]: ClientConnection::open
//! [`receive`]: ClientConnection::receive

use bytes::{Bytes, BytesMut};

use crate::common::{ConnectionError, StreamMap, check_trailers, fail, valid_field};
use crate::frame::{self, Frame, FrameDecoder, FrameError, MAX_WINDOW_SIZE, Settings, code};
use crate::hpack::{self, Field, Indexing};

/// A client connection's own settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE). Default: 65,535.
    pub initial_window_size: u32,
    /// The connection's receive window. Default: 65,535.
    pub connection_window_size: u32,
    /// The largest frame accepted (SETTINGS_MAX_FRAME_SIZE). Default: 16,384.
    pub max_frame_size: u32,
    /// The largest response header list (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one resets
    /// the stream. Default: 16 KiB.
    pub max_header_list_size: u32,
    /// The largest header block kept while CONTINUATION frames arrive; past it the
    /// connection ends with ENHANCE_YOUR_CALM. Default: 64 KiB.
    pub max_header_block: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            initial_window_size: 65_535,
            connection_window_size: 65_535,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: 16 << 10,
            max_header_block: 64 << 10,
        }
    }
}

/// What the server did, for the client to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server's first SETTINGS arrived: streams may be opened.
    Ready,
    /// Response headers (1xx informational ones are skipped); with `end_stream` they are the
    /// whole response (Trailers-Only).
    Response {
        /// The stream.
        stream: u32,
        /// The fields, `:status` first.
        fields: Vec<Field>,
        /// The server's last frame on the stream.
        end_stream: bool,
    },
    /// Response data. Credit it back with [`ClientConnection::release`] once consumed.
    Data {
        /// The stream.
        stream: u32,
        /// The bytes (padding removed).
        data: Bytes,
        /// The server's last frame on the stream.
        end_stream: bool,
    },
    /// The response's trailers (END_STREAM).
    Trailers {
        /// The stream.
        stream: u32,
        /// The fields.
        fields: Vec<Field>,
    },
    /// A stream ended abnormally: the server reset it (`by_peer`), it broke a rule and this
    /// connection reset it, or the server's GOAWAY left it unprocessed (REFUSED_STREAM, safe
    /// to retry). The stream is gone.
    Reset {
        /// The stream.
        stream: u32,
        /// The error code.
        code: u32,
        /// The server sent it (RST_STREAM, or GOAWAY's last stream id).
        by_peer: bool,
    },
    /// The server pinged (the acknowledgement is already written).
    Ping {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The server acknowledged a PING of ours.
    PingAck {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The server is going away: no new stream is opened after this.
    GoAway {
        /// The last stream it may process.
        last_stream: u32,
        /// Error code.
        code: u32,
        /// Debug data.
        debug: Bytes,
    },
    /// The server opened send windows (stream 0: the connection, or every stream after a
    /// SETTINGS change): data held back may go now.
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
    },
}

/// One open stream.
#[derive(Debug)]
struct Stream {
    /// The server sent END_STREAM.
    recv_closed: bool,
    /// We sent END_STREAM.
    send_closed: bool,
    /// The final (non-1xx) response headers came.
    responded: bool,
    recv_window: i64,
    unreleased: u32,
    send_window: i64,
}

/// The client side of one connection.
#[derive(Debug)]
pub struct ClientConnection {
    config: Config,
    failed: bool,
    settled: bool,
    frames: FrameDecoder,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    out: Vec<u8>,
    streams: StreamMap<Stream>,
    next_stream: u32,
    /// The server's GOAWAY: no stream is opened after it.
    gone_away: bool,
    max_streams: usize,
    connection_recv_window: i64,
    connection_unreleased: u32,
    connection_send_window: i64,
    peer_initial_window: i64,
    peer_max_frame_size: usize,
}

impl ClientConnection {
    /// A connection with `config`: the preface, our SETTINGS (push disabled) and a
    /// connection WINDOW_UPDATE (when the window is larger than the default) are in the
    /// output.
    pub fn new(config: Config) -> ClientConnection {
        let mut out = Vec::with_capacity(16 << 10);
        out.extend_from_slice(frame::PREFACE);
        frame::encode_settings(
            &Settings {
                enable_push: Some(false),
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
        ClientConnection {
            frames: FrameDecoder::new(config.max_frame_size, config.max_header_block),
            failed: false,
            settled: false,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            out,
            streams: StreamMap::default(),
            next_stream: 1,
            gone_away: false,
            max_streams: usize::MAX,
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

    /// Whether [`open`](ClientConnection::open) would start a stream now: the server's
    /// SETTINGS came, its stream limit is not reached, it has not gone away, and stream ids
    /// are left.
    pub fn can_open(&self) -> bool {
        self.settled
            && !self.failed
            && !self.gone_away
            && self.streams.len() < self.max_streams
            && self.next_stream <= MAX_WINDOW_SIZE
    }

    /// Whether no stream can ever be opened again (GOAWAY, a failure, or ids used up).
    pub fn is_closing(&self) -> bool {
        self.failed || self.gone_away || self.next_stream > MAX_WINDOW_SIZE
    }

    /// What may be sent on `stream` now (its window and the connection's).
    pub fn send_capacity(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| {
            s.send_window.min(self.connection_send_window).max(0) as usize
        })
    }

    /// Opens a stream with a request's header block (`fields`, pseudo-headers first); with
    /// `end_stream` the request has no body. `None` when [`can_open`] says no.
    ///
    /// [`can_open`]: ClientConnection::can_open
    pub fn open(&mut self, fields: &[(&[u8], &[u8], Indexing)], end_stream: bool) -> Option<u32> {
        if !self.can_open() {
            return None;
        }
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::new();
        self.encoder.encode(fields.iter().copied(), &mut block);
        self.open_encoded(id, &block, end_stream);
        Some(id)
    }

    /// Opens a stream with a header block already encoded by this connection's encoder
    /// state: see [`reusable_block`](ClientConnection::reusable_block).
    pub fn open_with_block(&mut self, block: &[u8], end_stream: bool) -> Option<u32> {
        if !self.can_open() {
            return None;
        }
        let id = self.next_stream;
        self.next_stream += 2;
        self.open_encoded(id, block, end_stream);
        Some(id)
    }

    /// Encodes `fields` for a request the way [`open`](ClientConnection::open) would, and
    /// returns the block when it changed nothing in the HPACK tables: then every later
    /// request with the same fields is these same bytes, for
    /// [`open_with_block`](ClientConnection::open_with_block), until the server changes its
    /// table size. `None` while the tables still change (open with the fields meanwhile).
    pub fn reusable_block(&mut self, fields: &[(&[u8], &[u8], Indexing)]) -> Option<Vec<u8>> {
        let mut probe = self.encoder.clone();
        let before = (probe.table().len(), probe.table().size());
        let mut block = Vec::new();
        probe.encode(fields.iter().copied(), &mut block);
        let unchanged = before == (probe.table().len(), probe.table().size());
        // A block that starts with a table size update is not the steady state either.
        let update = block.first().is_some_and(|b| b & 0xe0 == 0x20);
        (unchanged && !update).then_some(block)
    }

    fn open_encoded(&mut self, id: u32, block: &[u8], end_stream: bool) {
        frame::encode_headers(
            id,
            block,
            end_stream,
            self.peer_max_frame_size,
            &mut self.out,
        );
        self.streams.insert(
            id,
            Stream {
                recv_closed: false,
                send_closed: end_stream,
                responded: false,
                recv_window: i64::from(self.config.initial_window_size),
                unreleased: 0,
                send_window: self.peer_initial_window,
            },
        );
    }

    /// Sends as much of `data` on `stream` as the windows allow (taking it from the front),
    /// with END_STREAM after the last byte when `end_stream`. Returns whether all of it went;
    /// the rest waits for an [`Event::WindowUpdate`].
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

    /// Cancels `stream` (RST_STREAM with `code`); it is gone.
    pub fn reset(&mut self, stream: u32, code: u32) {
        if self.streams.remove(&stream).is_some() {
            frame::encode_rst_stream(stream, code, &mut self.out);
        }
    }

    /// The client consumed `n` bytes of `stream`'s data: they are credited back to the
    /// server (WINDOW_UPDATE once half a window is consumed).
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

    /// Sends a PING.
    pub fn ping(&mut self, payload: [u8; 8]) {
        frame::encode_ping(false, payload, &mut self.out);
    }

    /// Handles every complete frame in `buf` (consuming it), pushing what happened to
    /// `events`. A connection error ends the connection (GOAWAY is in the output).
    pub fn receive(
        &mut self,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if self.failed {
            return Err(fail(code::PROTOCOL_ERROR, "connection already failed"));
        }
        let result = self.receive_frames(buf, events);
        if let Err(e) = result {
            self.failed = true;
            frame::encode_goaway(0, e.code, e.reason.as_bytes(), &mut self.out);
        }
        result
    }

    fn receive_frames(
        &mut self,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        loop {
            match self.frames.decode(buf) {
                Ok(Some(frame)) => {
                    if !self.settled && !matches!(frame, Frame::Settings { ack: false, .. }) {
                        return Err(fail(
                            code::PROTOCOL_ERROR,
                            "the first frame is not SETTINGS",
                        ));
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

    /// Whether `stream` is one this client opened (now or before).
    fn ours(&self, stream: u32) -> bool {
        stream % 2 == 1 && stream < self.next_stream
    }

    fn frame(&mut self, frame: Frame, events: &mut Vec<Event>) -> Result<(), ConnectionError> {
        match frame {
            Frame::Headers {
                stream,
                end_stream,
                block,
                ..
            } => self.headers(stream, end_stream, &block, events)?,
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_len,
            } => self.data(stream, end_stream, data, flow_len, events)?,
            Frame::RstStream { stream, code } => {
                if !self.ours(stream) {
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
                if !self.settled {
                    self.settled = true;
                    events.push(Event::Ready);
                }
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
            } => {
                self.gone_away = true;
                events.push(Event::GoAway {
                    last_stream,
                    code,
                    debug,
                });
                // Streams above the last one were not processed: safe to retry elsewhere.
                let mut refused: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|id| *id > last_stream)
                    .collect();
                refused.sort_unstable();
                for stream in refused {
                    self.streams.remove(&stream);
                    events.push(Event::Reset {
                        stream,
                        code: code::REFUSED_STREAM,
                        by_peer: true,
                    });
                }
            }
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
                if !self.ours(stream) {
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
                return Err(fail(
                    code::PROTOCOL_ERROR,
                    "PUSH_PROMISE with push disabled",
                ));
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    fn headers(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        let mut fields = Vec::new();
        let decoded = self
            .decoder
            .decode(block, self.config.max_header_list_size as usize, |f| {
                fields.push(f)
            })
            .map_err(|_| fail(code::COMPRESSION_ERROR, "header block does not decode"))?;
        if !self.ours(stream) {
            return Err(fail(
                code::PROTOCOL_ERROR,
                "HEADERS on a stream the client did not open",
            ));
        }
        let Some(s) = self.streams.get(&stream) else {
            // Reset by us meanwhile: ignored.
            return Ok(());
        };
        if s.recv_closed {
            self.stream_error(stream, code::STREAM_CLOSED, events);
            return Ok(());
        }
        if decoded.too_large {
            self.stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        }
        if s.responded {
            // Trailers.
            if !end_stream || check_trailers(&fields).is_err() {
                self.stream_error(stream, code::PROTOCOL_ERROR, events);
                return Ok(());
            }
            self.mark_received_end(stream);
            events.push(Event::Trailers { stream, fields });
            self.close_if_done(stream);
            return Ok(());
        }
        let Some(status) = check_response(&fields) else {
            self.stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        };
        if (100..200).contains(&status) {
            // Informational: the final headers are still to come.
            if end_stream {
                self.stream_error(stream, code::PROTOCOL_ERROR, events);
            }
            return Ok(());
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.responded = true;
        }
        if end_stream {
            self.mark_received_end(stream);
        }
        events.push(Event::Response {
            stream,
            fields,
            end_stream,
        });
        self.close_if_done(stream);
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
        if !self.ours(stream) {
            return Err(fail(
                code::PROTOCOL_ERROR,
                "DATA on a stream the client did not open",
            ));
        }
        let delivered = data.len() as u32;
        let verdict = match self.streams.get(&stream) {
            None => None,
            Some(s) if s.recv_closed => Some(Err(code::STREAM_CLOSED)),
            Some(s) if !s.responded => Some(Err(code::PROTOCOL_ERROR)),
            Some(s) if flow > s.recv_window => Some(Err(code::FLOW_CONTROL_ERROR)),
            Some(_) => Some(Ok(())),
        };
        match verdict {
            None => {
                // A stream we reset: its bytes still count for the connection.
                self.credit_connection(flow_len);
            }
            Some(Err(error)) => {
                self.credit_connection(flow_len);
                self.stream_error(stream, error, events);
            }
            Some(Ok(())) => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.recv_window -= flow;
                }
                if end_stream {
                    self.mark_received_end(stream);
                }
                if flow_len > delivered {
                    self.release(stream, (flow_len - delivered) as usize);
                }
                events.push(Event::Data {
                    stream,
                    data,
                    end_stream,
                });
                self.close_if_done(stream);
            }
        }
        Ok(())
    }

    fn settings(
        &mut self,
        settings: Settings,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if let Some(n) = settings.max_concurrent_streams {
            self.max_streams = n as usize;
        }
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
        if settings.enable_push == Some(true) {
            // A server may not send this (RFC 9113 §6.5.2).
            return Err(fail(
                code::PROTOCOL_ERROR,
                "SETTINGS_ENABLE_PUSH from a server",
            ));
        }
        Ok(())
    }

    fn mark_received_end(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.recv_closed = true;
        }
    }

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
}

/// Checks a response's fields: `:status` (three digits) first and only once, no other
/// pseudo-header, valid names and values (§8.3.2). Returns the status.
fn check_response(fields: &[Field]) -> Option<u16> {
    let (first, rest) = fields.split_first()?;
    if &first.name[..] != b":status" || first.value.len() != 3 {
        return None;
    }
    let status = std::str::from_utf8(&first.value)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if rest
        .iter()
        .any(|f| !valid_field(f) || f.name.starts_with(b":"))
    {
        return None;
    }
    Some(status)
}

#[cfg(test)]
mod tests;
