//! With the `tower` feature: a server's calls inside a tower stack (see `volley::tower`).
//! [`Routes`] is the innermost service; [`serve_call`] runs one stream through the stack and
//! writes the stack's response back to it.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use tokio::sync::oneshot;
use tower_service::Service;

use super::Shared;
use super::call::ServerCall;
use crate::Status;
use crate::codec::BufferQuota;
use crate::transport::{
    BodyIn, BoxBody, BoxError, PipeRespond, RecvBody, RequestBody, Respond, ResponseBody, send_body,
};

/// A server's stack, type-erased.
pub(crate) type BoxService = ::tower::util::BoxCloneSyncService<
    http::Request<RequestBody>,
    http::Response<BoxBody>,
    BoxError,
>;

/// Builds a server's stack around its routes when it starts serving.
pub(crate) type MakeStack = Box<dyn FnOnce(Routes) -> BoxService + Send + Sync>;

/// The connection a request came on, for the routes (set before the stack).
#[derive(Clone)]
struct Connection {
    remote: Option<SocketAddr>,
    quota: Arc<BufferQuota>,
}

/// A server's services as a tower [`Service`]: the innermost service of a
/// [`ServerBuilder::layer`](crate::ServerBuilder::layer) stack. It starts each call (its own
/// task, as without a layer) and answers with the call's response once the call sends its
/// response headers (or its Trailers-Only answer). Its future fails only if the call ends
/// without any response, which Volley never does.
#[derive(Clone)]
pub struct Routes {
    /// Weak: the server's shared state holds the stack, which holds this.
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    pub(crate) fn new(shared: std::sync::Weak<Shared>) -> Routes {
        Routes { shared }
    }
}

impl<B> Service<http::Request<B>> for Routes
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(shared) = self.shared.upgrade() else {
            return Box::pin(async { Err("the server has stopped".into()) });
        };
        let (mut parts, body) = request.into_parts();
        let connection = parts.extensions.remove::<Connection>();
        let (remote, quota) = match connection {
            Some(c) => (c.remote, c.quota),
            // Called outside a Volley server's connection: a quota of its own.
            None => (
                None,
                BufferQuota::new(shared.connection.max_pending_request_bytes),
            ),
        };
        // Volley's own request body goes on as the h2 stream it wraps; any other is read
        // through the http-body interface.
        let mut body = Some(body);
        let recv = match (&mut body as &mut dyn std::any::Any).downcast_mut::<Option<RequestBody>>()
        {
            Some(own) => own.take().map(RequestBody::into_inner),
            None => None,
        };
        let recv = match (recv, body) {
            (Some(recv), _) => recv,
            (None, Some(other)) => RecvBody::from_body(BodyIn::new(other)),
            (None, None) => {
                return Box::pin(async { Err("the request body was taken".into()) });
            }
        };
        let (tx, rx) = oneshot::channel();
        let respond = Respond::pipe(PipeRespond::new(tx));
        let request = http::Request::from_parts(parts, recv);
        let config = shared.config.clone();
        if let Some((call, path)) = ServerCall::accept(request, respond, config, remote, &quota) {
            let span = call.span();
            if let Some(fut) = shared.router.route(path.path(), call) {
                match span {
                    None => drop(tokio::spawn(fut)),
                    Some(span) => {
                        use tracing::Instrument;
                        drop(tokio::spawn(fut.instrument(span)));
                    }
                }
            }
        }
        Box::pin(async move {
            match rx.await {
                Ok(response) => Ok(response.map(ResponseBody::pipe)),
                Err(_) => Err("the call ended without a response".into()),
            }
        })
    }
}

/// The status a layer's error ends the call with.
fn status_of_error(error: BoxError) -> Status {
    if let Some(status) = error.downcast_ref::<Status>() {
        return status.clone();
    }
    if error.is::<::tower::timeout::error::Elapsed>() {
        return Status::deadline_exceeded("the server's timeout layer gave up on the call");
    }
    if error.is::<::tower::load_shed::error::Overloaded>() {
        return Status::unavailable("the server is overloaded (load shed)");
    }
    Status::unknown(format!("server layer error: {error}"))
}

/// Runs one call through the server's stack (its own task): the request in, then the
/// response the stack returns written to the stream. The client resetting the stream drops
/// the stack's future (and so the call).
pub(crate) fn serve_call(
    mut stack: BoxService,
    request: http::Request<RecvBody>,
    mut respond: Respond,
    remote: Option<SocketAddr>,
    quota: &Arc<BufferQuota>,
    open: impl Send + 'static,
) {
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(Connection {
        remote,
        quota: quota.clone(),
    });
    let request = http::Request::from_parts(parts, RequestBody::new(body));
    tokio::spawn(async move {
        let _open = open;
        let call = async {
            poll_fn(|cx| stack.poll_ready(cx)).await?;
            stack.call(request).await
        };
        let result = tokio::select! {
            result = call => result,
            () = poll_fn(|cx| respond.poll_reset(cx)) => return,
        };
        match result {
            Ok(response) => write_response(respond, response).await,
            Err(error) => {
                let status = status_of_error(error);
                tracing::debug!(%status, "a server layer failed the call");
                let mut response = http::Response::new(());
                let headers = response.headers_mut();
                headers.insert(http::header::CONTENT_TYPE, crate::codec::APPLICATION_GRPC);
                status.write_to(headers);
                respond.send_response(response, true);
            }
        }
    });
}

/// Writes the stack's response to the stream: the head, then the body's DATA (under flow
/// control) and trailers.
async fn write_response(mut respond: Respond, response: http::Response<BoxBody>) {
    let (parts, body) = response.into_parts();
    let head = http::Response::from_parts(parts, ());
    if body.is_end_stream() {
        respond.send_response(head, true);
        return;
    }
    let Some(mut send) = respond.send_response(head, false) else {
        return;
    };
    send_body(&mut send, body).await;
}
