//! Client-side load balancing: three greeter servers, one channel with `round_robin` that
//! spreads calls over them, and what happens when one of them shuts down.

use std::io::Write;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volley::{Channel, Request, Server};

use crate::greeter::MyGreeter;
use crate::helloworld::{GreeterClient, GreeterServer, HelloRequest};

struct Backend {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start_backend(name: &str) -> std::io::Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let greeter = MyGreeter {
        who: name.to_owned(),
    };
    let task = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Ok(Backend { addr, stop, task })
}

/// Starts three servers, calls them through one `round_robin` channel, shuts one down
/// gracefully and calls again; writes what happens to `out`.
pub async fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let mut backends = Vec::new();
    for name in ["server-1", "server-2", "server-3"] {
        let backend = start_backend(name).await?;
        writeln!(out, "{name} listening on {}", backend.addr)?;
        backends.push(backend);
    }
    // An `ipv4:` target lists the addresses; a `dns:///` name with several records, or a
    // resolver of your own (see `volley::resolver`), would work the same way.
    let addresses: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let target = format!("ipv4:{}", addresses.join(","));
    let channel = Channel::builder(&target)
        .load_balancing_policy("round_robin")
        .timeout(Duration::from_secs(10))
        .build()?;
    channel.connect().await?;
    let greeter = GreeterClient::new(channel);

    // Wait for ready: right after `connect` only some of the three connections may be up,
    // and a server going away must not fail a call.
    let hello = |i: usize| {
        Request::new(HelloRequest {
            name: format!("call {i}"),
        })
        .with_wait_for_ready(true)
    };
    writeln!(out, "round_robin over {target}:")?;
    for i in 1..=6 {
        let reply = greeter.say_hello(hello(i)).await?;
        writeln!(out, "  {}", reply.into_inner().message)?;
    }

    let second = backends.remove(1);
    let _ = second.stop.send(());
    second.task.await??;
    writeln!(out, "server-2 shut down (GOAWAY); the channel moves on:")?;
    for i in 7..=12 {
        let reply = greeter.say_hello(hello(i)).await?;
        writeln!(out, "  {}", reply.into_inner().message)?;
    }

    for backend in backends {
        let _ = backend.stop.send(());
        backend.task.await??;
    }
    Ok(())
}
