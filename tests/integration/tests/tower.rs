//! tower interop over loopback: a Volley server wrapped in tower and tower-http layers
//! (concurrency limit, load shedding, timeout, a response header), and a `Channel` used as a
//! tower service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tower::ServiceBuilder;
use tower::ServiceExt;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use volley::{Channel, Code, Request, Response, Server, ServerBuilder, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::bounded;

/// A greeter whose handlers wait for a permit of `gate` (when the name is "wait"), and
/// count how many run at once.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// Told when a handler starts, and when one is dropped unfinished.
    events: mpsc::UnboundedSender<&'static str>,
}

struct Running(Gated);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Greeter for Gated {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let _running = Running(self.clone());
        let _ = self.events.send("started");
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("name must not be empty"));
        }
        if name == "wait" {
            struct Dropped(mpsc::UnboundedSender<&'static str>, bool);
            impl Drop for Dropped {
                fn drop(&mut self) {
                    if !self.1 {
                        let _ = self.0.send("dropped");
                    }
                }
            }
            let mut dropped = Dropped(self.events.clone(), false);
            let permit = self
                .gate
                .acquire()
                .await
                .map_err(|_| Status::internal("closed"))?;
            permit.forget();
            dropped.1 = true;
        }
        Ok(Response::new(HelloReply {
            message: format!("hello {name}"),
        }))
    }
}

struct Served {
    addr: SocketAddr,
    service: Gated,
    events: mpsc::UnboundedReceiver<&'static str>,
    _stop: oneshot::Sender<()>,
}

async fn serve(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events_tx, events) = mpsc::unbounded_channel();
    let service = Gated {
        gate: Arc::new(Semaphore::new(0)),
        running: Arc::default(),
        most: Arc::default(),
        events: events_tx,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        configure(Server::builder())
            .add_service(GreeterServer::new(service.clone()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Served {
        addr,
        service,
        events,
        _stop: stop,
    }
}

fn client(addr: SocketAddr) -> GreeterClient {
    GreeterClient::new(Channel::new(&format!("http://{addr}")).unwrap())
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into() }
}

/// Four calls that each wait at the gate, released one permit at a time as each handler
/// starts: how many ran at once.
async fn most_at_once(served: &mut Served) -> usize {
    let client = client(served.addr);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.say_hello(hello("wait")).await })
        })
        .collect();
    for _ in 0..4 {
        assert_eq!(bounded(10, served.events.recv()).await, Some("started"));
        served.service.gate.add_permits(1);
    }
    for call in calls {
        let reply = bounded(10, call).await.unwrap().unwrap();
        assert_eq!(reply.into_inner().message, "hello wait");
    }
    served.service.most.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_concurrency_limit_layer_runs_one_handler_at_a_time() {
    let mut limited = serve(|b| b.layer(ConcurrencyLimitLayer::new(1))).await;
    assert_eq!(most_at_once(&mut limited).await, 1);
}

#[tokio::test]
async fn without_a_layer_the_same_calls_run_together() {
    let mut plain = serve(|b| b).await;
    // The gate opens one permit per started handler, so all four start before any ends
    // only if nothing limits them; at least two overlap.
    assert!(most_at_once(&mut plain).await > 1);
}

