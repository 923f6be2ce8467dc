//! Load balancing: a [`Balancer`] receives the resolver's addresses and the subchannels'
//! state changes, creates and removes [`Subchannel`]s, and publishes a [`Picker`] that every
//! call asks for a subchannel. Balancers are found by name in a registry.
//!
//! Built in: `pick_first` (the default: the first address that connects, in order, failing
//! over to the next) and `round_robin` (a connection to every address, calls rotated over the
//! READY ones). Choose one with [`crate::ChannelBuilder::load_balancing_policy`] or a service
//! config's `loadBalancingConfig`; add one with [`register`].

mod pick_first;
mod round_robin;

pub use super::connectivity::ConnectivityState;
pub use super::subchannel::Subchannel;
pub use pick_first::PickFirstBuilder;
pub use round_robin::{LeastRequestBuilder, RoundRobinBuilder};

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::resolver::{Address, ResolverUpdate};
use crate::Status;

/// What a balancer may ask of its channel. The channel's control task implements it, and so
/// does `crate::testing`'s fake channel; [`Helper`] is the public face.
pub(crate) trait ChannelControl: Send {
    /// A new IDLE subchannel for `address`.
    fn new_subchannel(&mut self, address: &Address) -> Subchannel;
    /// Publishes the channel's state and picker.
    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>);
    /// Asks the resolver to resolve again.
    fn resolve_now(&mut self);
}

/// The channel as a balancer sees it: it creates subchannels, publishes pickers and asks
/// for re-resolution. Balancers get one in every call.
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
    pub(crate) path: &'a str,
}

impl<'a> PickInfo<'a> {
    /// What a picker knows about a call to `path` (for pickers' tests).
    pub fn new(path: &'a str) -> PickInfo<'a> {
        PickInfo { path }
    }

    /// The method's path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        self.path
    }
}

/// A picker's answer for one call.
#[derive(Debug)]
pub enum PickResult {
    /// Send the call on this subchannel (if it is no longer READY, the call waits for the
    /// next picker).
    Pick(Subchannel),
    /// Wait for the next picker.
    Queue,
    /// Fail the call with this status, unless it waits for ready; then it waits for the next
    /// picker.
    Fail(Status),
}

/// Chooses a subchannel for each call. Called concurrently from every task that makes
/// calls, so it should be quick and lock-free.
pub trait Picker: Send + Sync + 'static {
    /// The subchannel for a call.
    fn pick(&self, info: &PickInfo<'_>) -> PickResult;
}

/// A load-balancing policy. The channel calls it from its control task, one call at a time.
pub trait Balancer: Send + 'static {
    /// New addresses (and service config) from the resolver.
    fn resolver_update(&mut self, update: &ResolverUpdate, helper: &mut Helper<'_>);

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
}

/// Builds balancers of one policy.
pub trait BalancerBuilder: Send + Sync + 'static {
    /// The policy's name, as in `loadBalancingConfig` (e.g. `round_robin`).
    fn name(&self) -> &str;

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

/// The addresses of an update without repeats, in order.
fn distinct_addresses(update: &ResolverUpdate) -> Vec<super::resolver::Address> {
    let mut out = Vec::with_capacity(update.addresses.len());
    for a in &update.addresses {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}
