//! One inbound call on the server: header checks, the four RPC shapes, and the response side
//! (headers, messages, trailers or Trailers-Only), per `doc/PROTOCOL-HTTP2.md`.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Sleep;

use super::ServerConfig;
use crate::codec::{
    self, BufferQuota, CallCompression, CompressionEncoding, MessageCompressed, SendCompression,
    compression,
};
use crate::metadata::MetadataMap;
use crate::middleware::{Direction, Middlewares, Observers, RpcKind, Side as CallSide};
use crate::orca::CallMetricsRecorder;
use crate::streaming::{Side, Streaming};
use crate::transport::server::Respond;
use crate::transport::{Panics, Pumped, RecvBody, SendBody, deadline_passed, send_messages};
use crate::untrusted::Quoted;
use crate::{Request, Response, Status, timeout};

/// An inbound call handed to a [`crate::server::Service`]. Generated code passes it to one of
/// [`ServerCall::unary`], [`ServerCall::server_streaming`], [`ServerCall::client_streaming`]
/// or [`ServerCall::streaming`], which run the handler and write the response.
pub struct ServerCall {
    headers: HeaderMap,
    body: RecvBody,
    responder: Responder,
    timeout: Option<Duration>,
    request_encoding: Option<CompressionEncoding>,
    remote_addr: Option<SocketAddr>,
    /// The connection's budget for partly received request messages.
    quota: Arc<BufferQuota>,
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("timeout", &self.timeout)
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

/// The response half of a call.
struct Responder {
    respond: Respond,
    config: Arc<ServerConfig>,
    response_encoding: Option<CompressionEncoding>,
    /// The algorithms the client's `grpc-accept-encoding` lists (a bit per
    /// [`CompressionEncoding::ALL`] entry), read only when the server compresses at all.
    accepted: u8,
    deadline: Option<Pin<Box<Sleep>>>,
    /// What only some calls need (compression control, load reports, middleware), boxed so
    /// that a call without them stays small: every call's future moves its `ServerCall`.
    extras: Option<Box<ResponderExtras>>,
}

/// The parts of a [`Responder`] that only some calls use.
#[derive(Default)]
struct ResponderExtras {
    /// The handler's per-message switch over `response_encoding` (only when there is one).
    send_compression: Option<SendCompression>,
    /// The call's load report, when the server sends them.
    call_metrics: Option<CallMetricsRecorder>,
    /// The server's middlewares, then the service's, and the call's `:path` (until the call
    /// starts).
    middlewares: Option<(Middlewares, String)>,
    /// The call's middleware observers, once it has started with middlewares.
    observers: Option<Observers>,
    /// The call's `grpc.server` span, when tracing records it.
    span: Option<tracing::Span>,
}

impl ResponderExtras {
    /// The call ended with `status`: its span and its observers see it.
    fn end(&self, status: &Status, trailers: &MetadataMap) {
        if let Some(span) = &self.span {
            span.record("rpc.grpc.status_code", status.code() as i32);
        }
        if let Some(observers) = &self.observers {
            observers.end(status, trailers);
        }
    }

