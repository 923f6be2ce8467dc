//! Real etcd servers for the tests: each started on free loopback ports in its own temporary
//! data directory, stopped (killed) and cleaned up when dropped.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use volley_etcd::EtcdClient;

/// A free port on 127.0.0.1 (bound, then released for etcd to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// One etcd member.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    cluster: String,
    /// Serves clients over TLS with gRPC's test certificate (`interop/certs/server1`).
    tls: bool,
    child: Option<Child>,
}

impl Member {
    fn new(name: &str, dir: &std::path::Path) -> Member {
        Member {
            name: name.to_owned(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.join(name),
            cluster: String::new(),
            tls: false,
            child: None,
        }
    }

    /// `127.0.0.1:port` of its client API.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts (or restarts, with the same data directory) the process.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let scheme = if self.tls { "https" } else { "http" };
        let client_url = format!("{scheme}://{}", self.endpoint());
        let mut command = Command::new("etcd");
        if self.tls {
            command
                .arg("--cert-file")
                .arg(certs().join("server1.pem"))
                .arg("--key-file")
                .arg(certs().join("server1.key"));
        }
        let child = command
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "volley-test"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start etcd: is Debian's etcd-server installed? (.ci/run installs it)");
        self.child = Some(child);
    }

    /// Stops the process at once (SIGKILL), as a crash would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// gRPC's test certificates, in the interop directory.
pub fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/certs")
}

/// A cluster of etcd members on loopback (one member for most tests).
pub struct Etcd {
    pub members: Vec<Member>,
    dir: PathBuf,
}

impl Etcd {
    /// Starts a one-member etcd and waits until it answers.
    pub async fn start() -> Etcd {
        Etcd::cluster(1).await
    }

    /// Starts an `n`-member cluster and waits until it answers.
    pub async fn cluster(n: usize) -> Etcd {
        Etcd::start_members(n, false).await
    }

    /// Starts a one-member etcd serving clients over TLS (certificate for
    /// `*.test.google.fr`, signed by `interop/certs/ca.pem`).
    pub async fn start_tls() -> Etcd {
        Etcd::start_members(1, true).await
    }

    async fn start_members(n: usize, tls: bool) -> Etcd {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("volley-etcd-test-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create a data directory");
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member::new(&format!("m{i}"), &dir))
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.cluster = cluster.clone();
            m.tls = tls;
            m.start();
        }
        let etcd = Etcd { members, dir };
        etcd.wait_ready().await;
        etcd
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// A client of every member (over TLS when the members serve it).
    pub fn client(&self) -> EtcdClient {
        let mut builder = EtcdClient::builder(self.endpoints())
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1));
        if self.members.iter().any(|m| m.tls) {
            let ca = std::fs::read(certs().join("ca.pem")).expect("ca.pem");
            builder = builder.tls_config(
                volley::ClientTlsConfig::new()
                    .ca_certificate(volley::Certificate::from_pem(ca))
                    .domain_name("etcd.test.google.fr"),
            );
        }
        builder.build().expect("client")
    }

    /// Waits (at most 20 s) until a write and a read succeed.
    pub async fn wait_ready(&self) {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if client.put(b"volley-test/ready", b"1", 0).await.is_ok()
                && client.get_prefix(b"volley-test/").await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not become ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `etcdctl` against this cluster; returns its standard output.
    pub async fn etcdctl(&self, args: &[&str]) -> String {
        self.etcdctl_as(None, args).await
    }

    /// Runs `etcdctl` as `user` (`name:password`), when given.
    pub async fn etcdctl_as(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("etcdctl");
        if let Some(user) = user {
            command.arg(format!("--user={user}"));
        }
        let output = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(args)
            .output()
            .await
            .expect("cannot run etcdctl: is Debian's etcd-client installed?");
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
