//! The `etcd:///<name>` resolver: reads the endpoints under `<name>/` (and a service config
//! under `<name>`), then watches them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use volley::resolver::{
    Address, EndpointMetadata, Resolver, ResolverBuilder, ResolverUpdate, Target, UpdateSink,
};
use volley::{Backoff, BackoffConfig, Status};

use crate::client::EtcdClient;
use crate::naming;
use crate::proto::mvccpb::KeyValue;
use crate::proto::mvccpb::event::EventType;

/// The environment variable [`EtcdResolverBuilder::from_env`] reads: comma-separated etcd
/// endpoints, as `etcdctl --endpoints` takes them.
pub const ENDPOINTS_ENV: &str = "VOLLEY_ETCD_ENDPOINTS";

/// Resolves `etcd:///<name>` targets through an etcd cluster: the addresses of the endpoints
/// registered under `<name>/` in the format of etcd's Go naming package (by a
/// [`crate::Registrar`] or by Go's `endpoints.Manager`), kept up to date by a watch.
///
/// A service config may be stored as JSON (gRPC's `doc/service_config.md` format, as every
/// implementation reads it) under the key `<name>` itself, e.g. `etcdctl put kvdb
/// '{"loadBalancingConfig": [{"round_robin": {}}]}'`: outside the `<name>/` prefix, so Go's
/// endpoint readers never see it. It reaches the channel with the addresses; an invalid one
/// is ignored by the channel, which keeps its previous config.
///
/// Give it to one channel with `ChannelBuilder::resolver`, or to every channel with
/// `volley::resolver::register`.
#[derive(Debug, Clone)]
pub struct EtcdResolverBuilder {
    client: EtcdClient,
    backoff: BackoffConfig,
    min_resolve_interval: Duration,
    watch_delay: Duration,
}

impl EtcdResolverBuilder {
    /// Resolves through `client`.
    pub fn new(client: EtcdClient) -> EtcdResolverBuilder {
        EtcdResolverBuilder {
            client,
            backoff: BackoffConfig {
                base_delay: Duration::from_millis(500),
                multiplier: 1.6,
                jitter: 0.2,
                max_delay: Duration::from_secs(10),
            },
            min_resolve_interval: Duration::from_secs(1),
            watch_delay: Duration::ZERO,
        }
    }

    /// Resolves through the etcd endpoints listed in the environment variable
    /// [`ENDPOINTS_ENV`] (`VOLLEY_ETCD_ENDPOINTS=10.0.0.1:2379,10.0.0.2:2379`). Fails when it
    /// is unset or empty.
    pub fn from_env() -> Result<EtcdResolverBuilder, volley::Error> {
        let endpoints = std::env::var(ENDPOINTS_ENV)
            .map_err(|_| volley::Error::new(format!("{ENDPOINTS_ENV} is not set")))?;
        let client = EtcdClient::new(endpoints.split(','))?;
        Ok(EtcdResolverBuilder::new(client))
    }

    /// How reads are retried while etcd is unreachable. Default: 0.5 s, x1.6, jitter 0.2, at
    /// most 10 s.
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffConfig) -> EtcdResolverBuilder {
        self.backoff = backoff;
        self
    }

    /// Re-resolution requests (the channel makes one when a connection is lost) re-read the
    /// endpoints at most this often. Default: 1 s.
    #[must_use]
    pub fn min_resolve_interval(mut self, interval: Duration) -> EtcdResolverBuilder {
        self.min_resolve_interval = interval;
        self
    }
}

impl EtcdResolverBuilder {
    /// Waits this long between reading the endpoints and starting the watch, so that a test
    /// can compact etcd past the read's revision in between. Not for production. Default:
    /// none.
    #[doc(hidden)]
    #[must_use]
    pub fn watch_delay_for_tests(mut self, delay: Duration) -> EtcdResolverBuilder {
        self.watch_delay = delay;
        self
    }
}

/// Registers an [`EtcdResolverBuilder::from_env`] resolver for the `etcd` scheme in every
/// channel built from now on.
pub fn register_from_env() -> Result<(), volley::Error> {
    volley::resolver::register(EtcdResolverBuilder::from_env()?);
    Ok(())
}

