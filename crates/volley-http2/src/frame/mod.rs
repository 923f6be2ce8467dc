//! The HTTP/2 frame layer (RFC 9113 §4 and §6): frames parsed from a read buffer (DATA
//! payloads and single-frame header blocks as slices of it, no copy), every per-frame rule
//! checked with the error code and scope the RFC names, header blocks reassembled from
//! HEADERS/PUSH_PROMISE and CONTINUATION frames under a size cap; and frames written.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::FrameDecoder;
pub use encode::{
    encode_data_header, encode_goaway, encode_headers, encode_ping, encode_rst_stream,
    encode_settings, encode_settings_ack, encode_window_update,
};

use bytes::Bytes;

/// A frame's 9-byte header (§4.1).
pub const HEADER_LEN: usize = 9;
/// HTTP/2's default and smallest SETTINGS_MAX_FRAME_SIZE (§6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;
/// The largest SETTINGS_MAX_FRAME_SIZE (§6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window (§6.9.1).
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;
/// The client connection preface (§3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (§6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY (deprecated; parsed and ignored).
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (§6).
pub mod flag {
    /// DATA, HEADERS: the sender's last frame on the stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block ends here.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: padded.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: carries priority fields.
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (§7).
pub mod code {
    /// Graceful shutdown.
    pub const NO_ERROR: u32 = 0x0;
    /// Protocol error detected.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// Implementation fault.
    pub const INTERNAL_ERROR: u32 = 0x2;
    /// Flow-control limits exceeded.
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    /// Settings not acknowledged in time.
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    /// Frame received for a closed stream.
    pub const STREAM_CLOSED: u32 = 0x5;
    /// Frame size incorrect.
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// Stream not processed.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// Stream cancelled.
    pub const CANCEL: u32 = 0x8;
    /// Compression state not updated.
    pub const COMPRESSION_ERROR: u32 = 0x9;
    /// TCP connection error for CONNECT.
    pub const CONNECT_ERROR: u32 = 0xa;
    /// Processing capacity exceeded.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    /// Negotiated TLS parameters not acceptable.
    pub const INADEQUATE_SECURITY: u32 = 0xc;
    /// Use HTTP/1.1 for the request.
    pub const HTTP_1_1_REQUIRED: u32 = 0xd;
}

/// Setting identifiers (§6.5.2).
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits; the reserved bit is ignored, §4.1).
    pub stream: u32,
}

impl FrameHeader {
    /// Parses the first nine bytes of `bytes`.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & MAX_WINDOW_SIZE,
        }
    }

    /// Appends the nine bytes.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let len = self.len.to_be_bytes();
        dst.extend_from_slice(&[len[1], len[2], len[3], self.kind, self.flags]);
        dst.extend_from_slice(&(self.stream & MAX_WINDOW_SIZE).to_be_bytes());
    }
}

/// Priority fields (HEADERS with PRIORITY, PRIORITY frames); deprecated by RFC 9113 and
/// ignored, but parsed so that a stream depending on itself is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// The stream depended on.
    pub dependency: u32,
    /// Exclusive dependency.
    pub exclusive: bool,
    /// Weight minus one.
    pub weight: u8,
}

/// The settings a SETTINGS frame carries, validated (§6.5.2); unknown ones are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub header_table_size: Option<u32>,
    /// SETTINGS_ENABLE_PUSH (0 or 1).
    pub enable_push: Option<bool>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: Option<u32>,
    /// SETTINGS_INITIAL_WINDOW_SIZE (at most 2^31-1).
    pub initial_window_size: Option<u32>,
    /// SETTINGS_MAX_FRAME_SIZE (2^14 to 2^24-1).
    pub max_frame_size: Option<u32>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list_size: Option<u32>,
}

/// A frame received: what the connection acts on. CONTINUATION frames never appear: their
/// fragments are joined into the [`Frame::Headers`] or [`Frame::PushPromise`] they continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA: `data` without padding; `flow_len`, the whole payload, is what flow control
    /// counts (§6.1).
    Data {
        /// Stream.
        stream: u32,
        /// END_STREAM.
        end_stream: bool,
        /// The data.
        data: Bytes,
        /// Bytes charged against the flow-control windows.
        flow_len: u32,
    },
    /// HEADERS, with its CONTINUATIONs joined: one complete header block.
    Headers {
        /// Stream.
        stream: u32,
        /// END_STREAM.
        end_stream: bool,
        /// Priority fields, when sent.
        priority: Option<Priority>,
        /// The header block (HPACK).
        block: Bytes,
    },
    /// PRIORITY.
    Priority {
        /// Stream.
        stream: u32,
        /// The fields.
        priority: Priority,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream: u32,
        /// Error code.
        code: u32,
    },
    /// SETTINGS.
    Settings {
        /// An acknowledgement (no settings).
        ack: bool,
        /// The settings.
        settings: Settings,
    },
    /// PUSH_PROMISE, with its CONTINUATIONs joined (a server's; a client that disabled push
    /// treats it as a PROTOCOL_ERROR).
    PushPromise {
        /// Stream.
        stream: u32,
        /// The promised stream.
        promised: u32,
        /// The header block.
        block: Bytes,
    },
    /// PING.
    Ping {
        /// An acknowledgement.
        ack: bool,
        /// Opaque data.
        payload: [u8; 8],
    },
    /// GOAWAY.
    GoAway {
        /// The last stream the sender may have processed.
        last_stream: u32,
        /// Error code.
        code: u32,
        /// Debug data.
        debug: Bytes,
    },
    /// WINDOW_UPDATE (a zero increment is an error, never delivered).
    WindowUpdate {
        /// Stream (0: the connection).
        stream: u32,
        /// Increment, 1 to 2^31-1.
        increment: u32,
    },
    /// A frame of an unknown type: to be ignored (§4.1, §5.5).
    Unknown {
        /// Its type.
        kind: u8,
        /// Stream.
        stream: u32,
    },
}

/// A frame that breaks a rule: the error code to send and whether it closes the
/// connection (GOAWAY) or only a stream (RST_STREAM) (§5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    /// The error code (see [`code`]).
    pub code: u32,
    /// `Some(stream)` for a stream error; `None` for a connection error.
    pub stream: Option<u32>,
    /// What was wrong, for GOAWAY's debug data and logs.
    pub reason: &'static str,
}

impl FrameError {
    /// A connection error.
    pub fn connection(code: u32, reason: &'static str) -> FrameError {
        FrameError {
            code,
            stream: None,
            reason,
        }
    }

    /// A stream error.
    pub fn stream(stream: u32, code: u32, reason: &'static str) -> FrameError {
        FrameError {
            code,
            stream: Some(stream),
            reason,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stream {
            Some(s) => write!(f, "stream {s} error {:#x}: {}", self.code, self.reason),
            None => write!(f, "connection error {:#x}: {}", self.code, self.reason),
        }
    }
}

impl std::error::Error for FrameError {}
