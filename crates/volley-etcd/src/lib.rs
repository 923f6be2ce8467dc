//! Service discovery on etcd for Volley.
//!
//! - [`Registrar`] registers a server's address under a service name, attached to a lease it
//!   keeps alive, and removes it on graceful shutdown ([`Registration::deregister_on`]).
//! - [`EtcdResolverBuilder`] resolves `etcd:///<name>` targets: it reads the service's
//!   endpoints, then watches them, so channels (with `round_robin` or `pick_first`) follow
//!   servers as they come and go.
//!
//! Keys and values are those of etcd's Go `client/v3/naming/endpoints` package ([`naming`]),
//! so Go services registered with `endpoints.Manager` are found by Volley clients, and Volley
//! servers by Go clients using etcd's resolver. The etcd client ([`EtcdClient`]) is Volley's
//! own, generated from the project's copy of etcd's v3 API (`proto/`), with failover between
//! endpoints and optional user/password authentication.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use volley_etcd::{EtcdClient, EtcdResolverBuilder};
//! let etcd = EtcdClient::new(["127.0.0.1:2379"])?;
//! let channel = volley::Channel::builder("etcd:///kvdb")
//!     .resolver(EtcdResolverBuilder::new(etcd))
//!     .load_balancing_policy("round_robin")
//!     .build()?;
//! # drop(channel);
//! # Ok(())
//! # }
//! ```

pub mod auth;
mod client;
pub mod naming;
mod registrar;
mod resolver;

pub use client::{EtcdClient, EtcdClientBuilder, KeepAlive, WatchStream};
pub use registrar::{Registrar, Registration};
pub use resolver::{ENDPOINTS_ENV, EtcdResolverBuilder, register_from_env};

/// etcd's v3 API as Volley generates it from `proto/` (the subset discovery uses).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    /// `mvccpb`: keys, values and watch events.
    pub mod mvccpb {
        include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    }
    /// `etcdserverpb`: the KV, Watch, Lease and Auth services.
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }
}
