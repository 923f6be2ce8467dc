//! The benchmark's own clients, on a current-thread runtime:
//! - `bench-client check --port P`: a real gRPC call proves the server answers correctly;
//! - `bench-client stream --impl volley|volley-reuse|volley-engine|tonic --mode bidi|server --port P --seconds S`;
//! - `bench-client unary --impl volley|volley-engine|tonic --port P --seconds S --concurrency C`;
//! - `bench-client tcp --port P --seconds S`: bytes read from a `bench-server --impl tcp`
//!   (plain TCP over loopback, the ceiling for the large-message scenario);
//! - `bench-client hedging --ports P1,P2,P3 --calls N --concurrency C [--hedging-delay-ms D]`:
//!   Volley's unary latency over a round_robin channel, hedged when D is given
//!   (`p50_ms`, `p90_ms`, `p99_ms`, `p999_ms`, `max_ms`).
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
            "hedging" => {
                let ports: Vec<u16> = arg("--ports")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|p| p.parse().ok())
                    .collect();
                let calls = arg("--calls").and_then(|s| s.parse().ok()).unwrap_or(4000);
                let delay = arg("--hedging-delay-ms")
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_millis);
                volley_bench::hedging_latencies(&ports, delay, calls, concurrency)
                    .await
                    .and_then(|l| match l.is_empty() {
                        true => Err("no calls were made".to_owned()),
                        false => Ok(l),
                    })
                    .map(|l| {
                        let at = |q: f64| {
                            let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
                            l[i].as_secs_f64() * 1e3
                        };
                        format!(
                            "calls={} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3}",
                            l.len(),
                            at(0.5),
                            at(0.9),
                            at(0.99),
                            at(0.999),
                            at(1.0)
                        )
                    })
            }
            "tcp" => volley_bench::tcp_rate(port, duration)
                .await
                .map(|n| format!("bytes={n}")),
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
