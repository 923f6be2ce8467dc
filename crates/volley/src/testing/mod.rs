//! Test helpers, behind the `test-util` feature: a fake channel to unit-test balancers
//! without sockets, and an in-memory transport to run a client and a server without them.

mod balancer;
mod memory;

pub use balancer::FakeChannel;
pub use memory::{MemoryConnector, MemoryIncoming, in_memory};
