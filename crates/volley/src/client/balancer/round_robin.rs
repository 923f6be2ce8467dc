//! `round_robin`: a connection to every address; calls rotate over the READY ones. And
//! `least_request` (gRFC A48), which manages its connections the same way but sends each
//! call to the least loaded of a few READY ones drawn at random.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{
    Balancer, BalancerBuilder, BalancerConfig, ConnectivityState, Helper, JsonValue, Pick,
    PickInfo, PickResult, Picker, Subchannel,
};
use crate::client::resolver::ResolverUpdate;
use crate::{Error, Status};

/// Builds `round_robin` balancers: one subchannel per address, all kept connected (a lost
/// connection is replaced at once, failed ones retry with backoff), and calls rotated over
/// the READY ones. The channel is READY while any subchannel is; once all have failed it is
/// TRANSIENT_FAILURE until one connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinBuilder;

impl BalancerBuilder for RoundRobinBuilder {
    fn name(&self) -> &str {
        "round_robin"
    }

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(RoundRobin::new(Choice::Rotate))
    }
}

/// Builds `least_request` balancers (gRFC A48): connections as `round_robin`'s; each call
/// goes to the READY subchannel with the fewest outstanding calls among `choiceCount`
/// drawn at random, which steers calls away from a slow backend. The balancer counts a
/// subchannel's outstanding calls itself: up when it picks it, down when the call ends.
/// Config: `{"choiceCount": N}`, default 2; values over 10 are lowered to 10, values under 2
/// are an error. Registered as `least_request` and as A48's config name
/// `least_request_experimental`.
#[derive(Debug, Clone)]
pub struct LeastRequestBuilder {
    name: &'static str,
}

impl LeastRequestBuilder {
    /// A builder registered under `name`.
    pub(crate) const fn named(name: &'static str) -> LeastRequestBuilder {
        LeastRequestBuilder { name }
    }
}

impl BalancerBuilder for LeastRequestBuilder {
    fn name(&self) -> &str {
        self.name
    }

    fn parse_config(&self, config: &JsonValue) -> Result<BalancerConfig, Error> {
        let invalid = |why: &str| Error::new(format!("{}: {why}", self.name));
        let object = config
            .as_object()
            .ok_or_else(|| invalid("the config is not a JSON object"))?;
        let choice_count = match object.get("choiceCount") {
            None | Some(JsonValue::Null) => LEAST_REQUEST_CHOICES,
            Some(n) => {
                let n = n
                    .as_u64()
                    .ok_or_else(|| invalid("choiceCount is not a whole number"))?;
                if n < 2 {
                    return Err(invalid("choiceCount is under 2"));
                }
                n.min(MAX_LEAST_REQUEST_CHOICES as u64) as usize
            }
        };
        Ok(BalancerConfig::new(LeastRequestConfig { choice_count }))
    }

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(RoundRobin::new(Choice::LeastRequest {
            choice_count: LEAST_REQUEST_CHOICES,
        }))
    }
}

/// `least_request`'s parsed config.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LeastRequestConfig {
    choice_count: usize,
}

/// How many READY subchannels `least_request` compares per call (A48's default).
const LEAST_REQUEST_CHOICES: usize = 2;

/// The most it compares (A48: larger `choiceCount`s are lowered to it).
const MAX_LEAST_REQUEST_CHOICES: usize = 10;

/// How a picker chooses among the READY subchannels.
#[derive(Debug, Clone, Copy)]
enum Choice {
    /// In turn.
    Rotate,
    /// The one with the fewest outstanding calls, of `choice_count` drawn at random.
    LeastRequest { choice_count: usize },
}

/// A subchannel's outstanding calls, as `least_request` counts them.
type Outstanding = Arc<AtomicUsize>;

struct RoundRobin {
    choice: Choice,
    /// Each subchannel, its last state and its outstanding calls (kept across pickers).
    subchannels: Vec<(Subchannel, ConnectivityState, Outstanding)>,
    state: ConnectivityState,
    /// The READY set of the last published picker (republished only when it changes, so the
    /// rotation is not restarted needlessly).
    published_ready: Vec<Subchannel>,
    last_error: Option<Status>,
}

/// Picks the READY subchannel with the fewest outstanding calls among `choice_count`
/// drawn at random (with replacement, as A48 allows), and counts the call until it ends.
struct LeastLoaded {
    ready: Vec<(Subchannel, Outstanding)>,
    choice_count: usize,
}

