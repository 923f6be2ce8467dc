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
        let task = tokio::spawn(run(name, self.min_interval, resolve_now.clone(), sink));
        Ok(Box::new(DnsResolver { resolve_now, task }))
    }
}

async fn run(name: String, min_interval: Duration, resolve_now: Arc<Notify>, sink: UpdateSink) {
    let mut backoff = Backoff::new(BackoffConfig::default());
    loop {
        let started = Instant::now();
        let found = tokio::net::lookup_host(name.as_str()).await;
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
