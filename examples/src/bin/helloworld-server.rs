//! The helloworld server: `helloworld-server [ADDR]` (default 127.0.0.1:50051).
//! Stops gracefully on Ctrl-C.

use volley::Server;
use volley_examples::greeter::MyGreeter;
use volley_examples::helloworld::GreeterServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned())
        .parse()?;
    println!("Greeter listening on {addr}");
    Server::builder()
        .add_service(GreeterServer::new(MyGreeter::default()))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
