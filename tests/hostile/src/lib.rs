//! The hostile-peer suite's tools: a raw HTTP/2 peer that writes frames by hand (so that it
//! can send what `h2`'s own client refuses to: floods, bad HPACK, oversize header blocks,
//! window overflows), a Volley server run as a child process whose memory the tests read,
//! and a Volley client run the same way for the attacks of a hostile server.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

pub use volley_integration_tests::bounded;
use volley_integration_tests::echo::{EchoClient, EchoRequest};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 frame types (RFC 9113, section 6).
pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

/// HTTP/2 frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// HTTP/2 error codes (RFC 9113, section 7).
pub mod code {
    pub const NO_ERROR: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const FLOW_CONTROL_ERROR: u32 = 3;
    pub const REFUSED_STREAM: u32 = 7;
    pub const CANCEL: u32 = 8;
    pub const COMPRESSION_ERROR: u32 = 9;
    pub const ENHANCE_YOUR_CALM: u32 = 11;
}

/// One frame: its 9-byte header, written by hand, and the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with these (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &payload)
}

/// A WINDOW_UPDATE frame.
pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// An RST_STREAM frame.
pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A gRPC message: the 5-byte prefix (flag, length) and the payload.
pub fn grpc_message(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An encoded echo request with `message`.
pub fn echo_request(message: &str) -> Vec<u8> {
    prost::Message::encode_to_vec(&EchoRequest {
        message: message.into(),
        ..Default::default()
    })
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541, 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// One header as an HPACK literal without indexing and with a new name, no Huffman coding:
/// the bytes go on the wire exactly as given, valid or not.
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// The header block of a gRPC request for `path` with `extra` headers after the standard ones
/// (`content-type: application/grpc` unless `extra` replaces it; `:method` is POST unless
/// `extra` names one).
pub fn request_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    let method = extra
        .iter()
        .find(|(k, _)| *k == ":method")
        .map_or("POST", |(_, v)| v);
    for (k, v) in [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
    ] {
        hpack_literal(&mut block, k.as_bytes(), v.as_bytes());
    }
    if !extra.iter().any(|(k, _)| *k == "content-type") {
        hpack_literal(&mut block, b"content-type", b"application/grpc");
    }
    hpack_literal(&mut block, b"te", b"trailers");
    for (k, v) in extra.iter().filter(|(k, _)| *k != ":method") {
        hpack_literal(&mut block, k.as_bytes(), v.as_bytes());
    }
    block
}

/// The header block of a gRPC response's headers: `:status: 200` (static index 8) and
/// `content-type: application/grpc`.
pub fn response_block() -> Vec<u8> {
    let mut block = vec![0x88];
    hpack_literal(&mut block, b"content-type", b"application/grpc");
    block
}

/// The header block of trailers with `grpc-status: code`.
pub fn trailers_block(code: i32) -> Vec<u8> {
    let mut block = Vec::new();
    hpack_literal(&mut block, b"grpc-status", code.to_string().as_bytes());
    block
}

/// The echo service's unary method.
pub const UNARY: &str = "/volley.test.Echo/Unary";
/// The echo service's bidi method.
pub const BIDI: &str = "/volley.test.Echo/Bidi";

/// A received frame; HEADERS (with their CONTINUATIONs) come decoded.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Bytes,
    /// The decoded header list of a HEADERS frame (after its CONTINUATIONs).
    pub headers: Vec<(String, String)>,
}

