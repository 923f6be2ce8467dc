//! `weighted_round_robin` (gRFC A58) on real servers: weights from the backends' per-call
//! ORCA load reports (`ServerBuilder::call_metrics`), and static weights from address
//! attributes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use volley::orca::ServerMetricsRecorder;
use volley::resolver::{Address, EndpointMetadata, ManualResolver, ResolverUpdate, ServiceConfig};
use volley::{Channel, Request, Response, Status};
use volley_examples::helloworld::{
    Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest,
};
use volley_integration_tests::bounded;

/// A greeter that counts its calls.
struct Counted(Arc<AtomicUsize>);

impl Greeter for Counted {
    async fn say_hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(HelloReply::default()))
    }
}

struct Fleet {
    addresses: Vec<Address>,
    counters: Vec<Arc<AtomicUsize>>,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Fleet {
    /// One backend per entry; each reports the given CPU utilization and 100 qps when
    /// `Some`, nothing when `None`.
    async fn start(utilizations: &[Option<f64>]) -> Fleet {
        let mut fleet = Fleet {
            addresses: Vec::new(),
            counters: Vec::new(),
            _stops: Vec::new(),
        };
        for utilization in utilizations {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            fleet
                .addresses
                .push(Address::tcp(listener.local_addr().unwrap()));
            let count = Arc::new(AtomicUsize::new(0));
            fleet.counters.push(count.clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            fleet._stops.push(stop);
            let mut builder = volley::Server::builder();
            if let Some(utilization) = utilization {
                let metrics = ServerMetricsRecorder::new();
                metrics.set_cpu_utilization(*utilization);
                metrics.set_qps(100.0);
                builder = builder.call_metrics(metrics);
            }
            tokio::spawn(
                builder
                    .add_service(GreeterServer::new(Counted(count)))
                    .serve_with_listener(listener, async {
                        let _ = stopped.await;
                    }),
            );
        }
        fleet
    }

    fn counts(&self) -> Vec<usize> {
        self.counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

fn client(scheme: &str, addresses: Vec<Address>, config: &str) -> GreeterClient {
    let manual = ManualResolver::new(scheme);
    manual.update(
        ResolverUpdate::new(addresses)
            .with_service_config(ServiceConfig::from_json(config).unwrap()),
    );
    GreeterClient::new(
        Channel::builder(&format!("{scheme}:///fleet"))
            .resolver(manual)
            .build()
            .unwrap(),
    )
}

/// `calls` calls from 4 concurrent callers.
async fn call(client: &GreeterClient, calls: usize) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..calls / 4 {
                    client
                        .say_hello(Request::new(HelloRequest::default()).with_wait_for_ready(true))
                        .await
                        .expect("every call succeeds");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Each count's share of the total, relative to the first's.
fn ratios(counts: &[usize]) -> Vec<f64> {
    counts
        .iter()
        .map(|c| *c as f64 / counts[0].max(1) as f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_load_reports_converge_calls_to_the_backends_weights() {
    // Same qps, CPU 0.2 / 0.4 / 0.8: weights 500 / 250 / 125, calls 4:2:1.
    let fleet = Fleet::start(&[Some(0.2), Some(0.4), Some(0.8)]).await;
    let client = client(
        "wrr-orca",
        fleet.addresses.clone(),
        r#"{"loadBalancingConfig": [{"weighted_round_robin":
            {"blackoutPeriod": "0s", "weightUpdatePeriod": "0.1s"}}]}"#,
    );
    bounded(60, async {
        // Until the reports reach the weights, calls rotate evenly; then they follow the
        // weights. Windows of 700 calls until one splits 4:2:1 (within 15%).
        let mut windows = Vec::new();
        loop {
            let before = fleet.counts();
            call(&client, 700).await;
            let window: Vec<usize> = fleet
                .counts()
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .collect();
            windows.push(window.clone());
            let r = ratios(&window);
            let converged = (r[1] - 0.5).abs() < 0.075 && (r[2] - 0.25).abs() < 0.0375;
            if converged {
                eprintln!(
                    "windows (backends at CPU 0.2, 0.4, 0.8): {windows:?}, last ratios {r:?}"
                );
                break;
            }
            assert!(windows.len() < 20, "no convergence: {windows:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_weights_from_endpoint_metadata_split_calls_one_two_three() {
    let fleet = Fleet::start(&[None, None, None]).await;
    // As the etcd resolver delivers them: each endpoint's metadata, with a weight.
    let addresses = fleet
        .addresses
        .iter()
        .zip([1, 2, 3])
        .map(|(a, w)| {
            a.clone()
                .with_attribute(EndpointMetadata(serde_json::json!({ "weight": w })))
        })
        .collect();
    let client = client(
        "wrr-static",
        addresses,
        r#"{"loadBalancingConfig": [{"weighted_round_robin": {}}]}"#,
    );
    bounded(60, async {
        // Connect all three first, so that the split does not depend on which connects first.
        call(&client, 4).await;
        let before = fleet.counts();
        call(&client, 600).await;
        let counts: Vec<usize> = fleet
            .counts()
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        eprintln!("static weights 1, 2, 3: {counts:?}");
        let r = ratios(&counts);
        assert!(
            (r[1] - 2.0).abs() < 0.2 && (r[2] - 3.0).abs() < 0.3,
            "{counts:?}"
        );
    })
    .await;
}
