//! The server connection against a client written by hand: RFC 9113's rules case by case
//! (h2spec's list, as the hostile suite's conformance tests), request and response flows,
//! flow control both ways, and property tests.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frame::{flag, kind};
use crate::testing::raw;

/// A client written by hand, and the server connection it talks to.
struct Peer {
    conn: ServerConnection,
    encoder: hpack::Encoder,
    decoder: hpack::Decoder,
    /// Reads the server's output.
    frames: FrameDecoder,
    out: BytesMut,
}

/// What a case expects.
#[derive(Debug, PartialEq)]
enum Expect {
    /// GOAWAY with this code, and the connection over.
    Connection(u32),
    /// RST_STREAM with this code on the case's stream; the connection goes on.
    Stream(u32),
    /// Neither.
    Fine,
}

impl Peer {
    fn new(config: Config) -> Peer {
        let mut peer = Peer {
            conn: ServerConnection::new(config),
            encoder: hpack::Encoder::default(),
            decoder: hpack::Decoder::default(),
            frames: FrameDecoder::new(frame::MAX_MAX_FRAME_SIZE, 1 << 20),
            out: BytesMut::new(),
        };
        let (events, result) = peer.send(&[PREFACE, &raw(kind::SETTINGS, 0, 0, &[])].concat());
        assert_eq!((events, result), (vec![Event::Ready], Ok(())));
        let frames = peer.received();
        assert!(
            matches!(frames[0], Frame::Settings { ack: false, .. }),
            "{frames:?}"
        );
        assert!(frames.contains(&Frame::Settings {
            ack: true,
            settings: Settings::default()
        }));
        peer
    }

    fn send(&mut self, bytes: &[u8]) -> (Vec<Event>, Result<(), ConnectionError>) {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        let result = self.conn.receive(&mut buf, &mut events);
        (events, result)
    }

    /// The frames the server wrote since the last call.
    fn received(&mut self) -> Vec<Frame> {
        self.out.extend_from_slice(self.conn.output());
        self.conn.output().clear();
        let mut frames = Vec::new();
        while let Some(frame) = self
            .frames
            .decode(&mut self.out)
            .expect("the server writes valid frames")
        {
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

    fn request(&mut self, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/pkg.Service/Method"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        fields.extend_from_slice(extra);
        self.block(&fields)
    }

    fn headers(&mut self, stream: u32, extra: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.request(extra);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        raw(kind::HEADERS, flags, stream, &block)
    }

    /// Sends `bytes` and reads what the server did about `stream`.
    fn outcome(&mut self, bytes: &[u8], stream: u32) -> Expect {
        let (_, result) = self.send(bytes);
        let frames = self.received();
        let goaway = frames.iter().find_map(|f| match f {
            Frame::GoAway { code, .. } => Some(*code),
            _ => None,
        });
        let reset = frames.iter().find_map(|f| match f {
            Frame::RstStream { stream: s, code } if *s == stream => Some(*code),
            _ => None,
        });
        match (result, goaway, reset) {
            (Err(e), Some(code), _) => {
                assert_eq!(e.code, code);
                Expect::Connection(code)
            }
            (Ok(()), None, Some(code)) => Expect::Stream(code),
            (Ok(()), None, None) => Expect::Fine,
            other => panic!("inconsistent: {other:?}"),
        }
    }
}

fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = entries
        .iter()
        .flat_map(|(id, v)| [id.to_be_bytes().to_vec(), v.to_be_bytes().to_vec()].concat())
        .collect();
    raw(kind::SETTINGS, 0, 0, &payload)
}

fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    raw(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

#[test]
fn a_request_its_data_and_trailers_are_reported_and_answered() {
    let mut peer = Peer::new(Config::default());
    let headers = peer.headers(1, &[], false);
    let (events, result) = peer.send(&headers);
    assert_eq!(result, Ok(()));
    let [
        Event::Headers {
            stream: 1,
            fields,
            end_stream: false,
        },
    ] = &events[..]
    else {
        panic!("{events:?}");
    };
    let names: Vec<&[u8]> = fields.iter().map(|f| &f.name[..]).collect();
    assert_eq!(
        names[..4],
        [&b":method"[..], b":scheme", b":path", b":authority"]
    );
    let (events, _) = peer.send(&raw(kind::DATA, 0, 1, b"\0\0\0\0\x01a"));
    assert_eq!(
        events,
        [Event::Data {
            stream: 1,
            data: Bytes::from_static(b"\0\0\0\0\x01a"),
            end_stream: false
        }]
    );
    let trailers = peer.block(&[("x-trailer", "1")]);
    let (events, _) = peer.send(&raw(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &trailers,
    ));
    assert!(
        matches!(&events[..], [Event::Trailers { stream: 1, .. }]),
        "{events:?}"
    );
    // The response: headers, a message, trailers; the stream is then closed.
    peer.conn.send_headers(
        1,
        &[(b":status", b"200"), (b"content-type", b"application/grpc")],
        false,
    );
    let mut message = Bytes::from_static(b"\0\0\0\0\x01b");
    assert!(peer.conn.send_data(1, &mut message, false));
    peer.conn.send_headers(1, &[(b"grpc-status", b"0")], true);
    assert_eq!(peer.conn.open_streams(), 0);
    let frames = peer.received();
    let mut fields = Vec::new();
    for frame in &frames {
        if let Frame::Headers { block, .. } = frame {
            peer.decoder
                .decode(block, usize::MAX, |f| fields.push(f))
                .expect("decodes");
        }
    }
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (&f.name[..], &f.value[..])).collect();
    assert_eq!(
        pairs,
        [
            (&b":status"[..], &b"200"[..]),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"0")
        ]
    );
    assert!(frames.contains(&Frame::Data {
        stream: 1,
        end_stream: false,
        data: Bytes::from_static(b"\0\0\0\0\x01b"),
        flow_len: 6
    }));
    assert!(matches!(
        frames.last(),
        Some(Frame::Headers {
            stream: 1,
            end_stream: true,
            ..
        })
    ));
}

