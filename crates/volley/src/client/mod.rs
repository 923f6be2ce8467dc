//! The client: a [`Channel`] to a target (resolver, balancer, subchannels) and [`Grpc`], the
//! four RPC kinds over it.

mod attempts;
mod backoff;
pub mod balancer;
mod call;
mod channel;
mod config;
mod connectivity;
mod connector;
mod control;
mod method_config;
pub mod resolver;
mod retry;
mod service_config;
pub(crate) mod subchannel;
#[cfg(feature = "tower")]
mod tower;

pub use backoff::{Backoff, BackoffConfig};
pub use call::Grpc;
pub use channel::{Channel, ChannelBuilder, StateChanges, WeakChannel};
pub use connectivity::ConnectivityState;
pub use connector::{BoxIo, ConnectFuture, Connector, Io};
