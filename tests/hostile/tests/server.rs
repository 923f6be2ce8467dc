//! A hostile client against a Volley server with its default options. Each test sends one
//! attack by hand over TCP, asserts the precise answer (GOAWAY code and debug data,
//! RST_STREAM code, HTTP status, `grpc-status`), that the server's resident memory stayed
//! within a bound, and that a well-behaved client on another connection is served meanwhile.
//! The server is a child process (`hostile-target`), so its memory is its own.

use std::io::Write;

use volley_hostile_tests::*;

/// `age` with an empty value, HPACK static table entry 21, as a one-byte indexed field: the
/// cheapest header to send and 35 bytes of header list to the receiver.
const AGE: u8 = 0x80 | 21;

/// The server under attack.
const TARGET: &str = env!("CARGO_BIN_EXE_hostile-target");

/// KiB a server may grow by under an attack that should cost it nothing much (allocator
/// noise, a connection's buffers, the tasks of a few calls).
const SMALL_KIB: u64 = 8 * 1024;

#[tokio::test]
async fn a_header_list_over_the_limit_refuses_that_stream_only() {
    let target = Target::spawn(TARGET, &[]).await;
    let mut raw = RawPeer::connect(target.addr).await;
    // 600 one-byte fields: 600 bytes on the wire, 21,000 bytes of header list (> 16 KiB).
    let mut block = request_block(UNARY, &[]);
    block.extend(std::iter::repeat_n(AGE, 600));
    raw.send_headers(1, &block, false).await;
    let refused = raw.answer(1, 5).await;
    assert_eq!(refused.http_status(), Some(431), "{refused:?}");
    assert_eq!(refused.goaway, None, "{refused:?}");
    // The connection lives: the next call on it is served.
    raw.unary(3, UNARY, &[], &echo_request("after")).await;
    let ok = raw.answer(3, 5).await;
    assert_eq!(ok.grpc_status(), Some(0), "{ok:?}");
    target.assert_served().await;
}

#[tokio::test]
async fn a_continuation_flood_of_headers_closes_that_connection_and_costs_nothing() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    // The attack that grew a server by 1.2 GB: 50 streams, each 400 KB of one-byte fields
    // over CONTINUATION frames.
    let chunk = vec![AGE; 16 * 1024];
    let mut sent = 0usize;
    'streams: for i in 0..50u32 {
        let stream = 1 + 2 * i;
        let mut first = request_block(UNARY, &[]);
        first.extend_from_slice(&chunk[..chunk.len() - first.len()]);
        let mut frames = vec![frame(kind::HEADERS, 0, stream, &first)];
        for c in 0..24 {
            let flags = if c == 23 { flag::END_HEADERS } else { 0 };
            frames.push(frame(kind::CONTINUATION, flags, stream, &chunk));
        }
        for f in frames {
            if !raw.try_send(&f).await {
                break 'streams;
            }
            sent += f.len();
        }
    }
    let goaway = raw.until_closed(10).await;
    eprintln!("continuation flood: {sent} bytes written before the server closed");
    // h2 decodes at most a multiple of the 16 KiB limit before it gives up on the block.
    assert_eq!(
        goaway,
        Some((
            code::ENHANCE_YOUR_CALM,
            "header_list_way_too_large".to_owned()
        ))
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "continuation flood")
        .await;
}

#[tokio::test]
async fn streams_above_max_concurrent_streams_are_refused() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    // 2,000 unary calls that send headers and never their message: each waits forever.
    let block = request_block(UNARY, &[("x-pad", &"p".repeat(8000))]);
    for i in 0..2000u32 {
        raw.send_headers(1 + 2 * i, &block, false).await;
    }
    // 256 are accepted; h2 refuses the next 1,024 (RST_STREAM REFUSED_STREAM), then closes a
    // connection that keeps opening streams it was told it may not (GOAWAY).
    let mut refused = 0;
    let mut goaway = None;
    raw.read_until(10, |f| {
        if f.kind == kind::RST_STREAM && f.error_code() == Some(code::REFUSED_STREAM) {
            refused += 1;
        }
        if f.kind == kind::GOAWAY {
            goaway = Some((f.error_code(), f.goaway_debug()));
            return true;
        }
        false
    })
    .await;
    eprintln!("2,000 header-only streams: {refused} refused, goaway {goaway:?}");
    assert_eq!(refused, 1024, "{goaway:?}");
    assert_eq!(
        goaway,
        Some((
            Some(code::ENHANCE_YOUR_CALM),
            "too_many_internal_resets".to_owned()
        ))
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB * 2, "2,000 header-only streams")
        .await;
}