impl Picker for LeastLoaded {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let draw = || {
            let i = (crate::random::next_u64() % self.ready.len() as u64) as usize;
            &self.ready[i]
        };
        let mut best = draw();
        if info.was_attempted(&best.0) {
            // A hedge or retry: another backend, if one is left (a few draws, then in order).
            best = (0..4)
                .map(|_| draw())
                .chain(self.ready.iter())
                .find(|c| !info.was_attempted(&c.0))
                .unwrap_or(best);
        }
        let mut best_load = best.1.load(Ordering::Relaxed);
        for _ in 1..self.choice_count {
            let candidate = draw();
            let load = candidate.1.load(Ordering::Relaxed);
            if load < best_load && !info.was_attempted(&candidate.0) {
                (best, best_load) = (candidate, load);
            }
        }
        let outstanding = best.1.clone();
        outstanding.fetch_add(1, Ordering::Relaxed);
        PickResult::Pick(Pick::new(best.0.clone()).on_done(move |_| {
            outstanding.fetch_sub(1, Ordering::Relaxed);
        }))
    }
}

/// Rotates over READY subchannels, starting at a random one.
struct Rotation {
    ready: Vec<Subchannel>,
    next: AtomicUsize,
}

impl Picker for Rotation {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.ready.len();
        let mut picked = &self.ready[i % n];
        if info.was_attempted(picked) {
            // A hedge or retry: the next backend in the rotation not yet tried, if any.
            picked = (1..n)
                .map(|k| &self.ready[(i + k) % n])
                .find(|s| !info.was_attempted(s))
                .unwrap_or(picked);
        }
        PickResult::pick(picked.clone())
    }
}

impl RoundRobin {
    fn new(choice: Choice) -> RoundRobin {
        RoundRobin {
            choice,
            subchannels: Vec::new(),
            state: ConnectivityState::Idle,
            published_ready: Vec::new(),
            last_error: None,
        }
    }

    /// Recomputes the channel's state and publishes a picker if anything changed.
    fn update(&mut self, helper: &mut Helper<'_>) {
        let ready: Vec<Subchannel> = self
            .subchannels
            .iter()
            .filter(|(_, s, _)| *s == ConnectivityState::Ready)
            .map(|(sc, _, _)| sc.clone())
            .collect();
        if !ready.is_empty() {
            if self.state != ConnectivityState::Ready || ready != self.published_ready {
                self.published_ready = ready.clone();
                self.state = ConnectivityState::Ready;
                let picker = self.picker(ready);
                helper.update_picker(ConnectivityState::Ready, picker);
            }
            return;
        }
        self.published_ready.clear();
        let all_failed = self
            .subchannels
            .iter()
            .all(|(_, s, _)| *s == ConnectivityState::TransientFailure);
        self.state =
            super::publish_not_ready(helper, self.state, all_failed, self.last_error.as_ref());
    }

    /// A picker over the READY subchannels.
    fn picker(&self, ready: Vec<Subchannel>) -> Arc<dyn Picker> {
        match self.choice {
            Choice::Rotate => {
                let start = (crate::random::next_u64() % ready.len() as u64) as usize;
                Arc::new(Rotation {
                    ready,
                    next: AtomicUsize::new(start),
                })
            }
            Choice::LeastRequest { choice_count } => {
                let ready = ready
                    .into_iter()
                    .filter_map(|sc| {
                        let (_, _, n) = self.subchannels.iter().find(|(s, _, _)| *s == sc)?;
                        Some((sc, n.clone()))
                    })
                    .collect();
                Arc::new(LeastLoaded {
                    ready,
                    choice_count,
                })
            }
        }
    }
}

impl Balancer for RoundRobin {
    fn resolver_update(
        &mut self,
        update: &ResolverUpdate,
        config: &BalancerConfig,
        helper: &mut Helper<'_>,
    ) {
        let mut new_picker = false;
        if let (Choice::LeastRequest { choice_count }, Some(config)) =
            (&mut self.choice, config.get::<LeastRequestConfig>())
            && *choice_count != config.choice_count
        {
            *choice_count = config.choice_count;
            new_picker = true;
        }
        let addresses = super::distinct_addresses(update);
        let old = std::mem::take(&mut self.subchannels);
        for address in &addresses {
            match old.iter().find(|(sc, _, _)| sc.address() == address) {
                Some(kept) => self.subchannels.push(kept.clone()),
                None => {
                    let sc = helper.new_subchannel(address);
                    sc.connect();
                    let outstanding = Outstanding::default();
                    self.subchannels
                        .push((sc, ConnectivityState::Connecting, outstanding));
                }
            }
        }
        for (sc, _, _) in old {
            if !self.subchannels.iter().any(|(s, _, _)| *s == sc) {
                sc.shutdown();
            }
        }
        if new_picker {
            self.published_ready.clear();
        }
        if self.subchannels.is_empty() {
            self.last_error = Some(Status::unavailable("the resolver returned no addresses"));
            self.state = ConnectivityState::TransientFailure;
        }
        self.update(helper);
    }

