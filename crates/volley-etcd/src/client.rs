//! [`EtcdClient`]: the few etcd v3 operations discovery needs, over Volley's own generated
//! client, with failover between endpoints and optional authentication.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use volley::resolver::{Address, ManualResolver, ResolverUpdate};
use volley::{Channel, Request, Status, Streaming};

use crate::auth::TokenAuth;

use crate::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, KvClient, LeaseClient, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, RangeRequest,
    WatchClient, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use crate::proto::mvccpb::KeyValue;

/// The scheme of the private resolver that hands a client's etcd endpoints to its channel.
const ENDPOINTS_SCHEME: &str = "volley-etcd-endpoints";

/// A client for an etcd cluster (v3 API). Cheap to clone; clones share the connection.
///
/// The endpoints are balanced `pick_first`: the client talks to the first reachable one and
/// fails over to the next when it goes away. With credentials, a client middleware
/// ([`crate::auth`]) authenticates before the first call and sends the token with every call;
/// when etcd answers that the token is no longer valid (it expired, or etcd restarted), that
/// call fails and the token is forgotten, so the next call authenticates again. (The
/// registrar and the resolver retry failed calls on their own.)
#[derive(Clone)]
pub struct EtcdClient {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    authenticated: bool,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("timeout", &self.timeout)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

/// Configures an [`EtcdClient`]. Every setter states its default. Its `Debug` never prints
/// the password.
#[derive(Clone)]
#[must_use]
pub struct EtcdClientBuilder {
    endpoints: Vec<String>,
    credentials: Option<(String, String)>,
    timeout: Duration,
    connect_timeout: Duration,
    tls: Option<volley::ClientTlsConfig>,
}

impl EtcdClient {
    /// A builder for a client of the cluster at `endpoints` (`host:port` or
    /// `http://host:port`, as `etcdctl --endpoints` takes them).
    pub fn builder<I, S>(endpoints: I) -> EtcdClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdClientBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            credentials: None,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            tls: None,
        }
    }

    /// A client with default options; see [`EtcdClient::builder`].
    pub fn new<I, S>(endpoints: I) -> Result<EtcdClient, volley::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdClient::builder(endpoints).build()
    }

    /// A request with the client's timeout.
    fn request<T>(&self, message: T) -> Request<T> {
        Request::new(message).with_timeout(self.timeout)
    }

    /// Every key-value pair whose key starts with `prefix`, and the store's revision at the
    /// read.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), Status> {
        let response = self
            .kv
            .range(self.request(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                ..Default::default()
            }))
            .await?
            .into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        Ok((response.kvs, revision))
    }

    /// Puts `key` = `value`, attached to `lease` (0 for none).
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<(), Status> {
        self.kv
            .put(self.request(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &[u8]) -> Result<i64, Status> {
        let response = self
            .kv
            .delete_range(self.request(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            }))
            .await?;
        Ok(response.into_inner().deleted)
    }

    /// Compacts the event history up to `revision` (watchers from before it are cancelled).
    pub async fn compact(&self, revision: i64) -> Result<(), Status> {
        self.kv
            .compact(self.request(CompactionRequest {
                revision,
                physical: true,
            }))
            .await?;
        Ok(())
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1); returns its ID and the TTL etcd
    /// chose.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<(i64, Duration), Status> {
        let seconds = ttl.as_secs().max(1) as i64;
        let response = self
            .lease
            .lease_grant(self.request(LeaseGrantRequest {
                ttl: seconds,
                id: 0,
            }))
            .await?
            .into_inner();
        if !response.error.is_empty() {
            return Err(Status::unavailable(format!(
                "etcd refused the lease: {}",
                response.error
            )));
        }
        Ok((response.id, Duration::from_secs(response.ttl.max(0) as u64)))
    }

    /// Revokes lease `id`: its keys are deleted at once.
    pub async fn revoke_lease(&self, id: i64) -> Result<(), Status> {
        self.lease
            .lease_revoke(self.request(LeaseRevokeRequest { id }))
            .await?;
        Ok(())
    }

    /// Opens a keep-alive stream for lease `id`.
    pub async fn keep_alive(&self, id: i64) -> Result<KeepAlive, Status> {
        let (tx, rx) = mpsc::channel(4);
        // etcd answers each request; the first one goes with the call so that the response
        // headers (sent with the first answer) arrive.
        let _ = tx.try_send(LeaseKeepAliveRequest { id });
        let responses = self
            .lease
            .lease_keep_alive(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(KeepAlive {
            id,
            requests: tx,
            responses,
            first: true,
        })
    }

    /// Watches every key starting with `prefix`, from `start_revision` (inclusive). The
    /// first response confirms the watcher (`created`), or cancels it when the revision is
    /// compacted.
    pub async fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, Status> {
        let (tx, rx) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    start_revision,
                    progress_notify: true,
                    ..Default::default()
                },
            )),
        };
        // etcd answers the create request with the response headers; it goes with the call.
        let _ = tx.try_send(create);
        let responses = self
            .watch
            .watch(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(WatchStream {
            responses,
            _requests: tx,
        })
    }
}

/// The responses of one watch. The watch lasts until this is dropped (which closes the
/// request stream) or etcd ends it.
#[derive(Debug)]
pub struct WatchStream {
    responses: Streaming<WatchResponse>,
    /// Keeps the request stream open: closing it would end the watch.
    _requests: mpsc::Sender<WatchRequest>,
}

impl WatchStream {
    /// The next response; `None` when etcd ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, Status> {
        self.responses.message().await
    }
}

/// A lease's keep-alive stream.
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
    /// The first request went with the call.
    first: bool,
}

