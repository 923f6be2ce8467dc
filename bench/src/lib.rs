//! The three servers under test (Volley, tonic, bare h2) and the clients that drive the
//! streaming and client-cost scenarios. Every server answers `message = request.name`.

#![allow(missing_docs)]

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};

/// Volley's generated Greeter.
pub mod volley_gen {
    include!(concat!(env!("OUT_DIR"), "/volley/helloworld.rs"));
}

/// tonic's generated Greeter.
pub mod tonic_gen {
    include!(concat!(env!("OUT_DIR"), "/tonic/helloworld.rs"));
}

/// An endless stream of `make()`, always ready. (`tokio_stream::iter` returns Pending every
/// 32 items to be cooperative, which would make both frameworks flush 32 messages at a time.)
pub struct Forever<F>(pub F);

impl<T, F: FnMut() -> T + Unpin> Stream for Forever<F> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(Some((self.0)()))
    }
}

/// CPU seconds (user + system) this process has used so far.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field of
    // the line, stime the 15th, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------------------------------
// Volley

#[derive(Debug, Default)]
pub struct VolleyGreeter;

type VolleyStream = volley::BoxStream<volley_gen::HelloReply>;

impl volley_gen::Greeter for VolleyGreeter {
    async fn say_hello(
        &self,
        request: volley::Request<volley_gen::HelloRequest>,
    ) -> Result<volley::Response<volley_gen::HelloReply>, volley::Status> {
        Ok(volley::Response::new(volley_gen::HelloReply {
            message: request.into_inner().name,
        }))
    }

    type SayHelloBidiStream = VolleyStream;

    async fn say_hello_bidi(
        &self,
        request: volley::Request<volley::Streaming<volley_gen::HelloRequest>>,
    ) -> Result<volley::Response<Self::SayHelloBidiStream>, volley::Status> {
        let replies = request
            .into_inner()
            .map(|r| r.map(|h| volley_gen::HelloReply { message: h.name }));
        Ok(volley::Response::new(Box::pin(replies)))
    }

    type SayHelloStreamStream = VolleyStream;

    async fn say_hello_stream(
        &self,
        request: volley::Request<volley_gen::HelloRequest>,
    ) -> Result<volley::Response<Self::SayHelloStreamStream>, volley::Status> {
        let name = request.into_inner().name;
        let replies = Forever(move || {
            Ok(volley_gen::HelloReply {
                message: name.clone(),
            })
        });
        Ok(volley::Response::new(Box::pin(replies)))
    }
}

pub async fn serve_volley(listener: TcpListener) {
    serve_volley_on(listener, volley::Http2Engine::H2).await;
}

/// The same Volley server with its HTTP/2 served by `engine`.
pub async fn serve_volley_on(listener: TcpListener, engine: volley::Http2Engine) {
    let _ = volley::Server::builder()
        .http2_engine(engine)
        .add_service(volley_gen::GreeterServer::new(VolleyGreeter))
        .serve_with_listener(listener, std::future::pending())
        .await;
}

/// A Volley server observed as a production one would be (feature `otel`): with
/// `metrics`, gRFC A66's metrics recorded by `volley::otel::Metrics` into an SDK meter
/// provider (with a periodic reader, as an exporter would have; its export is not measured
/// here); with `traced`, every call's `grpc.server` span recorded by `tracing-opentelemetry`
/// into an SDK tracer provider (sampled, not exported).
#[cfg(feature = "otel")]
pub async fn serve_volley_observed(listener: TcpListener, metrics: bool, traced: bool) {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    let mut builder = volley::Server::builder();
    let meter_provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    if metrics {
        builder = builder.middleware(volley::otel::Metrics::new(&meter_provider.meter("bench")));
    }
    let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    if traced {
        // INFO and above, as a production service would filter (h2 has TRACE spans).
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer_provider.tracer("bench"))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        );
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    }
    let _ = builder
        .add_service(volley_gen::GreeterServer::new(VolleyGreeter))
        .serve_with_listener(listener, std::future::pending())
        .await;
}

// ---------------------------------------------------------------------------------------
// tonic

