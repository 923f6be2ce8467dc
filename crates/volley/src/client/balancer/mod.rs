//! Load balancing: a [`Balancer`] receives the resolver's addresses and the subchannels'
//! state changes, creates and removes [`Subchannel`]s, and publishes a [`Picker`] that every
//! call asks for a subchannel. Balancers are found by name in a registry.
//!
//! Built in: `pick_first` (the default: the first address that connects, in order, failing
//! over to the next), `round_robin` (a connection to every address, calls rotated over the
//! READY ones), `least_request` (gRFC A48: the least loaded of a few READY ones drawn at
//! random) and `weighted_round_robin` (gRFC A58: in proportion to weights from the backends'
//! ORCA load reports, see [`crate::orca`], or from address attributes). Choose one with [`crate::ChannelBuilder::load_balancing_policy`] or a service
//! config's `loadBalancingConfig`; add one with [`register`].
//!
//! A balancer parses its own JSON config ([`BalancerBuilder::parse_config`]), reads
//! [`Address`] attributes the resolver set, can follow each call it picked to its end
//! ([`Pick::on_done`]: the status and trailers, where servers put load reports), and can
//! schedule work on its channel's control task ([`Helper::schedule`], [`Helper::waker`]).
//! `examples/src/custom_balancer.rs` is a complete custom balancer; `volley::testing`'s
//! fake channel (feature `test-util`) unit-tests one without sockets.

mod pick_first;
mod round_robin;
mod weighted_round_robin;

pub use super::connectivity::ConnectivityState;
pub use super::resolver::{Address, Attributes, EndpointMetadata, Weight};
pub use super::subchannel::Subchannel;
pub use pick_first::PickFirstBuilder;
pub use round_robin::{LeastRequestBuilder, RoundRobinBuilder};
/// The JSON value type of balancer configs (`serde_json`'s).
pub use serde_json::Value as JsonValue;
pub use weighted_round_robin::WeightedRoundRobinBuilder;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use super::resolver::ResolverUpdate;
use crate::metadata::MetadataMap;
use crate::{Error, Status};

/// What a balancer may ask of its channel. The channel's control task implements it, and so
/// does `crate::testing`'s fake channel; [`Helper`] is the public face.
pub(crate) trait ChannelControl: Send {
    /// A new IDLE subchannel for `address`.
    fn new_subchannel(&mut self, address: &Address) -> Subchannel;
    /// Publishes the channel's state and picker.
    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>);
    /// Asks the resolver to resolve again.
    fn resolve_now(&mut self);
    /// Calls the balancer's `wake(token)` after `delay`.
    fn schedule(&mut self, delay: Duration, token: u64);
    /// A handle that calls the balancer's `wake(token)` from anywhere.
    fn waker(&mut self) -> Waker;
}

/// The channel as a balancer sees it: it creates subchannels, publishes pickers, asks for
/// re-resolution and runs the balancer's timers. Balancers get one in every call.
pub struct Helper<'a> {
    control: &'a mut dyn ChannelControl,
}

impl std::fmt::Debug for Helper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").finish_non_exhaustive()
    }
}

impl<'a> Helper<'a> {
    pub(crate) fn new(control: &'a mut dyn ChannelControl) -> Helper<'a> {
        Helper { control }
    }

    /// A new IDLE subchannel for `address`; [`Subchannel::connect`] starts it.
    pub fn new_subchannel(&mut self, address: &Address) -> Subchannel {
        self.control.new_subchannel(address)
    }

    /// Publishes the channel's state and the picker every call from now on asks.
    pub fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.control.update_picker(state, picker);
    }

    /// Asks the resolver to resolve again.
    pub fn resolve_now(&mut self) {
        self.control.resolve_now();
    }

    /// Calls [`Balancer::wake`] with `token` after `delay`, on the channel's control task
    /// (so the balancer needs no lock of its own). Timers end with the balancer: they do
    /// not fire once the channel has switched policy or gone IDLE.
    pub fn schedule(&mut self, delay: Duration, token: u64) {
        self.control.schedule(delay, token);
    }

    /// A handle for the balancer's own tasks and threads: [`Waker::wake`] calls
    /// [`Balancer::wake`] on the control task, in turn with everything else.
    pub fn waker(&mut self) -> Waker {
        self.control.waker()
    }
}

