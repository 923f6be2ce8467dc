//! The client: a [`Channel`] to a target and [`Grpc`], the four RPC kinds over it.

mod call;
mod channel;
mod subchannel;

pub use call::Grpc;
pub use channel::{Channel, ChannelBuilder};
