//! A custom load-balancing policy, written against Volley's public plug-in API:
//! `zone_ejecting` rotates calls over the READY backends of the client's own zone (read from
//! an address attribute the resolver sets), falls back to the other zones when none is
//! READY, and ejects a backend whose calls keep failing for a while.
//!
//! It uses every part of the API: the builder parses and validates its JSON config from the
//! service config's `loadBalancingConfig`; addresses carry a `Zone` attribute; each pick
//! follows its call to the end (`Pick::on_done`) to count failures; a `Waker` tells the
//! balancer about an ejection and `Helper::schedule` ends it. `volley::testing::FakeChannel`
//! unit-tests it without sockets (see the tests at the end); `run` shows it on real servers.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use volley::balancer::{
    Balancer, BalancerBuilder, BalancerConfig, ConnectivityState, FailPicker, Helper, JsonValue,
    Pick, PickInfo, PickResult, Picker, QueuePicker, Subchannel, Waker,
};
use volley::resolver::{Address, ManualResolver, ResolverUpdate, ServiceConfig};
use volley::{Channel, Code, Error, Request, Response, Server, Status};

use crate::helloworld::{Greeter, GreeterClient, GreeterServer, HelloReply, HelloRequest};

/// The zone of a backend: an address attribute, set by the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone(pub String);

/// `zone_ejecting`'s config: `{"zone": "a", "maxFailures": 2, "ejectionMs": 500}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneEjectingConfig {
    /// The client's zone: its backends are preferred. Required.
    pub zone: String,
    /// Consecutive failed calls (UNAVAILABLE, INTERNAL) that eject a backend. Default 3.
    pub max_failures: u32,
    /// How long an ejected backend gets no calls. Default 1 s.
    pub ejection: Duration,
}

/// Builds `zone_ejecting` balancers. Register it with `volley::balancer::register`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneEjectingBuilder;

impl BalancerBuilder for ZoneEjectingBuilder {
    fn name(&self) -> &str {
        "zone_ejecting"
    }

    fn parse_config(&self, config: &JsonValue) -> Result<BalancerConfig, Error> {
        let invalid = |why: &str| Error::new(format!("zone_ejecting: {why}"));
        let zone = config
            .get("zone")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| invalid("\"zone\" (a string) is required"))?;
        let number = |name: &str, default: u64| match config.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(&format!("{name:?} must be a positive whole number"))),
        };
        Ok(BalancerConfig::new(ZoneEjectingConfig {
            zone: zone.to_owned(),
            max_failures: u32::try_from(number("maxFailures", 3)?).unwrap_or(u32::MAX),
            ejection: Duration::from_millis(number("ejectionMs", 1000)?),
        }))
    }

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(ZoneEjecting::default())
    }
}

/// A timer token's top bit: "end this backend's ejection" (the rest is the subchannel id).
const END_EJECTION: u64 = 1 << 63;

/// What the balancer and its pickers share about one backend.
#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    ejected: AtomicBool,
}

struct Backend {
    subchannel: Subchannel,
    state: ConnectivityState,
    zone: Option<String>,
    health: Arc<Health>,
}

#[derive(Default)]
struct ZoneEjecting {
    config: Option<ZoneEjectingConfig>,
    backends: Vec<Backend>,
    waker: Option<Waker>,
}

impl ZoneEjecting {
    /// Publishes a picker over the READY backends (or the state without one).
    fn publish(&mut self, helper: &mut Helper<'_>) {
        let Some(config) = &self.config else { return };
        let ready: Vec<Candidate> = self
            .backends
            .iter()
            .filter(|b| b.state == ConnectivityState::Ready)
            .map(|b| Candidate {
                subchannel: b.subchannel.clone(),
                local: b.zone.as_deref() == Some(config.zone.as_str()),
                health: b.health.clone(),
            })
            .collect();
        if !ready.is_empty() {
            let waker = self.waker.get_or_insert_with(|| helper.waker()).clone();
            let picker = ZonePicker {
                ready,
                next: AtomicUsize::new(0),
                max_failures: config.max_failures,
                waker,
            };
            helper.update_picker(ConnectivityState::Ready, Arc::new(picker));
        } else if self
            .backends
            .iter()
            .all(|b| b.state == ConnectivityState::TransientFailure)
        {
            let status = Status::unavailable("zone_ejecting: no backend is reachable");
            helper.update_picker(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(status)),
            );
        } else {
            helper.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker));
        }
    }
}

