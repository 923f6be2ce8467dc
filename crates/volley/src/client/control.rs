//! The channel's control task: it owns the resolver, the balancer and the subchannels, and
//! serialises everything that changes them (resolver updates, subchannel state changes,
//! requests to leave IDLE, the idle timer), as grpc-go's `ClientConn` serialiser does. Calls
//! never wait on it: they read the picker it publishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::balancer::{
    self, Balancer, BalancerBuilder, BalancerConfig, ChannelControl, FailPicker, Helper, Picker,
    QueuePicker, Waker,
};
use super::config::ChannelConfig;
use super::connectivity::ConnectivityState;
use super::resolver::{Address, Resolver, ResolverBuilder, ResolverEvent, Target, UpdateSink};
use super::service_config::ServiceConfig;
use super::subchannel::{EventSink, Subchannel, SubchannelEvent};
use crate::Status;

/// What the control task hears from the channel's handles (resolvers and subchannels
/// report on their own queues, in their own types).
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// A call found the channel IDLE.
    ExitIdle,
    /// A balancer's [`Waker`] was woken; `generation` tells which balancer.
    Wake { generation: u64, token: u64 },
}

/// The channel's state and the picker calls use, as last published.
pub(crate) struct PickerState {
    pub(crate) state: ConnectivityState,
    pub(crate) picker: Arc<dyn Picker>,
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
    pub(crate) service_config: watch::Sender<Option<Arc<ServiceConfig>>>,
    pub(crate) states: broadcast::Sender<ConnectivityState>,
    pub(crate) shutdown: oneshot::Receiver<()>,
    pub(crate) activity: Arc<Activity>,
}

/// What the balancer may change: subchannels, the published picker, re-resolution.
struct Core {
    config: Arc<ChannelConfig>,
    subchannel_events: EventSink,
    picker: watch::Sender<Arc<PickerState>>,
    states: broadcast::Sender<ConnectivityState>,
    subchannels: Vec<Subchannel>,
    resolve_now: bool,
    /// The service new subchannels health-check (gRFC A17), from the service config.
    health_check: Option<String>,
    events: mpsc::UnboundedSender<ControlEvent>,
    /// The running balancer's number: timers and wakes of an earlier one are ignored.
    balancer_generation: u64,
    /// The balancer's timers: when, and the token.
    timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
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

impl ChannelControl for Core {
    fn new_subchannel(&mut self, address: &Address) -> Subchannel {
        let sc = Subchannel::new(
            address.clone(),
            self.config.clone(),
            self.subchannel_events.clone(),
            self.health_check.clone(),
        );
        self.subchannels.push(sc.clone());
        sc
    }

    fn update_picker(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        self.publish(state, picker);
    }

    fn resolve_now(&mut self) {
        self.resolve_now = true;
    }

    fn schedule(&mut self, delay: Duration, token: u64) {
        let at = Instant::now() + crate::timeout::capped(delay);
        self.timers.push(std::cmp::Reverse((at, token)));
    }

