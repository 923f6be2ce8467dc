//! Middleware: asynchronous code that wraps every call, from its start to its end.
//!
//! A [`Middleware`] is asked to [`start`](Middleware::start) each call before anything of it
//! runs (on the server, before the handler; on the client, before the request is sent). It
//! sees the call's method, metadata, deadline and peer, may await (ask an auth service,
//! refresh a token), may change the metadata and extensions, and may reject the call with a
//! status. It may then return a [`CallObserver`] that follows the rest of the call: the
//! response headers, every message if it asks to, and the end (status, trailers, elapsed
//! time). Tracing and metrics are middleware in these terms.
//!
//! Several middlewares run in a stated order: on a server, the server's
//! ([`crate::ServerBuilder::middleware`]) in the order added, then the service's
//! ([`crate::server::WithMiddleware`]); each starts only if the ones before accepted the call.
//! Observers see events in that order and the call's end in reverse (the first started ends
//! last), so an outer middleware's timing covers the inner ones. A server without middleware
//! pays nothing for this: no observer is made and no event is delivered.
//!
//! The synchronous [`crate::Interceptor`]s are the simple case and keep working; they run
//! before the middlewares.
//!
//! ```
//! use volley::Status;
//! use volley::middleware::{CallObserver, CallOutcome, CallStart, Middleware, StartFuture};
//!
//! /// Rejects calls without a token; logs how long the others took.
//! struct Auth;
//!
//! impl Middleware for Auth {
//!     fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a> {
//!         Box::pin(async move {
//!             if call.metadata().get("authorization").is_none() {
//!                 return Err(Status::unauthenticated("no token"));
//!             }
//!             Ok(Some(Box::new(Timer(call.path().to_owned())) as Box<dyn CallObserver>))
//!         })
//!     }
//! }
//!
//! struct Timer(String);
//!
//! impl CallObserver for Timer {
//!     fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
//!         println!("{}: {} in {:?}", self.0, outcome.status().code(), outcome.elapsed());
//!     }
//! }
//!
//! let _server = volley::Server::builder().middleware(Auth);
//! ```

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::metadata::MetadataMap;
use crate::{Code, Status};

/// Which end of a call a middleware runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: the call is being made.
    Client,
    /// The server: the call is being served.
    Server,
}

/// The four kinds of RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, a stream of responses.
    BidiStreaming,
}

/// A call as it starts: what a [`Middleware`] sees and may change.
#[derive(Debug)]
pub struct CallStart<'a> {
    side: Side,
    kind: RpcKind,
    path: &'a str,
    metadata: &'a mut MetadataMap,
    extensions: &'a mut http::Extensions,
    deadline: Option<Instant>,
    remote_addr: Option<SocketAddr>,
    target: Option<&'a str>,
}

impl<'a> CallStart<'a> {
    pub(crate) fn new(
        side: Side,
        kind: RpcKind,
        path: &'a str,
        metadata: &'a mut MetadataMap,
        extensions: &'a mut http::Extensions,
        deadline: Option<Instant>,
        remote_addr: Option<SocketAddr>,
    ) -> CallStart<'a> {
        CallStart {
            side,
            kind,
            path,
            metadata,
            extensions,
            deadline,
            remote_addr,
            target: None,
        }
    }

    /// On the client: the channel's target.
    pub(crate) fn with_target(mut self, target: &'a str) -> CallStart<'a> {
        self.target = Some(target);
        self
    }

    /// Which end of the call this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The kind of RPC.
    pub fn kind(&self) -> RpcKind {
        self.kind
    }

    /// The method's path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The service's full name, `package.Service`.
    pub fn service(&self) -> &str {
        crate::method_path::service(self.path)
    }

    /// The method's name, `Method`.
    pub fn method(&self) -> &str {
        crate::method_path::method(self.path)
    }

    /// The request metadata.
    pub fn metadata(&self) -> &MetadataMap {
        self.metadata
    }

    /// The request metadata, to change: on the client, what is sent; on the server, what the
    /// handler sees.
    pub fn metadata_mut(&mut self) -> &mut MetadataMap {
        self.metadata
    }

    /// The request's extensions (values for the handler, or for the client's later layers).
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        self.extensions
    }

    /// When the call's deadline passes, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The peer's address: on the server, the client's (when the connection has one).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// On the client, the channel's target in canonical form (`dns:///example.com:443`, as
    /// gRFC A66's `grpc.target` wants it); `None` on the server.
    pub fn target(&self) -> Option<&str> {
        self.target
    }
}

/// What [`Middleware::start`] returns: after it, the call goes on (with the observer, if
/// any) or ends with the status.
pub type StartFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Box<dyn CallObserver>>, Status>> + Send + 'a>>;