impl Frame {
    /// The error code of an RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        self.u32_at(at)
    }

    /// The increment of a WINDOW_UPDATE frame (0 for any other frame).
    pub fn window_increment(&self) -> i64 {
        match self.kind {
            kind::WINDOW_UPDATE => self.u32_at(0).map_or(0, |n| i64::from(n & 0x7fff_ffff)),
            _ => 0,
        }
    }

    /// The big-endian 32-bit number at `at` in the payload.
    fn u32_at(&self, at: usize) -> Option<u32> {
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The debug data of a GOAWAY frame.
    pub fn goaway_debug(&self) -> String {
        String::from_utf8_lossy(self.payload.get(8..).unwrap_or_default()).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_end_stream(&self) -> bool {
        matches!(self.kind, kind::DATA | kind::HEADERS) && self.flags & flag::END_STREAM != 0
    }
}

/// What a peer answered on one stream, read until the stream ended, was reset, or the
/// connection went away.
#[derive(Debug, Default)]
pub struct Answer {
    /// Each HEADERS frame's header list (headers, then trailers).
    pub headers: Vec<Vec<(String, String)>>,
    pub data: BytesMut,
    pub rst: Option<u32>,
    /// The GOAWAY's code and debug data.
    pub goaway: Option<(u32, String)>,
    /// The connection closed.
    pub closed: bool,
}

impl Answer {
    /// A header of the first or last header list (`:status` of the first; `grpc-status` of
    /// the last, which is the trailers or a Trailers-Only response).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .flatten()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `grpc-status` as a number.
    pub fn grpc_status(&self) -> Option<i32> {
        self.get("grpc-status").and_then(|s| s.parse().ok())
    }

    /// `:status` as a number.
    pub fn http_status(&self) -> Option<u16> {
        self.get(":status").and_then(|s| s.parse().ok())
    }
}

/// A hand-written HTTP/2 peer (a client, or with [`RawPeer::accept`] a server): writes bytes
/// as given, reads and decodes frames.
pub struct RawPeer {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: BytesMut,
    decoder: loona_hpack::Decoder<'static>,
    /// Frames read while waiting for something else.
    pub seen: Vec<Frame>,
}

impl RawPeer {
    /// Connects, sends the preface and an empty SETTINGS frame, and waits for the server's
    /// SETTINGS and its connection WINDOW_UPDATE (Volley's window is larger than HTTP/2's
    /// initial 64 KiB; sending more before it arrives is a flow-control error).
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let mut client = RawPeer::connect_bare(addr).await;
        client.send(PREFACE).await;
        client.send(&settings(&[])).await;
        let (mut settings_seen, mut window_seen) = (false, false);
        client
            .read_until(5, |f| {
                settings_seen |= f.kind == kind::SETTINGS && f.flags & flag::ACK == 0;
                window_seen |= f.kind == kind::WINDOW_UPDATE && f.stream == 0;
                settings_seen && window_seen
            })
            .await
            .expect("the server's SETTINGS and WINDOW_UPDATE");
        client.seen.clear();
        client
    }

    /// Connects and sends nothing.
    pub async fn connect_bare(addr: SocketAddr) -> RawPeer {
        RawPeer::over(TcpStream::connect(addr).await.unwrap())
    }

    /// A hostile server's side of an accepted connection: reads the client's preface, sends
    /// an empty SETTINGS frame, and waits for the client's first request; returns the peer and
    /// the request's stream id.
    pub async fn accept(listener: &tokio::net::TcpListener) -> (RawPeer, u32) {
        let (tcp, _) = bounded(10, listener.accept()).await.unwrap();
        let mut peer = RawPeer::over(tcp);
        let mut preface = [0u8; PREFACE.len()];
        bounded(10, peer.read.read_exact(&mut preface))
            .await
            .unwrap();
        assert_eq!(&preface[..], PREFACE);
        peer.send(&settings(&[])).await;
        let request = peer
            .read_until(10, |f| f.kind == kind::HEADERS)
            .await
            .expect("the client's request");
        (peer, request.stream)
    }

    /// A peer over `tcp`, which has not sent or read anything yet.
    pub fn over(tcp: TcpStream) -> RawPeer {
        tcp.set_nodelay(true).unwrap();
        let (read, write) = tcp.into_split();
        RawPeer {
            read,
            write,
            buf: BytesMut::new(),
            decoder: loona_hpack::Decoder::new(),
            seen: Vec::new(),
        }
    }

    /// Writes `bytes`; a peer that closed the connection is not an error here (the test
    /// reads how it closed).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// Writes `bytes`; false when the peer no longer takes them (it closed the connection).
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.write.write_all(bytes).await.is_ok()
    }

    /// Sends a request's HEADERS (one frame, END_HEADERS).
    pub async fn send_headers(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        self.send(&frame(kind::HEADERS, flags, stream, block)).await;
    }

    /// Sends DATA.
    pub async fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { flag::END_STREAM } else { 0 };
        self.send(&frame(kind::DATA, flags, stream, data)).await;
    }

    /// A whole unary call: headers with `extra`, one message, END_STREAM.
    pub async fn unary(&mut self, stream: u32, path: &str, extra: &[(&str, &str)], msg: &[u8]) {
        self.send_headers(stream, &request_block(path, extra), false)
            .await;
        self.send_data(stream, &grpc_message(false, msg), true)
            .await;
    }

    /// The next frame; `None` once the connection is closed. SETTINGS are acknowledged.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let mut frame = self.read_frame().await?;
        if frame.kind == kind::SETTINGS && frame.flags & flag::ACK == 0 {
            self.send(&crate::frame(kind::SETTINGS, flag::ACK, 0, &[]))
                .await;
        }
        if frame.kind == kind::HEADERS {
            let mut block = frame.payload.to_vec();
            let mut end = frame.flags & flag::END_HEADERS != 0;
            while !end {
                let next = self.read_frame().await?;
                assert_eq!(
                    next.kind,
                    kind::CONTINUATION,
                    "HEADERS without CONTINUATION"
                );
                block.extend_from_slice(&next.payload);
                end = next.flags & flag::END_HEADERS != 0;
            }
            let decoded = self
                .decoder
                .decode(&block)
                .expect("the peer's HPACK decodes");
            frame.headers = decoded
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect();
        }
        Some(frame)
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let stream =
                        u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                            & 0x7fff_ffff;
                    self.buf.advance(9);
                    let payload = self.buf.split_to(len).freeze();
                    return Some(Frame {
                        kind,
                        flags,
                        stream,
                        payload,
                        headers: Vec::new(),
                    });
                }
            }
            self.buf.reserve(64 * 1024);
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads frames until one matches `until` (returned) or the connection closes (`None`),
    /// keeping the others in `seen`; at most `secs` seconds.
    pub async fn read_until(
        &mut self,
        secs: u64,
        mut until: impl FnMut(&Frame) -> bool,
    ) -> Option<Frame> {
        bounded(secs, async {
            while let Some(frame) = self.next_frame().await {
                if until(&frame) {
                    return Some(frame);
                }
                self.seen.push(frame);
            }
            None
        })
        .await
    }

    /// Sends `data` on `stream` as DATA frames of at most 16 KiB, within the peer's
    /// connection window, `conn_window` (updated from WINDOW_UPDATEs read meanwhile; other
    /// frames go to `seen`). Stops early when the stream is reset, the connection ends, or no
    /// window arrives for `stall_ms`; returns the bytes sent.
    pub async fn send_within_window(
        &mut self,
        stream: u32,
        data: &[u8],
        conn_window: &mut i64,
        stall_ms: u64,
    ) -> usize {
        let mut sent = 0;
        while sent < data.len() {
            if *conn_window > 0 {
                let n = (data.len() - sent)
                    .min(16 * 1024)
                    .min(*conn_window as usize);
                if !self
                    .try_send(&frame(kind::DATA, 0, stream, &data[sent..sent + n]))
                    .await
                {
                    return sent;
                }
                sent += n;
                *conn_window -= n as i64;
                continue;
            }
            let next = tokio::time::timeout(Duration::from_millis(stall_ms), self.next_frame());
            match next.await {
                Ok(Some(f)) if f.kind == kind::WINDOW_UPDATE && f.stream == 0 => {
                    *conn_window += f.window_increment();
                }
                Ok(Some(f)) => {
                    let reset = f.kind == kind::RST_STREAM && f.stream == stream;
                    self.seen.push(f);
                    if reset {
                        return sent;
                    }
                }
                Ok(None) | Err(_) => return sent,
            }
        }
        sent
    }

    /// Reads frames for `ms` milliseconds (or until the connection closes) into `seen`.
    pub async fn read_for(&mut self, ms: u64) {
        let read = async {
            while let Some(frame) = self.next_frame().await {
                self.seen.push(frame);
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(ms), read).await;
    }

    /// Reads what the peer answers on `stream` until the stream ends, is reset, or the
    /// connection goes away or closes; at most `secs` seconds.
    pub async fn answer(&mut self, stream: u32, secs: u64) -> Answer {
        let mut answer = Answer::default();
        bounded(secs, async {
            loop {
                let Some(frame) = self.next_frame().await else {
                    answer.closed = true;
                    return;
                };
                if frame.kind == kind::GOAWAY {
                    answer.goaway = Some((frame.error_code().unwrap_or(0), frame.goaway_debug()));
                    if frame.error_code() != Some(code::NO_ERROR) {
                        return;
                    }
                    continue;
                }
                if frame.stream != stream {
                    self.seen.push(frame);
                    continue;
                }
                match frame.kind {
                    kind::HEADERS => answer.headers.push(frame.headers.clone()),
                    kind::DATA => answer.data.extend_from_slice(&frame.payload),
                    kind::RST_STREAM => {
                        answer.rst = frame.error_code();
                        return;
                    }
                    _ => {}
                }
                if frame.is_end_stream() {
                    return;
                }
            }
        })
        .await;
        answer
    }

    /// Reads until the peer closes the connection; returns the GOAWAY seen last, if any.
    pub async fn until_closed(&mut self, secs: u64) -> Option<(u32, String)> {
        let mut goaway = None;
        bounded(secs, async {
            while let Some(frame) = self.next_frame().await {
                if frame.kind == kind::GOAWAY {
                    goaway = Some((frame.error_code().unwrap_or(0), frame.goaway_debug()));
                }
            }
        })
        .await;
        goaway
    }
}

