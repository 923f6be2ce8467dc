//! A channel's options, shared by its layers (the channel, its control task, its
//! subchannels): a leaf module, so that none of them imports another for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;

use super::backoff::BackoffConfig;
use crate::interceptor::Interceptors;

/// Options of a channel's connections and calls.
pub(crate) struct ChannelConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff: BackoffConfig,
    pub(crate) timeout: Option<Duration>,
    pub(crate) wait_for_ready: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) load_balancing_policy: String,
    pub(crate) user_agent: HeaderValue,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) max_header_list_size: u32,
    /// Which HTTP/2 implementation the connections run on.
    #[cfg(feature = "engine")]
    pub(crate) engine: crate::transport::Http2Engine,
    pub(crate) tcp_nodelay: bool,
    pub(crate) disable_health_check: bool,
    pub(crate) interceptors: Interceptors,
    pub(crate) tls: Option<crate::tls::ClientTls>,
    /// The service config used while the resolver provides none.
    pub(crate) default_service_config: Option<std::sync::Arc<super::service_config::ServiceConfig>>,
    /// Opens connections instead of the channel's own sockets, when set.
    pub(crate) connector: Option<std::sync::Arc<dyn super::connector::Connector>>,
    /// Keepalive pings, when enabled.
    pub(crate) keepalive: Option<ClientKeepalive>,
    /// Limits on configured retries and hedging.
    pub(crate) retry: super::retry::RetryLimits,
    /// Every call's middleware, in order.
    pub(crate) middlewares: crate::middleware::Middlewares,
}

/// A channel's keepalive (gRFC A8), shared by its subchannels.
#[derive(Debug)]
pub(crate) struct ClientKeepalive {
    /// The keepalive time of new connections, in milliseconds: doubled each time a server
    /// answers with GOAWAY `too_many_pings`.
    pub(crate) time_ms: AtomicU64,
    pub(crate) timeout: Duration,
    pub(crate) without_calls: bool,
}

impl ClientKeepalive {
    /// The keepalive time for a new connection.
    pub(crate) fn time(&self) -> Duration {
        Duration::from_millis(self.time_ms.load(Ordering::Relaxed))
    }

    /// A server said `too_many_pings`: new connections ping half as often (as grpc-go).
    /// `used` is the time of the connection that was told off; doubling it, not the current
    /// value, keeps several connections told off at once from doubling it many times.
    pub(crate) fn too_many_pings(&self, used: Duration) {
        let doubled = (used.as_millis() as u64).saturating_mul(2);
        let before = self.time_ms.fetch_max(doubled, Ordering::Relaxed);
        if doubled > before {
            tracing::warn!(
                keepalive_time = ?Duration::from_millis(doubled),
                "server sent GOAWAY too_many_pings: doubling the keepalive time"
            );
        }
    }
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .field("wait_for_ready", &self.wait_for_ready)
            .field("idle_timeout", &self.idle_timeout)
            .field("load_balancing_policy", &self.load_balancing_policy)
            .field("user_agent", &self.user_agent)
            .field("tls", &self.tls.is_some())
            .field("connector", &self.connector.is_some())
            .field("keepalive", &self.keepalive)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
