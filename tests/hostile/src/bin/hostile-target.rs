//! A Volley server for the hostile-peer tests: the echo service on a free loopback port, with
//! every option at its default except those the arguments set. Prints `listening on ADDR`,
//! then serves until its standard input closes (the test ends or dies) or it is killed.
//!
//! Arguments: `--handshake-timeout-ms N`, `--max-connections N`, `--max-pending-request-bytes N`
//! (time-based options are shortened so that tests need not wait for the defaults).

use std::time::Duration;

use tokio::io::AsyncReadExt;
use volley_integration_tests::EchoService;
use volley_integration_tests::echo::EchoServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let mut builder = volley::Server::builder();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = |i: usize| -> u64 {
            pair.get(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} takes a number", pair[0]))
        };
        builder = match pair[0].as_str() {
            "--handshake-timeout-ms" => builder.handshake_timeout(Duration::from_millis(value(1))),
            "--max-connections" => builder.max_connections(value(1) as usize),
            "--max-pending-request-bytes" => builder.max_pending_request_bytes(value(1) as usize),
            other => panic!("unknown argument {other}"),
        };
    }
    // Nobody reads the handlers' events: they are dropped as they are sent.
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let stdin_closed = async {
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while let Ok(n) = stdin.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    builder
        .add_service(EchoServer::new(EchoService::new(events)))
        .drain_timeout(Duration::from_secs(1))
        .serve_with_listener(listener, stdin_closed)
        .await
}