/// A Volley server (the echo service, every option at its default unless `args` say) in a
/// child process of its own, so that its memory can be read while it is attacked. Killed when
/// dropped; it also exits when its standard input closes, so it never outlives the test.
pub struct Target {
    child: Child,
    pub addr: SocketAddr,
}

impl Target {
    /// Starts the `hostile-target` binary at `bin` (a test's
    /// `env!("CARGO_BIN_EXE_hostile-target")`) with `args` (`--handshake-timeout-ms N`,
    /// `--max-connections N`) and waits for its address.
    pub async fn spawn(bin: &str, args: &[&str]) -> Target {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("hostile-target starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        bounded(30, BufReader::new(stdout).read_line(&mut line))
            .await
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("hostile-target said {line:?}"));
        Target { child, addr }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Asserts that a well-behaved Volley client, on a connection of its own, is served
    /// within 5 s.
    pub async fn assert_served(&self) {
        let channel = volley::Channel::new(&format!("http://{}", self.addr)).unwrap();
        let client = EchoClient::new(channel);
        let reply = bounded(
            5,
            client.unary(EchoRequest {
                message: "still served".into(),
                ..Default::default()
            }),
        )
        .await
        .expect("a well-behaved client is served");
        assert_eq!(reply.get_ref().message, "still served");
    }

    /// Asserts the server grew by at most `bound_kib` since `before_kib`, after giving it a
    /// moment to release what the attack's connection held (the connection may still be
    /// closing when the attack's last frame is read).
    pub async fn assert_rss_within(&self, before_kib: u64, bound_kib: u64, attack: &str) {
        let mut now = self.rss_kib();
        for _ in 0..20 {
            if now <= before_kib + bound_kib {
                break;
            }
            // Memory is returned with no event to await: poll it, briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = self.rss_kib();
        }
        eprintln!("{attack}: server RSS {before_kib} KiB -> {now} KiB");
        assert!(
            now <= before_kib + bound_kib,
            "{attack}: the server grew from {before_kib} KiB to {now} KiB (bound +{bound_kib} KiB)"
        );
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The result of `hostile-client`: the status its call ended with and its peak memory.
#[derive(Debug)]
pub struct ClientOutcome {
    pub code: i32,
    pub message: String,
    pub messages: u64,
    pub peak_rss_kib: u64,
}

/// Runs the `hostile-client` binary at `bin` against `addr` (`kind`: `unary` or
/// `server-stream`, with a deadline of `deadline_ms` unless 0) and returns how its call ended.
pub async fn run_client(
    bin: &str,
    addr: SocketAddr,
    kind: &str,
    deadline_ms: u64,
) -> ClientOutcome {
    let output = bounded(
        60,
        Command::new(bin)
            .args([addr.to_string(), kind.to_owned(), deadline_ms.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hostile-client runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("hostile-client printed no {name}: {text:?}"))
            .to_owned()
    };
    ClientOutcome {
        code: field("code=").parse().unwrap(),
        message: field("message="),
        messages: field("messages=").parse().unwrap(),
        peak_rss_kib: field("peak_rss_kib=").parse().unwrap(),
    }
}
