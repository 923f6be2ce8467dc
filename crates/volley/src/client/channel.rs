//! `Channel`: a cheap-to-clone handle to a target that every generated client calls through.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use super::subchannel::Subchannel;
use crate::interceptor::Interceptors;
use crate::transport::client::ResponseFuture;
use crate::transport::{DEFAULT_CONNECTION_WINDOW, DEFAULT_STREAM_WINDOW, SendBody};
use crate::{Error, Interceptor, Status};

/// Options of a channel's connections and calls.
#[derive(Debug)]
pub(crate) struct ChannelConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) user_agent: HeaderValue,
    pub(crate) initial_stream_window_size: u32,
    pub(crate) initial_connection_window_size: u32,
    pub(crate) tcp_nodelay: bool,
    pub(crate) interceptors: Interceptors,
}

struct ChannelInner {
    scheme: Scheme,
    authority: Authority,
    config: Arc<ChannelConfig>,
    subchannel: Subchannel,
}

/// A virtual connection to a target, shared by every clone. Connects lazily on the first call,
/// reconnects after the connection drops, and multiplexes concurrent calls over HTTP/2.
///
/// ```no_run
/// # async fn demo() -> Result<(), volley::Error> {
/// let channel = volley::Channel::builder("http://127.0.0.1:50051")
///     .timeout(std::time::Duration::from_secs(5))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field(
                "target",
                &format_args!("{}://{}", self.inner.scheme, self.inner.authority),
            )
            .finish()
    }
}

impl Channel {
    /// A lazily connecting channel to `target` (`http://host:port`, or `host:port`) with
    /// default options.
    pub fn new(target: &str) -> Result<Channel, Error> {
        Channel::builder(target).build()
    }

    /// A builder for a channel to `target`.
    pub fn builder(target: &str) -> ChannelBuilder {
        ChannelBuilder {
            target: target.to_owned(),
            config: ChannelConfig {
                connect_timeout: Duration::from_secs(20),
                timeout: None,
                user_agent: HeaderValue::from_static(concat!("volley/", env!("CARGO_PKG_VERSION"))),
                initial_stream_window_size: DEFAULT_STREAM_WINDOW,
                initial_connection_window_size: DEFAULT_CONNECTION_WINDOW,
                tcp_nodelay: true,
                interceptors: Interceptors::default(),
            },
        }
    }

    /// Connects now rather than on the first call; fails with UNAVAILABLE when the target
    /// cannot be reached.
    pub async fn connect(&self) -> Result<(), Status> {
        self.inner.subchannel.connect_now().await
    }

    pub(crate) fn config(&self) -> &ChannelConfig {
        &self.inner.config
    }

    pub(crate) fn uri(&self, path: &'static str) -> http::Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.inner.scheme.clone());
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static(path));
        http::Uri::from_parts(parts).unwrap_or_default()
    }

    /// Opens a stream for `request`. A connection that refuses new streams (after GOAWAY, or
    /// closed) is replaced and the request sent again: the server never saw it.
    pub(crate) async fn open_stream(
        &self,
        mut make_request: impl FnMut() -> http::Request<()>,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendBody), Status> {
        let sub = &self.inner.subchannel;
        let mut last_error = None;
        for _ in 0..2 {
            let sender = sub.sender().await?;
            match sender.open(make_request(), end_of_stream).await {
                Ok(opened) => return Ok(opened),
                Err(e) => {
                    sub.discard_connection();
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            Some(e) => Status::unavailable(format!("could not open a stream: {e}")),
            None => Status::unavailable("could not open a stream"),
        })
    }
}

/// Configures a [`Channel`]. Every setter states its default.
#[must_use]
#[derive(Debug)]
pub struct ChannelBuilder {
    target: String,
    config: ChannelConfig,
}

impl ChannelBuilder {
    /// How long one connection attempt may take. Default: 20 s (gRPC's minimum connect
    /// timeout, `doc/connection-backoff.md`).
    pub fn connect_timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// The timeout of calls that set none themselves ([`crate::Request::set_timeout`]).
    /// Default: none.
    pub fn timeout(mut self, timeout: Duration) -> ChannelBuilder {
        self.config.timeout = Some(timeout);
        self
    }