/// Calls its balancer's [`Balancer::wake`] from any task or thread; from
/// [`Helper::waker`]. Cheap to clone; waking a balancer that is gone does nothing.
#[derive(Clone)]
pub struct Waker(Arc<dyn Fn(u64) + Send + Sync>);

impl Waker {
    pub(crate) fn new(wake: impl Fn(u64) + Send + Sync + 'static) -> Waker {
        Waker(Arc::new(wake))
    }

    /// Asks the control task to call the balancer's `wake(token)`.
    pub fn wake(&self, token: u64) {
        (self.0)(token);
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// A picker that makes every call wait for the next picker (IDLE, CONNECTING).
#[derive(Debug)]
pub struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::Queue
    }
}

/// A picker that fails every call with one status (TRANSIENT_FAILURE); calls with
/// wait-for-ready wait instead.
#[derive(Debug)]
pub struct FailPicker(pub Status);

impl Picker for FailPicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}

/// What a picker knows about the call it picks for.
#[derive(Debug)]
pub struct PickInfo<'a> {
    path: &'a str,
    metadata: Option<&'a MetadataMap>,
    attempted: &'a [Address],
}

impl<'a> PickInfo<'a> {
    /// What a picker knows about a call to `path` with no metadata (for pickers' tests).
    pub fn new(path: &'a str) -> PickInfo<'a> {
        PickInfo {
            path,
            metadata: None,
            attempted: &[],
        }
    }

    /// The same call, after attempts that went to `addresses` (for pickers' tests).
    pub fn after_attempts(self, addresses: &'a [Address]) -> PickInfo<'a> {
        PickInfo {
            attempted: addresses,
            ..self
        }
    }

    pub(crate) fn with_metadata(path: &'a str, metadata: &'a MetadataMap) -> PickInfo<'a> {
        PickInfo {
            path,
            metadata: Some(metadata),
            attempted: &[],
        }
    }

    /// The method's path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The call's request metadata (after the channel's interceptors), if any.
    pub fn metadata(&self) -> Option<&MetadataMap> {
        self.metadata
    }

    /// The backends that earlier attempts of this call went to: hedged attempts, and
    /// retries (gRFC A6). A picker with other READY backends should prefer them; empty for
    /// a call's first attempt.
    pub fn attempted(&self) -> &[Address] {
        self.attempted
    }

    /// Whether `subchannel`'s backend was already tried by this call.
    pub fn was_attempted(&self, subchannel: &Subchannel) -> bool {
        !self.attempted.is_empty() && self.attempted.contains(subchannel.address())
    }
}

/// A picker's answer for one call.
#[derive(Debug)]
pub enum PickResult {
    /// Send the call on this subchannel (if it is no longer READY, the call waits for the
    /// next picker).
    Pick(Pick),
    /// Wait for the next picker.
    Queue,
    /// Fail the call with this status, unless it waits for ready; then it waits for the next
    /// picker.
    Fail(Status),
}

impl PickResult {
    /// The call goes to `subchannel`.
    pub fn pick(subchannel: Subchannel) -> PickResult {
        PickResult::Pick(Pick::new(subchannel))
    }

    /// The subchannel picked, if the call got one.
    pub fn subchannel(&self) -> Option<&Subchannel> {
        match self {
            PickResult::Pick(p) => Some(&p.subchannel),
            _ => None,
        }
    }
}

/// A subchannel picked for a call, and what to do when the call ends. Dropped unused, it
/// runs its callback with CANCELLED.
pub struct Pick {
    /// Where the call goes.
    pub subchannel: Subchannel,
    done: CallDone,
}

/// Runs once when a picked call ends; see [`Pick::on_done`].
pub type DoneCallback = Box<dyn FnOnce(&CallEnd<'_>) + Send + 'static>;

impl Pick {
    /// The call goes to `subchannel`.
    pub fn new(subchannel: Subchannel) -> Pick {
        Pick {
            subchannel,
            done: CallDone(None),
        }
    }

    /// Runs `done` once when the call ends, however it ends: with the status and trailers the
    /// server sent, or the status the client ended it with (CANCELLED when the caller dropped
    /// it, DEADLINE_EXCEEDED, UNAVAILABLE when the connection failed). A balancer counts
    /// outstanding calls this way, or reads load reports from the trailers. The callback runs
    /// on the task that ends the call: keep it short and non-blocking.
    pub fn on_done(mut self, done: impl FnOnce(&CallEnd<'_>) + Send + 'static) -> Pick {
        self.done = CallDone(Some(Box::new(done)));
        self
    }

    /// Ends the call as the channel does when it is over: runs the callback with `end` (for
    /// balancers' tests).
    pub fn finish(mut self, end: &CallEnd<'_>) {
        self.done.finish(end.status, end.trailers);
    }

    pub(crate) fn into_parts(self) -> (Subchannel, CallDone) {
        (self.subchannel, self.done)
    }
}

impl std::fmt::Debug for Pick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick")
            .field("subchannel", &self.subchannel)
            .field("on_done", &self.done.is_armed())
            .finish()
    }
}

/// How a picked call ended, for [`Pick::on_done`].
#[derive(Debug)]
pub struct CallEnd<'a> {
    status: &'a Status,
    trailers: &'a MetadataMap,
}

