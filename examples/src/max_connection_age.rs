//! Rebalancing behind a connection-level (L4) load balancer with `max_connection_age`.
//!
//! A client with a single target (the balancer) keeps one HTTP/2 connection, so it stays on
//! the server it first reached, even after new servers join. Servers that age their
//! connections out (GOAWAY, in-flight calls finish) make the client reconnect now and then;
//! each new connection lands on whichever server the balancer picks, so the calls drift onto
//! the new servers. This program runs that scenario with a tiny round-robin TCP proxy in
//! place of the balancer and prints each server's share of the calls every second.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use volley::{Channel, Server};

use crate::greeter::MyGreeter;
use crate::helloworld::{GreeterClient, GreeterServer, HelloRequest};

/// What the scenario does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The servers' `max_connection_age` (none: connections live forever).
    pub max_age: Option<Duration>,
    /// When servers 2 and 3 join the balancer.
    pub add_after: Duration,
    /// How long the client calls.
    pub run_for: Duration,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            max_age: Some(Duration::from_secs(2)),
            add_after: Duration::from_secs(2),
            run_for: Duration::from_secs(12),
        }
    }
}

struct Backend {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_backend(name: &str, max_age: Option<Duration>) -> std::io::Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(age) = max_age {
        // Calls still running a minute after the GOAWAY are cut; these take microseconds.
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(Duration::from_secs(60));
    }
    let greeter = MyGreeter {
        who: name.to_owned(),
    };
    let task = tokio::spawn(
        builder
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Ok(Backend { addr, stop, task })
}

/// A round-robin TCP proxy: each new connection goes to the next backend of the list.
struct L4Balancer {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl L4Balancer {
    async fn start(first: SocketAddr) -> std::io::Result<L4Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(Mutex::new(vec![first]));
        let list = backends.clone();
        let task = tokio::spawn(async move {
            let mut pipes = JoinSet::new();
            let mut next = 0;
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let backend = {
                            let list = list.lock().unwrap_or_else(PoisonError::into_inner);
                            list[next % list.len()]
                        };
                        next += 1;
                        pipes.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                    Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
                }
            }
        });
        Ok(L4Balancer {
            addr,
            backends,
            task,
        })
    }

    fn add(&self, backend: SocketAddr) {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(backend);
    }
}

impl Drop for L4Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How many clients call at once, each over its own channel (one connection each), as the
/// instances of a service behind the balancer would.
const CLIENTS: usize = 6;

/// Runs the scenario, printing to `out` each second's share of calls per server.
pub async fn run(out: &mut impl Write, plan: Plan) -> Result<(), Box<dyn std::error::Error>> {
    let names = ["server-1", "server-2", "server-3"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(start_backend(name, plan.max_age).await?);
    }
    let balancer = L4Balancer::start(backends[0].addr).await?;
    match plan.max_age {
        Some(age) => writeln!(out, "servers age connections out after {age:?} (+/-10%)")?,
        None => writeln!(out, "servers keep connections forever")?,
    }
    writeln!(
        out,
        "{CLIENTS} clients call {}, an L4 balancer with only server-1 behind it",
        balancer.addr
    )?;
    // Answers per server (and failures, last) since the last report.
    let counts = Arc::new(Mutex::new([0u64; 4]));
    let mut clients = JoinSet::new();
    let deadline = Instant::now() + plan.run_for;
    for _ in 0..CLIENTS {
        let channel = Channel::builder(&format!("http://{}", balancer.addr))
            .timeout(Duration::from_secs(10))
            .build()?;
        let greeter = GreeterClient::new(channel);
        let counts = counts.clone();
        clients.spawn(async move {
            while Instant::now() < deadline {
                let request = HelloRequest {
                    name: "volley".into(),
                };
                let slot = match greeter.say_hello(request).await {
                    Ok(reply) => {
                        let message = reply.into_inner().message;
                        names.iter().position(|n| message.ends_with(n)).unwrap_or(3)
                    }
                    Err(_) => 3,
                };
                counts.lock().unwrap_or_else(PoisonError::into_inner)[slot] += 1;
            }
        });
    }

    let start = Instant::now();
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut added = false;
    for second in 1..=plan.run_for.as_secs() {
        ticks.tick().await;
        let counts = std::mem::take(&mut *counts.lock().unwrap_or_else(PoisonError::into_inner));
        let total: u64 = counts[..3].iter().sum();
        let shares: Vec<String> = names
            .iter()
            .zip(counts)
            .map(|(n, c)| format!("{n} {:>3}%", c * 100 / total.max(1)))
            .collect();
        writeln!(
            out,
            "{second:>3}s  {}  ({total} calls, {} failed)",
            shares.join("  "),
            counts[3]
        )?;
        if !added && start.elapsed() >= plan.add_after {
            balancer.add(backends[1].addr);
            balancer.add(backends[2].addr);
            added = true;
            writeln!(out, "server-2 and server-3 join the balancer")?;
        }
    }
    while let Some(client) = clients.join_next().await {
        client?;
    }
    drop(balancer);
    for backend in backends {
        let _ = backend.stop.send(());
        backend.task.await??;
    }
    Ok(())
}