    /// The `user-agent` sent with every call, before Volley's own. Default: `volley/<version>`.
    pub fn user_agent(mut self, user_agent: &str) -> Result<ChannelBuilder, Error> {
        let value = format!("{user_agent} volley/{}", env!("CARGO_PKG_VERSION"));
        self.config.user_agent = HeaderValue::from_str(&value)
            .map_err(|e| Error::new(format!("invalid user agent {user_agent:?}: {e}")))?;
        Ok(self)
    }

    /// The HTTP/2 receive window of each stream. Default: 1 MiB.
    pub fn initial_stream_window_size(mut self, bytes: u32) -> ChannelBuilder {
        self.config.initial_stream_window_size = bytes;
        self
    }

    /// The HTTP/2 receive window of each connection. Default: 2 MiB.
    pub fn initial_connection_window_size(mut self, bytes: u32) -> ChannelBuilder {
        self.config.initial_connection_window_size = bytes;
        self
    }

    /// Sets `TCP_NODELAY` on the channel's sockets. Default: true.
    pub fn tcp_nodelay(mut self, enabled: bool) -> ChannelBuilder {
        self.config.tcp_nodelay = enabled;
        self
    }

    /// Adds an interceptor that sees every call on the channel before it is sent (to add
    /// metadata such as credentials, or to reject the call). Interceptors run in the order
    /// added. Default: none.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> ChannelBuilder {
        self.config.interceptors.push(interceptor);
        self
    }

    /// Builds the channel; it connects on the first call.
    pub fn build(self) -> Result<Channel, Error> {
        let (scheme, authority) = parse_target(&self.target)?;
        let addr = authority.as_str().to_owned();
        let config = Arc::new(self.config);
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                scheme,
                authority,
                subchannel: Subchannel::new(addr, config.clone()),
                config,
            }),
        })
    }

    /// Builds the channel and connects it at once.
    pub async fn connect(self) -> Result<Channel, Error> {
        let channel = self.build()?;
        channel
            .connect()
            .await
            .map_err(|s| Error::new(s.message().to_owned()))?;
        Ok(channel)
    }
}

/// Splits `http://host:port` (or `host:port`) into scheme and authority; the port defaults
/// to 80 for `http`.
fn parse_target(target: &str) -> Result<(Scheme, Authority), Error> {
    let with_scheme;
    let target = if target.contains("://") {
        target
    } else {
        with_scheme = format!("http://{target}");
        &with_scheme
    };
    let uri: http::Uri = target
        .parse()
        .map_err(|e| Error::new(format!("invalid target {target:?}: {e}")))?;
    let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
    if scheme != Scheme::HTTP {
        return Err(Error::new(format!(
            "unsupported scheme {scheme} in target {target:?}; this version speaks plaintext http"
        )));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| Error::new(format!("target {target:?} has no host")))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(Error::new(format!(
            "target {target:?} has a path; a target is scheme://host:port"
        )));
    }
    let authority = if authority.port().is_none() {
        format!("{}:80", authority.host())
            .parse()
            .map_err(|e| Error::new(format!("invalid target {target:?}: {e}")))?
    } else {
        authority
    };
    Ok((scheme, authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let (s, a) = parse_target("http://127.0.0.1:50051").expect("valid");
        assert_eq!((s.as_str(), a.as_str()), ("http", "127.0.0.1:50051"));
        let (_, a) = parse_target("localhost:1234").expect("valid");
        assert_eq!(a.as_str(), "localhost:1234");
        let (_, a) = parse_target("http://[::1]:9").expect("valid");
        assert_eq!(a.as_str(), "[::1]:9");
        let (_, a) = parse_target("http://example.com").expect("valid");
        assert_eq!(a.as_str(), "example.com:80");
        assert!(parse_target("ftp://x:1").is_err());
        assert!(parse_target("http://x:1/path").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn uri_has_scheme_authority_and_path() {
        let ch = Channel::new("http://127.0.0.1:1").expect("valid");
        assert_eq!(ch.uri("/a.B/C").to_string(), "http://127.0.0.1:1/a.B/C");
    }
}