#[test]
fn reusable_response_blocks_hold_until_the_table_changes() {
    let mut peer = Peer::new(Config::default());
    let head: [(&[u8], &[u8]); 2] = [(b":status", b"200"), (b"content-type", b"application/grpc")];
    let ok: [(&[u8], &[u8]); 1] = [(b"grpc-status", b"0")];
    assert_eq!(
        peer.conn.reusable_block(&head),
        None,
        "the first head fills the table"
    );
    let mut blocks = (None, None);
    for stream in [1u32, 3, 5, 7] {
        let request = peer.headers(stream, &[], true);
        assert_eq!(peer.send(&request).1, Ok(()));
        match &blocks {
            (Some(head_block), Some(ok_block)) => {
                assert!(peer.conn.send_block(stream, head_block, false));
                assert!(peer.conn.send_block(stream, ok_block, true));
            }
            _ => {
                peer.conn.send_headers(stream, &head, false);
                peer.conn.send_headers(stream, &ok, true);
                blocks = (
                    peer.conn.reusable_block(&head),
                    peer.conn.reusable_block(&ok),
                );
            }
        }
    }
    let (Some(head_block), Some(_)) = &blocks else {
        panic!("steady after one response");
    };
    // The client reads every response the same.
    let mut seen = Vec::new();
    for frame in peer.received() {
        if let Frame::Headers { block, .. } = frame {
            let mut fields = Vec::new();
            peer.decoder
                .decode(&block, usize::MAX, |f| fields.push(f))
                .expect("decodes");
            seen.push(fields.len());
        }
    }
    assert_eq!(seen, [2, 1, 2, 1, 2, 1, 2, 1]);
    // A response with a new field changes the table: the old block is refused.
    let request = peer.headers(9, &[], true);
    assert_eq!(peer.send(&request).1, Ok(()));
    peer.conn
        .send_headers(9, &[(b":status", b"200"), (b"x-new", b"1")], false);
    let request = peer.headers(11, &[], true);
    assert_eq!(peer.send(&request).1, Ok(()));
    assert!(!peer.conn.send_block(11, head_block, false), "stale");
    assert!(peer.conn.reusable_block(&head).is_some());
}

