//! A Volley client for the hostile-server tests: makes one call to `ADDR` and prints how it
//! ended and its peak memory, so that a test can bound what a hostile server made it hold.
//!
//! Usage: `hostile-client ADDR unary|server-stream DEADLINE_MS` (0: no deadline). Prints
//! `code=N`, `message=...`, `messages=N` (server-stream: messages received) and
//! `peak_rss_kib=N`.

use std::time::Duration;

use volley::{Channel, Request};
use volley_integration_tests::echo::{EchoClient, EchoRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, kind, deadline_ms] = &args[..] else {
        panic!("usage: hostile-client ADDR unary|server-stream DEADLINE_MS");
    };
    let deadline_ms: u64 = deadline_ms.parse().expect("a number");
    let channel = Channel::new(&format!("http://{addr}")).expect("a valid target");
    let client = EchoClient::new(channel);
    let mut request = Request::new(EchoRequest {
        message: "hello".into(),
        ..Default::default()
    });
    if deadline_ms > 0 {
        request.set_timeout(Duration::from_millis(deadline_ms));
    }
    let mut messages = 0u64;
    let result = match kind.as_str() {
        "unary" => client.unary(request).await.map(|_| ()),
        "server-stream" => match client.server_stream(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => messages += 1,
                        Ok(None) => break Ok(()),
                        Err(status) => break Err(status),
                    }
                }
            }
            Err(status) => Err(status),
        },
        other => panic!("unknown call kind {other}"),
    };
    let (code, message) = match result {
        Ok(()) => (0, String::new()),
        Err(status) => (status.code() as i32, status.message().replace('\n', " ")),
    };
    println!("code={code}");
    println!("message={message}");
    println!("messages={messages}");
    let peak = volley_hostile_tests::proc_status_kib(std::process::id(), "VmHWM:");
    println!("peak_rss_kib={peak}");
}
