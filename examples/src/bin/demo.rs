//! The demo: starts the helloworld and route guide servers on a free loopback port, runs
//! clients against them, prints the replies, and shuts the server down gracefully; then
//! balances calls over three servers with `round_robin` while one of them shuts down.

use std::time::Duration;

use tokio::net::TcpListener;
use volley::{Channel, Code, Request, Server};
use volley_examples::greeter::MyGreeter;
use volley_examples::helloworld::{GreeterClient, GreeterServer, HelloRequest};
use volley_examples::route_guide::RouteGuideService;
use volley_examples::routeguide::RouteGuideServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(MyGreeter::default()))
            .add_service(RouteGuideServer::new(RouteGuideService::default()))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    println!("server listening on {addr}");

    let channel = Channel::builder(&format!("http://{addr}"))
        .timeout(Duration::from_secs(10))
        .build()?;
    let greeter = GreeterClient::new(channel.clone());
    for name in ["world", "Volley", "gRPC"] {
        let reply = greeter
            .say_hello(HelloRequest { name: name.into() })
            .await?;
        println!("SayHello({name:?}) -> {:?}", reply.into_inner().message);
    }
    match greeter
        .say_hello(Request::new(HelloRequest::default()))
        .await
    {
        Err(status) if status.code() == Code::InvalidArgument => {
            println!("SayHello(\"\") -> {status}");
        }
        other => return Err(format!("expected INVALID_ARGUMENT, got {other:?}").into()),
    }

    volley_examples::route_guide_client::run(channel, &mut std::io::stdout()).await?;

    let _ = stop.send(());
    server.await??;
    println!("server shut down");

    println!();
    volley_examples::load_balancing::run(&mut std::io::stdout()).await?;
    Ok(())
}