#[derive(Debug, Default)]
pub struct TonicGreeter;

type TonicStream =
    Pin<Box<dyn Stream<Item = Result<tonic_gen::HelloReply, tonic::Status>> + Send + 'static>>;

#[tonic::async_trait]
impl tonic_gen::greeter_server::Greeter for TonicGreeter {
    async fn say_hello(
        &self,
        request: tonic::Request<tonic_gen::HelloRequest>,
    ) -> Result<tonic::Response<tonic_gen::HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(tonic_gen::HelloReply {
            message: request.into_inner().name,
        }))
    }

    type SayHelloBidiStream = TonicStream;

    async fn say_hello_bidi(
        &self,
        request: tonic::Request<tonic::Streaming<tonic_gen::HelloRequest>>,
    ) -> Result<tonic::Response<Self::SayHelloBidiStream>, tonic::Status> {
        let replies = request
            .into_inner()
            .map(|r| r.map(|h| tonic_gen::HelloReply { message: h.name }));
        Ok(tonic::Response::new(Box::pin(replies)))
    }

    type SayHelloStreamStream = TonicStream;

    async fn say_hello_stream(
        &self,
        request: tonic::Request<tonic_gen::HelloRequest>,
    ) -> Result<tonic::Response<Self::SayHelloStreamStream>, tonic::Status> {
        let name = request.into_inner().name;
        let replies = Forever(move || {
            Ok(tonic_gen::HelloReply {
                message: name.clone(),
            })
        });
        Ok(tonic::Response::new(Box::pin(replies)))
    }
}

pub async fn serve_tonic(listener: TcpListener) {
    // TCP_NODELAY as the other two servers set it (tonic sets it only on listeners it binds
    // itself; without it, Nagle's algorithm adds 40 ms stalls).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let _ = tonic::transport::Server::builder()
        .add_service(tonic_gen::greeter_server::GreeterServer::new(TonicGreeter))
        .serve_with_incoming(incoming)
        .await;
}

// ---------------------------------------------------------------------------------------
// The bare h2 floor: SayHello only, the least work that answers a gRPC call correctly.

pub async fn serve_h2(listener: TcpListener) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::Builder::new()
                .initial_window_size(1024 * 1024)
                .initial_connection_window_size(2 * 1024 * 1024)
                .handshake::<_, Bytes>(socket)
                .await
            else {
                return;
            };
            while let Some(Ok((request, respond))) = conn.accept().await {
                tokio::spawn(h2_say_hello(request, respond));
            }
        });
    }
}