    fn resolver_error(&mut self, error: &Status, helper: &mut Helper<'_>) {
        if self.subchannels.is_empty() {
            self.last_error = Some(error.clone());
            self.state = ConnectivityState::TransientFailure;
            self.update(helper);
        }
    }

    fn subchannel_state(
        &mut self,
        subchannel: &Subchannel,
        state: ConnectivityState,
        error: Option<&Status>,
        helper: &mut Helper<'_>,
    ) {
        let Some(entry) = self
            .subchannels
            .iter_mut()
            .find(|(s, _, _)| s == subchannel)
        else {
            return;
        };
        entry.1 = state;
        match state {
            // A lost connection is replaced at once.
            ConnectivityState::Idle => subchannel.connect(),
            ConnectivityState::TransientFailure => self.last_error = error.cloned(),
            _ => {}
        }
        self.update(helper);
    }

    fn exit_idle(&mut self, _helper: &mut Helper<'_>) {
        for (sc, _, _) in &self.subchannels {
            sc.connect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::test_addresses as addresses;
    use super::*;
    use crate::testing::FakeChannel;

    /// How many of `n` picks went to each subchannel (by id); `None` if a pick did not
    /// choose a subchannel.
    fn spread(ch: &FakeChannel, n: usize) -> Option<HashMap<u64, usize>> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            match ch.pick("/a.B/C") {
                PickResult::Pick(p) => *counts.entry(p.subchannel.id()).or_default() += 1,
                _ => return None,
            }
        }
        Some(counts)
    }

    #[test]
    fn later_attempts_of_a_call_go_to_backends_it_has_not_tried() {
        for builder in [
            Box::new(RoundRobinBuilder) as Box<dyn BalancerBuilder>,
            Box::new(LeastRequestBuilder::named("least_request")),
        ] {
            let mut ch = FakeChannel::new();
            let mut lb = builder.build();
            ch.update(&mut *lb, &addresses(3));
            let scs = ch.subchannels();
            for sc in &scs {
                ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
            }
            for _ in 0..20 {
                let mut tried = Vec::new();
                for _ in 0..3 {
                    let PickResult::Pick(p) = ch.pick_after("/a.B/C", &tried) else {
                        panic!("no pick");
                    };
                    assert!(!tried.contains(p.subchannel.address()), "{tried:?}");
                    tried.push(p.subchannel.address().clone());
                }
                // All tried: any backend will do.
                assert!(matches!(
                    ch.pick_after("/a.B/C", &tried),
                    PickResult::Pick(_)
                ));
            }
        }
    }

    #[test]
    fn connects_to_every_address_and_rotates_over_the_ready_ones() {
        let mut ch = FakeChannel::new();
        let mut lb = RoundRobinBuilder.build();
        ch.update(&mut *lb, &addresses(3));
        let scs = ch.subchannels();
        assert!(scs.iter().all(|s| ch.connects(s) == 1));
        assert_eq!(ch.state(), ConnectivityState::Connecting);
        assert!(matches!(ch.pick("/a.B/C"), PickResult::Queue));

        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Ready, None);
        assert_eq!(ch.state(), ConnectivityState::Ready);
        assert_eq!(spread(&ch, 10).unwrap()[&scs[0].id()], 10);

