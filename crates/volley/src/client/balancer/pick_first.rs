//! `pick_first`: one connection, to the first address that accepts, in the resolver's order.

use std::sync::Arc;

use super::{
    Balancer, BalancerBuilder, BalancerConfig, ConnectivityState, FailPicker, Helper, PickInfo,
    PickResult, Picker, QueuePicker, Subchannel,
};
use crate::Status;
use crate::client::resolver::ResolverUpdate;

/// Builds `pick_first` balancers: the default policy. Addresses are tried in order until one
/// connects; every call goes to that one. When its connection is lost (or GOAWAY arrives) the
/// channel goes IDLE and the next call starts over from the first address. When every address
/// has failed, the channel is TRANSIENT_FAILURE and all of them keep retrying with backoff;
/// the first to connect is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickFirstBuilder;

impl BalancerBuilder for PickFirstBuilder {
    fn name(&self) -> &str {
        "pick_first"
    }

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(PickFirst {
            subchannels: Vec::new(),
            selected: None,
            next: 0,
            state: ConnectivityState::Idle,
        })
    }
}

struct PickFirst {
    /// One per address, in order.
    subchannels: Vec<Subchannel>,
    selected: Option<Subchannel>,
    /// The address the first pass tries now; `subchannels.len()` once the pass is over.
    next: usize,
    state: ConnectivityState,
}

struct Selected(Subchannel);

impl Picker for Selected {
    fn pick(&self, _info: &PickInfo<'_>) -> PickResult {
        PickResult::pick(self.0.clone())
    }
}

impl PickFirst {
    fn publish(
        &mut self,
        helper: &mut Helper<'_>,
        state: ConnectivityState,
        picker: Arc<dyn Picker>,
    ) {
        self.state = state;
        helper.update_picker(state, picker);
    }

    /// Starts a pass over the addresses from the first.
    fn start_pass(&mut self, helper: &mut Helper<'_>) {
        self.next = 0;
        if let Some(first) = self.subchannels.first() {
            first.connect();
            if self.state != ConnectivityState::TransientFailure {
                self.publish(helper, ConnectivityState::Connecting, Arc::new(QueuePicker));
            }
        }
    }
}