async fn h2_say_hello(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let mut body = request.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    if buf.len() < 5 {
        return;
    }
    buf.advance(5);
    let Ok(hello) = tonic_gen::HelloRequest::decode(buf.freeze()) else {
        return;
    };
    let reply = tonic_gen::HelloReply {
        message: hello.name,
    };
    let mut data = BytesMut::with_capacity(5 + reply.encoded_len());
    data.put_u8(0);
    data.put_u32(reply.encoded_len() as u32);
    let _ = reply.encode(&mut data);
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap_or_default();
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let _ = send.send_data(data.freeze(), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

// ---------------------------------------------------------------------------------------
// Clients

/// A Volley channel to `url` whose connections run on h2 (`impl_` "volley", "volley-reuse")
/// or on Volley's own engine ("volley-engine").
fn volley_channel(impl_: &str, url: &str) -> Result<volley::Channel, String> {
    let engine = if impl_ == "volley-engine" {
        volley::Http2Engine::Volley
    } else {
        volley::Http2Engine::H2
    };
    volley::Channel::builder(url)
        .http2_engine(engine)
        .build()
        .map_err(|e| e.to_string())
}

/// Proves that the server on `port` answers SayHello with `grpc-status: 0` and the name.
pub async fn check(port: u16) -> Result<(), String> {
    let channel =
        volley::Channel::new(&format!("http://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let client = volley_gen::GreeterClient::new(channel);
    for name in ["x", "a longer name, with UTF-8: \u{263A}"] {
        let reply = client
            .say_hello(volley_gen::HelloRequest { name: name.into() })
            .await
            .map_err(|s| format!("SayHello failed: {s}"))?;
        if reply.get_ref().message != name {
            return Err(format!("wrong reply {:?}", reply.get_ref().message));
        }
    }
    Ok(())
}

/// Messages per second received on one stream for `duration`, with `impl_` ("volley",
/// "volley-reuse": Volley reading into one reused message, "volley-engine": Volley on its
/// own HTTP/2 engine, or "tonic") as the client; `bidi`
/// streams requests too, otherwise one request and a server stream.
pub async fn stream_rate(
    impl_: &str,
    port: u16,
    bidi: bool,
    duration: Duration,
) -> Result<u64, String> {
    let url = format!("http://127.0.0.1:{port}");
    let name = || "x".to_owned();
    let deadline = Instant::now() + duration;
    let mut count = 0u64;
    match impl_ {
        "volley" | "volley-reuse" | "volley-engine" => {
            let client = volley_gen::GreeterClient::new(volley_channel(impl_, &url)?);
            let mut replies = if bidi {
                let requests = Forever(move || volley_gen::HelloRequest { name: name() });
                client.say_hello_bidi(requests).await
            } else {
                client
                    .say_hello_stream(volley_gen::HelloRequest { name: name() })
                    .await
            }
            .map_err(|s| s.to_string())?
            .into_inner();
            if impl_ == "volley-reuse" {
                // Informational only (tonic has no equivalent): one reply message reused.
                let mut reply = volley_gen::HelloReply::default();
                while Instant::now() < deadline {
                    for _ in 0..1000 {
                        replies
                            .message_into(&mut reply)
                            .await
                            .map_err(|s| s.to_string())?;
                        count += 1;
                    }
                }
                return Ok(count);
            }
            while Instant::now() < deadline {
                for _ in 0..1000 {
                    replies.message().await.map_err(|s| s.to_string())?;
                    count += 1;
                }
            }
        }
        "tonic" => {
            let mut client = tonic_gen::greeter_client::GreeterClient::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            let mut replies = if bidi {
                let requests = Forever(move || tonic_gen::HelloRequest { name: name() });
                client.say_hello_bidi(requests).await
            } else {
                client
                    .say_hello_stream(tonic_gen::HelloRequest { name: name() })
                    .await
            }
            .map_err(|s| s.to_string())?
            .into_inner();
            while Instant::now() < deadline {
                for _ in 0..1000 {
                    replies.message().await.map_err(|s| s.to_string())?;
                    count += 1;
                }
            }
        }
        other => return Err(format!("unknown client {other}")),
    }
    Ok(count)
}

/// Unary calls from `concurrency` tasks on one channel for `duration`: how many completed.
pub async fn unary_load(
    impl_: &str,
    port: u16,
    concurrency: usize,
    duration: Duration,
) -> Result<u64, String> {
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    match impl_ {
        "volley" | "volley-engine" => {
            let client = volley_gen::GreeterClient::new(volley_channel(impl_, &url)?);
            for _ in 0..concurrency {
                let client = client.clone();
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let request = volley_gen::HelloRequest { name: "x".into() };
                        client.say_hello(request).await.map_err(|s| s.to_string())?;
                        n += 1;
                    }
                    Ok::<u64, String>(n)
                });
            }
        }
        "tonic" => {
            let channel = tonic::transport::Channel::from_shared(url)
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let client = tonic_gen::greeter_client::GreeterClient::new(channel);
            for _ in 0..concurrency {
                let mut client = client.clone();
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let request = tonic_gen::HelloRequest { name: "x".into() };
                        client.say_hello(request).await.map_err(|s| s.to_string())?;
                        n += 1;
                    }
                    Ok::<u64, String>(n)
                });
            }
        }
        other => return Err(format!("unknown client {other}")),
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------
// Hedging (gRFC A6): a backend that stalls now and then, with and without hedged calls.

/// A Volley greeter that answers every `every`-th call after `delay`, the others at once.
#[derive(Debug)]
pub struct StallingGreeter {
    calls: std::sync::atomic::AtomicU64,
    every: u64,
    delay: Duration,
}

