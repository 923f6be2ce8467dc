//! The route guide server: `routeguide-server [ADDR]` (default 127.0.0.1:10000).

use volley::Server;
use volley_examples::route_guide::RouteGuideService;
use volley_examples::routeguide::RouteGuideServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10000".to_owned())
        .parse()?;
    println!("RouteGuide listening on {addr}");
    Server::builder()
        .add_service(RouteGuideServer::new(RouteGuideService::default()))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
