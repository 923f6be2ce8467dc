//! What both sides of a connection keep per stream and per connection: END_STREAM in each
//! direction, the flow-control windows both ways (RFC 9113 §5.2, §6.9), the output buffer,
//! and the [`Event`]s they report.

use bytes::Bytes;

use crate::common::{ConnectionError, StreamMap, fail};
use crate::frame::{self, MAX_WINDOW_SIZE, Settings, code};
use crate::hpack::{Encoder, Field, Indexing};

/// A header block that can be sent again as it is: encoded when it no longer changed the
/// HPACK tables, and valid for as long as the table does not change (see
/// `ClientConnection::reusable_block`, `ServerConnection::reusable_block`). gRPC sends the
/// same request headers, response headers and `grpc-status: 0` trailers call after call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReusableBlock {
    bytes: Vec<u8>,
    /// The encoder's generation it was made at.
    generation: u64,
}

impl ReusableBlock {
    /// The block `fields` encode to when that changes nothing in `encoder`'s table (the
    /// steady state); `None` while it still would (or a size update is due).
    pub(crate) fn probe<'a>(
        encoder: &Encoder,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Indexing)>,
    ) -> Option<ReusableBlock> {
        let generation = encoder.generation();
        let mut probe = encoder.clone();
        let mut bytes = Vec::new();
        probe.encode(fields, &mut bytes);
        (probe.generation() == generation).then_some(ReusableBlock { bytes, generation })
    }

    /// Whether the block still means its fields to `encoder`'s peer.
    pub(crate) fn holds(&self, encoder: &Encoder) -> bool {
        self.generation == encoder.generation()
    }

    /// The encoded block.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What the peer did, for the connection's owner to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's first SETTINGS arrived (a client may open streams from now on).
    Ready,
    /// A header block that starts a message: a request (on a server; checked against
    /// RFC 9113 §8.3.1) or the final response headers (on a client; `:status` first, 1xx
    /// informational ones skipped). With `end_stream` it is the whole message (a response's
    /// Trailers-Only form).
    Headers {
        /// The stream.
        stream: u32,
        /// The fields, pseudo-headers first.
        fields: Vec<Field>,
        /// The peer's last frame on the stream.
        end_stream: bool,
    },
    /// A request whose header list was above SETTINGS_MAX_HEADER_LIST_SIZE (server side):
    /// the stream is open so that the server can answer it (HTTP 431, or a gRPC error).
    HeadersTooLarge {
        /// The stream.
        stream: u32,
    },
    /// Data. Credit it back with `release` once consumed.
    Data {
        /// The stream.
        stream: u32,
        /// The bytes (padding removed).
        data: Bytes,
        /// The peer's last frame on the stream.
        end_stream: bool,
    },
    /// Trailers (END_STREAM).
    Trailers {
        /// The stream.
        stream: u32,
        /// The fields.
        fields: Vec<Field>,
    },
    /// A stream ended abnormally: the peer reset it (`by_peer`; on a client also the streams
    /// a GOAWAY left unprocessed, as REFUSED_STREAM, safe to retry), or it broke a rule and
    /// this connection reset it. The stream is gone.
    Reset {
        /// The stream.
        stream: u32,
        /// The error code.
        code: u32,
        /// The peer ended it.
        by_peer: bool,
    },
    /// The peer pinged (the acknowledgement is already written).
    Ping {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The peer acknowledged a PING of ours.
    PingAck {
        /// Opaque data.
        payload: [u8; 8],
    },
    /// The peer is going away.
    GoAway {
        /// The last stream it may have processed (or, from a server, may process).
        last_stream: u32,
        /// Error code.
        code: u32,
        /// Debug data.
        debug: Bytes,
    },
    /// The peer opened send windows (stream 0: the connection, or every stream after a
    /// SETTINGS change): data held back may go now.
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
    },
}

