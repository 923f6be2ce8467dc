//! Service discovery on etcd: greeter servers register themselves under `kvdb`, a client
//! dials `etcd:///kvdb` with `round_robin` and follows them as they come and go.

use std::io::Write;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volley::{Channel, Request, Server};
use volley_etcd::{EtcdClient, EtcdResolverBuilder, Registrar};

use crate::greeter::MyGreeter;
use crate::helloworld::{GreeterClient, GreeterServer, HelloRequest};

/// A server that registered itself; `stop` shuts it down gracefully (deregistering first).
struct Registered {
    name: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_server(
    name: &str,
    registrar: &Registrar,
) -> Result<Registered, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let registration = registrar.register("kvdb", &addr.to_string()).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    // On shutdown: deregister first (clients stop picking the server), then drain.
    let signal = registration.deregister_on(async {
        let _ = stopped.await;
    });
    let greeter = MyGreeter {
        who: name.to_owned(),
    };
    let task = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, signal),
    );
    Ok(Registered {
        name: name.to_owned(),
        stop,
        task,
    })
}

/// Calls `n` times, printing who answered.
async fn rotation(
    out: &mut impl Write,
    client: &GreeterClient,
    n: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut who = Vec::new();
    for _ in 0..n {
        let reply = client
            .say_hello(Request::new(HelloRequest {
                name: "kvdb".into(),
            }))
            .await?;
        let message = reply.into_inner().message;
        who.push(message.rsplit(' ').next().unwrap_or_default().to_owned());
    }
    writeln!(out, "  answered by: {}", who.join(" "))?;
    Ok(())
}

/// Calls until exactly `names` answer (the resolver's watch needs a moment to tell the
/// channel), so that the printed rotation is the settled one.
async fn settle(client: &GreeterClient, names: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..names.len() * 4 {
            let reply = client
                .say_hello(HelloRequest {
                    name: "settle".into(),
                })
                .await?;
            let message = reply.into_inner().message;
            seen.insert(message.rsplit(' ').next().unwrap_or_default().to_owned());
        }
        if seen.len() == names.len() && names.iter().all(|n| seen.contains(*n)) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("expected {names:?} to answer, got {seen:?}").into());
        }
    }
}

/// Runs the scenario against the etcd cluster at `endpoints`, writing what happens to `out`.
pub async fn run(
    out: &mut impl Write,
    endpoints: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let etcd = EtcdClient::new(endpoints)?;
    let registrar = Registrar::new(etcd.clone()).ttl(Duration::from_secs(5));
    let mut servers = Vec::new();
    for name in ["server-1", "server-2"] {
        servers.push(start_server(name, &registrar).await?);
        writeln!(out, "{name} registered under kvdb/")?;
    }
    let channel = Channel::builder("etcd:///kvdb")
        .resolver(EtcdResolverBuilder::new(etcd))
        .load_balancing_policy("round_robin")
        .wait_for_ready(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let client = GreeterClient::new(channel);
    settle(&client, &["server-1", "server-2"]).await?;
    writeln!(out, "the client dials etcd:///kvdb (round_robin):")?;
    rotation(out, &client, 6).await?;

    servers.push(start_server("server-3", &registrar).await?);
    writeln!(out, "server-3 registered; the rotation takes it in:")?;
    settle(&client, &["server-1", "server-2", "server-3"]).await?;
    rotation(out, &client, 6).await?;

    let first = servers.remove(0);
    let _ = first.stop.send(());
    first.task.await??;
    writeln!(
        out,
        "{} stopped (deregistered, then drained); the rotation moves on:",
        first.name
    )?;
    settle(&client, &["server-2", "server-3"]).await?;
    rotation(out, &client, 6).await?;

    for server in servers {
        let _ = server.stop.send(());
        server.task.await??;
    }
    writeln!(out, "every server deregistered")?;
    Ok(())
}

/// A throwaway one-member etcd (Debian's `etcd-server`) on free loopback ports in a temporary
/// directory, for running the example without a cluster; killed and removed when dropped.
pub struct TempEtcd {
    /// Its client endpoint, `127.0.0.1:port`.
    pub endpoint: String,
    dir: std::path::PathBuf,
    child: tokio::process::Child,
}

impl TempEtcd {
    /// Starts `etcd` from `PATH` and waits (at most 20 s) until it answers.
    pub async fn start() -> Result<TempEtcd, Box<dyn std::error::Error>> {
        let free = || -> std::io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (client, peer) = (free()?, free()?);
        let dir = std::env::temp_dir().join(format!("volley-etcd-example-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = tokio::process::Command::new("etcd")
            .args(["--name", "example", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("example={peer_url}")])
            .args(["--log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start etcd (apt-get install etcd-server): {e}"))?;
        let etcd = TempEtcd {
            endpoint: format!("127.0.0.1:{client}"),
            dir,
            child,
        };
        let probe = EtcdClient::new([etcd.endpoint.clone()])?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while probe.get_prefix(b"kvdb/").await.is_err() {
            if tokio::time::Instant::now() > deadline {
                return Err("etcd did not start within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(etcd)
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
