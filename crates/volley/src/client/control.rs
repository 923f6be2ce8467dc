//! The channel's control task: it owns the resolver, the balancer and the subchannels, and
//! serialises everything that changes them (resolver updates, subchannel state changes,
//! requests to leave IDLE, the idle timer), as grpc-go's `ClientConn` serialiser does. Calls
//! never wait on it: they read the picker it publishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::balancer::{self, Balancer, PickResult, Picker};
use super::channel::ChannelConfig;
use super::connectivity::ConnectivityState;
use super::resolver::{Address, Resolver, ResolverBuilder, ResolverUpdate, Target, UpdateSink};
use super::subchannel::Subchannel;
use crate::Status;

/// What the control task hears about.
pub(crate) enum ControlEvent {
    /// A call found the channel IDLE.
    ExitIdle,
    /// A resolver's news; `generation` tells which resolver (an idle channel replaces it).
    Resolved {
        generation: u64,
        result: Result<ResolverUpdate, Status>,
    },
    /// A subchannel changed state.
    SubchannelState {
        subchannel: Subchannel,
        state: ConnectivityState,
        error: Option<Status>,
    },
}

impl std::fmt::Debug for ControlEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlEvent::ExitIdle => f.write_str("ExitIdle"),
            ControlEvent::Resolved { generation, .. } => write!(f, "Resolved({generation})"),
            ControlEvent::SubchannelState {
                subchannel, state, ..
            } => write!(f, "SubchannelState({}, {state})", subchannel.id()),
        }
    }
}

/// The channel's state and the picker calls use, as last published.
pub(crate) struct PickerState {
    pub(crate) state: ConnectivityState,
    pub(crate) picker: Arc<dyn Picker>,
}

/// A picker that makes every call wait for the next picker (IDLE, CONNECTING).
#[derive(Debug)]
pub struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self, _info: &balancer::PickInfo<'_>) -> PickResult {
        PickResult::Queue
    }
}

impl PickerState {
    pub(crate) fn idle() -> Arc<PickerState> {
        Arc::new(PickerState {
            state: ConnectivityState::Idle,
            picker: Arc::new(QueuePicker),
        })
    }
}

/// Shared between the channel's handles and its control task.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// When the last call started, in milliseconds since `epoch`.
    last_call_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_call_ms: AtomicU64::new(0),
        }
    }

    /// Records that a call starts now. Written at most once per millisecond-tick change, so
    /// concurrent calls mostly only read the shared word.
    pub(crate) fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        if self.last_call_ms.load(Ordering::Relaxed) < now {
            self.last_call_ms.store(now, Ordering::Relaxed);
        }
    }

    fn last_call(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_call_ms.load(Ordering::Relaxed))
    }
}

/// Everything the control task starts with.
pub(crate) struct ControlSetup {
    pub(crate) target: Target,
    pub(crate) config: Arc<ChannelConfig>,
    pub(crate) resolver: Arc<dyn ResolverBuilder>,
    pub(crate) events: mpsc::UnboundedSender<ControlEvent>,
    pub(crate) inbox: mpsc::UnboundedReceiver<ControlEvent>,
    pub(crate) picker: watch::Sender<Arc<PickerState>>,
    pub(crate) states: broadcast::Sender<ConnectivityState>,
    pub(crate) shutdown: oneshot::Receiver<()>,
    pub(crate) activity: Arc<Activity>,
}

/// What the balancer may change: subchannels, the published picker, re-resolution.
pub(crate) struct Core {
    config: Arc<ChannelConfig>,
    events: mpsc::UnboundedSender<ControlEvent>,
    picker: watch::Sender<Arc<PickerState>>,
    states: broadcast::Sender<ConnectivityState>,
    subchannels: Vec<Subchannel>,
    resolve_now: bool,
    /// The service new subchannels health-check (gRFC A17), from the service config.
    health_check: Option<String>,
}

impl Core {
    /// Publishes a picker, and the channel's state to its observers when it changed.
    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        let previous = self
            .picker
            .send_replace(Arc::new(PickerState { state, picker }))
            .state;
        if previous != state {
            tracing::debug!(%state, "channel");
            let _ = self.states.send(state);
        }
    }
}

/// The channel as a balancer sees it: it creates subchannels, publishes pickers and asks
/// for re-resolution. Balancers get one in every call.
pub struct Helper<'a> {
    core: &'a mut Core,
}

impl std::fmt::Debug for Helper<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").finish_non_exhaustive()
    }
}

impl Helper<'_> {
    /// A new IDLE subchannel for `address`; [`Subchannel::connect`] starts it.
    pub fn new_subchannel(&mut self, address: &Address) -> Subchannel {
        let sc = Subchannel::new(
            address.clone(),
            self.core.config.clone(),
            self.core.events.clone(),
            self.core.health_check.clone(),
        );
        self.core.subchannels.push(sc.clone());
        sc
    }

    /// Publishes the channel's state and the picker every call from now on asks.
    pub fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.core.publish(state, picker);
    }

    /// Asks the resolver to resolve again.
    pub fn resolve_now(&mut self) {
        self.core.resolve_now = true;
    }
}

struct Running {
    generation: u64,
    resolver: Box<dyn Resolver>,
    balancer: Box<dyn Balancer>,
    policy: String,
}

