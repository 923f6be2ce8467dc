//! [`ManualResolver`]: addresses a program pushes itself.

use std::sync::{Arc, Mutex, PoisonError};

use super::{Resolver, ResolverBuilder, ResolverUpdate, Target, UpdateSink};
use crate::Status;

/// A resolver whose addresses the program sets, for tests and for programs that learn
/// addresses their own way. Register it with [`crate::ChannelBuilder::resolver`] and dial
/// `<scheme>:///anything`; every [`ManualResolver::update`] reaches the channels built on it.
///
/// ```
/// use volley::resolver::{Address, ManualResolver, ResolverUpdate};
/// let manual = ManualResolver::new("manual");
/// manual.update(ResolverUpdate::new(vec![Address::parse("127.0.0.1:50051")]));
/// let channel = volley::Channel::builder("manual:///backends")
///     .resolver(manual.clone())
///     .build()
///     .unwrap();
/// # drop(channel);
/// ```
#[derive(Clone)]
pub struct ManualResolver {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Result<ResolverUpdate, Status>>,
    sinks: Vec<UpdateSink>,
    resolve_now_count: u64,
}

impl std::fmt::Debug for ManualResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualResolver")
            .field("scheme", &self.inner.scheme)
            .finish()
    }
}

impl ManualResolver {
    /// A manual resolver for targets of `scheme`.
    pub fn new(scheme: &str) -> ManualResolver {
        ManualResolver {
            inner: Arc::new(Inner {
                scheme: scheme.to_ascii_lowercase(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `update` to every channel using this resolver, and to channels that start later.
    pub fn update(&self, update: ResolverUpdate) {
        let mut state = self.state();
        state.sinks.retain(|s| !s.is_closed());
        for sink in &state.sinks {
            sink.update(update.clone());
        }
        state.last = Some(Ok(update));
    }

    /// Reports a resolution error to every channel using this resolver.
    pub fn error(&self, status: Status) {
        let mut state = self.state();
        state.sinks.retain(|s| !s.is_closed());
        for sink in &state.sinks {
            sink.error(status.clone());
        }
        state.last = Some(Err(status));
    }

    /// How many times channels asked for re-resolution.
    pub fn resolve_now_count(&self) -> u64 {
        self.state().resolve_now_count
    }
}

struct Running {
    owner: ManualResolver,
    sink: UpdateSink,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.owner.state();
        state
            .sinks
            .retain(|s| !s.is_closed() && !s.same_as(&self.sink));
    }
}

impl Resolver for Running {
    fn resolve_now(&mut self) {
        self.owner.state().resolve_now_count += 1;
    }
}

impl ResolverBuilder for ManualResolver {
    fn scheme(&self) -> &str {
        &self.inner.scheme
    }

    fn build(&self, _target: &Target, sink: UpdateSink) -> Result<Box<dyn Resolver>, Status> {
        let mut state = self.state();
        match &state.last {
            Some(Ok(update)) => sink.update(update.clone()),
            Some(Err(status)) => sink.error(status.clone()),
            None => {}
        }
        state.sinks.retain(|s| !s.is_closed());
        state.sinks.push(sink.clone());
        Ok(Box::new(Running {
            owner: self.clone(),
            sink,
        }))
    }
}
