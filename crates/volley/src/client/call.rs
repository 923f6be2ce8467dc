//! `Grpc`: the four RPC kinds on the client, used by generated clients.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use futures_core::Stream;
use http::HeaderValue;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::attempts::{
    Answer, AttemptParams, Attempts, Committed, OpenAttempt, OpenFuture, Policy,
};
use super::balancer::CallDone;
use super::channel::{Channel, MAX_TRANSPARENT_RETRIES};
use super::method_config::MethodConfig;
use super::retry::{Reservation, Throttle};
use crate::codec::{
    self, CallCompression, CompressionEncoding, DEFAULT_MAX_RECV_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_MESSAGE_SIZE, MessageCompressed, SendCompression,
};
use crate::metadata::MetadataMap;
use crate::middleware::{CallStart, Direction, Observers, RpcKind, Side as CallSide};
use crate::request::CallHead;
use crate::streaming::{DropGuard, OnEnd, Opened, OutboundLink, PendingHeaders, Side, Streaming};
use crate::transport::client::ResponseFuture;
use crate::transport::{Panics, Pumped, RecvBody, SendBody, send_messages};
use crate::{Code, Request, Response, Status, timeout};

/// Calls over a [`Channel`] with per-client options (compression, message size limits).
/// Generated clients wrap one; it is cheap to clone.
#[derive(Clone, Debug)]
pub struct Grpc {
    channel: Channel,
    send_compressed: Option<CompressionEncoding>,
    max_recv_message_size: usize,
    max_send_message_size: usize,
}

impl Grpc {
    /// Calls over `channel` with default options.
    pub fn new(channel: Channel) -> Grpc {
        Grpc {
            channel,
            send_compressed: None,
            max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
        }
    }

    /// Compresses request messages with `encoding`. Default: requests are not compressed.
    /// (Responses in any algorithm Volley has are always accepted.)
    pub fn send_compressed(&mut self, encoding: CompressionEncoding) {
        self.send_compressed = Some(encoding);
    }

    /// The largest response message accepted, after decompression. Default: 4 MiB.
    pub fn max_decoding_message_size(&mut self, bytes: usize) {
        self.max_recv_message_size = bytes;
    }

    /// The largest request message sent; larger ones fail with RESOURCE_EXHAUSTED without
    /// being sent. Default: no limit.
    pub fn max_encoding_message_size(&mut self, bytes: usize) {
        self.max_send_message_size = bytes;
    }

    /// The call's `grpc.client` span, when a subscriber records it (without any subscriber
    /// installed, one atomic load).
    /// With the `opentelemetry` feature, the span's context goes into `metadata` (W3C
    /// trace context).
    fn span(&self, path: &str, _metadata: &mut MetadataMap) -> Option<tracing::Span> {
        if !tracing::dispatcher::has_been_set() {
            return None;
        }
        let span = tracing::info_span!(
            target: "volley::client",
            "grpc.client",
            otel.name = crate::method_path::name(path),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = crate::method_path::service(path),
            rpc.method = crate::method_path::method(path),
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = self.channel.authority(),
        );
        if span.is_disabled() {
            return None;
        }
        #[cfg(feature = "opentelemetry")]
        crate::otel::propagation::inject(&span, _metadata);
        Some(span)
    }