/// Code that wraps every call: see the [module documentation](self).
pub trait Middleware: Send + Sync + 'static {
    /// Starts a call: may await, change `call`'s metadata and extensions, or end the call
    /// with an error status (on the server, answered without running the handler; on the
    /// client, without sending anything). `Ok(Some(observer))` follows the rest of the call;
    /// `Ok(None)` lets it go on unobserved.
    fn start<'a>(&'a self, call: &'a mut CallStart<'_>) -> StartFuture<'a>;
}

/// Follows one call after its middleware started it. Every method has a default that does
/// nothing.
pub trait CallObserver: Send + 'static {
    /// Whether [`request_message`](Self::request_message) and
    /// [`response_message`](Self::response_message) are called. Default: false (messages
    /// are not shown, and cost nothing).
    fn wants_messages(&self) -> bool {
        false
    }

    /// The response headers (metadata), when they are sent (server) or arrive (client).
    fn response_headers(&mut self, _headers: &MetadataMap) {}

    /// A request message, as it is read (server) or sent (client).
    fn request_message(&mut self, _message: &MessageEvent<'_>) {}

    /// A response message, as it is sent (server) or read (client).
    fn response_message(&mut self, _message: &MessageEvent<'_>) {}

    /// Client only: an attempt of the call starts (its stream is about to be opened). A call
    /// has one attempt, or several under a retry or hedging policy (gRFC A6), and each
    /// transparent retry of a stream the server did not process is one too.
    fn attempt_started(&mut self) {}

    /// Client only: an attempt ended (every started attempt ends, before the call's
    /// [`end`](Self::end)). The attempt that committed ends with the call's status; the
    /// others with their own failure, or CANCELLED when another attempt won.
    fn attempt_ended(&mut self, _attempt: &AttemptOutcome<'_>) {}

    /// The call ended, with this outcome. Runs exactly once, also for calls rejected by a
    /// later middleware, failed, or cancelled.
    fn end(self: Box<Self>, _outcome: &CallOutcome<'_>) {}
}

/// How one attempt of a client call ended, shown to [`CallObserver::attempt_ended`].
#[derive(Debug)]
pub struct AttemptOutcome<'a> {
    status: &'a Status,
    elapsed: Duration,
}

impl AttemptOutcome<'_> {
    /// The attempt's status: OK for a success, the server's or the transport's failure, or
    /// CANCELLED for an attempt that lost to another (hedging) or was abandoned.
    pub fn status(&self) -> &Status {
        self.status
    }

    /// The time from the attempt's start to its end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// One message of a call, shown to a [`CallObserver`] that wants messages.
#[derive(Debug)]
pub struct MessageEvent<'a> {
    message: &'a dyn Any,
    encoded_len: usize,
}

impl<'a> MessageEvent<'a> {
    /// The message, to downcast to its generated type (`event.message().downcast_ref::<
    /// HelloRequest>()`).
    pub fn message(&self) -> &'a dyn Any {
        self.message
    }

    /// Its size in protobuf encoding (before compression; the 5-byte gRPC prefix not
    /// counted).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }
}

/// How a call ended, shown to [`CallObserver::end`].
#[derive(Debug)]
pub struct CallOutcome<'a> {
    status: &'a Status,
    trailers: &'a MetadataMap,
    elapsed: Duration,
}

impl CallOutcome<'_> {
    /// The call's status (OK for a success).
    pub fn status(&self) -> &Status {
        self.status
    }

    /// The trailing metadata (for an error, the status's metadata).
    pub fn trailers(&self) -> &MetadataMap {
        self.trailers
    }

    /// The time from the call's start (before the first middleware) to its end.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

/// A list of middlewares, shared cheaply.
#[derive(Clone, Default)]
pub(crate) struct Middlewares(Vec<Arc<dyn Middleware>>);

impl Middlewares {
    pub(crate) fn push(&mut self, middleware: impl Middleware) {
        self.0.push(Arc::new(middleware));
    }

