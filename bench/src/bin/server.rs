//! `bench-server --impl volley|volley-engine|tonic|h2 --port P`: one server on a
//! current-thread runtime (run.sh pins it to one core with taskset). Prints `ready` once
//! listening. `volley` is Volley on h2, `volley-engine` on its own HTTP/2 engine; `tcp` is no
//! HTTP at all: it writes zeros to each connection as fast as it can (the loopback ceiling).
//! `--impl volley-stalling --every N --stall-ms MS`: a Volley server that answers every N-th
//! call after MS milliseconds (the hedging scenario's slow backend).
//! With the `otel` feature: `--impl volley-metrics` (A66 metrics middleware) and
//! `--impl volley-traced` (spans recorded through tracing-opentelemetry).

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
            "volley-engine" => {
                volley_bench::serve_volley_on(listener, volley::Http2Engine::Volley).await
            }
            "tonic" => volley_bench::serve_tonic(listener).await,
            "h2" => volley_bench::serve_h2(listener).await,
            "tcp" => volley_bench::serve_tcp(listener).await,
            #[cfg(feature = "otel")]
            "volley-metrics" => volley_bench::serve_volley_observed(listener, true, false).await,
            #[cfg(feature = "otel")]
            "volley-traced" => volley_bench::serve_volley_observed(listener, false, true).await,
            "volley-stalling" => {
                let every = arg("--every").and_then(|v| v.parse().ok()).unwrap_or(20);
                let stall = arg("--stall-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(200);
                let stall = std::time::Duration::from_millis(stall);
                volley_bench::serve_volley_stalling(listener, every, stall).await
            }
            other => panic!("unknown server {other}"),
        }
    });
}