impl Balancer for ZoneEjecting {
    fn resolver_update(
        &mut self,
        update: &ResolverUpdate,
        config: &BalancerConfig,
        helper: &mut Helper<'_>,
    ) {
        self.config = config.get::<ZoneEjectingConfig>().cloned();
        let mut kept = Vec::new();
        for address in &update.addresses {
            let zone = address.attributes().get::<Zone>().map(|z| z.0.clone());
            match self
                .backends
                .iter()
                .position(|b| b.subchannel.address() == address)
            {
                Some(i) => {
                    let mut backend = self.backends.swap_remove(i);
                    backend.zone = zone;
                    kept.push(backend);
                }
                None => {
                    let subchannel = helper.new_subchannel(address);
                    subchannel.connect();
                    kept.push(Backend {
                        subchannel,
                        state: ConnectivityState::Connecting,
                        zone,
                        health: Arc::default(),
                    });
                }
            }
        }
        for gone in std::mem::replace(&mut self.backends, kept) {
            gone.subchannel.shutdown();
        }
        self.publish(helper);
    }

    fn resolver_error(&mut self, error: &Status, helper: &mut Helper<'_>) {
        if self.backends.is_empty() {
            helper.update_picker(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(error.clone())),
            );
        }
    }

    fn subchannel_state(
        &mut self,
        subchannel: &Subchannel,
        state: ConnectivityState,
        _error: Option<&Status>,
        helper: &mut Helper<'_>,
    ) {
        let Some(backend) = self
            .backends
            .iter_mut()
            .find(|b| b.subchannel == *subchannel)
        else {
            return;
        };
        backend.state = state;
        if state == ConnectivityState::Idle {
            subchannel.connect(); // keep every backend connected
        }
        self.publish(helper);
    }

    fn exit_idle(&mut self, _helper: &mut Helper<'_>) {
        for b in &self.backends {
            b.subchannel.connect();
        }
    }

    fn wake(&mut self, token: u64, helper: &mut Helper<'_>) {
        let id = token & !END_EJECTION;
        let Some(backend) = self.backends.iter().find(|b| b.subchannel.id() == id) else {
            return;
        };
        if token & END_EJECTION == 0 {
            // A picker ejected it (the picker already skips it): bring it back later.
            let ejection = self
                .config
                .as_ref()
                .map_or(Duration::from_secs(1), |c| c.ejection);
            helper.schedule(ejection, id | END_EJECTION);
        } else {
            backend.health.failures.store(0, Ordering::Relaxed);
            backend.health.ejected.store(false, Ordering::Relaxed);
        }
    }
}

struct Candidate {
    subchannel: Subchannel,
    local: bool,
    health: Arc<Health>,
}

/// Rotates over the READY backends of the client's zone that are not ejected, else over the
/// others that are not, else over all of them (ejecting every backend would only fail calls).
struct ZonePicker {
    ready: Vec<Candidate>,
    next: AtomicUsize,
    max_failures: u32,
    waker: Waker,
}

impl Picker for ZonePicker {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        let usable = |local: Option<bool>| {
            self.ready
                .iter()
                .filter(|c| local.is_none_or(|l| c.local == l))
                .filter(|c| local.is_none() || !c.health.ejected.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let mut choices = usable(Some(true));
        if choices.is_empty() {
            choices = usable(Some(false));
        }
        if choices.is_empty() {
            choices = usable(None);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % choices.len().max(1);
        let Some(chosen) = choices.get(i) else {
            return PickResult::Queue;
        };
        let health = chosen.health.clone();
        let (waker, max, id) = (
            self.waker.clone(),
            self.max_failures,
            chosen.subchannel.id(),
        );
        PickResult::Pick(Pick::new(chosen.subchannel.clone()).on_done(move |end| {
            if matches!(end.status().code(), Code::Unavailable | Code::Internal) {
                let failures = health.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= max && !health.ejected.swap(true, Ordering::Relaxed) {
                    waker.wake(id);
                }
            } else {
                health.failures.store(0, Ordering::Relaxed);
            }
        }))
    }
}

/// A greeter that answers, or (broken) fails every call with UNAVAILABLE.
struct ZoneGreeter {
    who: String,
    broken: bool,
}

impl Greeter for ZoneGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        if self.broken {
            return Err(Status::unavailable(format!("{} is broken", self.who)));
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {}, from {}", request.get_ref().name, self.who),
        }))
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(who: &str, broken: bool) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let greeter = ZoneGreeter {
        who: who.to_owned(),
        broken,
    };
    let task = tokio::spawn(
        Server::builder()
            .add_service(GreeterServer::new(greeter))
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    Ok(Running { addr, stop, task })
}

