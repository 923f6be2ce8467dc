//! Server connection management (gRFC A9) and client keepalive (gRFC A8), over real loopback
//! sockets: connection age with jitter and grace, idleness, keepalive on both sides, ping
//! enforcement, and clients drifting onto new servers behind an L4 load balancer.

use std::time::Duration;

use tokio::time::Instant;
use volley::{Channel, Code, ConnectivityState, Request};
use volley_integration_tests::echo::{EchoClient, EchoRequest};
use volley_integration_tests::{L4Proxy, TestServer, bounded};

fn request(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..Default::default()
    }
}

/// Calls in a loop for `duration`, returning when each call was made (seconds from the
/// start) and the client address the server saw, i.e. which connection carried it.
async fn calls_in_a_loop(client: &EchoClient, duration: Duration) -> Vec<(f64, String)> {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < duration {
        let reply = client
            .unary(request("loop"))
            .await
            .expect("no call may fail while connections are replaced");
        seen.push((start.elapsed().as_secs_f64(), reply.into_inner().peer));
    }
    seen
}

/// How long each connection lived, from its first call to the next connection's first call
/// (the first and last connections are cut by the loop and left out).
fn connection_ages(seen: &[(f64, String)]) -> Vec<f64> {
    let mut starts = Vec::new();
    for (i, (t, peer)) in seen.iter().enumerate() {
        if i == 0 || seen[i - 1].1 != *peer {
            starts.push(*t);
        }
    }
    starts.windows(2).skip(1).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_replaces_connections_with_jitter_and_no_failed_call() {
    let server = TestServer::start_with(|b| b.max_connection_age(Duration::from_secs(1))).await;
    // Three channels at once give more connections (ages) in the same time.
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let client = server.client();
        loops.spawn(async move { calls_in_a_loop(&client, Duration::from_millis(6500)).await });
    }
    let mut ages = Vec::new();
    let mut calls = 0;
    bounded(20, async {
        while let Some(seen) = loops.join_next().await {
            let seen = seen.unwrap();
            calls += seen.len();
            ages.extend(connection_ages(&seen));
        }
    })
    .await;
    ages.sort_by(f64::total_cmp);
    println!("{calls} calls; connection ages: {ages:.3?}");
    assert!(ages.len() >= 9, "too few replaced connections: {ages:?}");
    // Ages are 1 s +/-10%; a reconnection adds a millisecond or two.
    for age in &ages {
        assert!(
            (0.88..=1.15).contains(age),
            "age {age} outside the jitter band"
        );
    }
    // Randomised, not all alike: they spread over the band.
    let spread = ages[ages.len() - 1] - ages[0];
    assert!(spread >= 0.05, "ages hardly spread: {ages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_within_the_grace_finish_and_later_ones_end_unavailable() {
    let server = TestServer::start_with(|b| {
        b.max_connection_age(Duration::from_secs(1))
            .max_connection_age_grace(Duration::from_secs(2))
    })
    .await;
    let client = server.client();
    client.unary(request("warm up")).await.unwrap();
    let start = Instant::now();
    // Each handler sleeps, then replies: the stream lasts that long.
    let stream = |sleep_ms| {
        let client = client.clone();
        async move {
            let req = EchoRequest {
                count: 3,
                sleep_ms,
                ..request("long")
            };
            let result = async {
                let mut replies = client.server_stream(req).await?.into_inner();
                let mut n = 0;
                while replies.message().await?.is_some() {
                    n += 1;
                }
                Ok::<_, volley::Status>(n)
            }
            .await;
            (result, start.elapsed().as_secs_f64())
        }
    };
    let (within, beyond) = bounded(10, async { tokio::join!(stream(2000), stream(6000)) }).await;
    // 2 s: longer than the age (1 s +/-10%), shorter than age + grace.
    assert_eq!(within.0.unwrap(), 3, "a stream within the grace completes");
    // 6 s: cut when the grace runs out, about 3 s in.
    let status = beyond.0.expect_err("a stream beyond age + grace is ended");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!((2.7..4.0).contains(&beyond.1), "ended after {} s", beyond.1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_the_next_call_reconnects() {
    let server =
        TestServer::start_with(|b| b.max_connection_idle(Duration::from_millis(300))).await;
    let channel = Channel::new(&server.target()).unwrap();
    let client = EchoClient::new(channel.clone());
    let first = client
        .unary(request("one"))
        .await
        .unwrap()
        .into_inner()
        .peer;
    let idle_since = Instant::now();
    assert_eq!(channel.state(false), ConnectivityState::Ready);
    // The server's GOAWAY sends the channel back to IDLE.
    bounded(5, channel.wait_for_state_change(ConnectivityState::Ready)).await;
    let closed_after = idle_since.elapsed();
    assert_eq!(channel.state(false), ConnectivityState::Idle);
    assert!(
        closed_after >= Duration::from_millis(290),
        "closed after {closed_after:?}"
    );
    let second = client
        .unary(request("two"))
        .await
        .unwrap()
        .into_inner()
        .peer;
    assert_ne!(first, second, "the next call uses a new connection");
}

#[tokio::test]
async fn a_connection_in_use_is_not_idle() {
    let server =
        TestServer::start_with(|b| b.max_connection_idle(Duration::from_millis(200))).await;
    let client = server.client();
    let sleeping = EchoRequest {
        sleep_ms: 600,
        ..request("slow")
    };
    let first = client.unary(sleeping).await.unwrap().into_inner().peer;
    // The 600 ms call kept the connection busy beyond the idle limit: same connection now.
    let second = client
        .unary(request("next"))
        .await
        .unwrap()
        .into_inner()
        .peer;
    assert_eq!(first, second);
}

#[tokio::test]
async fn the_server_closes_a_connection_whose_client_stopped_answering_pings() {
    let mut server = TestServer::start_with(|b| {
        b.keepalive_time(Duration::from_millis(300))
            .keepalive_timeout(Duration::from_millis(300))
    })
    .await;
    let proxy = L4Proxy::start(&[server.addr]).await;
    let client = EchoClient::new(Channel::new(&format!("http://{}", proxy.addr)).unwrap());
    let call = tokio::spawn(async move {
        let req = EchoRequest {
            sleep_ms: 10_000,
            ..request("hanging")
        };
        client.unary(req).await
    });
    assert_eq!(
        server.next_event().await,
        volley_integration_tests::Event::Started("hanging".into())
    );
    // Answered pings keep the quiet connection alive well past keepalive time + timeout.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), server.events.recv()).await;
    assert!(
        quiet.is_err(),
        "the connection was closed while answering pings"
    );
    proxy.freeze(true);
    let frozen_at = Instant::now();
    let event = bounded(5, server.events.recv()).await;
    let detected = frozen_at.elapsed();
    assert_eq!(
        event,
        Some(volley_integration_tests::Event::Dropped("hanging".into()))
    );
    // Within keepalive time + timeout (0.6 s), plus scheduling.
    assert!(
        detected <= Duration::from_millis(900),
        "detected after {detected:?}"
    );
    call.abort();
}

#[tokio::test]
async fn the_client_detects_a_server_that_stopped_answering_pings() {
    let server = TestServer::start_with(|b| b.min_ping_interval(Duration::from_millis(100))).await;
    let proxy = L4Proxy::start(&[server.addr]).await;
    let channel = Channel::builder(&format!("http://{}", proxy.addr))
        .keepalive_time_floor(Duration::from_millis(100))
        .keepalive_time(Duration::from_millis(300))
        .keepalive_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let client = EchoClient::new(channel.clone());
    let call = tokio::spawn(async move {
        let req = EchoRequest {
            sleep_ms: 10_000,
            ..request("hanging")
        };
        let result = client.unary(req).await;
        (result, Instant::now())
    });
    bounded(5, channel.connect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!call.is_finished(), "answered pings keep the call going");
    assert_eq!(channel.state(false), ConnectivityState::Ready);
    proxy.freeze(true);
    let frozen_at = Instant::now();
    let (result, ended) = bounded(5, call).await.unwrap();
    let detected = ended - frozen_at;
    let status = result.expect_err("the call dies with its connection");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        detected <= Duration::from_millis(900),
        "detected after {detected:?}"
    );
    // The subchannel went to TRANSIENT_FAILURE (and is trying again).
    let mut changes = channel.state_changes();
    let state = channel.state(false);
    if state != ConnectivityState::TransientFailure {
        loop {
            match bounded(5, changes.next()).await {
                Some(ConnectivityState::TransientFailure) => break,
                Some(_) => continue,
                None => panic!("channel gone"),
            }
        }
    }
}

#[tokio::test]
async fn a_raw_client_pinging_every_10ms_gets_goaway_too_many_pings() {
    let server = TestServer::start().await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (_send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut pinger = connection.ping_pong().unwrap();
    let driver = tokio::spawn(connection);
    let started = Instant::now();
    let mut pings = 0;
    let error = bounded(5, async {
        loop {
            match pinger.ping(h2::Ping::opaque()).await {
                Ok(_) => pings += 1,
                Err(e) => break e,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let ended = bounded(5, driver).await.unwrap();
    let error = ended.err().unwrap_or(error);
    println!(
        "after {pings} answered pings, {:?}: {error}",
        started.elapsed()
    );
    assert!(error.is_go_away() && error.is_remote(), "{error:?}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
    assert!(error.to_string().contains("too_many_pings"), "{error}");
    // Default policy, no calls: the first ping is free, the next three are strikes.
    assert!(pings <= 4, "{pings} pings answered");
}

#[tokio::test]
async fn a_client_told_too_many_pings_doubles_its_keepalive_time() {
    // Pings 500 ms apart are fine; the client starts at 100 ms. Each connection lives until
    // its fourth ping (the first is free, three strikes): 0.4 s, then 0.8 s at 200 ms, then
    // 1.6 s at 400 ms; at 800 ms the client is within the policy and the connection stays.
    let server = TestServer::start_with(|b| {
        b.min_ping_interval(Duration::from_millis(500))
            .permit_keepalive_without_calls(true)
    })
    .await;
    let channel = Channel::builder(&server.target())
        .keepalive_time_floor(Duration::from_millis(100))
        .keepalive_time(Duration::from_millis(100))
        .keepalive_without_calls(true)
        .build()
        .unwrap();
    let mut lifetimes = Vec::new();
    bounded(15, async {
        for _ in 0..3 {
            channel.connect().await.unwrap();
            let up = Instant::now();
            // No calls: only the server's GOAWAY ends the connection (the channel then IDLE).
            channel
                .wait_for_state_change(ConnectivityState::Ready)
                .await;
            lifetimes.push(up.elapsed().as_secs_f64());
        }
    })
    .await;
    println!("connection lifetimes: {lifetimes:.3?}");
    for (lifetime, expected) in lifetimes.iter().zip([0.4, 0.8, 1.6]) {
        assert!(
            (expected * 0.9..expected * 1.4).contains(lifetime),
            "lived {lifetime} s, expected about {expected} s: {lifetimes:?}"
        );
    }
    channel.connect().await.unwrap();
    let kept = tokio::time::timeout(
        Duration::from_millis(3000),
        channel.wait_for_state_change(ConnectivityState::Ready),
    )
    .await;
    assert!(kept.is_err(), "pinging every 800 ms is within the policy");
}

/// One client, its target an L4 proxy; the proxy starts with one backend and gets two more
/// after 1 s. Returns each backend's share of the calls in the last 6 s of the 10 s after.
async fn rebalancing(max_age: Option<Duration>) -> Vec<f64> {
    let configure = |b: volley::server::ServerBuilder| match max_age {
        Some(age) => b.max_connection_age(age),
        None => b,
    };
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(TestServer::start_with(configure).await);
    }
    let proxy = L4Proxy::start(&[servers[0].addr]).await;
    let client = EchoClient::new(Channel::new(&format!("http://{}", proxy.addr)).unwrap());
    let looping = tokio::spawn(async move {
        calls_in_a_loop(&client, Duration::from_secs(11))
            .await
            .len()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.add_backend(servers[1].addr);
    proxy.add_backend(servers[2].addr);
    tokio::time::sleep(Duration::from_secs(4)).await;
    for s in &mut servers {
        s.take_started();
    }
    let calls = bounded(20, looping).await.unwrap();
    let counts: Vec<usize> = servers.iter_mut().map(|s| s.take_started()).collect();
    let total: usize = counts.iter().sum();
    println!("{calls} calls, in the last 6 s per backend: {counts:?}");
    counts.iter().map(|&n| n as f64 / total as f64).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_connection_age_a_client_drifts_onto_new_servers() {
    let shares = rebalancing(Some(Duration::from_secs(2))).await;
    for share in &shares {
        assert!(*share >= 0.2, "shares {shares:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_max_connection_age_a_client_stays_on_its_first_server() {
    let shares = rebalancing(None).await;
    assert_eq!(shares, [1.0, 0.0, 0.0]);
}

#[tokio::test]
async fn graceful_shutdown_still_lets_calls_finish_with_age_configured() {
    // Age and grace configured but not reached: the shutdown drains as usual (no bound).
    let mut server = TestServer::start_with(|b| {
        b.max_connection_age(Duration::from_secs(60))
            .max_connection_age_grace(Duration::from_secs(60))
    })
    .await;
    let client = server.client();
    let slow = EchoRequest {
        sleep_ms: 300,
        ..request("slow")
    };
    let call = tokio::spawn(async move { client.unary(Request::new(slow)).await });
    server.next_event().await;
    let done = server.shutdown();
    assert_eq!(
        bounded(5, call)
            .await
            .unwrap()
            .unwrap()
            .into_inner()
            .message,
        "slow"
    );
    bounded(5, done).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_shutdown_during_an_age_grace_keeps_the_grace_bound() {
    let mut server = TestServer::start_with(|b| {
        b.max_connection_age(Duration::from_millis(300))
            .max_connection_age_grace(Duration::from_millis(500))
    })
    .await;
    let channel = Channel::new(&server.target()).unwrap();
    let client = EchoClient::new(channel.clone());
    let start = Instant::now();
    let slow = EchoRequest {
        sleep_ms: 5_000,
        ..request("slow")
    };
    let call = tokio::spawn(async move { client.unary(slow).await });
    server.next_event().await;
    // Shut down once the age has passed (the GOAWAY sends the channel to IDLE; the
    // connection drains under its grace); the server's own drain has no bound, but the grace
    // still ends the call at age + grace.
    bounded(5, channel.wait_for_state_change(ConnectivityState::Ready)).await;
    let done = server.shutdown();
    let status = bounded(5, call)
        .await
        .unwrap()
        .expect_err("cut by the grace");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let ended = start.elapsed();
    assert!(ended < Duration::from_millis(1200), "ended after {ended:?}");
    bounded(5, done).await.unwrap().unwrap();
}
