//! Frames from a read buffer.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    DEFAULT_MAX_FRAME_SIZE, Frame, FrameError, FrameHeader, HEADER_LEN, MAX_MAX_FRAME_SIZE,
    MAX_WINDOW_SIZE, Priority, Settings, code, flag, kind, setting,
};

/// A header block being reassembled from CONTINUATION frames.
#[derive(Debug)]
struct Pending {
    stream: u32,
    /// HEADERS' END_STREAM and priority, or PUSH_PROMISE's promised stream.
    head: Head,
    fragments: BytesMut,
    /// CONTINUATION frames so far.
    continuations: usize,
}

#[derive(Debug, Clone, Copy)]
enum Head {
    Headers {
        end_stream: bool,
        priority: Option<Priority>,
    },
    PushPromise {
        promised: u32,
    },
}

/// Parses frames out of a connection's read buffer.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_size: u32,
    max_block: usize,
    pending: Option<Pending>,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE, 64 * 1024)
    }
}

fn conn(code: u32, reason: &'static str) -> FrameError {
    FrameError::connection(code, reason)
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame_size` (our SETTINGS_MAX_FRAME_SIZE,
    /// clamped to HTTP/2's range) and header blocks up to `max_block` bytes in all (a larger
    /// one is a connection error ENHANCE_YOUR_CALM: its fragments are not kept).
    pub fn new(max_frame_size: u32, max_block: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame_size: max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
            max_block,
            pending: None,
        }
    }

    /// The largest frame payload accepted.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Changes the largest frame accepted (once the peer acknowledged our new setting).
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
    }

    /// How many CONTINUATION frames one header block may have: what the largest block takes
    /// in frames of the largest size, plus a quarter for imperfect packing, and at least 5
    /// (h2's rule).
    fn max_continuations(&self) -> usize {
        let frames = (self.max_block / self.max_frame_size as usize).max(1);
        (frames + frames / 4).max(5)
    }

    /// Whether a header block is half received (CONTINUATION frames must follow).
    pub fn in_header_block(&self) -> bool {
        self.pending.is_some()
    }

    /// The next frame in `buf`, consuming its bytes; `Ok(None)` when `buf` does not hold a
    /// complete one yet. After a stream error the frame is consumed and decoding can go on;
    /// after a connection error the connection must end.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            let Some(head) = buf.first_chunk::<HEADER_LEN>().map(FrameHeader::parse) else {
                return Ok(None);
            };
            // Checked before the payload arrives: an oversize frame is never buffered.
            if head.len > self.max_frame_size {
                return Err(conn(
                    code::FRAME_SIZE_ERROR,
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            let total = HEADER_LEN + head.len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            let mut payload = buf.split_to(total).freeze();
            payload.advance(HEADER_LEN);
            if let Some(frame) = self.frame(head, payload)? {
                return Ok(Some(frame));
            }
            // A CONTINUATION that did not end its block: read on.
        }
    }

    fn frame(&mut self, head: FrameHeader, payload: Bytes) -> Result<Option<Frame>, FrameError> {
        if let Some(pending) = &self.pending {
            // §6.10: only CONTINUATION frames of the same stream until END_HEADERS.
            if head.kind != kind::CONTINUATION || head.stream != pending.stream {
                return Err(conn(code::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        let stream = head.stream;
        let flags = head.flags;
        let on_stream = |what: &'static str| {
            if stream == 0 {
                Err(conn(code::PROTOCOL_ERROR, what))
            } else {
                Ok(())
            }
        };
        let on_connection = |what: &'static str| {
            if stream != 0 {
                Err(conn(code::PROTOCOL_ERROR, what))
            } else {
                Ok(())
            }
        };
        let frame = match head.kind {
            kind::DATA => {
                on_stream("DATA on stream 0")?;
                let flow_len = head.len;
                let data = unpad(flags, payload, 0)?;
                Frame::Data {
                    stream,
                    end_stream: flags & flag::END_STREAM != 0,
                    data,
                    flow_len,
                }
            }
            kind::HEADERS => {
                on_stream("HEADERS on stream 0")?;
                let with_priority = flags & flag::PRIORITY != 0;
                let mut rest = unpad(flags, payload, if with_priority { 5 } else { 0 })?;
                let priority = with_priority.then(|| priority(&mut rest));
                let head = Head::Headers {
                    end_stream: flags & flag::END_STREAM != 0,
                    priority,
                };
                return self.block(stream, head, flags, rest);
            }
            kind::PRIORITY => {
                on_stream("PRIORITY on stream 0")?;
                if head.len != 5 {
                    return Err(FrameError::stream(
                        stream,
                        code::FRAME_SIZE_ERROR,
                        "PRIORITY of a length other than 5",
                    ));
                }
                let mut payload = payload;
                let priority = priority(&mut payload);
                if priority.dependency == stream {
                    return Err(FrameError::stream(
                        stream,
                        code::PROTOCOL_ERROR,
                        "stream depends on itself",
                    ));
                }
                Frame::Priority { stream, priority }
            }
            kind::RST_STREAM => {
                on_stream("RST_STREAM on stream 0")?;
                if head.len != 4 {
                    return Err(conn(
                        code::FRAME_SIZE_ERROR,
                        "RST_STREAM of a length other than 4",
                    ));
                }
                Frame::RstStream {
                    stream,
                    code: u32_at(&payload, 0),
                }
            }
            kind::SETTINGS => {
                on_connection("SETTINGS on a stream")?;
                let ack = flags & flag::ACK != 0;
                if ack && head.len != 0 {
                    return Err(conn(code::FRAME_SIZE_ERROR, "SETTINGS ack with a payload"));
                }
                if !head.len.is_multiple_of(6) {
                    return Err(conn(
                        code::FRAME_SIZE_ERROR,
                        "SETTINGS length not a multiple of 6",
                    ));
                }
                Frame::Settings {
                    ack,
                    settings: settings(&payload)?,
                }
            }
            kind::PUSH_PROMISE => {
                on_stream("PUSH_PROMISE on stream 0")?;
                let mut rest = unpad(flags, payload, 4)?;
                let promised = rest.get_u32() & MAX_WINDOW_SIZE;
                return self.block(stream, Head::PushPromise { promised }, flags, rest);
            }
            kind::PING => {
                on_connection("PING on a stream")?;
                if head.len != 8 {
                    return Err(conn(
                        code::FRAME_SIZE_ERROR,
                        "PING of a length other than 8",
                    ));
                }
                let mut data = [0u8; 8];
                data.copy_from_slice(&payload);
                Frame::Ping {
                    ack: flags & flag::ACK != 0,
                    payload: data,
                }
            }
            kind::GOAWAY => {
                on_connection("GOAWAY on a stream")?;
                if head.len < 8 {
                    return Err(conn(code::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes"));
                }
                Frame::GoAway {
                    last_stream: u32_at(&payload, 0) & MAX_WINDOW_SIZE,
                    code: u32_at(&payload, 4),
                    debug: payload.slice(8..),
                }
            }
            kind::WINDOW_UPDATE => {
                if head.len != 4 {
                    return Err(conn(
                        code::FRAME_SIZE_ERROR,
                        "WINDOW_UPDATE of a length other than 4",
                    ));
                }
                let increment = u32_at(&payload, 0) & MAX_WINDOW_SIZE;
                if increment == 0 {
                    let reason = "WINDOW_UPDATE of 0";
                    return Err(if stream == 0 {
                        conn(code::PROTOCOL_ERROR, reason)
                    } else {
                        FrameError::stream(stream, code::PROTOCOL_ERROR, reason)
                    });
                }
                Frame::WindowUpdate { stream, increment }
            }
            kind::CONTINUATION => {
                on_stream("CONTINUATION on stream 0")?;
                let Some(mut pending) = self.pending.take() else {
                    return Err(conn(
                        code::PROTOCOL_ERROR,
                        "CONTINUATION without a header block",
                    ));
                };
                if pending.fragments.len() + payload.len() > self.max_block {
                    return Err(conn(code::ENHANCE_YOUR_CALM, "header_list_way_too_large"));
                }
                // Empty or tiny CONTINUATIONs cost a frame each without adding to the block's
                // size: their number is capped too (CVE-2024-27316's flood).
                pending.continuations += 1;
                if pending.continuations > self.max_continuations() {
                    return Err(conn(code::ENHANCE_YOUR_CALM, "too_many_continuations"));
                }
                pending.fragments.extend_from_slice(&payload);
                if flags & flag::END_HEADERS == 0 {
                    self.pending = Some(pending);
                    return Ok(None);
                }
                finish(pending.stream, pending.head, pending.fragments.freeze())
            }
            other => Frame::Unknown {
                kind: other,
                stream,
            },
        };
        Ok(Some(frame))
    }

    /// The first fragment of a header block: the whole block when END_HEADERS is set (a
    /// slice of the read buffer), else kept until its CONTINUATIONs end it.
    fn block(
        &mut self,
        stream: u32,
        head: Head,
        flags: u8,
        fragment: Bytes,
    ) -> Result<Option<Frame>, FrameError> {
        if fragment.len() > self.max_block {
            return Err(conn(code::ENHANCE_YOUR_CALM, "header_list_way_too_large"));
        }
        if flags & flag::END_HEADERS != 0 {
            return Ok(Some(finish(stream, head, fragment)));
        }
        self.pending = Some(Pending {
            stream,
            head,
            fragments: BytesMut::from(&fragment[..]),
            continuations: 0,
        });
        Ok(None)
    }
}

fn finish(stream: u32, head: Head, block: Bytes) -> Frame {
    match head {
        Head::Headers {
            end_stream,
            priority,
        } => Frame::Headers {
            stream,
            end_stream,
            priority,
            block,
        },
        Head::PushPromise { promised } => Frame::PushPromise {
            stream,
            promised,
            block,
        },
    }
}

fn u32_at(payload: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&payload[at..at + 4]);
    u32::from_be_bytes(word)
}

/// Strips a PADDED frame's pad length and padding; `fixed` more bytes (priority fields,
/// promised stream) must fit before the padding.
fn unpad(flags: u8, mut payload: Bytes, fixed: usize) -> Result<Bytes, FrameError> {
    if flags & flag::PADDED == 0 {
        if payload.len() < fixed {
            return Err(conn(
                code::FRAME_SIZE_ERROR,
                "frame too short for its fields",
            ));
        }
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(conn(
            code::FRAME_SIZE_ERROR,
            "padded frame without a pad length",
        ));
    };
    payload.advance(1);
    let pad = pad as usize;
    if pad + fixed > payload.len() {
        return Err(conn(
            code::PROTOCOL_ERROR,
            "padding longer than the payload",
        ));
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

/// Reads five bytes of priority fields.
fn priority(payload: &mut Bytes) -> Priority {
    let word = payload.get_u32();
    let weight = payload.get_u8();
    Priority {
        dependency: word & MAX_WINDOW_SIZE,
        exclusive: word & !MAX_WINDOW_SIZE != 0,
        weight,
    }
}

fn settings(payload: &[u8]) -> Result<Settings, FrameError> {
    let mut out = Settings::default();
    for entry in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([entry[0], entry[1]]);
        let value = u32_at(entry, 2);
        match id {
            setting::HEADER_TABLE_SIZE => out.header_table_size = Some(value),
            setting::ENABLE_PUSH => {
                if value > 1 {
                    return Err(conn(
                        code::PROTOCOL_ERROR,
                        "SETTINGS_ENABLE_PUSH not 0 or 1",
                    ));
                }
                out.enable_push = Some(value == 1);
            }
            setting::MAX_CONCURRENT_STREAMS => out.max_concurrent_streams = Some(value),
            setting::INITIAL_WINDOW_SIZE => {
                if value > MAX_WINDOW_SIZE {
                    return Err(conn(
                        code::FLOW_CONTROL_ERROR,
                        "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                    ));
                }
                out.initial_window_size = Some(value);
            }
            setting::MAX_FRAME_SIZE => {
                if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) {
                    return Err(conn(
                        code::PROTOCOL_ERROR,
                        "SETTINGS_MAX_FRAME_SIZE out of range",
                    ));
                }
                out.max_frame_size = Some(value);
            }
            setting::MAX_HEADER_LIST_SIZE => out.max_header_list_size = Some(value),
            // Unknown settings are ignored (§6.5.2).
            _ => {}
        }
    }
    Ok(out)
}
