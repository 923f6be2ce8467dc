//! The `dns` resolver: all A and AAAA records of `host[:port]` from the system resolver.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Address, DEFAULT_PORT, Resolver, ResolverBuilder, ResolverUpdate, Target, UpdateSink};
use crate::Status;
use crate::client::backoff::{Backoff, BackoffConfig};

/// Builds `dns` resolvers. Names are resolved with the system resolver (`getaddrinfo`), so
/// the DNS server of a `dns://server/name` target is parsed but not used. A name is resolved
/// when the channel starts, again when a connection is lost or the server sends GOAWAY (at
/// most once per [`DnsResolverBuilder::min_interval`]), and after failures with backoff.
#[derive(Debug, Clone)]
pub struct DnsResolverBuilder {
    min_interval: Duration,
}

impl Default for DnsResolverBuilder {
    fn default() -> DnsResolverBuilder {
        DnsResolverBuilder {
            min_interval: Duration::from_secs(30),
        }
    }
}

impl DnsResolverBuilder {
    /// The shortest time between two resolutions of one target. Default: 30 s (grpc-go's).
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> DnsResolverBuilder {
        self.min_interval = interval;
        self
    }
}

struct DnsResolver {
    resolve_now: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for DnsResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Resolver for DnsResolver {
    fn resolve_now(&mut self) {
        self.resolve_now.notify_one();
    }
}

impl ResolverBuilder for DnsResolverBuilder {
    fn scheme(&self) -> &str {
        "dns"
    }

    fn build(&self, target: &Target, sink: UpdateSink) -> Result<Box<dyn Resolver>, Status> {
        let (host, port) = super::split_host_port(target.endpoint())
            .map_err(|e| Status::invalid_argument(format!("target {target}: {e}")))?;
        let port = port.unwrap_or(DEFAULT_PORT);
        let name = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let resolve_now = Arc::new(Notify::new());
        let lookup = |name: String| async move {
            tokio::net::lookup_host(name.as_str())
                .await
                .map(|addrs| addrs.collect::<Vec<_>>())
        };
        let task = tokio::spawn(run(
            name,
            self.min_interval,
            resolve_now.clone(),
            sink,
            lookup,
        ));
        Ok(Box::new(DnsResolver { resolve_now, task }))
    }
}

/// Resolves `name` with `lookup` now, again on each `resolve_now` (at most once per
/// `min_interval`), and after failures with backoff.
async fn run<L, F>(
    name: String,
    min_interval: Duration,
    resolve_now: Arc<Notify>,
    sink: UpdateSink,
    lookup: L,
) where
    L: Fn(String) -> F,
    F: std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>>,
{
    let mut backoff = Backoff::new(BackoffConfig::default());
    loop {
        let started = Instant::now();
        let found = lookup(name.clone()).await;
        if sink.is_closed() {
            return;
        }
        match found {
            Ok(addrs) => {
                let mut addresses: Vec<Address> = Vec::new();
                for a in addrs {
                    let a = Address::tcp(a);
                    if !addresses.contains(&a) {
                        addresses.push(a);
                    }
                }
                if addresses.is_empty() {
                    sink.error(Status::unavailable(format!("DNS: no addresses for {name}")));
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
                tracing::debug!(%name, ?addresses, "resolved");
                sink.update(ResolverUpdate::new(addresses));
                backoff.reset();
                resolve_now.notified().await;
                tokio::time::sleep_until(started + min_interval).await;
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "DNS resolution failed");
                sink.error(Status::unavailable(format!(
                    "DNS resolution of {name} failed: {e}"
                )));
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::client::resolver::ResolverEvent;

    /// The resolution schedule, with a lookup that records when it runs (the system resolver
    /// itself is exercised by the integration tests), on Tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn re_resolution_is_rate_limited_and_failures_back_off() {
        let (events, mut inbox) = mpsc::unbounded_channel();
        let sink = UpdateSink::new(events, 1);
        let resolve_now = Arc::new(Notify::new());
        let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, failing) = (calls.clone(), fail.clone());
        let lookup = move |_name: String| {
            log.lock().unwrap().push(Instant::now());
            let failing = failing.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if failing {
                    Err(std::io::Error::other("no such host"))
                } else {
                    Ok(vec!["10.0.0.1:443".parse().unwrap()])
                }
            }
        };
        let start = Instant::now();
        let task = tokio::spawn(run(
            "example:443".into(),
            Duration::from_secs(30),
            resolve_now.clone(),
            sink,
            lookup,
        ));
        let ResolverEvent { result, .. } = inbox.recv().await.unwrap();
        assert_eq!(
            result.unwrap().addresses,
            vec![Address::parse("10.0.0.1:443")]
        );

        // Three requests at once, 1 s in: one more lookup, 30 s after the first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..3 {
            resolve_now.notify_one();
        }
        inbox.recv().await.unwrap();
        {
            let calls = calls.lock().unwrap();
            assert_eq!(calls.len(), 2);
            assert_eq!(calls[1] - start, Duration::from_secs(30));
        }

        // Failures are reported and retried with backoff (about 1 s, then 1.6 s...).
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(31)).await;
        resolve_now.notify_one();
        for _ in 0..3 {
            let ResolverEvent { result, .. } = inbox.recv().await.unwrap();
            assert_eq!(result.unwrap_err().code(), crate::Code::Unavailable);
        }
        let calls = calls.lock().unwrap().clone();
        let gaps: Vec<f64> = calls[2..]
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        assert!((0.8..=1.2).contains(&gaps[0]), "{gaps:?}");
        assert!((1.28..=1.92).contains(&gaps[1]), "{gaps:?}");
        task.abort();
    }
}
