//! Name resolution: a [`Resolver`] turns a [`Target`] into [`Address`]es (and optionally a
//! [`ServiceConfig`]) and keeps them current; resolvers are found by scheme in a registry.
//!
//! Built in: `dns` (also for a bare `host:port`), `ipv4`, `ipv6`, `unix`, `unix-abstract`,
//! `passthrough`, and [`ManualResolver`] for programs and tests that push addresses
//! themselves. Add a scheme with [`register`] (for every channel) or
//! [`crate::ChannelBuilder::resolver`] (for one channel).

pub(crate) mod address;
mod dns;
mod fixed;
mod manual;
mod target;

pub use address::{Address, Attributes, EndpointMetadata, Weight};
pub use dns::DnsResolverBuilder;
pub use manual::ManualResolver;
pub use target::{DEFAULT_PORT, Target};

pub(crate) use target::split_host_port;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::mpsc;

pub use super::method_config::{HedgingPolicy, MethodConfig, RetryPolicy, RetryThrottling};
pub use super::service_config::ServiceConfig;
use crate::{Error, Status};

/// What a resolver found: the addresses to balance over and, optionally, a service config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolverUpdate {
    /// The addresses, in the resolver's order of preference.
    pub addresses: Vec<Address>,
    /// A service config that comes with them (it can choose the balancer). Without one, the
    /// channel uses its default config ([`crate::ChannelBuilder::default_service_config`]).
    pub service_config: Option<ServiceConfig>,
    /// Why the service config the resolver found is invalid, if it is: the channel then
    /// keeps the config it had (or its default), as gRPC does.
    pub service_config_error: Option<Error>,
}

impl ResolverUpdate {
    /// An update with `addresses` and no service config.
    pub fn new(addresses: Vec<Address>) -> ResolverUpdate {
        ResolverUpdate {
            addresses,
            service_config: None,
            service_config_error: None,
        }
    }

    /// Adds a service config to the update.
    pub fn with_service_config(mut self, config: ServiceConfig) -> ResolverUpdate {
        self.service_config = Some(config);
        self.service_config_error = None;
        self
    }

    /// Adds a service config in its JSON form, as a resolver reads it from its source: an
    /// invalid one is recorded as `service_config_error` (the channel keeps its previous
    /// config and logs why).
    pub fn with_service_config_json(mut self, json: &str) -> ResolverUpdate {
        match ServiceConfig::from_json(json) {
            Ok(config) => return self.with_service_config(config),
            Err(e) => {
                self.service_config = None;
                self.service_config_error = Some(e);
            }
        }
        self
    }
}

/// What a resolver reported, as the channel's control task receives it.
#[derive(Debug)]
pub(crate) struct ResolverEvent {
    /// Which resolver sent it: an idle channel replaces its resolver, and news from an old
    /// one is ignored.
    pub(crate) generation: u64,
    pub(crate) result: Result<ResolverUpdate, Status>,
}

/// Where a resolver sends what it finds. Cheap to clone; sending after the channel is gone
/// (or after it went idle and replaced the resolver) does nothing.
#[derive(Debug, Clone)]
pub struct UpdateSink {
    events: mpsc::UnboundedSender<ResolverEvent>,
    generation: u64,
}

impl UpdateSink {
    pub(crate) fn new(events: mpsc::UnboundedSender<ResolverEvent>, generation: u64) -> UpdateSink {
        UpdateSink { events, generation }
    }

    /// Sends a new address list (and service config), replacing the previous one.
    pub fn update(&self, update: ResolverUpdate) {
        let _ = self.events.send(ResolverEvent {
            generation: self.generation,
            result: Ok(update),
        });
    }

    /// Reports that resolution failed. The balancer keeps the last good addresses if it has
    /// any; otherwise calls fail with this status (UNAVAILABLE is the usual code).
    pub fn error(&self, status: Status) {
        let _ = self.events.send(ResolverEvent {
            generation: self.generation,
            result: Err(status),
        });
    }

    pub(crate) fn same_as(&self, other: &UpdateSink) -> bool {
        self.generation == other.generation && self.events.same_channel(&other.events)
    }

    /// True once the channel no longer listens (the resolver can stop).
    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }
}

/// Builds resolvers for one scheme.
pub trait ResolverBuilder: Send + Sync + 'static {
    /// The scheme this builder resolves (lower case), e.g. `dns` or `etcd`.
    fn scheme(&self) -> &str;

    /// Starts resolving `target`, sending results to `sink`. Called on the Tokio runtime when
    /// the channel leaves IDLE (its first call, or `connect`); the resolver runs until dropped.
    fn build(&self, target: &Target, sink: UpdateSink) -> Result<Box<dyn Resolver>, Status>;
}

/// A running resolution of one target. Dropping it stops it.
pub trait Resolver: Send + 'static {
    /// A hint that the addresses may be stale (a connection was lost, or the server sent
    /// GOAWAY): resolve again soon. Resolvers that watch their source, or that have nothing
    /// to re-read, ignore it. Default: ignored.
    fn resolve_now(&mut self) {}
}

type Registry = RwLock<HashMap<String, Arc<dyn ResolverBuilder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<String, Arc<dyn ResolverBuilder>> = HashMap::new();
        let builtins: [Arc<dyn ResolverBuilder>; 6] = [
            Arc::new(DnsResolverBuilder::default()),
            Arc::new(fixed::FixedResolverBuilder::new("ipv4")),
            Arc::new(fixed::FixedResolverBuilder::new("ipv6")),
            Arc::new(fixed::FixedResolverBuilder::new("unix")),
            Arc::new(fixed::FixedResolverBuilder::new("unix-abstract")),
            Arc::new(fixed::FixedResolverBuilder::new("passthrough")),
        ];
        for b in builtins {
            map.insert(b.scheme().to_owned(), b);
        }
        RwLock::new(map)
    })
}

/// Registers `builder` for its scheme in every channel built from now on (replacing any
/// builder of that scheme, built-in ones included).
pub fn register(builder: impl ResolverBuilder) {
    let builder: Arc<dyn ResolverBuilder> = Arc::new(builder);
    registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(builder.scheme().to_ascii_lowercase(), builder);
}

/// The registered builder of `scheme`.
pub(crate) fn lookup(scheme: &str) -> Option<Arc<dyn ResolverBuilder>> {
    registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(scheme)
        .cloned()
}
