//! Helpers for the integration tests: the echo service, a server on a free loopback port that
//! stops when dropped, and a raw HTTP/2 client for requests Volley's own client won't send.

#![allow(unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use volley::server::ServerBuilder;
use volley::{Code, MetadataMap, MetadataValue, Request, Response, Status, Streaming};

/// Every generated package, nested by name (`volley::test`, `volley::test::common`).
pub mod protos {
    include!(concat!(env!("OUT_DIR"), "/protos.rs"));
}

pub use protos::volley::test as echo;
pub use protos::volley::test::common;

use echo::{Echo, EchoReply, EchoRequest};

/// What handlers report to the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A handler started (with the request's message).
    Started(String),
    /// A handler future was dropped before it finished.
    Dropped(String),
    /// A handler finished.
    Finished(String),
    /// A bidi handler's request stream failed with this code.
    RequestStreamFailed(Code),
}

/// Put into a request's extensions by an interceptor; the echo service prefixes its unary
/// reply with the name.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Reports `Dropped` unless disarmed.
struct DropReporter {
    tx: mpsc::UnboundedSender<Event>,
    name: String,
    armed: bool,
}

impl Drop for DropReporter {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(Event::Dropped(self.name.clone()));
        }
    }
}

/// The echo service of `proto/echo.proto`.
#[derive(Clone)]
pub struct EchoService {
    pub events: mpsc::UnboundedSender<Event>,
}

fn echo_metadata(from: &MetadataMap) -> MetadataMap {
    let mut out = MetadataMap::new();
    for (key, value) in from.iter() {
        if !key.starts_with("x-echo-") {
            continue;
        }
        match value {
            MetadataValue::Ascii(v) => out.append(key, v).unwrap(),
            MetadataValue::Binary(b) => out.append_bin(key, &b).unwrap(),
        }
    }
    out
}

fn reply(req: &EchoRequest, index: i32, peer: &str) -> EchoReply {
    EchoReply {
        message: req.message.clone(),
        index,
        payload: vec![b'r'; req.response_size.max(0) as usize],
        peer: peer.to_owned(),
        tags: req.tags.clone(),
    }
}

fn requested_status(req: &EchoRequest, metadata: &MetadataMap) -> Option<Status> {
    (req.status_code != 0).then(|| {
        Status::with_metadata(
            Code::from_i32(req.status_code),
            req.status_message.clone(),
            echo_metadata(metadata),
        )
    })
}

impl EchoService {
    /// A service that reports its handlers' events to `events`.
    pub fn new(events: mpsc::UnboundedSender<Event>) -> EchoService {
        EchoService { events }
    }

    async fn start(&self, req: &EchoRequest) -> DropReporter {
        let _ = self.events.send(Event::Started(req.message.clone()));
        let guard = DropReporter {
            tx: self.events.clone(),
            name: req.message.clone(),
            armed: true,
        };
        if req.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(req.sleep_ms as u64)).await;
        }
        guard
    }

    fn finish(&self, mut guard: DropReporter) {
        guard.armed = false;
        let _ = self.events.send(Event::Finished(guard.name.clone()));
    }
}

type ReplyStream = volley::BoxStream<EchoReply>;

impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let guard = self.start(request.get_ref()).await;
        if request.get_ref().message == "panic" {
            panic!("the echo handler was asked to panic");
        }
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let req = request.get_ref();
        if let Some(status) = requested_status(req, request.metadata()) {
            self.finish(guard);
            return Err(status);
        }
        let mut resp = Response::new(reply(req, 0, &peer));
        if let Some(Caller(name)) = request.extensions().get::<Caller>() {
            resp.get_mut().message = format!("{name}: {}", req.message);
        }
        *resp.metadata_mut() = echo_metadata(request.metadata());
        *resp.trailers_mut() = echo_metadata(request.metadata());
        self.finish(guard);
        Ok(resp)
    }

    async fn connect(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(reply(request.get_ref(), 0, "connect")))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let guard = self.start(request.get_ref()).await;
        let req = request.get_ref().clone();
        if let Some(status) = requested_status(&req, request.metadata()) {
            self.finish(guard);
            return Err(status);
        }
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let count = req.count.max(0);
        let stream = tokio_stream::iter((0..count).map(move |i| {
            if req.message == "panic" && i == 1 {
                panic!("the echo stream was asked to panic");
            }
            Ok(reply(&req, i, &peer))
        }));
        let mut resp = Response::new(Box::pin(stream) as ReplyStream);
        *resp.metadata_mut() = echo_metadata(request.metadata());
        *resp.trailers_mut() = echo_metadata(request.metadata());
        self.finish(guard);
        Ok(resp)
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let metadata = echo_metadata(request.metadata());
        let mut stream = request.into_inner();
        let mut count = 0;
        let mut joined = String::new();
        while let Some(req) = stream.message().await? {
            if let Some(status) = requested_status(&req, &metadata) {
                return Err(status);
            }
            count += 1;
            if count <= 100 {
                joined.push_str(&req.message);
            }
        }
        let mut resp = Response::new(EchoReply {
            message: joined,
            index: count,
            ..Default::default()
        });
        *resp.metadata_mut() = metadata.clone();
        *resp.trailers_mut() = metadata;
        Ok(resp)
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let metadata = echo_metadata(request.metadata());
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let trailer_md = metadata.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                match incoming.message().await {
                    Ok(Some(req)) => {
                        let item = match requested_status(&req, &trailer_md) {
                            Some(status) => Err(status),
                            None => Ok(reply(&req, index, "")),
                        };
                        let failed = item.is_err();
                        if tx.send(item).await.is_err() || failed {
                            return;
                        }
                        index += 1;
                    }
                    Ok(None) => return,
                    Err(status) => {
                        let _ = events.send(Event::RequestStreamFailed(status.code()));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut resp = Response::new(Box::pin(stream) as ReplyStream);
        *resp.metadata_mut() = metadata.clone();
        *resp.trailers_mut() = metadata;
        Ok(resp)
    }
}

/// A server on 127.0.0.1 with a free port; shut down gracefully by [`TestServer::shutdown`]
/// or aborted when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts the echo service with default options.
    pub async fn start() -> TestServer {
        TestServer::start_with(|b| b).await
    }

    /// Starts the echo service with options set by `configure`.
    pub async fn start_with(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestServer::start_on(listener, configure)
    }

    /// Starts the echo service on `listener` (to restart a server on a known port).
    pub fn start_on(
        listener: TcpListener,
        configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let builder = configure(
            volley::Server::builder()
                .add_service(echo::EchoServer::new(EchoService { events: events_tx })),
        );
        let task = tokio::spawn(builder.serve_with_listener(listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            events,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn target(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client on a new channel to this server.
    pub fn client(&self) -> echo::EchoClient {
        echo::EchoClient::new(volley::Channel::new(&self.target()).unwrap())
    }

    /// Waits (at most 5 s) for the next event.
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("no event within 5 s")
            .expect("event channel closed")
    }

    /// How many calls started since the last look (drains the events).
    pub fn take_started(&mut self) -> usize {
        let mut n = 0;
        while let Ok(event) = self.events.try_recv() {
            if matches!(event, Event::Started(_)) {
                n += 1;
            }
        }
        n
    }

    /// Stops at once, as a crash would: the listener and every connection are dropped
    /// without GOAWAY.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Starts a graceful shutdown and returns a handle that completes when it is done.
    pub fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("already shut down")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of `backend`, reporting every connection it closes, so
/// that tests can see when a client lets go of a connection.
pub struct Proxy {
    pub addr: SocketAddr,
    /// One message per proxied connection that has ended (both directions closed).
    pub closed: mpsc::UnboundedReceiver<()>,
    /// How many connections it accepted.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `backend`.
    pub async fn start(backend: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((mut inbound, _)) = r else { continue };
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let closed_tx = closed_tx.clone();
                        pipes.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                            let _ = closed_tx.send(());
                        });
                    }
                    Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
                }
            }
        });
        Proxy {
            addr,
            closed,
            accepted,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stand-in for a connection-level (L4) load balancer on 127.0.0.1: each new connection
/// goes to the next backend of a list that can change, round robin; forwarding can be frozen
/// (bytes are held, nothing is closed), as a network partition would.
pub struct L4Proxy {
    pub addr: SocketAddr,
    backends: std::sync::Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    frozen: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl L4Proxy {
    /// Starts a proxy spreading connections over `backends`.
    pub async fn start(backends: &[SocketAddr]) -> L4Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let list = std::sync::Arc::new(std::sync::Mutex::new(backends.to_vec()));
        let (frozen, frozen_rx) = tokio::sync::watch::channel(false);
        let list2 = list.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            let mut next = 0usize;
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((inbound, _)) = r else { continue };
                        let backend = {
                            let list = list2.lock().unwrap();
                            list[next % list.len()]
                        };
                        next += 1;
                        let frozen = frozen_rx.clone();
                        pipes.spawn(async move {
                            let Ok(outbound) = tokio::net::TcpStream::connect(backend).await else {
                                return;
                            };
                            let (in_r, in_w) = inbound.into_split();
                            let (out_r, out_w) = outbound.into_split();
                            tokio::join!(
                                pipe(in_r, out_w, frozen.clone()),
                                pipe(out_r, in_w, frozen)
                            );
                        });
                    }
                    Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
                }
            }
        });
        L4Proxy {
            addr,
            backends: list,
            frozen,
            task,
        }
    }

    /// Adds a backend; new connections may go to it.
    pub fn add_backend(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().push(backend);
    }

    /// Stops (`true`) or resumes forwarding bytes on every connection.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

