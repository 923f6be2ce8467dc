//! Volley: a gRPC framework for Rust.
//!
//! The runtime: wire codec, status, metadata, server, client channel, and the transport over
//! Volley's own HTTP/2 engine (`volley-http2`; the `h2` crate stays available, see
//! `Http2Engine`). Services and clients are generated from `.proto` files by `volley-build`.
//!
//! ```no_run
//! # use volley::{Channel, Server};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: Server::builder().add_service(GreeterServer::new(MyGreeter)).serve(addr).await?;
//! // Client: GreeterClient::new(Channel::new("http://127.0.0.1:50051")?).say_hello(req).await?;
//! # Ok(()) }
//! ```

mod client;
mod codec;
pub mod defaults;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod interceptor;
mod metadata;
mod method_path;
pub mod middleware;
pub mod orca;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod random;
mod request;
mod response;
pub mod server;
mod status;
mod streaming;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod timeout;
mod tls;
#[cfg(feature = "tower")]
pub mod tower;
mod transport;
mod untrusted;

pub use client::{
    Backoff, BackoffConfig, BoxIo, Channel, ChannelBuilder, ConnectFuture, ConnectivityState,
    Connector, Grpc, Io, StateChanges, WeakChannel, balancer, resolver,
};
pub use codec::{
    CompressionEncoding, DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE,
    MessageCompressed, SendCompression,
};
pub use error::Error;
pub use interceptor::Interceptor;
pub use metadata::{InvalidMetadata, MetadataMap, MetadataValue};
pub use request::{IntoRequest, IntoStreamingRequest, Request};
pub use response::Response;
pub use server::{Server, ServerBuilder};
#[cfg(feature = "engine")]
pub use transport::Http2Engine;

/// Protobuf's well-known types (`google.protobuf.Timestamp`, `Duration`, `Any`...), the
/// version generated code uses: `.proto` files that import them get these Rust types.
pub use prost_types;
pub use status::{Code, Status};
pub use streaming::Streaming;
pub use tls::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A boxed stream of messages, handy as a server-streaming handler's stream type.
pub type BoxStream<T> =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Items the generated code refers to; not for direct use.
#[doc(hidden)]
pub mod codegen {
    pub use crate::server::{BoxFuture, ServerCall, Service};
    pub use futures_core::Stream;
    pub use prost;
    pub use prost_types;
    pub use std::future::Future;
    pub use std::sync::Arc;
}
