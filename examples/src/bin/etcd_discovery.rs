//! Runs the etcd discovery example: `cargo run -p volley-examples --bin etcd_discovery`.
//! Uses the etcd cluster in `VOLLEY_ETCD_ENDPOINTS` (comma-separated) when set, otherwise
//! starts a throwaway etcd (Debian's `etcd-server`) on a free loopback port.

use volley_examples::etcd_discovery::{TempEtcd, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut temp = None;
    let endpoints: Vec<String> = match std::env::var(volley_etcd::ENDPOINTS_ENV) {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(str::to_owned).collect(),
        _ => {
            let etcd = TempEtcd::start().await?;
            println!("started a throwaway etcd on {}", etcd.endpoint);
            let endpoint = etcd.endpoint.clone();
            temp = Some(etcd);
            vec![endpoint]
        }
    };
    run(&mut std::io::stdout(), &endpoints).await?;
    drop(temp);
    Ok(())
}
