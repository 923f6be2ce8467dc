//! `Request<T>`: a message (or a stream of them) with its metadata and call options.

use std::net::SocketAddr;
use std::time::Duration;

use crate::CompressionEncoding;
use crate::codec::CallCompression;

use crate::metadata::MetadataMap;

/// A request: the message (or the stream of messages), custom metadata, and per-call options.
///
/// On the client, set metadata and a timeout before sending; on the server, read the metadata,
/// the peer's address and the remaining time before the deadline. Extensions carry typed
/// values from an [`crate::Interceptor`] to the handler; they are never sent.
#[derive(Debug)]
pub struct Request<T> {
    metadata: MetadataMap,
    message: T,
    timeout: Option<Duration>,
    wait_for_ready: Option<bool>,
    remote_addr: Option<SocketAddr>,
    extensions: http::Extensions,
}

impl<T> Request<T> {
    /// What a middleware sees of the request as its call starts.
    pub(crate) fn call_start<'a>(
        &'a mut self,
        side: crate::middleware::Side,
        kind: crate::middleware::RpcKind,
        path: &'a str,
        deadline: Option<tokio::time::Instant>,
    ) -> crate::middleware::CallStart<'a> {
        crate::middleware::CallStart::new(
            side,
            kind,
            path,
            &mut self.metadata,
            &mut self.extensions,
            deadline,
            self.remote_addr,
        )
    }
}

impl<T> Request<T> {
    /// A request with no metadata and no timeout.
    pub fn new(message: T) -> Request<T> {
        Request {
            metadata: MetadataMap::new(),
            message,
            timeout: None,
            wait_for_ready: None,
            remote_addr: None,
            extensions: http::Extensions::new(),
        }
    }

    pub(crate) fn from_server_parts(
        metadata: MetadataMap,
        message: T,
        timeout: Option<Duration>,
        remote_addr: Option<SocketAddr>,
    ) -> Request<T> {
        Request {
            metadata,
            message,
            timeout,
            wait_for_ready: None,
            remote_addr,
            extensions: http::Extensions::new(),
        }
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message, dropping the metadata.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// The custom metadata (request headers).
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The custom metadata, to add to before sending.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        &mut self.metadata
    }

    /// Sets how long the client waits for the call to complete; sent as `grpc-timeout`, and
    /// the call fails with DEADLINE_EXCEEDED when it runs out. Default: the channel's timeout,
    /// if any, else none.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// Builder form of [`Request::set_timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Request<T> {
        self.timeout = Some(timeout);
        self
    }

    /// On the client, the timeout set on this request. On the server, the time the client
    /// allowed (from `grpc-timeout`), measured from when the request arrived.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Client side: whether the call waits for a ready connection (until its deadline) instead
    /// of failing at once with UNAVAILABLE while the channel is in TRANSIENT_FAILURE (gRPC's
    /// wait-for-ready). Default: the channel's setting
    /// ([`crate::ChannelBuilder::wait_for_ready`]), itself false by default.
    pub fn set_wait_for_ready(&mut self, wait: bool) {
        self.wait_for_ready = Some(wait);
    }

    /// Sets wait-for-ready ([`Request::set_wait_for_ready`]) and returns the request.
    pub fn with_wait_for_ready(mut self, wait: bool) -> Request<T> {
        self.wait_for_ready = Some(wait);
        self
    }

    /// Compresses this call's request messages with `encoding` (`None`: not at all), in
    /// place of the client's `send_compressed`. The server must accept the algorithm (it
    /// answers UNIMPLEMENTED otherwise). Default: the client's choice.
    pub fn set_compression(&mut self, encoding: Option<CompressionEncoding>) {
        self.extensions.insert(CallCompression(encoding));
    }

    /// [`Request::set_compression`], by value.
    pub fn with_compression(mut self, encoding: Option<CompressionEncoding>) -> Request<T> {
        self.set_compression(encoding);
        self
    }

    /// On the server, the address of the peer that sent the request.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// Typed values attached to the call (by an interceptor, for the handler). Default: empty.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Typed values attached to the call, to add to.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// Replaces the message with the result of `f`, keeping metadata, options and extensions.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        let (head, message) = self.split_message();
        head.with_message(f(message))
    }

    /// Separates the message from the rest of the request (what interceptors see).
    pub(crate) fn split_message(self) -> (Request<()>, T) {
        let head = Request {
            metadata: self.metadata,
            message: (),
            timeout: self.timeout,
            wait_for_ready: self.wait_for_ready,
            remote_addr: self.remote_addr,
            extensions: self.extensions,
        };
        (head, self.message)
    }

    /// The request taken apart for sending: what opening the call reads, and the message
    /// (which streaming calls hand to their sender task).
    pub(crate) fn into_parts(self) -> (CallHead, T) {
        let head = CallHead {
            metadata: self.metadata,
            timeout: self.timeout,
            wait_for_ready: self.wait_for_ready,
            extensions: self.extensions,
        };
        (head, self.message)
    }
}

/// A client request's head, taken apart for sending.
pub(crate) struct CallHead {
    pub(crate) metadata: MetadataMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) wait_for_ready: Option<bool>,
    pub(crate) extensions: http::Extensions,
}

/// Anything that can be sent as a unary or server-streaming request: a message or a
/// [`Request`] around one.
pub trait IntoRequest<T> {
    /// Wraps the value in a [`Request`].
    fn into_request(self) -> Request<T>;
}

impl Request<()> {
    /// Puts a message back into a request head.
    pub(crate) fn with_message<T>(self, message: T) -> Request<T> {
        Request {
            metadata: self.metadata,
            message,
            timeout: self.timeout,
            wait_for_ready: self.wait_for_ready,
            remote_addr: self.remote_addr,
            extensions: self.extensions,
        }
    }
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}

/// Anything that can be sent as a client-streaming or bidi request: a stream of messages, or a
/// [`Request`] around one.
pub trait IntoStreamingRequest {
    /// The message type.
    type Message;
    /// The stream of messages.
    type Stream: futures_core::Stream<Item = Self::Message> + Send + 'static;
    /// Wraps the stream in a [`Request`].
    fn into_streaming_request(self) -> Request<Self::Stream>;
}

impl<S> IntoStreamingRequest for S
where
    S: futures_core::Stream + Send + 'static,
{
    type Message = S::Item;
    type Stream = S;
    fn into_streaming_request(self) -> Request<S> {
        Request::new(self)
    }
}

impl<S> IntoStreamingRequest for Request<S>
where
    S: futures_core::Stream + Send + 'static,
{
    type Message = S::Item;
    type Stream = S;
    fn into_streaming_request(self) -> Request<S> {
        self
    }
}
