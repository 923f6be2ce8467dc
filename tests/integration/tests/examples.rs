//! The examples run as tests: the route guide (all four RPC kinds) against its server over
//! loopback, load balancing, max connection age, and etcd discovery (which needs `etcd` on
//! `PATH`, so it is `#[ignore]`d outside `scripts/test.sh`).

use tokio::net::TcpListener;
use volley_examples::route_guide::RouteGuideService;
use volley_examples::routeguide::RouteGuideServer;
use volley_integration_tests::bounded;

#[tokio::test]
async fn route_guide_client_against_its_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(RouteGuideServer::new(RouteGuideService::default()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let channel = volley::Channel::new(&format!("http://{addr}")).unwrap();
    let mut out = Vec::new();
    bounded(
        30,
        volley_examples::route_guide_client::run(channel, &mut out),
    )
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("GetFeature -> \"Patriots Path, Mendham, NJ 07945, USA\""),
        "{out}"
    );
    assert!(out.contains("ListFeatures returned 6 features"), "{out}");
    assert!(out.contains("RecordRoute -> 3 points, 3 features"), "{out}");
    // Notes 3 and 4 land where notes 1 and 2 were: each is answered with the earlier one.
    assert_eq!(out.matches("RouteChat -> got").count(), 2, "{out}");
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn load_balancing_example_rotates_and_survives_a_shutdown() {
    let mut out = Vec::new();
    bounded(30, volley_examples::load_balancing::run(&mut out))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let (before, after) = out.split_once("server-2 shut down").expect("two phases");
    // Six calls rotate over the connected servers (the balancing tests check the split).
    assert_eq!(before.matches("Hello call").count(), 6, "{out}");
    // After server-2's GOAWAY, no call goes to it and none fails; the two others share the
    // calls. (Not necessarily 3 and 3: the channel's new picker may start its rotation
    // anew if it is published after the first of these calls. The balancing tests check
    // exact splits.)
    assert_eq!(after.matches("Hello call").count(), 6, "{out}");
    assert!(!after.contains("from server-2"), "{out}");
    assert!(after.contains("from server-1"), "{out}");
    assert!(after.contains("from server-3"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_example_spreads_calls_over_new_servers() {
    use volley_examples::max_connection_age::{Plan, run};
    let plan = Plan {
        max_age: Some(std::time::Duration::from_secs(1)),
        add_after: std::time::Duration::from_secs(1),
        run_for: std::time::Duration::from_secs(6),
    };
    let mut out = Vec::new();
    bounded(30, run(&mut out, plan)).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("calls,")).collect();
    assert!(lines.len() >= 5, "{out}");
    // Before the others join, only server-1 answers; by the end every server has had calls
    // over the last three seconds, and no call failed.
    assert!(lines[0].contains("server-1 100%"), "{out}");
    for name in ["server-1", "server-2", "server-3"] {
        let answered = lines[lines.len() - 3..]
            .iter()
            .any(|l| !l.contains(&format!("{name}   0%")));
        assert!(answered, "{name} got no calls late in the run:\n{out}");
    }
    assert!(lines.iter().all(|l| l.ends_with(" 0 failed)")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd (Debian's etcd-server): run by scripts/test.sh"]
async fn etcd_discovery_example_follows_servers_as_they_come_and_go() {
    use volley_examples::etcd_discovery::{TempEtcd, run};
    let etcd = bounded(30, TempEtcd::start()).await.unwrap();
    let mut out = Vec::new();
    bounded(60, run(&mut out, std::slice::from_ref(&etcd.endpoint)))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let rotations: Vec<&str> = out.lines().filter(|l| l.contains("answered by")).collect();
    assert_eq!(rotations.len(), 3, "{out}");
    let has = |line: &str, name: &str| line.contains(name);
    assert!(
        has(rotations[0], "server-1") && has(rotations[0], "server-2"),
        "{out}"
    );
    assert!(!has(rotations[0], "server-3"), "{out}");
    for name in ["server-1", "server-2", "server-3"] {
        assert_eq!(rotations[1].matches(name).count(), 2, "{out}");
    }
    assert!(!has(rotations[2], "server-1"), "{out}");
    assert!(out.ends_with("every server deregistered\n"), "{out}");
}

#[tokio::test]
async fn production_example_uses_health_reflection_and_rich_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(volley_examples::production::serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = volley::Channel::new(&format!("http://{addr}")).unwrap();
    let mut out = Vec::new();
    bounded(30, volley_examples::production::run(channel, &mut out))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("health of helloworld.Greeter: SERVING"),
        "{out}"
    );
    assert!(
        out.contains("grpc.health.v1.Health, grpc.reflection.v1.ServerReflection"),
        "{out}"
    );
    assert!(out.contains("reply: Hello production"), "{out}");
    assert!(
        out.contains("error: InvalidArgument name must not be empty; name: give a name to greet"),
        "{out}"
    );
    let _ = stop.send(());
    bounded(10, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn custom_balancer_example_prefers_its_zone_and_ejects_a_failing_backend() {
    let mut out = Vec::new();
    bounded(30, volley_examples::custom_balancer::run(&mut out))
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let (before, after) = out.split_once("a1 shut down").expect("two phases");
    // In zone a, the broken backend fails at most twice (maxFailures) before it is ejected;
    // every other call goes to a1, none to zone b.
    assert!(before.matches("is broken").count() <= 2, "{out}");
    assert_eq!(
        before.matches("from a1").count() + before.matches("is broken").count(),
        8,
        "{out}"
    );
    assert!(before.lines().last().unwrap().ends_with("from a1"), "{out}");
    // With a1 gone and a2 ejected, zone b takes every call.
    assert_eq!(after.matches("from b1").count(), 4, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_middleware_example_fetches_refreshes_and_recovers_from_revocation() {
    use volley_examples::auth_middleware::{Plan, run};
    let plan = Plan::default();
    let mut out = Vec::new();
    let summary = bounded(30, run(&mut out, plan)).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(summary.anonymous, volley::Code::Unauthenticated, "{out}");
    // Tokens live 500 ms over 1.2 s of calls: the first, at least one refresh before expiry,
    // and one after the revocation.
    assert!(summary.tokens_fetched >= 3, "{summary:?}\n{out}");
    // The revocation costs at most the one call that carried the revoked token.
    assert!(summary.unauthenticated <= 1, "{summary:?}\n{out}");
    assert_eq!(summary.ok + summary.unauthenticated, plan.calls, "{out}");
    let after: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("revoked"))
        .skip(2)
        .collect();
    assert!(
        after.iter().all(|l| l.contains("Hello")),
        "every call after the one with the revoked token succeeds:\n{out}"
    );
}
