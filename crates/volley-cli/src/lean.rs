//! The lean load engine of `volley bench`: one task per connection speaks HTTP/2 itself
//! (`volley-http2`'s frame codec and HPACK), as `h2load` does with nghttp2, so that the
//! generator costs a fraction of what a general client does per call and the server, not
//! the generator, is what a run measures.
//!
//! It knows only what a load run needs: one method, requests already encoded, responses
//! counted and dropped; plaintext TCP (`volley bench` uses Volley's own client for TLS and
//! every other target). The protocol is `volley_http2::client::ClientConnection`'s: it waits
//! for the server's SETTINGS, stays within its SETTINGS_MAX_CONCURRENT_STREAMS, obeys flow
//! control both ways, answers PINGs and SETTINGS, and stops opening streams after GOAWAY;
//! this module adds the socket, the calls waiting for a stream, and the header block encoded
//! once and reused.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use volley::{Code, Status};
use volley_http2::ReusableBlock;
use volley_http2::StreamMap;
use volley_http2::client::{ClientConnection, Config, Event};
use volley_http2::frame::code;
use volley_http2::hpack::{Field, Indexing};

/// Our stream window: a server may send this much per stream before we say "more".
const STREAM_WINDOW: u32 = 1 << 20;
/// Our connection window.
const CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest header list we accept from the server.
const MAX_HEADER_LIST: u32 = 64 << 10;

/// One call to make: its request messages, gRPC-framed one after the other, and where its
/// outcome goes.
struct Call {
    request: Bytes,
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

