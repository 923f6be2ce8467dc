//! The health service over a real loopback connection: every RPC (`Check`, `List`, `Watch`)
//! and the reporter's changes, including the shutdown that tells watchers and ends their
//! streams before the server drains.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::net::TcpListener;
use volley::{Channel, Code};
use volley_health::proto::{
    HealthCheckRequest, HealthCheckResponse, HealthClient, HealthListRequest,
};
use volley_health::{HealthReporter, MAX_LISTED_SERVICES, ServingStatus, health_service};

/// Bounds a step of a test.
async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("the step finished in time")
}

/// A server with only the health service; it shuts down (through the reporter) when
/// `stop` fires. Returns the reporter, a client and the server's task.
async fn start() -> (
    HealthReporter,
    HealthClient,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (reporter, service) = health_service();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = reporter.shutdown_on(async {
        let _ = stopped.await;
    });
    let server = tokio::spawn(
        volley::Server::builder()
            .add_service(service)
            .serve_with_listener(listener, signal),
    );
    let client = HealthClient::new(Channel::new(&format!("http://{addr}")).unwrap());
    (reporter, client, stop, server)
}

/// The next status a watch stream sends.
async fn next(stream: &mut volley::Streaming<HealthCheckResponse>) -> ServingStatus {
    let message = bounded(stream.message()).await.unwrap();
    message.expect("the stream goes on").status()
}

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn check_answers_the_current_status_and_not_found_for_unknown_services() {
    let (reporter, client, _stop, _server) = start().await;
    let reply = bounded(client.check(request(""))).await.unwrap();
    assert_eq!(reply.get_ref().status(), ServingStatus::Serving);
    let err = bounded(client.check(request("no.Such"))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    reporter.set_not_serving("a.B");
    let reply = bounded(client.check(request("a.B"))).await.unwrap();
    assert_eq!(reply.get_ref().status(), ServingStatus::NotServing);
    reporter.set_serving("a.B");
    let reply = bounded(client.check(request("a.B"))).await.unwrap();
    assert_eq!(reply.get_ref().status(), ServingStatus::Serving);
    reporter.clear("a.B");
    let err = bounded(client.check(request("a.B"))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn list_answers_every_service_up_to_its_limit() {
    let (reporter, client, _stop, _server) = start().await;
    reporter.set_serving("a.B");
    reporter.set_not_serving("c.D");
    let reply = bounded(client.list(HealthListRequest {})).await.unwrap();
    let statuses: Vec<(String, ServingStatus)> = reply
        .get_ref()
        .statuses
        .iter()
        .map(|(k, v)| (k.clone(), v.status()))
        .collect();
    let mut statuses = statuses;
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            (String::new(), ServingStatus::Serving),
            ("a.B".into(), ServingStatus::Serving),
            ("c.D".into(), ServingStatus::NotServing),
        ]
    );
    for i in 0..MAX_LISTED_SERVICES {
        reporter.set_serving(&format!("s{i}"));
    }
    let err = bounded(client.list(HealthListRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
}

#[tokio::test]
async fn watch_sends_the_status_at_once_then_each_change() {
    let (reporter, client, _stop, _server) = start().await;
    reporter.set_serving("a.B");
    let mut known = bounded(client.watch(request("a.B")))
        .await
        .unwrap()
        .into_inner();
    let mut unknown = bounded(client.watch(request("x.Y")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut known).await, ServingStatus::Serving);
    assert_eq!(next(&mut unknown).await, ServingStatus::ServiceUnknown);
    reporter.set_not_serving("a.B");
    assert_eq!(next(&mut known).await, ServingStatus::NotServing);
    // Setting the same status again is no change: the next message is the next change.
    reporter.set_not_serving("a.B");
    reporter.set_serving("a.B");
    assert_eq!(next(&mut known).await, ServingStatus::Serving);
    reporter.set_serving("x.Y");
    assert_eq!(next(&mut unknown).await, ServingStatus::Serving);
    reporter.clear("x.Y");
    assert_eq!(next(&mut unknown).await, ServingStatus::ServiceUnknown);
}

#[tokio::test]
async fn shutdown_tells_watchers_not_serving_ends_their_streams_and_lets_the_server_drain() {
    let (reporter, client, stop, server) = start().await;
    reporter.set_serving("a.B");
    let mut watch = bounded(client.watch(request("a.B")))
        .await
        .unwrap()
        .into_inner();
    let first = bounded(watch.message()).await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    stop.send(()).unwrap();
    let last = bounded(watch.message()).await.unwrap().unwrap();
    assert_eq!(last.status(), ServingStatus::NotServing);
    assert!(bounded(watch.message()).await.unwrap().is_none());
    // The watch stream did not hold the drain open: the server returns.
    bounded(server).await.unwrap().unwrap();
    // And changes after the shutdown are ignored.
    reporter.set_serving("a.B");
    assert_eq!(reporter.status("a.B"), Some(ServingStatus::NotServing));
    assert_eq!(reporter.status(""), Some(ServingStatus::NotServing));
}
