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

use crate::common::{ConnectionError, check_trailers, fail, valid_field};
use crate::frame::{self, Frame, FrameDecoder, FrameError, MAX_WINDOW_SIZE, Settings, code};
use crate::hpack::{self, Field, Indexing};
pub use crate::streams::Event;
use crate::streams::{ReusableBlock, Streams};

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

/// The client side of one connection.
#[derive(Debug)]
pub struct ClientConnection {
    config: Config,
    failed: bool,
    settled: bool,
    frames: FrameDecoder,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    streams: Streams,
    next_stream: u32,
    /// The server's GOAWAY: no stream is opened after it.
    gone_away: bool,
    max_streams: usize,
    /// The last request's header block, kept for its capacity.
    block: Vec<u8>,
    /// The encoding of the fields requests start with (see `Encoder::encode_with_memo`).
    memo: hpack::PrefixMemo,
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
        ClientConnection {
            frames: FrameDecoder::new(config.max_frame_size, config.max_header_block),
            failed: false,
            settled: false,
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            streams: Streams::new(
                config.initial_window_size,
                config.connection_window_size,
                out,
            ),
            next_stream: 1,
            gone_away: false,
            max_streams: usize::MAX,
            block: Vec::new(),
            memo: hpack::PrefixMemo::default(),
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

    /// Whether [`open`](ClientConnection::open) would start a stream now: the server's
    /// SETTINGS came, its stream limit is not reached, it has not gone away, and stream ids
    /// are left.
    pub fn can_open(&self) -> bool {
        self.settled
            && !self.failed
            && !self.gone_away
            && self.streams.map.len() < self.max_streams
            && self.next_stream <= MAX_WINDOW_SIZE
    }

    /// Whether no stream can ever be opened again (GOAWAY, a failure, or ids used up).
    pub fn is_closing(&self) -> bool {
        self.failed || self.gone_away || self.next_stream > MAX_WINDOW_SIZE
    }

    /// What may be sent on `stream` now (its window and the connection's).
    pub fn send_capacity(&self, stream: u32) -> usize {
        self.streams.send_capacity(stream)
    }

    /// Opens a stream with a request's header block (`fields`, pseudo-headers first); with
    /// `end_stream` the request has no body. `None` when [`can_open`] says no.
    ///
    /// [`can_open`]: ClientConnection::can_open
    pub fn open<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Indexing)>,
        end_stream: bool,
    ) -> Option<u32> {
        if !self.can_open() {
            return None;
        }
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        self.encoder
            .encode_with_memo(fields, &mut block, &mut self.memo);
        self.open_encoded(id, &block, end_stream);
        // Kept for the next request unless a huge head grew it.
        if block.capacity() <= 64 << 10 {
            self.block = block;
        }
        Some(id)
    }

    /// Opens a stream with a block from [`reusable_block`](ClientConnection::reusable_block).
    /// `None` when no stream can be opened now, or when the block no longer holds (the
    /// HPACK table changed since: get a new one).
    pub fn open_with_block(&mut self, block: &ReusableBlock, end_stream: bool) -> Option<u32> {
        if !self.can_open() || !block.holds(&self.encoder) {
            return None;
        }
        let id = self.next_stream;
        self.next_stream += 2;
        self.open_encoded(id, block.bytes(), end_stream);
        Some(id)
    }

    /// Encodes `fields` for a request the way [`open`](ClientConnection::open) would, and
    /// returns the block when it changes nothing in the HPACK tables: then every request with
    /// the same fields is these same bytes, for
    /// [`open_with_block`](ClientConnection::open_with_block), for as long as the table does
    /// not change (another block adding entries, or the server changing the table size,
    /// invalidates it). `None` while the fields still change the table (open with the fields
    /// meanwhile).
    pub fn reusable_block(&mut self, fields: &[(&[u8], &[u8], Indexing)]) -> Option<ReusableBlock> {
        ReusableBlock::probe(&self.encoder, fields.iter().copied())
    }

    fn open_encoded(&mut self, id: u32, block: &[u8], end_stream: bool) {
        frame::encode_headers(
            id,
            block,
            end_stream,
            self.streams.peer_max_frame_size,
            &mut self.streams.out,
        );
        self.streams.open(id, false, end_stream);
    }

    /// Sends as much of `data` on `stream` as the windows allow (taking it from the front),
    /// with END_STREAM after the last byte when `end_stream`. Returns whether all of it went;
    /// the rest waits for an [`Event::WindowUpdate`].
    pub fn send_data(&mut self, stream: u32, data: &mut Bytes, end_stream: bool) -> bool {
        self.streams.send_data(stream, data, end_stream)
    }

    /// Cancels `stream` (RST_STREAM with `code`); it is gone.
    pub fn reset(&mut self, stream: u32, code: u32) {
        self.streams.reset(stream, code);
    }

    /// The client consumed `n` bytes of `stream`'s data: they are credited back to the
    /// server (WINDOW_UPDATE once half a window is consumed).
    pub fn release(&mut self, stream: u32, n: usize) {
        self.streams.release(stream, n);
    }

    /// Sends a PING.
    pub fn ping(&mut self, payload: [u8; 8]) {
        frame::encode_ping(false, payload, &mut self.streams.out);
    }

    /// Tells the server that this client is going away (GOAWAY with `code` and `debug`;
    /// the last stream id is 0, as a client accepts no pushed streams): no stream is opened
    /// after it.
    pub fn go_away(&mut self, code: u32, debug: &[u8]) {
        self.gone_away = true;
        frame::encode_goaway(0, code, debug, &mut self.streams.out);
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
            frame::encode_goaway(0, e.code, e.reason.as_bytes(), &mut self.streams.out);
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
                }) => self.streams.stream_error(stream, code, events),
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
                self.settings(&settings, events)?;
                frame::encode_settings_ack(&mut self.streams.out);
                if !self.settled {
                    self.settled = true;
                    events.push(Event::Ready);
                }
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
                    .map
                    .keys()
                    .copied()
                    .filter(|id| *id > last_stream)
                    .collect();
                refused.sort_unstable();
                for stream in refused {
                    self.streams.map.remove(&stream);
                    events.push(Event::Reset {
                        stream,
                        code: code::REFUSED_STREAM,
                        by_peer: true,
                    });
                }
            }
            Frame::WindowUpdate { stream, increment } => {
                if stream != 0 && !self.ours(stream) {
                    return Err(fail(
                        code::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
                self.streams.window_update(stream, increment, events)?;
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
        let mut fields = Vec::with_capacity(16);
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
        let Some(s) = self.streams.map.get(&stream) else {
            // Reset by us meanwhile: ignored.
            return Ok(());
        };
        if s.recv_closed {
            self.streams
                .stream_error(stream, code::STREAM_CLOSED, events);
            return Ok(());
        }
        if decoded.too_large {
            self.streams
                .stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        }
        if s.responded {
            // Trailers.
            if !end_stream || check_trailers(&fields).is_err() {
                self.streams
                    .stream_error(stream, code::PROTOCOL_ERROR, events);
                return Ok(());
            }
            self.mark_received_end(stream);
            events.push(Event::Trailers { stream, fields });
            self.streams.close_if_done(stream);
            return Ok(());
        }
        let Some(status) = check_response(&fields) else {
            self.streams
                .stream_error(stream, code::PROTOCOL_ERROR, events);
            return Ok(());
        };
        if (100..200).contains(&status) {
            // Informational: the final headers are still to come.
            if end_stream {
                self.streams
                    .stream_error(stream, code::PROTOCOL_ERROR, events);
            }
            return Ok(());
        }
        if let Some(s) = self.streams.map.get_mut(&stream) {
            s.responded = true;
        }
        if end_stream {
            self.mark_received_end(stream);
        }
        events.push(Event::Headers {
            stream,
            fields,
            end_stream,
        });
        self.streams.close_if_done(stream);
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
        if !self.ours(stream) {
            return Err(fail(
                code::PROTOCOL_ERROR,
                "DATA on a stream the client did not open",
            ));
        }
        let delivered = data.len() as u32;
        let verdict = match self.streams.map.get(&stream) {
            // A stream we reset: its bytes still count for the connection.
            None => Err(None),
            Some(s) if s.recv_closed => Err(Some(code::STREAM_CLOSED)),
            Some(s) if !s.responded => Err(Some(code::PROTOCOL_ERROR)),
            Some(_) => Ok(()),
        };
        let verdict = verdict.and_then(|()| {
            if self.streams.charge_stream(stream, flow_len) {
                Ok(())
            } else {
                Err(Some(code::FLOW_CONTROL_ERROR))
            }
        });
        if let Err(error) = verdict {
            self.streams.credit_connection(flow_len);
            if let Some(error) = error {
                self.streams.stream_error(stream, error, events);
            }
            return Ok(());
        }
        if end_stream {
            self.mark_received_end(stream);
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

    fn settings(
        &mut self,
        settings: &Settings,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if settings.enable_push == Some(true) {
            // A server may not send this (RFC 9113 §6.5.2).
            return Err(fail(
                code::PROTOCOL_ERROR,
                "SETTINGS_ENABLE_PUSH from a server",
            ));
        }
        if let Some(n) = settings.max_concurrent_streams {
            self.max_streams = n as usize;
        }
        if let Some(size) = settings.header_table_size {
            self.encoder.set_peer_table_size(size as usize);
        }
        self.streams.peer_settings(settings, events)
    }

    fn mark_received_end(&mut self, stream: u32) {
        if let Some(s) = self.streams.map.get_mut(&stream) {
            s.recv_closed = true;
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