impl ResolverBuilder for EtcdResolverBuilder {
    fn scheme(&self) -> &str {
        "etcd"
    }

    fn build(&self, target: &Target, sink: UpdateSink) -> Result<Box<dyn Resolver>, Status> {
        let name = target.endpoint().trim_matches('/');
        if name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "etcd target {target} names no service (etcd:///<name>)"
            )));
        }
        let resolve_now = Arc::new(Notify::new());
        let watcher = Watcher {
            client: self.client.clone(),
            prefix: format!("{name}/").into_bytes(),
            name: name.as_bytes().to_vec(),
            service_config: None,
            sink,
            resolve_now: resolve_now.clone(),
            backoff: self.backoff,
            min_interval: self.min_resolve_interval,
            watch_delay: self.watch_delay,
            endpoints: BTreeMap::new(),
            published: None,
        };
        let task = tokio::spawn(watcher.run());
        Ok(Box::new(EtcdResolver { task, resolve_now }))
    }
}

/// A running resolution; dropping it stops the watch.
struct EtcdResolver {
    task: JoinHandle<()>,
    resolve_now: Arc<Notify>,
}

impl Resolver for EtcdResolver {
    fn resolve_now(&mut self) {
        self.resolve_now.notify_one();
    }
}

impl Drop for EtcdResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task behind one `etcd:///<name>` target.
struct Watcher {
    client: EtcdClient,
    /// `<name>/`: the endpoints' keys.
    prefix: Vec<u8>,
    /// `<name>`: the key of the service config, if one is stored (read and watched with the
    /// endpoints, as keys starting with `<name>`; other services' keys are skipped).
    name: Vec<u8>,
    /// The service config's JSON, when the key holds one.
    service_config: Option<String>,
    sink: UpdateSink,
    resolve_now: Arc<Notify>,
    backoff: BackoffConfig,
    min_interval: Duration,
    watch_delay: Duration,
    /// Key → address of every endpoint known now.
    /// Each endpoint's address and metadata, by key.
    endpoints: BTreeMap<Vec<u8>, (Address, serde_json::Value)>,
    /// The last address list (and service config) sent to the channel.
    published: Option<Published>,
}

/// What the resolver last sent: the endpoints and the service config's JSON.
type Published = (Vec<(Address, serde_json::Value)>, Option<String>);

/// Why a watch ended.
enum WatchEnd {
    /// Read again at once (compaction, a re-resolution request).
    Reread,
    /// etcd failed; read again after a backoff.
    Failed(Status),
}