    /// A unary call: one request, one response.
    ///
    /// When a `tracing` subscriber wants it, the call runs in an INFO span `grpc.client`
    /// (target `volley::client`) with OpenTelemetry's RPC fields and the final
    /// `rpc.grpc.status_code`; so do the other kinds (a streaming response's span records
    /// the status when the stream ends).
    pub async fn unary<Req, Resp>(
        &self,
        request: Request<Req>,
        path: &'static str,
    ) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (mut head, message) = self.intercept(request)?.into_parts();
        let span = self.span(path, &mut head.metadata);
        let layer = self.layer(path, RpcKind::Unary, &mut head).await?;
        observe_request(layer.as_ref(), &message);
        let opening = self.opening(path, &head, layer.as_ref());
        let deadline = opening.head.deadline;
        let data = encode_single(&message, &head, &opening)
            .map_err(|status| end_layer(layer.as_ref(), status))?;
        let mut done = CallDone::default();
        let mut committed = false;
        let result = {
            let call = async {
                let (response, _send) = self.send_single(&opening, data, &mut done).await?;
                committed = true;
                let (headers, stream) =
                    self.read_response::<Resp>(response, opening.max_recv, None, None)?;
                let mut stream = observe_response(layer.as_ref(), &headers, stream, false);
                single_response(headers, &mut stream).await
            };
            with_deadline(deadline, span.as_ref(), pin!(call)).await
        };
        end_single(
            &mut done,
            &result,
            &opening,
            committed,
            layer.as_ref(),
            span.as_ref(),
        );
        result
    }

    /// A server-streaming call: one request, a stream of responses.
    pub async fn server_streaming<Req, Resp>(
        &self,
        request: Request<Req>,
        path: &'static str,
    ) -> Result<Response<Streaming<Resp>>, Status>
    where
        Req: prost::Message + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (mut head, message) = self.intercept(request)?.into_parts();
        let span = self.span(path, &mut head.metadata);
        let layer = self
            .layer(path, RpcKind::ServerStreaming, &mut head)
            .await?;
        observe_request(layer.as_ref(), &message);
        let opening = self.opening(path, &head, layer.as_ref());
        let deadline = opening.head.deadline;
        let data = encode_single(&message, &head, &opening)
            .map_err(|status| end_layer(layer.as_ref(), status))?;
        let mut done = CallDone::default();
        let mut committed = false;
        let result = {
            let call = async {
                let (response, _send) = self.send_single(&opening, data, &mut done).await?;
                committed = true;
                let (headers, stream) =
                    self.read_response::<Resp>(response, opening.max_recv, deadline, None)?;
                let stream = observe_response(layer.as_ref(), &headers, stream, true);
                let stream = stream.with_headers(headers.clone());
                Ok(Response::from_parts(headers, stream, MetadataMap::new()))
            };
            with_deadline(deadline, span.as_ref(), pin!(call)).await
        };
        let result = result.map_err(|status| end_layer(layer.as_ref(), status));
        traced(span, streaming_result(done, result, &opening, committed))
    }

    /// A client-streaming call: a stream of requests, one response.
    pub async fn client_streaming<S, Req, Resp>(
        &self,
        request: Request<S>,
        path: &'static str,
    ) -> Result<Response<Resp>, Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (mut head, message) = self.intercept(request)?.into_parts();
        let span = self.span(path, &mut head.metadata);
        let layer = self
            .layer(path, RpcKind::ClientStreaming, &mut head)
            .await?;
        let opening = self.opening(path, &head, layer.as_ref());
        let (deadline, encoding) = (opening.head.deadline, opening.head.encoding);
        let control = head.extensions.get::<SendCompression>().cloned();
        let mut done = CallDone::default();
        let mut committed = true;
        let result = {
            let call = async {
                let sent =
                    Outbound::new(message, control, encoding, opening.max_send, layer.as_ref());
                let (response, guard) = if opening.policy().is_some() {
                    let (guard, committed_to) = self.spawn_attempts(&opening, sent);
                    let answer = match committed_to.await {
                        Ok(Ok((answer, attempt_done))) => {
                            done = attempt_done;
                            answer
                        }
                        Ok(Err(status)) => {
                            committed = false;
                            return Err(status);
                        }
                        Err(_) => return Err(Status::cancelled("the call was cancelled")),
                    };
                    let response = match answer {
                        Answer::Headers(response) => response,
                        Answer::Pending(response) => await_headers(response, &guard).await?,
                    };
                    (response, guard)
                } else {
                    let (response, send) = self.start_once(&opening, &mut done).await?;
                    let guard = self.spawn_sender(send, sent);
                    (await_headers(response, &guard).await?, guard)
                };
                let (headers, stream) =
                    self.read_response::<Resp>(response, opening.max_recv, None, guard)?;
                let mut stream = observe_response(layer.as_ref(), &headers, stream, false);
                single_response(headers, &mut stream).await
            };
            with_deadline(deadline, span.as_ref(), pin!(call)).await
        };
        end_single(
            &mut done,
            &result,
            &opening,
            committed,
            layer.as_ref(),
            span.as_ref(),
        );
        result
    }

    /// A bidirectional-streaming call: a stream of requests, a stream of responses.
    ///
    /// Returns as soon as the call is open (its request headers sent), without waiting for
    /// the response headers, as grpc-go's `NewStream` does: a server may send its headers
    /// only with its first response, after the client's first request. The `Response`'s
    /// metadata is therefore empty; [`Streaming::headers`] waits for the headers, and
    /// reading the first message waits for them too. A call the server refuses fails there.
    pub async fn streaming<S, Req, Resp>(
        &self,
        request: Request<S>,
        path: &'static str,
    ) -> Result<Response<Streaming<Resp>>, Status>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (mut head, message) = self.intercept(request)?.into_parts();
        let span = self.span(path, &mut head.metadata);
        let layer = self.layer(path, RpcKind::BidiStreaming, &mut head).await?;
        let opening = self.opening(path, &head, layer.as_ref());
        let deadline = opening.head.deadline;
        let control = head.extensions.get::<SendCompression>().cloned();
        let sent = Outbound::new(
            message,
            control,
            opening.head.encoding,
            opening.max_send,
            layer.as_ref(),
        );
        if opening.policy().is_some() {
            let response = self.streaming_with_policy::<_, _, Resp>(&opening, sent);
            return traced(
                span,
                Ok(response.map(|stream| observe_stream(layer.clone(), stream))),
            );
        }
        let mut done = CallDone::default();
        let result = {
            let call = async {
                let (response, send) = self.start_once(&opening, &mut done).await?;
                let guard = self.spawn_sender(send, sent);
                let failure = guard.as_ref().map(|g| g.failure.clone());
                let headers: PendingHeaders = Box::pin(async move {
                    let response = response.await.map_err(|e| {
                        failure
                            .as_ref()
                            .and_then(|f| f.get().cloned())
                            .unwrap_or_else(|| e.to_status())
                    })?;
                    open_response(response)
                });
                let stream = Streaming::pending(headers, opening.max_recv, deadline, guard);
                Ok(Response::from_parts(
                    MetadataMap::new(),
                    stream,
                    MetadataMap::new(),
                ))
            };
            with_deadline(deadline, span.as_ref(), pin!(call)).await
        };
        let result = match result {
            Ok(response) => Ok(response.map(|stream| observe_stream(layer.clone(), stream))),
            Err(status) => Err(end_layer(layer.as_ref(), status)),
        };
        traced(span, streaming_result(done, result, &opening, true))
    }

    /// A bidirectional-streaming call under a retry or hedging policy: its attempts run in
    /// their own task until one commits; the response stream reads the committed attempt.
    fn streaming_with_policy<S, Req, Resp>(
        &self,
        opening: &Opening<'_>,
        sent: Outbound<S>,
    ) -> Response<Streaming<Resp>>
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + 'static,
        Resp: prost::Message + Default + 'static,
    {
        let (guard, committed_to) = self.spawn_attempts(opening, sent);
        let failure = guard.as_ref().map(|g| g.failure.clone());
        // The committed attempt's balancer callback, once there is one: the call's end is
        // reported (and counted by the throttle) only for a committed call; the failures
        // of attempts before the commit were reported and counted as they happened.
        let slot: Arc<Mutex<Option<CallDone>>> = Arc::default();
        let filled = slot.clone();
        let headers: PendingHeaders = Box::pin(async move {
            let answer = match committed_to.await {
                Ok(Ok((answer, done))) => {
                    *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some(done);
                    answer
                }
                Ok(Err(status)) => return Err(status),
                Err(_) => return Err(Status::cancelled("the call was cancelled")),
            };
            let response = match answer {
                Answer::Headers(response) => response,
                Answer::Pending(response) => response.await.map_err(|e| {
                    failure
                        .as_ref()
                        .and_then(|f| f.get().cloned())
                        .unwrap_or_else(|| e.to_status())
                })?,
            };
            open_response(response)
        });
        let (throttle, method) = (opening.throttle.clone(), opening.method.clone());
        let stream = Streaming::pending(headers, opening.max_recv, opening.head.deadline, guard)
            .with_done(OnEnd::new(move |status, trailers| {
                let done = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(mut done) = done {
                    throttle_outcome(throttle.as_deref(), method.as_deref(), status.code());
                    done.finish(status, trailers);
                }
            }));
        Response::from_parts(MetadataMap::new(), stream, MetadataMap::new())
    }

    /// What opening the call's stream takes: its path, metadata, deadline (the request's
    /// timeout, else the channel's), wait-for-ready and request compression.
    fn opening<'a>(
        &self,
        path: &'static str,
        head: &'a CallHead,
        layer: Option<&'a Observers>,
    ) -> Opening<'a> {
        let CallHead {
            metadata,
            timeout,
            wait_for_ready,
            extensions,
        } = head;
        let (timeout, wait_for_ready) = (*timeout, *wait_for_ready);
        let (method_config, throttle) = self.channel.call_config(path);
        let method = method_config.as_deref();
        // The call's own timeout (else the channel's), or the method config's if sooner.
        let timeout = match (
            timeout.or(self.channel.config().timeout),
            method.and_then(|m| m.timeout),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The call's own choice, else the method config's, else the channel's.
        let wait_for_ready = wait_for_ready
            .or(method.and_then(|m| m.wait_for_ready))
            .unwrap_or(self.channel.config().wait_for_ready);
        let limit = |own: usize, configured: Option<usize>| configured.map_or(own, |c| c.min(own));
        Opening {
            head: AttemptHead {
                path,
                metadata,
                deadline: timeout.map(timeout::deadline_after),
                wait_for_ready,
                encoding: self.encoding(extensions),
                observers: layer,
            },
            max_send: limit(
                self.max_send_message_size,
                method.and_then(|m| m.max_request_message_bytes),
            ),
            max_recv: limit(
                self.max_recv_message_size,
                method.and_then(|m| m.max_response_message_bytes),
            ),
            throttle,
            retries: self.channel.config().retry.enabled,
            method: method_config,
        }
    }

    /// The channel's middlewares, started on the call's head; `None` (at the cost of one
    /// check) when the channel has none.
    async fn layer(
        &self,
        path: &'static str,
        kind: RpcKind,
        head: &mut CallHead,
    ) -> Result<Option<Observers>, Status> {
        if self.channel.config().middlewares.is_empty() {
            return Ok(None);
        }
        self.start_layer(path, kind, head).await.map(Some)
    }

    /// Starts the channel's middlewares on the call's head (boxed, so that calls without
    /// middleware keep small futures); a rejection ends the call before anything is sent,
    /// and the observers started so far see it.
    fn start_layer<'a>(
        &'a self,
        path: &'static str,
        kind: RpcKind,
        head: &'a mut CallHead,
    ) -> Pin<Box<dyn Future<Output = Result<Observers, Status>> + Send + 'a>> {
        Box::pin(async move {
            let observers = Observers::new();
            let timeout = head.timeout.or(self.channel.config().timeout);
            let mut start = CallStart::new(
                CallSide::Client,
                kind,
                path,
                &mut head.metadata,
                &mut head.extensions,
                timeout.map(timeout::deadline_after),
                None,
            )
            .with_target(self.channel.target_uri());
            let middlewares = &self.channel.config().middlewares;
            match middlewares.start(&mut start, &observers).await {
                Ok(()) => Ok(observers),
                Err(status) => {
                    tracing::debug!(%status, "a middleware rejected the call");
                    Err(end_layer(Some(&observers), status))
                }
            }
        })
    }

    /// Runs the channel's interceptors; a rejection ends the call before anything is sent.
    fn intercept<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        self.channel.config().interceptors.run(request)
    }

    /// The call's request compression: the request's own choice, else the client's.
    fn encoding(&self, extensions: &http::Extensions) -> Option<CompressionEncoding> {
        match extensions.get::<CallCompression>() {
            Some(CallCompression(choice)) => *choice,
            None => self.send_compressed,
        }
    }

    /// Sends a request whose one message is `data`, and waits for the response headers (or
    /// the Trailers-Only answer). Under a retry or hedging policy the attempts run in
    /// [`Attempts`] until one commits; a message too large for the retry buffer goes out
    /// once, without a policy.
    async fn send_single(
        &self,
        opening: &Opening<'_>,
        data: Bytes,
        done: &mut CallDone,
    ) -> Result<(http::Response<RecvBody>, SendBody), Status> {
        let Some(policy) = opening.policy() else {
            return self.send_once(opening, data, done).await;
        };
        let limits = &self.channel.config().retry;
        let attempts = Attempts::new(
            policy,
            limits.max_call_attempts,
            opening.throttle.as_deref(),
            Reservation::new(limits.pool.clone(), limits.per_call_buffer),
            self.opener(opening),
        );
        let attempts = match attempts.with_message(data) {
            Ok(attempts) => attempts,
            Err(data) => {
                tracing::debug!("request too large to buffer for retries; sent once");
                return self.send_once(opening, data, done).await;
            }
        };
        // The one message is in the buffer already: no more to read.
        let mut no_more = |_: &mut std::task::Context<'_>| Poll::Ready(None);
        let Committed {
            answer,
            send,
            done: committed,
            ..
        } = attempts
            .run(&mut no_more, pin!(std::future::pending::<()>()))
            .await?;
        *done = committed;
        let response = match answer {
            Answer::Headers(response) => response,
            Answer::Pending(response) => response.await.map_err(|e| e.to_status())?,
        };
        Ok((response, send))
    }

    /// Sends a request whose one message is `data` once (with gRPC's transparent retry of a
    /// stream the server did not process: refused, or cut off by GOAWAY), and waits for the
    /// response headers.
    async fn send_once(
        &self,
        opening: &Opening<'_>,
        data: Bytes,
        done: &mut CallDone,
    ) -> Result<(http::Response<RecvBody>, SendBody), Status> {
        let mut transparent = 0;
        loop {
            let params = AttemptParams {
                previous: 0,
                transparent,
                attempted: None,
            };
            let (response, mut send, picked_done) = self.start(&opening.head, &params).await?;
            *done = picked_done;
            // An error here means the server already answered; the response says why.
            let _ = send.send_data(data.clone(), true);
            match response.await {
                Ok(response) => return Ok((response, send)),
                Err(e)
                    if e.is_unprocessed() && (transparent as usize) < MAX_TRANSPARENT_RETRIES =>
                {
                    tracing::debug!(error = %e, "stream not processed by the server; retrying");
                    transparent += 1;
                    done.finish_with(&e.to_status());
                }
                Err(e) => return Err(e.to_status()),
            }
        }
    }

    /// Opens a streaming call's one attempt (no policy).
    async fn start_once(
        &self,
        opening: &Opening<'_>,
        done: &mut CallDone,
    ) -> Result<(ResponseFuture, SendBody), Status> {
        let params = AttemptParams {
            previous: 0,
            transparent: 0,
            attempted: None,
        };
        let (response, send, picked_done) = self.start(&opening.head, &params).await?;
        *done = picked_done;
        Ok((response, send))
    }

    /// How [`Attempts`] opens each attempt: from its own copy of the call's head, so that
    /// the attempts may outlive the caller's borrow (a streaming call's run in a task).
    fn opener(
        &self,
        opening: &Opening<'_>,
    ) -> impl Fn(AttemptParams) -> OpenFuture + Send + 'static {
        let head = Arc::new(OwnedHead::from(&opening.head));
        let grpc = self.clone();
        move |params: AttemptParams| -> OpenFuture {
            let (grpc, head) = (grpc.clone(), head.clone());
            Box::pin(async move {
                let (response, send, done) = grpc.start(&head.borrowed(), &params).await?;
                Ok(OpenAttempt {
                    response,
                    send,
                    done,
                })
            })
        }
    }

    /// Runs a streaming call's attempts under its policy in a task of their own, which reads
    /// the request stream, sends each message on every attempt in flight, and once an
    /// attempt is committed sends the remaining messages on it alone (under flow control).
    /// Returns the link that stops the task (and cancels the attempts) when dropped, and the
    /// committed attempt's answer and balancer callback (or why the call failed first).
    #[allow(clippy::type_complexity)]
    fn spawn_attempts<S, Req>(
        &self,
        opening: &Opening<'_>,
        sent: Outbound<S>,
    ) -> (
        DropGuard,
        oneshot::Receiver<Result<(Answer, CallDone), Status>>,
    )
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + 'static,
    {
        let (stop, mut cancelled) = oneshot::channel::<()>();
        let (committed_tx, committed_rx) = oneshot::channel();
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let open = self.opener(opening);
        let (method, throttle) = (opening.method.clone(), opening.throttle.clone());
        let limits = &self.channel.config().retry;
        let (max_attempts, per_call, pool) = (
            limits.max_call_attempts,
            limits.per_call_buffer,
            limits.pool.clone(),
        );
        let Outbound { messages, sending } = sent;
        tokio::spawn(async move {
            let Some(policy) = method.as_deref().and_then(Policy::of) else {
                return;
            };
            let attempts = Attempts::new(
                policy,
                max_attempts,
                throttle.as_deref(),
                Reservation::new(pool, per_call),
                open,
            );
            let mut messages = pin!(tokio_stream_ok(messages));
            let mut stop = pin!(&mut cancelled);
            let compression = SendCompression::apply(sending.control.as_ref(), sending.encoding);
            let max = sending.max;
            let outcome = {
                let mut next = |cx: &mut std::task::Context<'_>| {
                    messages
                        .as_mut()
                        .poll_next(cx)
                        .map(|m| m.map(|m| m.and_then(|m| codec::encode(&m, compression, max))))
                };
                attempts.run(&mut next, stop.as_mut()).await
            };
            let Committed {
                answer,
                mut send,
                done,
                input_ended,
            } = match outcome {
                Ok(committed) => committed,
                Err(status) => {
                    let _ = failed.set(status.clone());
                    let _ = committed_tx.send(Err(status));
                    return;
                }
            };
            let _ = committed_tx.send(Ok((answer, done)));
            if input_ended {
                return;
            }
            pump_rest(&mut send, messages, &sending, stop, &failed).await;
        });
        (
            Some(OutboundLink {
                _stop: stop,
                failure,
            }),
            committed_rx,
        )
    }

    /// Sends the request headers and opens the stream of one attempt; returns the balancer's
    /// callback for the attempt's end.
    async fn start(
        &self,
        head: &AttemptHead<'_>,
        params: &AttemptParams,
    ) -> Result<(ResponseFuture, SendBody, CallDone), Status> {
        let AttemptHead {
            path,
            metadata,
            deadline,
            wait_for_ready,
            encoding,
            observers,
        } = *head;
        let record = observers.map(Observers::attempt_started);
        let make = || {
            let mut req = http::Request::new(());
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = self.channel.uri(path);
            // The channel's fixed headers first (the same HPACK prefix on every call), then
            // the metadata; the channel's `user-agent` wins over one in the metadata.
            let headers = req.headers_mut();
            *headers = self.channel.request_headers().clone();
            if !metadata.is_empty() {
                let metadata = metadata.clone().into_headers();
                let user_agent = metadata.contains_key(http::header::USER_AGENT);
                headers.extend(metadata);
                if user_agent {
                    headers.insert(
                        http::header::USER_AGENT,
                        self.channel.config().user_agent.clone(),
                    );
                }
            }
            if let Some(enc) = encoding {
                headers.insert(codec::GRPC_ENCODING, HeaderValue::from_static(enc.as_str()));
            }
            if params.previous > 0 {
                headers.insert(
                    GRPC_PREVIOUS_RPC_ATTEMPTS,
                    HeaderValue::from(params.previous),
                );
            }
            if params.transparent > 0 {
                headers.insert(
                    GRPC_TRANSPARENT_RETRY_ATTEMPTS,
                    HeaderValue::from(params.transparent),
                );
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if let Ok(v) = HeaderValue::from_str(&timeout::format(left)) {
                    headers.insert(codec::GRPC_TIMEOUT, v);
                }
            }
            req
        };
        let opened = self
            .channel
            .open_stream(
                path,
                metadata,
                make,
                wait_for_ready,
                params.attempted.as_deref(),
            )
            .await;
        match (opened, record) {
            (opened, None) => opened,
            (Ok((response, send, done)), Some(record)) => {
                Ok((response, send, done.then_record(record)))
            }
            (Err(status), Some(record)) => {
                record.finish(&status);
                Err(status)
            }
        }
    }

    /// Checks the response headers (see [`open_response`]) and makes the response stream.
    fn read_response<Resp>(
        &self,
        response: http::Response<RecvBody>,
        max_recv: usize,
        deadline: Option<Instant>,
        guard: DropGuard,
    ) -> Result<(MetadataMap, Streaming<Resp>), Status> {
        match open_response(response)? {
            Opened::Finished { trailers } => {
                Ok((MetadataMap::new(), Streaming::finished(trailers)))
            }
            Opened::Stream {
                headers,
                body,
                encoding,
            } => {
                let stream =
                    Streaming::new(body, Side::Client, max_recv, encoding, deadline, guard);
                Ok((headers, stream))
            }
        }
    }

    /// Sends the request stream from its own task, so that responses can be read meanwhile.
    /// The returned link stops the task (with RST_STREAM CANCEL) when dropped, and carries the
    /// task's failure back to the response side.
    fn spawn_sender<S, Req>(&self, mut send: SendBody, sent: Outbound<S>) -> DropGuard
    where
        S: Stream<Item = Req> + Send + 'static,
        Req: prost::Message + 'static,
    {
        let (stop, mut cancelled) = oneshot::channel::<()>();
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let Outbound { messages, sending } = sent;
        tokio::spawn(async move {
            let messages = pin!(tokio_stream_ok(messages));
            let stop = pin!(&mut cancelled);
            pump_rest(&mut send, messages, &sending, stop, &failed).await;
        });
        Some(OutboundLink {
            _stop: stop,
            failure,
        })
    }
}

