//! Message compression (`doc/compression.md`): `grpc-encoding` names the algorithm of the
//! messages whose compressed flag is set; `grpc-accept-encoding` lists what a peer can decode.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::Status;

/// A message compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompressionEncoding {
    /// gzip (RFC 1952), the algorithm every gRPC implementation supports.
    Gzip,
}

impl CompressionEncoding {
    /// Every algorithm Volley implements.
    pub const ALL: [CompressionEncoding; 1] = [CompressionEncoding::Gzip];

    /// The name used in `grpc-encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionEncoding::Gzip => "gzip",
        }
    }

    /// The algorithm for a `grpc-encoding` name; `None` for `identity` and unknown names.
    pub fn from_name(name: &str) -> Option<CompressionEncoding> {
        match name.trim() {
            "gzip" => Some(CompressionEncoding::Gzip),
            _ => None,
        }
    }

    /// Compresses `input`, appending to `out`.
    // Never inlined: the (de)compressor's state is tens of KiB on the stack, and inlined into
    // the message loops it made every message pay for probing that stack, compressed or not.
    #[inline(never)]
    pub(crate) fn compress(self, input: &[u8], out: &mut BytesMut) -> Result<(), Status> {
        match self {
            CompressionEncoding::Gzip => {
                let mut enc = GzEncoder::new(out.writer(), Compression::fast());
                enc.write_all(input)
                    .and_then(|_| enc.finish().map(drop))
                    .map_err(|e| Status::internal(format!("gzip compression failed: {e}")))
            }
        }
    }

    /// Decompresses `input` into `out`, failing with RESOURCE_EXHAUSTED when the result would
    /// exceed `limit` bytes (a small compressed message must not expand past the size limit).
    #[inline(never)]
    pub(crate) fn decompress(
        self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Status> {
        match self {
            CompressionEncoding::Gzip => {
                let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
                let mut dec = GzDecoder::new(input).take(cap);
                dec.read_to_end(out).map_err(|e| {
                    Status::internal(format!("failed to decompress gzip message: {e}"))
                })?;
                if out.len() > limit {
                    return Err(Status::resource_exhausted(format!(
                        "decompressed message larger than max ({} vs. {limit})",
                        out.len()
                    )));
                }
                Ok(())
            }
        }
    }
}

/// A `grpc-accept-encoding` value for a set of algorithms (identity is always implied).
pub(crate) fn accept_encoding_header(encodings: &[CompressionEncoding]) -> String {
    let mut s = String::from("identity");
    for e in encodings {
        s.push(',');
        s.push_str(e.as_str());
    }
    s
}

/// True when a `grpc-accept-encoding` value lists `encoding`.
pub(crate) fn accepts(header: Option<&http::HeaderValue>, encoding: CompressionEncoding) -> bool {
    header
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|n| n.trim() == encoding.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip_and_limit() {
        let data = vec![7u8; 10_000];
        let mut out = BytesMut::new();
        CompressionEncoding::Gzip
            .compress(&data, &mut out)
            .expect("compress");
        assert!(out.len() < data.len());
        let mut back = Vec::new();
        CompressionEncoding::Gzip
            .decompress(&out, &mut back, 10_000)
            .expect("decompress");
        assert_eq!(back, data);
        let mut small = Vec::new();
        let err = CompressionEncoding::Gzip
            .decompress(&out, &mut small, 9_999)
            .expect_err("over the limit");
        assert_eq!(err.code(), crate::Code::ResourceExhausted);
        let err = CompressionEncoding::Gzip
            .decompress(b"not gzip", &mut Vec::new(), 100)
            .expect_err("garbage");
        assert_eq!(err.code(), crate::Code::Internal);
    }

    #[test]
    fn accept_encoding_lists() {
        assert_eq!(
            accept_encoding_header(&CompressionEncoding::ALL),
            "identity,gzip"
        );
        let v = http::HeaderValue::from_static("identity, deflate, gzip");
        assert!(accepts(Some(&v), CompressionEncoding::Gzip));
        assert!(!accepts(None, CompressionEncoding::Gzip));
    }
}