    /// The call ended with OK.
    fn end_ok(&self, trailers: &MetadataMap) {
        if let Some(span) = &self.span {
            span.record("rpc.grpc.status_code", 0);
        }
        if let Some(observers) = &self.observers {
            observers.end_ok(trailers);
        }
    }
}

/// The call's `grpc.server` span (OpenTelemetry's RPC conventions), or a disabled span (a
/// check of the callsite's interest, nothing more) when tracing does not record it.
fn server_span(path: &str, remote_addr: Option<SocketAddr>) -> tracing::Span {
    tracing::info_span!(
        target: "volley::server",
        "grpc.server",
        otel.name = crate::method_path::name(path),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = crate::method_path::service(path),
        rpc.method = crate::method_path::method(path),
        rpc.grpc.status_code = tracing::field::Empty,
        network.peer.address = remote_addr.map(|a| tracing::field::display(a.ip())),
        network.peer.port = remote_addr.map(|a| a.port()),
    )
}

/// A call's middlewares and their observers.
struct CallLayer {
    middlewares: Middlewares,
    path: String,
    observers: Observers,
    deadline: Option<tokio::time::Instant>,
}

impl CallLayer {
    /// Starts every middleware on `request`; an error is the call's status. Boxed, so that
    /// the handler's future stays as small as it is without middleware.
    fn start<'a, T: Send>(
        &'a self,
        kind: RpcKind,
        request: &'a mut Request<T>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>> {
        Box::pin(async move {
            let mut start = request.call_start(CallSide::Server, kind, &self.path, self.deadline);
            let started = self.middlewares.start(&mut start, &self.observers).await;
            if let Err(status) = &started {
                tracing::debug!(%status, "a middleware rejected the call");
            }
            started
        })
    }

    /// Shows the one request message of a unary or server-streaming call.
    fn request_message<T: prost::Message + 'static>(&self, message: &T) {
        self.observers.message(Direction::Request, message);
    }
}

/// What a finished `guard` saw.
enum Guarded<T> {
    Done(Result<T, Status>),
    /// The client reset the stream: the handler was dropped and nothing more is sent.
    Cancelled,
}

impl ServerCall {
    /// Checks the request headers. Returns the call and its `:path`, or `None` after answering
    /// the request itself (HTTP 405/415, or a Trailers-Only error). `quota` is the
    /// connection's budget for partly received request messages.
    pub(crate) fn accept(
        request: http::Request<RecvBody>,
        respond: Respond,
        config: Arc<ServerConfig>,
        remote_addr: Option<SocketAddr>,
        quota: &Arc<BufferQuota>,
    ) -> Option<(ServerCall, http::uri::PathAndQuery)> {
        let (parts, body) = request.into_parts();
        let mut responder = Responder {
            respond,
            config,
            response_encoding: None,
            accepted: 0,
            deadline: None,
            extras: None,
        };
        if parts.method != http::Method::POST {
            tracing::debug!(method = %parts.method, "rejecting non-POST request with 405");
            responder.http_error(StatusCode::METHOD_NOT_ALLOWED);
            return None;
        }
        if !codec::is_grpc_content_type(parts.headers.get(http::header::CONTENT_TYPE)) {
            tracing::debug!(
                content_type = ?parts.headers.get(http::header::CONTENT_TYPE),
                "rejecting non-gRPC content-type with 415"
            );
            responder.http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            return None;
        }
        let Some(path) = parts.uri.into_parts().path_and_query else {
            responder.send_error(Status::unimplemented("request has no :path"));
            return None;
        };
        let mut timeout_value = None;
        if let Some(raw) = parts.headers.get(codec::GRPC_TIMEOUT) {
            match timeout::parse(raw.as_bytes()) {
                Some(t) => {
                    timeout_value = Some(t);
                    responder.deadline = Some(Box::pin(tokio::time::sleep_until(
                        timeout::deadline_after(t),
                    )));
                }
                None => {
                    let raw = Quoted(raw.as_bytes());
                    tracing::debug!(%raw, "malformed grpc-timeout");
                    responder
                        .send_error(Status::internal(format!("malformed grpc-timeout: {raw}")));
                    return None;
                }
            }
        }
        let mut request_encoding = None;
        if let Some(raw) = parts.headers.get(codec::GRPC_ENCODING) {
            let name = raw.to_str().unwrap_or("").trim();
            if name != "identity" {
                let shown = Quoted(raw.as_bytes());
                match CompressionEncoding::from_name(name)
                    .filter(|e| responder.config.accept_compressed.contains(e))
                {
                    Some(e) => request_encoding = Some(e),
                    None => {
                        tracing::debug!(encoding = %shown, "unsupported grpc-encoding");
                        let supported = compression::accept_encoding_header(
                            &responder.config.accept_compressed,
                        );
                        let status = Status::unimplemented(format!(
                            "message encoding {shown} is not supported; supported: {supported}"
                        ));
                        let mut extra = HeaderMap::new();
                        if let Ok(v) = HeaderValue::from_str(&supported) {
                            extra.insert(codec::GRPC_ACCEPT_ENCODING, v);
                        }
                        responder.send_error_with(status, extra);
                        return None;
                    }
                }
            }
        }
        // Only a server that compresses reads what the client accepts (it costs a lookup).
        if let Some(enc) = responder.config.send_compressed {
            responder.accepted =
                compression::accepted(parts.headers.get(codec::GRPC_ACCEPT_ENCODING));
            if compression::is_accepted(responder.accepted, enc) {
                responder.response_encoding = Some(enc);
            }
        }
        if !responder.config.middlewares.is_empty() {
            let middlewares = responder.config.middlewares.clone();
            responder.extras_mut().middlewares = Some((middlewares, path.path().to_owned()));
        }
        // Without any subscriber ever installed, one atomic load; with one, the callsite's
        // cached interest decides.
        if tracing::dispatcher::has_been_set() {
            let span = server_span(path.path(), remote_addr);
            if !span.is_disabled() {
                #[cfg(feature = "opentelemetry")]
                crate::otel::propagation::extract(&span, &parts.headers);
                responder.extras_mut().span = Some(span);
            }
        }
        Some((
            ServerCall {
                headers: parts.headers,
                body,
                responder,
                timeout: timeout_value,
                request_encoding,
                remote_addr,
                quota: quota.clone(),
            },
            path,
        ))
    }

