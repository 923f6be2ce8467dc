//! Interceptors: code that sees every call before it runs (on the client before it is sent, on
//! the server before the handler), may change its metadata, timeout and extensions, and may
//! reject it with a status.

use std::sync::Arc;

use crate::{Request, Status};

/// Sees each call's head (metadata, timeout, extensions; not the message) before the call
/// runs. Returning an error ends the call with that status: on the client without sending
/// anything, on the server without running the handler.
///
/// Closures `Fn(&mut Request<()>) -> Result<(), Status>` are interceptors.
///
/// ```
/// use volley::{Request, Status};
/// let require_token = |req: &mut Request<()>| -> Result<(), Status> {
///     match req.metadata().get("authorization") {
///         Some(token) if token == "Bearer secret" => Ok(()),
///         _ => Err(Status::unauthenticated("missing or wrong token")),
///     }
/// };
/// let _server = volley::Server::builder().interceptor(require_token);
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Inspects or changes the call's head, or rejects the call.
    fn intercept(&self, request: &mut Request<()>) -> Result<(), Status>;
}

impl<F> Interceptor for F
where
    F: Fn(&mut Request<()>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn intercept(&self, request: &mut Request<()>) -> Result<(), Status> {
        self(request)
    }
}

/// Interceptors in the order they were added; each runs only if the ones before accepted.
#[derive(Clone, Default)]
pub(crate) struct Interceptors(Vec<Arc<dyn Interceptor>>);

impl Interceptors {
    pub(crate) fn push(&mut self, interceptor: impl Interceptor) {
        self.0.push(Arc::new(interceptor));
    }

    /// Runs every interceptor on the head of `request`.
    pub(crate) fn run<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        if self.0.is_empty() {
            return Ok(request);
        }
        let (mut head, message) = request.split_message();
        for interceptor in &self.0 {
            interceptor.intercept(&mut head)?;
        }
        Ok(head.with_message(message))
    }
}

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptor(s)", self.0.len())
    }
}
