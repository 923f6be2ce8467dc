//! The route guide example, all four RPC kinds, against its server over loopback.

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
