//! The soak test: many calls of all four kinds against one Volley server, with random
//! cancellations, deadlines that expire and client restarts, while the server's resident
//! memory is sampled. After a warm-up the memory must be flat: the test fails when the second
//! half of the samples peaks more than 5% (at least 2 MiB) above the first half.
//!
//! Usage: `soak [--calls N] [--seconds S] [--workers W]` (defaults: 10,000,000 calls, no time
//! limit, 32 workers); it stops at whichever limit comes first. `soak --serve` is the server
//! it starts as a child process (so that the memory sampled is the server's own).
//! `bench/soak.sh` builds and runs it; CI runs `bench/soak.sh --seconds 60`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use volley::{Channel, Code, Request, Response, Status, Streaming};

pub mod soak {
    include!(concat!(env!("OUT_DIR"), "/volley/volley.soak.rs"));
}
use soak::{Soak, SoakClient, SoakReply, SoakRequest, SoakServer};

/// The soak service: sleeps as asked, then answers.
struct Service;

async fn nap(ms: u32) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
}

fn reply(index: u32, req: &SoakRequest) -> SoakReply {
    SoakReply {
        index,
        payload: req.payload.clone(),
    }
}

impl Soak for Service {
    async fn unary(&self, request: Request<SoakRequest>) -> Result<Response<SoakReply>, Status> {
        nap(request.get_ref().sleep_ms).await;
        Ok(Response::new(reply(0, request.get_ref())))
    }

    type ServerStreamStream = volley::BoxStream<SoakReply>;

