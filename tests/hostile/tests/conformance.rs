//! HTTP/2 conformance of a Volley server: what a peer can get wrong (RFC 9113 frames, stream
//! states, SETTINGS, flow control, request header rules; RFC 7541 HPACK), each answered with
//! the connection or stream error the RFC names. The case list follows h2spec's; like h2spec,
//! a stream error may also be answered as a connection error of the same code (the RFC
//! permits it). Each case runs on a connection of its own; a PING sent after it tells a
//! connection that carried on from one that did not answer.

use volley_hostile_tests::*;

const TARGET: &str = env!("CARGO_BIN_EXE_hostile-target");

/// HTTP/2 error codes not in the library's short list.
const STREAM_CLOSED: u32 = 5;
const FRAME_SIZE_ERROR: u32 = 6;

/// What the server must do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// GOAWAY with this code.
    Connection(u32),
    /// RST_STREAM with this code on the case's stream, or GOAWAY with it.
    Stream(u32),
    /// Nothing: the connection goes on (the PING is answered).
    Fine,
    /// `h2` answers otherwise than the RFC asks (`rfc`): pinned to what it does, so that a
    /// change shows, and listed in `tests/hostile/README.md`. Volley's own HTTP/2 engine
    /// (the default) must give the RFC's answer.
    Deviates { rfc: Rfc, h2: Seen },
}

/// What the RFC asks for where `h2` deviates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rfc {
    /// GOAWAY with this code.
    Connection(u32),
    /// RST_STREAM with this code on the case's stream, or GOAWAY with it.
    Stream(u32),
}

/// Whether the target runs on Volley's own HTTP/2 engine rather than `h2` (the default,
/// unless the feature `volley/h2-default` is on).
fn engine() -> bool {
    volley::Http2Engine::default() == volley::Http2Engine::Volley
}

/// What the server did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    GoAway(u32),
    Reset(u32),
    PingAnswered,
    Closed,
}

/// Runs one case: `frames` after a completed handshake, then a PING. Returns what the server
/// did when it is not what `expect` says.
async fn run(
    target: &Target,
    name: &str,
    frames: Vec<u8>,
    stream: u32,
    expect: Expect,
) -> Option<String> {
    let mut raw = RawPeer::connect(target.addr).await;
    raw.send(&frames).await;
    raw.send(&frame(kind::PING, 0, 0, b"probe!!!")).await;
    // h2 writes PING answers ahead of resets: after the answer, wait a little for a reset.
    let (mut goaway, mut reset, mut pinged) = (None, None, false);
    let read = async {
        loop {
            let next = match pinged {
                false => raw.next_frame().await,
                true => {
                    tokio::time::timeout(std::time::Duration::from_millis(300), raw.next_frame())
                        .await
                        .ok()
                        .flatten()
                }
            };
            let Some(f) = next else { return };
            match f.kind {
                kind::GOAWAY => {
                    goaway = f.error_code();
                    return;
                }
                kind::RST_STREAM if f.stream == stream && reset.is_none() => {
                    reset = f.error_code();
                }
                kind::PING if f.flags & flag::ACK != 0 && &f.payload[..] == b"probe!!!" => {
                    pinged = true;
                }
                _ => {}
            }
            if reset.is_some() && pinged {
                return;
            }
        }
    };
    bounded(10, read).await;
    let seen = match (goaway, reset, pinged) {
        (Some(code), _, _) => Seen::GoAway(code),
        (None, Some(code), _) => Seen::Reset(code),
        (None, None, true) => Seen::PingAnswered,
        (None, None, false) => Seen::Closed,
    };
    let ok = match expect {
        Expect::Connection(code) => seen == Seen::GoAway(code),
        Expect::Stream(code) => seen == Seen::Reset(code) || seen == Seen::GoAway(code),
        Expect::Fine => seen == Seen::PingAnswered,
        Expect::Deviates {
            rfc: Rfc::Connection(code),
            ..
        } if engine() => seen == Seen::GoAway(code),
        Expect::Deviates {
            rfc: Rfc::Stream(code),
            ..
        } if engine() => seen == Seen::Reset(code) || seen == Seen::GoAway(code),
        Expect::Deviates { h2, .. } => seen == h2,
    };
    (!ok).then(|| format!("{name}: expected {expect:?}, saw {seen:?}"))
}

