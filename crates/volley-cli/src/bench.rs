//! `volley bench`: load for any method, closed loop (`-c` calls in flight) or open loop at a
//! fixed rate (`--rps`, each call's latency counted from when it was due, so that a stalled
//! server shows in the latencies instead of slowing the load: no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use prost_reflect::MethodDescriptor;
use tokio::time::Instant;
use volley::{Channel, Code, Grpc, Request, Status};

use crate::Error;
use crate::lean::{LeanClient, frame_message};
use crate::raw::{Discard, Encoded, Raw};

/// How much load, and how it is reported.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Calls in flight at once (`-c`). Default: 50.
    pub concurrency: usize,
    /// Connections the calls share (`--connections`). Default: 1.
    pub connections: usize,
    /// Calls to make (`-n`), when no duration is given. Default: 200.
    pub total: Option<u64>,
    /// How long to run (`-z`); wins over `total`.
    pub duration: Option<Duration>,
    /// Calls per second, open loop (`--rps`). Default: none (closed loop).
    pub rps: Option<f64>,
    /// Calls made first and not counted (`--warmup`). Default: 0.
    pub warmup: u64,
    /// Load through the lean HTTP/2 engine ([`crate::lean`]) to this `host:port` instead of
    /// Volley's client. Default: none (Volley's client).
    pub lean: Option<String>,
    /// How long the lean engine may take to connect (`--connect-timeout`). Default: 10 s.
    pub connect_timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            concurrency: 50,
            connections: 1,
            total: Some(200),
            duration: None,
            rps: None,
            warmup: 0,
            lean: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Calls counted.
    pub count: u64,
    /// The run's wall time.
    pub total: Duration,
    /// Latencies in microseconds.
    pub latencies: Histogram<u64>,
    /// Calls by final status code name.
    pub status_codes: BTreeMap<String, u64>,
    /// Failed calls by `CODE: message`.
    pub errors: BTreeMap<String, u64>,
}

