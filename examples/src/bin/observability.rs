//! Spans and A66 metrics for a few calls, printed, and Prometheus text served and scraped:
//! `cargo run -p volley-examples --bin observability`.

// One thread: the tracing subscriber is this thread's default, and the server runs here too.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_examples::observability::run(&mut std::io::stdout(), 4).await?;
    Ok(())
}
