//! tower interop (cargo feature `tower`): a server's calls run inside a tower
//! [`Layer`](tower_layer::Layer) over `http::Request`/`http::Response`, and a
//! [`Channel`](crate::Channel) is a tower [`Service`](tower_service::Service).
//!
//! **Server.** [`ServerBuilder::layer`](crate::ServerBuilder::layer) wraps the server's
//! [`Routes`] (the innermost service: it starts each call and answers with its response as
//! soon as the call sends its response headers) in a layer, so that what the tower ecosystem
//! offers applies to gRPC calls: `tower::limit::ConcurrencyLimitLayer` and `RateLimitLayer`,
//! `tower::load_shed::LoadShedLayer`, `tower::timeout::TimeoutLayer`, `tower-http`'s header,
//! auth and trace layers, and layers that change the request body (the routes read any
//! body). Compose several with
//! `tower::ServiceBuilder`. A request reaches the layer as an `http::Request<`[`RequestBody`]`>`
//! (the stream's DATA and trailers, unread); the response is an `http::Response` with any
//! body (Volley's own, [`ResponseBody`], streams the call's messages and trailers as the
//! handler produces them, under HTTP/2 flow control). A layer's error becomes the call's
//! status: a [`Status`](crate::Status) as it is, `tower`'s `Elapsed` (timeout) DEADLINE_EXCEEDED, its
//! `Overloaded` (load shedding) UNAVAILABLE, anything else UNKNOWN. A layer that answers
//! itself (an HTTP 401, say) is sent as it is; gRPC clients map the HTTP status to a code.
//!
//! The server's own interceptors and middlewares run inside the layer (when the call
//! starts). A build without the feature pays nothing for it; with the feature and no layer,
//! a call pays about 160 instructions (0.5%, `bench/instructions.sh`). The response future
//! completes when the call sends its response headers: for a unary call, when the handler
//! has returned, so a concurrency limit or a timeout covers the handler; for a streaming
//! response, when the stream starts (a client reset, or a layer dropping the future, cancels
//! the call).
//!
//! **Client.** A [`Channel`](crate::Channel) is a `Service<http::Request<B>>` for any body `B`: it picks a
//! connection as a call does, sends the request as it is (the URI's path; the channel's
//! scheme and authority), and answers with the response head and a body of the stream's
//! DATA and trailers ([`ResponseBody`]). This is the raw HTTP/2 exchange: framing messages
//! and reading `grpc-status` are the caller's (generated clients do not go through it), and
//! the channel's interceptors and middlewares do not run.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Every call (unary: its handler) gets at most two seconds.
//! let server = volley::Server::builder()
//!     .layer(::tower::timeout::TimeoutLayer::new(std::time::Duration::from_secs(2)));
//! # Ok(()) }
//! ```

pub use crate::server::Routes;
pub use crate::transport::{BoxBody, BoxError, RequestBody, ResponseBody};