    /// The call's `grpc.server` span, when tracing records it: the call runs inside it.
    pub(crate) fn span(&self) -> Option<tracing::Span> {
        self.responder.extras.as_deref()?.span.clone()
    }

    /// Adds a service's middlewares (after the server's), for its method `method`.
    pub(crate) fn add_middlewares(&mut self, more: &Middlewares, service: &str, method: &str) {
        if more.is_empty() {
            return;
        }
        self.responder
            .extras_mut()
            .middlewares
            .get_or_insert_with(|| (Middlewares::default(), format!("/{service}/{method}")))
            .0
            .extend(more);
    }

    /// Answers a call to a method that `service` does not have: Trailers-Only UNIMPLEMENTED.
    pub fn unknown_method(self, service: &str, method: &str) {
        let method = Quoted(method.as_bytes());
        self.unimplemented(format!("unknown method {method} for service {service}"));
    }

    /// Answers a call whose service or method is unknown: Trailers-Only UNIMPLEMENTED.
    pub(crate) fn unimplemented(self, message: String) {
        tracing::debug!(%message, "unimplemented");
        let mut responder = self.responder;
        responder.send_error(Status::unimplemented(message));
    }

    /// The request (metadata, message stream, timeout, peer) and the response half, after the
    /// server's interceptors; `None` when an interceptor rejected the call (already answered).
    #[allow(clippy::type_complexity)]
    fn into_parts<Req>(
        self,
    ) -> Option<(Request<Streaming<Req>>, Responder, Option<Box<CallLayer>>)> {
        let mut responder = self.responder;
        let layered = responder.extras.as_mut().and_then(|e| e.middlewares.take());
        let layer = layered.map(|(middlewares, path)| {
            Box::new(CallLayer {
                middlewares,
                path,
                observers: Observers::new(),
                deadline: responder.deadline(),
            })
        });
        let stream = Streaming::new(
            self.body,
            Side::Server,
            responder.config.max_recv_message_size,
            self.request_encoding,
            None,
            None,
        )
        .with_quota(self.quota);
        let mut request = Request::from_server_parts(
            MetadataMap::from_headers(self.headers),
            stream,
            self.timeout,
            self.remote_addr,
        );
        if let Some(layer) = &layer {
            responder.extras_mut().observers = Some(layer.observers.clone());
        }
        if responder.response_encoding.is_some() {
            let control = SendCompression::default();
            request.extensions_mut().insert(control.clone());
            responder.extras_mut().send_compression = Some(control);
        }
        if responder.config.call_metrics.is_some() {
            let recorder = CallMetricsRecorder::default();
            request.extensions_mut().insert(recorder.clone());
            responder.extras_mut().call_metrics = Some(recorder);
        }
        match responder.config.interceptors.run(request) {
            Ok(request) => Some((request, responder, layer)),
            Err(status) => {
                tracing::debug!(%status, "an interceptor rejected the call");
                responder.send_error(status);
                None
            }
        }
    }