#[tokio::test]
async fn declared_lengths_reserve_nothing_and_4_gib_is_resource_exhausted() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let data_before = proc_status_kib(target.pid(), "VmData:");
    let mut raw = RawPeer::connect(target.addr).await;
    // 200 streams each declaring a 4 MiB message (the limit) and sending 10 bytes of it.
    let mut prefix = vec![0u8, 0, 0x40, 0, 0];
    prefix.extend_from_slice(&[0; 10]);
    for i in 0..200u32 {
        raw.send_headers(1 + 2 * i, &request_block(UNARY, &[]), false)
            .await;
        raw.send_data(1 + 2 * i, &prefix, false).await;
    }
    // A 4 GiB prefix on another stream is refused at once.
    raw.send_headers(401, &request_block(UNARY, &[]), false)
        .await;
    raw.send_data(401, &[0, 0xff, 0xff, 0xff, 0xff], false)
        .await;
    let answer = raw.answer(401, 5).await;
    assert_eq!(answer.grpc_status(), Some(8), "{answer:?}");
    let data_after = proc_status_kib(target.pid(), "VmData:");
    eprintln!("200 declared 4 MiB messages: VmData {data_before} KiB -> {data_after} KiB");
    // 200 x 4 MiB would be 800 MiB of address space.
    assert!(
        data_after < data_before + 200 * 1024,
        "VmData {data_after} KiB"
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "200 declared 4 MiB messages")
        .await;
}

/// Each stream gathers a large message that never completes: the connection's quota for
/// partly received messages (64 MiB) ends the streams past it with RESOURCE_EXHAUSTED, so
/// 100 streams x 900 KiB cannot all be held.
#[tokio::test]
async fn partly_received_messages_are_bounded_per_connection() {
    let quota = std::env::var("HOSTILE_PENDING_QUOTA").ok();
    let args: Vec<&str> = match &quota {
        // For a measurement by hand of the same attack with another quota.
        Some(q) => vec!["--max-pending-request-bytes", q],
        None => vec![],
    };
    let target = Target::spawn(TARGET, &args).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    // The connection window the server granted while connecting (65,535 + its update).
    let mut window = 2 * 1024 * 1024;
    let body = vec![0x0a; 900 * 1024];
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(4_000_000u32).to_be_bytes());
    let mut sent = 0;
    for i in 0..100u32 {
        let stream = 1 + 2 * i;
        raw.send_headers(stream, &request_block(UNARY, &[]), false)
            .await;
        let message = [&prefix[..], &body[..]].concat();
        sent += raw
            .send_within_window(stream, &message, &mut window, 2_000)
            .await;
    }
    raw.read_for(500).await;
    let exhausted = raw
        .seen
        .iter()
        .filter(|f| f.kind == kind::HEADERS && f.header("grpc-status") == Some("8"))
        .count();
    let peak = target.rss_kib();
    eprintln!(
        "100 streams x 900 KiB of unfinished messages: {sent} bytes taken, {exhausted} streams \
         RESOURCE_EXHAUSTED, server RSS {before} KiB -> {peak} KiB"
    );
    if quota.is_none() {
        assert!(exhausted >= 20, "{exhausted} streams refused");
        assert!(peak < before + 160 * 1024, "server RSS {peak} KiB");
    }
    target.assert_served().await;
}

#[tokio::test]
async fn a_gzip_bomb_is_resource_exhausted() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..100 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    eprintln!("gzip bomb: 100 MiB in {} bytes", bomb.len());
    let mut raw = RawPeer::connect(target.addr).await;
    let block = request_block(UNARY, &[("grpc-encoding", "gzip")]);
    raw.send_headers(1, &block, false).await;
    for piece in grpc_message(true, &bomb).chunks(16 * 1024) {
        raw.send_data(1, piece, false).await;
    }
    raw.send_data(1, &[], true).await;
    let answer = raw.answer(1, 10).await;
    assert_eq!(answer.grpc_status(), Some(8), "{answer:?}");
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "gzip bomb")
        .await;
}

