//! The benchmark's own clients, on a current-thread runtime:
//! - `bench-client check --port P`: a real gRPC call proves the server answers correctly;
//! - `bench-client stream --impl volley|volley-reuse|tonic --mode bidi|server --port P --seconds S`;
//! - `bench-client unary --impl volley|tonic --port P --seconds S --concurrency C`.
//!
//! Results are printed as `key=value` words: `messages`, `calls`, `seconds`, `cpu_seconds`.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let command = args.get(1).cloned().unwrap_or_default();
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(50051);
    let impl_ = arg("--impl").unwrap_or_else(|| "volley".into());
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let concurrency: usize = arg("--concurrency")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let duration = Duration::from_secs_f64(seconds);
    let result = runtime.block_on(async {
        let cpu0 = volley_bench::process_cpu_seconds();
        let t0 = Instant::now();
        let out = match command.as_str() {
            "check" => volley_bench::check(port).await.map(|()| "ok".to_owned()),
            "stream" => {
                let bidi = arg("--mode").as_deref() != Some("server");
                volley_bench::stream_rate(&impl_, port, bidi, duration)
                    .await
                    .map(|n| format!("messages={n}"))
            }
            "unary" => volley_bench::unary_load(&impl_, port, concurrency, duration)
                .await
                .map(|n| format!("calls={n}")),
            other => Err(format!("unknown command {other:?}")),
        };
        out.map(|o| {
            format!(
                "{o} seconds={:.3} cpu_seconds={:.3}",
                t0.elapsed().as_secs_f64(),
                volley_bench::process_cpu_seconds() - cpu0
            )
        })
    });
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("bench-client {command}: {e}");
            std::process::exit(1);
        }
    }
}