    /// Runs a unary handler: one request message in, one response message out.
    pub async fn unary<Req, Resp, F, Fut>(self, handler: F)
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let Some((mut request, mut responder, layer)) = self.into_parts::<Req>() else {
            return;
        };
        let work = pin!(async move {
            if let Some(layer) = &layer {
                layer.start(RpcKind::Unary, &mut request).await?;
            }
            let message = read_single(&mut request).await?;
            if let Some(layer) = &layer {
                layer.request_message(&message);
            }
            handler(single_request(request, message)).await
        });
        match responder.guard(work).await {
            Guarded::Done(result) => responder.send_unary(result),
            Guarded::Cancelled => responder.cancelled(),
        }
    }

    /// Runs a server-streaming handler: one request message in, a stream of responses out.
    pub async fn server_streaming<Req, Resp, S, F, Fut>(self, handler: F)
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        S: Stream<Item = Result<Resp, Status>>,
        F: FnOnce(Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<S>, Status>>,
    {
        let Some((mut request, mut responder, layer)) = self.into_parts::<Req>() else {
            return;
        };
        let work = pin!(async move {
            if let Some(layer) = &layer {
                layer.start(RpcKind::ServerStreaming, &mut request).await?;
            }
            let message = read_single(&mut request).await?;
            if let Some(layer) = &layer {
                layer.request_message(&message);
            }
            handler(single_request(request, message)).await
        });
        match responder.guard(work).await {
            Guarded::Done(result) => responder.send_stream(result).await,
            Guarded::Cancelled => responder.cancelled(),
        }
    }

    /// Runs a client-streaming handler: a stream of requests in, one response out.
    pub async fn client_streaming<Req, Resp, F, Fut>(self, handler: F)
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        F: FnOnce(Request<Streaming<Req>>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let Some((mut request, mut responder, layer)) = self.into_parts::<Req>() else {
            return;
        };
        let work = pin!(async move {
            if let Some(layer) = &layer {
                layer.start(RpcKind::ClientStreaming, &mut request).await?;
                request = observe_requests(request, layer);
            }
            handler(request).await
        });
        match responder.guard(work).await {
            Guarded::Done(result) => responder.send_unary(result),
            Guarded::Cancelled => responder.cancelled(),
        }
    }

    /// Runs a bidirectional-streaming handler: a stream of requests in, a stream of
    /// responses out.
    pub async fn streaming<Req, Resp, S, F, Fut>(self, handler: F)
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + 'static,
        S: Stream<Item = Result<Resp, Status>>,
        F: FnOnce(Request<Streaming<Req>>) -> Fut,
        Fut: Future<Output = Result<Response<S>, Status>>,
    {
        let Some((mut request, mut responder, layer)) = self.into_parts::<Req>() else {
            return;
        };
        let work = pin!(async move {
            if let Some(layer) = &layer {
                layer.start(RpcKind::BidiStreaming, &mut request).await?;
                request = observe_requests(request, layer);
            }
            handler(request).await
        });
        match responder.guard(work).await {
            Guarded::Done(result) => responder.send_stream(result).await,
            Guarded::Cancelled => responder.cancelled(),
        }
    }
}