#[tokio::test]
async fn a_tower_http_layer_sets_a_response_header() {
    let served = serve(|b| {
        b.layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    http::HeaderName::from_static("x-served-through"),
                    http::HeaderValue::from_static("tower-http"),
                ))
                .layer(ConcurrencyLimitLayer::new(8)),
        )
    })
    .await;
    let reply = bounded(10, client(served.addr).say_hello(hello("x")))
        .await
        .unwrap();
    assert_eq!(reply.metadata().get("x-served-through"), Some("tower-http"));
    assert_eq!(reply.into_inner().message, "hello x");
    // Errors pass through the layers too.
    let status = bounded(10, client(served.addr).say_hello(hello("")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn load_shedding_answers_unavailable_while_the_limit_is_full() {
    let mut served = serve(|b| {
        b.layer(
            ServiceBuilder::new()
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(1)),
        )
    })
    .await;
    let client = client(served.addr);
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.say_hello(hello("wait")).await })
    };
    assert_eq!(bounded(10, served.events.recv()).await, Some("started"));
    let status = bounded(10, client.say_hello(hello("second")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    served.service.gate.add_permits(1);
    bounded(10, first).await.unwrap().unwrap();
    // With the permit back, calls go through again.
    bounded(10, client.say_hello(hello("third"))).await.unwrap();
}

#[tokio::test]
async fn a_timeout_layer_ends_the_call_and_drops_its_handler() {
    let mut served = serve(|b| b.layer(TimeoutLayer::new(Duration::from_millis(100)))).await;
    let status = bounded(10, client(served.addr).say_hello(hello("wait")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
    assert_eq!(bounded(10, served.events.recv()).await, Some("started"));
    assert_eq!(bounded(10, served.events.recv()).await, Some("dropped"));
}

/// Reads a response body to its end: the DATA and the trailers.
async fn read_body<B>(body: B) -> (Vec<u8>, Option<http::HeaderMap>)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (data, trailers)
}

/// A request body of one gRPC message.
struct OneMessage(Option<Bytes>);

impl Body for OneMessage {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn framed(message: &HelloRequest) -> Bytes {
    use prost::Message;
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode(&mut out).unwrap();
    Bytes::from(out)
}

#[tokio::test]
async fn a_channel_is_a_tower_service() {
    let served = serve(|b| b).await;
    let channel = Channel::new(&format!("http://{}", served.addr)).unwrap();
    // A tower layer on the client side: the channel under a concurrency limit.
    let service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(2))
        .service(channel);
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(OneMessage(Some(framed(&hello("raw")))))
        .unwrap();
    let response = bounded(10, service.oneshot(request)).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/grpc"
    );
    let (data, trailers) = bounded(10, read_body(response.into_body())).await;
    assert_eq!(data[0], 0, "uncompressed");
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let reply = <HelloReply as prost::Message>::decode(&data[5..5 + len]).unwrap();
    assert_eq!(reply.message, "hello raw");
    assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn a_layered_server_answers_a_raw_request_trailers_only() {
    let served = serve(|b| b.layer(ConcurrencyLimitLayer::new(4))).await;
    let channel = Channel::new(&format!("http://{}", served.addr)).unwrap();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(OneMessage(Some(framed(&hello("")))))
        .unwrap();
    let response = bounded(10, channel.oneshot(request)).await.unwrap();
    // An error is Trailers-Only: grpc-status in the headers, no body.
    assert_eq!(response.headers().get("grpc-status").unwrap(), "3");
    let (data, trailers) = bounded(10, read_body(response.into_body())).await;
    assert!(data.is_empty() && trailers.is_none());
}

#[tokio::test]
async fn streaming_calls_of_every_kind_run_through_a_layer() {
    use volley_integration_tests::echo::EchoRequest;
    let server = volley_integration_tests::TestServer::start_with(|b| {
        b.layer(
            ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::overriding(
                    http::HeaderName::from_static("x-layer"),
                    http::HeaderValue::from_static("yes"),
                ))
                .layer(ConcurrencyLimitLayer::new(4)),
        )
    })
    .await;
    let client = server.client();
    let say = |m: &str| EchoRequest {
        message: m.into(),
        ..Default::default()
    };
    // Server streaming: three replies, then OK.
    let three = EchoRequest {
        count: 3,
        ..say("s")
    };
    let mut replies = bounded(10, client.server_stream(three)).await.unwrap();
    assert_eq!(replies.metadata().get("x-layer"), Some("yes"));
    let mut n = 0;
    while bounded(10, replies.get_mut().message())
        .await
        .unwrap()
        .is_some()
    {
        n += 1;
    }
    assert_eq!(n, 3);
    // Client streaming: the messages arrive through the layer's request body.
    let reply = bounded(
        10,
        client.client_stream(tokio_stream::iter([say("a"), say("b"), say("c")])),
    )
    .await
    .unwrap();
    assert_eq!(reply.into_inner().message, "abc");
    // Bidi: each message echoed as it comes.
    let (tx, rx) = mpsc::channel(4);
    let mut echoes = bounded(
        10,
        client.bidi(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .into_inner();
    for word in ["x", "y"] {
        tx.send(say(word)).await.unwrap();
        let echo = bounded(10, echoes.message()).await.unwrap().unwrap();
        assert_eq!(echo.message, word);
    }
    drop(tx);
    assert!(bounded(10, echoes.message()).await.unwrap().is_none());
    // A large unary reply crosses the pipe's window under flow control.
    let big = EchoRequest {
        response_size: 1 << 20,
        ..say("big")
    };
    let reply = bounded(10, client.unary(big)).await.unwrap();
    assert_eq!(reply.into_inner().payload.len(), 1 << 20);
}