impl KeepAlive {
    /// Renews the lease once; returns its new TTL, or `None` when the lease no longer exists
    /// (it expired, or etcd lost it).
    pub async fn renew(&mut self) -> Result<Option<Duration>, Status> {
        if !std::mem::take(&mut self.first)
            && self
                .requests
                .send(LeaseKeepAliveRequest { id: self.id })
                .await
                .is_err()
        {
            return Err(Status::unavailable("the keep-alive stream closed"));
        }
        match self.responses.message().await? {
            Some(response) if response.ttl > 0 => {
                Ok(Some(Duration::from_secs(response.ttl as u64)))
            }
            Some(_) => Ok(None),
            None => Err(Status::unavailable("etcd ended the keep-alive stream")),
        }
    }
}

impl std::fmt::Debug for EtcdClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl EtcdClientBuilder {
    /// Authenticates as `user` with `password` (etcd with auth enabled). Default: no
    /// authentication.
    pub fn credentials(mut self, user: &str, password: &str) -> EtcdClientBuilder {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// The deadline of each unary etcd call. Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> EtcdClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How long one connection attempt to an endpoint may take. Default: 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> EtcdClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Connects to the endpoints with TLS (etcd's `--cert-file`/`--key-file`). Default:
    /// plaintext for `host:port` and `http://` endpoints; `https://` endpoints use TLS with the
    /// system's CA certificates (`ClientTlsConfig::new()`) unless this is set.
    pub fn tls_config(mut self, config: volley::ClientTlsConfig) -> EtcdClientBuilder {
        self.tls = Some(config);
        self
    }

    /// Builds the client; it connects on first use. Fails when no endpoint is given, or when
    /// `https://` and `http://` endpoints are mixed (one channel serves them all).
    pub fn build(mut self) -> Result<EtcdClient, volley::Error> {
        let endpoints: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .collect();
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        let http = endpoints
            .iter()
            .filter(|e| e.starts_with("http://"))
            .count();
        if https > 0 && http > 0 {
            return Err(volley::Error::new(
                "etcd endpoints mix https:// and http://; use one scheme",
            ));
        }
        if https > 0 && self.tls.is_none() {
            // An https:// endpoint is a promise of TLS: never send credentials in clear.
            self.tls = Some(volley::ClientTlsConfig::new());
        }
        let addresses: Vec<Address> = endpoints
            .iter()
            .map(|e| {
                let host_port = e
                    .trim_start_matches("http://")
                    .trim_start_matches("https://");
                Address::parse(host_port.trim_end_matches('/'))
            })
            .collect();
        if addresses.is_empty() {
            return Err(volley::Error::new("no etcd endpoint given"));
        }
        let endpoints = ManualResolver::new(ENDPOINTS_SCHEME);
        endpoints.update(ResolverUpdate::new(addresses));
        let mut builder = Channel::builder(&format!("{ENDPOINTS_SCHEME}:///etcd"))
            .resolver(endpoints)
            .connect_timeout(self.connect_timeout)
            .backoff(volley::BackoffConfig {
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
                ..volley::BackoffConfig::default()
            });
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls);
        }
        let auth = self
            .credentials
            .map(|(user, password)| TokenAuth::new(user, password, self.timeout));
        let authenticated = auth.is_some();
        if let Some(auth) = &auth {
            builder = builder.middleware(auth.clone());
        }
        let channel = builder.build()?;
        if let Some(auth) = auth {
            auth.use_channel(&channel);
        }
        Ok(EtcdClient {
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lease: LeaseClient::new(channel),
            authenticated,
            timeout: self.timeout,
        })
    }
}

/// The end of the range of keys starting with `prefix`: the prefix with its last byte below
/// 0xff incremented (and what follows dropped); `\0` (every key) when there is none.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"kvdb/"), b"kvdb0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn an_empty_endpoint_list_is_an_error() {
        assert!(EtcdClient::new(Vec::<String>::new()).is_err());
        assert!(EtcdClient::new([" "]).is_err());
        assert!(EtcdClient::new(["127.0.0.1:2379", "http://localhost:2379"]).is_ok());
    }

    #[test]
    fn the_password_never_prints() {
        let builder = EtcdClient::builder(["127.0.0.1:2379"]).credentials("root", "pa55word");
        let shown = format!("{builder:?}");
        assert!(
            shown.contains("root") && !shown.contains("pa55word"),
            "{shown}"
        );
    }

    #[test]
    fn https_and_http_endpoints_do_not_mix() {
        let err = EtcdClient::new(["https://a:2379", "http://b:2379"]).expect_err("mixed");
        assert!(err.to_string().contains("mix"), "{err}");
    }

    /// An `https://` endpoint without `tls_config` still speaks TLS: what reaches the socket
    /// first is a TLS ClientHello, not the HTTP/2 preface (and so never the password).
    #[tokio::test]
    async fn https_endpoints_use_tls_by_default() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let built = EtcdClient::builder([format!("https://{addr}")])
            .credentials("root", "pa55word")
            .timeout(Duration::from_secs(5))
            .build();
        let client = match built {
            Ok(client) => client,
            // A machine without system CA certificates: only TLS needs them, so the error
            // itself shows that TLS was chosen.
            Err(e) => {
                assert!(e.to_string().contains("CA certificates"), "{e}");
                return;
            }
        };
        let call = tokio::spawn(async move { client.get_prefix(b"k/").await });
        let (mut socket, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the client connects")
            .expect("accept");
        let mut first = [0u8; 3];
        socket.read_exact(&mut first).await.expect("read");
        // A TLS record of type handshake (22), version 3.x.
        assert_eq!(&first[..2], &[0x16, 0x03], "{first:?}");
        drop(socket);
        call.abort();
    }
}
