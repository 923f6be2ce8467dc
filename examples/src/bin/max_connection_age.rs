//! Runs the rebalancing scenario: `cargo run -p volley-examples --bin max_connection_age`
//! (add `-- --no-max-age` to see the client stay on its first server).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut plan = volley_examples::max_connection_age::Plan::default();
    if std::env::args().any(|a| a == "--no-max-age") {
        plan.max_age = None;
    }
    volley_examples::max_connection_age::run(&mut std::io::stdout(), plan).await
}
