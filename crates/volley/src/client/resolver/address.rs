//! [`Address`]: where a subchannel connects, and [`Attributes`] that travel with it.

use std::any::{Any, TypeId};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// One address a subchannel can connect to: a TCP socket address, a `host:port` resolved
/// when connecting (the `passthrough` scheme), or a Unix socket (by path or abstract name).
///
/// An address can carry [`Attributes`] from its resolver to the balancer (a weight, a zone,
/// the endpoint's metadata in etcd). They do not take part in comparisons: two addresses
/// are equal when they lead to the same place, so a balancer keeps its subchannel when only
/// the attributes change.
#[derive(Debug, Clone)]
pub struct Address {
    pub(crate) kind: Kind,
    attributes: Attributes,
}

impl PartialEq for Address {
    fn eq(&self, other: &Address) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Address) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Address {
    fn cmp(&self, other: &Address) -> Ordering {
        self.kind.cmp(&other.kind)
    }
}

/// Typed values attached to an [`Address`], at most one of each type (as grpc-go's
/// `attributes.Attributes`). Cheap to clone.
///
/// ```
/// use volley::resolver::{Address, Attributes};
///
/// #[derive(Debug, PartialEq)]
/// struct Zone(&'static str);
///
/// let a = Address::parse("10.0.0.1:50051").with_attribute(Zone("eu-west-1a"));
/// assert_eq!(a.attributes().get::<Zone>(), Some(&Zone("eu-west-1a")));
/// assert_eq!(a, Address::parse("10.0.0.1:50051"), "attributes do not change equality");
/// ```
#[derive(Clone, Default)]
pub struct Attributes {
    values: Vec<(TypeId, &'static str, Arc<dyn Any + Send + Sync>)>,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Sets the attribute of type `T` (replacing one of that type).
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.values.retain(|(t, _, _)| *t != id);
        self.values
            .push((id, std::any::type_name::<T>(), Arc::new(value)));
    }

    /// The attribute of type `T`, if set.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(t, _, _)| *t == id)
            .and_then(|(_, _, v)| v.downcast_ref::<T>())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.values.iter().map(|(_, name, _)| name))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Tcp(SocketAddr),
    HostPort(String),
    Unix(PathBuf),
    UnixAbstract(Vec<u8>),
}

/// An [`Address`] attribute: the JSON metadata a service registry stores with the endpoint
/// (the `Metadata` of etcd's `naming/endpoints` values, set by `volley-etcd`'s resolver).
/// `weighted_round_robin` reads a static weight from its `"weight"` field.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointMetadata(pub serde_json::Value);

/// An [`Address`] attribute: the address's share of calls relative to the others, for
/// `weighted_round_robin` when the backends send no load reports (0 counts as 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub u32);

impl Address {
    fn new(kind: Kind) -> Address {
        Address {
            kind,
            attributes: Attributes::default(),
        }
    }

    /// Adds an attribute (replacing one of its type).
    pub fn with_attribute<T: Any + Send + Sync>(mut self, value: T) -> Address {
        self.attributes.insert(value);
        self
    }

    /// The address's attributes.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The address's attributes, to change.
    pub fn attributes_mut(&mut self) -> &mut Attributes {
        &mut self.attributes
    }

    /// A TCP address.
    pub fn tcp(addr: SocketAddr) -> Address {
        Address::new(Kind::Tcp(addr))
    }

    /// A `host:port` that the system resolver resolves at each connection attempt.
    pub fn host_port(host_port: impl Into<String>) -> Address {
        Address::new(Kind::HostPort(host_port.into()))
    }

    /// A Unix domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::new(Kind::Unix(path.into()))
    }

    /// A Linux abstract Unix socket named `name` (without the leading NUL byte).
    pub fn unix_abstract(name: impl Into<Vec<u8>>) -> Address {
        Address::new(Kind::UnixAbstract(name.into()))
    }

    /// Parses `ip:port` as a TCP address, anything else as a `host:port` to resolve when
    /// connecting.
    pub fn parse(s: &str) -> Address {
        match s.parse::<SocketAddr>() {
            Ok(addr) => Address::tcp(addr),
            Err(_) => Address::host_port(s),
        }
    }

    /// The TCP socket address, when this is one.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Tcp(a) => Some(*a),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::tcp(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Tcp(a) => a.fmt(f),
            Kind::HostPort(h) => f.write_str(h),
            Kind::Unix(p) => write!(f, "unix:{}", p.display()),
            Kind::UnixAbstract(n) => write!(f, "unix-abstract:{}", String::from_utf8_lossy(n)),
        }
    }
}
