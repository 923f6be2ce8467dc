//! `round_robin`: a connection to every address; calls rotate over the READY ones. And
//! `least_request` (gRFC A48), which manages its connections the same way but sends each
//! call to the least loaded of a few READY ones drawn at random.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{
    Balancer, BalancerBuilder, ConnectivityState, FailPicker, Helper, PickInfo, PickResult, Picker,
    QueuePicker, Subchannel,
};
use crate::Status;
use crate::client::resolver::ResolverUpdate;

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
/// goes to the READY subchannel with the fewest calls open among `choice_count` (2, A48's
/// default) drawn at random, which steers calls away from a slow backend. Registered as
/// `least_request` and as A48's config name `least_request_experimental`.
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

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(RoundRobin::new(Choice::LeastRequest {
            choice_count: LEAST_REQUEST_CHOICES,
        }))
    }
}

/// How many READY subchannels `least_request` compares per call (A48's default).
const LEAST_REQUEST_CHOICES: usize = 2;

/// How a picker chooses among the READY subchannels.
#[derive(Debug, Clone, Copy)]
enum Choice {
    /// In turn.
    Rotate,
    /// The one with the fewest calls open, of `choice_count` drawn at random.
    LeastRequest { choice_count: usize },
}

struct RoundRobin {
    choice: Choice,
    subchannels: Vec<(Subchannel, ConnectivityState)>,
    state: ConnectivityState,
    /// The READY set of the last published picker (republished only when it changes, so the
    /// rotation is not restarted needlessly).
    published_ready: Vec<Subchannel>,
    last_error: Option<Status>,
}

/// Picks the READY subchannel with the fewest calls open among `choice_count` drawn at
/// random (with replacement, as A48 allows).
struct LeastLoaded {
    ready: Vec<Subchannel>,
    choice_count: usize,
}

impl Picker for LeastLoaded {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        let draw = || {
            let i = (crate::random::next_u64() % self.ready.len() as u64) as usize;
            &self.ready[i]
        };
        let mut best = draw();
        let mut best_load = best.active_streams();
        for _ in 1..self.choice_count {
            let candidate = draw();
            let load = candidate.active_streams();
            if load < best_load {
                (best, best_load) = (candidate, load);
            }
        }
        PickResult::Pick(best.clone())
    }
}

/// Rotates over READY subchannels, starting at a random one.
struct Rotation {
    ready: Vec<Subchannel>,
    next: AtomicUsize,
}

impl Picker for Rotation {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        PickResult::Pick(self.ready[i % self.ready.len()].clone())
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
            .filter(|(_, s)| *s == ConnectivityState::Ready)
            .map(|(sc, _)| sc.clone())
            .collect();
        if !ready.is_empty() {
            if self.state != ConnectivityState::Ready || ready != self.published_ready {
                let start = (crate::random::next_u64() % ready.len() as u64) as usize;
                self.published_ready = ready.clone();
                self.state = ConnectivityState::Ready;
                let picker: Arc<dyn Picker> = match self.choice {
                    Choice::Rotate => Arc::new(Rotation {
                        ready,
                        next: AtomicUsize::new(start),
                    }),
                    Choice::LeastRequest { choice_count } => Arc::new(LeastLoaded {
                        ready,
                        choice_count,
                    }),
                };
                helper.update_picker(ConnectivityState::Ready, picker);
            }
            return;
        }
        self.published_ready.clear();
        let all_failed = self
            .subchannels
            .iter()
            .all(|(_, s)| *s == ConnectivityState::TransientFailure);
        // TRANSIENT_FAILURE is sticky: it lasts until a subchannel is READY.
        if all_failed || self.state == ConnectivityState::TransientFailure {
            let error = self
                .last_error
                .clone()
                .unwrap_or_else(|| Status::unavailable("no address is reachable"));
            self.state = ConnectivityState::TransientFailure;
            helper.update_picker(self.state, Arc::new(FailPicker(error)));
        } else if self.state != ConnectivityState::Connecting {
            self.state = ConnectivityState::Connecting;
            helper.update_picker(self.state, Arc::new(QueuePicker));
        }
    }
}

impl Balancer for RoundRobin {
    fn resolver_update(&mut self, update: &ResolverUpdate, helper: &mut Helper<'_>) {
        let addresses = super::distinct_addresses(update);
        let old = std::mem::take(&mut self.subchannels);
        for address in &addresses {
            match old.iter().find(|(sc, _)| sc.address() == address) {
                Some(kept) => self.subchannels.push(kept.clone()),
                None => {
                    let sc = helper.new_subchannel(address);
                    sc.connect();
                    self.subchannels.push((sc, ConnectivityState::Connecting));
                }
            }
        }
        for (sc, _) in old {
            if !self.subchannels.iter().any(|(s, _)| *s == sc) {
                sc.shutdown();
            }
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
        let Some(entry) = self.subchannels.iter_mut().find(|(s, _)| s == subchannel) else {
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
        for (sc, _) in &self.subchannels {
            sc.connect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::client::resolver::Address;
    use crate::testing::FakeChannel;

    fn addresses(n: u16) -> ResolverUpdate {
        ResolverUpdate::new(
            (1..=n)
                .map(|i| Address::parse(&format!("10.0.0.{i}:50051")))
                .collect(),
        )
    }

    /// How many of `n` picks went to each subchannel (by id); `None` if a pick did not
    /// choose a subchannel.
    fn spread(ch: &FakeChannel, n: usize) -> Option<HashMap<u64, usize>> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            match ch.pick("/a.B/C") {
                PickResult::Pick(sc) => *counts.entry(sc.id()).or_default() += 1,
                _ => return None,
            }
        }
        Some(counts)
    }

    #[test]
    fn connects_to_every_address_and_rotates_over_the_ready_ones() {
        let mut ch = FakeChannel::new();
        let mut lb = RoundRobinBuilder.build();
        lb.resolver_update(&addresses(3), &mut ch.helper());
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
        lb.resolver_update(&addresses(2), &mut ch.helper());
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
        lb.resolver_update(&addresses(3), &mut ch.helper());
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        lb.resolver_update(&addresses(2), &mut ch.helper());
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
        lb.resolver_update(&ResolverUpdate::new(Vec::new()), &mut ch.helper());
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        assert!(scs.iter().all(|s| ch.is_shut_down(s)));
    }
}