#[test]
fn the_preface_and_the_first_settings_are_required() {
    let mut conn = ServerConnection::new(Config::default());
    let mut events = Vec::new();
    // The preface in pieces is fine.
    let mut buf = BytesMut::from(&PREFACE[..10]);
    assert_eq!(conn.receive(&mut buf, &mut events), Ok(()));
    buf.extend_from_slice(&PREFACE[10..]);
    assert_eq!(conn.receive(&mut buf, &mut events), Ok(()));
    // A PING before SETTINGS is not.
    let mut buf = BytesMut::from(&raw(kind::PING, 0, 0, &[0; 8])[..]);
    assert_eq!(
        conn.receive(&mut buf, &mut events).map_err(|e| e.code),
        Err(code::PROTOCOL_ERROR)
    );
    // Nor is HTTP/1.1.
    let mut conn = ServerConnection::new(Config::default());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
    assert_eq!(
        conn.receive(&mut buf, &mut events).map_err(|e| e.code),
        Err(code::PROTOCOL_ERROR)
    );
}

/// RFC 9113's rules, as the hostile suite's conformance tests check them on a live server.
#[test]
fn each_rule_gives_its_error_code_and_scope() {
    type Case = (&'static str, fn(&mut Peer) -> Vec<u8>, u32, Expect);
    let cases: Vec<Case> = vec![
        (
            "4.1 unknown frame type",
            |_| raw(0xfa, 0, 0, b"x"),
            0,
            Expect::Fine,
        ),
        (
            "4.2 DATA over the max frame size",
            |p| {
                [
                    p.headers(1, &[], false),
                    raw(kind::DATA, 0, 1, &[0; 16_385]),
                ]
                .concat()
            },
            1,
            Expect::Connection(code::FRAME_SIZE_ERROR),
        ),
        (
            "5.5 unknown frame inside a header block",
            |p| {
                let b = p.request(&[]);
                [raw(kind::HEADERS, 0, 1, &b), raw(0xfa, 0, 1, b"x")].concat()
            },
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.1 DATA on stream 0",
            |_| raw(kind::DATA, 0, 0, b"x"),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.2 HEADERS then PRIORITY inside the header block",
            |p| {
                let b = p.request(&[]);
                [
                    raw(kind::HEADERS, 0, 1, &b),
                    raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 0, 1]),
                ]
                .concat()
            },
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.3 PRIORITY of 4 bytes",
            |p| {
                [
                    p.headers(1, &[], false),
                    raw(kind::PRIORITY, 0, 1, &[0, 0, 0, 3]),
                ]
                .concat()
            },
            1,
            Expect::Stream(code::FRAME_SIZE_ERROR),
        ),
        (
            "5.3.1 HEADERS depending on itself",
            |p| {
                let b = p.request(&[]);
                raw(
                    kind::HEADERS,
                    flag::END_HEADERS | flag::PRIORITY,
                    1,
                    &[&[0, 0, 0, 1, 16][..], &b].concat(),
                )
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "6.5 SETTINGS ACK with a payload",
            |_| raw(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
            0,
            Expect::Connection(code::FRAME_SIZE_ERROR),
        ),
        (
            "6.7 an unsolicited PING ACK is ignored",
            |_| raw(kind::PING, flag::ACK, 0, &[0; 8]),
            0,
            Expect::Fine,
        ),
        (
            "6.9 WINDOW_UPDATE of 0 on a stream",
            |p| [p.headers(1, &[], false), window_update(1, 0)].concat(),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "6.9.1 a stream window past 2^31-1",
            |p| [p.headers(1, &[], false), window_update(1, 0x7fff_ffff)].concat(),
            1,
            Expect::Stream(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.9.1 the connection window past 2^31-1",
            |_| window_update(0, 0x7fff_ffff),
            0,
            Expect::Connection(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.9.2 INITIAL_WINDOW_SIZE pushing a stream window past 2^31-1",
            |p| {
                [
                    p.headers(1, &[], false),
                    window_update(1, 0x7fff_0000),
                    settings(&[(4, 0x10_0000)]),
                ]
                .concat()
            },
            1,
            Expect::Connection(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.9.1 DATA past the stream window",
            |p| {
                [
                    p.headers(1, &[], false),
                    raw(kind::DATA, 0, 1, &[0; 16_384]),
                    raw(kind::DATA, 0, 1, &[0; 16_384]),
                    raw(kind::DATA, 0, 1, &[0; 16_384]),
                    raw(kind::DATA, 0, 1, &[0; 16_384]),
                    raw(kind::DATA, 0, 1, &[0; 16_384]),
                ]
                .concat()
            },
            1,
            Expect::Connection(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.10 CONTINUATION after END_HEADERS",
            |p| {
                [
                    p.headers(1, &[], false),
                    raw(kind::CONTINUATION, flag::END_HEADERS, 1, &[]),
                ]
                .concat()
            },
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 DATA on an idle stream",
            |_| raw(kind::DATA, 0, 1, b"x"),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 RST_STREAM on an idle stream",
            |_| raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 WINDOW_UPDATE on an idle stream",
            |_| window_update(1, 100),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 CONTINUATION on an idle stream",
            |p| {
                let b = p.request(&[]);
                raw(kind::CONTINUATION, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 DATA after the client's END_STREAM",
            |p| [p.headers(1, &[], true), raw(kind::DATA, 0, 1, b"x")].concat(),
            1,
            Expect::Stream(code::STREAM_CLOSED),
        ),
        (
            "5.1 HEADERS after the client's END_STREAM",
            |p| {
                let a = p.headers(1, &[], true);
                let b = p.headers(1, &[], false);
                [a, b].concat()
            },
            1,
            Expect::Stream(code::STREAM_CLOSED),
        ),
        (
            "5.1 HEADERS on a closed stream",
            |p| {
                let a = p.headers(1, &[], false);
                let b = p.headers(1, &[], false);
                [a, raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]), b].concat()
            },
            1,
            Expect::Connection(code::STREAM_CLOSED),
        ),
        (
            "5.1.1 an even stream id from a client",
            |p| p.headers(2, &[], false),
            2,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1.1 a stream id lower than one already used (never opened)",
            |p| {
                let a = p.headers(5, &[], false);
                let b = p.headers(3, &[], false);
                [a, b].concat()
            },
            3,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 HEADERS on a lower stream that was opened and closed",
            |p| {
                let a = p.headers(1, &[], true);
                let b = raw(kind::RST_STREAM, 0, 1, &code::CANCEL.to_be_bytes());
                let c = p.headers(3, &[], false);
                let d = p.headers(1, &[], false);
                [a, b, c, d].concat()
            },
            1,
            Expect::Connection(code::STREAM_CLOSED),
        ),
        (
            "5.1.2 above SETTINGS_MAX_CONCURRENT_STREAMS",
            |p| {
                let mut all = Vec::new();
                for i in 0..101 {
                    all.extend(p.headers(1 + 2 * i, &[], false));
                }
                all
            },
            201,
            Expect::Stream(code::REFUSED_STREAM),
        ),
        (
            "5.4 a stream reset by the client frees it; the connection goes on",
            |p| {
                [
                    p.headers(1, &[], false),
                    raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                    raw(kind::PING, 0, 0, &[1; 8]),
                ]
                .concat()
            },
            1,
            Expect::Fine,
        ),
        (
            "6.5.2 an unknown setting is ignored",
            |_| settings(&[(0xff, 1)]),
            0,
            Expect::Fine,
        ),
        (
            "8.1 trailers without END_STREAM",
            |p| {
                let a = p.headers(1, &[], false);
                let t = p.block(&[("x", "1")]);
                [a, raw(kind::HEADERS, flag::END_HEADERS, 1, &t)].concat()
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.1 a pseudo-header in trailers",
            |p| {
                let a = p.headers(1, &[], false);
                let t = p.block(&[(":path", "/")]);
                [
                    a,
                    raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &t),
                ]
                .concat()
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.1.1 content-length above the data",
            |p| {
                [
                    p.headers(1, &[("content-length", "10")], false),
                    raw(kind::DATA, flag::END_STREAM, 1, b"abc"),
                ]
                .concat()
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.1.1 data above content-length",
            |p| {
                [
                    p.headers(1, &[("content-length", "1")], false),
                    raw(kind::DATA, 0, 1, b"abc"),
                ]
                .concat()
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.2 an uppercase field name",
            |p| p.headers(1, &[("X-Upper", "1")], false),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.2.1 a value with a line feed",
            |p| p.headers(1, &[("x", "a\nb")], false),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.2.2 a connection-specific header",
            |p| p.headers(1, &[("connection", "keep-alive")], false),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.2.2 TE other than trailers",
            |p| {
                let b = p.block(&[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/"),
                    ("te", "gzip"),
                ]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3 a pseudo-header after a regular one",
            |p| p.headers(1, &[(":status", "200")], false),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3 an unknown pseudo-header",
            |p| {
                let b = p.block(&[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":foo", "x"),
                ]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3 a response pseudo-header in a request",
            |p| {
                let b = p.block(&[
                    (":status", "200"),
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/"),
                ]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3.1 no :method",
            |p| {
                let b = p.block(&[(":scheme", "http"), (":path", "/")]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3.1 no :path",
            |p| {
                let b = p.block(&[(":method", "POST"), (":scheme", "http")]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3.1 an empty :path",
            |p| {
                let b = p.block(&[(":method", "POST"), (":scheme", "http"), (":path", "")]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "8.3.1 :method twice",
            |p| {
                let b = p.block(&[
                    (":method", "POST"),
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                ]);
                raw(kind::HEADERS, flag::END_HEADERS, 1, &b)
            },
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "hpack 4.2 a table size update above the limit",
            |_| raw(kind::HEADERS, flag::END_HEADERS, 1, &[0x3f, 0xe2, 0x1f]),
            1,
            Expect::Connection(code::COMPRESSION_ERROR),
        ),
        (
            "hpack 4.2 a table size update after a field",
            |_| raw(kind::HEADERS, flag::END_HEADERS, 1, &[0x82, 0x20]),
            1,
            Expect::Connection(code::COMPRESSION_ERROR),
        ),
        (
            "hpack 5.2 Huffman padding over 7 bits",
            |_| {
                raw(
                    kind::HEADERS,
                    flag::END_HEADERS,
                    1,
                    &[0x04, 0x82, 0x1f, 0xff],
                )
            },
            1,
            Expect::Connection(code::COMPRESSION_ERROR),
        ),
        (
            "hpack 6.1 index 0",
            |_| raw(kind::HEADERS, flag::END_HEADERS, 1, &[0x80]),
            1,
            Expect::Connection(code::COMPRESSION_ERROR),
        ),
        (
            "hpack 2.3.3 an index past the tables",
            |_| raw(kind::HEADERS, flag::END_HEADERS, 1, &[0xbe]),
            1,
            Expect::Connection(code::COMPRESSION_ERROR),
        ),
        (
            "6.5.3 every value in range is acknowledged",
            |_| {
                settings(&[
                    (1, 0),
                    (2, 0),
                    (3, 0),
                    (4, 0x7fff_ffff),
                    (5, 0xff_ffff),
                    (6, 0),
                ])
            },
            0,
            Expect::Fine,
        ),
        (
            "a PUSH_PROMISE from a client",
            |_| raw(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
    ];
    for (what, bytes, stream, expected) in cases {
        let mut peer = Peer::new(Config::default());
        let bytes = bytes(&mut peer);
        assert_eq!(peer.outcome(&bytes, stream), expected, "{what}");
        if let Expect::Stream(_) | Expect::Fine = expected {
            // The connection goes on: a PING is answered.
            assert_eq!(
                peer.outcome(&raw(kind::PING, 0, 0, &[7; 8]), 0),
                Expect::Fine,
                "{what}"
            );
            assert!(peer.received().is_empty());
        }
    }
}

#[test]
fn request_data_is_credited_back_once_half_a_window_is_consumed() {
    let mut peer = Peer::new(Config::default());
    let headers = peer.headers(1, &[], false);
    assert_eq!(peer.send(&headers).1, Ok(()));
    let chunk = vec![0u8; 16_384];
    for _ in 0..2 {
        let (events, result) = peer.send(&raw(kind::DATA, 0, 1, &chunk));
        assert_eq!(result, Ok(()));
        assert_eq!(events.len(), 1);
    }
    assert!(
        peer.received().is_empty(),
        "nothing credited before the server consumed it"
    );
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
    // The windows are whole again: four more full frames fit.
    for _ in 0..3 {
        assert_eq!(peer.send(&raw(kind::DATA, 0, 1, &chunk)).1, Ok(()));
    }
}

#[test]
fn data_past_a_streams_window_resets_only_that_stream() {
    let mut peer = Peer::new(Config {
        connection_window_size: 1 << 20,
        ..Config::default()
    });
    let first = peer.headers(1, &[], false);
    let second = peer.headers(3, &[], false);
    assert_eq!(peer.send(&[first, second].concat()).1, Ok(()));
    let chunk = raw(kind::DATA, 0, 1, &[0; 16_384]);
    let five = [&chunk[..], &chunk, &chunk, &chunk, &chunk].concat();
    assert_eq!(
        peer.outcome(&five, 1),
        Expect::Stream(code::FLOW_CONTROL_ERROR)
    );
    // Stream 3 goes on.
    let (events, result) = peer.send(&raw(kind::DATA, flag::END_STREAM, 3, b"x"));
    assert_eq!(result, Ok(()));
    assert!(matches!(
        &events[..],
        [Event::Data {
            stream: 3,
            end_stream: true,
            ..
        }]
    ));
}

#[test]
fn response_data_waits_for_the_clients_windows() {
    let mut peer = Peer::new(Config::default());
    let headers = peer.headers(1, &[], true);
    assert_eq!(peer.send(&headers).1, Ok(()));
    peer.conn.send_headers(1, &[(b":status", b"200")], false);
    let mut data = Bytes::from(vec![1u8; 100_000]);
    assert!(!peer.conn.send_data(1, &mut data, true));
    assert_eq!(
        data.len(),
        100_000 - 65_535,
        "the default windows hold 65,535 bytes"
    );
    assert_eq!(peer.conn.send_capacity(1), 0);
    let sent: usize = peer
        .received()
        .iter()
        .map(|f| match f {
            Frame::Data { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 65_535);
    // The client opens both windows: the rest goes, in frames of at most 16 KiB.
    let (events, _) = peer.send(&[window_update(0, 50_000), window_update(1, 50_000)].concat());
    assert_eq!(
        events,
        [
            Event::WindowUpdate { stream: 0 },
            Event::WindowUpdate { stream: 1 }
        ]
    );
    assert!(peer.conn.send_data(1, &mut data, true));
    let frames = peer.received();
    assert!(
        frames
            .iter()
            .all(|f| matches!(f, Frame::Data { data, .. } if data.len() <= 16_384))
    );
    assert!(matches!(
        frames.last(),
        Some(Frame::Data {
            end_stream: true,
            ..
        })
    ));
    // A larger SETTINGS_INITIAL_WINDOW_SIZE opens every stream's window.
    let headers = peer.headers(3, &[], true);
    assert_eq!(peer.send(&headers).1, Ok(()));
    peer.conn.send_headers(3, &[(b":status", b"200")], false);
    let (events, _) = peer.send(&settings(&[(4, 100_000)]));
    assert_eq!(events, [Event::WindowUpdate { stream: 0 }]);
    // The connection window is what is left of 50,000 after 34,465 more bytes.
    assert_eq!(peer.conn.send_capacity(3), 15_535);
    assert_eq!(peer.send(&window_update(0, 200_000)).1, Ok(()));
    assert_eq!(peer.conn.send_capacity(3), 100_000);
}

#[test]
fn after_goaway_new_streams_are_ignored_and_old_ones_finish() {
    let mut peer = Peer::new(Config::default());
    let first = peer.headers(1, &[], true);
    assert_eq!(peer.send(&first).1, Ok(()));
    peer.conn.go_away(1, code::NO_ERROR, b"shutting down");
    let later = peer.headers(3, &[], true);
    let (events, result) = peer.send(&later);
    assert_eq!((events, result), (Vec::new(), Ok(())));
    peer.conn
        .send_headers(1, &[(b":status", b"200"), (b"grpc-status", b"0")], true);
    let frames = peer.received();
    assert!(frames.contains(&Frame::GoAway {
        last_stream: 1,
        code: code::NO_ERROR,
        debug: Bytes::from_static(b"shutting down")
    }));
    assert!(matches!(
        frames.last(),
        Some(Frame::Headers {
            stream: 1,
            end_stream: true,
            ..
        })
    ));
    assert_eq!(peer.conn.open_streams(), 0);
}

#[test]
fn a_header_list_above_the_limit_still_opens_the_stream_for_an_answer() {
    let mut peer = Peer::new(Config {
        max_header_list_size: 400,
        ..Config::default()
    });
    let big = "v".repeat(500);
    let headers = peer.headers(1, &[("x-big", &big)], true);
    let (events, result) = peer.send(&headers);
    assert_eq!(result, Ok(()));
    assert_eq!(events, [Event::HeadersTooLarge { stream: 1 }]);
    // The table followed: the next request, referring to its entries, decodes.
    let next = peer.headers(3, &[], true);
    let (events, _) = peer.send(&next);
    assert!(
        matches!(&events[..], [Event::Headers { stream: 3, .. }]),
        "{events:?}"
    );
}

#[test]
fn a_client_that_keeps_breaking_rules_is_closed_after_the_reset_limit() {
    let mut p = Peer::new(Config {
        max_concurrent_streams: 1,
        max_local_resets: 3,
        ..Config::default()
    });
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(p.headers(1 + 2 * i, &[], false));
    }
    let (_, result) = p.send(&bytes);
    assert_eq!(
        result,
        Err(ConnectionError {
            code: code::ENHANCE_YOUR_CALM,
            reason: "too_many_internal_resets"
        })
    );
    // Stream 1 is open; 3, 5 and 7 are refused; 9 is one too many: GOAWAY, no fourth reset.
    let frames = p.received();
    let refused: Vec<u32> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::RstStream { stream, code } if *code == code::REFUSED_STREAM => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [3, 5, 7]);
    assert!(
        matches!(
            frames.last(),
            Some(Frame::GoAway {
                code: code::ENHANCE_YOUR_CALM,
                ..
            })
        ),
        "{frames:?}"
    );
}

#[test]
fn client_pings_are_answered_and_reported() {
    let mut peer = Peer::new(Config::default());
    let (events, _) = peer.send(&raw(kind::PING, 0, 0, b"abcdefgh"));
    assert_eq!(
        events,
        [Event::Ping {
            payload: *b"abcdefgh"
        }]
    );
    assert_eq!(
        peer.received(),
        [Frame::Ping {
            ack: true,
            payload: *b"abcdefgh"
        }]
    );
    peer.conn.ping(*b"12345678");
    assert_eq!(
        peer.received(),
        [Frame::Ping {
            ack: false,
            payload: *b"12345678"
        }]
    );
    let (events, _) = peer.send(&raw(kind::PING, flag::ACK, 0, b"12345678"));
    assert_eq!(
        events,
        [Event::PingAck {
            payload: *b"12345678"
        }]
    );
}

/// Random and mutated client byte streams: no panic; whatever the server writes is valid
/// frames; no more streams open than allowed.
#[test]
fn fuzz_client_input() {
    let mut seed_peer = Peer::new(Config::default());
    let corpus_owned: Vec<Vec<u8>> = vec![
        [
            seed_peer.headers(1, &[], false),
            raw(kind::DATA, flag::END_STREAM, 1, b"\0\0\0\0\x01a"),
        ]
        .concat(),
        [
            seed_peer.headers(3, &[("content-length", "3")], false),
            raw(kind::DATA, 0, 3, b"abc"),
            window_update(3, 10),
        ]
        .concat(),
        [
            settings(&[(4, 1000), (5, 20_000)]),
            raw(kind::PING, 0, 0, &[0; 8]),
            raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
        ]
        .concat(),
        [
            raw(kind::HEADERS, 0, 5, &seed_peer.request(&[])),
            raw(kind::CONTINUATION, flag::END_HEADERS, 5, &[]),
        ]
        .concat(),
    ];
    let corpus: Vec<&[u8]> = corpus_owned.iter().map(|v| &v[..]).collect();
    let mut inputs = volley_fuzz_input::Inputs::new(&corpus, 91_130);
    while let Some(input) = inputs.next() {
        let mut peer = Peer::new(Config {
            max_concurrent_streams: 3,
            ..Config::default()
        });
        let mut at = 0;
        while at < input.len() {
            let piece = 1 + inputs.rng().below(input.len() - at);
            let (events, result) = peer.send(&input[at..at + piece]);
            at += piece;
            for event in events {
                if let Event::Headers { stream, .. } | Event::HeadersTooLarge { stream } = event {
                    peer.conn
                        .send_headers(stream, &[(b":status", b"200")], false);
                    let mut body = Bytes::from_static(b"0123456789");
                    peer.conn.send_data(stream, &mut body, false);
                }
            }
            assert!(peer.conn.open_streams() <= 3);
            let _ = peer.received();
            if result.is_err() {
                break;
            }
        }
    }
}
