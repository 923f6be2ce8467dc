//! Message compression (`doc/compression.md`): `grpc-encoding` names the algorithm of the
//! messages whose compressed flag is set; `grpc-accept-encoding` lists what a peer can decode.

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};
use flate2::Compression;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use crate::Status;

/// A message compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompressionEncoding {
    /// gzip (RFC 1952), the algorithm every gRPC implementation supports.
    Gzip,
    /// `deflate`: zlib's format (RFC 1950), as gRPC's C-core, grpcio and grpc-java name it.
    Deflate,
    /// Zstandard (RFC 8878): faster than gzip at a better ratio; grpc-go and grpc-java have it,
    /// C-core (and so grpcio) does not.
    Zstd,
}

impl CompressionEncoding {
    /// Every algorithm Volley implements.
    pub const ALL: [CompressionEncoding; 3] = [
        CompressionEncoding::Gzip,
        CompressionEncoding::Deflate,
        CompressionEncoding::Zstd,
    ];

    /// The name used in `grpc-encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionEncoding::Gzip => "gzip",
            CompressionEncoding::Deflate => "deflate",
            CompressionEncoding::Zstd => "zstd",
        }
    }

    /// The algorithm for a `grpc-encoding` name; `None` for `identity` and unknown names.
    pub fn from_name(name: &str) -> Option<CompressionEncoding> {
        match name.trim() {
            "gzip" => Some(CompressionEncoding::Gzip),
            "deflate" => Some(CompressionEncoding::Deflate),
            "zstd" => Some(CompressionEncoding::Zstd),
            _ => None,
        }
    }

    /// Compresses `input`, appending to `out`.
    // Never inlined: the (de)compressor's state is tens of KiB on the stack, and inlined into
    // the message loops it made every message pay for probing that stack, compressed or not.
    #[inline(never)]
    pub(crate) fn compress(self, input: &[u8], out: &mut BytesMut) -> Result<(), Status> {
        let done = match self {
            CompressionEncoding::Gzip => {
                let mut enc = GzEncoder::new(out.writer(), Compression::fast());
                enc.write_all(input).and_then(|_| enc.finish().map(drop))
            }
            CompressionEncoding::Deflate => {
                let mut enc = ZlibEncoder::new(out.writer(), Compression::fast());
                enc.write_all(input).and_then(|_| enc.finish().map(drop))
            }
            // Level 1: zstd's fastest standard level, still better than gzip's ratio.
            CompressionEncoding::Zstd => zstd::stream::copy_encode(input, out.writer(), 1),
        };
        done.map_err(|e| Status::internal(format!("{} compression failed: {e}", self.as_str())))
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
        // One byte past the limit is read, to tell "at the limit" from "over it".
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        let read = match self {
            CompressionEncoding::Gzip => GzDecoder::new(input).take(cap).read_to_end(out),
            CompressionEncoding::Deflate => ZlibDecoder::new(input).take(cap).read_to_end(out),
            CompressionEncoding::Zstd => {
                // A zstd frame names the window its decoder must allocate: no more than the
                // message limit needs (at least 1 KiB, at most zstd's default 128 MiB).
                let window_log = (usize::BITS - limit.max(1).leading_zeros()).clamp(10, 27);
                zstd::stream::read::Decoder::with_buffer(input).and_then(|mut dec| {
                    dec.window_log_max(window_log)?;
                    dec.take(cap).read_to_end(out)
                })
            }
        };
        read.map_err(|e| {
            Status::internal(format!(
                "failed to decompress {} message: {e}",
                self.as_str()
            ))
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

/// A `grpc-accept-encoding` value for a set of algorithms (identity is always implied).
pub(crate) fn accept_encoding_header(encodings: &[CompressionEncoding]) -> String {
    let mut s = String::from("identity");
    for e in encodings {
        s.push(',');
        s.push_str(e.as_str());
    }
    s
}

/// The algorithms a `grpc-accept-encoding` value lists, a bit per [`CompressionEncoding::ALL`]
/// entry.
pub(crate) fn accepted(header: Option<&http::HeaderValue>) -> u8 {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return 0;
    };
    let mut mask = 0;
    for name in value.split(',') {
        if let Some(i) = CompressionEncoding::ALL
            .iter()
            .position(|e| e.as_str() == name.trim())
        {
            mask |= 1 << i;
        }
    }
    mask
}

/// Whether `mask` (from [`accepted`]) holds `encoding`.
pub(crate) fn is_accepted(mask: u8, encoding: CompressionEncoding) -> bool {
    CompressionEncoding::ALL
        .iter()
        .position(|e| *e == encoding)
        .is_some_and(|i| mask & (1 << i) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_and_keeps_the_limit() {
        let data = vec![7u8; 10_000];
        for enc in CompressionEncoding::ALL {
            let mut out = BytesMut::new();
            enc.compress(&data, &mut out).expect("compress");
            assert!(out.len() < data.len(), "{enc:?}");
            let mut back = Vec::new();
            enc.decompress(&out, &mut back, 10_000).expect("decompress");
            assert_eq!(back, data, "{enc:?}");
            let mut small = Vec::new();
            let err = enc
                .decompress(&out, &mut small, 9_999)
                .expect_err("over the limit");
            assert_eq!(err.code(), crate::Code::ResourceExhausted, "{enc:?}");
            let err = enc
                .decompress(b"not compressed", &mut Vec::new(), 100)
                .expect_err("garbage");
            assert_eq!(err.code(), crate::Code::Internal, "{enc:?}");
            assert_eq!(CompressionEncoding::from_name(enc.as_str()), Some(enc));
        }
    }

    /// Zeros compressed (1 GiB for zstd, 128 MiB for the slower flate2 formats in a debug
    /// build) against a 4 MiB limit: RESOURCE_EXHAUSTED, with the output stopped just past
    /// the limit.
    #[test]
    fn decompression_bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        for (enc, mib) in [
            (CompressionEncoding::Zstd, 1024),
            (CompressionEncoding::Gzip, 128),
            (CompressionEncoding::Deflate, 128),
        ] {
            let mut bomb = Vec::new();
            match enc {
                CompressionEncoding::Zstd => {
                    let mut w = zstd::stream::write::Encoder::new(&mut bomb, 1).expect("zstd");
                    for _ in 0..mib {
                        w.write_all(&zeros).expect("write");
                    }
                    w.finish().expect("finish");
                }
                CompressionEncoding::Gzip => {
                    let mut w = GzEncoder::new(&mut bomb, Compression::fast());
                    for _ in 0..mib {
                        w.write_all(&zeros).expect("write");
                    }
                    w.finish().expect("finish");
                }
                CompressionEncoding::Deflate => {
                    let mut w = ZlibEncoder::new(&mut bomb, Compression::fast());
                    for _ in 0..mib {
                        w.write_all(&zeros).expect("write");
                    }
                    w.finish().expect("finish");
                }
            }
            let limit = 4 << 20;
            let mut out = Vec::new();
            let err = enc.decompress(&bomb, &mut out, limit).expect_err("a bomb");
            assert_eq!(err.code(), crate::Code::ResourceExhausted, "{enc:?}");
            assert!(
                out.capacity() <= 2 * limit + 64 * 1024,
                "{enc:?}: {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn accept_encoding_lists() {
        assert_eq!(
            accept_encoding_header(&CompressionEncoding::ALL),
            crate::codec::ACCEPT_ALL
        );
        let v = http::HeaderValue::from_static("identity, deflate, gzip");
        let mask = accepted(Some(&v));
        assert!(is_accepted(mask, CompressionEncoding::Gzip));
        assert!(is_accepted(mask, CompressionEncoding::Deflate));
        assert!(!is_accepted(mask, CompressionEncoding::Zstd));
        assert_eq!(accepted(None), 0);
    }
}