/// Runs every case and fails with the list of those answered otherwise.
async fn run_all(target: &Target, cases: Vec<(&str, Vec<u8>, u32, Expect)>) {
    let mut wrong = Vec::new();
    for (name, frames, stream, expect) in cases {
        wrong.extend(run(target, name, frames, stream, expect).await);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// h2 closes the connection with GOAWAY PROTOCOL_ERROR where the RFC names another code.
const fn goaway_protocol(rfc: Rfc) -> Expect {
    Expect::Deviates {
        rfc,
        h2: Seen::GoAway(code::PROTOCOL_ERROR),
    }
}

fn headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
    frame(kind::HEADERS, flags, stream, block)
}

fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    frame(kind::DATA, u8::from(end_stream), stream, payload)
}

/// A request block built from `fields` exactly as given (no defaults added).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        hpack_literal(&mut out, k.as_bytes(), v.as_bytes());
    }
    out
}

const METHOD: (&str, &str) = (":method", "POST");
const SCHEME: (&str, &str) = (":scheme", "http");
const PATH: (&str, &str) = (":path", UNARY);
const AUTHORITY: (&str, &str) = (":authority", "localhost");
const CONTENT_TYPE: (&str, &str) = ("content-type", "application/grpc");

/// A valid request's block with `extra` fields after the standard ones.
fn valid_with(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![METHOD, SCHEME, PATH, AUTHORITY, CONTENT_TYPE];
    fields.extend_from_slice(extra);
    block(&fields)
}

