//! Starts the production-shaped server (greeter, health, reflection, rich errors) on a free
//! loopback port, runs its client against it, prints what the client saw, and shuts the
//! server down.

use volley_examples::production;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(production::serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = volley::Channel::new(&format!("http://{addr}"))?;
    let mut out = Vec::new();
    production::run(channel, &mut out).await?;
    print!("{}", String::from_utf8_lossy(&out));
    let _ = stop.send(());
    server.await??;
    Ok(())
}