/// Runs the control task until every handle of the channel is dropped.
pub(crate) async fn run(setup: ControlSetup) {
    let ControlSetup {
        target,
        config,
        resolver: resolver_builder,
        events,
        mut inbox,
        picker,
        states,
        mut shutdown,
        activity,
    } = setup;
    let mut core = Core {
        config: config.clone(),
        events: events.clone(),
        picker,
        states,
        subchannels: Vec::new(),
        resolve_now: false,
        health_check: None,
    };
    let mut running: Option<Running> = None;
    let mut generation = 0u64;
    let idle_timeout = config.idle_timeout;
    let mut idle_check = idle_timeout.map(|t| Instant::now() + t);
    loop {
        let check = async {
            match idle_check {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            event = inbox.recv() => {
                let Some(event) = event else { break };
                match event {
                    ControlEvent::ExitIdle => match running.as_mut() {
                        Some(r) => r.balancer.exit_idle(&mut Helper { core: &mut core }),
                        None => {
                            generation += 1;
                            running = start(&target, &config, &resolver_builder, &events, generation, &mut core);
                            if running.is_some() {
                                idle_check = idle_timeout.map(|t| Instant::now() + t);
                            }
                        }
                    },
                    ControlEvent::Resolved { generation: g, result } => {
                        let Some(r) = running.as_mut().filter(|r| r.generation == g) else {
                            continue;
                        };
                        match result {
                            Ok(update) => {
                                let policy = choose_policy(&update, &config.load_balancing_policy);
                                if policy != r.policy
                                    && let Some(b) = balancer::lookup(&policy)
                                {
                                    tracing::debug!(%policy, "switching balancer");
                                    shutdown_subchannels(&mut core);
                                    r.balancer = b.build();
                                    r.policy = policy;
                                }
                                // gRFC A17: health checking as the service config asks, except
                                // under pick_first, which does not support it.
                                core.health_check = update
                                    .service_config
                                    .as_ref()
                                    .and_then(|c| c.health_check_service())
                                    .filter(|_| {
                                        r.policy != "pick_first" && !config.disable_health_check
                                    })
                                    .map(str::to_owned);
                                r.balancer.resolver_update(&update, &mut Helper { core: &mut core });
                            }
                            Err(status) => {
                                tracing::debug!(%status, "resolver error");
                                r.balancer.resolver_error(&status, &mut Helper { core: &mut core });
                            }
                        }
                    }
                    ControlEvent::SubchannelState { subchannel, state, error } => {
                        if state == ConnectivityState::Shutdown {
                            core.subchannels.retain(|s| *s != subchannel);
                            continue;
                        }
                        if matches!(state, ConnectivityState::Idle | ConnectivityState::TransientFailure) {
                            core.resolve_now = true;
                        }
                        if let Some(r) = running.as_mut()
                            && core.subchannels.contains(&subchannel)
                        {
                            r.balancer.subchannel_state(
                                &subchannel,
                                state,
                                error.as_ref(),
                                &mut Helper { core: &mut core },
                            );
                        }
                    }
                }
            }
            () = check => {
                let Some(timeout) = idle_timeout else { continue };
                let busy = core.subchannels.iter().any(|s| s.active_streams() > 0);
                let quiet_until = activity.last_call() + timeout;
                if running.is_some() && !busy && Instant::now() >= quiet_until {
                    tracing::debug!(?timeout, "channel idle");
                    running = None;
                    shutdown_subchannels(&mut core);
                    core.publish(ConnectivityState::Idle, Arc::new(QueuePicker));
                    idle_check = None;
                } else {
                    idle_check = Some(quiet_until.max(Instant::now() + timeout / 10));
                }
            }
        }
        if core.resolve_now {
            core.resolve_now = false;
            if let Some(r) = running.as_mut() {
                r.resolver.resolve_now();
            }
        }
        if idle_check.is_none() && running.is_some() {
            idle_check = idle_timeout.map(|t| Instant::now() + t);
        }
    }
    drop(running);
    shutdown_subchannels(&mut core);
    core.publish(
        ConnectivityState::Shutdown,
        Arc::new(FailPicker(Status::unavailable("the channel was dropped"))),
    );
}

/// Starts resolving and balancing (the channel leaves IDLE).
fn start(
    target: &Target,
    config: &ChannelConfig,
    resolver: &Arc<dyn ResolverBuilder>,
    events: &mpsc::UnboundedSender<ControlEvent>,
    generation: u64,
    core: &mut Core,
) -> Option<Running> {
    let policy = config.load_balancing_policy.clone();
    let Some(balancer) = balancer::lookup(&policy) else {
        fail(
            core,
            Status::internal(format!("no balancer named {policy:?}")),
        );
        return None;
    };
    Helper { core }.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker));
    let sink = UpdateSink::new(events.clone(), generation);
    match resolver.build(target, sink) {
        Ok(resolver) => Some(Running {
            generation,
            resolver,
            balancer: balancer.build(),
            policy,
        }),
        Err(status) => {
            tracing::warn!(%target, %status, "the resolver could not start");
            fail(core, status);
            None
        }
    }
}

fn fail(core: &mut Core, status: Status) {
    Helper { core }.update_picker(
        ConnectivityState::TransientFailure,
        Arc::new(FailPicker(status)),
    );
}

/// The balancer an update asks for: the first registered policy of its service config,
/// else the channel's.
fn choose_policy(update: &ResolverUpdate, default: &str) -> String {
    update
        .service_config
        .as_ref()
        .and_then(|c| {
            c.load_balancing_policies()
                .iter()
                .find(|p| balancer::lookup(p).is_some())
                .cloned()
        })
        .unwrap_or_else(|| default.to_owned())
}

fn shutdown_subchannels(core: &mut Core) {
    for sc in core.subchannels.drain(..) {
        sc.shutdown();
    }
}

/// A picker that fails every call with one status (TRANSIENT_FAILURE); calls with
/// wait-for-ready wait instead.
#[derive(Debug)]
pub struct FailPicker(pub Status);

impl Picker for FailPicker {
    fn pick(&self, _info: &balancer::PickInfo<'_>) -> PickResult {
        PickResult::Fail(self.0.clone())
    }
}