/// One open stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The peer sent END_STREAM.
    pub(crate) recv_closed: bool,
    /// We sent END_STREAM.
    pub(crate) send_closed: bool,
    /// What the peer may still send before we credit more.
    pub(crate) recv_window: i64,
    /// Consumed bytes not yet credited back.
    unreleased: u32,
    /// What we may still send.
    send_window: i64,
    /// Server side: the request's content-length, when given, and the data received.
    pub(crate) content_length: Option<u64>,
    pub(crate) received: u64,
    /// Client side: the final response headers came.
    pub(crate) responded: bool,
}

/// The streams of a connection and its windows.
#[derive(Debug)]
pub(crate) struct Streams {
    /// Everything to write, for one write per turn.
    pub(crate) out: Vec<u8>,
    pub(crate) map: StreamMap<Stream>,
    /// Our settings: each stream's receive window and the connection's.
    initial_window: u32,
    connection_window: u32,
    connection_recv_window: i64,
    connection_unreleased: u32,
    connection_send_window: i64,
    peer_initial_window: i64,
    pub(crate) peer_max_frame_size: usize,
    /// Streams reset for breaking a rule (REFUSED_STREAM included), and how many may be:
    /// past that the peer is abusing the connection (`too_many_internal_resets`, as h2).
    local_resets: usize,
    max_local_resets: usize,
}

impl Streams {
    /// Streams with our windows (`initial_window` per stream, `connection_window` for the
    /// connection, both at most 2^31-1); a connection WINDOW_UPDATE goes out when ours is
    /// above the default.
    pub(crate) fn new(initial_window: u32, connection_window: u32, out: Vec<u8>) -> Streams {
        let mut streams = Streams {
            out,
            map: StreamMap::default(),
            initial_window: initial_window.min(MAX_WINDOW_SIZE),
            connection_window: connection_window.min(MAX_WINDOW_SIZE),
            connection_recv_window: i64::from(connection_window.min(MAX_WINDOW_SIZE)),
            connection_unreleased: 0,
            connection_send_window: 65_535,
            peer_initial_window: 65_535,
            peer_max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            local_resets: 0,
            max_local_resets: usize::MAX,
        };
        if streams.connection_window > 65_535 {
            frame::encode_window_update(0, streams.connection_window - 65_535, &mut streams.out);
        }
        streams
    }

    /// Limits the streams reset for breaking rules (default: no limit).
    pub(crate) fn with_max_local_resets(mut self, max: usize) -> Streams {
        self.max_local_resets = max;
        self
    }

    /// Opens a stream.
    pub(crate) fn open(&mut self, id: u32, recv_closed: bool, send_closed: bool) -> &mut Stream {
        self.map.entry(id).or_insert(Stream {
            recv_closed,
            send_closed,
            recv_window: i64::from(self.initial_window),
            unreleased: 0,
            send_window: self.peer_initial_window,
            content_length: None,
            received: 0,
            responded: false,
        })
    }

    /// What may be sent on `stream` now (its window and the connection's).
    pub(crate) fn send_capacity(&self, stream: u32) -> usize {
        self.map.get(&stream).map_or(0, |s| {
            s.send_window.min(self.connection_send_window).max(0) as usize
        })
    }

