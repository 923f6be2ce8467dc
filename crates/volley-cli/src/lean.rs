//! The lean load engine of `volley bench`: one task per connection speaks HTTP/2 itself
//! (`volley-http2`'s frame codec and HPACK), as `h2load` does with nghttp2, so that the
//! generator costs a fraction of what a general client does per call and the server, not
//! the generator, is what a run measures.
//!
//! It knows only what a load run needs: one method, requests already encoded, responses
//! counted and dropped; plaintext TCP (`volley bench` uses Volley's own client for TLS and
//! every other target). It is still a correct HTTP/2 client: it waits for the server's
//! SETTINGS, stays within its SETTINGS_MAX_CONCURRENT_STREAMS, obeys flow control both ways,
//! answers PINGs and SETTINGS, and stops opening streams after GOAWAY.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use volley::{Code, Status};
use volley_http2::frame::{self, Frame, FrameDecoder, Settings, code};
use volley_http2::hpack::{self, Indexing};

/// Our stream window: a server may send this much per stream before we say "more".
const STREAM_WINDOW: u32 = 1 << 20;
/// Our connection window.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest header list we accept from the server.
const MAX_HEADER_LIST: usize = 64 << 10;

/// One call to make: its request messages, gRPC-framed, and where its outcome goes.
struct Call {
    messages: Arc<Vec<Bytes>>,
    done: oneshot::Sender<Result<(), Status>>,
}

/// A handle on one lean connection; clones share it.
#[derive(Clone, Debug)]
pub struct LeanClient {
    calls: mpsc::UnboundedSender<Call>,
}