#[tokio::test]
async fn frames_and_frame_sizes() {
    let target = Target::spawn(TARGET, &[]).await;
    let open = headers(1, &valid_with(&[]), false);
    let cases = [
        // 4.1: unknown frame types are ignored.
        (
            "4.1 unknown frame type",
            frame(0xfe, 0, 0, b"abc"),
            0,
            Expect::Fine,
        ),
        // 4.2: a frame over SETTINGS_MAX_FRAME_SIZE (16,384).
        (
            "4.2 DATA over the max frame size",
            [open.clone(), data(1, &[0; 16_385], false)].concat(),
            1,
            Expect::Stream(FRAME_SIZE_ERROR),
        ),
        (
            "4.2 HEADERS over the max frame size",
            headers(1, &valid_with(&[("x-big", &"a".repeat(16_500))]), false),
            1,
            Expect::Connection(FRAME_SIZE_ERROR),
        ),
        // 5.5: an unknown frame in the middle of a header block.
        (
            "5.5 unknown frame inside a header block",
            [
                frame(kind::HEADERS, 0, 1, &valid_with(&[])),
                frame(0xfe, 0, 1, b"x"),
            ]
            .concat(),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        // 6.x: frames on the wrong stream, or of the wrong length.
        (
            "6.1 DATA on stream 0",
            data(0, b"x", false),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.1 DATA with a pad length past its end",
            [open.clone(), frame(kind::DATA, 0x8, 1, &[10, 0, 0])].concat(),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.2 HEADERS on stream 0",
            headers(0, &valid_with(&[]), false),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.2 HEADERS then PRIORITY inside the header block",
            [
                frame(kind::HEADERS, 0, 1, &valid_with(&[])),
                frame(2, 0, 1, &[0, 0, 0, 0, 16]),
            ]
            .concat(),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.3 PRIORITY on stream 0",
            frame(2, 0, 0, &[0, 0, 0, 1, 16]),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.3 PRIORITY of 4 bytes",
            frame(2, 0, 1, &[0, 0, 0, 0]),
            1,
            goaway_protocol(Rfc::Stream(FRAME_SIZE_ERROR)),
        ),
        (
            "6.4 RST_STREAM on stream 0",
            rst_stream(0, 8),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.4 RST_STREAM of 3 bytes",
            [open.clone(), frame(kind::RST_STREAM, 0, 1, &[0, 0, 8])].concat(),
            1,
            goaway_protocol(Rfc::Connection(FRAME_SIZE_ERROR)),
        ),
        (
            "6.5 SETTINGS ACK with a payload",
            frame(kind::SETTINGS, flag::ACK, 0, &[0, 4, 0, 0, 0, 1]),
            0,
            goaway_protocol(Rfc::Connection(FRAME_SIZE_ERROR)),
        ),
        (
            "6.5 SETTINGS on stream 1",
            frame(kind::SETTINGS, 0, 1, &[]),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.5 SETTINGS of 3 bytes",
            frame(kind::SETTINGS, 0, 0, &[0, 2, 0]),
            0,
            goaway_protocol(Rfc::Connection(FRAME_SIZE_ERROR)),
        ),
        (
            "6.7 PING on stream 1",
            frame(kind::PING, 0, 1, &[0; 8]),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.7 PING of 7 bytes",
            frame(kind::PING, 0, 0, &[0; 7]),
            0,
            goaway_protocol(Rfc::Connection(FRAME_SIZE_ERROR)),
        ),
        (
            "6.7 an unsolicited PING ACK is ignored",
            frame(kind::PING, flag::ACK, 0, &[9; 8]),
            0,
            Expect::Fine,
        ),
        (
            "6.8 GOAWAY on stream 1",
            frame(kind::GOAWAY, 0, 1, &[0; 8]),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of 0 on the connection",
            window_update(0, 0),
            0,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of 0 on a stream",
            [open.clone(), window_update(1, 0)].concat(),
            1,
            Expect::Stream(code::PROTOCOL_ERROR),
        ),
        (
            "6.9 WINDOW_UPDATE of 3 bytes",
            frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
            0,
            goaway_protocol(Rfc::Connection(FRAME_SIZE_ERROR)),
        ),
        (
            "6.9.1 a stream window past 2^31-1",
            [open.clone(), window_update(1, 0x7fff_ffff)].concat(),
            1,
            Expect::Stream(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.9.1 the connection window past 2^31-1",
            window_update(0, 0x7fff_ffff),
            0,
            Expect::Connection(code::FLOW_CONTROL_ERROR),
        ),
        (
            "6.10 CONTINUATION after END_HEADERS",
            [
                open.clone(),
                frame(kind::CONTINUATION, flag::END_HEADERS, 1, &[]),
            ]
            .concat(),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.10 CONTINUATION on another stream",
            [
                frame(kind::HEADERS, 0, 1, &valid_with(&[])),
                frame(kind::CONTINUATION, flag::END_HEADERS, 3, &[]),
            ]
            .concat(),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
    ];
    run_all(&target, cases.into()).await;
}

#[tokio::test]
async fn stream_states_and_identifiers() {
    let target = Target::spawn(TARGET, &[]).await;
    let open = headers(1, &valid_with(&[]), false);
    let closed_remote = headers(1, &valid_with(&[]), true);
    let cases = [
        (
            "5.1 DATA on an idle stream",
            data(1, b"x", false),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 RST_STREAM on an idle stream",
            rst_stream(1, 8),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 WINDOW_UPDATE on an idle stream",
            window_update(1, 100),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 CONTINUATION on an idle stream",
            frame(kind::CONTINUATION, flag::END_HEADERS, 1, &valid_with(&[])),
            1,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1 DATA after the client's END_STREAM",
            [closed_remote.clone(), data(1, b"x", false)].concat(),
            1,
            goaway_protocol(Rfc::Stream(STREAM_CLOSED)),
        ),
        (
            "5.1 HEADERS after the client's END_STREAM",
            [closed_remote, headers(1, &valid_with(&[]), false)].concat(),
            1,
            Expect::Deviates {
                rfc: Rfc::Stream(STREAM_CLOSED),
                h2: Seen::Reset(code::PROTOCOL_ERROR),
            },
        ),
        (
            "5.1.1 an even stream id from a client",
            headers(2, &valid_with(&[]), false),
            2,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.1.1 a stream id lower than one already used",
            [
                headers(5, &valid_with(&[]), false),
                headers(3, &valid_with(&[]), false),
            ]
            .concat(),
            3,
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "5.4 a stream reset by the client frees it; the connection goes on",
            [open, rst_stream(1, 8)].concat(),
            1,
            Expect::Fine,
        ),
    ];
    run_all(&target, cases.into()).await;
}

#[tokio::test]
async fn settings_values() {
    let target = Target::spawn(TARGET, &[]).await;
    let cases = [
        (
            "6.5.2 ENABLE_PUSH of 2",
            settings(&[(2, 2)]),
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.5.2 INITIAL_WINDOW_SIZE of 2^31",
            settings(&[(4, 1 << 31)]),
            goaway_protocol(Rfc::Connection(code::FLOW_CONTROL_ERROR)),
        ),
        (
            "6.5.2 MAX_FRAME_SIZE below 16,384",
            settings(&[(5, 16_383)]),
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.5.2 MAX_FRAME_SIZE of 2^24",
            settings(&[(5, 1 << 24)]),
            Expect::Connection(code::PROTOCOL_ERROR),
        ),
        (
            "6.5.2 an unknown setting is ignored",
            settings(&[(0xff, 1)]),
            Expect::Fine,
        ),
        (
            "6.5.3 every value in range is acknowledged",
            settings(&[(1, 0), (3, 0), (4, 0), (6, 1)]),
            Expect::Fine,
        ),
    ];
    let cases = cases.map(|(name, frames, expect)| (name, frames, 0, expect));
    run_all(&target, cases.into()).await;
}

#[tokio::test]
async fn request_header_rules() {
    let target = Target::spawn(TARGET, &[]).await;
    let error = Expect::Stream(code::PROTOCOL_ERROR);
    let cases = [
        (
            "8.1.2.1 a pseudo-header after a regular one",
            block(&[METHOD, SCHEME, CONTENT_TYPE, PATH, AUTHORITY]),
            error,
        ),
        (
            "8.1.2.1 an unknown pseudo-header",
            valid_with(&[(":foo", "bar")]),
            error,
        ),
        (
            "8.1.2.1 a response pseudo-header in a request",
            valid_with(&[(":status", "200")]),
            error,
        ),
        (
            "8.1.2.2 a connection-specific header",
            valid_with(&[("connection", "keep-alive")]),
            error,
        ),
        (
            "8.1.2.2 TE other than trailers",
            valid_with(&[("te", "gzip")]),
            error,
        ),
        (
            "8.1.2.3 no :method",
            block(&[SCHEME, PATH, AUTHORITY, CONTENT_TYPE]),
            error,
        ),
        (
            "8.1.2.3 no :path",
            block(&[METHOD, SCHEME, AUTHORITY, CONTENT_TYPE]),
            error,
        ),
        (
            "8.1.2.3 an empty :path",
            block(&[METHOD, SCHEME, (":path", ""), AUTHORITY, CONTENT_TYPE]),
            error,
        ),
        (
            "8.1.2.3 :method twice",
            block(&[METHOD, METHOD, SCHEME, PATH, AUTHORITY, CONTENT_TYPE]),
            error,
        ),
        (
            "8.1.2 an uppercase field name",
            valid_with(&[("X-Upper", "v")]),
            error,
        ),
    ];
    for (name, block, expect) in cases {
        run(&target, name, headers(1, &block, false), 1, expect).await;
    }
    // 8.1.2.6: DATA that does not add up to content-length makes the request malformed.
    let declared = valid_with(&[("content-length", "1")]);
    run(
        &target,
        "8.1.2.6 more DATA than content-length",
        [headers(1, &declared, false), data(1, b"12", true)].concat(),
        1,
        error,
    )
    .await;
    run(
        &target,
        "8.1.2.6 less DATA than content-length",
        [
            headers(1, &valid_with(&[("content-length", "3")]), false),
            data(1, b"1", true),
        ]
        .concat(),
        1,
        error,
    )
    .await;
}

#[tokio::test]
async fn hpack_errors() {
    let target = Target::spawn(TARGET, &[]).await;
    // RFC 7541 makes each of these a connection error of type COMPRESSION_ERROR.
    let error = goaway_protocol(Rfc::Connection(code::COMPRESSION_ERROR));
    let cases: [(&str, Vec<u8>); 5] = [
        // RFC 7541 6.1: index 0 is not used.
        ("hpack 6.1 indexed field 0", vec![0x80]),
        // 2.3.3: an index past the static and (empty) dynamic tables.
        ("hpack 2.3.3 an index past both tables", vec![0x80 | 70]),
        // 4.2: a table size update above SETTINGS_HEADER_TABLE_SIZE (4,096).
        (
            "hpack 4.2 a table size update above the limit",
            vec![0x3f, 0xe1, 0x3f],
        ),
        // 4.2: a table size update after the first field.
        (
            "hpack 4.2 a table size update after a field",
            [valid_with(&[]), vec![0x20]].concat(),
        ),
        // 5.2: Huffman padding of more than 7 bits (an all-ones byte after the code).
        // A literal field named `a` whose Huffman value is `3` then 11 bits of padding.
        (
            "hpack 5.2 Huffman padding over 7 bits",
            vec![0x00, 0x01, b'a', 0x82, 0x1f, 0xff],
        ),
    ];
    let cases = cases.map(|(name, block)| (name, headers(1, &block, false), 1, error));
    run_all(&target, cases.into()).await;
}
