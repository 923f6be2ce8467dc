//! Discovery against real etcd servers (Debian's `etcd-server`), started per test on free
//! loopback ports: registration, the `etcd:///` resolver with round_robin, crashes,
//! graceful deregistration, etcd restarts, compaction, the Go format, and a 3-member cluster.
//!
//! Needs `etcd` and `etcdctl` on `PATH`; `scripts/test.sh` installs them and runs these tests
//! (they are `#[ignore]`d otherwise).

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::Etcd;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use volley::{Channel, Code, ConnectivityState, Request, Server, Status};
use volley_etcd::proto::mvccpb::event::EventType;
use volley_etcd::{EtcdClient, EtcdResolverBuilder, Registrar, Registration};
use volley_examples::greeter::MyGreeter;
use volley_examples::helloworld::{GreeterClient, GreeterServer, HelloRequest};

/// Runs `fut` with a time bound.
async fn bounded<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test exceeded its time bound")
}

/// A greeter server named `name` on a free loopback port; stops when `stop` fires (after
/// `signal_done`, see `start_with_signal`) or when the task is aborted.
struct Backend {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_backend(name: &str) -> Backend {
    start_with_signal(name, std::future::pending()).await
}

async fn start_with_signal(
    name: &str,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let greeter = MyGreeter {
        who: name.to_owned(),
    };
    let task = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, signal),
    );
    Backend { addr, task }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn registrar(etcd: &Etcd, ttl: Duration) -> Registrar {
    Registrar::new(etcd.client()).ttl(ttl)
}

/// A round_robin client of `etcd:///<service>`, waiting for ready.
fn discovery_client(etcd: &Etcd, service: &str) -> (Channel, GreeterClient) {
    discovery_client_with(EtcdResolverBuilder::new(etcd.client()), service)
}