impl<'a> CallEnd<'a> {
    /// A call's end (for balancers' tests).
    pub fn new(status: &'a Status, trailers: &'a MetadataMap) -> CallEnd<'a> {
        CallEnd { status, trailers }
    }

    /// The call's status (OK when it succeeded).
    pub fn status(&self) -> &Status {
        self.status
    }

    /// The trailers the server sent (empty when it sent none: the call failed or was
    /// cancelled on the client).
    pub fn trailers(&self) -> &MetadataMap {
        self.trailers
    }
}

/// The done callback of a call in flight: runs once, at the call's end, or with CANCELLED
/// when dropped before.
#[derive(Default)]
pub(crate) struct CallDone(Option<DoneCallback>);

impl CallDone {
    /// Whether a callback waits.
    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    /// The call ended with `status` and `trailers`.
    pub(crate) fn finish(&mut self, status: &Status, trailers: &MetadataMap) {
        if let Some(done) = self.0.take() {
            done(&CallEnd { status, trailers });
        }
    }

    /// The call ended with `status`, whose metadata are the trailers.
    pub(crate) fn finish_with(&mut self, status: &Status) {
        if self.0.is_some() {
            self.finish(status, status.metadata());
        }
    }

    /// This callback (if any), then the end of the attempt's middleware record.
    pub(crate) fn then_record(self, record: crate::middleware::AttemptRecord) -> CallDone {
        let mut first = self;
        CallDone(Some(Box::new(move |end: &CallEnd<'_>| {
            first.finish(end.status, end.trailers);
            record.finish(end.status);
        })))
    }
}

impl Drop for CallDone {
    fn drop(&mut self) {
        if self.0.is_some() {
            let status = Status::cancelled("the call was cancelled");
            self.finish(&status, &MetadataMap::new());
        }
    }
}

impl std::fmt::Debug for CallDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CallDone").field(&self.0.is_some()).finish()
    }
}

/// Chooses a subchannel for each call. Called concurrently from every task that makes
/// calls, so it should be quick and lock-free.
pub trait Picker: Send + Sync + 'static {
    /// The subchannel for a call.
    fn pick(&self, info: &PickInfo<'_>) -> PickResult;
}

/// A load-balancing policy. The channel calls it from its control task, one call at a time.
pub trait Balancer: Send + 'static {
    /// New addresses (and service config) from the resolver, with the balancer's config
    /// (parsed by its builder from the service config's `loadBalancingConfig`, or from `{}`
    /// when the channel chose the policy).
    fn resolver_update(
        &mut self,
        update: &ResolverUpdate,
        config: &BalancerConfig,
        helper: &mut Helper<'_>,
    );

    /// The resolver failed. Balancers keep using the addresses they have; with none, they
    /// publish a picker that fails calls with `error`.
    fn resolver_error(&mut self, error: &Status, helper: &mut Helper<'_>);

    /// A subchannel this balancer created changed state; `error` says why for
    /// TRANSIENT_FAILURE and for a READY subchannel that went IDLE.
    fn subchannel_state(
        &mut self,
        subchannel: &Subchannel,
        state: ConnectivityState,
        error: Option<&Status>,
        helper: &mut Helper<'_>,
    );

    /// A call found the channel IDLE: connect.
    fn exit_idle(&mut self, helper: &mut Helper<'_>);

    /// A timer set with [`Helper::schedule`] fired, or a [`Waker`] was woken, with `token`.
    /// Default: nothing.
    fn wake(&mut self, token: u64, helper: &mut Helper<'_>) {
        let _ = (token, helper);
    }
}

/// A balancer's parsed config, as its builder made it from JSON: any type, read back with
/// [`BalancerConfig::get`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct BalancerConfig(Option<Arc<dyn Any + Send + Sync>>);

impl BalancerConfig {
    /// A config holding `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> BalancerConfig {
        BalancerConfig(Some(Arc::new(value)))
    }

    /// No config (the policy takes none).
    pub fn none() -> BalancerConfig {
        BalancerConfig(None)
    }

    /// The config, if it is a `T`.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.as_ref().and_then(|v| v.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for BalancerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BalancerConfig")
            .field(&self.0.is_some())
            .finish()
    }
}

