//! The client channel over real loopback servers: round_robin and pick_first, backends that
//! die, restart, drain or are added and removed by a resolver, backoff and connectivity states.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use volley::resolver::{Address, ManualResolver, ResolverUpdate, ServiceConfig};
use volley::{BackoffConfig, Channel, Code, ConnectivityState, Request};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{Proxy, TestServer, bounded};

async fn start_servers(n: usize) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(TestServer::start().await);
    }
    servers
}

fn ipv4_target(addrs: &[std::net::SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    format!("ipv4:{}", list.join(","))
}

fn addrs(servers: &[TestServer]) -> Vec<std::net::SocketAddr> {
    servers.iter().map(|s| s.addr).collect()
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        base_delay: Duration::from_millis(100),
        multiplier: 1.6,
        jitter: 0.2,
        max_delay: Duration::from_secs(1),
    }
}

fn waiting(message: &str) -> Request<EchoRequest> {
    Request::new(EchoRequest {
        message: message.to_owned(),
        ..Default::default()
    })
    .with_wait_for_ready(true)
}

/// Calls until each of `servers` has answered once (every subchannel READY), then forgets
/// those calls.
async fn warm_up(client: &EchoClient, servers: &mut [&mut TestServer]) {
    let mut seen = vec![false; servers.len()];
    while seen.contains(&false) {
        client.unary(waiting("warm-up")).await.unwrap();
        for (i, s) in servers.iter_mut().enumerate() {
            if s.take_started() > 0 {
                seen[i] = true;
            }
        }
    }
}

/// A `round_robin` client over `servers` (with `backoff`), once every server has answered.
async fn round_robin_client(servers: &mut [TestServer], backoff: BackoffConfig) -> EchoClient {
    let channel = Channel::builder(&ipv4_target(&addrs(servers)))
        .load_balancing_policy("round_robin")
        .backoff(backoff)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(
        10,
        warm_up(&client, &mut servers.iter_mut().collect::<Vec<_>>()),
    )
    .await;
    client
}

#[tokio::test]
async fn round_robin_splits_sequential_calls_exactly() {
    let mut servers = start_servers(3).await;
    let client = round_robin_client(&mut servers, BackoffConfig::default()).await;
    bounded(10, async {
        for _ in 0..300 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
    })
    .await;
    let counts: Vec<usize> = servers.iter_mut().map(|s| s.take_started()).collect();
    assert_eq!(counts, [100, 100, 100]);
}

#[tokio::test]
async fn a_service_config_from_the_resolver_chooses_round_robin() {
    let mut servers = start_servers(2).await;
    let manual = ManualResolver::new("test-sc");
    manual.update(
        ResolverUpdate::new(addrs(&servers).into_iter().map(Address::tcp).collect())
            .with_service_config(
                ServiceConfig::from_json(r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#)
                    .unwrap(),
            ),
    );
    // The builder asks for pick_first; the service config overrides it.
    let channel = Channel::builder("test-sc:///backends")
        .resolver(manual)
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        warm_up(&client, &mut servers.iter_mut().collect::<Vec<_>>()).await;
        for _ in 0..10 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
    })
    .await;
    let counts: Vec<usize> = servers.iter_mut().map(|s| s.take_started()).collect();
    assert_eq!(counts, [5, 5]);
}

/// One call's outcome: when it started, relative to the event, and its failure.
type Outcome = (f64, Option<Code>);

/// 50 tasks call `client` in a loop for `before` + `after`; `event` happens in between.
/// Returns every outcome, with start times in seconds relative to the end of the event.
async fn under_load<F: std::future::Future<Output = ()>>(
    client: &EchoClient,
    wait_for_ready: bool,
    before: Duration,
    event: F,
    after: Duration,
) -> Vec<Outcome> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let event_at = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = Vec::new();
    for t in 0..50 {
        let client = client.clone();
        let outcomes = outcomes.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut raw = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let request = Request::new(EchoRequest {
                    message: format!("task {t}"),
                    ..Default::default()
                })
                .with_wait_for_ready(wait_for_ready)
                .with_timeout(Duration::from_secs(5));
                let result = client.unary(request).await;
                raw.push((started, result.err().map(|s| s.code())));
            }
            outcomes.lock().unwrap().extend(raw);
        }));
    }
    tokio::time::sleep(before).await;
    event.await;
    *event_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(after).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let at = event_at.lock().unwrap().expect("the event happened");
    let outcomes = outcomes.lock().unwrap();
    outcomes
        .iter()
        .map(|(started, code)| {
            let secs = if *started >= at {
                (*started - at).as_secs_f64()
            } else {
                -(at - *started).as_secs_f64()
            };
            (secs, *code)
        })
        .collect()
}

