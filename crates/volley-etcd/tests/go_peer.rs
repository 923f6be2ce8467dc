//! Discovery interop with Go: etcd's own Go naming packages (`endpoints.Manager` and the
//! gRPC resolver of `clientv3/naming`) and grpc-go, in `interop/etcd-go`, against Volley's
//! registrar and resolver on a real etcd.
//!
//! Needs the Go peer's binary in `VOLLEY_ETCD_GO`; `scripts/test.sh` builds it
//! (`scripts/etcd-go.sh`) and runs this test (it is `#[ignore]`d otherwise).

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Etcd;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use volley::{Channel, Server};
use volley_etcd::{EtcdResolverBuilder, Registrar};
use volley_examples::greeter::MyGreeter;
use volley_examples::helloworld::{GreeterClient, GreeterServer, HelloRequest};

fn go_peer() -> String {
    std::env::var("VOLLEY_ETCD_GO")
        .expect("VOLLEY_ETCD_GO must name the Go peer; scripts/test.sh builds it")
}

async fn start_backend(name: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let greeter = MyGreeter {
        who: name.to_owned(),
    };
    let task = tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, std::future::pending())
            .await;
    });
    (addr, task)
}

/// Calls until exactly `names` answer.
async fn answering(client: &GreeterClient, names: &[&str]) {
    loop {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..names.len() * 4 {
            let reply = client
                .say_hello(HelloRequest { name: "x".into() })
                .await
                .unwrap();
            let message = reply.into_inner().message;
            seen.insert(message.rsplit(' ').next().unwrap_or_default().to_owned());
        }
        if seen.len() == names.len() && names.iter().all(|n| seen.contains(*n)) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Go peer (VOLLEY_ETCD_GO); scripts/test.sh provides it"]
async fn go_and_volley_find_each_other_through_etcd() {
    let go = go_peer();
    let etcd = Etcd::start().await;
    let endpoints = etcd.endpoints().join(",");
    let (volley_addr, _s1) = start_backend("server-1").await;
    let (go_registered_addr, _s2) = start_backend("server-2").await;
    // server-1 registered by Volley, server-2 by Go's endpoints.Manager.
    let _registration = Registrar::new(etcd.client())
        .register("kvdb", &volley_addr.to_string())
        .await
        .unwrap();
    let mut go_registrar = Command::new(&go)
        .args([
            "-mode",
            "register",
            "-endpoints",
            &endpoints,
            "-name",
            "kvdb",
        ])
        .args(["-addr", &go_registered_addr.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(go_registrar.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the Go registrar did not start")
        .unwrap();
    assert_eq!(
        first.as_deref(),
        Some(format!("registered kvdb/{go_registered_addr}").as_str())
    );

    // A Volley client finds both.
    let channel = Channel::builder("etcd:///kvdb")
        .resolver(EtcdResolverBuilder::new(etcd.client()))
        .load_balancing_policy("round_robin")
        .wait_for_ready(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = GreeterClient::new(channel);
    tokio::time::timeout(
        Duration::from_secs(20),
        answering(&client, &["server-1", "server-2"]),
    )
    .await
    .expect("the Volley client did not find both servers");

    // grpc-go with etcd's resolver finds both too, the Volley-registered one included.
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(&go)
            .args(["-mode", "call", "-endpoints", &endpoints, "-name", "kvdb"])
            .args(["-calls", "30"])
            .output(),
    )
    .await
    .expect("the Go client timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Go client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies.len(), 30, "{stdout}");
    assert!(
        replies
            .iter()
            .all(|r| r.starts_with("Hello go, from server-")),
        "{stdout}"
    );
    for name in ["server-1", "server-2"] {
        assert!(
            replies.iter().any(|r| r.ends_with(name)),
            "{name}: {stdout}"
        );
    }

    // The Go registrar deregisters (DeleteEndpoint) on SIGTERM; the Volley client follows.
    let pid = go_registrar.id().unwrap();
    let _ = Command::new("kill").arg(pid.to_string()).status().await;
    let status = tokio::time::timeout(Duration::from_secs(10), go_registrar.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    tokio::time::timeout(Duration::from_secs(20), answering(&client, &["server-1"]))
        .await
        .expect("the Volley client kept the deregistered server");
}