#[tokio::test]
async fn rapid_reset_gets_goaway_enhance_your_calm() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    let block = request_block(UNARY, &[]);
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let stream = 1 + 2 * i;
        burst.extend(frame(kind::HEADERS, flag::END_HEADERS, stream, &block));
        burst.extend(rst_stream(stream, code::CANCEL));
    }
    raw.send(&burst).await;
    let goaway = raw.until_closed(10).await;
    assert_eq!(
        goaway.as_ref().map(|(code, _)| *code),
        Some(code::ENHANCE_YOUR_CALM),
        "{goaway:?}"
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "rapid reset")
        .await;
}

#[tokio::test]
async fn an_endless_header_block_gets_goaway() {
    let target = Target::spawn(TARGET, &[]).await;
    let mut raw = RawPeer::connect(target.addr).await;
    raw.send(&frame(kind::HEADERS, 0, 1, &request_block(UNARY, &[])))
        .await;
    // Empty CONTINUATION frames: no bytes to count against the header list, only frames.
    let mut flood = Vec::new();
    for _ in 0..10_000 {
        flood.extend(frame(kind::CONTINUATION, 0, 1, &[]));
    }
    raw.send(&flood).await;
    let goaway = raw.until_closed(10).await;
    assert_eq!(
        goaway,
        Some((code::ENHANCE_YOUR_CALM, "too_many_continuations".to_owned()))
    );
    target.assert_served().await;
}

#[tokio::test]
async fn a_ping_flood_gets_too_many_pings() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    let mut flood = Vec::new();
    for i in 0..10_000u64 {
        flood.extend(frame(kind::PING, 0, 0, &i.to_be_bytes()));
    }
    raw.send(&flood).await;
    let goaway = raw.until_closed(10).await;
    assert_eq!(
        goaway,
        Some((code::ENHANCE_YOUR_CALM, "too_many_pings".to_owned()))
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "PING flood")
        .await;
}

#[tokio::test]
async fn a_settings_flood_is_acknowledged_without_growth() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    let mut flood = Vec::new();
    for i in 0..10_000u32 {
        // SETTINGS_INITIAL_WINDOW_SIZE, changing every time.
        flood.extend(settings(&[(4, 65_535 + i)]));
    }
    raw.send(&flood).await;
    // Our first SETTINGS and the 10,000 more.
    let mut acks = 0;
    raw.read_until(10, |f| {
        if f.kind == kind::SETTINGS && f.flags & flag::ACK != 0 {
            acks += 1;
        }
        // Our first SETTINGS may have been acknowledged while connecting.
        acks == 10_000
    })
    .await
    .expect("every SETTINGS acknowledged, the connection open");
    raw.unary(1, UNARY, &[], &echo_request("after")).await;
    assert_eq!(raw.answer(1, 5).await.grpc_status(), Some(0));
    target.assert_served().await;
    target
        .assert_rss_within(before, SMALL_KIB, "SETTINGS flood")
        .await;
}

#[tokio::test]
async fn window_update_overflow_is_a_flow_control_error() {
    let target = Target::spawn(TARGET, &[]).await;
    // On a stream: RST_STREAM FLOW_CONTROL_ERROR (RFC 9113, 6.9.1), the connection lives.
    let mut raw = RawPeer::connect(target.addr).await;
    raw.send_headers(1, &request_block(BIDI, &[]), false).await;
    raw.send(&window_update(1, 0x7fff_ffff)).await;
    let answer = raw.answer(1, 5).await;
    assert_eq!(answer.rst, Some(code::FLOW_CONTROL_ERROR), "{answer:?}");
    raw.unary(3, UNARY, &[], &echo_request("after")).await;
    assert_eq!(raw.answer(3, 5).await.grpc_status(), Some(0));
    // On the connection: GOAWAY FLOW_CONTROL_ERROR.
    let mut raw = RawPeer::connect(target.addr).await;
    raw.send(&window_update(0, 0x7fff_ffff)).await;
    let goaway = raw.until_closed(10).await;
    assert_eq!(goaway.map(|(c, _)| c), Some(code::FLOW_CONTROL_ERROR));
    target.assert_served().await;
}

