//! Runs the custom-balancer example: `cargo run -p volley-examples --bin custom_balancer`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_examples::custom_balancer::run(&mut std::io::stdout()).await
}