    fn waker(&mut self) -> Waker {
        let events = self.events.clone();
        let generation = self.balancer_generation;
        Waker::new(move |token| {
            let _ = events.send(ControlEvent::Wake { generation, token });
        })
    }
}

impl Core {
    /// A new balancer takes over: the old one's timers and wakers lapse.
    fn new_balancer(&mut self) {
        self.balancer_generation += 1;
        self.timers.clear();
    }
}

struct Running {
    generation: u64,
    resolver: Box<dyn Resolver>,
    balancer: Box<dyn Balancer>,
    policy: String,
}

/// A policy chosen for the channel, with its parsed config.
struct Chosen {
    name: String,
    builder: Arc<dyn BalancerBuilder>,
    config: BalancerConfig,
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
        service_config,
        states,
        mut shutdown,
        activity,
    } = setup;
    let (subchannel_events, mut subchannel_inbox) = mpsc::unbounded_channel();
    let (resolver_events, mut resolver_inbox) = mpsc::unbounded_channel();
    let mut core = Core {
        config: config.clone(),
        subchannel_events,
        picker,
        states,
        subchannels: Vec::new(),
        resolve_now: false,
        health_check: None,
        events,
        balancer_generation: 0,
        timers: std::collections::BinaryHeap::new(),
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
        let next_timer = core.timers.peek().map(|std::cmp::Reverse((at, _))| *at);
        let timer = async {
            match next_timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            event = inbox.recv() => match event {
                None => break,
                Some(ControlEvent::Wake { generation, token }) => {
                    if let Some(r) = running.as_mut()
                        && generation == core.balancer_generation
                    {
                        r.balancer.wake(token, &mut Helper::new(&mut core));
                    }
                }
                Some(ControlEvent::ExitIdle) => match running.as_mut() {
                    Some(r) => r.balancer.exit_idle(&mut Helper::new(&mut core)),
                    None => {
                        generation += 1;
                        let sink = UpdateSink::new(resolver_events.clone(), generation);
                        running = start(&target, &config, &resolver_builder, sink, generation, &mut core);
                        if running.is_some() {
                            idle_check = idle_timeout.map(|t| Instant::now() + t);
                        }
                    }
                },
            },
            () = timer => {
                if let Some(std::cmp::Reverse((_, token))) = core.timers.pop()
                    && let Some(r) = running.as_mut()
                {
                    r.balancer.wake(token, &mut Helper::new(&mut core));
                }
            }
            Some(ResolverEvent { generation: g, result }) = resolver_inbox.recv() => {
                let Some(r) = running.as_mut().filter(|r| r.generation == g) else {
                    continue;
                };
                match result {
                    Ok(update) => {
                        // The config in force: the resolver's, else (none, or invalid with
                        // no valid one before) the channel's default.
                        let effective = match (&update.service_config, &update.service_config_error) {
                            (Some(c), _) => {
                                let mut c = c.clone();
                                if let Some(previous) = service_config.borrow().as_deref() {
                                    c.keep_throttle_of(previous);
                                }
                                Some(Arc::new(c))
                            }
                            (None, Some(e)) => {
                                tracing::warn!(error = %e, "the resolver's service config is invalid; keeping the previous one");
                                service_config.borrow().clone()
                            }
                            (None, None) => config.default_service_config.clone(),
                        };
                        if *service_config.borrow() != effective {
                            service_config.send_replace(effective.clone());
                        }
                        let chosen = choose_policy(effective.as_deref(), &config.load_balancing_policy);
                        let Some(chosen) = chosen else {
                            // The channel's own policy is registered (checked when it was
                            // built), and its config is `{}`: only a builder that rejects
                            // `{}` gets here.
                            let status = Status::unavailable(format!(
                                "no usable load-balancing config (the channel's policy {:?} \
                                 rejects an empty config)",
                                config.load_balancing_policy
                            ));
                            r.balancer.resolver_error(&status, &mut Helper::new(&mut core));
                            continue;
                        };
                        if chosen.name != r.policy {
                            tracing::debug!(policy = %chosen.name, "switching balancer");
                            shutdown_subchannels(&mut core);
                            core.new_balancer();
                            r.balancer = chosen.builder.build();
                            r.policy = chosen.name.clone();
                        }
                        // gRFC A17: health checking as the service config asks, except
                        // under pick_first, which does not support it.
                        core.health_check = effective
                            .as_deref()
                            .and_then(|c| c.health_check_service())
                            .filter(|_| r.policy != "pick_first" && !config.disable_health_check)
                            .map(str::to_owned);
                        r.balancer.resolver_update(
                            &update,
                            &chosen.config,
                            &mut Helper::new(&mut core),
                        );
                    }
                    Err(status) => {
                        tracing::debug!(%status, "resolver error");
                        r.balancer.resolver_error(&status, &mut Helper::new(&mut core));
                    }
                }
            }
            Some(SubchannelEvent { subchannel, state, error }) = subchannel_inbox.recv() => {
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
                        &mut Helper::new(&mut core),
                    );
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
                    core.new_balancer();
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
    sink: UpdateSink,
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
    core.new_balancer();
    core.publish(ConnectivityState::Connecting, Arc::new(QueuePicker));
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
    core.publish(
        ConnectivityState::TransientFailure,
        Arc::new(FailPicker(status)),
    );
}

/// The balancer an update asks for: the first `loadBalancingConfig` entry whose policy is
/// registered and whose config its builder accepts (`doc/service_config.md`), else the
/// channel's policy with an empty config.
fn choose_policy(service_config: Option<&ServiceConfig>, default: &str) -> Option<Chosen> {
    let configs = service_config
        .map(|c| c.load_balancing_configs())
        .unwrap_or_default();
    for (name, json) in configs {
        let Some(builder) = balancer::lookup(name) else {
            continue;
        };
        match builder.parse_config(json) {
            Ok(config) => {
                return Some(Chosen {
                    name: name.clone(),
                    builder,
                    config,
                });
            }
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "invalid balancer config; skipped")
            }
        }
    }
    let builder = balancer::lookup(default)?;
    let config = builder.parse_config(&serde_json::json!({})).ok()?;
    Some(Chosen {
        name: default.to_owned(),
        builder,
        config,
    })
}

fn shutdown_subchannels(core: &mut Core) {
    for sc in core.subchannels.drain(..) {
        sc.shutdown();
    }
}
