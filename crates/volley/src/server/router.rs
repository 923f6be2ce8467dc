//! Routes a call by `:path` (`/package.Service/Method`) to its service.

use std::sync::Arc;

use super::{BoxFuture, ServerCall, Service};
use crate::method_path;
use crate::untrusted::Quoted;

/// Services by fully-qualified name.
#[derive(Default)]
pub(crate) struct Router {
    /// A server has a handful of services: a linear scan of their names beats hashing one.
    services: Vec<(&'static str, Arc<dyn Service>)>,
}

impl Router {
    pub(crate) fn add(&mut self, service: Arc<dyn Service>) {
        let name = service.name();
        match self.services.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = service,
            None => self.services.push((name, service)),
        }
    }

    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.services.iter().map(|(n, _)| *n).collect()
    }

    /// Starts the call at `path`, or answers UNIMPLEMENTED and returns `None`.
    pub(crate) fn route(&self, path: &str, call: ServerCall) -> Option<BoxFuture<()>> {
        let Some((service, method)) = path.strip_prefix('/').and_then(method_path::split_name)
        else {
            call.unimplemented(format!("malformed method path {}", Quoted(path.as_bytes())));
            return None;
        };
        let Some((_, svc)) = self.services.iter().find(|(n, _)| *n == service) else {
            call.unimplemented(format!("unknown service {}", Quoted(service.as_bytes())));
            return None;
        };
        svc.call(method, call)
    }
}
