//! Test helpers, behind the `test-util` feature: a fake channel to unit-test balancers
//! without sockets.

mod balancer;

pub use balancer::FakeChannel;
