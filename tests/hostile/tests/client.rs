//! A hostile server against a Volley client. A raw HTTP/2 server (frames written by hand)
//! answers the client's call with an attack; the client (`hostile-client`, a child process)
//! reports the status its call ended with and its peak memory, which each test bounds
//! against a well-behaved call's.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use volley_hostile_tests::*;

/// The client under attack.
const CLIENT: &str = env!("CARGO_BIN_EXE_hostile-client");

/// KiB a client's peak may exceed a well-behaved call's by.
const SMALL_KIB: u64 = 8 * 1024;

/// Runs the client's call (`kind`, deadline `deadline_ms`) against a raw server that answers
/// with `attack`; returns how the call ended.
async fn attacked<F, Fut>(kind: &str, deadline_ms: u64, attack: F) -> ClientOutcome
where
    F: FnOnce(RawPeer, u32) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (peer, stream) = RawPeer::accept(&listener).await;
        attack(peer, stream).await;
    });
    let outcome = run_client(CLIENT, addr, kind, deadline_ms).await;
    server.abort();
    eprintln!("{kind}: {outcome:?}");
    outcome
}

/// A well-behaved answer: headers, one empty message, trailers with status 0.
async fn behave(mut peer: RawPeer, stream: u32) {
    peer.send_headers(stream, &response_block(), false).await;
    peer.send_data(stream, &grpc_message(false, &[]), false)
        .await;
    peer.send_headers(stream, &trailers_block(0), true).await;
    // Keep the connection until the client is done.
    peer.read_for(5_000).await;
}

/// The client's peak memory on a well-behaved call: the baseline of the bounds.
async fn baseline() -> u64 {
    let outcome = attacked("unary", 0, behave).await;
    assert_eq!(outcome.code, 0, "{outcome:?}");
    outcome.peak_rss_kib
}

#[tokio::test]
async fn huge_response_headers_end_the_call_not_the_client() {
    let base = baseline().await;
    let outcome = attacked("unary", 0, |mut peer, stream| async move {
        // 1 MB of one-byte `age` fields over CONTINUATION frames.
        let mut first = response_block();
        first.extend(std::iter::repeat_n(0x80 | 21u8, 16 * 1024 - first.len()));
        peer.send(&frame(kind::HEADERS, 0, stream, &first)).await;
        let chunk = vec![0x80 | 21u8; 16 * 1024];
        for c in 0..64 {
            let flags = if c == 63 { flag::END_HEADERS } else { 0 };
            if !peer
                .try_send(&frame(kind::CONTINUATION, flags, stream, &chunk))
                .await
            {
                break;
            }
        }
        peer.read_for(5_000).await;
    })
    .await;
    // The client's h2 closes the connection (GOAWAY ENHANCE_YOUR_CALM): the call is
    // UNAVAILABLE.
    assert_eq!(outcome.code, 14, "{outcome:?}");
    assert!(
        outcome.peak_rss_kib <= base + SMALL_KIB,
        "{outcome:?} vs {base} KiB"
    );
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_internal() {
    let outcome = attacked("unary", 0, |mut peer, stream| async move {
        // 600 one-byte fields: 21,000 bytes of header list in 600 bytes.
        let mut block = response_block();
        block.extend(std::iter::repeat_n(0x80 | 21u8, 600));
        peer.send_headers(stream, &block, false).await;
        peer.read_for(5_000).await;
    })
    .await;
    // h2 resets the stream (PROTOCOL_ERROR): INTERNAL, by gRPC's RST_STREAM mapping.
    assert_eq!(outcome.code, 13, "{outcome:?}");
}

#[tokio::test]
async fn a_declared_4_gib_message_is_resource_exhausted_at_once() {
    let started = Instant::now();
    let outcome = attacked("unary", 0, |mut peer, stream| async move {
        peer.send_headers(stream, &response_block(), false).await;
        peer.send_data(stream, &[0, 0xff, 0xff, 0xff, 0xff], false)
            .await;
        peer.read_for(10_000).await;
    })
    .await;
    assert_eq!(outcome.code, 8, "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_declared_message_that_never_arrives_waits_for_the_deadline_and_reserves_nothing() {
    let base = baseline().await;
    let outcome = attacked("unary", 1_000, |mut peer, stream| async move {
        peer.send_headers(stream, &response_block(), false).await;
        // 4 MiB declared (the client's limit), 10 bytes sent, then silence.
        let mut data = vec![0u8, 0, 0x40, 0, 0];
        data.extend_from_slice(&[0; 10]);
        peer.send_data(stream, &data, false).await;
        peer.read_for(10_000).await;
    })
    .await;
    assert_eq!(outcome.code, 4, "{outcome:?}");
    assert!(
        outcome.peak_rss_kib <= base + SMALL_KIB,
        "{outcome:?} vs {base} KiB"
    );
}

#[tokio::test]
async fn an_endless_stream_of_one_byte_frames_ends_at_the_deadline_in_bounded_memory() {
    let base = baseline().await;
    let outcome = attacked("server-stream", 1_500, |mut peer, stream| async move {
        peer.send_headers(stream, &response_block(), false).await;
        // Empty messages, each prefix split into five one-byte DATA frames, sent as fast as
        // the client's flow-control windows allow, for up to 5 s.
        let (mut conn, mut stream_window) = initial_windows(&peer);
        let zero = frame(kind::DATA, 0, stream, &[0]);
        let batch: Vec<u8> = std::iter::repeat_n(zero, 1000).flatten().collect();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if conn.min(stream_window) >= 1000 {
                if !peer.try_send(&batch).await {
                    return;
                }
                conn -= 1000;
                stream_window -= 1000;
                continue;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), peer.next_frame()).await;
            match next {
                Ok(Some(f)) if f.kind == kind::WINDOW_UPDATE => {
                    let inc = f.window_increment();
                    if f.stream == 0 {
                        conn += inc;
                    } else if f.stream == stream {
                        stream_window += inc;
                    }
                }
                Ok(Some(f)) if f.kind == kind::RST_STREAM || f.kind == kind::GOAWAY => return,
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => return,
            }
        }
    })
    .await;
    assert_eq!(outcome.code, 4, "{outcome:?}");
    assert!(outcome.messages > 1000, "{outcome:?}");
    assert!(
        outcome.peak_rss_kib <= base + SMALL_KIB,
        "{outcome:?} vs {base} KiB"
    );
}

/// The client's flow-control windows as its SETTINGS and WINDOW_UPDATEs (read while
/// accepting) set them: (connection, stream).
fn initial_windows(peer: &RawPeer) -> (i64, i64) {
    let mut conn = 65_535i64;
    let mut stream = 65_535i64;
    for f in &peer.seen {
        match f.kind {
            kind::SETTINGS if f.flags & flag::ACK == 0 => {
                for pair in f.payload.chunks_exact(6) {
                    if pair[..2] == [0, 4] {
                        stream =
                            i64::from(u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]));
                    }
                }
            }
            kind::WINDOW_UPDATE if f.stream == 0 => {
                conn += f.window_increment();
            }
            _ => {}
        }
    }
    (conn, stream)
}
