//! [`Address`]: where a subchannel connects.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One address a subchannel can connect to: a TCP socket address, a `host:port` resolved
/// when connecting (the `passthrough` scheme), or a Unix socket (by path or abstract name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub(crate) Kind);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Tcp(SocketAddr),
    HostPort(String),
    Unix(PathBuf),
    UnixAbstract(Vec<u8>),
}

impl Address {
    /// A TCP address.
    pub fn tcp(addr: SocketAddr) -> Address {
        Address(Kind::Tcp(addr))
    }

    /// A `host:port` that the system resolver resolves at each connection attempt.
    pub fn host_port(host_port: impl Into<String>) -> Address {
        Address(Kind::HostPort(host_port.into()))
    }

    /// A Unix domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address(Kind::Unix(path.into()))
    }

    /// A Linux abstract Unix socket named `name` (without the leading NUL byte).
    pub fn unix_abstract(name: impl Into<Vec<u8>>) -> Address {
        Address(Kind::UnixAbstract(name.into()))
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
        match &self.0 {
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
        match &self.0 {
            Kind::Tcp(a) => a.fmt(f),
            Kind::HostPort(h) => f.write_str(h),
            Kind::Unix(p) => write!(f, "unix:{}", p.display()),
            Kind::UnixAbstract(n) => write!(f, "unix-abstract:{}", String::from_utf8_lossy(n)),
        }
    }
}
