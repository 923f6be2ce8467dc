//! `Streaming<T>`: inbound messages decoded from an HTTP/2 stream.
//!
//! On the server it yields the client's request messages; on the client it yields the server's
//! response messages and then reads the trailers, turning a non-OK `grpc-status` into an error.

use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::time::Sleep;

use crate::codec::{self, BufferQuota, CompressionEncoding, FrameDecoder};
use crate::metadata::MetadataMap;
use crate::middleware::{Direction, Observers};
use crate::transport::{RecvBody, StreamError};
use crate::{Code, Status};

/// Which side reads the stream: it decides whether trailers carry a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The server reads a request stream: its end is the end of the messages.
    Server,
    /// The client reads a response stream: trailers with `grpc-status` follow the messages.
    Client,
}

#[derive(Debug)]
enum State {
    /// A client call that returned before its response headers: they come first.
    Headers,
    Messages,
    Trailers,
    Done,
}

/// Ties a client call's outbound half (a task sending the request stream, see
/// `client::call`) to the reader of its responses.
#[derive(Debug)]
pub(crate) struct OutboundLink {
    /// Dropping it stops the sender task, which then resets the stream with CANCEL.
    pub(crate) _stop: tokio::sync::oneshot::Sender<()>,
    /// Why the sender gave up (a request message it could not encode), if it did: the call
    /// ends with this status rather than with the CANCELLED of its own reset.
    pub(crate) failure: Arc<OnceLock<Status>>,
}

impl OutboundLink {
    /// The sender's failure, if it failed.
    pub(crate) fn failure(&self) -> Option<Status> {
        self.failure.get().cloned()
    }
}

/// The link of a streaming-request call; `None` for calls with one request message.
pub(crate) type DropGuard = Option<OutboundLink>;

/// A client call's response headers, checked: a stream of messages to read, or a
/// Trailers-Only response that ended the call with OK.
pub(crate) enum Opened {
    Stream {
        headers: MetadataMap,
        body: RecvBody,
        encoding: Option<CompressionEncoding>,
    },
    Finished {
        trailers: MetadataMap,
    },
}

/// Runs once when a client call's response stream ends, with the call's status and
/// trailers: the client layer's hook for the balancer's done callback. Dropping it unrun
/// drops the callback, which then reports the call cancelled.
#[derive(Default)]
pub(crate) struct OnEnd(Option<EndCallback>);

type EndCallback = Box<dyn FnOnce(&Status, &MetadataMap) + Send>;

impl OnEnd {
    pub(crate) fn new(f: impl FnOnce(&Status, &MetadataMap) + Send + 'static) -> OnEnd {
        OnEnd(Some(Box::new(f)))
    }

    fn finish(&mut self, status: &Status, trailers: &MetadataMap) {
        if let Some(f) = self.0.take() {
            f(status, trailers);
        }
    }

    fn finish_with(&mut self, status: &Status) {
        if let Some(f) = self.0.take() {
            f(status, status.metadata());
        }
    }
}

/// The response headers of a call that returned at once, to come.
pub(crate) type PendingHeaders = Pin<Box<dyn Future<Output = Result<Opened, Status>> + Send>>;

/// What only some client streams need, boxed so that the streams that need none (every
/// server request stream, unary responses) stay small: a server call's future holds one.
#[derive(Default)]
struct ClientExtras {
    /// The response headers, until they arrive (`State::Headers`).
    pending: Option<PendingHeaders>,
    /// The receive limit, for the decoder made when the headers arrive.
    max_len: usize,
    /// The response headers, once they arrived.
    headers: Option<MetadataMap>,
    /// Runs at the call's end (the balancer's done callback, the retry throttle).
    done: OnEnd,
    /// The call's middleware observers, when they follow this stream.
    observers: Option<Observers>,
    /// Whether they see its messages.
    observe_messages: bool,
    /// Whether the stream's end is the call's (a client call's response stream handed to
    /// the caller): the observers see it, or CANCELLED if the stream is dropped first.
    ends_call: bool,
    /// The call's `grpc.client` span, which records the stream's final status.
    span: Option<tracing::Span>,
}

