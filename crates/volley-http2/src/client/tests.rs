//! The client connection against a server written by hand.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frame::{flag, kind};
use crate::testing::raw;

fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = entries
        .iter()
        .flat_map(|(id, v)| [id.to_be_bytes().to_vec(), v.to_be_bytes().to_vec()].concat())
        .collect();
    raw(kind::SETTINGS, 0, 0, &payload)
}

const REQUEST: [(&[u8], &[u8], Indexing); 5] = [
    (b":method", b"POST", Indexing::Incremental),
    (b":scheme", b"http", Indexing::Incremental),
    (b":path", b"/pkg.S/M", Indexing::Incremental),
    (b":authority", b"localhost", Indexing::Incremental),
    (b"te", b"trailers", Indexing::Incremental),
];

/// A server written by hand, and the client connection it talks to.
struct Peer {
    conn: ClientConnection,
    encoder: hpack::Encoder,
    decoder: hpack::Decoder,
    frames: FrameDecoder,
    out: BytesMut,
}

impl Peer {
    /// Connected: the server's SETTINGS (with `entries`) processed.
    fn new(entries: &[(u16, u32)]) -> Peer {
        let mut peer = Peer {
            conn: ClientConnection::new(Config::default()),
            encoder: hpack::Encoder::default(),
            decoder: hpack::Decoder::default(),
            frames: FrameDecoder::new(frame::MAX_MAX_FRAME_SIZE, 1 << 20),
            out: BytesMut::new(),
        };
        let preface = peer
            .conn
            .output()
            .drain(..frame::PREFACE.len())
            .collect::<Vec<u8>>();
        assert_eq!(preface, frame::PREFACE);
        let sent = peer.received();
        let Frame::Settings {
            ack: false,
            settings,
        } = &sent[0]
        else {
            panic!("{sent:?}");
        };
        assert_eq!(settings.enable_push, Some(false));
        assert!(
            !peer.conn.can_open(),
            "no stream before the server's SETTINGS"
        );
        let (events, result) = peer.send(&settings_frame(entries));
        assert_eq!((events, result), (vec![Event::Ready], Ok(())));
        assert_eq!(
            peer.received(),
            [Frame::Settings {
                ack: true,
                settings: Settings::default()
            }]
        );
        peer
    }

    fn send(&mut self, bytes: &[u8]) -> (Vec<Event>, Result<(), ConnectionError>) {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        let result = self.conn.receive(&mut buf, &mut events);
        (events, result)
    }

    fn received(&mut self) -> Vec<Frame> {
        self.out.extend_from_slice(self.conn.output());
        self.conn.output().clear();
        let mut frames = Vec::new();
        while let Some(frame) = self.frames.decode(&mut self.out).expect("valid frames") {
            frames.push(frame);
        }
        frames
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encoder.encode(
            fields
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes(), Indexing::Incremental)),
            &mut out,
        );
        out
    }

    fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(fields);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        raw(kind::HEADERS, flags, stream, &block)
    }
}

fn settings_frame(entries: &[(u16, u32)]) -> Vec<u8> {
    settings(entries)
}

