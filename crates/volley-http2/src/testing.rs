//! Test helpers: frames written by hand.

use crate::frame::FrameHeader;

/// A frame of `kind` with `flags` on `stream` carrying `payload`, whatever the rules say.
pub(crate) fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out
}