    /// Makes one call: sends `request` (gRPC-framed messages one after the other; the stream
    /// ends after them), reads the responses to the end, and returns the call's status.
    pub async fn call(&self, request: &Bytes) -> Result<(), Status> {
        let (done, outcome) = oneshot::channel();
        let call = Call {
            request: request.clone(),
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

/// A call on its stream.
struct Open {
    done: oneshot::Sender<Result<(), Status>>,
    /// Request bytes flow control held back.
    unsent: Bytes,
    /// The response headers' HTTP status.
    http_status: Option<u16>,
}

/// A connection's task: the socket, the protocol state, the calls.
struct Connection {
    io: TcpStream,
    read: BytesMut,
    conn: ClientConnection,
    /// The request's header fields, and their block once it no longer changes the tables.
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    block: Option<ReusableBlock>,
    open: StreamMap<Open>,
    waiting: VecDeque<Call>,
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
        Connection {
            io,
            read: BytesMut::with_capacity(64 << 10),
            conn: ClientConnection::new(Config {
                initial_window_size: STREAM_WINDOW,
                connection_window_size: CONNECTION_WINDOW,
                max_header_list_size: MAX_HEADER_LIST,
                ..Config::default()
            }),
            fields,
            block: None,
            open: StreamMap::default(),
            waiting: VecDeque::new(),
            ready: Some(ready),
        }
    }

    /// Runs until the handles are dropped and the calls end, or the connection fails; every
    /// call still open then fails UNAVAILABLE.
    async fn run(mut self, mut calls: mpsc::UnboundedReceiver<Call>) {
        let mut accepting = true;
        let mut events = Vec::new();
        let failure = loop {
            if let Err(e) = self.flush().await {
                break Status::unavailable(format!("write failed: {e}"));
            }
            if !accepting && self.open.is_empty() && self.waiting.is_empty() {
                break Status::unavailable("the connection is closed");
            }
            tokio::select! {
                call = calls.recv(), if accepting => match call {
                    Some(call) => {
                        self.waiting.push_back(call);
                        // Take every call queued meanwhile: one write for all.
                        while let Ok(call) = calls.try_recv() {
                            self.waiting.push_back(call);
                        }
                    }
                    None => accepting = false,
                },
                read = self.io.read_buf(&mut self.read) => match read {
                    Ok(0) => break Status::unavailable("the server closed the connection"),
                    Ok(_) => {
                        if let Err(e) = self.conn.receive(&mut self.read, &mut events) {
                            break Status::internal(format!("HTTP/2 error from the server: {e}"));
                        }
                        for event in events.drain(..) {
                            self.event(event);
                        }
                    }
                    Err(e) => break Status::unavailable(format!("read failed: {e}")),
                },
            }
            self.start_waiting();
        };
        let _ = self.flush().await;
        for (_, call) in self.open.drain() {
            let _ = call.done.send(Err(failure.clone()));
        }
        for call in self.waiting.drain(..) {
            let _ = call.done.send(Err(failure.clone()));
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let out = self.conn.output();
        if !out.is_empty() {
            self.io.write_all(out).await?;
            out.clear();
        }
        Ok(())
    }

    /// Opens streams for waiting calls while the server allows.
    fn start_waiting(&mut self) {
        while self.conn.can_open() {
            let Some(call) = self.waiting.pop_front() else {
                return;
            };
            let end_stream = call.request.is_empty();
            let reused = self
                .block
                .as_ref()
                .and_then(|block| self.conn.open_with_block(block, end_stream));
            let stream = match reused {
                Some(stream) => Some(stream),
                None => {
                    let fields: Vec<(&[u8], &[u8], Indexing)> = self
                        .fields
                        .iter()
                        .map(|(n, v)| (&n[..], &v[..], Indexing::Incremental))
                        .collect();
                    // Once a block changes nothing in the tables, it is reused as bytes
                    // (until the table changes: the server's SETTINGS may resize it).
                    self.block = self.conn.reusable_block(&fields);
                    match &self.block {
                        Some(block) => self.conn.open_with_block(block, end_stream),
                        None => self.conn.open(fields.iter().copied(), end_stream),
                    }
                }
            };
            let Some(stream) = stream else {
                self.waiting.push_front(call);
                return;
            };
            let mut unsent = call.request;
            if !unsent.is_empty() {
                self.conn.send_data(stream, &mut unsent, true);
            }
            self.open.insert(
                stream,
                Open {
                    done: call.done,
                    unsent,
                    http_status: None,
                },
            );
        }
        if self.conn.is_closing() {
            for call in self.waiting.drain(..) {
                let _ = call
                    .done
                    .send(Err(Status::unavailable("the server sent GOAWAY")));
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Ready => {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
            Event::Headers {
                stream,
                fields,
                end_stream,
            } => {
                let status = fields
                    .first()
                    .and_then(|f| std::str::from_utf8(&f.value).ok()?.parse().ok());
                if let Some(call) = self.open.get_mut(&stream) {
                    call.http_status = status;
                }
                if end_stream {
                    self.finish(stream, &fields);
                }
            }
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                // Responses are counted, not kept: credited back at once.
                self.conn.release(stream, data.len());
                if end_stream {
                    self.end(
                        stream,
                        Err(Status::internal("the stream ended without trailers")),
                    );
                }
            }
            Event::Trailers { stream, fields } => self.finish(stream, &fields),
            Event::Reset { stream, code, .. } => {
                let status = if code == code::REFUSED_STREAM {
                    Status::unavailable("the server refused the stream")
                } else {
                    Status::new(
                        Code::from_http2_error_code(code),
                        format!("stream reset (HTTP/2 error {code:#x})"),
                    )
                };
                self.end(stream, Err(status));
            }
            Event::WindowUpdate { .. } => {
                let held: Vec<u32> = self
                    .open
                    .iter()
                    .filter(|(_, call)| !call.unsent.is_empty())
                    .map(|(id, _)| *id)
                    .collect();
                for stream in held {
                    if let Some(call) = self.open.get_mut(&stream) {
                        self.conn.send_data(stream, &mut call.unsent, true);
                    }
                }
            }
            Event::HeadersTooLarge { .. }
            | Event::Ping { .. }
            | Event::PingAck { .. }
            | Event::GoAway { .. } => {}
        }
    }

    /// The call on `stream` ends with the status its trailers (or Trailers-Only headers)
    /// carry.
    fn finish(&mut self, stream: u32, fields: &[Field]) {
        let ok = fields
            .iter()
            .any(|f| &f.name[..] == b"grpc-status" && &f.value[..] == b"0");
        let outcome = if ok {
            Ok(())
        } else {
            // A failure (rare in a load run): read as Volley's client reads trailers.
            let mut trailers = http::HeaderMap::with_capacity(fields.len());
            for f in fields {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(&f.name),
                    http::HeaderValue::from_maybe_shared(f.value.clone()),
                ) {
                    trailers.append(name, value);
                }
            }
            let http_status = self.open.get(&stream).and_then(|c| c.http_status);
            match (Status::from_header_map(&trailers), http_status) {
                // `grpc-status` spelled otherwise than "0" (whitespace) is still OK.
                (Some(status), _) if status.code() == Code::Ok => Ok(()),
                (Some(status), _) => Err(status),
                (None, Some(200) | None) => Err(Status::internal("no grpc-status in the trailers")),
                (None, Some(http)) => Err(Status::new(
                    Code::from_http_status(http),
                    format!("HTTP status {http}"),
                )),
            }
        };
        if self.open.get(&stream).is_some_and(|c| !c.unsent.is_empty()) {
            // Answered before the request ended: the rest is not wanted.
            self.conn.reset(stream, code::CANCEL);
        }
        self.end(stream, outcome);
    }

    fn end(&mut self, stream: u32, outcome: Result<(), Status>) {
        if let Some(call) = self.open.remove(&stream) {
            let _ = call.done.send(outcome);
        }
    }
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