/// Encodes the one request message of a unary or server-streaming call, compressed as the
/// request asks.
fn encode_single<M: prost::Message>(
    message: &M,
    head: &CallHead,
    opening: &Opening<'_>,
) -> Result<Bytes, Status> {
    let control = head.extensions.get::<SendCompression>();
    let encoding = SendCompression::apply(control, opening.head.encoding);
    codec::encode(message, encoding, opening.max_send)
}

/// A call with one response ended: the balancer's callback, the retry throttle, the
/// middleware observers and the span see how.
fn end_single<T>(
    done: &mut CallDone,
    result: &Result<Response<T>, Status>,
    opening: &Opening<'_>,
    committed: bool,
    layer: Option<&Observers>,
    span: Option<&tracing::Span>,
) {
    finish(done, result);
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    account(opening, committed, code);
    finish_layer(layer, result);
    if let Some(span) = span {
        span.record("rpc.grpc.status_code", code as i32);
    }
}

/// A streaming response whose end (status) its span, if any, records; a failed call's span
/// records the failure now.
fn traced<Resp>(
    span: Option<tracing::Span>,
    result: Result<Response<Streaming<Resp>>, Status>,
) -> Result<Response<Streaming<Resp>>, Status> {
    let Some(span) = span else {
        return result;
    };
    match result {
        Ok(response) => Ok(response.map(|stream| stream.traced(span))),
        Err(status) => {
            span.record("rpc.grpc.status_code", status.code() as i32);
            Err(status)
        }
    }
}

