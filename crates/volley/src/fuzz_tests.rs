//! Property tests of every parser a peer (or a resolver) feeds, over random and mutated
//! inputs (`volley-fuzz-input`): message framing and decompression, `grpc-timeout`, percent
//! decoding, metadata and base64, status trailers, target strings, service config JSON. Each
//! asserts no panic and that nothing grows past its limit; where a format round-trips, that it
//! does. `VOLLEY_FUZZ_ITERATIONS` sets the inputs per target (`tests/fuzz-input/README.md`).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use volley_fuzz_input::Inputs;

use crate::client::resolver::Target;
use crate::codec::{CompressionEncoding, FrameDecoder, GATHER_AHEAD};
use crate::metadata::{MetadataMap, base64_decode, base64_encode};
use crate::status::{percent_decode, percent_encode};
use crate::{Status, timeout};

/// A gzip member of `data`, for the corpus.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    CompressionEncoding::Gzip
        .compress(data, &mut out)
        .expect("compresses");
    out.to_vec()
}

/// A framed message (the 5-byte prefix, then `payload`).
fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn fuzz_message_framing_and_decompression() {
    let plain = framed(0, b"\x0a\x05hello");
    let compressed = framed(1, &gzip(&[b'z'; 300]));
    let two = [framed(0, b"\x08\x01"), framed(0, b"")].concat();
    let corpus: &[&[u8]] = &[&plain, &compressed, &two, &[0, 0, 0x40, 0, 0]];
    let mut inputs = Inputs::new(corpus, 1);
    while let Some(input) = inputs.next() {
        let rng = inputs.rng();
        let max_len = [0, 8, 64, 4096][rng.below(4)];
        let encoding = rng.one_in(2).then_some(CompressionEncoding::Gzip);
        let mut decoder = FrameDecoder::new(max_len, encoding);
        // Fed in up to three pieces, split anywhere, as DATA frames would be.
        let mut pieces = Vec::new();
        let mut rest = &input[..];
        for _ in 0..2 {
            let cut = rng.below(rest.len() + 1);
            pieces.push(&rest[..cut]);
            rest = &rest[cut..];
        }
        pieces.push(rest);
        let mut received = 0;
        'feed: for piece in pieces {
            received += piece.len();
            decoder
                .push(Bytes::copy_from_slice(piece))
                .expect("no quota");
            // Never more room than the bytes received plus the bounded read-ahead.
            assert!(
                decoder.buffered_capacity() <= received + GATHER_AHEAD,
                "{} for {received} received: {input:?}",
                decoder.buffered_capacity()
            );
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => assert!(message.len() <= max_len, "{input:?}"),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

#[test]
fn fuzz_grpc_timeout() {
    let corpus: &[&[u8]] = &[
        b"1H",
        b"99999999M",
        b"30S",
        b"1000m",
        b"5u",
        b"100000n",
        b"0m",
    ];
    for input in Inputs::new(corpus, 2) {
        let Some(parsed) = timeout::parse(&input) else {
            continue;
        };
        // Whatever parses is 1-8 digits and a unit, and formats back to no shorter a timeout.
        assert!((2..=9).contains(&input.len()), "{input:?}");
        let again = timeout::parse(timeout::format(parsed).as_bytes()).expect("own format");
        assert!(again >= parsed, "{input:?}: {parsed:?} -> {again:?}");
        let _ = timeout::deadline_after(parsed);
    }
}

#[test]
fn fuzz_percent_decoding() {
    let corpus: &[&[u8]] = &[b"hello", b"%E2%98%BA", b"100%25", b"%zz%4", b"caf\xc3\xa9"];
    for input in Inputs::new(corpus, 3) {
        let decoded = percent_decode(&input);
        // Each input byte yields at most one U+FFFD (3 bytes).
        assert!(decoded.len() <= 3 * input.len(), "{input:?}");
        assert_eq!(percent_decode(percent_encode(&decoded).as_bytes()), decoded);
    }
}

#[test]
fn fuzz_metadata_and_base64() {
    let corpus: &[&[u8]] = &[
        b"x-key\0value",
        b"x-bin-bin\0AAEC/w==",
        b"authorization\0Bearer t",
        b"grpc-status\x000",
        b"content-type\0application/grpc",
    ];
    for input in Inputs::new(corpus, 4) {
        if let Ok(bytes) = base64_decode(&input) {
            assert_eq!(
                base64_decode(base64_encode(&bytes).as_bytes()).ok(),
                Some(bytes)
            );
        }
        // One or two headers from the input, as h2 would hand them over (only names and
        // values h2 accepts can reach a map).
        let mut headers = HeaderMap::new();
        for field in input.split(|&b| b == b'\n') {
            let mut parts = field.splitn(2, |&b| b == 0);
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        let map = MetadataMap::from_headers(headers);
        let shown = format!("{map:?}");
        if let Some(secret) = map.get("authorization") {
            assert!(
                !shown.contains(&format!("\"authorization\": {secret:?}")),
                "{shown}"
            );
        }
        for (key, _) in map.iter() {
            let _ = map.get(key);
            let _ = map.get_bin(key);
        }
        let _ = map.into_headers();
    }
}

#[test]
fn fuzz_status_trailers() {
    let corpus: &[&[u8]] = &[
        b"0\0\0",
        b"5\0not found\0",
        b"13\0%E2%98%BA\0CAUSBWhlbGxv",
        b"99\0x\0!!",
        b"abc\0\0",
    ];
    for input in Inputs::new(corpus, 5) {
        let mut parts = input.splitn(3, |&b| b == 0);
        let mut headers = HeaderMap::new();
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            if let Some(value) = parts.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
                headers.insert(name, value);
            }
        }
        let Some(status) = Status::from_trailers(&headers) else {
            assert!(!headers.contains_key("grpc-status"));
            continue;
        };
        // The message is the decoded grpc-message, or a short note quoting at most 128 bytes.
        assert!(status.message().len() <= 3 * input.len() + 200, "{input:?}");
        // A status writes trailers that read back as itself.
        let mut written = HeaderMap::new();
        status.write_to(&mut written);
        let back = Status::from_trailers(&written).expect("grpc-status written");
        assert_eq!(back.code(), status.code());
        assert_eq!(back.message(), status.message());
        assert_eq!(back.details(), status.details());
    }
}

#[test]
fn fuzz_target_strings() {
    let corpus: &[&[u8]] = &[
        b"dns:///example.com:50051",
        b"dns://8.8.8.8/example.com",
        b"ipv4:10.0.0.1:50051,10.0.0.2",
        b"ipv6:[::1]:50051",
        b"unix:///tmp/socket",
        b"unix-abstract:name",
        b"http://localhost:8080",
        b"https://[::1]/",
        b"localhost:50051",
        b"passthrough:///host",
    ];
    let known = |s: &str| {
        matches!(
            s,
            "dns" | "ipv4" | "ipv6" | "unix" | "unix-abstract" | "passthrough"
        )
    };
    for input in Inputs::new(corpus, 6) {
        let Ok(text) = std::str::from_utf8(&input) else {
            continue;
        };
        if let Ok(target) = Target::parse(text, known) {
            let _ = target.http_authority();
            let _ = target.to_string();
        }
    }
}

#[test]
fn fuzz_service_config_json() {
    let corpus: &[&[u8]] = &[
        br#"{"loadBalancingConfig": [{"round_robin": {}}]}"#,
        br#"{"loadBalancingConfig": [{"unknown": {}}, {"pick_first": {}}]}"#,
        br#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#,
        br#"{"methodConfig": [{"name": [{"service": "a.B"}], "timeout": "1s"}]}"#,
        b"[]",
    ];
    for input in Inputs::new(corpus, 7) {
        let Ok(text) = std::str::from_utf8(&input) else {
            continue;
        };
        let _ = crate::resolver::ServiceConfig::from_json(text);
    }
}