/// The answer a bad request must get.
enum Expect {
    /// An HTTP status (no gRPC status).
    Http(u16),
    /// A `grpc-status`, with a `grpc-message` of at most 300 bytes.
    Grpc(i32),
}

#[tokio::test]
async fn bad_requests_get_the_precise_status_and_echo_little() {
    let target = Target::spawn(TARGET, &[]).await;
    let mut raw = RawPeer::connect(target.addr).await;
    let hello = echo_request("hi");
    let long = "x".repeat(10_000);
    let long_path = format!("/volley.test.Echo/{long}");
    // (what, extra headers, body, the expected answer)
    let cases = [
        // A field whose declared length runs past the message.
        (
            "invalid protobuf",
            vec![],
            grpc_message(false, &[0x0a, 0x05, b'a']),
            Expect::Grpc(13),
        ),
        ("flag 2", vec![], vec![2, 0, 0, 0, 0], Expect::Grpc(13)),
        (
            "compressed, no grpc-encoding",
            vec![],
            grpc_message(true, &hello),
            Expect::Grpc(13),
        ),
        (
            "corrupt gzip",
            vec![("grpc-encoding", "gzip")],
            grpc_message(true, b"not gzip"),
            Expect::Grpc(13),
        ),
        (
            "unknown encoding",
            vec![("grpc-encoding", "br")],
            grpc_message(true, &hello),
            Expect::Grpc(12),
        ),
        (
            "text/plain",
            vec![("content-type", "text/plain")],
            grpc_message(false, &hello),
            Expect::Http(415),
        ),
        ("GET", vec![(":method", "GET")], vec![], Expect::Http(405)),
        (
            "malformed grpc-timeout",
            vec![("grpc-timeout", &long)],
            grpc_message(false, &hello),
            Expect::Grpc(13),
        ),
    ];
    let mut stream = 1;
    for (name, headers, body, expect) in &cases {
        raw.send_headers(stream, &request_block(UNARY, headers), false)
            .await;
        raw.send_data(stream, body, true).await;
        let answer = raw.answer(stream, 5).await;
        eprintln!(
            "{name}: {:?} {:?}",
            answer.http_status(),
            answer.get("grpc-message")
        );
        match expect {
            Expect::Http(http) => {
                assert_eq!(answer.http_status(), Some(*http), "{name}: {answer:?}");
            }
            Expect::Grpc(code) => {
                assert_eq!(answer.grpc_status(), Some(*code), "{name}: {answer:?}");
                let message = answer.get("grpc-message").unwrap_or("");
                assert!(
                    message.len() <= 300,
                    "{name}: {} bytes echoed",
                    message.len()
                );
            }
        }
        assert_eq!(answer.goaway, None, "{name}");
        stream += 2;
    }
    // An unknown method with a 10 KB name: UNIMPLEMENTED, the name cut in the message.
    raw.unary(stream, &long_path, &[], &hello).await;
    let answer = raw.answer(stream, 5).await;
    assert_eq!(answer.grpc_status(), Some(12), "{answer:?}");
    assert!(answer.get("grpc-message").unwrap_or("").len() <= 300);
    // Extra messages on a unary call.
    stream += 2;
    raw.send_headers(stream, &request_block(UNARY, &[]), false)
        .await;
    let two = [grpc_message(false, &hello), grpc_message(false, &hello)].concat();
    raw.send_data(stream, &two, true).await;
    let answer = raw.answer(stream, 5).await;
    assert_eq!(
        answer.grpc_status(),
        Some(13),
        "two messages on a unary call: {answer:?}"
    );
    // And the connection still serves.
    stream += 2;
    raw.unary(stream, UNARY, &[], &hello).await;
    assert_eq!(raw.answer(stream, 5).await.grpc_status(), Some(0));
}