/// A call's request stream, with what sending it takes.
struct Outbound<S> {
    messages: S,
    sending: Sending,
}

/// How a call's request messages are sent.
struct Sending {
    control: Option<SendCompression>,
    encoding: Option<CompressionEncoding>,
    /// The largest request message.
    max: usize,
    /// The call's middleware observers, when one of them wants messages.
    observers: Option<Observers>,
}

impl<S> Outbound<S> {
    fn new(
        messages: S,
        control: Option<SendCompression>,
        encoding: Option<CompressionEncoding>,
        max: usize,
        layer: Option<&Observers>,
    ) -> Outbound<S> {
        let observers = layer.filter(|o| o.wants_messages()).cloned();
        Outbound {
            messages,
            sending: Sending {
                control,
                encoding,
                max,
                observers,
            },
        }
    }
}

/// Shows a request message to the call's observers (if they want messages).
fn observe_request<M: prost::Message + 'static>(layer: Option<&Observers>, message: &M) {
    if let Some(observers) = layer {
        observers.message(Direction::Request, message);
    }
}

/// Shows the response headers to the call's observers and has them follow its messages (and,
/// if `ends_call`, the stream's end).
fn observe_response<Resp>(
    layer: Option<&Observers>,
    headers: &MetadataMap,
    stream: Streaming<Resp>,
    ends_call: bool,
) -> Streaming<Resp> {
    match layer {
        None => stream,
        Some(observers) => {
            observers.response_headers(headers);
            stream.observed_by(observers.clone(), ends_call)
        }
    }
}