        ch.set_state(&mut *lb, &scs[2], ConnectivityState::Ready, None);
        let counts = spread(&ch, 100).unwrap();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&scs[0].id()], 50);
        assert_eq!(counts[&scs[2].id()], 50);

        // A state change that leaves the READY set as it was publishes nothing.
        let pickers = ch.pickers_published();
        ch.set_state(&mut *lb, &scs[1], ConnectivityState::TransientFailure, None);
        assert_eq!(ch.pickers_published(), pickers);

        // A lost connection is replaced at once, and calls go to the others meanwhile.
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Idle, None);
        assert_eq!(ch.connects(&scs[0]), 2);
        let counts = spread(&ch, 10).unwrap();
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), [scs[2].id()]);
    }

    #[test]
    fn transient_failure_is_sticky_until_a_subchannel_is_ready() {
        let mut ch = FakeChannel::new();
        let mut lb = RoundRobinBuilder.build();
        ch.update(&mut *lb, &addresses(2));
        let scs = ch.subchannels();
        let why = |i| Some(Status::unavailable(format!("address {i} refused")));
        ch.set_state(
            &mut *lb,
            &scs[0],
            ConnectivityState::TransientFailure,
            why(0),
        );
        assert_eq!(ch.state(), ConnectivityState::Connecting);
        ch.set_state(
            &mut *lb,
            &scs[1],
            ConnectivityState::TransientFailure,
            why(1),
        );
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        match ch.pick("/a.B/C") {
            PickResult::Fail(s) => assert_eq!(s.message(), "address 1 refused"),
            other => panic!("expected a failure, got {other:?}"),
        }
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Connecting, None);
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        ch.set_state(&mut *lb, &scs[1], ConnectivityState::Ready, None);
        assert_eq!(ch.state(), ConnectivityState::Ready);
    }

    #[test]
    fn updates_keep_known_addresses_and_shut_down_the_rest() {
        let mut ch = FakeChannel::new();
        let mut lb = RoundRobinBuilder.build();
        ch.update(&mut *lb, &addresses(3));
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        ch.update(&mut *lb, &addresses(2));
        assert_eq!(
            ch.subchannels().len(),
            3,
            "no new subchannel for kept addresses"
        );
        assert!(ch.is_shut_down(&scs[2]));
        let counts = spread(&ch, 10).unwrap();
        assert_eq!(counts.len(), 2);
        assert!(!counts.contains_key(&scs[2].id()));

        // A resolver error with addresses in hand changes nothing; no addresses fails calls.
        lb.resolver_error(&Status::unavailable("dns: timeout"), &mut ch.helper());
        assert_eq!(ch.state(), ConnectivityState::Ready);
        ch.update(&mut *lb, &ResolverUpdate::new(Vec::new()));
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        assert!(scs.iter().all(|s| ch.is_shut_down(s)));
    }

    #[test]
    fn least_request_config_is_validated() {
        let b = LeastRequestBuilder::named("least_request");
        let count = |json: &str| {
            b.parse_config(&serde_json::from_str(json).unwrap())
                .map(|c| c.get::<LeastRequestConfig>().unwrap().choice_count)
        };
        assert_eq!(count("{}").unwrap(), 2);
        assert_eq!(count(r#"{"choiceCount": 3}"#).unwrap(), 3);
        assert_eq!(count(r#"{"choiceCount": 1000}"#).unwrap(), 10);
        assert!(count(r#"{"choiceCount": 1}"#).is_err());
        assert!(count(r#"{"choiceCount": "two"}"#).is_err());
        assert!(count("[]").is_err());
    }

    #[test]
    fn least_request_sends_calls_to_the_least_loaded_and_counts_them_until_they_end() {
        let mut ch = FakeChannel::new();
        let b = LeastRequestBuilder::named("least_request");
        let mut lb = b.build();
        // With choiceCount 10 and two subchannels, both are almost always among the draws.
        let config = b
            .parse_config(&serde_json::json!({"choiceCount": 10}))
            .unwrap();
        ch.update_with_config(&mut *lb, &addresses(2), &config);
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        // Ten calls in flight: they spread evenly, as each goes to the less loaded.
        let mut calls = Vec::new();
        for _ in 0..10 {
            match ch.pick("/a.B/C") {
                PickResult::Pick(p) => calls.push(p),
                other => panic!("expected a pick, got {other:?}"),
            }
        }
        let on =
            |calls: &[Pick], sc: &Subchannel| calls.iter().filter(|p| p.subchannel == *sc).count();
        let (a, b) = (on(&calls, &scs[0]), on(&calls, &scs[1]));
        assert!(a.abs_diff(b) <= 2, "{a} and {b}");

        // The calls on the first end: new calls go to it until the load evens out again.
        let ok = Status::new(crate::Code::Ok, "");
        let trailers = crate::MetadataMap::new();
        let (first, rest): (Vec<_>, Vec<_>) =
            calls.into_iter().partition(|p| p.subchannel == scs[0]);
        for p in first {
            let (_, mut done) = p.into_parts();
            done.finish(&ok, &trailers);
        }
        let mut next = Vec::new();
        for _ in 0..a.min(b) {
            match ch.pick("/a.B/C") {
                PickResult::Pick(p) => next.push(p),
                other => panic!("expected a pick, got {other:?}"),
            }
        }
        assert!(on(&next, &scs[0]) >= next.len() - 1, "{next:?}");
        // Calls dropped without ending (cancelled) are no longer counted either: with the
        // second's calls gone, new calls go to it.
        drop(rest);
        let mut more = Vec::new();
        for _ in 0..next.len().saturating_sub(1) {
            match ch.pick("/a.B/C") {
                PickResult::Pick(p) => more.push(p),
                other => panic!("expected a pick, got {other:?}"),
            }
        }
        assert!(
            on(&more, &scs[1]) >= more.len().saturating_sub(1),
            "{more:?}"
        );
    }
}
