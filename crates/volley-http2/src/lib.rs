//! Volley's own HTTP/2 protocol code, without I/O: what `volley`'s engine (its default
//! transport, in place of the `h2` crate) runs over sockets.
//!
//! [`hpack`], header compression (RFC 7541): the Huffman code, the static and dynamic
//! tables, a decoder that bounds what a peer can make it hold, and an encoder; and [`frame`],
//! the frame layer (RFC 9113 §4, §6): frames read from a buffer with every per-frame rule
//! checked, header blocks reassembled under a cap, and frames written; and [`server`], the
//! server side of a connection as a state machine (bytes in, events and bytes out): stream
//! states, identifiers, concurrency, flow control both ways, SETTINGS, PING, GOAWAY and the
//! request rules of RFC 9113 §8; [`client`], its mirror for the client side. The I/O around
//! them lives in `volley` (`transport/engine/`: one task per connection) and in `volley
//! bench`'s lean load engine.

pub mod client;
mod common;
pub mod frame;
pub mod hpack;
pub mod server;
mod streams;
#[cfg(test)]
mod testing;

pub use common::{ConnectionError, StreamIdHasher, StreamMap};
pub use streams::{Event, ReusableBlock};
