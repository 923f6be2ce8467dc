//! [`FakeChannel`]: drives a [`Balancer`] state by state, with no sockets and no runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Status;
use crate::balancer::BalancerConfig;
use crate::balancer::{
    Balancer, ConnectivityState, Helper, PickInfo, PickResult, Picker, Subchannel, Waker,
};
use crate::client::balancer::ChannelControl;
use crate::client::subchannel::{self, SubchannelImpl};
use crate::resolver::{Address, ResolverUpdate};
use crate::transport::client::Sender;

/// A channel for a balancer's unit tests, as grpc-go's `testutils.BalancerClientConn`: it
/// records the subchannels the balancer creates (they never connect: a test moves them from
/// state to state with [`FakeChannel::set_state`]), the pickers it publishes, its requests
/// for re-resolution and its timers (which fire when the test says, with
/// [`FakeChannel::wake`]).
///
/// ```
/// use volley::balancer::{BalancerBuilder, ConnectivityState, PickResult};
/// use volley::resolver::{Address, ResolverUpdate};
/// use volley::testing::FakeChannel;
///
/// let mut channel = FakeChannel::new();
/// let mut balancer = volley::balancer::RoundRobinBuilder.build();
/// let update = ResolverUpdate::new(vec![Address::parse("10.0.0.1:50051")]);
/// channel.update(&mut *balancer, &update);
/// let sc = channel.subchannels()[0].clone();
/// assert_eq!(channel.connects(&sc), 1);
/// channel.set_state(&mut *balancer, &sc, ConnectivityState::Ready, None);
/// assert_eq!(channel.state(), ConnectivityState::Ready);
/// assert_eq!(channel.pick("/a.B/C").subchannel(), Some(&sc));
/// ```
#[derive(Default)]
pub struct FakeChannel {
    subchannels: Vec<Arc<FakeSubchannel>>,
    published: Option<(ConnectivityState, Arc<dyn Picker>)>,
    pickers: usize,
    resolve_now: usize,
    timers: Vec<(Duration, u64)>,
    woken: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for FakeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeChannel")
            .field("subchannels", &self.subchannels.len())
            .field("state", &self.state())
            .field("pickers", &self.pickers)
            .field("resolve_now", &self.resolve_now)
            .finish()
    }
}

/// A subchannel that never connects; its state is what the test sets.
struct FakeSubchannel {
    id: u64,
    address: Address,
    state: Mutex<ConnectivityState>,
    connects: AtomicUsize,
    shut_down: AtomicUsize,
}

impl SubchannelImpl for FakeSubchannel {
    fn id(&self) -> u64 {
        self.id
    }

    fn address(&self) -> &Address {
        &self.address
    }

    fn state(&self) -> ConnectivityState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    fn shutdown(&self) {
        self.shut_down.fetch_add(1, Ordering::Relaxed);
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = ConnectivityState::Shutdown;
    }

    fn sender(&self) -> Option<(Sender, u64)> {
        None
    }

    fn active_streams(&self) -> usize {
        0
    }

    fn connection_refused_stream(&self, _generation: u64) {}
}

impl ChannelControl for FakeChannel {
    fn new_subchannel(&mut self, address: &Address) -> Subchannel {
        let fake = Arc::new(FakeSubchannel {
            id: subchannel::next_id(),
            address: address.clone(),
            state: Mutex::new(ConnectivityState::Idle),
            connects: AtomicUsize::new(0),
            shut_down: AtomicUsize::new(0),
        });
        self.subchannels.push(fake.clone());
        Subchannel::from_impl(fake)
    }

    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.pickers += 1;
        self.published = Some((state, picker));
    }

    fn resolve_now(&mut self) {
        self.resolve_now += 1;
    }

    fn schedule(&mut self, delay: Duration, token: u64) {
        self.timers.push((delay, token));
    }

    fn waker(&mut self) -> Waker {
        let woken = self.woken.clone();
        Waker::new(move |token| {
            woken
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(token);
        })
    }
}

impl FakeChannel {
    /// A channel with no subchannels and no picker yet (IDLE).
    pub fn new() -> FakeChannel {
        FakeChannel::default()
    }

    /// Delivers the resolver's `update` to `balancer`, with no balancer config.
    pub fn update(&mut self, balancer: &mut dyn Balancer, update: &ResolverUpdate) {
        self.update_with_config(balancer, update, &BalancerConfig::none());
    }

