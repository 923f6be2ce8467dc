//! Frames written to a send buffer. DATA payloads are not copied here: the caller writes
//! the 9-byte header, then hands the payload to the socket beside it (`writev`).

use super::{FrameHeader, MAX_WINDOW_SIZE, Settings, flag, kind, setting};

fn header(len: usize, kind: u8, flags: u8, stream: u32, dst: &mut Vec<u8>) {
    FrameHeader {
        len: len as u32,
        kind,
        flags,
        stream,
    }
    .encode(dst);
}

/// A DATA frame's header, for `len` bytes of payload (at most the peer's max frame size).
pub fn encode_data_header(stream: u32, len: usize, end_stream: bool, dst: &mut Vec<u8>) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    header(len, kind::DATA, flags, stream, dst);
}

/// A header block as one HEADERS frame, or HEADERS and CONTINUATION frames of at most
/// `max_frame_size` bytes each.
pub fn encode_headers(
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: usize,
    dst: &mut Vec<u8>,
) {
    let max = max_frame_size.max(1);
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    header(first.len(), kind::HEADERS, flags, stream, dst);
    dst.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        header(chunk.len(), kind::CONTINUATION, flags, stream, dst);
        dst.extend_from_slice(chunk);
    }
}

/// RST_STREAM.
pub fn encode_rst_stream(stream: u32, code: u32, dst: &mut Vec<u8>) {
    header(4, kind::RST_STREAM, 0, stream, dst);
    dst.extend_from_slice(&code.to_be_bytes());
}

/// SETTINGS with the settings that are set.
pub fn encode_settings(settings: &Settings, dst: &mut Vec<u8>) {
    let entries = [
        (setting::HEADER_TABLE_SIZE, settings.header_table_size),
        (setting::ENABLE_PUSH, settings.enable_push.map(u32::from)),
        (
            setting::MAX_CONCURRENT_STREAMS,
            settings.max_concurrent_streams,
        ),
        (setting::INITIAL_WINDOW_SIZE, settings.initial_window_size),
        (setting::MAX_FRAME_SIZE, settings.max_frame_size),
        (setting::MAX_HEADER_LIST_SIZE, settings.max_header_list_size),
    ];
    let count = entries.iter().filter(|(_, v)| v.is_some()).count();
    header(count * 6, kind::SETTINGS, 0, 0, dst);
    for (id, value) in entries {
        if let Some(value) = value {
            dst.extend_from_slice(&id.to_be_bytes());
            dst.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// A SETTINGS acknowledgement.
pub fn encode_settings_ack(dst: &mut Vec<u8>) {
    header(0, kind::SETTINGS, flag::ACK, 0, dst);
}

/// PING, or its acknowledgement.
pub fn encode_ping(ack: bool, payload: [u8; 8], dst: &mut Vec<u8>) {
    header(8, kind::PING, if ack { flag::ACK } else { 0 }, 0, dst);
    dst.extend_from_slice(&payload);
}

/// GOAWAY with debug data.
pub fn encode_goaway(last_stream: u32, code: u32, debug: &[u8], dst: &mut Vec<u8>) {
    header(8 + debug.len(), kind::GOAWAY, 0, 0, dst);
    dst.extend_from_slice(&(last_stream & MAX_WINDOW_SIZE).to_be_bytes());
    dst.extend_from_slice(&code.to_be_bytes());
    dst.extend_from_slice(debug);
}

/// WINDOW_UPDATE (`increment` 1 to 2^31-1).
pub fn encode_window_update(stream: u32, increment: u32, dst: &mut Vec<u8>) {
    header(4, kind::WINDOW_UPDATE, 0, stream, dst);
    dst.extend_from_slice(&(increment & MAX_WINDOW_SIZE).to_be_bytes());
}