/// A bidi call's response stream, which its observers follow (headers, messages, end).
fn observe_stream<Resp>(layer: Option<Observers>, stream: Streaming<Resp>) -> Streaming<Resp> {
    match layer {
        None => stream,
        Some(observers) => stream.observed_by(observers, true),
    }
}

/// The call failed with `status` before a response stream: its observers see the end.
fn end_layer(layer: Option<&Observers>, status: Status) -> Status {
    if let Some(observers) = layer {
        observers.end(&status, status.metadata());
    }
    status
}

/// A call with one response ended: its observers see how.
fn finish_layer<T>(layer: Option<&Observers>, result: &Result<Response<T>, Status>) {
    if let Some(observers) = layer {
        match result {
            Ok(response) => observers.end_ok(response.trailers()),
            Err(status) => observers.end(status, status.metadata()),
        }
    }
}

/// What opening one attempt of a call takes.
#[derive(Clone, Copy)]
struct AttemptHead<'a> {
    path: &'static str,
    metadata: &'a MetadataMap,
    deadline: Option<Instant>,
    wait_for_ready: bool,
    encoding: Option<CompressionEncoding>,
    /// The call's middleware observers, which see each attempt start and end.
    observers: Option<&'a Observers>,
}

/// An [`AttemptHead`] of its own, for attempts that outlive the caller's borrow.
struct OwnedHead {
    path: &'static str,
    metadata: MetadataMap,
    deadline: Option<Instant>,
    wait_for_ready: bool,
    encoding: Option<CompressionEncoding>,
    observers: Option<Observers>,
}

