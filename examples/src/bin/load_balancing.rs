//! Runs the load-balancing example: `cargo run -p volley-examples --bin load_balancing`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    volley_examples::load_balancing::run(&mut std::io::stdout()).await
}