/// `message` with gRPC's 5-byte prefix (uncompressed).
pub fn frame_message(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

impl LeanClient {
    /// Connects to `address` (`host:port`), starts the connection's task and waits for the
    /// server's SETTINGS, all within `timeout`; every call goes to `path`
    /// (`/package.Service/Method`).
    pub async fn connect(
        address: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<LeanClient, Status> {
        let connecting = async {
            let io = TcpStream::connect(address)
                .await
                .map_err(|e| Status::unavailable(format!("cannot connect to {address}: {e}")))?;
            let _ = io.set_nodelay(true);
            let (calls, queue) = mpsc::unbounded_channel();
            let (ready, settled) = oneshot::channel();
            let connection = Connection::new(io, address, path, ready);
            tokio::spawn(connection.run(queue));
            settled.await.map_err(|_| {
                Status::unavailable(format!(
                    "{address} closed the connection before its SETTINGS"
                ))
            })?;
            Ok(LeanClient { calls })
        };
        tokio::time::timeout(timeout, connecting)
            .await
            .unwrap_or_else(|_| {
                Err(Status::unavailable(format!(
                    "no HTTP/2 connection to {address} within {timeout:?}"
                )))
            })
    }

    /// Makes one call: sends `messages` (gRPC-framed; the stream ends after the last),
    /// reads the responses to the end, and returns the call's status.
    pub async fn call(&self, messages: &Arc<Vec<Bytes>>) -> Result<(), Status> {
        let (done, outcome) = oneshot::channel();
        let call = Call {
            messages: messages.clone(),
            done,
        };
        if self.calls.send(call).is_err() {
            return Err(Status::unavailable("the connection is closed"));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the connection is closed")))
    }
}

/// One open stream.
struct Stream {
    done: oneshot::Sender<Result<(), Status>>,
    /// Request bytes not yet sent (flow control), and whether END_STREAM follows them.
    unsent: VecDeque<Bytes>,
    send_window: i64,
    /// Response bytes received and not yet credited back.
    unacked: u32,
    /// The response headers' status, once they came.
    http_status: Option<u16>,
}

/// A connection's whole state, owned by its task.
struct Connection {
    io: TcpStream,
    read: BytesMut,
    out: Vec<u8>,
    frames: FrameDecoder,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    /// The request's header fields, and their block once it no longer changes the tables.
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    block: Option<Vec<u8>>,
    streams: HashMap<u32, Stream>,
    waiting: VecDeque<Call>,
    next_stream: u32,
    /// The server's SETTINGS arrived (no stream is opened before).
    settled: bool,
    max_streams: usize,
    initial_send_window: i64,
    connection_send_window: i64,
    max_frame_size: usize,
    unacked: u32,
    /// GOAWAY's last stream: no new stream after it.
    gone_away: bool,
    /// Told when the server's SETTINGS arrive.
    ready: Option<oneshot::Sender<()>>,
}

impl Connection {
    fn new(io: TcpStream, authority: &str, path: &str, ready: oneshot::Sender<()>) -> Connection {
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            (
                "user-agent",
                concat!("volley-bench/", env!("CARGO_PKG_VERSION")),
            ),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        let mut out = Vec::with_capacity(64 << 10);
        out.extend_from_slice(frame::PREFACE);
        frame::encode_settings(
            &Settings {
                enable_push: Some(false),
                initial_window_size: Some(STREAM_WINDOW),
                max_header_list_size: Some(MAX_HEADER_LIST as u32),
                ..Settings::default()
            },
            &mut out,
        );
        frame::encode_window_update(0, CONNECTION_WINDOW - 65_535, &mut out);
        Connection {
            io,
            read: BytesMut::with_capacity(64 << 10),
            out,
            frames: FrameDecoder::new(frame::DEFAULT_MAX_FRAME_SIZE, MAX_HEADER_LIST),
            decoder: hpack::Decoder::default(),
            encoder: hpack::Encoder::default(),
            fields,
            block: None,
            streams: HashMap::new(),
            waiting: VecDeque::new(),
            next_stream: 1,
            settled: false,
            max_streams: usize::MAX,
            initial_send_window: 65_535,
            connection_send_window: 65_535,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            unacked: 0,
            gone_away: false,
            ready: Some(ready),
        }
    }

    /// Runs until the handles are dropped and the streams end, or the connection fails;
    /// every call still open then fails UNAVAILABLE.
    async fn run(mut self, mut calls: mpsc::UnboundedReceiver<Call>) {
        let mut open = true;
        let failure = loop {
            if let Err(e) = self.flush().await {
                break Status::unavailable(format!("write failed: {e}"));
            }
            if !open && self.streams.is_empty() && self.waiting.is_empty() {
                break Status::unavailable("the connection is closed");
            }
            tokio::select! {
                call = calls.recv(), if open => match call {
                    Some(call) => {
                        self.waiting.push_back(call);
                        // Take every call queued meanwhile: one write for all.
                        while let Ok(call) = calls.try_recv() {
                            self.waiting.push_back(call);
                        }
                    }
                    None => open = false,
                },
                read = self.io.read_buf(&mut self.read) => match read {
                    Ok(0) => break Status::unavailable("the server closed the connection"),
                    Ok(_) => {
                        if let Err(status) = self.receive() {
                            break status;
                        }
                    }
                    Err(e) => break Status::unavailable(format!("read failed: {e}")),
                },
            }
            self.start_waiting();
        };
        let _ = self.flush().await;
        for (_, stream) in self.streams.drain() {
            let _ = stream.done.send(Err(failure.clone()));
        }
        for call in self.waiting.drain(..) {
            let _ = call.done.send(Err(failure.clone()));
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Opens streams for waiting calls while the server's limit allows.
    fn start_waiting(&mut self) {
        while self.settled && self.streams.len() < self.max_streams {
            let Some(call) = self.waiting.pop_front() else {
                break;
            };
            if self.gone_away || self.next_stream > frame::MAX_WINDOW_SIZE {
                let _ = call
                    .done
                    .send(Err(Status::unavailable("the server sent GOAWAY")));
                continue;
            }
            let id = self.next_stream;
            self.next_stream += 2;
            let block = self.header_block();
            let end_stream = call.messages.is_empty();
            frame::encode_headers(id, &block, end_stream, self.max_frame_size, &mut self.out);
            self.streams.insert(
                id,
                Stream {
                    done: call.done,
                    unsent: call.messages.iter().cloned().collect(),
                    send_window: self.initial_send_window,
                    unacked: 0,
                    http_status: None,
                },
            );
            self.send_data(id);
        }
    }

    /// The request's header block. Once a block adds nothing to the HPACK tables, the next
    /// blocks are the same bytes: kept and reused.
    fn header_block(&mut self) -> Vec<u8> {
        if let Some(block) = &self.block {
            return block.clone();
        }
        let before = (self.encoder.table().len(), self.encoder.table().size());
        let mut block = Vec::new();
        let fields = self
            .fields
            .iter()
            .map(|(n, v)| (&n[..], &v[..], Indexing::Incremental));
        self.encoder.encode(fields, &mut block);
        if before == (self.encoder.table().len(), self.encoder.table().size())
            && block.first().is_none_or(|b| b & 0xe0 != 0x20)
        {
            self.block = Some(block.clone());
        }
        block
    }

    /// Sends what flow control allows of stream `id`'s request bytes; END_STREAM with the
    /// last.
    fn send_data(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        while let Some(front) = stream.unsent.front_mut() {
            let allowed = stream
                .send_window
                .min(self.connection_send_window)
                .min(self.max_frame_size as i64);
            if allowed <= 0 {
                return;
            }
            let n = front.len().min(allowed as usize);
            let chunk = front.split_to(n);
            if front.is_empty() {
                stream.unsent.pop_front();
            }
            let last = stream.unsent.is_empty();
            frame::encode_data_header(id, chunk.len(), last, &mut self.out);
            self.out.extend_from_slice(&chunk);
            stream.send_window -= n as i64;
            self.connection_send_window -= n as i64;
        }
    }

    /// Handles every complete frame read.
    fn receive(&mut self) -> Result<(), Status> {
        loop {
            match self.frames.decode(&mut self.read) {
                Ok(Some(frame)) => self.frame(frame)?,
                Ok(None) => return Ok(()),
                Err(e) => match e.stream {
                    Some(id) => {
                        frame::encode_rst_stream(id, e.code, &mut self.out);
                        self.finish(id, Err(Status::internal(e.reason)));
                    }
                    None => return Err(self.fail(e.code, e.reason)),
                },
            }
        }
    }

    /// A connection error of ours: GOAWAY, and the reason the calls fail.
    fn fail(&mut self, error: u32, reason: &str) -> Status {
        frame::encode_goaway(0, error, reason.as_bytes(), &mut self.out);
        Status::internal(format!("HTTP/2 error from the server: {reason}"))
    }

    fn frame(&mut self, frame: Frame) -> Result<(), Status> {
        match frame {
            Frame::Settings { ack: true, .. } => {}
            Frame::Settings { settings, .. } => {
                self.settings(settings);
                frame::encode_settings_ack(&mut self.out);
                self.settled = true;
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
            Frame::Ping {
                ack: false,
                payload,
            } => frame::encode_ping(true, payload, &mut self.out),
            Frame::Ping { ack: true, .. } => {}
            Frame::WindowUpdate {
                stream: 0,
                increment,
            } => {
                self.connection_send_window += i64::from(increment);
                let ids: Vec<u32> = self.streams.keys().copied().collect();
                for id in ids {
                    self.send_data(id);
                }
            }
            Frame::WindowUpdate { stream, increment } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.send_window += i64::from(increment);
                    self.send_data(stream);
                }
            }
            Frame::Headers {
                stream,
                end_stream,
                block,
                ..
            } => self.headers(stream, end_stream, &block)?,
            Frame::Data {
                stream,
                end_stream,
                flow_len,
                ..
            } => self.data(stream, end_stream, flow_len),
            Frame::RstStream { stream, code } => {
                let status = Status::new(
                    Code::from_http2_error_code(code),
                    format!("stream reset by the server (HTTP/2 error {code:#x})"),
                );
                self.streams
                    .remove(&stream)
                    .map(|s| s.done.send(Err(status)));
            }
            Frame::GoAway { last_stream, .. } => {
                self.gone_away = true;
                // Streams above the last one were not processed: they fail now.
                let refused: Vec<u32> = self
                    .streams
                    .keys()
                    .copied()
                    .filter(|id| *id > last_stream)
                    .collect();
                for id in refused {
                    self.finish(
                        id,
                        Err(Status::unavailable("refused by the server's GOAWAY")),
                    );
                }
            }
            Frame::PushPromise { .. } => {
                return Err(self.fail(code::PROTOCOL_ERROR, "PUSH_PROMISE with push disabled"));
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    fn settings(&mut self, settings: Settings) {
        if let Some(n) = settings.max_concurrent_streams {
            self.max_streams = n as usize;
        }
        if let Some(window) = settings.initial_window_size {
            let delta = i64::from(window) - self.initial_send_window;
            self.initial_send_window = i64::from(window);
            for stream in self.streams.values_mut() {
                stream.send_window += delta;
            }
            let ids: Vec<u32> = self.streams.keys().copied().collect();
            for id in ids {
                self.send_data(id);
            }
        }
        if let Some(size) = settings.max_frame_size {
            self.max_frame_size = size as usize;
        }
        if let Some(size) = settings.header_table_size {
            self.encoder.set_peer_table_size(size as usize);
            // The next block carries the size update and may differ: encode again.
            self.block = None;
        }
    }

    /// Response headers, trailers, or a Trailers-Only response.
    fn headers(&mut self, id: u32, end_stream: bool, block: &Bytes) -> Result<(), Status> {
        let mut http_status = None;
        let mut grpc_status = None;
        let mut grpc_message = Bytes::new();
        let decoded = self.decoder.decode(block, MAX_HEADER_LIST, |field| {
            let text = std::str::from_utf8(&field.value).ok();
            match &field.name[..] {
                b":status" => http_status = text.and_then(|t| t.parse::<u16>().ok()),
                b"grpc-status" => grpc_status = text.and_then(|t| t.parse::<i32>().ok()),
                b"grpc-message" => grpc_message = field.value,
                _ => {}
            }
        });
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(e) => return Err(self.fail(code::COMPRESSION_ERROR, &e.to_string())),
        };
        let (sent_all, first_status) = match self.streams.get_mut(&id) {
            Some(stream) => {
                if stream.http_status.is_none() {
                    stream.http_status = http_status;
                }
                (stream.unsent.is_empty(), stream.http_status)
            }
            None => return Ok(()),
        };
        if decoded.too_large {
            frame::encode_rst_stream(id, code::CANCEL, &mut self.out);
            self.finish(
                id,
                Err(Status::resource_exhausted("response headers too large")),
            );
            return Ok(());
        }
        if !end_stream {
            return Ok(());
        }
        let outcome = match (grpc_status, first_status) {
            (Some(0), _) => Ok(()),
            (Some(n), _) => Err(Status::new(
                Code::from_i32(n),
                percent_decode(&grpc_message),
            )),
            (None, Some(200) | None) => Err(Status::internal("no grpc-status in the trailers")),
            (None, Some(http)) => Err(Status::new(
                Code::from_http_status(http),
                format!("HTTP status {http}"),
            )),
        };
        if !sent_all {
            // Answered before the request ended: the rest is not wanted.
            frame::encode_rst_stream(id, code::CANCEL, &mut self.out);
        }
        self.finish(id, outcome);
        Ok(())
    }

    fn data(&mut self, id: u32, end_stream: bool, flow_len: u32) {
        self.unacked += flow_len;
        if self.unacked >= CONNECTION_WINDOW / 2 {
            frame::encode_window_update(0, self.unacked, &mut self.out);
            self.unacked = 0;
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if end_stream {
            self.finish(
                id,
                Err(Status::internal("the stream ended without trailers")),
            );
            return;
        }
        stream.unacked += flow_len;
        if stream.unacked >= STREAM_WINDOW / 2 {
            frame::encode_window_update(id, stream.unacked, &mut self.out);
            stream.unacked = 0;
        }
    }

    fn finish(&mut self, id: u32, outcome: Result<(), Status>) {
        if let Some(stream) = self.streams.remove(&id) {
            let _ = stream.done.send(outcome);
        }
    }
}

/// `grpc-message`'s percent-encoding undone (invalid sequences kept as they are).
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `host:port` the lean engine can connect to, when `address` is one (not a target with
/// a scheme such as `dns:///` or `unix:`, nor a host without a port).
pub fn tcp_address(address: &str) -> Option<&str> {
    if address.contains("://")
        || ["unix:", "ipv4:", "ipv6:", "dns:"]
            .iter()
            .any(|scheme| address.starts_with(scheme))
    {
        return None;
    }
    let (host, port) = address.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode(b"a%20b%"), "a b%");
        assert_eq!(percent_decode(b"%E2%9C%93 ok %zz"), "\u{2713} ok %zz");
        assert_eq!(percent_decode(b""), "");
    }

    #[test]
    fn only_host_and_port_targets_are_lean() {
        assert_eq!(tcp_address("127.0.0.1:50051"), Some("127.0.0.1:50051"));
        assert_eq!(tcp_address("localhost:80"), Some("localhost:80"));
        assert_eq!(tcp_address("[::1]:50051"), Some("[::1]:50051"));
        for other in [
            "dns:///localhost:1",
            "unix:/tmp/s",
            "ipv4:1.2.3.4:5",
            "localhost",
            ":80",
            "h:x",
        ] {
            assert_eq!(tcp_address(other), None, "{other}");
        }
    }

    #[test]
    fn messages_get_the_five_byte_prefix() {
        assert_eq!(&frame_message(b"ab")[..], b"\0\0\0\0\x02ab");
    }
}