impl Drop for ClientExtras {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            span.record("rpc.grpc.status_code", Code::Cancelled as i32);
        }
        if self.ends_call
            && let Some(observers) = &self.observers
        {
            observers.end(
                &Status::cancelled("the call was cancelled"),
                &MetadataMap::new(),
            );
        }
    }
}

impl ClientExtras {
    /// The call ended: its observers see it, if this stream's end is the call's.
    fn end_observers(&mut self, status: &Status, trailers: &MetadataMap) {
        if let Some(span) = self.span.take() {
            span.record("rpc.grpc.status_code", status.code() as i32);
        }
        if self.ends_call
            && let Some(observers) = &self.observers
        {
            observers.end(status, trailers);
        }
    }
}

/// The part of a stream that does not depend on the message type.
struct Inner {
    client: Option<Box<ClientExtras>>,
    body: Option<RecvBody>,
    decoder: FrameDecoder,
    side: Side,
    state: State,
    trailers: Option<MetadataMap>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Held while the call runs; dropping it stops the outbound half (client side).
    guard: DropGuard,
}

/// A stream of inbound messages: a request stream on the server, a response stream on the
/// client. It is a [`Stream`] of `Result<T, Status>`; [`Streaming::message`] reads one message.
pub struct Streaming<T> {
    inner: Inner,
    _marker: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("side", &self.inner.side)
            .field("state", &self.inner.state)
            .finish()
    }
}

impl<T> Streaming<T> {
    pub(crate) fn new(
        body: RecvBody,
        side: Side,
        max_len: usize,
        encoding: Option<CompressionEncoding>,
        deadline: Option<tokio::time::Instant>,
        guard: DropGuard,
    ) -> Streaming<T> {
        Streaming {
            inner: Inner {
                client: None,
                body: Some(body),
                decoder: FrameDecoder::new(max_len, encoding),
                side,
                state: State::Messages,
                trailers: None,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                guard,
            },
            _marker: PhantomData,
        }
    }

    /// Counts the stream's partly received messages against its connection's `quota`.
    pub(crate) fn with_quota(mut self, quota: Arc<BufferQuota>) -> Streaming<T> {
        self.inner.decoder.set_quota(quota);
        self
    }

    /// A client call's response stream that starts with its headers, still to come.
    pub(crate) fn pending(
        headers: PendingHeaders,
        max_len: usize,
        deadline: Option<tokio::time::Instant>,
        guard: DropGuard,
    ) -> Streaming<T> {
        Streaming {
            inner: Inner {
                client: Some({
                    let mut extras = Box::<ClientExtras>::default();
                    extras.pending = Some(headers);
                    extras.max_len = max_len;
                    extras
                }),
                body: None,
                decoder: FrameDecoder::new(max_len, None),
                side: Side::Client,
                state: State::Headers,
                trailers: None,
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                guard,
            },
            _marker: PhantomData,
        }
    }

    /// Keeps the response headers (client side), for [`Streaming::headers`].
    pub(crate) fn with_headers(mut self, headers: MetadataMap) -> Streaming<T> {
        self.inner.extras().headers = Some(headers);
        self
    }

    /// Runs the balancer's callback when the call ends (client side).
    pub(crate) fn with_done(mut self, mut done: OnEnd) -> Streaming<T> {
        if matches!(self.inner.state, State::Done) {
            // A Trailers-Only OK response: the call is already over.
            let trailers = self.inner.trailers.clone().unwrap_or_default();
            done.finish(&Status::new(Code::Ok, ""), &trailers);
        } else {
            self.inner.extras().done = done;
        }
        self
    }

    /// A stream that is already over (a Trailers-Only OK response on the client).
    pub(crate) fn finished(trailers: MetadataMap) -> Streaming<T> {
        Streaming {
            inner: Inner {
                client: None,
                body: None,
                decoder: FrameDecoder::new(0, None),
                side: Side::Client,
                state: State::Done,
                trailers: Some(trailers),
                deadline: None,
                guard: None,
            },
            _marker: PhantomData,
        }
    }

