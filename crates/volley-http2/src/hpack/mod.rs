//! HPACK, HTTP/2's header compression (RFC 7541).
//!
//! - [`Decoder`]: blocks to [`Field`]s. Every malformed block is a [`DecodeError`] (a
//!   COMPRESSION_ERROR); a list above the caller's limit is still decoded to the end, so the
//!   dynamic table stays in step, but its fields past the limit are not delivered.
//! - [`Encoder`]: fields to blocks, with [`Indexing`] chosen per field.
//! - [`huffman`]: the Huffman code.

mod decoder;
mod encoder;
pub mod huffman;
mod table;

pub use decoder::{DecodeError, Decoded, Decoder, Field};
pub(crate) use encoder::PrefixMemo;
pub use encoder::{Encoder, Indexing};
pub use table::{DynamicTable, ENTRY_OVERHEAD, STATIC, entry_size};

#[cfg(test)]
mod tests;