impl volley_gen::Greeter for StallingGreeter {
    async fn say_hello(
        &self,
        request: volley::Request<volley_gen::HelloRequest>,
    ) -> Result<volley::Response<volley_gen::HelloReply>, volley::Status> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.every > 0 && n % self.every == self.every - 1 {
            tokio::time::sleep(self.delay).await;
        }
        Ok(volley::Response::new(volley_gen::HelloReply {
            message: request.into_inner().name,
        }))
    }

    type SayHelloBidiStream = VolleyStream;

    async fn say_hello_bidi(
        &self,
        _: volley::Request<volley::Streaming<volley_gen::HelloRequest>>,
    ) -> Result<volley::Response<Self::SayHelloBidiStream>, volley::Status> {
        Err(volley::Status::unimplemented("unary only"))
    }

    type SayHelloStreamStream = VolleyStream;

    async fn say_hello_stream(
        &self,
        _: volley::Request<volley_gen::HelloRequest>,
    ) -> Result<volley::Response<Self::SayHelloStreamStream>, volley::Status> {
        Err(volley::Status::unimplemented("unary only"))
    }
}

/// Serves a [`StallingGreeter`] that stalls `delay` on every `every`-th call.
pub async fn serve_volley_stalling(listener: TcpListener, every: u64, delay: Duration) {
    let greeter = StallingGreeter {
        calls: std::sync::atomic::AtomicU64::new(0),
        every,
        delay,
    };
    let _ = volley::Server::builder()
        .add_service(volley_gen::GreeterServer::new(greeter))
        .serve_with_listener(listener, std::future::pending())
        .await;
}

/// The latency of each of `calls` unary calls made by `concurrency` tasks over one
/// round_robin channel to `ports`, hedged (two attempts, `hedging_delay` apart) or not.
pub async fn hedging_latencies(
    ports: &[u16],
    hedging_delay: Option<Duration>,
    calls: usize,
    concurrency: usize,
) -> Result<Vec<Duration>, String> {
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let method_config = match hedging_delay {
        Some(delay) => format!(
            r#", "methodConfig": [{{"name": [{{"service": "helloworld.Greeter"}}],
                "hedgingPolicy": {{"maxAttempts": 2, "hedgingDelay": "{}s",
                  "nonFatalStatusCodes": ["UNAVAILABLE"]}}}}]"#,
            delay.as_secs_f64()
        ),
        None => String::new(),
    };
    let config = format!(r#"{{"loadBalancingConfig": [{{"round_robin": {{}}}}]{method_config}}}"#);
    let channel = volley::Channel::builder(&format!("ipv4:{}", addresses.join(",")))
        .default_service_config(&config)
        .build()
        .map_err(|e| e.to_string())?;
    let client = volley_gen::GreeterClient::new(channel);
    // Every backend connected before measuring.
    for _ in 0..ports.len() * 20 {
        let request = volley::Request::new(volley_gen::HelloRequest { name: "w".into() })
            .with_wait_for_ready(true);
        client.say_hello(request).await.map_err(|s| s.to_string())?;
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                let start = Instant::now();
                let request = volley_gen::HelloRequest { name: "x".into() };
                client.say_hello(request).await.map_err(|s| s.to_string())?;
                latencies.push(start.elapsed());
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut all = Vec::with_capacity(calls);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.map_err(|e| e.to_string())??);
    }
    all.sort();
    Ok(all)
}

// ---------------------------------------------------------------------------------------
// Plain TCP: the loopback ceiling

/// Writes zeros to every connection as fast as the socket takes them.
pub async fn serve_tcp(listener: TcpListener) {
    use tokio::io::AsyncWriteExt;
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let chunk = vec![0u8; 256 << 10];
            while socket.write_all(&chunk).await.is_ok() {}
        });
    }
}

/// Bytes read from a [`serve_tcp`] server on `port` in `duration`.
pub async fn tcp_rate(port: u16, duration: Duration) -> Result<u64, String> {
    use tokio::io::AsyncReadExt;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + duration;
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    while Instant::now() < deadline {
        match socket.read(&mut buf).await {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => total += n as u64,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(total)
}