    /// Whether the last message this stream returned arrived with the compressed flag set.
    pub fn last_message_compressed(&self) -> bool {
        self.inner.decoder.last_compressed()
    }

    /// The response headers of a client call, waiting for them if they have not arrived: a
    /// bidirectional-streaming call returns before its headers (so that a server that sends
    /// them only with its first response does not deadlock a client that sends first), and
    /// its `Response`'s metadata is then empty. An error is the call's status (the server
    /// refused the call, or it failed before answering). On the server, an empty map.
    pub async fn headers(&mut self) -> Result<&MetadataMap, Status> {
        let inner = &mut self.inner;
        if matches!(inner.state, State::Headers) {
            poll_fn(|cx| inner.poll_headers(cx)).await?;
        }
        static EMPTY: OnceLock<MetadataMap> = OnceLock::new();
        Ok(
            match self.inner.client.as_ref().and_then(|c| c.headers.as_ref()) {
                Some(headers) => headers,
                None => EMPTY.get_or_init(MetadataMap::new),
            },
        )
    }

    /// The trailing metadata, once the stream has ended (client side only).
    pub fn trailers(&self) -> Option<&MetadataMap> {
        self.inner.trailers.as_ref()
    }

    pub(crate) fn take_trailers(&mut self) -> MetadataMap {
        self.inner.trailers.take().unwrap_or_default()
    }
}

impl<T> Streaming<T> {
    /// Has the call's span record the stream's final status.
    pub(crate) fn traced(mut self, span: tracing::Span) -> Streaming<T> {
        if matches!(self.inner.state, State::Done) {
            // A Trailers-Only OK response: the call is already over.
            span.record("rpc.grpc.status_code", Code::Ok as i32);
        } else {
            self.inner.extras().span = Some(span);
        }
        self
    }

    /// Shows the stream to the call's middleware observers: each message if they want
    /// messages; on a client, the response headers if they are still to come; and the end
    /// of the stream if it `ends_call`.
    pub(crate) fn observed_by(mut self, observers: Observers, ends_call: bool) -> Streaming<T> {
        if ends_call && matches!(self.inner.state, State::Done) {
            // A Trailers-Only OK response: the call is already over.
            let trailers = self.inner.trailers.clone().unwrap_or_default();
            observers.end_ok(&trailers);
            return self;
        }
        let extras = self.inner.extras();
        extras.observe_messages = observers.wants_messages();
        extras.observers = Some(observers);
        extras.ends_call = ends_call;
        self
    }
}

impl<T: prost::Message + Default + 'static> Streaming<T> {
    /// The next message; `Ok(None)` at the end of the stream.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        let message = self.next_decoded(codec::decode::<T>).await?;
        if let Some(message) = &message {
            self.inner.observe(message);
        }
        Ok(message)
    }

    /// Receives the next message into `msg`, reusing its allocations (its strings', bytes'
    /// and repeated fields' capacity), as grpc-go's `RecvMsg(m)` does: `msg` is cleared and
    /// the message decoded into it. On a busy stream of small messages this saves the
    /// allocation and free per message that [`Streaming::message`] makes for a fresh `T`.
    ///
    /// Returns `Ok(true)` when a message was received, `Ok(false)` when the stream has ended
    /// (then `msg` is left as it was), and the call's status on error, as `message` does.
    /// After an error `msg` may hold part of the bad message.
    pub async fn message_into(&mut self, msg: &mut T) -> Result<bool, Status> {
        let decoded = self
            .next_decoded(|bytes| codec::decode_into(msg, bytes))
            .await?;
        if decoded.is_some() {
            self.inner.observe(&*msg);
        }
        Ok(decoded.is_some())
    }

    /// The next message, as `decode` makes it from its bytes; `Ok(None)` at the end.
    async fn next_decoded<R>(
        &mut self,
        mut decode: impl FnMut(&[u8]) -> Result<R, Status>,
    ) -> Result<Option<R>, Status> {
        // A message already buffered (the common case on a busy stream, where one DATA frame
        // holds many) is decoded here, without the poll machinery.
        if let Some(decoded) = self.inner.buffered(&mut decode) {
            return decoded.map(Some);
        }
        let inner = &mut self.inner;
        poll_fn(|cx| inner.poll_frame(cx, &mut decode))
            .await
            .transpose()
    }
}

