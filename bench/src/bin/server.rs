//! `bench-server --impl volley|tonic|h2 --port P`: one server on a current-thread runtime
//! (run.sh pins it to one core with taskset). Prints `ready` once listening.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let impl_ = arg("--impl").unwrap_or_else(|| "volley".into());
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(50051);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        println!("ready");
        match impl_.as_str() {
            "volley" => volley_bench::serve_volley(listener).await,
            "tonic" => volley_bench::serve_tonic(listener).await,
            "h2" => volley_bench::serve_h2(listener).await,
            other => panic!("unknown server {other}"),
        }
    });
}