    /// Sends as much of `data` as the windows allow, END_STREAM after its last byte when
    /// `end_stream`; whether all of it went.
    pub(crate) fn send_data(&mut self, stream: u32, data: &mut Bytes, end_stream: bool) -> bool {
        let Some(s) = self.map.get_mut(&stream) else {
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

    /// `n` bytes of `stream`'s data were consumed: WINDOW_UPDATEs once half a window is.
    pub(crate) fn release(&mut self, stream: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.credit_connection(n);
        let half = self.initial_window / 2;
        if let Some(s) = self.map.get_mut(&stream) {
            s.unreleased = s.unreleased.saturating_add(n);
            if s.unreleased >= half && !s.recv_closed {
                frame::encode_window_update(stream, s.unreleased, &mut self.out);
                s.recv_window += i64::from(s.unreleased);
                s.unreleased = 0;
            }
        }
    }

    /// Credits `n` bytes back to the connection window.
    pub(crate) fn credit_connection(&mut self, n: u32) {
        self.connection_unreleased = self.connection_unreleased.saturating_add(n);
        if self.connection_unreleased >= self.connection_window / 2 {
            frame::encode_window_update(0, self.connection_unreleased, &mut self.out);
            self.connection_recv_window += i64::from(self.connection_unreleased);
            self.connection_unreleased = 0;
        }
    }

    /// Charges a DATA frame's `flow` bytes to the connection window.
    pub(crate) fn charge_connection(&mut self, flow: u32) -> Result<(), ConnectionError> {
        let flow = i64::from(flow);
        if flow > self.connection_recv_window {
            return Err(fail(
                code::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            ));
        }
        self.connection_recv_window -= flow;
        Ok(())
    }

    /// Charges `flow` bytes to `stream`'s window; whether they fit.
    pub(crate) fn charge_stream(&mut self, stream: u32, flow: u32) -> bool {
        match self.map.get_mut(&stream) {
            Some(s) if i64::from(flow) <= s.recv_window => {
                s.recv_window -= i64::from(flow);
                true
            }
            _ => false,
        }
    }

    /// Forgets `stream` once both sides sent END_STREAM.
    pub(crate) fn close_if_done(&mut self, stream: u32) {
        if self
            .map
            .get(&stream)
            .is_some_and(|s| s.recv_closed && s.send_closed)
        {
            self.map.remove(&stream);
        }
    }

    /// Resets `stream` (RST_STREAM with `code`) if it is open.
    pub(crate) fn reset(&mut self, stream: u32, code: u32) {
        if self.map.remove(&stream).is_some() {
            frame::encode_rst_stream(stream, code, &mut self.out);
        }
    }

    /// Resets `stream` for breaking a rule (RST_STREAM even if it is not open), reporting it
    /// if it was.
    pub(crate) fn stream_error(&mut self, stream: u32, code: u32, events: &mut Vec<Event>) {
        // Past the limit the connection is about to end (see `too_many_resets`): no more
        // RST_STREAMs.
        if self.local_resets < self.max_local_resets {
            frame::encode_rst_stream(stream, code, &mut self.out);
        }
        self.local_resets = self.local_resets.saturating_add(1);
        if self.map.remove(&stream).is_some() {
            events.push(Event::Reset {
                stream,
                code,
                by_peer: false,
            });
        }
    }

    /// Whether more streams were reset for breaking rules than allowed.
    pub(crate) fn too_many_resets(&self) -> bool {
        self.local_resets > self.max_local_resets
    }

    /// A WINDOW_UPDATE for an open or closed (not idle: the caller checks) stream, or the
    /// connection.
    pub(crate) fn window_update(
        &mut self,
        stream: u32,
        increment: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if stream == 0 {
            self.connection_send_window += i64::from(increment);
            if self.connection_send_window > i64::from(MAX_WINDOW_SIZE) {
                return Err(fail(
                    code::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            events.push(Event::WindowUpdate { stream: 0 });
            return Ok(());
        }
        let overflow = self.map.get_mut(&stream).map(|s| {
            s.send_window += i64::from(increment);
            s.send_window > i64::from(MAX_WINDOW_SIZE)
        });
        match overflow {
            Some(true) => self.stream_error(stream, code::FLOW_CONTROL_ERROR, events),
            Some(false) => events.push(Event::WindowUpdate { stream }),
            None => {}
        }
        Ok(())
    }

    /// The peer's settings that bear on sending: its initial stream window (applied to the
    /// open streams, §6.9.2) and its frame size.
    pub(crate) fn peer_settings(
        &mut self,
        settings: &Settings,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnectionError> {
        if let Some(window) = settings.initial_window_size {
            let delta = i64::from(window) - self.peer_initial_window;
            self.peer_initial_window = i64::from(window);
            for s in self.map.values_mut() {
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
        Ok(())
    }
}