    /// Delivers the resolver's `update` to `balancer` with `config` (parse one with the
    /// builder's [`crate::balancer::BalancerBuilder::parse_config`]).
    pub fn update_with_config(
        &mut self,
        balancer: &mut dyn Balancer,
        update: &ResolverUpdate,
        config: &BalancerConfig,
    ) {
        balancer.resolver_update(update, config, &mut Helper::new(self));
    }

    /// The helper to pass to the balancer's methods.
    pub fn helper(&mut self) -> Helper<'_> {
        Helper::new(self)
    }

    /// Every subchannel the balancer created, in order (shut-down ones included).
    pub fn subchannels(&self) -> Vec<Subchannel> {
        self.subchannels
            .iter()
            .map(|s| Subchannel::from_impl(s.clone()))
            .collect()
    }

    /// The subchannels created for `address` and not shut down.
    pub fn live_subchannels(&self, address: &Address) -> Vec<Subchannel> {
        self.subchannels
            .iter()
            .filter(|s| &s.address == address && s.shut_down.load(Ordering::Relaxed) == 0)
            .map(|s| Subchannel::from_impl(s.clone()))
            .collect()
    }

    fn find(&self, sc: &Subchannel) -> Option<&FakeSubchannel> {
        self.subchannels
            .iter()
            .find(|s| s.id == sc.id())
            .map(|s| &**s)
    }

    /// How many times the balancer asked `sc` to connect.
    pub fn connects(&self, sc: &Subchannel) -> usize {
        self.find(sc)
            .map_or(0, |s| s.connects.load(Ordering::Relaxed))
    }

    /// Whether the balancer shut `sc` down.
    pub fn is_shut_down(&self, sc: &Subchannel) -> bool {
        self.find(sc)
            .is_some_and(|s| s.shut_down.load(Ordering::Relaxed) > 0)
    }

    /// Moves `sc` to `state` and tells `balancer`, as a real subchannel's state change is
    /// delivered (`error` says why, for TRANSIENT_FAILURE and a lost connection).
    pub fn set_state(
        &mut self,
        balancer: &mut dyn Balancer,
        sc: &Subchannel,
        state: ConnectivityState,
        error: Option<Status>,
    ) {
        if let Some(fake) = self.find(sc) {
            *fake.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
        }
        balancer.subchannel_state(sc, state, error.as_ref(), &mut Helper::new(self));
    }

    /// The channel's state, as last published (IDLE before the first picker).
    pub fn state(&self) -> ConnectivityState {
        self.published
            .as_ref()
            .map_or(ConnectivityState::Idle, |(s, _)| *s)
    }

    /// How many pickers the balancer has published.
    pub fn pickers_published(&self) -> usize {
        self.pickers
    }

    /// What the last published picker answers for a call to `path` (`Queue` before the
    /// first picker).
    pub fn pick(&self, path: &str) -> PickResult {
        match &self.published {
            Some((_, picker)) => picker.pick(&PickInfo::new(path)),
            None => PickResult::Queue,
        }
    }

    /// What the last published picker answers for a later attempt of a call to `path`
    /// (a retry or hedge) whose earlier attempts went to `attempted`.
    pub fn pick_after(&self, path: &str, attempted: &[Address]) -> PickResult {
        match &self.published {
            Some((_, picker)) => picker.pick(&PickInfo::new(path).after_attempts(attempted)),
            None => PickResult::Queue,
        }
    }

    /// How many times the balancer asked for re-resolution.
    pub fn resolve_now_requests(&self) -> usize {
        self.resolve_now
    }

    /// The timers the balancer set and that have not fired: each delay and token, in the
    /// order set.
    pub fn timers(&self) -> &[(Duration, u64)] {
        &self.timers
    }

    /// Fires the balancer's timer `token` now (the first one set with it, if any), or
    /// delivers a wake-up with `token`: calls [`Balancer::wake`].
    pub fn wake(&mut self, balancer: &mut dyn Balancer, token: u64) {
        if let Some(i) = self.timers.iter().position(|(_, t)| *t == token) {
            self.timers.remove(i);
        }
        balancer.wake(token, &mut Helper::new(self));
    }

    /// The tokens the balancer's [`Waker`]s were woken with since the last call (a test
    /// delivers them with [`FakeChannel::wake`]).
    pub fn take_woken(&self) -> Vec<u64> {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