/// The percentiles the summary lists.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    /// Calls per second over the run.
    pub fn rps(&self) -> f64 {
        self.count as f64 / self.total.as_secs_f64().max(1e-9)
    }

    /// The summary as text, like ghz's.
    pub fn text(&self) -> String {
        let h = &self.latencies;
        let mut out = String::new();
        out.push_str("Summary:\n");
        out.push_str(&format!("  Count:        {}\n", self.count));
        out.push_str(&format!(
            "  Total:        {:.2} ms\n",
            self.total.as_secs_f64() * 1e3
        ));
        if self.count > 0 {
            out.push_str(&format!("  Slowest:      {:.2} ms\n", ms(h.max())));
            out.push_str(&format!("  Fastest:      {:.2} ms\n", ms(h.min())));
            out.push_str(&format!("  Average:      {:.2} ms\n", h.mean() / 1000.0));
        }
        out.push_str(&format!("  Requests/sec: {:.2}\n", self.rps()));
        if self.count > 0 {
            out.push_str("\nResponse time histogram:\n");
            let buckets = self.histogram();
            let most = buckets.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
            for (mark, n) in &buckets {
                let bar = "∎".repeat((n * 40 / most) as usize);
                out.push_str(&format!("  {mark:>10.3} [{n}]\t|{bar}\n"));
            }
            out.push_str("\nLatency distribution:\n");
            for p in PERCENTILES {
                out.push_str(&format!(
                    "  {p} % in {:.2} ms\n",
                    ms(h.value_at_percentile(p))
                ));
            }
        }
        out.push_str("\nStatus code distribution:\n");
        for (code, n) in &self.status_codes {
            out.push_str(&format!("  [{code}]   {n} responses\n"));
        }
        if !self.errors.is_empty() {
            out.push_str("\nError distribution:\n");
            for (error, n) in &self.errors {
                out.push_str(&format!("  [{n}]   {error}\n"));
            }
        }
        out
    }

    /// Ten linear buckets from the fastest to the slowest call: (upper mark in ms, calls).
    pub fn histogram(&self) -> Vec<(f64, u64)> {
        let h = &self.latencies;
        let (lo, hi) = (h.min(), h.max());
        let step = ((hi - lo) / 10).max(1);
        let mut buckets = Vec::new();
        let mut below = 0;
        for i in 1..=10u64 {
            let mark = if i == 10 { hi } else { lo + step * i };
            let upto = h.count_between(0, mark);
            buckets.push((ms(mark), upto - below));
            below = upto;
            if mark >= hi {
                break;
            }
        }
        buckets
    }

    /// The summary as JSON.
    pub fn json(&self) -> serde_json::Value {
        let h = &self.latencies;
        let nonempty = self.count > 0;
        serde_json::json!({
            "count": self.count,
            "total_ms": self.total.as_secs_f64() * 1e3,
            "rps": self.rps(),
            "fastest_ms": if nonempty { ms(h.min()) } else { 0.0 },
            "slowest_ms": if nonempty { ms(h.max()) } else { 0.0 },
            "average_ms": if nonempty { h.mean() / 1000.0 } else { 0.0 },
            "latency_distribution": PERCENTILES.iter().map(|p| serde_json::json!({
                "percentage": p,
                "latency_ms": ms(h.value_at_percentile(*p)),
            })).collect::<Vec<_>>(),
            "histogram": if nonempty { self.histogram() } else { Vec::new() }
                .iter()
                .map(|(mark, n)| serde_json::json!({"mark_ms": mark, "count": n}))
                .collect::<Vec<_>>(),
            "status_codes": self.status_codes,
            "errors": self.errors,
        })
    }

    /// The summary as CSV: one row per measure.
    pub fn csv(&self) -> String {
        let h = &self.latencies;
        let mut out = String::from("measure,value\n");
        out.push_str(&format!("count,{}\n", self.count));
        out.push_str(&format!("total_ms,{:.3}\n", self.total.as_secs_f64() * 1e3));
        out.push_str(&format!("rps,{:.2}\n", self.rps()));
        if self.count > 0 {
            out.push_str(&format!("fastest_ms,{:.3}\n", ms(h.min())));
            out.push_str(&format!("slowest_ms,{:.3}\n", ms(h.max())));
            out.push_str(&format!("average_ms,{:.3}\n", h.mean() / 1000.0));
            for p in PERCENTILES {
                out.push_str(&format!("p{p}_ms,{:.3}\n", ms(h.value_at_percentile(p))));
            }
        }
        for (code, n) in &self.status_codes {
            out.push_str(&format!("status_{code},{n}\n"));
        }
        out
    }
}

/// What makes the calls: Volley's client, or the lean engine.
#[derive(Clone)]
enum Caller {
    Client(Grpc),
    Lean(LeanClient),
}

/// The requests, as each caller sends them.
struct Requests {
    encoded: Vec<Encoded>,
    /// gRPC-framed, one after the other.
    framed: Bytes,
}