impl OwnedHead {
    fn from(head: &AttemptHead<'_>) -> OwnedHead {
        OwnedHead {
            path: head.path,
            metadata: head.metadata.clone(),
            deadline: head.deadline,
            wait_for_ready: head.wait_for_ready,
            encoding: head.encoding,
            observers: head.observers.cloned(),
        }
    }

    fn borrowed(&self) -> AttemptHead<'_> {
        AttemptHead {
            path: self.path,
            metadata: &self.metadata,
            deadline: self.deadline,
            wait_for_ready: self.wait_for_ready,
            encoding: self.encoding,
            observers: self.observers.as_ref(),
        }
    }
}

/// What a call takes: how to open its attempts, its limits and its service config.
struct Opening<'a> {
    head: AttemptHead<'a>,
    /// The largest request and response messages.
    max_send: usize,
    max_recv: usize,
    /// The channel's retry throttle, when the service config sets one.
    throttle: Option<Arc<Throttle>>,
    /// Whether the channel follows retry and hedging policies.
    retries: bool,
    /// The service config's settings for the method.
    method: Option<Arc<MethodConfig>>,
}

impl Opening<'_> {
    /// The retry or hedging policy the call runs under, if any.
    fn policy(&self) -> Option<Policy<'_>> {
        self.method
            .as_deref()
            .filter(|_| self.retries)
            .and_then(Policy::of)
    }
}