fn discovery_client_with(resolver: EtcdResolverBuilder, service: &str) -> (Channel, GreeterClient) {
    let channel = Channel::builder(&format!("etcd:///{service}"))
        .resolver(resolver)
        .load_balancing_policy("round_robin")
        .wait_for_ready(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    (channel.clone(), GreeterClient::new(channel))
}

/// Which server answered ("Hello x, from server-2" → "server-2").
async fn hello(client: &GreeterClient) -> Result<String, Status> {
    let reply = client
        .say_hello(Request::new(HelloRequest { name: "x".into() }))
        .await?;
    let message = reply.into_inner().message;
    Ok(message
        .rsplit_once("from ")
        .map(|(_, who)| who.to_owned())
        .unwrap_or(message))
}

/// Calls until every one of `names` has answered (and only they answer).
async fn wait_until_answering(client: &GreeterClient, names: &[&str]) {
    let mut seen = std::collections::HashSet::new();
    let mut in_a_row = 0;
    // Done when a full rotation has answered from exactly the expected set, twice.
    while in_a_row < 2 {
        seen.clear();
        for _ in 0..names.len() * 3 {
            seen.insert(hello(client).await.expect("call failed"));
        }
        if seen.len() == names.len() && names.iter().all(|n| seen.contains(*n)) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
    }
}

async fn count_calls(client: &GreeterClient, calls: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..calls {
        *counts
            .entry(hello(client).await.expect("call failed"))
            .or_default() += 1;
    }
    counts
}

/// Waits for the next DELETE of `key` in etcd, watching from `revision`.
async fn deleted(client: &EtcdClient, key: &str, revision: i64) {
    let mut watch = client.watch_prefix(key.as_bytes(), revision).await.unwrap();
    loop {
        let response = watch.next().await.unwrap().expect("watch ended");
        for event in response.events {
            if event.r#type == EventType::Delete as i32
                && event.kv.is_some_and(|kv| kv.key == key.as_bytes())
            {
                return;
            }
        }
    }
}

async fn current_revision(client: &EtcdClient) -> i64 {
    client.get_prefix(b"volley-test/").await.unwrap().1
}

/// Three greeter servers, `server-1` to `server-3`, registered under `kvdb` with `ttl`.
async fn three_registered(etcd: &Etcd, ttl: Duration) -> (Vec<Backend>, Vec<Registration>) {
    let registrar = registrar(etcd, ttl);
    let mut backends = Vec::new();
    let mut registrations = Vec::new();
    for name in ["server-1", "server-2", "server-3"] {
        let backend = start_backend(name).await;
        let registration = registrar
            .register("kvdb", &backend.addr.to_string())
            .await
            .unwrap();
        registrations.push(registration);
        backends.push(backend);
    }
    (backends, registrations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn three_registered_servers_share_300_calls_evenly() {
    let etcd = Etcd::start().await;
    let (_backends, _registrations) = three_registered(&etcd, Duration::from_secs(10)).await;
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    bounded(20, async {
        wait_until_answering(&client, &["server-1", "server-2", "server-3"]).await;
        let counts = count_calls(&client, 300).await;
        assert_eq!(counts.len(), 3, "{counts:?}");
        for n in counts.values() {
            assert_eq!(*n, 100, "{counts:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn a_crashed_server_disappears_within_its_ttl_and_no_call_fails() {
    let etcd = Etcd::start().await;
    let ttl = Duration::from_secs(2);
    let (mut backends, registrations) = three_registered(&etcd, ttl).await;
    let mut registrations: Vec<Option<Registration>> =
        registrations.into_iter().map(Some).collect();
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    let etcd_client = etcd.client();
    bounded(30, async {
        wait_until_answering(&client, &["server-1", "server-2", "server-3"]).await;
        let key = registrations[1].as_ref().unwrap().key().to_owned();
        let revision = current_revision(&etcd_client).await;
        let gone = tokio::spawn({
            let etcd_client = etcd_client.clone();
            async move { deleted(&etcd_client, &key, revision).await }
        });
        // The crash: the server and its lease keep-alive stop, nothing is deregistered.
        let victim = backends.remove(1);
        victim.task.abort();
        let _ = (&mut { victim }.task).await;
        drop(registrations[1].take());
        let crashed = Instant::now();
        // The client has no event to await for reading the dead connection's end; give it
        // the moment it needs so that no call is sent into the closed socket.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Calls go on (wait-for-ready) while etcd has not yet expired the lease.
        let mut calls = 0;
        while !gone.is_finished() {
            let who = hello(&client).await.expect("no call may fail");
            assert_ne!(who, "server-2");
            calls += 1;
        }
        let disappeared = crashed.elapsed();
        println!("key gone after {disappeared:?}; {calls} calls meanwhile");
        assert!(
            disappeared <= ttl + Duration::from_secs(1),
            "{disappeared:?}"
        );
        let counts = count_calls(&client, 100).await;
        assert!(!counts.contains_key("server-2"), "{counts:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn graceful_shutdown_deregisters_before_the_server_stops_accepting() {
    let etcd = Etcd::start().await;
    let etcd_client = etcd.client();
    let registrar = registrar(&etcd, Duration::from_secs(10));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registration = registrar.register("kvdb", &addr.to_string()).await.unwrap();
    let key = registration.key().to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    // The server's shutdown signal: the stop request, then deregistration, then (for the
    // test) a gate that holds the server open until the test has called it.
    let deregistered = registration.deregister_on(async {
        let _ = stopped.await;
    });
    let signal = async move {
        deregistered.await;
        let _ = released.await;
    };
    let server = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter {
                who: "server-1".into(),
            }))
            .serve_with_listener(listener, signal),
    );
    let direct = GreeterClient::new(Channel::new(&format!("http://{addr}")).unwrap());
    bounded(20, async {
        assert_eq!(hello(&direct).await.unwrap(), "server-1");
        let revision = current_revision(&etcd_client).await;
        let gone = tokio::spawn({
            let etcd_client = etcd_client.clone();
            let key = key.clone();
            async move { deleted(&etcd_client, &key, revision).await }
        });
        let _ = stop.send(());
        gone.await.unwrap();
        assert!(
            etcd_client
                .get_prefix(key.as_bytes())
                .await
                .unwrap()
                .0
                .is_empty()
        );
        // The key is gone and the server still accepts calls, on a new connection too.
        assert_eq!(hello(&direct).await.unwrap(), "server-1");
        let fresh = GreeterClient::new(Channel::new(&format!("http://{addr}")).unwrap());
        assert_eq!(hello(&fresh).await.unwrap(), "server-1");
        let _ = release.send(());
        server.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn a_lost_lease_is_replaced_by_a_new_one() {
    let etcd = Etcd::start().await;
    let etcd_client = etcd.client();
    let backend = start_backend("server-1").await;
    let registration = registrar(&etcd, Duration::from_secs(3))
        .register("kvdb", &backend.addr.to_string())
        .await
        .unwrap();
    let first = registration.lease().unwrap();
    bounded(20, async {
        // Revoked behind the registrar's back (as when etcd expired it during a partition):
        // the key goes with it, and the registrar writes it again under a new lease.
        let revision = current_revision(&etcd_client).await;
        etcd_client.revoke_lease(first).await.unwrap();
        let mut watch = etcd_client
            .watch_prefix(b"kvdb/", revision + 1)
            .await
            .unwrap();
        loop {
            let response = watch.next().await.unwrap().expect("watch ended");
            let put = response
                .events
                .into_iter()
                .find(|e| e.r#type == EventType::Put as i32);
            if let Some(kv) = put.and_then(|e| e.kv) {
                assert_ne!(kv.lease, first);
                // The registrar records the lease right after its write returns.
                while registration.lease() != Some(kv.lease) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn clients_keep_calling_through_an_etcd_restart_and_registrations_come_back() {
    let mut etcd = Etcd::start().await;
    let ttl = Duration::from_secs(3);
    let (_backends, registrations) = three_registered(&etcd, ttl).await;
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    bounded(60, async {
        wait_until_answering(&client, &["server-1", "server-2", "server-3"]).await;
        etcd.members[0].stop().await;
        let down = Instant::now();
        let mut calls = 0;
        while down.elapsed() < Duration::from_secs(10) {
            hello(&client)
                .await
                .expect("no call may fail while etcd is down");
            calls += 1;
        }
        etcd.members[0].start();
        etcd.wait_ready().await;
        println!("{calls} calls while etcd was down");
        // The registrations are back (kept or renewed under new leases) and stay: wait past
        // a whole TTL with every key present and attached to a live lease.
        let etcd_client = etcd.client();
        let settled = Instant::now();
        loop {
            let (kvs, _) = etcd_client.get_prefix(b"kvdb/").await.unwrap();
            let leases: Vec<Option<i64>> = registrations.iter().map(Registration::lease).collect();
            let attached = kvs.len() == 3
                && kvs
                    .iter()
                    .all(|kv| leases.contains(&Some(kv.lease)) && kv.lease != 0);
            if !attached {
                assert!(
                    settled.elapsed() < Duration::from_secs(15),
                    "not restored: {kvs:?}"
                );
            } else if settled.elapsed() > ttl * 2 {
                break;
            }
            hello(&client)
                .await
                .expect("no call may fail after the restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counts = count_calls(&client, 30).await;
        assert_eq!(counts.len(), 3, "{counts:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn the_resolver_recovers_from_compaction_past_its_watch() {
    let etcd = Etcd::start().await;
    let etcd_client = etcd.client();
    let registrar = registrar(&etcd, Duration::from_secs(10));
    let b1 = start_backend("server-1").await;
    let b2 = start_backend("server-2").await;
    let b3 = start_backend("server-3").await;
    let r1 = registrar
        .register("kvdb", &b1.addr.to_string())
        .await
        .unwrap();
    let _r2 = registrar
        .register("kvdb", &b2.addr.to_string())
        .await
        .unwrap();
    // The resolver reads, then waits 2 s before watching from the read's revision + 1.
    let resolver =
        EtcdResolverBuilder::new(etcd.client()).watch_delay_for_tests(Duration::from_secs(2));
    let (channel, client) = discovery_client_with(resolver, "kvdb");
    bounded(30, async {
        bounded(5, channel.connect()).await.unwrap();
        // Meanwhile: server-3 joins, server-1 leaves, and etcd compacts its history past the
        // revision the resolver will watch from.
        let _r3 = registrar
            .register("kvdb", &b3.addr.to_string())
            .await
            .unwrap();
        r1.deregister().await.unwrap();
        let revision = current_revision(&etcd_client).await;
        etcd_client.compact(revision).await.unwrap();
        // The watch is refused (compacted); the resolver reads again and follows.
        wait_until_answering(&client, &["server-2", "server-3"]).await;
        assert_eq!(channel.state(false), ConnectivityState::Ready);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn the_go_format_is_read_and_written_exactly() {
    let etcd = Etcd::start().await;
    let b1 = start_backend("server-1").await;
    let b2 = start_backend("server-2").await;
    // A registration as Go's endpoints.Manager writes it, with lower-case field names as a
    // hand-written one might have.
    let go_value = format!(
        r#"{{"op":0,"addr":"{}","metadata":{{"zone":"a"}}}}"#,
        b1.addr
    );
    etcd.etcdctl(&["put", &format!("kvdb/{}", b1.addr), &go_value])
        .await;
    // A value that is no endpoint is skipped.
    etcd.etcdctl(&["put", "kvdb/garbage", "not json"]).await;
    let registration = Registrar::new(etcd.client())
        .register("kvdb", &b2.addr.to_string())
        .await
        .unwrap();
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    bounded(20, wait_until_answering(&client, &["server-1", "server-2"])).await;
    // Read back with etcdctl: Go's exact bytes.
    let listing = etcd.etcdctl(&["get", "--prefix", registration.key()]).await;
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        [
            registration.key().to_owned(),
            format!(r#"{{"Op":0,"Addr":"{}","Metadata":null}}"#, b2.addr)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn a_three_member_cluster_keeps_working_with_one_member_down() {
    let mut etcd = Etcd::cluster(3).await;
    let ttl = Duration::from_secs(3);
    let registrar = registrar(&etcd, ttl);
    let b1 = start_backend("server-1").await;
    let b2 = start_backend("server-2").await;
    let r1 = registrar
        .register("kvdb", &b1.addr.to_string())
        .await
        .unwrap();
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    bounded(60, async {
        wait_until_answering(&client, &["server-1"]).await;
        // The clients talk to the first endpoint (pick_first): stop that one.
        etcd.members[0].stop().await;
        // Registration through the two others, and discovery of it.
        let r2 = registrar
            .register("kvdb", &b2.addr.to_string())
            .await
            .unwrap();
        wait_until_answering(&client, &["server-1", "server-2"]).await;
        // Leases keep being renewed: both keys outlive two TTLs.
        let since = Instant::now();
        let etcd_client = etcd.client();
        while since.elapsed() < ttl * 2 {
            let (kvs, _) = etcd_client.get_prefix(b"kvdb/").await.unwrap();
            assert_eq!(kvs.len(), 2, "a registration lapsed: {kvs:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Deregistration works too, and the client follows.
        r1.deregister().await.unwrap();
        wait_until_answering(&client, &["server-2"]).await;
        drop(r2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn registration_and_discovery_work_with_authentication() {
    let etcd = Etcd::start().await;
    etcd.etcdctl(&["user", "add", "root", "--new-user-password=secret"])
        .await;
    etcd.etcdctl(&["auth", "enable"]).await;
    let status = etcd
        .etcdctl_as(Some("root:secret"), &["auth", "status"])
        .await;
    assert!(status.contains("true"), "{status}");
    let anonymous = etcd.client();
    let status = anonymous
        .get_prefix(b"kvdb/")
        .await
        .expect_err("etcd with auth refuses anonymous reads");
    println!("anonymous read: {status}");
    let authed = || {
        EtcdClient::builder(etcd.endpoints())
            .credentials("root", "secret")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let backend = start_backend("server-1").await;
    let _registration = Registrar::new(authed())
        .ttl(Duration::from_secs(3))
        .register("kvdb", &backend.addr.to_string())
        .await
        .unwrap();
    let (_channel, client) = discovery_client_with(EtcdResolverBuilder::new(authed()), "kvdb");
    bounded(20, wait_until_answering(&client, &["server-1"])).await;
    // The lease is renewed with the token too: the key outlives its TTL.
    let start = Instant::now();
    let reader = authed();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(reader.get_prefix(b"kvdb/").await.unwrap().0.len(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wrong = EtcdClient::builder(etcd.endpoints())
        .credentials("root", "wrong")
        .build()
        .unwrap();
    let status = wrong
        .get_prefix(b"kvdb/")
        .await
        .expect_err("a wrong password");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    // Turning auth off and on again makes etcd forget every token it handed out: the next
    // call with the old token fails, the middleware forgets it, and the call after that
    // authenticates again and succeeds.
    etcd.etcdctl_as(Some("root:secret"), &["auth", "disable"])
        .await;
    etcd.etcdctl(&["auth", "enable"]).await;
    let stale = reader
        .get_prefix(b"kvdb/")
        .await
        .expect_err("etcd no longer knows the token");
    assert_eq!(stale.code(), Code::Unauthenticated, "{stale}");
    assert!(stale.message().contains("token"), "{stale}");
    let (kvs, _) = reader
        .get_prefix(b"kvdb/")
        .await
        .expect("the next call authenticates again");
    assert_eq!(kvs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn registration_and_discovery_work_over_tls() {
    let etcd = Etcd::start_tls().await;
    let backend = start_backend("server-1").await;
    let _registration = registrar(&etcd, Duration::from_secs(3))
        .register("kvdb", &backend.addr.to_string())
        .await
        .unwrap();
    let (_channel, client) = discovery_client(&etcd, "kvdb");
    bounded(20, wait_until_answering(&client, &["server-1"])).await;
    // A plaintext client gets nowhere with a TLS-only etcd.
    let plain = EtcdClient::builder(etcd.endpoints())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(plain.get_prefix(b"kvdb/").await.is_err());
}

/// How many Range calls etcd has answered OK (from its Prometheus metrics).
async fn ranges_served(etcd: &Etcd) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(etcd.endpoints()[0].as_str())
        .await
        .unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains(r#"grpc_code="OK""#)
                && l.contains(r#"grpc_method="Range""#)
        })
        .expect("no Range metric");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn a_lost_connection_makes_the_resolver_read_again() {
    let etcd = Etcd::start().await;
    let registrar = registrar(&etcd, Duration::from_secs(10));
    let b1 = start_backend("server-1").await;
    let (stop, stopped) = oneshot::channel::<()>();
    let b2 = start_with_signal("server-2", async {
        let _ = stopped.await;
    })
    .await;
    let _r1 = registrar
        .register("kvdb", &b1.addr.to_string())
        .await
        .unwrap();
    // Registered, but its server will go away without deregistering.
    let _r2 = registrar
        .register("kvdb", &b2.addr.to_string())
        .await
        .unwrap();
    let resolver =
        EtcdResolverBuilder::new(etcd.client()).min_resolve_interval(Duration::from_millis(100));
    let (_channel, client) = discovery_client_with(resolver, "kvdb");
    bounded(20, async {
        wait_until_answering(&client, &["server-1", "server-2"]).await;
        let before = ranges_served(&etcd).await;
        // The watch alone would never read again; the GOAWAY makes the channel ask for a
        // re-resolution, and the resolver reads the endpoints anew.
        let _ = stop.send(());
        loop {
            if ranges_served(&etcd).await > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn weights_in_endpoint_metadata_split_calls_under_weighted_round_robin() {
    let etcd = Etcd::start().await;
    let mut backends = Vec::new();
    let mut registrations = Vec::new();
    for (name, weight) in [("server-1", 1), ("server-2", 2), ("server-3", 3)] {
        let backend = start_backend(name).await;
        let registration = registrar(&etcd, Duration::from_secs(10))
            .metadata(serde_json::json!({ "weight": weight }))
            .register("weighted", &backend.addr.to_string())
            .await
            .unwrap();
        registrations.push(registration);
        backends.push(backend);
    }
    let channel = Channel::builder("etcd:///weighted")
        .resolver(EtcdResolverBuilder::new(etcd.client()))
        .load_balancing_policy("weighted_round_robin")
        .wait_for_ready(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = GreeterClient::new(channel);
    bounded(20, async {
        wait_until_answering(&client, &["server-1", "server-2", "server-3"]).await;
        let counts = count_calls(&client, 600).await;
        eprintln!("etcd metadata weights 1, 2, 3: {counts:?}");
        for (name, want) in [("server-1", 100), ("server-2", 200), ("server-3", 300)] {
            assert!(counts[name].abs_diff(want) <= 2, "{counts:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd and etcdctl (Debian's etcd-server, etcd-client): run by scripts/test.sh"]
async fn a_service_config_stored_under_the_name_reaches_the_channel() {
    let etcd = Etcd::start().await;
    let (_backends, _registrations) = three_registered(&etcd, Duration::from_secs(10)).await;
    let client = etcd.client();
    // A neighbour whose name starts with ours must not be mistaken for our config or ours.
    client
        .put(
            b"kvdb-other/10.9.9.9:1",
            b"{\"Op\":0,\"Addr\":\"10.9.9.9:1\"}",
            0,
        )
        .await
        .unwrap();
    let round_robin = br#"{"loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": [{}], "timeout": "7s"}]}"#;
    client.put(b"kvdb", round_robin, 0).await.unwrap();
    // pick_first by default: only the service config can make calls rotate.
    let channel = Channel::builder("etcd:///kvdb")
        .resolver(EtcdResolverBuilder::new(etcd.client()))
        .wait_for_ready(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let greeter = GreeterClient::new(channel.clone());
    let timeout = |c: &Channel| {
        c.service_config().and_then(|sc| {
            sc.method_config("/helloworld.Greeter/SayHello")
                .and_then(|m| m.timeout)
        })
    };
    bounded(20, async {
        wait_until_answering(&greeter, &["server-1", "server-2", "server-3"]).await;
        assert_eq!(timeout(&channel), Some(Duration::from_secs(7)));

        // An invalid config is ignored; deleting the key returns to no config.
        let revision = current_revision(&client).await;
        client.put(b"kvdb", b"{not json", 0).await.unwrap();
        deleted_or_put(&client, "kvdb", revision).await;
        hello(&greeter).await.unwrap();
        assert_eq!(timeout(&channel), Some(Duration::from_secs(7)));
        client.delete(b"kvdb").await.unwrap();
        while timeout(&channel).is_some() {
            hello(&greeter).await.unwrap();
        }
    })
    .await;
}

/// Waits until etcd reports a change of `key` after `revision` (the resolver's watch sees it
/// in the same order).
async fn deleted_or_put(client: &EtcdClient, key: &str, revision: i64) {
    let mut watch = client
        .watch_prefix(key.as_bytes(), revision + 1)
        .await
        .unwrap();
    loop {
        let response = watch.next().await.unwrap().expect("watch ended");
        if response
            .events
            .iter()
            .any(|e| e.kv.as_ref().is_some_and(|kv| kv.key == key.as_bytes()))
        {
            return;
        }
    }
}