impl Inner {
    /// Shows `message` to the call's middleware observers, if they want messages.
    #[inline(always)]
    fn observe<T: prost::Message + 'static>(&self, message: &T) {
        if let Some(observers) = self
            .client
            .as_ref()
            .filter(|c| c.observe_messages)
            .and_then(|c| c.observers.as_ref())
        {
            let direction = match self.side {
                Side::Server => Direction::Request,
                Side::Client => Direction::Response,
            };
            observers.message(direction, message);
        }
    }

    fn fail<X>(&mut self, status: Status) -> Poll<Option<Result<X, Status>>> {
        Poll::Ready(Some(Err(self.end(status))))
    }

    /// Ends the stream with `status` (returned, to be handed to the caller).
    fn end(&mut self, status: Status) -> Status {
        self.state = State::Done;
        // Dropping the body stops reading; the transport discards (and credits) what still
        // arrives.
        self.body = None;
        self.guard = None;
        if let Some(client) = self.client.as_mut() {
            client.pending = None;
            client.done.finish_with(&status);
            client.end_observers(&status, status.metadata());
        }
        status
    }

    /// The client extras, made on first use.
    fn extras(&mut self) -> &mut ClientExtras {
        self.client.get_or_insert_with(Box::default)
    }

    /// Runs the end hook, if the stream has one.
    fn finish(&mut self, status: &Status, trailers: &MetadataMap) {
        if let Some(client) = self.client.as_mut() {
            client.done.finish(status, trailers);
            client.end_observers(status, trailers);
        }
    }

    /// Waits for the response headers of a call that returned before them; an error has
    /// ended the stream.
    fn poll_headers(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        if !matches!(self.state, State::Headers) {
            return Poll::Ready(Ok(()));
        }
        if self.deadline_passed(cx) {
            return Poll::Ready(Err(self.end(Status::deadline_exceeded("deadline exceeded"))));
        }
        let Some(pending) = self.client.as_mut().and_then(|c| c.pending.as_mut()) else {
            return Poll::Ready(Err(self.end(Status::internal("response headers lost"))));
        };
        let opened = ready!(pending.as_mut().poll(cx));
        let client = self.extras();
        client.pending = None;
        let max_len = client.max_len;
        match opened {
            Ok(Opened::Stream {
                headers,
                body,
                encoding,
            }) => {
                if let Some(observers) = &self.extras().observers {
                    observers.response_headers(&headers);
                }
                self.extras().headers = Some(headers);
                self.body = Some(body);
                self.decoder = FrameDecoder::new(max_len, encoding);
                self.state = State::Messages;
                Poll::Ready(Ok(()))
            }
            Ok(Opened::Finished { trailers }) => {
                self.state = State::Done;
                self.guard = None;
                self.finish(&Status::new(Code::Ok, ""), &trailers);
                self.trailers = Some(trailers);
                Poll::Ready(Ok(()))
            }
            Err(status) => Poll::Ready(Err(self.end(status))),
        }
    }

    /// The next message if one is already buffered: decoded, or the error that ends the
    /// stream (a bad length prefix, an oversize message, protobuf that does not decode).
    /// Inlined: it is the whole of a busy stream's per-message path.
    #[inline(always)]
    fn buffered<R>(
        &mut self,
        decode: &mut impl FnMut(&[u8]) -> Result<R, Status>,
    ) -> Option<Result<R, Status>> {
        if !matches!(self.state, State::Messages) {
            return None;
        }
        match self.decoder.next_message_with(decode) {
            Ok(Some(Ok(msg))) => Some(Ok(msg)),
            Ok(Some(Err(status))) => {
                tracing::debug!(%status, "invalid protobuf in inbound message");
                Some(Err(self.end(status)))
            }
            Ok(None) => None,
            Err(status) => {
                tracing::debug!(%status, "rejecting inbound message");
                Some(Err(self.end(status)))
            }
        }
    }

    /// Polls for the next message, decoded by `decode`; then, on the client, the trailers.
    fn poll_frame<R>(
        &mut self,
        cx: &mut Context<'_>,
        decode: &mut impl FnMut(&[u8]) -> Result<R, Status>,
    ) -> Poll<Option<Result<R, Status>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Headers => {
                    if let Err(status) = ready!(self.poll_headers(cx)) {
                        return Poll::Ready(Some(Err(status)));
                    }
                }
                State::Messages => {
                    if let Some(decoded) = self.buffered(decode) {
                        return Poll::Ready(Some(decoded));
                    }
                    if self.deadline_passed(cx) {
                        return self.fail(Status::deadline_exceeded("deadline exceeded"));
                    }
                    let Some(body) = self.body.as_mut() else {
                        self.state = State::Done;
                        continue;
                    };
                    match ready!(body.poll_data(cx)) {
                        Some(Ok(chunk)) => {
                            if let Err(status) = self.decoder.push(chunk) {
                                tracing::debug!(%status, "rejecting inbound message");
                                return self.fail(status);
                            }
                        }
                        Some(Err(e)) => return self.fail(self.stream_error(&e)),
                        None => {
                            if self.decoder.has_partial() {
                                return self.fail(Status::internal(
                                    "stream ended in the middle of a message",
                                ));
                            }
                            self.state = match self.side {
                                Side::Server => State::Done,
                                Side::Client => State::Trailers,
                            };
                        }
                    }
                }
                State::Trailers => {
                    if self.deadline_passed(cx) {
                        return self.fail(Status::deadline_exceeded("deadline exceeded"));
                    }
                    let Some(body) = self.body.as_mut() else {
                        self.state = State::Done;
                        continue;
                    };
                    let trailers = match ready!(body.poll_trailers(cx)) {
                        Ok(Some(t)) => t,
                        Ok(None) => {
                            return self.fail(Status::internal(
                                "server closed the stream without sending trailers",
                            ));
                        }
                        Err(e) => return self.fail(self.stream_error(&e)),
                    };
                    self.state = State::Done;
                    self.body = None;
                    self.guard = None;
                    match Status::from_trailers_owned(trailers) {
                        Ok(mut status) if status.code() == Code::Ok => {
                            self.finish(&status, status.metadata());
                            self.trailers = Some(status.take_metadata());
                            return Poll::Ready(None);
                        }
                        Ok(status) => {
                            self.finish(&status, status.metadata());
                            self.trailers = Some(status.metadata().clone());
                            return Poll::Ready(Some(Err(status)));
                        }
                        Err(trailers) => {
                            let trailers = MetadataMap::from_headers(trailers);
                            let status =
                                Status::internal("server sent trailers without grpc-status");
                            self.finish(&status, &trailers);
                            self.trailers = Some(trailers);
                            return Poll::Ready(Some(Err(status)));
                        }
                    }
                }
            }
        }
    }

    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }

    fn stream_error(&self, err: &StreamError) -> Status {
        match self.side {
            // A client that resets its request stream has cancelled the call.
            Side::Server if err.is_reset() => Status::cancelled("the client cancelled the call"),
            Side::Server => err.to_status(),
            Side::Client => self
                .guard
                .as_ref()
                .and_then(OutboundLink::failure)
                .unwrap_or_else(|| err.to_status()),
        }
    }
}

impl<T: prost::Message + Default + 'static> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = &mut self.get_mut().inner;
        let polled = inner.poll_frame(cx, &mut codec::decode::<T>);
        if let Poll::Ready(Some(Ok(message))) = &polled {
            inner.observe(message);
        }
        polled
    }
}
