//! The frame codec: every frame type written and read back, reading split at every byte,
//! each rule of RFC 9113 §6 with its error code and scope, and property tests.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::testing::raw;

fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    FrameDecoder::default().decode(&mut BytesMut::from(bytes))
}

fn decode_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        out.push(frame);
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    Ok(out)
}

/// One of each frame the encoder writes, and what reading it gives.
fn written() -> (Vec<u8>, Vec<Frame>) {
    let mut out = Vec::new();
    let mut frames = Vec::new();
    let settings = Settings {
        header_table_size: Some(0),
        enable_push: Some(false),
        max_concurrent_streams: Some(100),
        initial_window_size: Some(1 << 20),
        max_frame_size: Some(1 << 15),
        max_header_list_size: Some(16 << 10),
    };
    encode_settings(&settings, &mut out);
    frames.push(Frame::Settings {
        ack: false,
        settings,
    });
    encode_settings_ack(&mut out);
    frames.push(Frame::Settings {
        ack: true,
        settings: Settings::default(),
    });
    encode_headers(1, b"\x82\x86\x84", false, 16_384, &mut out);
    frames.push(Frame::Headers {
        stream: 1,
        end_stream: false,
        priority: None,
        block: Bytes::from_static(b"\x82\x86\x84"),
    });
    encode_data_header(1, 5, true, &mut out);
    out.extend_from_slice(b"hello");
    frames.push(Frame::Data {
        stream: 1,
        end_stream: true,
        data: Bytes::from_static(b"hello"),
        flow_len: 5,
    });
    // A block of 40 bytes over frames of 16: HEADERS and two CONTINUATIONs, read as one.
    let block: Vec<u8> = (0..40).collect();
    encode_headers(3, &block, true, 16, &mut out);
    frames.push(Frame::Headers {
        stream: 3,
        end_stream: true,
        priority: None,
        block: Bytes::from(block),
    });
    encode_window_update(0, 65_535, &mut out);
    frames.push(Frame::WindowUpdate {
        stream: 0,
        increment: 65_535,
    });
    encode_ping(false, *b"12345678", &mut out);
    frames.push(Frame::Ping {
        ack: false,
        payload: *b"12345678",
    });
    encode_ping(true, *b"87654321", &mut out);
    frames.push(Frame::Ping {
        ack: true,
        payload: *b"87654321",
    });
    encode_rst_stream(3, code::CANCEL, &mut out);
    frames.push(Frame::RstStream {
        stream: 3,
        code: code::CANCEL,
    });
    encode_goaway(3, code::NO_ERROR, b"max_age", &mut out);
    frames.push(Frame::GoAway {
        last_stream: 3,
        code: code::NO_ERROR,
        debug: Bytes::from_static(b"max_age"),
    });
    (out, frames)
}

#[test]
fn every_frame_written_reads_back() {
    let (bytes, frames) = written();
    assert_eq!(decode_all(&mut FrameDecoder::default(), &bytes), Ok(frames));
}

#[test]
fn reading_split_at_every_byte_gives_the_same_frames() {
    let (bytes, frames) = written();
    for split in 0..=bytes.len() {
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&bytes[..split]);
        let mut got = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
            got.push(frame);
        }
        buf.extend_from_slice(&bytes[split..]);
        while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
            got.push(frame);
        }
        assert_eq!(got, frames, "split at {split}");
    }
    // And one byte at a time.
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &bytes {
        buf.extend_from_slice(&[b]);
        while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
            got.push(frame);
        }
    }
    assert_eq!(got, frames);
}

#[test]
fn data_payloads_and_single_frame_blocks_are_slices_of_the_read_buffer() {
    let mut bytes = Vec::new();
    encode_data_header(1, 4, false, &mut bytes);
    bytes.extend_from_slice(b"abcd");
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let Some(Frame::Data { data, .. }) = FrameDecoder::default().decode(&mut buf).expect("valid")
    else {
        panic!("not DATA");
    };
    assert_eq!(data.as_ptr() as usize, start + HEADER_LEN, "no copy");
}

#[test]
fn padding_is_stripped_and_counted_for_flow_control() {
    // DATA: pad length 3, "ab", 3 bytes of padding.
    let frame = raw(
        kind::DATA,
        flag::PADDED | flag::END_STREAM,
        1,
        b"\x03ab\0\0\0",
    );
    assert_eq!(
        decode_one(&frame),
        Ok(Some(Frame::Data {
            stream: 1,
            end_stream: true,
            data: Bytes::from_static(b"ab"),
            flow_len: 6,
        }))
    );
    // HEADERS padded and with priority.
    let frame = raw(
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
        5,
        b"\x02\x80\0\0\x03\x0f\x82\0\0",
    );
    assert_eq!(
        decode_one(&frame),
        Ok(Some(Frame::Headers {
            stream: 5,
            end_stream: false,
            priority: Some(Priority {
                dependency: 3,
                exclusive: true,
                weight: 15,
            }),
            block: Bytes::from_static(b"\x82"),
        }))
    );
}

