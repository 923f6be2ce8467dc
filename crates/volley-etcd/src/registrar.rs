//! [`Registrar`]: registers a server's address under a lease and keeps it registered.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use volley::{Backoff, BackoffConfig, Code, Status};

use crate::client::{EtcdClient, KeepAlive};
use crate::naming::{self, Endpoint};

/// Registers servers in etcd the way etcd's Go `endpoints.Manager` does: key
/// `<name>/<addr>`, value `{"Op":0,"Addr":"<addr>","Metadata":...}`, attached to a lease.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use volley_etcd::{EtcdClient, Registrar};
/// let etcd = EtcdClient::new(["127.0.0.1:2379"])?;
/// let registration = Registrar::new(etcd).register("kvdb", "10.0.0.7:50051").await?;
/// // Serve; on shutdown, deregister first, then drain:
/// // server.serve_with_shutdown(addr, registration.deregister_on(ctrl_c)).await?;
/// # drop(registration);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Registrar {
    client: EtcdClient,
    ttl: Duration,
    metadata: Value,
}

impl Registrar {
    /// A registrar writing through `client`.
    pub fn new(client: EtcdClient) -> Registrar {
        Registrar {
            client,
            ttl: Duration::from_secs(10),
            metadata: Value::Null,
        }
    }

    /// The lease's time to live (whole seconds): a server that stops keeping its lease alive
    /// (a crash) disappears after this long. The lease is renewed every third of it.
    /// Default: 10 s.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Registrar {
        self.ttl = ttl;
        self
    }

    /// The `Metadata` stored with the address (any JSON). Default: `null`.
    #[must_use]
    pub fn metadata(mut self, metadata: Value) -> Registrar {
        self.metadata = metadata;
        self
    }

    /// Registers `addr` (`host:port`) under service `name`, and keeps it registered in the
    /// background (renewing the lease; registering again under a new lease if etcd lost it)
    /// until the returned [`Registration`] is deregistered or dropped. Fails when the first
    /// registration cannot be written; transient failures (etcd unreachable, or electing a new
    /// leader) are retried for up to 30 s first.
    pub async fn register(&self, name: &str, addr: &str) -> Result<Registration, Status> {
        let key = format!("{name}/{addr}");
        let value = naming::encode(&Endpoint {
            addr: addr.to_owned(),
            metadata: self.metadata.clone(),
        });
        let keeper = Keeper {
            client: self.client.clone(),
            key: key.clone(),
            value,
            ttl: self.ttl,
            lease: Arc::new(Mutex::new(None)),
        };
        keeper.register_patiently().await?;
        let lease = keeper.lease.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keeper.run(stopped));
        Ok(Registration {
            key,
            client: self.client.clone(),
            lease,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A live registration. Dropping it stops renewing the lease, so the key disappears within
/// the TTL, as after a crash; [`Registration::deregister`] removes it at once.
#[derive(Debug)]
pub struct Registration {
    key: String,
    client: EtcdClient,
    lease: Arc<Mutex<Option<i64>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// The etcd key: `<name>/<addr>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the key is attached to now (it changes when the registration is renewed
    /// under a new lease).
    pub fn lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the registration now: stops renewing, deletes the key and revokes the lease.
    pub async fn deregister(mut self) -> Result<(), Status> {
        self.stop_keeping().await;
        let deleted = self.client.delete(self.key.as_bytes()).await;
        if let Some(lease) = self.lease() {
            // The key is already gone; a lease that cannot be revoked expires on its own.
            if let Err(status) = self.client.revoke_lease(lease).await {
                tracing::debug!(%status, "could not revoke the registration's lease");
            }
        }
        deleted.map(drop)
    }

    /// A shutdown signal for `Server::serve_with_shutdown`: waits for `signal`, then
    /// deregisters, and only then lets the server stop accepting and drain its calls, so
    /// that clients stop picking it before it goes.
    pub async fn deregister_on(self, signal: impl Future<Output = ()>) {
        signal.await;
        let key = self.key.clone();
        match self.deregister().await {
            Ok(()) => tracing::info!(%key, "deregistered from etcd"),
            Err(status) => {
                tracing::warn!(%key, %status, "could not deregister; the lease will expire")
            }
        }
    }

    async fn stop_keeping(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The background task of one registration.
struct Keeper {
    client: EtcdClient,
    key: String,
    value: String,
    ttl: Duration,
    lease: Arc<Mutex<Option<i64>>>,
}

impl Keeper {
    /// Grants a lease and writes the key with it.
    async fn register(&self) -> Result<(), Status> {
        let (lease, _) = self.client.grant_lease(self.ttl).await?;
        self.client
            .put(self.key.as_bytes(), self.value.as_bytes(), lease)
            .await?;
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease);
        tracing::debug!(key = %self.key, lease, "registered in etcd");
        Ok(())
    }

    /// The first registration: transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, as while
    /// etcd elects a new leader) are retried with backoff for up to [`FIRST_REGISTRATION`].
    /// Retrying is safe: a lease granted twice leaves an unused lease that expires, and the
    /// put is idempotent.
    async fn register_patiently(&self) -> Result<(), Status> {
        let give_up = Instant::now() + FIRST_REGISTRATION;
        let mut backoff = Backoff::new(BackoffConfig {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            ..BackoffConfig::default()
        });
        loop {
            match self.register().await {
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
                        && Instant::now() < give_up =>
                {
                    tracing::debug!(key = %self.key, %status, "registration failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => return other,
            }
        }
    }

    fn current_lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Renews the lease every third of the TTL; registers again when the lease is lost.
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let period = (self.ttl / 3).max(Duration::from_millis(100));
        let mut stream: Option<KeepAlive> = None;
        let mut next = Instant::now() + period;
        let mut failures = 0u32;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = &mut stop => return,
            }
            let outcome = self.renew(&mut stream).await;
            next = Instant::now()
                + match outcome {
                    Renewal::Renewed => {
                        failures = 0;
                        period
                    }
                    Renewal::Lost => {
                        stream = None;
                        tracing::info!(key = %self.key, "etcd lost the lease; registering again");
                        match self.register().await {
                            Ok(()) => {
                                failures = 0;
                                period
                            }
                            Err(status) => {
                                failures += 1;
                                self.log_failure(&status, failures);
                                retry_delay(failures, period)
                            }
                        }
                    }
                    Renewal::Failed(status) => {
                        stream = None;
                        failures += 1;
                        self.log_failure(&status, failures);
                        retry_delay(failures, period)
                    }
                };
        }
    }

    async fn renew(&self, stream: &mut Option<KeepAlive>) -> Renewal {
        let Some(lease) = self.current_lease() else {
            return Renewal::Lost;
        };
        if stream.is_none() {
            match self.client.keep_alive(lease).await {
                Ok(s) => *stream = Some(s),
                Err(status) => return Renewal::Failed(status),
            }
        }
        let Some(s) = stream.as_mut() else {
            return Renewal::Failed(Status::internal("no keep-alive stream"));
        };
        match tokio::time::timeout(self.ttl, s.renew()).await {
            Ok(Ok(Some(_))) => Renewal::Renewed,
            Ok(Ok(None)) => Renewal::Lost,
            Ok(Err(status)) => Renewal::Failed(status),
            Err(_) => Renewal::Failed(Status::deadline_exceeded("lease keep-alive timed out")),
        }
    }

    fn log_failure(&self, status: &Status, failures: u32) {
        if failures == 1 {
            tracing::warn!(key = %self.key, %status, "cannot renew the etcd registration; retrying");
        }
    }
}

/// How long the first registration retries transient etcd failures.
const FIRST_REGISTRATION: Duration = Duration::from_secs(30);

/// Retries come quickly at first (a lease lives only TTL), then no faster than the period.
fn retry_delay(failures: u32, period: Duration) -> Duration {
    let fast = Duration::from_millis(250) * failures.min(8);
    fast.min(period)
}

enum Renewal {
    Renewed,
    /// The lease no longer exists.
    Lost,
    /// etcd could not be reached.
    Failed(Status),
}