/// Tells the server how many attempts preceded this one (gRFC A6).
const GRPC_PREVIOUS_RPC_ATTEMPTS: http::HeaderName =
    http::HeaderName::from_static("grpc-previous-rpc-attempts");

/// Tells the server how many times the call was sent again because an earlier stream was
/// not processed (refused, or cut off by GOAWAY): gRFC A6's transparent retries.
const GRPC_TRANSPARENT_RETRY_ATTEMPTS: http::HeaderName =
    http::HeaderName::from_static("grpc-transparent-retry-attempts");

/// Sends the rest of a request stream on the one stream left (the no-policy sender, or a
/// committed attempt), under flow control, and ends it.
async fn pump_rest<S, M, F>(
    send: &mut SendBody,
    messages: Pin<&mut S>,
    sending: &Sending,
    stop: Pin<&mut F>,
    failed: &OnceLock<Status>,
) where
    S: Stream<Item = Result<M, Status>> + ?Sized,
    M: prost::Message + 'static,
    F: Future,
{
    let observe = sending.observers.as_ref().map(|o| (o, Direction::Request));
    match send_messages(
        send,
        messages,
        sending.encoding,
        sending.control.as_ref(),
        sending.max,
        Panics::Propagate,
        stop,
        observe,
    )
    .await
    {
        Pumped::Ended => {
            let _ = send.send_data(Bytes::new(), true);
        }
        Pumped::Failed(status) => {
            tracing::debug!(%status, "request message not sent; ending the call");
            let _ = failed.set(status);
            send.cancel();
        }
        Pumped::Stopped => send.cancel(),
        Pumped::Reset => {}
    }
}

/// Checks a call's response headers: HTTP status, Trailers-Only, content-type and message
/// encoding.
fn open_response(response: http::Response<RecvBody>) -> Result<Opened, Status> {
    let (parts, body): (_, RecvBody) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(Status::from_trailers(&parts.headers)
            .filter(|s| s.code() != Code::Ok)
            .unwrap_or_else(|| Status::from_http_status(parts.status)));
    }
    if let Some(status) = Status::from_trailers(&parts.headers) {
        // Trailers-Only: the status came in the headers and no messages follow.
        if status.code() != Code::Ok {
            return Err(status);
        }
        return Ok(Opened::Finished {
            trailers: status.metadata().clone(),
        });
    }
    let content_type = parts.headers.get(http::header::CONTENT_TYPE);
    if !codec::is_grpc_content_type(content_type) {
        return Err(Status::unknown(format!(
            "response has content-type {content_type:?}, not application/grpc"
        )));
    }
    let encoding = match parts.headers.get(codec::GRPC_ENCODING).map(|v| v.to_str()) {
        None => None,
        Some(Ok("identity")) => None,
        Some(Ok(name)) => match CompressionEncoding::from_name(name) {
            Some(e) => Some(e),
            None => {
                return Err(Status::internal(format!(
                    "response uses unsupported grpc-encoding {name:?}"
                )));
            }
        },
        Some(Err(_)) => return Err(Status::internal("response grpc-encoding is not ASCII")),
    };
    Ok(Opened::Stream {
        headers: MetadataMap::from_headers(parts.headers),
        body,
        encoding,
    })
}