    pub(crate) fn extend(&mut self, more: &Middlewares) {
        self.0.extend(more.0.iter().cloned());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Starts a call on each middleware in turn, collecting their observers into `observers`;
    /// the first rejection ends it (the observers so far then see the call end with it).
    pub(crate) async fn start(
        &self,
        call: &mut CallStart<'_>,
        observers: &Observers,
    ) -> Result<(), Status> {
        for middleware in &self.0 {
            if let Some(observer) = middleware.start(call).await? {
                observers.push(observer);
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Middlewares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} middleware(s)", self.0.len())
    }
}

/// The observers of one call, shared by the parts of the call that report to them (the
/// request reader, the response writer).
#[derive(Clone)]
pub(crate) struct Observers(Arc<Mutex<ObserverState>>);

struct ObserverState {
    started: Instant,
    observers: Vec<Box<dyn CallObserver>>,
    wants_messages: bool,
    ended: bool,
    /// Attempts started and not yet ended: the call's end waits for them.
    open_attempts: u32,
    /// The call's end, held until its last attempt ends.
    pending_end: Option<(Status, MetadataMap, Duration)>,
}

impl Observers {
    /// Observers of a call that starts now.
    pub(crate) fn new() -> Observers {
        Observers(Arc::new(Mutex::new(ObserverState {
            started: Instant::now(),
            observers: Vec::new(),
            wants_messages: false,
            ended: false,
            open_attempts: 0,
            pending_end: None,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ObserverState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, observer: Box<dyn CallObserver>) {
        let mut state = self.state();
        state.wants_messages |= observer.wants_messages();
        state.observers.push(observer);
    }

    /// Whether any observer wants to see messages.
    pub(crate) fn wants_messages(&self) -> bool {
        self.state().wants_messages
    }

    pub(crate) fn response_headers(&self, headers: &MetadataMap) {
        for observer in &mut self.state().observers {
            observer.response_headers(headers);
        }
    }

    /// A message going `direction`, if any observer wants messages (its size is only
    /// computed then).
    pub(crate) fn message<M: prost::Message + 'static>(&self, direction: Direction, message: &M) {
        let mut state = self.state();
        if !state.wants_messages {
            return;
        }
        let event = MessageEvent {
            message,
            encoded_len: message.encoded_len(),
        };
        for observer in state.observers.iter_mut().filter(|o| o.wants_messages()) {
            match direction {
                Direction::Request => observer.request_message(&event),
                Direction::Response => observer.response_message(&event),
            }
        }
    }

    /// An attempt of the call starts; the returned record ends it.
    pub(crate) fn attempt_started(&self) -> AttemptRecord {
        let mut state = self.state();
        state.open_attempts += 1;
        for observer in &mut state.observers {
            observer.attempt_started();
        }
        AttemptRecord {
            observers: Some(self.clone()),
            started: Instant::now(),
        }
    }

    fn attempt_ended(&self, status: &Status, elapsed: Duration) {
        let (observers, pending) = {
            let mut state = self.state();
            state.open_attempts = state.open_attempts.saturating_sub(1);
            let outcome = AttemptOutcome { status, elapsed };
            for observer in &mut state.observers {
                observer.attempt_ended(&outcome);
            }
            if state.open_attempts > 0 {
                return;
            }
            match state.pending_end.take() {
                Some(pending) => (std::mem::take(&mut state.observers), pending),
                None => return,
            }
        };
        let (status, trailers, elapsed) = pending;
        end_each(observers, &status, &trailers, elapsed);
    }

    /// The call ended: each observer's `end`, the last started first (once the call's last
    /// attempt has ended). Later calls do nothing.
    pub(crate) fn end(&self, status: &Status, trailers: &MetadataMap) {
        let (observers, elapsed) = {
            let mut state = self.state();
            if state.ended {
                return;
            }
            state.ended = true;
            let elapsed = state.started.elapsed();
            if state.open_attempts > 0 {
                state.pending_end = Some((status.clone(), trailers.clone(), elapsed));
                return;
            }
            (std::mem::take(&mut state.observers), elapsed)
        };
        end_each(observers, status, trailers, elapsed);
    }

    /// The call ended with OK and these trailers.
    pub(crate) fn end_ok(&self, trailers: &MetadataMap) {
        self.end(&Status::new(Code::Ok, ""), trailers);
    }
}

fn end_each(
    observers: Vec<Box<dyn CallObserver>>,
    status: &Status,
    trailers: &MetadataMap,
    elapsed: Duration,
) {
    let outcome = CallOutcome {
        status,
        trailers,
        elapsed,
    };
    for observer in observers.into_iter().rev() {
        observer.end(&outcome);
    }
}

/// One attempt of a client call, from its start until [`finish`](Self::finish) (or until it
/// is dropped: CANCELLED).
pub(crate) struct AttemptRecord {
    observers: Option<Observers>,
    started: Instant,
}

impl AttemptRecord {
    /// The attempt ended with `status`.
    pub(crate) fn finish(mut self, status: &Status) {
        if let Some(observers) = self.observers.take() {
            observers.attempt_ended(status, self.started.elapsed());
        }
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        if let Some(observers) = self.observers.take() {
            let status = Status::cancelled("the attempt was abandoned");
            observers.attempt_ended(&status, self.started.elapsed());
        }
    }
}

/// Which way a message goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Request,
    Response,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Record(&'static str, Arc<Mutex<Vec<String>>>);

    impl CallObserver for Record {
        fn end(self: Box<Self>, outcome: &CallOutcome<'_>) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} {:?}", self.0, outcome.status().code()));
        }
    }

    #[test]
    fn observers_end_once_last_started_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let observers = Observers::new();
        observers.push(Box::new(Record("outer", log.clone())));
        observers.push(Box::new(Record("inner", log.clone())));
        observers.end(&Status::cancelled("x"), &MetadataMap::new());
        observers.end_ok(&MetadataMap::new());
        assert_eq!(*log.lock().unwrap(), ["inner Cancelled", "outer Cancelled"]);
    }
}