/// Builds balancers of one policy.
pub trait BalancerBuilder: Send + Sync + 'static {
    /// The policy's name, as in `loadBalancingConfig` (e.g. `round_robin`).
    fn name(&self) -> &str;

    /// Parses and validates this policy's config: the value under its name in a
    /// `loadBalancingConfig` entry (`{}` when the channel chose the policy by name). An
    /// error makes the channel try the next entry (`doc/service_config.md`). Default: any
    /// JSON object, no config.
    fn parse_config(&self, config: &JsonValue) -> Result<BalancerConfig, Error> {
        if config.is_object() {
            Ok(BalancerConfig::none())
        } else {
            Err(Error::new(format!(
                "{}: the config is not a JSON object",
                self.name()
            )))
        }
    }

    /// A new balancer for one channel.
    fn build(&self) -> Box<dyn Balancer>;
}

type Registry = RwLock<HashMap<String, Arc<dyn BalancerBuilder>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut map: HashMap<String, Arc<dyn BalancerBuilder>> = HashMap::new();
        map.insert("pick_first".to_owned(), Arc::new(PickFirstBuilder));
        map.insert("round_robin".to_owned(), Arc::new(RoundRobinBuilder));
        map.insert(
            "weighted_round_robin".to_owned(),
            Arc::new(WeightedRoundRobinBuilder),
        );
        for name in ["least_request", "least_request_experimental"] {
            map.insert(name.to_owned(), Arc::new(LeastRequestBuilder::named(name)));
        }
        RwLock::new(map)
    })
}

/// Registers `builder` under its name for every channel (replacing a builder of that name).
pub fn register(builder: impl BalancerBuilder) {
    let builder: Arc<dyn BalancerBuilder> = Arc::new(builder);
    registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(builder.name().to_owned(), builder);
}

/// The registered builder named `name`.
pub(crate) fn lookup(name: &str) -> Option<Arc<dyn BalancerBuilder>> {
    registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(name)
        .cloned()
}

/// Publishes the channel's state when no subchannel is READY, by `round_robin`'s rules (which
/// `least_request` and `weighted_round_robin` share): TRANSIENT_FAILURE once every subchannel
/// has failed, and sticky until one is READY; otherwise CONNECTING (published once). Returns
/// the state now.
fn publish_not_ready(
    helper: &mut Helper<'_>,
    state: ConnectivityState,
    all_failed: bool,
    last_error: Option<&Status>,
) -> ConnectivityState {
    if all_failed || state == ConnectivityState::TransientFailure {
        let error = last_error
            .cloned()
            .unwrap_or_else(|| Status::unavailable("no address is reachable"));
        helper.update_picker(
            ConnectivityState::TransientFailure,
            Arc::new(FailPicker(error)),
        );
        ConnectivityState::TransientFailure
    } else {
        if state != ConnectivityState::Connecting {
            helper.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker));
        }
        ConnectivityState::Connecting
    }
}

/// An update with `n` addresses, `10.0.0.1:50051` onwards (for the balancers' tests).
#[cfg(test)]
fn test_addresses(n: u16) -> ResolverUpdate {
    ResolverUpdate::new(
        (1..=n)
            .map(|i| Address::parse(&format!("10.0.0.{i}:50051")))
            .collect(),
    )
}

/// The addresses of an update without repeats, in order.
fn distinct_addresses(update: &ResolverUpdate) -> Vec<Address> {
    let mut out = Vec::with_capacity(update.addresses.len());
    for a in &update.addresses {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}