/// A streaming request whose messages the call's observers see, if one wants them.
fn observe_requests<Req>(
    request: Request<Streaming<Req>>,
    layer: &CallLayer,
) -> Request<Streaming<Req>> {
    if !layer.observers.wants_messages() {
        return request;
    }
    let observers = layer.observers.clone();
    request.map(|stream| stream.observed_by(observers, false))
}

/// Reads the one request message of a unary or server-streaming call, and the end of the
/// request stream after it: a second message is INTERNAL (grpc-go's cardinality violation),
/// not silently dropped. The request is read in place (by reference), so that the call's
/// future holds it once.
async fn read_single<Req: prost::Message + Default + 'static>(
    request: &mut Request<Streaming<Req>>,
) -> Result<Req, Status> {
    let stream = request.get_mut();
    let message = stream.message().await?.ok_or_else(|| {
        Status::internal("the client sent no request message for a unary request")
    })?;
    if stream.message().await?.is_some() {
        return Err(Status::internal(
            "the client sent more than one request message for a unary request",
        ));
    }
    Ok(message)
}

/// The request a unary or server-streaming handler sees: `message` with the call's metadata.
fn single_request<Req>(request: Request<Streaming<Req>>, message: Req) -> Request<Req> {
    let compressed = request.get_ref().last_message_compressed();
    let mut request = request.map(|_| message);
    if compressed {
        // Only then: an extension costs an allocation on every call.
        request.extensions_mut().insert(MessageCompressed(true));
    }
    request
}

impl Responder {
    fn extras_mut(&mut self) -> &mut ResponderExtras {
        self.extras.get_or_insert_with(Box::default)
    }

    fn observers(&self) -> Option<&Observers> {
        self.extras.as_deref()?.observers.as_ref()
    }

    fn send_compression(&self) -> Option<&SendCompression> {
        self.extras.as_deref()?.send_compression.as_ref()
    }

    fn call_metrics(&self) -> Option<&CallMetricsRecorder> {
        self.extras.as_deref()?.call_metrics.as_ref()
    }