#[test]
fn a_call_from_request_to_trailers() {
    let mut peer = Peer::new(&[]);
    let id = peer.conn.open(REQUEST, false).expect("opens");
    assert_eq!(id, 1);
    let mut body = Bytes::from_static(b"\0\0\0\0\x01a");
    assert!(peer.conn.send_data(id, &mut body, true));
    let frames = peer.received();
    let Frame::Headers {
        stream: 1,
        end_stream: false,
        block,
        ..
    } = &frames[0]
    else {
        panic!("{frames:?}");
    };
    let mut fields = Vec::new();
    peer.decoder
        .decode(block, usize::MAX, |f| fields.push(f))
        .expect("decodes");
    assert_eq!(fields.len(), 5);
    assert!(matches!(
        frames[1],
        Frame::Data {
            stream: 1,
            end_stream: true,
            ..
        }
    ));
    // 100 Continue is skipped; then the response, a message, the trailers.
    let informational = peer.headers(1, &[(":status", "100")], false);
    let response = peer.headers(
        1,
        &[(":status", "200"), ("content-type", "application/grpc")],
        false,
    );
    let trailers = peer.headers(1, &[("grpc-status", "0")], true);
    let all = [
        informational,
        response,
        raw(kind::DATA, 0, 1, b"\0\0\0\0\x01b"),
        trailers,
    ]
    .concat();
    let (events, result) = peer.send(&all);
    assert_eq!(result, Ok(()));
    assert!(
        matches!(&events[0], Event::Headers { stream: 1, end_stream: false, fields } if &fields[0].value[..] == b"200")
    );
    assert_eq!(
        events[1],
        Event::Data {
            stream: 1,
            data: Bytes::from_static(b"\0\0\0\0\x01b"),
            end_stream: false
        }
    );
    assert!(matches!(&events[2], Event::Trailers { stream: 1, .. }));
    assert_eq!(events.len(), 3);
    assert_eq!(peer.conn.open_streams(), 0);
    // A Trailers-Only response ends the next call at once.
    let id = peer.conn.open(REQUEST, true).expect("opens");
    assert_eq!(id, 3);
    let only = peer.headers(3, &[(":status", "200"), ("grpc-status", "5")], true);
    let (events, _) = peer.send(&only);
    assert!(matches!(
        &events[..],
        [Event::Headers {
            stream: 3,
            end_stream: true,
            ..
        }]
    ));
    assert_eq!(peer.conn.open_streams(), 0);
}

#[test]
fn streams_stay_within_the_servers_limit() {
    let mut peer = Peer::new(&[(frame::setting::MAX_CONCURRENT_STREAMS, 2)]);
    assert!(peer.conn.open(REQUEST, true).is_some());
    assert!(peer.conn.open(REQUEST, true).is_some());
    assert!(!peer.conn.can_open());
    assert_eq!(peer.conn.open(REQUEST, true), None);
    let done = peer.headers(1, &[(":status", "200"), ("grpc-status", "0")], true);
    peer.send(&done).1.expect("fine");
    assert!(peer.conn.can_open());
}

#[test]
fn flow_control_both_ways() {
    let mut peer = Peer::new(&[]);
    let id = peer.conn.open(REQUEST, false).expect("opens");
    let mut body = Bytes::from(vec![0u8; 70_000]);
    assert!(!peer.conn.send_data(id, &mut body, true));
    assert_eq!(body.len(), 70_000 - 65_535);
    let (events, _) = peer.send(
        &[
            raw(kind::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes()),
            raw(kind::WINDOW_UPDATE, 0, 1, &10_000u32.to_be_bytes()),
        ]
        .concat(),
    );
    assert_eq!(
        events,
        [
            Event::WindowUpdate { stream: 0 },
            Event::WindowUpdate { stream: 1 }
        ]
    );
    assert!(peer.conn.send_data(id, &mut body, true));
    let _ = peer.received();
    // Response data is credited back once half a window is consumed.
    let response = peer.headers(1, &[(":status", "200")], false);
    let data = raw(kind::DATA, 0, 1, &[0; 16_384]);
    peer.send(&[response, data.clone(), data].concat())
        .1
        .expect("fine");
    assert!(peer.received().is_empty());
    peer.conn.release(1, 32_768);
    assert_eq!(
        peer.received(),
        [
            Frame::WindowUpdate {
                stream: 0,
                increment: 32_768
            },
            Frame::WindowUpdate {
                stream: 1,
                increment: 32_768
            }
        ]
    );
    // Past the windows (both are 65,535 here; the connection's is checked first): a
    // connection error.
    let four = [&raw(kind::DATA, 0, 1, &[0; 16_384])[..]; 4].concat();
    let (_, result) = peer.send(&[four, raw(kind::DATA, 0, 1, &[0; 100])].concat());
    assert_eq!(result.map_err(|e| e.code), Err(code::FLOW_CONTROL_ERROR));
}