/// Copies one direction of a proxied connection, holding bytes while frozen.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            // Stop reading as soon as the proxy freezes.
            _ = frozen.wait_for(|f| *f) => continue,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for L4Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a test body with a time bound.
pub async fn bounded<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test exceeded its time bound")
}

/// What a raw HTTP/2 request got back.
#[derive(Debug)]
pub struct RawResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
    /// True when the response headers carried END_STREAM (Trailers-Only or a bare HTTP error).
    pub headers_only: bool,
}

impl RawResponse {
    /// `grpc-status` from the trailers, or from the headers of a Trailers-Only response.
    pub fn grpc_status(&self) -> Option<i32> {
        let from = |h: &http::HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok())
        };
        self.trailers
            .as_ref()
            .and_then(from)
            .or_else(|| from(&self.headers))
    }

    /// `grpc-message`, decoded.
    pub fn grpc_message(&self) -> String {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .or_else(|| self.headers.get("grpc-message"))
            .map(|v| percent_decode(v.as_bytes()))
            .unwrap_or_default()
    }
}

/// Sends one request over a fresh HTTP/2 connection, with the given method, path, headers and
/// body, and collects the response.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> RawResponse {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, mut send) = client.send_request(req.body(()).unwrap(), false).unwrap();
    let _ = send.send_data(body, true);
    let resp = resp.await.unwrap();
    let (parts, mut recv) = resp.into_parts();
    let headers_only = recv.is_end_stream();
    let mut body = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.put(chunk);
    }
    let trailers = if headers_only {
        None
    } else {
        recv.trailers().await.unwrap()
    };
    drop(client);
    conn_task.abort();
    RawResponse {
        status: parts.status,
        headers: parts.headers,
        body: body.freeze(),
        trailers,
        headers_only,
    }
}

/// A raw POST to the echo service's `Unary` method, bounded to 10 s.
pub async fn raw_unary(addr: SocketAddr, headers: &[(&str, &str)], body: Bytes) -> RawResponse {
    bounded(
        10,
        raw_request(addr, "POST", "/volley.test.Echo/Unary", headers, body),
    )
    .await
}

/// The gRPC frame of an encoded message: flag 0, length, bytes.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Decodes the messages of a response body.
pub fn unframe<M: prost::Message + Default>(mut body: Bytes) -> Vec<M> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let _flag = body.get_u8();
        let len = body.get_u32() as usize;
        out.push(M::decode(body.split_to(len)).unwrap());
    }
    out
}

/// The gRPC request headers every raw call needs.
pub const GRPC_HEADERS: &[(&str, &str)] =
    &[("content-type", "application/grpc"), ("te", "trailers")];

/// PEM files for the TLS tests, read without a PEM crate.
pub mod pem {
    /// The bytes of `interop/certs/<name>` (gRPC's test certificates).
    pub fn test_cert_file(name: &str) -> Vec<u8> {
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/certs");
        std::fs::read(format!("{certs}/{name}")).unwrap()
    }

    /// The DER certificates of a PEM file.
    pub fn rustls_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        let text = String::from_utf8_lossy(pem);
        text.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body = block.split("-----END CERTIFICATE-----").next().unwrap();
                rustls::pki_types::CertificateDer::from(decode_base64(body))
            })
            .collect()
    }

    /// The DER body of a single-block PEM file.
    pub fn pem_body(pem: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(pem);
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        decode_base64(&body)
    }

    pub fn decode_base64(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text
            .bytes()
            .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        {
            let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}

/// Decodes a `grpc-message` value (`%XX` escapes, `doc/PROTOCOL-HTTP2.md`), as a test reads
/// one off the wire; invalid escapes stay as they are.
pub fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