    /// When the call's deadline passes, if it has one.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline.as_ref().map(|d| d.deadline())
    }

    /// The client reset the stream: the observers see the call end CANCELLED.
    fn cancelled(&self) {
        end_cancelled(self.extras.as_deref());
    }

    /// Runs `work` until it finishes, the deadline passes, or the client resets the stream.
    /// On a deadline or a reset the work (the handler future) is dropped.
    ///
    /// `work` is pinned by the caller and polled in place: an `async fn` taking it by value
    /// would hold a second copy of it in its own future, and every call's future would grow
    /// by the handler's size.
    fn guard<'a, T, W>(
        &'a mut self,
        mut work: Pin<&'a mut W>,
    ) -> impl Future<Output = Guarded<T>> + 'a
    where
        W: Future<Output = Result<T, Status>>,
    {
        poll_fn(move |cx| {
            if let Poll::Ready(r) = poll_user(|| work.as_mut().poll(cx)) {
                return Poll::Ready(Guarded::Done(r.and_then(|r| r)));
            }
            if let Some(d) = self.deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Guarded::Done(Err(Status::deadline_exceeded(
                    "deadline exceeded while the handler was running",
                ))));
            }
            if self.respond.poll_reset(cx).is_ready() {
                tracing::debug!("the client cancelled the call");
                return Poll::Ready(Guarded::Cancelled);
            }
            Poll::Pending
        })
    }

    fn http_error(&mut self, status: StatusCode) {
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        self.respond.send_response(resp, true);
    }

    /// Sends an error as a Trailers-Only response (headers with END_STREAM).
    fn send_error(&mut self, status: Status) {
        self.send_error_with(status, HeaderMap::new());
    }

    fn send_error_with(&mut self, status: Status, extra: HeaderMap) {
        if let Some(extras) = self.extras.as_deref() {
            extras.end(&status, status.metadata());
        }
        let mut resp = http::Response::new(());
        let headers = resp.headers_mut();
        *headers = extra;
        headers.insert(http::header::CONTENT_TYPE, codec::APPLICATION_GRPC);
        status.write_to(headers);
        self.add_call_metrics(headers);
        self.respond.send_response(resp, true);
    }

    fn send_headers(&mut self, metadata: MetadataMap) -> Option<SendBody> {
        if let Some(observers) = self.observers() {
            observers.response_headers(&metadata);
        }
        if metadata.is_empty() && self.response_encoding.is_none() {
            return self.respond.send_grpc_head();
        }
        let mut resp = http::Response::new(());
        let headers = resp.headers_mut();
        *headers = metadata.into_headers();
        headers.insert(http::header::CONTENT_TYPE, codec::APPLICATION_GRPC);
        if let Some(enc) = self.response_encoding {
            headers.insert(codec::GRPC_ENCODING, HeaderValue::from_static(enc.as_str()));
        }
        self.respond.send_response(resp, false)
    }

    fn encode<M: prost::Message>(&self, msg: &M) -> Result<Bytes, Status> {
        let encoding = SendCompression::apply(self.send_compression(), self.response_encoding);
        codec::encode(msg, encoding, self.config.max_send_message_size)
    }

    /// A response that chose its own compression ([`Response::set_compression`]) gets it,
    /// if the client accepts it, and no compression otherwise.
    fn choose_compression<T>(&mut self, response: &Response<T>) {
        if let Some(CallCompression(choice)) = response.extensions().get::<CallCompression>() {
            self.response_encoding =
                choice.filter(|enc| compression::is_accepted(self.accepted, *enc));
        }
    }

    fn send_unary<Resp: prost::Message + 'static>(
        &mut self,
        result: Result<Response<Resp>, Status>,
    ) {
        if let Ok(response) = &result {
            self.choose_compression(response);
        }
        let (metadata, message, trailers) = match result {
            Ok(resp) => resp.into_parts(),
            Err(status) => return self.send_error(status),
        };
        let data = match self.encode(&message) {
            Ok(d) => d,
            Err(status) => {
                tracing::debug!(%status, "response message rejected");
                return self.send_error(status);
            }
        };
        let ok_trailers_only = trailers.is_empty() && self.call_metrics().is_none();
        if ok_trailers_only && metadata.is_empty() && self.response_encoding.is_none() {
            // The usual case, headers, message and `grpc-status: 0` alone, in one step.
            if let Some(observers) = self.observers() {
                observers.response_headers(&metadata);
            }
            if !self.respond.send_grpc_unary(data) {
                self.cancelled();
                return;
            }
            self.unary_sent(&message, &trailers);
            return;
        }
        let Some(mut stream) = self.send_headers(metadata) else {
            self.cancelled();
            return;
        };
        self.unary_sent(&message, &trailers);
        // A unary response is one bounded message: the transport queues it under flow control.
        if stream.send_data(data, false).is_ok() {
            let _ = if ok_trailers_only {
                stream.send_ok_trailers()
            } else {
                stream.send_trailers(self.ok_trailers(trailers))
            };
        }
    }

    /// The observers see a unary response's message and successful end.
    fn unary_sent<Resp: prost::Message + 'static>(&self, message: &Resp, trailers: &MetadataMap) {
        if let Some(extras) = self.extras.as_deref() {
            if let Some(observers) = &extras.observers {
                observers.message(Direction::Response, message);
            }
            extras.end_ok(trailers);
        }
    }

    async fn send_stream<Resp, S>(&mut self, result: Result<Response<S>, Status>)
    where
        Resp: prost::Message + 'static,
        S: Stream<Item = Result<Resp, Status>>,
    {
        if let Ok(response) = &result {
            self.choose_compression(response);
        }
        let (metadata, messages, trailers) = match result {
            Ok(resp) => resp.into_parts(),
            Err(status) => return self.send_error(status),
        };
        let messages = pin!(messages);
        let Some(mut stream) = self.send_headers(metadata) else {
            self.cancelled();
            return;
        };
        let compression = self.response_encoding;
        let max = self.config.max_send_message_size;
        let stop = pin!(deadline_passed(&mut self.deadline));
        let extras = self.extras.as_deref();
        let control = extras.and_then(|e| e.send_compression.as_ref());
        let observers = extras.and_then(|e| e.observers.as_ref());
        let observe = observers
            .filter(|o| o.wants_messages())
            .map(|o| (o, Direction::Response));
        let status = match send_messages(
            &mut stream,
            messages,
            compression,
            control,
            max,
            Panics::Catch,
            stop,
            observe,
        )
        .await
        {
            Pumped::Ended => {
                if let Some(extras) = extras {
                    extras.end_ok(&trailers);
                }
                let metrics = extras.and_then(|e| e.call_metrics.as_ref());
                let _ = if trailers.is_empty() && metrics.is_none() {
                    stream.send_ok_trailers()
                } else {
                    stream.send_trailers(ok_trailers(trailers, metrics, &self.config))
                };
                return;
            }
            Pumped::Failed(status) => status,
            Pumped::Reset => {
                end_cancelled(extras);
                return;
            }
            Pumped::Stopped => {
                Status::deadline_exceeded("deadline exceeded while the handler was streaming")
            }
        };
        if let Some(extras) = extras {
            extras.end(&status, status.metadata());
        }
        let mut trailers = HeaderMap::new();
        status.write_to(&mut trailers);
        let metrics = extras.and_then(|e| e.call_metrics.as_ref());
        add_call_metrics(&mut trailers, metrics, &self.config);
        let _ = stream.send_trailers(trailers);
    }

    /// The trailers of a successful call: `grpc-status: 0` and the handler's trailing
    /// metadata (built in place: success allocates no `Status`).
    fn ok_trailers(&self, metadata: MetadataMap) -> HeaderMap {
        ok_trailers(metadata, self.call_metrics(), &self.config)
    }

    /// Adds the call's load report, when the server sends them.
    fn add_call_metrics(&self, trailers: &mut HeaderMap) {
        add_call_metrics(trailers, self.call_metrics(), &self.config);
    }
}

