//! Routes a call by `:path` (`/package.Service/Method`) to its service.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BoxFuture, ServerCall, Service};

/// Services by fully-qualified name.
#[derive(Default)]
pub(crate) struct Router {
    services: HashMap<&'static str, Arc<dyn Service>>,
}

impl Router {
    pub(crate) fn add(&mut self, service: Arc<dyn Service>) {
        self.services.insert(service.name(), service);
    }

    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.services.keys().copied().collect()
    }

    /// Starts the call at `path`, or answers UNIMPLEMENTED and returns `None`.
    pub(crate) fn route(&self, path: &str, call: ServerCall) -> Option<BoxFuture<()>> {
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.rsplit_once('/'))
        else {
            call.unimplemented(format!("malformed method path {path:?}"));
            return None;
        };
        let Some(svc) = self.services.get(service) else {
            call.unimplemented(format!("unknown service {service}"));
            return None;
        };
        svc.call(method, call)
    }
}
