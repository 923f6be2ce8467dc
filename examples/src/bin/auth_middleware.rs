//! Bearer tokens fetched, refreshed and checked by asynchronous middleware:
//! `cargo run -p volley-examples --bin auth_middleware`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plan = volley_examples::auth_middleware::Plan::default();
    let summary = volley_examples::auth_middleware::run(&mut std::io::stdout(), plan).await?;
    println!("{summary:?}");
    Ok(())
}
