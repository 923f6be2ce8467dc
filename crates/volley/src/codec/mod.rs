//! The gRPC message framing of `doc/PROTOCOL-HTTP2.md`: each message is a 1-byte compressed
//! flag, a 4-byte big-endian length, then the (possibly compressed) protobuf bytes.

pub(crate) mod compression;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Status;
pub use compression::CompressionEncoding;

/// Header names parsed once (a `&str` key is parsed and validated on every lookup).
pub(crate) const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
pub(crate) const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");
pub(crate) const GRPC_ACCEPT_ENCODING: http::HeaderName =
    http::HeaderName::from_static("grpc-accept-encoding");

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Turns compression of sent messages on and off message by message, within a call that
/// compresses (the server's [`crate::server::ServerBuilder::send_compressed`] with a client
/// that accepts it, or the client's `send_compressed`). Clones share one switch.
///
/// On the server every request carries one in its extensions; set it before returning a
/// unary response or before yielding each streamed message. On the client, put one in the
/// request's extensions and set it inside the request stream, just before yielding each
/// message. Default: enabled.
#[derive(Clone, Debug)]
pub struct SendCompression(Arc<AtomicBool>);

impl Default for SendCompression {
    fn default() -> SendCompression {
        SendCompression::new(true)
    }
}

impl SendCompression {
    /// A switch, on or off.
    pub fn new(enabled: bool) -> SendCompression {
        SendCompression(Arc::new(AtomicBool::new(enabled)))
    }

    /// Compress the messages sent from now on (`true`) or not.
    pub fn set_enabled(&self, enabled: bool) {
        self.0.store(enabled, Ordering::Release);
    }

    /// Whether messages are compressed now.
    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// The encoding for the next message: the call's, unless the switch is off.
    pub(crate) fn apply(
        control: Option<&SendCompression>,
        encoding: Option<CompressionEncoding>,
    ) -> Option<CompressionEncoding> {
        encoding.filter(|_| control.is_none_or(SendCompression::enabled))
    }
}

/// The algorithm one call (client: [`crate::Request::set_compression`]) or one response
/// (server: [`crate::Response::set_compression`]) compresses its messages with, in place of
/// the client's or server's default. Kept in the request's or response's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallCompression(pub(crate) Option<CompressionEncoding>);

/// Present (as `MessageCompressed(true)`) in the extensions of a unary request (server) or a
/// unary response (client) whose message arrived with the compressed flag set; absent when
/// it did not. Streams say it per message: [`crate::Streaming::last_message_compressed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCompressed(pub bool);

/// Bytes of the length prefix that precedes every message.
pub(crate) const HEADER_LEN: usize = 5;

/// The default largest message a peer accepts (same as [`crate::defaults::MAX_RECV_MESSAGE_SIZE`]).
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = crate::defaults::MAX_RECV_MESSAGE_SIZE;

/// The default largest message a peer sends (same as [`crate::defaults::MAX_SEND_MESSAGE_SIZE`]).
pub const DEFAULT_MAX_SEND_MESSAGE_SIZE: usize = crate::defaults::MAX_SEND_MESSAGE_SIZE;

/// The `content-type` Volley sends on requests and responses.
pub(crate) const APPLICATION_GRPC: http::HeaderValue =
    http::HeaderValue::from_static("application/grpc");

/// True for `application/grpc`, `application/grpc+<codec>` and `application/grpc;<params>`,
/// the content-types of gRPC on either side.
pub(crate) fn is_grpc_content_type(value: Option<&http::HeaderValue>) -> bool {
    let Some(rest) = value.and_then(|v| v.as_bytes().strip_prefix(b"application/grpc")) else {
        return false;
    };
    rest.is_empty() || rest[0] == b'+' || rest[0] == b';'
}

