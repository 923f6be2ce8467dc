//! `http2-core [--requests N] [--batch B]`: what `volley-http2`'s server state machine costs
//! per unary gRPC request, without sockets or a runtime: B requests at a time (HEADERS and a
//! DATA frame of a 1-byte helloworld message each, encoded once by a client connection) are
//! fed to a `ServerConnection`, and each is answered as Volley answers it (response headers,
//! a DATA frame, `grpc-status: 0` trailers; the header blocks reused as bytes once they no
//! longer change the HPACK tables); the server's output is read back by the client
//! connection, which credits the data. Prints nanoseconds per request; run it under
//! `valgrind --tool=callgrind` (twice, with two counts) for instructions per request.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use volley_http2::client::{self, ClientConnection};
use volley_http2::hpack::Indexing;
use volley_http2::server::{self, ServerConnection};
use volley_http2::{Event, ReusableBlock};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let requests = arg("--requests", 1_000_000);
    let batch = arg("--batch", 50).max(1);
    let window = 1 << 30;
    let mut client = ClientConnection::new(client::Config {
        initial_window_size: window,
        connection_window_size: window,
        ..client::Config::default()
    });
    let mut server = ServerConnection::new(server::Config {
        max_concurrent_streams: batch as u32,
        initial_window_size: window,
        connection_window_size: window,
        ..server::Config::default()
    });
    let fields: [(&[u8], &[u8], Indexing); 7] = [
        (b":method", b"POST", Indexing::Incremental),
        (b":scheme", b"http", Indexing::Incremental),
        (
            b":path",
            b"/helloworld.Greeter/SayHello",
            Indexing::Incremental,
        ),
        (b":authority", b"127.0.0.1:50051", Indexing::Incremental),
        (b"content-type", b"application/grpc", Indexing::Incremental),
        (b"te", b"trailers", Indexing::Incremental),
        (b"user-agent", b"volley/0.1.0", Indexing::Incremental),
    ];
    let message = Bytes::from_static(b"\0\0\0\0\x03\x0a\x01a");
    let reply = Bytes::from_static(b"\0\0\0\0\x03\x0a\x01a");
    let mut to_server = BytesMut::new();
    let mut to_client = BytesMut::new();
    let mut events = Vec::new();
    let mut block = None;
    // The server's gRPC head and OK trailers, reused as bytes once steady.
    let head: [(&[u8], &[u8]); 2] = [(b":status", b"200"), (b"content-type", b"application/grpc")];
    let ok: [(&[u8], &[u8]); 1] = [(b"grpc-status", b"0")];
    let mut response_blocks: Option<(ReusableBlock, ReusableBlock)> = None;
    // Handshake: each side's preface and SETTINGS to the other.
    let mut exchange =
        |client: &mut ClientConnection, server: &mut ServerConnection, events: &mut Vec<Event>| {
            to_server.extend_from_slice(client.output());
            client.output().clear();
            server
                .receive(&mut to_server, events)
                .expect("the server reads the client");
            to_client.extend_from_slice(server.output());
            server.output().clear();
            client
                .receive(&mut to_client, events)
                .expect("the client reads the server");
        };
    exchange(&mut client, &mut server, &mut events);
    exchange(&mut client, &mut server, &mut events);
    events.clear();
    let start = Instant::now();
    let mut done = 0;
    while done < requests {
        let n = batch.min(requests - done);
        for _ in 0..n {
            let reused = block
                .as_ref()
                .and_then(|b| client.open_with_block(b, false));
            let stream = match reused {
                Some(stream) => stream,
                None => {
                    block = client.reusable_block(&fields);
                    client.open(fields, false).expect("a stream slot")
                }
            };
            let mut body = message.clone();
            client.send_data(stream, &mut body, true);
        }
        to_server.extend_from_slice(client.output());
        client.output().clear();
        server
            .receive(&mut to_server, &mut events)
            .expect("valid requests");
        for event in events.drain(..) {
            match event {
                Event::Headers { stream, .. } => {
                    let reused = match &response_blocks {
                        Some((head_block, _)) => server.send_block(stream, head_block, false),
                        None => false,
                    };
                    if !reused {
                        server.send_headers(stream, &head, false);
                    }
                    let mut body = reply.clone();
                    server.send_data(stream, &mut body, false);
                    let reused = match &response_blocks {
                        Some((_, ok_block)) => server.send_block(stream, ok_block, true),
                        None => false,
                    };
                    if !reused {
                        server.send_headers(stream, &ok, true);
                        response_blocks =
                            server.reusable_block(&head).zip(server.reusable_block(&ok));
                    }
                }
                Event::Data { stream, data, .. } => server.release(stream, data.len()),
                _ => {}
            }
        }
        to_client.extend_from_slice(server.output());
        server.output().clear();
        client
            .receive(&mut to_client, &mut events)
            .expect("valid responses");
        for event in events.drain(..) {
            if let Event::Data { stream, data, .. } = event {
                client.release(stream, data.len());
            }
        }
        done += n;
    }
    let elapsed = start.elapsed();
    assert_eq!(server.open_streams(), 0);
    assert_eq!(client.open_streams(), 0);
    println!(
        "{requests} requests in batches of {batch}: {:.0} ns per request (client and server state machines together)",
        elapsed.as_nanos() as f64 / requests as f64
    );
}