/// The client reset the stream: the call's span and observers see it end CANCELLED.
fn end_cancelled(extras: Option<&ResponderExtras>) {
    if let Some(extras) = extras {
        extras.end(
            &Status::cancelled("the client cancelled the call"),
            &MetadataMap::new(),
        );
    }
}

/// Polls a handler future and turns a panic into INTERNAL, so that the client gets a status
/// rather than a reset stream, and the server goes on. (A response stream's panics are caught
/// per batch by `send_messages`, with `Panics::Catch`.)
fn poll_user<T>(poll: impl FnOnce() -> Poll<T>) -> Poll<Result<T, Status>> {
    match std::panic::catch_unwind(AssertUnwindSafe(poll)) {
        Ok(polled) => polled.map(Ok),
        Err(_) => {
            tracing::error!("a handler panicked; the call ends with INTERNAL");
            Poll::Ready(Err(Status::internal("the handler panicked")))
        }
    }
}

/// The trailers of a successful call: `grpc-status: 0`, the handler's trailing metadata and
/// the call's load report (built in place: success allocates no `Status`).
fn ok_trailers(
    metadata: MetadataMap,
    metrics: Option<&CallMetricsRecorder>,
    config: &ServerConfig,
) -> HeaderMap {
    let mut trailers = metadata.into_headers();
    trailers.insert(crate::status::GRPC_STATUS, HeaderValue::from_static("0"));
    add_call_metrics(&mut trailers, metrics, config);
    trailers
}

/// Adds the call's load report, when the server sends them.
fn add_call_metrics(
    trailers: &mut HeaderMap,
    metrics: Option<&CallMetricsRecorder>,
    config: &ServerConfig,
) {
    if let Some(recorder) = metrics {
        recorder.write_to(config.call_metrics.as_ref(), trailers);
    }
}
