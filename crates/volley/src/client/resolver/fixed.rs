//! Resolvers whose answer is the target itself: `ipv4`, `ipv6`, `unix`, `unix-abstract` and
//! `passthrough`.

use super::{Address, Resolver, ResolverBuilder, ResolverUpdate, Target, UpdateSink};
use crate::Status;

pub(super) struct FixedResolverBuilder {
    scheme: &'static str,
}

impl FixedResolverBuilder {
    pub(super) fn new(scheme: &'static str) -> FixedResolverBuilder {
        FixedResolverBuilder { scheme }
    }
}

struct Fixed;

impl Resolver for Fixed {}

impl ResolverBuilder for FixedResolverBuilder {
    fn scheme(&self) -> &str {
        self.scheme
    }

    fn build(&self, target: &Target, sink: UpdateSink) -> Result<Box<dyn Resolver>, Status> {
        let addresses = match self.scheme {
            "ipv4" | "ipv6" => target
                .ip_addresses()
                .map_err(|e| Status::invalid_argument(format!("target {target}: {e}")))?
                .into_iter()
                .map(Address::tcp)
                .collect(),
            "unix" => vec![Address::unix(target.endpoint())],
            "unix-abstract" => vec![Address::unix_abstract(target.endpoint().as_bytes())],
            _ => vec![Address::parse(target.endpoint())],
        };
        sink.update(ResolverUpdate::new(addresses));
        Ok(Box::new(Fixed))
    }
}
