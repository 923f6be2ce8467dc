//! `volley-interop-client --server_host=H --server_port=P --test_case=NAME [--use_tls=true
//! --use_test_ca=true --server_host_override=foo.test.google.fr]`: one of gRPC's interop
//! test cases, flag-compatible with the official clients. Exit status 0 when every assertion
//! held; 1 (with the failure on stderr) otherwise.

use std::time::Duration;

use volley_interop::cases::{self, Config};
use volley_interop::flags::Flags;

#[tokio::main]
async fn main() {
    let outcome = match config() {
        Ok((case, config)) => cases::run(&case, &config).await.map_err(|e| (case, e)),
        Err(e) => Err(("(flags)".to_owned(), e)),
    };
    match outcome {
        Ok(()) => {}
        Err((case, failure)) => {
            eprintln!("{case}: FAILED: {failure}");
            std::process::exit(1);
        }
    }
}

fn config() -> Result<(String, Config), String> {
    let flags = Flags::parse(std::env::args().skip(1))?;
    let case = flags
        .string("test_case")
        .ok_or("--test_case is required")?
        .to_owned();
    let timeout_s: u64 = flags.int("soak_overall_timeout_seconds", 0)?;
    let config = Config {
        host: flags
            .string("server_host")
            .unwrap_or("localhost")
            .to_owned(),
        port: flags.int("server_port", 0)?,
        use_tls: flags.bool("use_tls", false)?,
        use_test_ca: flags.bool("use_test_ca", false)?,
        host_override: flags
            .string("server_host_override")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        soak_iterations: flags.int("soak_iterations", 10)?,
        soak_max_failures: flags.int("soak_max_failures", 0)?,
        soak_max_latency: Duration::from_millis(
            flags.int("soak_per_iteration_max_acceptable_latency_ms", 1000)?,
        ),
        soak_overall_timeout: (timeout_s > 0).then(|| Duration::from_secs(timeout_s)),
        soak_min_gap: Duration::from_millis(flags.int("soak_min_time_ms_between_rpcs", 0)?),
    };
    if config.port == 0 {
        return Err("--server_port is required".into());
    }
    Ok((case, config))
}