/// (what, frame bytes, expected error): RFC 9113's rules, as h2spec's cases check them.
#[test]
fn each_rule_gives_its_error_code_and_scope() {
    let conn = |code| Err(FrameError::connection(code, ""));
    let stream = |s, code| Err(FrameError::stream(s, code, ""));
    let cases: Vec<(&str, Vec<u8>, Result<(), FrameError>)> = vec![
        (
            "6.1 DATA on stream 0",
            raw(kind::DATA, 0, 0, b"x"),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.1 DATA padding too long",
            raw(kind::DATA, flag::PADDED, 1, b"\x05ab"),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.1 DATA padded, no pad length",
            raw(kind::DATA, flag::PADDED, 1, b""),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.2 HEADERS on stream 0",
            raw(kind::HEADERS, flag::END_HEADERS, 0, b"\x82"),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.2 HEADERS padding too long",
            raw(
                kind::HEADERS,
                flag::PADDED | flag::END_HEADERS,
                1,
                b"\x03\x82",
            ),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.2 HEADERS priority too short",
            raw(
                kind::HEADERS,
                flag::PRIORITY | flag::END_HEADERS,
                1,
                b"\0\0",
            ),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.3 PRIORITY on stream 0",
            raw(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 0]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.3 PRIORITY of length 4",
            raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 3]),
            stream(1, code::FRAME_SIZE_ERROR),
        ),
        (
            "5.3.1 PRIORITY on itself",
            raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 1, 0]),
            stream(1, code::PROTOCOL_ERROR),
        ),
        (
            "6.4 RST_STREAM on stream 0",
            raw(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.4 RST_STREAM of length 3",
            raw(kind::RST_STREAM, 0, 1, &[0, 0, 8]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.5 SETTINGS on a stream",
            raw(kind::SETTINGS, 0, 1, b""),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.5 SETTINGS ack with payload",
            raw(kind::SETTINGS, flag::ACK, 0, &[0, 1, 0, 0, 0, 0]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.5 SETTINGS of length 3",
            raw(kind::SETTINGS, 0, 0, &[0, 1, 0]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.5.2 ENABLE_PUSH 2",
            raw(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.5.2 INITIAL_WINDOW_SIZE 2^31",
            raw(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            conn(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.5.2 MAX_FRAME_SIZE below 2^14",
            raw(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.5.2 MAX_FRAME_SIZE 2^24",
            raw(kind::SETTINGS, 0, 0, &[0, 5, 1, 0, 0, 0]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.7 PING on a stream",
            raw(kind::PING, 0, 1, &[0; 8]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.7 PING of length 6",
            raw(kind::PING, 0, 0, &[0; 6]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.8 GOAWAY on a stream",
            raw(kind::GOAWAY, 0, 1, &[0; 8]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.8 GOAWAY of length 4",
            raw(kind::GOAWAY, 0, 0, &[0; 4]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of 0 on the connection",
            raw(kind::WINDOW_UPDATE, 0, 0, &[0; 4]),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of 0 on a stream",
            raw(kind::WINDOW_UPDATE, 0, 1, &[0; 4]),
            stream(1, code::PROTOCOL_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of length 3",
            raw(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.10 CONTINUATION without HEADERS",
            raw(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x82"),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.10 CONTINUATION on stream 0",
            raw(kind::CONTINUATION, flag::END_HEADERS, 0, b"\x82"),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "4.2 a frame above SETTINGS_MAX_FRAME_SIZE",
            raw(kind::DATA, 0, 1, &[0; 16_385]),
            conn(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.10 another frame inside a header block",
            [
                raw(kind::HEADERS, 0, 1, b"\x82"),
                raw(kind::PING, 0, 0, &[0; 8]),
            ]
            .concat(),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "6.10 a CONTINUATION of another stream",
            [
                raw(kind::HEADERS, 0, 1, b"\x82"),
                raw(kind::CONTINUATION, flag::END_HEADERS, 3, b"\x84"),
            ]
            .concat(),
            conn(code::PROTOCOL_ERROR),
        ),
        (
            "a header block in too many CONTINUATION frames",
            [
                raw(kind::HEADERS, 0, 1, b"\x82"),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
            ]
            .concat(),
            conn(code::ENHANCE_YOUR_CALM),
        ),
        (
            "a header block in as many CONTINUATION frames as allowed",
            [
                raw(kind::HEADERS, 0, 1, b"\x82"),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, 0, 1, b""),
                raw(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x84"),
            ]
            .concat(),
            Ok(()),
        ),
        (
            "a header block above the cap",
            [
                raw(kind::HEADERS, 0, 1, &[0x82; 16_000]),
                raw(kind::CONTINUATION, 0, 1, &[0x82; 16_000]),
                raw(kind::CONTINUATION, 0, 1, &[0x82; 16_000]),
                raw(kind::CONTINUATION, 0, 1, &[0x82; 16_000]),
                raw(kind::CONTINUATION, 0, 1, &[0x82; 16_000]),
            ]
            .concat(),
            conn(code::ENHANCE_YOUR_CALM),
        ),
    ];
    for (what, bytes, expected) in cases {
        let got = decode_all(&mut FrameDecoder::default(), &bytes).map(drop);
        let got = got.map_err(|e| FrameError { reason: "", ..e });
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn an_oversize_frame_is_refused_from_its_header_alone() {
    let mut buf = BytesMut::from(&raw(kind::DATA, 0, 1, &[0; 20_000])[..HEADER_LEN]);
    assert_eq!(
        FrameDecoder::default().decode(&mut buf).map_err(|e| e.code),
        Err(code::FRAME_SIZE_ERROR)
    );
    // A larger limit lets it through.
    let bytes = raw(kind::DATA, 0, 1, &[0; 20_000]);
    assert!(
        FrameDecoder::new(32_768, 65_536)
            .decode(&mut BytesMut::from(&bytes[..]))
            .is_ok()
    );
}

#[test]
fn unknown_frames_and_settings_are_ignored_and_stream_errors_let_reading_go_on() {
    let bytes = [
        raw(0xfa, 0xff, 7, b"whatever"),
        raw(kind::SETTINGS, 0, 0, &[0xff, 0xff, 0, 0, 0, 1]),
        raw(kind::WINDOW_UPDATE, 0, 1, &[0; 4]),
        raw(kind::PING, 0, 0, &[1; 8]),
    ]
    .concat();
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Unknown {
            kind: 0xfa,
            stream: 7
        }))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Settings {
            ack: false,
            settings: Settings::default()
        }))
    );
    assert_eq!(decoder.decode(&mut buf).map_err(|e| e.stream), Err(Some(1)));
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Ping {
            ack: false,
            payload: [1; 8]
        }))
    );
}

/// Random and mutated byte streams: no panic, never a frame above the limits, the buffer
/// never asked to grow past one frame.
#[test]
fn fuzz_frame_decoding() {
    let (valid, _) = written();
    let corpus_owned: Vec<Vec<u8>> = vec![
        valid.clone(),
        raw(kind::DATA, flag::PADDED, 1, b"\x03ab\0\0\0"),
        raw(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            5,
            b"\x02\x80\0\0\x03\x0f\x82\0\0",
        ),
        [
            raw(kind::HEADERS, 0, 1, b"\x82"),
            raw(kind::CONTINUATION, 0, 1, b"\x84"),
            raw(kind::CONTINUATION, flag::END_HEADERS, 1, b"\x86"),
        ]
        .concat(),
        raw(
            kind::SETTINGS,
            0,
            0,
            &[0, 4, 0, 1, 0, 0, 0, 5, 0, 0, 0x40, 0],
        ),
        raw(kind::GOAWAY, 0, 0, b"\0\0\0\x01\0\0\0\0debug"),
    ];
    let corpus: Vec<&[u8]> = corpus_owned.iter().map(|v| &v[..]).collect();
    let mut inputs = volley_fuzz_input::Inputs::new(&corpus, 9113);
    let mut count = 0u64;
    while let Some(input) = inputs.next() {
        count += 1;
        let max_block = 1 + inputs.rng().below(4096);
        let mut decoder = FrameDecoder::new(16_384, max_block);
        // Fed in random pieces.
        let mut buf = BytesMut::new();
        let mut at = 0;
        'feed: while at < input.len() {
            let piece = 1 + inputs.rng().below(input.len() - at);
            buf.extend_from_slice(&input[at..at + piece]);
            at += piece;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => match frame {
                        Frame::Headers { block, .. } | Frame::PushPromise { block, .. } => {
                            assert!(block.len() <= max_block.max(16_384));
                        }
                        Frame::Data { data, flow_len, .. } => {
                            assert!(data.len() <= flow_len as usize && flow_len <= 16_384);
                        }
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(e) if e.stream.is_some() => {}
                    Err(_) => break 'feed,
                }
            }
            assert!(buf.len() <= HEADER_LEN + 16_384 + input.len());
        }
    }
    assert!(count > 0);
}