/// RFC 9113 makes a malformed field a stream error (RST_STREAM), but h2 ends the whole
/// connection (GOAWAY PROTOCOL_ERROR) for names or values its HPACK decoder refuses: other
/// calls on that connection fail with it. Volley's own HTTP/2 engine (the default) answers
/// with a stream error; a binary value that is not base64 reaches the handler (its
/// `get_bin` fails), as in grpc-go.
#[tokio::test]
async fn malformed_metadata_ends_that_connection_only() {
    let target = Target::spawn(TARGET, &[]).await;
    for (key, value, malformed) in [
        ("X-Upper-Case", "v", true),
        ("x-newline", "a\nb", true),
        ("x-nul", "a\0b", true),
        ("x-bad-bin", "!!!", false),
    ] {
        let mut raw = RawPeer::connect(target.addr).await;
        let mut block = request_block(UNARY, &[]);
        hpack_literal(&mut block, key.as_bytes(), value.as_bytes());
        raw.send_headers(1, &block, false).await;
        raw.send_data(1, &grpc_message(false, &echo_request("hi")), true)
            .await;
        let answer = raw.answer(1, 5).await;
        // RFC 9113 8.1.1: a malformed request is a stream error PROTOCOL_ERROR, which
        // Volley's engine sends; h2 closes the whole connection instead.
        let engine = volley::Http2Engine::default() == volley::Http2Engine::Volley;
        let (goaway, rst) = match (malformed, engine) {
            (false, _) => (None, None),
            (true, true) => (None, Some(code::PROTOCOL_ERROR)),
            (true, false) => (Some(code::PROTOCOL_ERROR), None),
        };
        assert_eq!(
            answer.goaway.as_ref().map(|(c, _)| *c),
            goaway,
            "{key}: {answer:?}"
        );
        if rst.is_some() {
            assert_eq!(answer.rst, rst, "{key}: {answer:?}");
        }
        if !malformed {
            assert_eq!(answer.grpc_status(), Some(0), "{key}: {answer:?}");
        }
        target.assert_served().await;
    }
}

#[tokio::test]
async fn small_data_frames_to_a_call_that_does_not_read_are_bounded() {
    let target = Target::spawn(TARGET, &[]).await;
    let before = target.rss_kib();
    let mut raw = RawPeer::connect(target.addr).await;
    raw.send_headers(1, &request_block(BIDI, &[]), false).await;
    // One message per DATA frame, 8 bytes each, up to the stream's 1 MiB window; the raw
    // client never reads the replies, so the handler soon stops reading requests.
    let one = grpc_message(false, &echo_request("x"));
    let per_frame = 9 + one.len();
    let frames = (1024 * 1024) / one.len();
    let mut burst = Vec::with_capacity(frames * per_frame);
    for _ in 0..frames {
        burst.extend(frame(kind::DATA, 0, 1, &one));
    }
    let sent = raw.try_send(&burst).await;
    assert!(sent, "the server took the frames");
    // The replies it managed to send, before our window stopped it.
    raw.read_for(1000).await;
    let after = target.rss_kib();
    eprintln!(
        "{frames} small DATA frames buffered: server RSS {before} KiB -> {after} KiB, {} frames read back",
        raw.seen.len()
    );
    target.assert_served().await;
    target
        .assert_rss_within(before, 64 * 1024, "small DATA frames")
        .await;
}

#[tokio::test]
async fn max_connections_holds_further_connections_in_the_backlog() {
    let target = Target::spawn(TARGET, &["--max-connections", "2"]).await;
    let mut a = RawPeer::connect(target.addr).await;
    let mut b = RawPeer::connect(target.addr).await;
    for raw in [&mut a, &mut b] {
        raw.unary(1, UNARY, &[], &echo_request("in")).await;
        assert_eq!(raw.answer(1, 5).await.grpc_status(), Some(0));
    }
    // A third connects (the kernel's backlog) but is not served while two are open.
    let mut c = RawPeer::connect_bare(target.addr).await;
    c.send(PREFACE).await;
    c.send(&settings(&[])).await;
    c.unary(1, UNARY, &[], &echo_request("waits")).await;
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), c.next_frame()).await;
    assert!(waited.is_err(), "served beyond max_connections: {waited:?}");
    drop(a);
    let answer = c.answer(1, 5).await;
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
}
