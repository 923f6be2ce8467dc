//! The route guide client: `routeguide-client [TARGET]` (default `http://127.0.0.1:10000`).
//! Runs each of the four RPCs once.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:10000".to_owned());
    let channel = volley::Channel::new(&target)?;
    volley_examples::route_guide_client::run(channel, &mut std::io::stdout()).await?;
    Ok(())
}