impl Watcher {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.backoff);
        let mut failures = 0u32;
        let mut last_read: Option<Instant> = None;
        loop {
            if self.sink.is_closed() {
                return;
            }
            if let Some(last) = last_read {
                // Re-reads come from compaction, watch failures and resolve_now; even when
                // they come in a burst, etcd sees at most one read per interval.
                tokio::time::sleep_until(last + self.min_interval).await;
            }
            last_read = Some(Instant::now());
            let end = match self.read().await {
                Ok(revision) => {
                    failures = 0;
                    backoff.reset();
                    if !self.watch_delay.is_zero() {
                        tokio::time::sleep(self.watch_delay).await;
                    }
                    self.watch(revision + 1).await
                }
                Err(status) => WatchEnd::Failed(status),
            };
            match end {
                WatchEnd::Reread => {}
                WatchEnd::Failed(status) => {
                    failures += 1;
                    self.failed(status, failures);
                    let delay = backoff.next_delay();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.resolve_now.notified() => {}
                    }
                }
            }
        }
    }

    /// Reads every endpoint under the prefix and publishes them; returns the read's revision.
    async fn read(&mut self) -> Result<i64, Status> {
        let (kvs, revision) = self.client.get_prefix(&self.name).await?;
        self.endpoints.clear();
        self.service_config = None;
        for kv in kvs {
            self.put(kv);
        }
        self.publish();
        Ok(revision)
    }

    /// Follows changes from `revision` until the watch ends.
    async fn watch(&mut self, revision: i64) -> WatchEnd {
        let mut stream = match self.client.watch_prefix(&self.name, revision).await {
            Ok(stream) => stream,
            Err(status) => return WatchEnd::Failed(status),
        };
        loop {
            let response = tokio::select! {
                r = stream.next() => r,
                () = self.resolve_now.notified() => return WatchEnd::Reread,
            };
            let response = match response {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return WatchEnd::Failed(Status::unavailable("etcd ended the watch"));
                }
                Err(status) => return WatchEnd::Failed(status),
            };
            if response.compact_revision > 0 {
                tracing::info!(
                    prefix = %String::from_utf8_lossy(&self.prefix),
                    compacted = response.compact_revision,
                    "etcd compacted past the watch; reading again"
                );
                return WatchEnd::Reread;
            }
            if response.canceled {
                return WatchEnd::Failed(Status::unavailable(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason
                )));
            }
            if response.events.is_empty() {
                continue;
            }
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                match EventType::try_from(event.r#type) {
                    Ok(EventType::Put) => self.put(kv),
                    Ok(EventType::Delete) if kv.key == self.name => self.service_config = None,
                    Ok(EventType::Delete) => {
                        self.endpoints.remove(&kv.key);
                    }
                    Err(_) => {}
                }
            }
            self.publish();
        }
    }

    /// Adds or replaces the endpoint of `kv` (or the service config, under `<name>`);
    /// values that are not endpoints are skipped, as are other services' keys.
    fn put(&mut self, kv: KeyValue) {
        if kv.key == self.name {
            self.service_config = Some(String::from_utf8_lossy(&kv.value).into_owned());
            return;
        }
        if !kv.key.starts_with(&self.prefix) {
            return; // `<name>foo/...`: another service's key
        }
        match naming::decode(&kv.value) {
            Ok(endpoint) => {
                let address = Address::parse(&endpoint.addr);
                self.endpoints.insert(kv.key, (address, endpoint.metadata));
            }
            Err(why) => {
                tracing::warn!(
                    key = %String::from_utf8_lossy(&kv.key),
                    %why,
                    "skipping an etcd value that is not an endpoint"
                );
                // A key rewritten with garbage no longer names its old address.
                self.endpoints.remove(&kv.key);
            }
        }
    }

    /// Sends the address list to the channel when it changed.
    fn publish(&mut self) {
        let endpoints: Vec<(Address, serde_json::Value)> =
            self.endpoints.values().cloned().collect();
        let published = (endpoints, self.service_config.clone());
        if self.published.as_ref() == Some(&published) {
            return;
        }
        let endpoints = &published.0;
        // Each address carries its endpoint's metadata (when not null), for balancers: a
        // `{"weight": N}` there is a static weight for `weighted_round_robin`.
        let addresses: Vec<Address> = endpoints
            .iter()
            .map(|(address, metadata)| match metadata {
                serde_json::Value::Null => address.clone(),
                m => address.clone().with_attribute(EndpointMetadata(m.clone())),
            })
            .collect();
        tracing::debug!(
            prefix = %String::from_utf8_lossy(&self.prefix),
            count = addresses.len(),
            "etcd endpoints"
        );
        let mut update = ResolverUpdate::new(addresses);
        if let Some(json) = &self.service_config {
            // An invalid config is passed on as such: the channel keeps its previous one.
            update = update.with_service_config_json(json);
        }
        self.published = Some(published);
        self.sink.update(update);
    }

    /// etcd could not be read: keep the last good list; without one, tell the channel.
    fn failed(&self, status: Status, failures: u32) {
        if failures == 1 {
            tracing::warn!(
                prefix = %String::from_utf8_lossy(&self.prefix),
                %status,
                "etcd unreachable; keeping the last endpoints and retrying"
            );
        }
        if self.published.is_none() {
            self.sink.error(Status::unavailable(format!(
                "cannot read the endpoints from etcd: {}",
                status.message()
            )));
        }
    }
}