/// Three `round_robin` backends under load from 50 tasks; one (`victim`) is killed 300 ms in.
async fn kill_one_under_load(victim: usize, wait_for_ready: bool) -> Vec<Outcome> {
    let mut servers = start_servers(3).await;
    let client = round_robin_client(&mut servers, fast_backoff()).await;
    let victim = servers.remove(victim);
    bounded(
        20,
        under_load(
            &client,
            wait_for_ready,
            Duration::from_millis(300),
            victim.kill(),
            Duration::from_millis(700),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_fails_no_call_that_waits_for_ready() {
    let outcomes = kill_one_under_load(1, true).await;
    // A call that starts just after the kill can still be sent on the dead connection before
    // the client has read its end (a few milliseconds here); it fails like the calls in
    // flight. Every call started later than that must succeed.
    const DETECTION: f64 = 0.05;
    let after: Vec<&Outcome> = outcomes.iter().filter(|(t, _)| *t >= DETECTION).collect();
    let failed_after: Vec<&&Outcome> = after.iter().filter(|(_, c)| c.is_some()).collect();
    let failed_at_kill: Vec<&Outcome> = outcomes
        .iter()
        .filter(|(t, c)| *t < DETECTION && c.is_some())
        .collect();
    println!(
        "{} calls, {} started 50 ms or more after the kill; failed: {} of those, {} in flight \
         at the kill or racing its detection",
        outcomes.len(),
        after.len(),
        failed_after.len(),
        failed_at_kill.len()
    );
    assert!(after.len() > 100, "calls went on after the kill");
    assert!(
        failed_after.is_empty(),
        "calls started after the kill failed: {failed_after:?}"
    );
    // Calls the dead server may have received cannot be retried safely (it may have acted on
    // them); they end UNAVAILABLE, at most one per task.
    assert!(failed_at_kill.len() <= 50);
    assert!(
        failed_at_kill
            .iter()
            .all(|(_, c)| *c == Some(Code::Unavailable))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_fails_calls_only_with_unavailable_without_wait_for_ready() {
    let outcomes = kill_one_under_load(0, false).await;
    let failures: Vec<&Outcome> = outcomes.iter().filter(|(_, c)| c.is_some()).collect();
    println!("{} calls, {} failed", outcomes.len(), failures.len());
    assert!(outcomes.iter().filter(|(t, _)| *t > 0.0).count() > 100);
    assert!(
        failures.iter().all(|(_, c)| *c == Some(Code::Unavailable)),
        "{failures:?}"
    );
}

#[tokio::test]
async fn a_restarted_backend_gets_traffic_again_after_backoff() {
    let mut servers = start_servers(3).await;
    let backoff = BackoffConfig {
        base_delay: Duration::from_millis(100),
        multiplier: 2.0,
        jitter: 0.2,
        max_delay: Duration::from_secs(1),
    };
    let client = round_robin_client(&mut servers, backoff).await;
    let victim = servers.remove(2);
    let addr = victim.addr;
    victim.kill().await;

    // On the dead backend's port, a listener that accepts and closes at once: each
    // reconnection attempt is timed, and fails (no HTTP/2 SETTINGS come back).
    let listener = TcpListener::bind(addr).await.unwrap();
    let attempts = bounded(10, async {
        let mut attempts = Vec::new();
        while attempts.len() < 5 {
            let (socket, _) = listener.accept().await.unwrap();
            attempts.push(Instant::now());
            drop(socket);
        }
        attempts
    })
    .await;
    drop(listener);
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    println!("gaps between attempts: {gaps:?}");
    // Each gap is a backoff delay: 100 ms x 2^n (capped at 1 s), +/-20%. The first attempts
    // may have hit the port before the listener was bound, so the sequence is checked by its
    // growth: every gap at least 80 ms, each about twice the one before until the cap.
    for (i, g) in gaps.iter().enumerate() {
        assert!(*g >= 0.08 && *g <= 1.25, "gap {i} = {g}");
    }
    for w in gaps.windows(2) {
        if w[0] < 0.6 {
            let ratio = w[1] / w[0];
            assert!(
                (2.0 * 0.8 / 1.2 - 0.05..=2.0 * 1.2 / 0.8 + 0.05).contains(&ratio),
                "gaps {w:?} do not grow by the multiplier"
            );
        }
    }

    // The backend comes back on the same port: the channel reconnects and sends it calls.
    let mut restarted = TestServer::start_on(TcpListener::bind(addr).await.unwrap(), |b| b);
    bounded(10, async {
        while restarted.take_started() == 0 {
            client.unary(waiting("again?")).await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn pick_first_sticks_to_the_first_address_and_fails_over() {
    let mut servers = start_servers(2).await;
    let channel = Channel::builder(&ipv4_target(&addrs(&servers)))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let client = EchoClient::new(channel.clone());
    bounded(10, async {
        for _ in 0..20 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
    })
    .await;
    assert_eq!(servers[0].take_started(), 20);
    assert_eq!(servers[1].take_started(), 0);

    servers.remove(0).kill().await;
    // Once the channel has seen the connection end, no call fails.
    let state = bounded(5, channel.wait_for_state_change(ConnectivityState::Ready)).await;
    assert_ne!(state, ConnectivityState::Ready);
    bounded(10, async {
        for _ in 0..20 {
            client.unary(waiting("after")).await.unwrap();
        }
    })
    .await;
    assert_eq!(servers[0].take_started(), 20);
}

#[tokio::test]
async fn a_manual_resolver_adds_and_removes_backends() {
    let mut servers = start_servers(4).await;
    // The backend that will be removed sits behind a proxy, which shows when the channel
    // closes its connection.
    let mut proxy = Proxy::start(servers[0].addr).await;
    let manual = ManualResolver::new("test-manual");
    let list = |addrs: &[std::net::SocketAddr]| {
        ResolverUpdate::new(addrs.iter().copied().map(Address::tcp).collect())
    };
    let (a1, a2, a3) = (servers[1].addr, servers[2].addr, servers[3].addr);
    manual.update(list(&[proxy.addr, a1, a2]));
    let channel = Channel::builder("test-manual:///backends")
        .resolver(manual.clone())
        .load_balancing_policy("round_robin")
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(10, async {
        let mut three: Vec<&mut TestServer> = servers.iter_mut().take(3).collect();
        warm_up(&client, &mut three).await;
    })
    .await;
    assert_eq!(servers[3].take_started(), 0);

    // A fourth backend appears: it starts receiving calls, and the rotation covers all four.
    manual.update(list(&[proxy.addr, a1, a2, a3]));
    bounded(10, async {
        while servers[3].take_started() == 0 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
        for s in servers.iter_mut() {
            s.take_started();
        }
        for _ in 0..400 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
    })
    .await;
    let counts: Vec<usize> = servers.iter_mut().map(|s| s.take_started()).collect();
    assert_eq!(counts, [100, 100, 100, 100]);

    // The first is removed: its connection is closed and it gets no new calls.
    manual.update(list(&[a1, a2, a3]));
    bounded(10, proxy.closed.recv()).await.unwrap();
    bounded(10, async {
        for _ in 0..300 {
            client.unary(EchoRequest::default()).await.unwrap();
        }
    })
    .await;
    let counts: Vec<usize> = servers.iter_mut().map(|s| s.take_started()).collect();
    assert_eq!(counts, [0, 100, 100, 100]);
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_gets_no_new_calls_and_none_fails() {
    let mut servers = start_servers(2).await;
    let client = round_robin_client(&mut servers, fast_backoff()).await;
    let mut draining = servers.remove(0);
    let before_drain = Arc::new(Mutex::new(0usize));
    let counted = before_drain.clone();
    let drain = async {
        // Everything the server received up to now is forgotten; what it receives from here
        // on arrived after it began to drain.
        *counted.lock().unwrap() = draining.take_started();
        let done = draining.shutdown();
        done.await.unwrap().unwrap();
    };
    let outcomes = bounded(
        20,
        under_load(
            &client,
            true,
            Duration::from_millis(300),
            drain,
            Duration::from_millis(500),
        ),
    )
    .await;
    let failures: Vec<&Outcome> = outcomes.iter().filter(|(_, c)| c.is_some()).collect();
    let after_goaway = draining.take_started();
    println!(
        "{} calls, {} failed, {} reached the draining server after its GOAWAY",
        outcomes.len(),
        failures.len(),
        after_goaway
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(*before_drain.lock().unwrap() > 0);
    // Between the GOAWAY leaving the server and reaching the client, each of the 50 tasks can
    // have at most one call on the wire; after that every call goes to the other server.
    assert!(after_goaway <= 50, "{after_goaway} calls after GOAWAY");
    assert!(servers[0].take_started() > 100);
}

#[tokio::test]
async fn states_through_a_connect_failure_and_recovery() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let channel = Channel::builder(&format!("ipv4:{addr}"))
        .backoff(BackoffConfig {
            base_delay: Duration::from_millis(200),
            ..fast_backoff()
        })
        .build()
        .unwrap();
    assert_eq!(channel.state(false), ConnectivityState::Idle);
    let mut changes = channel.state_changes();
    assert_eq!(channel.state(true), ConnectivityState::Idle);
    let mut seen = vec![ConnectivityState::Idle];
    bounded(10, async {
        while seen.last() != Some(&ConnectivityState::TransientFailure) {
            seen.push(changes.next().await.unwrap());
        }
    })
    .await;
    // Without wait-for-ready, calls fail fast in TRANSIENT_FAILURE.
    let client = EchoClient::new(channel.clone());
    let status = bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    // With it, a call waits until its deadline.
    let status = bounded(
        5,
        client.unary(waiting("wfr").with_timeout(Duration::from_millis(100))),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");

    let _server = TestServer::start_on(TcpListener::bind(addr).await.unwrap(), |b| b);
    bounded(10, async {
        while seen.last() != Some(&ConnectivityState::Ready) {
            seen.push(changes.next().await.unwrap());
        }
    })
    .await;
    use ConnectivityState::*;
    assert_eq!(seen, [Idle, Connecting, TransientFailure, Ready]);
    bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_idle_channel_closes_its_connections_and_reconnects_on_the_next_call() {
    let server = TestServer::start().await;
    let mut proxy = Proxy::start(server.addr).await;
    let channel = Channel::builder(&format!("ipv4:{}", proxy.addr))
        .idle_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let client = EchoClient::new(channel.clone());
    bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    assert_eq!(channel.state(false), ConnectivityState::Ready);
    // An open stream keeps the channel out of IDLE, however long it lasts.
    let long = Request::new(EchoRequest {
        sleep_ms: 600,
        ..Default::default()
    });
    bounded(5, client.unary(long)).await.unwrap();
    assert_eq!(channel.state(false), ConnectivityState::Ready);
    bounded(5, proxy.closed.recv())
        .await
        .expect("the idle channel closed its connection");
    let state = bounded(5, channel.wait_for_state_change(ConnectivityState::Ready)).await;
    assert_eq!(state, ConnectivityState::Idle);
    bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    assert_eq!(proxy.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unix_socket_targets() {
    let dir = std::env::temp_dir().join(format!("volley-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (events, _events) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(volley_integration_tests::echo::EchoServer::new(
                volley_integration_tests::EchoService::new(events),
            ))
            .serve_with_unix_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    for target in [
        format!("unix:{}", path.display()),
        format!("unix://{}", path.display()),
    ] {
        let client = EchoClient::new(Channel::new(&target).unwrap());
        let reply = bounded(
            5,
            client.unary(EchoRequest {
                message: "over unix".into(),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        assert_eq!(reply.get_ref().message, "over unix", "{target}");
    }
    let _ = stop.send(());
    bounded(5, server).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unix_abstract_targets() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("volley-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (events, _events) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(volley_integration_tests::echo::EchoServer::new(
                volley_integration_tests::EchoService::new(events),
            ))
            .serve_with_unix_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let client = EchoClient::new(Channel::new(&format!("unix-abstract:{name}")).unwrap());
    bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap();
    let _ = stop.send(());
    bounded(5, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn dns_and_passthrough_targets() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    for target in [
        format!("dns:///localhost:{port}"),
        format!("localhost:{port}"),
        format!("dns:///127.0.0.1:{port}"),
        format!("passthrough:///localhost:{port}"),
        format!("passthrough:///127.0.0.1:{port}"),
    ] {
        let client = EchoClient::new(Channel::new(&target).unwrap());
        bounded(10, client.unary(EchoRequest::default()))
            .await
            .unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

#[tokio::test]
async fn a_dns_name_that_does_not_resolve_is_unavailable() {
    let client = EchoClient::new(Channel::new("dns:///no-such-host.invalid:50051").unwrap());
    let status = bounded(30, client.unary(EchoRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
}

/// A resolver written against the public API: fixed addresses, and a message for every
/// re-resolution request the channel makes.
struct Recording {
    addresses: Vec<Address>,
    requests: tokio::sync::mpsc::UnboundedSender<()>,
}

struct RecordingResolver {
    requests: tokio::sync::mpsc::UnboundedSender<()>,
}

impl volley::resolver::Resolver for RecordingResolver {
    fn resolve_now(&mut self) {
        let _ = self.requests.send(());
    }
}

impl volley::resolver::ResolverBuilder for Recording {
    fn scheme(&self) -> &str {
        "recording"
    }

    fn build(
        &self,
        _target: &volley::resolver::Target,
        sink: volley::resolver::UpdateSink,
    ) -> Result<Box<dyn volley::resolver::Resolver>, volley::Status> {
        sink.update(ResolverUpdate::new(self.addresses.clone()));
        Ok(Box::new(RecordingResolver {
            requests: self.requests.clone(),
        }))
    }
}

#[tokio::test]
async fn a_goaway_asks_the_resolver_to_resolve_again() {
    let mut servers = start_servers(2).await;
    let (requests, mut resolve_now) = tokio::sync::mpsc::unbounded_channel();
    let resolver = Recording {
        addresses: addrs(&servers).into_iter().map(Address::tcp).collect(),
        requests,
    };
    let channel = Channel::builder("recording:///anything")
        .resolver(resolver)
        .load_balancing_policy("round_robin")
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    bounded(
        10,
        warm_up(&client, &mut servers.iter_mut().collect::<Vec<_>>()),
    )
    .await;
    assert!(
        resolve_now.try_recv().is_err(),
        "no request while all is well"
    );
    // A graceful shutdown sends GOAWAY: the channel asks for fresh addresses.
    bounded(10, servers[0].shutdown()).await.unwrap().unwrap();
    bounded(5, resolve_now.recv()).await.unwrap();
    // Calls go on over the other server.
    bounded(5, client.unary(EchoRequest::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_the_channel_closes_its_connections() {
    let servers = start_servers(2).await;
    let mut proxies = Vec::new();
    for s in &servers {
        proxies.push(Proxy::start(s.addr).await);
    }
    let channel = Channel::builder(&ipv4_target(
        &proxies.iter().map(|p| p.addr).collect::<Vec<_>>(),
    ))
    .load_balancing_policy("round_robin")
    .build()
    .unwrap();
    let client = EchoClient::new(channel.clone());
    bounded(10, async {
        // Both connections up: calls reach both proxies.
        while proxies
            .iter()
            .any(|p| p.accepted.load(Ordering::SeqCst) == 0)
        {
            client.unary(waiting("up")).await.unwrap();
        }
    })
    .await;
    drop(client);
    drop(channel);
    // The control task shuts the subchannels down; each connection closes.
    for p in proxies.iter_mut() {
        bounded(10, p.closed.recv())
            .await
            .expect("the connection was closed");
    }
}