#[test]
fn goaway_refuses_the_streams_above_its_last_id() {
    let mut peer = Peer::new(&[]);
    for _ in 0..3 {
        peer.conn.open(REQUEST, true).expect("opens");
    }
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    let (events, _) = peer.send(&raw(kind::GOAWAY, 0, 0, &goaway));
    assert_eq!(
        events,
        [
            Event::GoAway {
                last_stream: 1,
                code: 0,
                debug: Bytes::new()
            },
            Event::Reset {
                stream: 3,
                code: code::REFUSED_STREAM,
                by_peer: true
            },
            Event::Reset {
                stream: 5,
                code: code::REFUSED_STREAM,
                by_peer: true
            },
        ]
    );
    assert!(!peer.conn.can_open());
    assert!(peer.conn.is_closing());
    assert_eq!(peer.conn.open_streams(), 1);
}

#[test]
fn each_rule_gives_its_error_code_and_scope() {
    type Case = (
        &'static str,
        fn(&mut Peer) -> Vec<u8>,
        Result<Option<u32>, u32>,
    );
    let cases: Vec<Case> = vec![
        (
            "HEADERS on a stream the client did not open",
            |p| p.headers(3, &[(":status", "200")], false),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "HEADERS on an even stream",
            |p| p.headers(2, &[(":status", "200")], false),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "DATA before the response headers",
            |_| raw(kind::DATA, 0, 1, b"x"),
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "a response without :status",
            |p| p.headers(1, &[("content-type", "x")], false),
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "a :status that is not three digits",
            |p| p.headers(1, &[(":status", "2000")], false),
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "a request pseudo-header in a response",
            |p| p.headers(1, &[(":status", "200"), (":path", "/")], false),
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "trailers without END_STREAM",
            |p| {
                let a = p.headers(1, &[(":status", "200")], false);
                let b = p.headers(1, &[("x", "1")], false);
                [a, b].concat()
            },
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "a pseudo-header in trailers",
            |p| {
                let a = p.headers(1, &[(":status", "200")], false);
                let b = p.headers(1, &[(":status", "200")], true);
                [a, b].concat()
            },
            Ok(Some(code::PROTOCOL_ERROR)),
        ),
        (
            "DATA after END_STREAM",
            |p| {
                [
                    p.headers(1, &[(":status", "200")], true),
                    raw(kind::DATA, 0, 1, b"x"),
                ]
                .concat()
            },
            Ok(None),
        ),
        (
            "PUSH_PROMISE with push disabled",
            |_| raw(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "SETTINGS_ENABLE_PUSH from a server",
            |_| settings(&[(frame::setting::ENABLE_PUSH, 1)]),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "RST_STREAM on an idle stream",
            |_| raw(kind::RST_STREAM, 0, 5, &[0, 0, 0, 8]),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "WINDOW_UPDATE on an idle stream",
            |_| raw(kind::WINDOW_UPDATE, 0, 5, &[0, 0, 0, 1]),
            Err(code::PROTOCOL_ERROR),
        ),
        (
            "a bad header block",
            |_| raw(kind::HEADERS, flag::END_HEADERS, 1, &[0x80]),
            Err(code::COMPRESSION_ERROR),
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut peer = Peer::new(&[]);
        peer.conn.open(REQUEST, true).expect("opens");
        let _ = peer.received();
        let bytes = bytes(&mut peer);
        let (_, result) = peer.send(&bytes);
        let frames = peer.received();
        let reset = frames.iter().find_map(|f| match f {
            Frame::RstStream { stream: 1, code } => Some(*code),
            _ => None,
        });
        let got = match result {
            Err(e) => {
                assert!(
                    frames
                        .iter()
                        .any(|f| matches!(f, Frame::GoAway { code, .. } if *code == e.code)),
                    "{what}"
                );
                Err(e.code)
            }
            Ok(()) => Ok(reset),
        };
        // DATA after END_STREAM: the stream is already closed and forgotten; nothing to reset.
        assert_eq!(got, expected, "{what}");
    }
}

#[test]
fn the_first_frame_must_be_settings() {
    let mut conn = ClientConnection::new(Config::default());
    let mut buf = BytesMut::from(&raw(kind::PING, 0, 0, &[0; 8])[..]);
    let result = conn.receive(&mut buf, &mut Vec::new());
    assert_eq!(result.map_err(|e| e.code), Err(code::PROTOCOL_ERROR));
}

#[test]
fn a_reusable_block_is_the_steady_state_encoding() {
    let mut peer = Peer::new(&[]);
    assert_eq!(
        peer.conn.reusable_block(&REQUEST),
        None,
        "the first block fills the table"
    );
    peer.conn.open(REQUEST, true).expect("opens");
    let block = peer.conn.reusable_block(&REQUEST).expect("steady");
    assert!(
        block.bytes().iter().all(|b| b & 0x80 != 0),
        "all indexed: {block:?}"
    );
    peer.conn.open_with_block(&block, true).expect("opens");
    // The server's decoder reads both.
    for frame in peer.received() {
        if let Frame::Headers { block, .. } = frame {
            let mut n = 0;
            peer.decoder
                .decode(&block, usize::MAX, |_| n += 1)
                .expect("decodes");
            assert_eq!(n, 5);
        }
    }
    // Another request that adds an entry shifts the dynamic indexes: the block no longer
    // holds, and a fresh one does.
    let other: [(&[u8], &[u8], Indexing); 1] = [(b"x-other", b"1", Indexing::Incremental)];
    let fields: Vec<_> = REQUEST.iter().copied().chain(other).collect();
    peer.conn.open(fields.iter().copied(), true).expect("opens");
    assert_eq!(peer.conn.open_with_block(&block, true), None, "stale");
    let fresh = peer.conn.reusable_block(&REQUEST).expect("steady again");
    assert_ne!(fresh, block);
    peer.conn.open_with_block(&fresh, true).expect("opens");
    for frame in peer.received() {
        if let Frame::Headers { block, .. } = frame {
            let mut got = Vec::new();
            peer.decoder
                .decode(&block, usize::MAX, |f| got.push(f))
                .expect("decodes");
            assert_eq!(&got[2].value[..], b"/pkg.S/M");
        }
    }
    // A new table size: the next block announces it, so it is not reusable.
    peer.send(&settings(&[(frame::setting::HEADER_TABLE_SIZE, 1024)]))
        .1
        .expect("fine");
    assert_eq!(peer.conn.reusable_block(&REQUEST), None);
}

/// Random and mutated server byte streams: no panic, valid output.
#[test]
fn fuzz_server_input() {
    let mut seed = Peer::new(&[]);
    let corpus_owned: Vec<Vec<u8>> = vec![
        [
            seed.headers(1, &[(":status", "200")], false),
            raw(kind::DATA, 0, 1, b"\0\0\0\0\x01a"),
            seed.headers(1, &[("grpc-status", "0")], true),
        ]
        .concat(),
        [
            settings(&[(3, 1), (4, 100)]),
            raw(kind::PING, 0, 0, &[0; 8]),
            raw(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 1, 0]),
        ]
        .concat(),
        [
            raw(kind::RST_STREAM, 0, 3, &[0, 0, 0, 8]),
            raw(kind::GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        ]
        .concat(),
    ];
    let corpus: Vec<&[u8]> = corpus_owned.iter().map(|v| &v[..]).collect();
    let mut inputs = volley_fuzz_input::Inputs::new(&corpus, 91_131);
    while let Some(input) = inputs.next() {
        let mut peer = Peer::new(&[]);
        for _ in 0..3 {
            if let Some(id) = peer.conn.open(REQUEST, false) {
                let mut body = Bytes::from_static(b"0123456789");
                peer.conn.send_data(id, &mut body, true);
            }
        }
        let mut at = 0;
        while at < input.len() {
            let piece = 1 + inputs.rng().below(input.len() - at);
            let (events, result) = peer.send(&input[at..at + piece]);
            at += piece;
            for event in events {
                if let Event::Data { stream, data, .. } = event {
                    peer.conn.release(stream, data.len());
                }
            }
            let _ = peer.received();
            if result.is_err() {
                break;
            }
        }
    }
}