/// One call of any kind, its responses read to the end.
async fn one_call(
    caller: &Caller,
    streaming: (bool, bool),
    path: &'static str,
    requests: &Requests,
) -> Result<(), Status> {
    let grpc = match caller {
        Caller::Lean(lean) => return lean.call(&requests.framed).await,
        Caller::Client(grpc) => grpc,
    };
    let messages = &requests.encoded;
    let first = messages.first().cloned().unwrap_or_default();
    match streaming {
        (false, false) => grpc
            .unary::<Encoded, Discard>(Request::new(first), path)
            .await
            .map(drop),
        (false, true) => {
            let mut stream = grpc
                .server_streaming::<Encoded, Discard>(Request::new(first), path)
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        (true, false) => grpc
            .client_streaming::<_, Encoded, Discard>(
                Request::new(tokio_stream::iter(messages.to_vec())),
                path,
            )
            .await
            .map(drop),
        (true, true) => {
            let mut stream = grpc
                .streaming::<_, Encoded, Discard>(
                    Request::new(tokio_stream::iter(messages.to_vec())),
                    path,
                )
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
    }
}

/// Per-worker tallies, merged at the end.
struct Tally {
    latencies: Histogram<u64>,
    /// Calls by status code (indexed by the code's number).
    codes: [u64; 17],
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Result<Tally, Error> {
        Ok(Tally {
            latencies: Histogram::new(3).map_err(|e| Error::usage(format!("histogram: {e}")))?,
            codes: [0; 17],
            errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, latency: Duration, result: &Result<(), Status>) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // Saturates at the histogram's range instead of failing.
        self.latencies.saturating_record(micros);
        let code = match result {
            Ok(()) => Code::Ok,
            Err(status) => {
                *self
                    .errors
                    .entry(format!("{}: {}", status.code().name(), status.message()))
                    .or_default() += 1;
                status.code()
            }
        };
        if let Some(n) = self.codes.get_mut(code as usize) {
            *n += 1;
        }
    }
}

/// Runs the load: `messages` (one for unary and server-streaming methods) sent to `method`
/// over `options.connections` channels made by `connect`, with `progress` showing the calls
/// done.
pub async fn run(
    connect: impl Fn() -> Result<Channel, Error>,
    method: &MethodDescriptor,
    path: &'static str,
    messages: Vec<Raw>,
    options: &BenchOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Report, Error> {
    if options.concurrency == 0 || options.connections == 0 {
        return Err(Error::usage("-c and --connections must be at least 1"));
    }
    // (client streaming, server streaming)
    let streaming = (method.is_client_streaming(), method.is_server_streaming());
    let mut callers = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        callers.push(match &options.lean {
            Some(address) => Caller::Lean(
                LeanClient::connect(address, path, options.connect_timeout)
                    .await
                    .map_err(|status| Error::status(status, "bench"))?,
            ),
            None => Caller::Client(Grpc::new(connect()?)),
        });
    }
    // Unary and server-streaming calls send the first message alone.
    let messages = if streaming.0 {
        messages
    } else {
        messages.into_iter().take(1).collect()
    };
    let requests = Arc::new(Requests {
        framed: messages.iter().flat_map(|m| frame_message(&m.0)).collect(),
        encoded: messages.into_iter().map(|m| Encoded(m.0.into())).collect(),
    });
    // Warm-up: connections open, caches fill; not counted.
    for i in 0..options.warmup {
        let caller = &callers[(i as usize) % callers.len()];
        let _ = one_call(caller, streaming, path, &requests).await;
    }
    let start = Instant::now();
    let end = options.duration.map(|d| start + d);
    let total = if end.is_some() {
        u64::MAX
    } else {
        options.total.unwrap_or(200)
    };
    let issued = Arc::new(AtomicU64::new(0));
    // Calls done, shown by the progress bar every 100 ms (a bar's own `inc` costs more per
    // call than a counter).
    let done = Arc::new(AtomicU64::new(0));
    let ticker = (!progress.is_hidden()).then(|| {
        let (done, progress) = (done.clone(), progress.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                progress.set_position(done.load(Ordering::Relaxed));
            }
        })
    });
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..options.concurrency {
        let caller = callers[w % callers.len()].clone();
        let (requests, issued, done) = (requests.clone(), issued.clone(), done.clone());
        let rps = options.rps;
        let mut tally = Tally::new()?;
        workers.spawn(async move {
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                // Open loop: call i is due at start + i / rps; late calls count from then.
                let due = match rps {
                    Some(rps) => {
                        let due = start + Duration::from_secs_f64(i as f64 / rps);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => Instant::now(),
                };
                if end.is_some_and(|end| due >= end) {
                    break;
                }
                let result = one_call(&caller, streaming, path, &requests).await;
                tally.record(due.elapsed(), &result);
                done.fetch_add(1, Ordering::Relaxed);
            }
            tally
        });
    }
    let mut report = Report {
        count: 0,
        total: Duration::ZERO,
        latencies: Histogram::new(3).map_err(|e| Error::usage(format!("histogram: {e}")))?,
        status_codes: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    while let Some(tally) = workers.join_next().await {
        let tally = tally.map_err(|e| Error::usage(format!("a worker failed: {e}")))?;
        report
            .latencies
            .add(&tally.latencies)
            .map_err(|e| Error::usage(format!("histogram: {e}")))?;
        for (code, n) in tally.codes.into_iter().enumerate() {
            if n > 0 {
                let name = Code::from_i32(code as i32).name();
                *report.status_codes.entry(name.to_owned()).or_default() += n;
            }
        }
        for (error, n) in tally.errors {
            *report.errors.entry(error).or_default() += n;
        }
    }
    report.total = start.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    report.count = report.latencies.len();
    progress.finish_and_clear();
    Ok(report)
}