impl Balancer for PickFirst {
    fn resolver_update(
        &mut self,
        update: &ResolverUpdate,
        _config: &BalancerConfig,
        helper: &mut Helper<'_>,
    ) {
        let addresses = super::distinct_addresses(update);
        if addresses.is_empty() {
            for sc in self.subchannels.drain(..) {
                sc.shutdown();
            }
            self.selected = None;
            let status = Status::unavailable("the resolver returned no addresses");
            self.publish(
                helper,
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(status)),
            );
            return;
        }
        let old = std::mem::take(&mut self.subchannels);
        for address in &addresses {
            let reused = old.iter().find(|s| s.address() == address).cloned();
            let sc = reused.unwrap_or_else(|| helper.new_subchannel(address));
            self.subchannels.push(sc);
        }
        for sc in old {
            if !self.subchannels.contains(&sc) {
                sc.shutdown();
            }
        }
        let keeps_selection = self
            .selected
            .as_ref()
            .is_some_and(|s| self.subchannels.contains(s));
        if !keeps_selection {
            self.selected = None;
            self.start_pass(helper);
        }
    }

    fn resolver_error(&mut self, error: &Status, helper: &mut Helper<'_>) {
        if self.subchannels.is_empty() {
            self.publish(
                helper,
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker(error.clone())),
            );
        }
    }

    fn subchannel_state(
        &mut self,
        subchannel: &Subchannel,
        state: ConnectivityState,
        error: Option<&Status>,
        helper: &mut Helper<'_>,
    ) {
        let Some(index) = self.subchannels.iter().position(|s| s == subchannel) else {
            return;
        };
        match state {
            ConnectivityState::Ready => {
                if self.selected.as_ref() == Some(subchannel) {
                    return;
                }
                // The first to connect wins; the others stop trying (and start afresh if the
                // selection is lost).
                for (i, sc) in self.subchannels.iter_mut().enumerate() {
                    if i != index && sc.state() != ConnectivityState::Idle {
                        sc.shutdown();
                        *sc = helper.new_subchannel(&sc.address().clone());
                    }
                }
                self.selected = Some(subchannel.clone());
                self.next = self.subchannels.len();
                self.publish(
                    helper,
                    ConnectivityState::Ready,
                    Arc::new(Selected(subchannel.clone())),
                );
            }
            ConnectivityState::Idle => {
                if self.selected.as_ref() == Some(subchannel) {
                    self.selected = None;
                    helper.resolve_now();
                    self.publish(helper, ConnectivityState::Idle, Arc::new(QueuePicker));
                }
            }
            ConnectivityState::Connecting => {
                if self.state == ConnectivityState::Idle {
                    self.publish(helper, ConnectivityState::Connecting, Arc::new(QueuePicker));
                }
            }
            ConnectivityState::TransientFailure => {
                let error = error
                    .cloned()
                    .unwrap_or_else(|| Status::unavailable("connection failed"));
                if let Some(selected) = &self.selected {
                    if selected != subchannel {
                        return;
                    }
                    // The selected connection failed (its keepalive went unanswered) and the
                    // subchannel is reconnecting: TRANSIENT_FAILURE, sticky until one of the
                    // addresses connects again.
                    self.selected = None;
                    helper.resolve_now();
                    self.next = self.subchannels.len();
                    for sc in &self.subchannels {
                        sc.connect();
                    }
                    self.publish(
                        helper,
                        ConnectivityState::TransientFailure,
                        Arc::new(FailPicker(error)),
                    );
                    return;
                }
                if index == self.next && self.next + 1 < self.subchannels.len() {
                    self.next += 1;
                    self.subchannels[self.next].connect();
                } else if index + 1 >= self.subchannels.len() || self.next >= self.subchannels.len()
                {
                    // Every address has failed once: TRANSIENT_FAILURE (sticky until one
                    // connects), all of them retrying with backoff.
                    self.next = self.subchannels.len();
                    for sc in &self.subchannels {
                        sc.connect();
                    }
                    self.publish(
                        helper,
                        ConnectivityState::TransientFailure,
                        Arc::new(FailPicker(error)),
                    );
                }
            }
            ConnectivityState::Shutdown => {}
        }
    }

    fn exit_idle(&mut self, helper: &mut Helper<'_>) {
        if self.selected.is_none() && self.state == ConnectivityState::Idle {
            self.start_pass(helper);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_addresses as addresses;
    use super::*;
    use crate::testing::FakeChannel;

    fn picked(channel: &FakeChannel) -> Option<Subchannel> {
        channel.pick("/a.B/C").subchannel().cloned()
    }

    fn failed(channel: &FakeChannel) -> Option<Status> {
        match channel.pick("/a.B/C") {
            PickResult::Fail(status) => Some(status),
            _ => None,
        }
    }

    #[test]
    fn tries_addresses_in_order_and_keeps_the_first_that_connects() {
        let mut ch = FakeChannel::new();
        let mut lb = PickFirstBuilder.build();
        ch.update(&mut *lb, &addresses(3));
        let scs = ch.subchannels();
        assert_eq!(scs.len(), 3);
        assert_eq!(
            scs.iter().map(|s| ch.connects(s)).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        assert_eq!(ch.state(), ConnectivityState::Connecting);
        assert!(matches!(ch.pick("/a.B/C"), PickResult::Queue));

        // The first fails: the second is tried; the channel is still CONNECTING.
        let why = Status::unavailable("refused");
        ch.set_state(
            &mut *lb,
            &scs[0],
            ConnectivityState::TransientFailure,
            Some(why),
        );
        assert_eq!(ch.connects(&scs[1]), 1);
        assert_eq!(ch.connects(&scs[2]), 0);
        assert_eq!(ch.state(), ConnectivityState::Connecting);

        // The second connects: it is selected, and the failed first is replaced by a fresh
        // IDLE subchannel (so that it stops retrying).
        ch.set_state(&mut *lb, &scs[1], ConnectivityState::Ready, None);
        assert_eq!(ch.state(), ConnectivityState::Ready);
        assert_eq!(picked(&ch), Some(scs[1].clone()));
        assert!(ch.is_shut_down(&scs[0]));
        assert!(!ch.is_shut_down(&scs[2]));
        assert_eq!(ch.live_subchannels(scs[0].address()).len(), 1);

        // An update that keeps the selected address keeps the selection.
        let pickers = ch.pickers_published();
        ch.update(&mut *lb, &addresses(2));
        assert_eq!(ch.pickers_published(), pickers);
        assert!(ch.is_shut_down(&scs[2]));
        assert_eq!(picked(&ch), Some(scs[1].clone()));
    }

    #[test]
    fn a_lost_connection_makes_the_channel_idle_until_asked() {
        let mut ch = FakeChannel::new();
        let mut lb = PickFirstBuilder.build();
        ch.update(&mut *lb, &addresses(2));
        let scs = ch.subchannels();
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Ready, None);
        assert_eq!(ch.resolve_now_requests(), 0);
        let why = Status::unavailable("the server sent GOAWAY");
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Idle, Some(why));
        assert_eq!(ch.state(), ConnectivityState::Idle);
        assert!(matches!(ch.pick("/a.B/C"), PickResult::Queue));
        assert_eq!(ch.resolve_now_requests(), 1);
        assert_eq!(ch.connects(&scs[0]), 1);

        // The next call starts a new pass from the first address.
        lb.exit_idle(&mut ch.helper());
        assert_eq!(ch.connects(&scs[0]), 2);
        assert_eq!(ch.state(), ConnectivityState::Connecting);
    }

    #[test]
    fn every_address_failing_is_a_sticky_transient_failure() {
        let mut ch = FakeChannel::new();
        let mut lb = PickFirstBuilder.build();
        ch.update(&mut *lb, &addresses(2));
        let scs = ch.subchannels();
        let fail = |ch: &mut FakeChannel, lb: &mut Box<dyn Balancer>, i: usize| {
            let why = Status::unavailable(format!("address {i} refused"));
            ch.set_state(
                &mut **lb,
                &scs[i],
                ConnectivityState::TransientFailure,
                Some(why),
            );
        };
        fail(&mut ch, &mut lb, 0);
        fail(&mut ch, &mut lb, 1);
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        let status = failed(&ch).expect("calls fail");
        assert_eq!(status.code(), crate::Code::Unavailable);
        assert_eq!(status.message(), "address 1 refused");
        // Every address keeps retrying (with backoff): each was asked to connect again.
        assert!(scs.iter().all(|s| ch.connects(s) >= 2));

        // Retrying does not leave TRANSIENT_FAILURE; connecting does.
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Connecting, None);
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::Ready, None);
        assert_eq!(ch.state(), ConnectivityState::Ready);
        assert_eq!(picked(&ch), Some(scs[0].clone()));
    }

    #[test]
    fn no_addresses_and_resolver_errors_fail_calls() {
        let mut ch = FakeChannel::new();
        let mut lb = PickFirstBuilder.build();
        lb.resolver_error(&Status::unavailable("dns: no such host"), &mut ch.helper());
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        assert_eq!(failed(&ch).unwrap().message(), "dns: no such host");

        ch.update(&mut *lb, &addresses(1));
        let sc = ch.subchannels()[0].clone();
        ch.set_state(&mut *lb, &sc, ConnectivityState::Ready, None);
        // With addresses, a resolver error changes nothing.
        lb.resolver_error(&Status::unavailable("dns: timeout"), &mut ch.helper());
        assert_eq!(picked(&ch), Some(sc.clone()));

        ch.update(&mut *lb, &ResolverUpdate::new(Vec::new()));
        assert!(ch.is_shut_down(&sc));
        assert_eq!(
            failed(&ch).unwrap().message(),
            "the resolver returned no addresses"
        );
    }
}
