//! A foreign client: grpcio-health-checking's `HealthStub` checks and watches a Volley health
//! service. Needs a Python with `grpcio-health-checking` in `VOLLEY_PYTHON`;
//! `scripts/test.sh` installs one (`scripts/python-env.sh`) and runs this test, which is
//! `#[ignore]`d otherwise.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

#[tokio::test]
#[ignore = "needs VOLLEY_PYTHON with grpcio-health-checking (scripts/test.sh)"]
async fn grpcio_health_client_checks_and_watches_a_volley_server() {
    let python = std::env::var("VOLLEY_PYTHON").expect("VOLLEY_PYTHON (scripts/test.sh)");
    let (reporter, service) = volley_health::health_service();
    reporter.set_serving("a.B");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(service)
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/health_client.py");
    let mut client = Command::new(python)
        .arg(script)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "watch SERVING" {
                // The client is watching: the change must reach it.
                reporter.set_not_serving("a.B");
            }
            seen.push(line);
        }
        client.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the grpcio client finished in time");
    assert!(status.success(), "grpcio client failed after {seen:?}");
    assert_eq!(seen, ["check ok", "watch SERVING", "watch NOT_SERVING"]);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