    async fn server_stream(
        &self,
        request: Request<SoakRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let req = request.into_inner();
        nap(req.sleep_ms).await;
        let replies = (0..req.count).map(move |i| Ok(reply(i, &req)));
        Ok(Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<SoakRequest>>,
    ) -> Result<Response<SoakReply>, Status> {
        let mut requests = request.into_inner();
        let mut count = 0;
        while let Some(req) = requests.message().await? {
            nap(req.sleep_ms).await;
            count += 1;
        }
        Ok(Response::new(SoakReply {
            index: count,
            payload: Vec::new(),
        }))
    }

    type BidiStream = volley::BoxStream<SoakReply>;

    async fn bidi(
        &self,
        request: Request<Streaming<SoakRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                let item = match requests.message().await {
                    Ok(Some(req)) => {
                        nap(req.sleep_ms).await;
                        Ok(reply(index, &req))
                    }
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
                index += 1;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

async fn serve() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let stdin_closed = async {
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while let Ok(n) = stdin.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    volley::Server::builder()
        .http2_engine(engine_from_env("VOLLEY_SOAK_SERVER_ENGINE"))
        .add_service(SoakServer::new(Service))
        .drain_timeout(Duration::from_secs(1))
        .serve_with_listener(listener, stdin_closed)
        .await
}

/// The HTTP/2 engine named by environment variable `var`: `h2`, or Volley's own (the default).
fn engine_from_env(var: &str) -> volley::Http2Engine {
    match std::env::var(var).as_deref() {
        Ok("h2") => volley::Http2Engine::H2,
        _ => volley::Http2Engine::Volley,
    }
}

/// A channel to `target` on the client's engine (`VOLLEY_SOAK_CLIENT_ENGINE`).
fn channel(target: &str) -> Channel {
    Channel::builder(target)
        .http2_engine(engine_from_env("VOLLEY_SOAK_CLIENT_ENGINE"))
        .build()
        .expect("target")
}

/// A xorshift generator per worker.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the calls ended with.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    cancelled: AtomicU64,
    deadline: AtomicU64,
    /// Any other status: a failure of the soak.
    unexpected: AtomicU64,
    restarts: AtomicU64,
}

/// One call of a random kind; `Err` only for statuses a soak must never see.
async fn one_call(client: &SoakClient, rng: &mut Rng, counts: &Counts) {
    let sleep_ms = if rng.below(4) == 0 {
        rng.below(4) as u32
    } else {
        0
    };
    let req = SoakRequest {
        sleep_ms,
        count: 1 + rng.below(8) as u32,
        payload: vec![7; rng.below(512) as usize],
    };
    // One call in ten has a deadline that may pass; one in ten is cancelled by the client.
    let deadline = (rng.below(10) == 0).then(|| Duration::from_millis(1 + rng.below(3)));
    let cancel_after = (rng.below(10) == 0).then(|| Duration::from_micros(rng.below(3000)));
    let with_deadline = |req: SoakRequest| {
        let mut request = Request::new(req);
        if let Some(d) = deadline {
            request.set_timeout(d);
        }
        request
    };
    let kind = rng.below(4);
    let call = async {
        match kind {
            0 => client.unary(with_deadline(req)).await.map(drop),
            1 => {
                let mut stream = client.server_stream(with_deadline(req)).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
            2 => {
                let n = req.count as usize;
                let requests = tokio_stream::iter(std::iter::repeat_n(req, n));
                let mut request = Request::new(requests);
                if let Some(d) = deadline {
                    request.set_timeout(d);
                }
                client.client_stream(request).await.map(drop)
            }
            _ => {
                let n = req.count as usize;
                let requests = tokio_stream::iter(std::iter::repeat_n(req, n));
                let mut request = Request::new(requests);
                if let Some(d) = deadline {
                    request.set_timeout(d);
                }
                let mut replies = client.bidi(request).await?.into_inner();
                while replies.message().await?.is_some() {}
                Ok(())
            }
        }
    };
    let result = match cancel_after {
        Some(after) => match tokio::time::timeout(after, call).await {
            Ok(r) => r,
            Err(_) => Err(Status::cancelled("cancelled by the soak client")),
        },
        None => call.await,
    };
    let counter = match result {
        Ok(()) => &counts.ok,
        Err(s) if s.code() == Code::Cancelled => &counts.cancelled,
        Err(s) if s.code() == Code::DeadlineExceeded => &counts.deadline,
        Err(s) => {
            eprintln!("[soak] unexpected status: {s}");
            &counts.unexpected
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Options {
    calls: u64,
    seconds: Option<u64>,
    workers: u64,
}

fn options() -> Options {
    let mut options = Options {
        calls: 10_000_000,
        seconds: None,
        workers: 32,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair
            .get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} takes a number", pair[0]));
        match pair[0].as_str() {
            "--calls" => options.calls = value,
            "--seconds" => options.seconds = Some(value),
            "--workers" => options.workers = value.max(1),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        if let Err(e) = serve().await {
            eprintln!("[soak] server: {e}");
            std::process::exit(1);
        }
        return;
    }
    let options = options();
    let exe = std::env::current_exe().expect("own path");
    let mut server = Command::new(exe)
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the soak server starts");
    let pid = server.id().expect("running");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .await
        .expect("the server's address");
    let target = format!("http://{}", line.trim().trim_start_matches("listening on "));

    let counts = Arc::new(Counts::default());
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..options.workers {
        let (counts, issued, stop, target) =
            (counts.clone(), issued.clone(), stop.clone(), target.clone());
        let calls = options.calls;
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0x2545_f491));
            let mut client = SoakClient::new(channel(&target));
            while !stop.load(Ordering::Relaxed) && issued.fetch_add(1, Ordering::Relaxed) < calls {
                // A client restart: a new channel (new connection), the old one dropped.
                if rng.below(2000) == 0 {
                    client = SoakClient::new(channel(&target));
                    counts.restarts.fetch_add(1, Ordering::Relaxed);
                }
                one_call(&client, &mut rng, &counts).await;
            }
        }));
    }

    // Sample the server's memory every 2 s until the workers are done or time is up.
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let limit = options.seconds.map(Duration::from_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let done = workers.iter().all(|w| w.is_finished());
        let elapsed = started.elapsed();
        let calls = counts.ok.load(Ordering::Relaxed)
            + counts.cancelled.load(Ordering::Relaxed)
            + counts.deadline.load(Ordering::Relaxed)
            + counts.unexpected.load(Ordering::Relaxed);
        let rss = rss_kib(pid);
        samples.push((elapsed.as_secs_f64(), rss));
        eprintln!(
            "[soak] {:>6.0} s  {calls:>10} calls  server RSS {rss} KiB",
            elapsed.as_secs_f64()
        );
        if done {
            break;
        }
        if limit.is_some_and(|l| elapsed >= l) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    for w in workers {
        let _ = w.await;
    }
    drop(server.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), server.wait()).await;

    let elapsed = started.elapsed().as_secs_f64();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let total =
        get(&counts.ok) + get(&counts.cancelled) + get(&counts.deadline) + get(&counts.unexpected);
    println!(
        "calls {total} in {elapsed:.0} s ({:.0}/s): ok {}, cancelled {}, deadline exceeded {}, unexpected {}; client restarts {}",
        total as f64 / elapsed,
        get(&counts.ok),
        get(&counts.cancelled),
        get(&counts.deadline),
        get(&counts.unexpected),
        get(&counts.restarts),
    );
    // Warm-up: the first quarter of the samples (at least one). Then the halves of the rest.
    let warm = (samples.len() / 4).max(1);
    let rest = &samples[warm.min(samples.len())..];
    let mut failed = get(&counts.unexpected) > 0;
    if rest.len() >= 2 {
        let (first, second) = rest.split_at(rest.len() / 2);
        let peak = |s: &[(f64, u64)]| s.iter().map(|(_, r)| *r).max().unwrap_or(0);
        let (p1, p2) = (peak(first), peak(second));
        let allowed = (p1 / 20).max(2 * 1024);
        println!(
            "server RSS after warm-up: first half peak {p1} KiB, second half peak {p2} KiB (growth {} KiB, allowed {allowed} KiB)",
            p2 as i64 - p1 as i64
        );
        println!(
            "RSS samples (s, KiB): {}",
            samples
                .iter()
                .map(|(t, r)| format!("{t:.0}:{r}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if p2 > p1 + allowed {
            println!("FAIL: the server's memory grew after warm-up");
            failed = true;
        }
    } else {
        println!("too short a run to judge memory (fewer than 3 samples after warm-up)");
    }
    if failed {
        std::process::exit(1);
    }
    println!("soak passed");
}