/// Three backends, two in zone `a` (one broken) and one in zone `b`; a client in zone `a`
/// with `zone_ejecting`. Writes what each call got to `out`.
pub async fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    volley::balancer::register(ZoneEjectingBuilder);
    let a1 = start("a1", false).await?;
    let a2 = start("a2 (broken)", true).await?;
    let b1 = start("b1", false).await?;
    let zoned = |b: &Running, zone: &str| Address::tcp(b.addr).with_attribute(Zone(zone.into()));
    let config = ServiceConfig::from_json(
        r#"{"loadBalancingConfig": [
            {"zone_ejecting": {"zone": "a", "maxFailures": 2, "ejectionMs": 60000}},
            {"round_robin": {}}
        ]}"#,
    )?;
    // A resolver of the program's own: the addresses, their zones, and the service config.
    let resolver = ManualResolver::new("zones");
    resolver.update(
        ResolverUpdate::new(vec![zoned(&a1, "a"), zoned(&a2, "a"), zoned(&b1, "b")])
            .with_service_config(config),
    );
    let channel = Channel::builder("zones:///greeters")
        .resolver(resolver.clone())
        .timeout(Duration::from_secs(10))
        .build()?;
    let greeter = GreeterClient::new(channel.clone());
    channel.connect().await?;
    let call = async |i: usize, out: &mut dyn Write| -> std::io::Result<()> {
        let request = Request::new(HelloRequest {
            name: format!("call {i}"),
        })
        .with_wait_for_ready(true);
        match greeter.say_hello(request).await {
            Ok(reply) => writeln!(out, "  {}", reply.into_inner().message),
            Err(status) => writeln!(out, "  call {i} failed: {}", status.message()),
        }
    };
    writeln!(out, "zone a first; a2 is ejected after 2 failures:")?;
    for i in 1..=8 {
        call(i, out).await?;
    }
    let _ = a1.stop.send(());
    a1.task.await??;
    writeln!(
        out,
        "a1 shut down; zone a has no usable backend, so zone b takes the calls:"
    )?;
    for i in 9..=12 {
        call(i, out).await?;
    }
    for backend in [a2, b1] {
        let _ = backend.stop.send(());
        backend.task.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use volley::testing::FakeChannel;

    use super::*;

    fn config(json: &str) -> Result<BalancerConfig, Error> {
        ZoneEjectingBuilder.parse_config(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn the_config_is_validated() {
        let c = config(r#"{"zone": "a", "maxFailures": 2}"#).unwrap();
        let c = c.get::<ZoneEjectingConfig>().unwrap();
        assert_eq!((c.zone.as_str(), c.max_failures), ("a", 2));
        assert_eq!(c.ejection, Duration::from_secs(1));
        assert!(config("{}").is_err());
        assert!(config(r#"{"zone": "a", "maxFailures": 0}"#).is_err());
    }

    #[test]
    fn prefers_its_zone_ejects_failing_backends_and_brings_them_back() {
        let mut ch = FakeChannel::new();
        let mut lb = ZoneEjectingBuilder.build();
        let config = config(r#"{"zone": "a", "maxFailures": 2, "ejectionMs": 500}"#).unwrap();
        let zoned = |ip: &str, zone: &str| {
            Address::parse(&format!("{ip}:50051")).with_attribute(Zone(zone.into()))
        };
        let update = ResolverUpdate::new(vec![
            zoned("10.0.0.1", "a"),
            zoned("10.0.0.2", "a"),
            zoned("10.0.0.3", "b"),
        ]);
        ch.update_with_config(&mut *lb, &update, &config);
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        let pick = |ch: &FakeChannel| match ch.pick("/helloworld.Greeter/SayHello") {
            PickResult::Pick(p) => p,
            other => panic!("expected a pick, got {other:?}"),
        };
        // Zone a only.
        let picked: Vec<Subchannel> = (0..4).map(|_| pick(&ch).subchannel).collect();
        assert!(picked.iter().all(|s| *s != scs[2]), "{picked:?}");

        // Two failed calls on the second eject it at once; the balancer hears of it.
        let unavailable = Status::unavailable("down");
        let trailers = volley::MetadataMap::new();
        let mut failures = 0;
        while failures < 2 {
            let p = pick(&ch);
            if p.subchannel == scs[1] {
                failures += 1;
                finish(p, &unavailable, &trailers);
            }
        }
        assert!((0..4).all(|_| pick(&ch).subchannel == scs[0]));
        assert_eq!(ch.take_woken(), [scs[1].id()]);
        ch.wake(&mut *lb, scs[1].id());
        assert_eq!(
            ch.timers(),
            [(Duration::from_millis(500), scs[1].id() | END_EJECTION)]
        );

        // The ejection ends when the timer fires.
        ch.wake(&mut *lb, scs[1].id() | END_EJECTION);
        assert!((0..4).any(|_| pick(&ch).subchannel == scs[1]));

        // With zone a down, zone b.
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::TransientFailure, None);
        ch.set_state(&mut *lb, &scs[1], ConnectivityState::TransientFailure, None);
        assert!((0..4).all(|_| pick(&ch).subchannel == scs[2]));
    }

    /// Ends a picked call with `status`, as the channel does.
    fn finish(pick: Pick, status: &Status, trailers: &volley::MetadataMap) {
        pick.finish(&volley::balancer::CallEnd::new(status, trailers));
    }
}