/// Encodes one message with its length prefix, compressing it when `compression` is set.
pub(crate) fn encode<M: prost::Message>(
    msg: &M,
    compression: Option<CompressionEncoding>,
    max_len: usize,
) -> Result<Bytes, Status> {
    let mut buf = BytesMut::new();
    encode_into(msg, compression, max_len, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends one message with its length prefix to `buf` (so that several small messages can go
/// out in one HTTP/2 DATA frame). On error `buf` is left as it was.
pub(crate) fn encode_into<M: prost::Message>(
    msg: &M,
    compression: Option<CompressionEncoding>,
    max_len: usize,
    buf: &mut BytesMut,
) -> Result<(), Status> {
    let len = msg.encoded_len();
    let start = buf.len();
    match compression {
        None => {
            check_send_len(len, max_len)?;
            buf.reserve(HEADER_LEN + len);
            let [l0, l1, l2, l3] = (len as u32).to_be_bytes();
            buf.put_slice(&[0, l0, l1, l2, l3]);
            // The length is known and the buffer grows as needed: `encode_raw` skips
            // `encode`'s second length computation and capacity check.
            msg.encode_raw(buf);
            debug_assert_eq!(buf.len() - start, HEADER_LEN + len);
            Ok(())
        }
        Some(enc) => {
            let raw = msg.encode_to_vec();
            buf.reserve(HEADER_LEN + len / 2 + 32);
            buf.put_bytes(0, HEADER_LEN);
            if let Err(status) = enc.compress(&raw, buf) {
                buf.truncate(start);
                return Err(status);
            }
            let clen = buf.len() - start - HEADER_LEN;
            if let Err(status) = check_send_len(clen, max_len) {
                buf.truncate(start);
                return Err(status);
            }
            buf[start] = 1;
            buf[start + 1..start + HEADER_LEN].copy_from_slice(&(clen as u32).to_be_bytes());
            Ok(())
        }
    }
}

#[inline]
fn check_send_len(len: usize, max_len: usize) -> Result<(), Status> {
    if len > max_len || u32::try_from(len).is_err() {
        return Err(Status::resource_exhausted(format!(
            "trying to send message larger than max ({len} vs. {max_len})"
        )));
    }
    Ok(())
}

/// `grpc-accept-encoding` for every algorithm Volley decodes (what a client advertises).
pub(crate) const ACCEPT_ALL: &str = "identity,gzip,deflate,zstd";

/// How far past the bytes received a partial message's buffer is reserved ahead: messages
/// up to about this size are gathered with one allocation, larger ones grow as they arrive.
pub(crate) const GATHER_AHEAD: usize = 64 * 1024;

/// Splits received DATA into messages, enforcing the receive size limit as soon as a length
/// prefix is seen (before the body is buffered).
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    /// Received bytes; those from `pos` on are not consumed yet.
    buf: Received,
    pos: usize,
    max_len: usize,
    encoding: Option<CompressionEncoding>,
    last_compressed: bool,
    /// The connection's budget for partly received messages (server side).
    quota: Option<Arc<BufferQuota>>,
    /// How much of `quota` the gathering buffer holds.
    held: usize,
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        self.release();
    }
}

/// The bytes of partly received messages (those gathered across DATA frames) that the calls
/// of one connection may hold together. Without it, a client could make each of its streams
/// gather a message up to the receive limit: 256 streams x 4 MiB. A stream whose message
/// would pass the limit fails with RESOURCE_EXHAUSTED; the others go on.
#[derive(Debug)]
pub(crate) struct BufferQuota {
    used: AtomicUsize,
    limit: usize,
}

impl BufferQuota {
    pub(crate) fn new(limit: usize) -> Arc<BufferQuota> {
        Arc::new(BufferQuota {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes `n` bytes of the quota; false (nothing taken) when that would pass the limit.
    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Adds `n` bytes whatever the limit (memory already allocated).
    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Where received bytes wait to be read.
#[derive(Debug)]
enum Received {
    /// One DATA chunk as the transport gave it: whole messages are read from it in place, so
    /// a busy stream's chunks are never copied.
    Chunk(Bytes),
    /// A message that spans chunks, gathered (with room for all of it once its length is
    /// known).
    Joined(BytesMut),
}

impl Received {
    fn bytes(&self) -> &[u8] {
        match self {
            Received::Chunk(b) => b,
            Received::Joined(m) => m,
        }
    }
}

impl FrameDecoder {
    pub(crate) fn new(max_len: usize, encoding: Option<CompressionEncoding>) -> FrameDecoder {
        FrameDecoder {
            buf: Received::Chunk(Bytes::new()),
            pos: 0,
            max_len,
            encoding,
            last_compressed: false,
            quota: None,
            held: 0,
        }
    }

    /// Whether the last message returned had the compressed flag set.
    pub(crate) fn last_compressed(&self) -> bool {
        self.last_compressed
    }

    /// The received bytes not consumed yet.
    fn pending(&self) -> &[u8] {
        &self.buf.bytes()[self.pos..]
    }

    /// Counts this decoder's partly received messages against `quota` (a connection's).
    pub(crate) fn set_quota(&mut self, quota: Arc<BufferQuota>) {
        self.quota = Some(quota);
    }

    /// Appends received bytes. Fails (RESOURCE_EXHAUSTED) when a partly received message
    /// would take the connection over its [`BufferQuota`].
    pub(crate) fn push(&mut self, data: Bytes) -> Result<(), Status> {
        let rest = self.pending().len();
        if rest == 0 {
            // Nothing waiting: read the chunk where it is (a gathering buffer is dropped).
            self.release();
            self.buf = Received::Chunk(data);
            self.pos = 0;
            Ok(())
        } else {
            self.gather(rest + data.len(), &data)
        }
    }

    /// Reserves `room` bytes of the quota for the gathering buffer (before it grows to it).
    fn charge(&mut self, room: usize) -> Result<(), Status> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        if room > self.held {
            if !quota.take(room - self.held) {
                return Err(Status::resource_exhausted(format!(
                    "the connection's partly received request messages reached its limit of \
                     {} bytes",
                    quota.limit
                )));
            }
            self.held = room;
        }
        Ok(())
    }

    /// Gives the gathering buffer's share of the quota back.
    fn release(&mut self) {
        // Most decoders never gather: no atomic operation for them.
        if self.held > 0
            && let Some(quota) = &self.quota
        {
            quota.give(std::mem::take(&mut self.held));
        }
    }

    /// Moves what is pending into the gathering buffer, with room for `total` bytes (a
    /// message's length, once its prefix is read) but never more than [`GATHER_AHEAD`] beyond
    /// the bytes actually received, and appends `more`. A message that spans a few chunks is
    /// gathered with one allocation; a prefix alone (`00 00 40 00 00` declares 4 MiB) cannot
    /// make the receiver allocate what the peer has not sent: larger messages grow as their
    /// bytes arrive.
    #[cold]
    fn gather(&mut self, total: usize, more: &[u8]) -> Result<(), Status> {
        let received = self.buf.bytes().len() - self.pos + more.len();
        let room = total.min(received.saturating_add(GATHER_AHEAD));
        self.charge(room)?;
        let pos = std::mem::take(&mut self.pos);
        match &mut self.buf {
            Received::Joined(m) => {
                m.advance(pos);
                m.reserve(room.saturating_sub(m.len()));
                m.extend_from_slice(more);
            }
            Received::Chunk(b) => {
                let mut m = BytesMut::with_capacity(room);
                m.extend_from_slice(&b[pos..]);
                m.extend_from_slice(more);
                self.buf = Received::Joined(m);
            }
        }
        // The buffer may have grown past `room` (a `Vec` grows by doubling): count what it
        // really holds, so that the next check sees it.
        if let (Some(quota), Received::Joined(m)) = (&self.quota, &self.buf) {
            let capacity = m.capacity();
            if capacity > self.held {
                quota.add(capacity - self.held);
                self.held = capacity;
            }
        }
        Ok(())
    }

    /// True when a partial message is buffered (an error if the stream ends now).
    pub(crate) fn has_partial(&self) -> bool {
        !self.pending().is_empty()
    }

    /// How many bytes the receive buffer has room for (its allocation).
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        match &self.buf {
            Received::Joined(m) => m.capacity(),
            Received::Chunk(b) => b.len(),
        }
    }

    /// The next complete message's protobuf bytes, decompressed; `None` until one is buffered.
    #[cfg(test)]
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        self.next_message_with(Bytes::copy_from_slice)
    }

    /// Hands the next complete message's protobuf bytes (decompressed) to `read`, straight
    /// from the receive buffer: no per-message allocation or reference count. `None` until a
    /// whole message is buffered.
    #[inline(always)]
    pub(crate) fn next_message_with<R>(
        &mut self,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, Status> {
        // Field by field (not `self.pending()`), so that `pending` borrows only `buf`.
        let pending = &self.buf.bytes()[self.pos..];
        let Some(&[flag, l0, l1, l2, l3]) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if flag > 1 {
            return Err(Status::internal(format!(
                "invalid compressed flag {flag} in message prefix"
            )));
        }
        if len > self.max_len {
            return Err(Status::resource_exhausted(format!(
                "received message larger than max ({len} vs. {})",
                self.max_len
            )));
        }
        let Some(body) = pending.get(HEADER_LEN..HEADER_LEN + len) else {
            self.gather(HEADER_LEN + len, &[])?;
            return Ok(None);
        };
        self.last_compressed = flag == 1;
        let result = if flag == 0 {
            read(body)
        } else {
            let Some(enc) = self.encoding else {
                return Err(Status::internal(
                    "compressed flag set on a message but no grpc-encoding was sent",
                ));
            };
            // Sized from bytes received, never past the limit on the output.
            let mut out = Vec::with_capacity(len.saturating_mul(2).min(self.max_len));
            enc.decompress(body, &mut out, self.max_len)?;
            read(&out)
        };
        self.pos += HEADER_LEN + len;
        Ok(Some(result))
    }
}

/// Decodes protobuf bytes, naming the type in the error.
pub(crate) fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(decode_error)
}

/// Decodes protobuf bytes into `msg`, cleared first so that only its allocations are reused
/// (prost's merge would otherwise append to repeated fields); errors as [`decode`]'s.
pub(crate) fn decode_into<M: prost::Message>(msg: &mut M, bytes: &[u8]) -> Result<(), Status> {
    msg.clear();
    msg.merge(bytes).map_err(decode_error)
}

/// INTERNAL, with prost's reason (which names protobuf fields, not Rust types).
#[cold]
fn decode_error(e: prost::DecodeError) -> Status {
    Status::internal(format!("failed to decode the received message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Msg {
        #[prost(string, tag = "1")]
        text: String,
    }

    #[test]
    fn frames_round_trip_split_anywhere() {
        let a = encode(
            &Msg {
                text: "hello".into(),
            },
            None,
            usize::MAX,
        )
        .expect("encode");
        let b = encode(
            &Msg {
                text: "x".repeat(1000),
            },
            Some(CompressionEncoding::Gzip),
            usize::MAX,
        )
        .expect("encode");
        assert_eq!(a[0], 0);
        assert_eq!(b[0], 1);
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        for cut in 0..all.len() {
            let mut d = FrameDecoder::new(1 << 20, Some(CompressionEncoding::Gzip));
            d.push(Bytes::copy_from_slice(&all[..cut]))
                .expect("no quota");
            let mut got = Vec::new();
            while let Some(m) = d.next_message().expect("valid") {
                got.push(decode::<Msg>(&m).expect("decode").text);
            }
            d.push(Bytes::copy_from_slice(&all[cut..]))
                .expect("no quota");
            while let Some(m) = d.next_message().expect("valid") {
                got.push(decode::<Msg>(&m).expect("decode").text);
            }
            assert_eq!(got, vec!["hello".to_string(), "x".repeat(1000)]);
            assert!(!d.has_partial());
        }
    }

    #[test]
    fn frames_arrive_in_pieces_of_any_size() {
        // Whole messages read in place from a chunk, messages spanning chunks gathered, a
        // gathered buffer consumed and the next chunk adopted: every piece size from 1 byte
        // to all at once.
        let texts: Vec<String> = vec!["a".into(), "x".repeat(300), String::new(), "bc".into()];
        let mut all = Vec::new();
        for text in &texts {
            let frame = encode(&Msg { text: text.clone() }, None, usize::MAX).expect("encode");
            all.extend_from_slice(&frame);
        }
        for size in 1..=all.len() {
            let mut d = FrameDecoder::new(1 << 20, None);
            let mut got = Vec::new();
            for piece in all.chunks(size) {
                d.push(Bytes::copy_from_slice(piece)).expect("no quota");
                while let Some(m) = d.next_message().expect("valid") {
                    got.push(decode::<Msg>(&m).expect("decode").text);
                }
            }
            assert_eq!(got, texts, "pieces of {size}");
            assert!(!d.has_partial(), "pieces of {size}");
        }
    }

    #[test]
    fn oversize_is_rejected_from_the_prefix() {
        let mut d = FrameDecoder::new(10, None);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 11]))
            .expect("no quota");
        let err = d.next_message().expect_err("too big");
        assert_eq!(err.code(), Code::ResourceExhausted);
        let err = encode(
            &Msg {
                text: "x".repeat(20),
            },
            None,
            10,
        )
        .expect_err("too big");
        assert_eq!(err.code(), Code::ResourceExhausted);
    }

    /// A prefix declaring 4 MiB reserves room for what was received (plus a bounded
    /// read-ahead), not for what was declared; the message still completes as bytes arrive.
    #[test]
    fn a_declared_length_alone_allocates_nothing_large() {
        let capacity = FrameDecoder::buffered_capacity;
        let declared = 4 * 1024 * 1024;
        let mut d = FrameDecoder::new(declared, None);
        let mut first = vec![0u8, 0, 0x40, 0, 0];
        first.extend_from_slice(&[0x0a; 10]);
        d.push(Bytes::from(first)).expect("no quota");
        assert_eq!(d.next_message().expect("no error"), None);
        assert!(capacity(&d) <= 15 + GATHER_AHEAD, "{}", capacity(&d));
        let mut sent = 10;
        let chunk = vec![0x0a; 16 * 1024];
        while sent + chunk.len() <= declared {
            d.push(Bytes::copy_from_slice(&chunk)).expect("no quota");
            sent += chunk.len();
            assert!(
                capacity(&d) <= 2 * (5 + sent) + GATHER_AHEAD,
                "{}",
                capacity(&d)
            );
        }
        d.push(Bytes::from(vec![0x0a; declared - sent]))
            .expect("no quota");
        let message = d.next_message().expect("no error").expect("whole");
        assert_eq!(message.len(), declared);
    }

    /// Decoders of one connection share its quota for partly received messages: one that
    /// would pass it fails with RESOURCE_EXHAUSTED, and what a decoder held comes back when
    /// its message is read (and the buffer dropped) or the decoder is dropped.
    #[test]
    fn partly_received_messages_share_the_connection_quota() {
        let quota = BufferQuota::new(210 * 1024);
        let partial = |declared: u32, sent: usize| {
            let mut d = FrameDecoder::new(4 << 20, None);
            d.set_quota(quota.clone());
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&declared.to_be_bytes());
            bytes.extend(std::iter::repeat_n(0x0a, sent));
            (d, Bytes::from(bytes))
        };
        // 90 KiB of a 100 KiB message, twice: 2 x ~100 KiB held.
        let (mut a, first) = partial(100 * 1024, 90 * 1024);
        a.push(first).expect("within the quota");
        assert_eq!(a.next_message().expect("no error"), None);
        let (mut b, first) = partial(100 * 1024, 90 * 1024);
        b.push(first).expect("within the quota");
        assert_eq!(b.next_message().expect("no error"), None);
        assert!(quota.used() > 180 * 1024, "{}", quota.used());
        // A third does not fit.
        let (mut c, first) = partial(100 * 1024, 90 * 1024);
        c.push(first).expect("one chunk needs no gathering");
        let err = c.next_message().expect_err("over the quota");
        assert_eq!(err.code(), Code::ResourceExhausted);
        // `a` completes its message; the next chunk replaces the gathering buffer.
        a.push(Bytes::from(vec![0x0a; 10 * 1024])).expect("within");
        assert!(a.next_message().expect("no error").is_some());
        a.push(Bytes::from_static(&[0, 0, 0, 0, 0]))
            .expect("within");
        drop(b);
        drop(c);
        assert_eq!(quota.used(), 0);
    }

    #[test]
    fn bad_flag_and_compression_without_encoding_are_internal() {
        let mut d = FrameDecoder::new(10, None);
        d.push(Bytes::from_static(&[2, 0, 0, 0, 0]))
            .expect("no quota");
        assert_eq!(
            d.next_message().map_err(|s| s.code()).err(),
            Some(Code::Internal)
        );
        let mut d = FrameDecoder::new(10, None);
        d.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]))
            .expect("no quota");
        assert_eq!(
            d.next_message().map_err(|s| s.code()).err(),
            Some(Code::Internal)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic xorshift stream of inputs, split at arbitrary points; the decoder
        // must answer each with messages or a status, never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 0 {
                // Mostly small lengths and valid flags, so that frames complete.
                input[0] %= 3;
            }
            if len > 4 {
                input[1] = 0;
                input[2] = 0;
                input[3] = 0;
                input[4] %= 40;
            }
            let mut d = FrameDecoder::new(32, Some(CompressionEncoding::Gzip));
            let cut = if len == 0 { 0 } else { (next() as usize) % len };
            d.push(Bytes::copy_from_slice(&input[..cut]))
                .expect("no quota");
            while let Ok(Some(m)) = d.next_message() {
                let _ = decode::<Msg>(&m);
            }
            d.push(Bytes::copy_from_slice(&input[cut..]))
                .expect("no quota");
            while let Ok(Some(m)) = d.next_message() {
                let _ = decode::<Msg>(&m);
            }
        }
    }

    #[test]
    fn invalid_protobuf_is_internal() {
        let err = decode::<Msg>(&[0x0a, 0x05, b'a']).expect_err("truncated");
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("Msg"), "{}", err.message());
    }
}