/// Counts a call's outcome in the channel's retry throttle (gRFC A6): a success adds
/// `tokenRatio`, a failure with a code the method retries (or hedges past) takes one. A
/// failure that ended a retried call before it was committed was counted by the retry loop.
fn account(opening: &Opening<'_>, committed: bool, code: Code) {
    if committed || opening.policy().is_none() || code == Code::Ok {
        throttle_outcome(opening.throttle.as_deref(), opening.method.as_deref(), code);
    }
}

fn throttle_outcome(throttle: Option<&Throttle>, method: Option<&MethodConfig>, code: Code) {
    let Some(throttle) = throttle else {
        return;
    };
    if code == Code::Ok {
        throttle.success();
    } else if method.is_some_and(|m| {
        m.retry_policy
            .as_ref()
            .is_some_and(|p| p.retryable_status_codes.contains(&code))
            || m.hedging_policy
                .as_ref()
                .is_some_and(|p| p.non_fatal_status_codes.contains(&code))
    }) {
        throttle.failure();
    }
}

/// Runs the balancer's callback for a call that returned one response (or failed).
fn finish<T>(done: &mut CallDone, result: &Result<Response<T>, Status>) {
    if done.is_armed() {
        match result {
            Ok(response) => done.finish(&Status::new(Code::Ok, ""), response.trailers()),
            Err(status) => done.finish_with(status),
        }
    }
}

/// Hands the balancer's callback to a call's response stream, which runs it when the stream
/// ends (or runs it now, with the status, when the call failed to start).
fn streaming_result<Resp>(
    mut done: CallDone,
    result: Result<Response<Streaming<Resp>>, Status>,
    opening: &Opening<'_>,
    committed: bool,
) -> Result<Response<Streaming<Resp>>, Status> {
    match result {
        Ok(response) if done.is_armed() || opening.throttle.is_some() => {
            let (throttle, method) = (opening.throttle.clone(), opening.method.clone());
            Ok(response.map(|stream| {
                stream.with_done(OnEnd::new(move |status, trailers| {
                    throttle_outcome(throttle.as_deref(), method.as_deref(), status.code());
                    done.finish(status, trailers);
                }))
            }))
        }
        Ok(response) => Ok(response),
        Err(status) => {
            account(opening, committed, status.code());
            done.finish_with(&status);
            Err(status)
        }
    }
}

/// Waits for the response headers of a streaming call; a failure of the request sender
/// (a message it could not encode) explains a reset better than the reset itself.
async fn await_headers(
    response: ResponseFuture,
    guard: &DropGuard,
) -> Result<http::Response<RecvBody>, Status> {
    response.await.map_err(|e| {
        guard
            .as_ref()
            .and_then(OutboundLink::failure)
            .unwrap_or_else(|| e.to_status())
    })
}

/// Reads the one message of a unary or client-streaming response, then its trailers.
async fn single_response<Resp: prost::Message + Default + 'static>(
    headers: MetadataMap,
    stream: &mut Streaming<Resp>,
) -> Result<Response<Resp>, Status> {
    let Some(message) = stream.message().await? else {
        return Err(Status::internal(
            "server ended a unary response without a message",
        ));
    };
    if stream.message().await?.is_some() {
        return Err(Status::internal(
            "server sent more than one message in a unary response",
        ));
    }
    let compressed = stream.last_message_compressed();
    let mut response = Response::from_parts(headers, message, stream.take_trailers());
    if compressed {
        response.extensions_mut().insert(MessageCompressed(true));
    }
    Ok(response)
}

/// Runs `call` until `deadline`, inside the call's span if it has one (entered for each
/// poll); past the deadline the call is dropped (which resets its stream with CANCEL) and
/// fails with DEADLINE_EXCEEDED.
///
/// `call` is pinned by the caller: taken by value, it would be stored twice in the future.
async fn with_deadline<T>(
    deadline: Option<Instant>,
    span: Option<&tracing::Span>,
    mut call: Pin<&mut impl Future<Output = Result<T, Status>>>,
) -> Result<T, Status> {
    let call = poll_fn(|cx| {
        let _entered = span.map(tracing::Span::enter);
        call.as_mut().poll(cx)
    });
    match deadline {
        None => call.await,
        Some(d) => tokio::time::timeout_at(d, call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("deadline exceeded"))),
    }
}

/// Wraps a stream of request messages as a stream of `Result`s, the shape the sender takes.
fn tokio_stream_ok<S: Stream>(inner: S) -> OkStream<S> {
    OkStream { inner }
}

pin_project_lite::pin_project! {
    struct OkStream<S> {
        #[pin]
        inner: S,
    }
}

impl<S: Stream> Stream for OkStream<S> {
    type Item = Result<S::Item, Status>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.project().inner.poll_next(cx).map(|m| m.map(Ok))
    }
}
