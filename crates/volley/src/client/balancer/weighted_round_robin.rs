//! `weighted_round_robin` (gRFC A58): connections as `round_robin`'s; calls spread over the
//! READY subchannels in proportion to weights computed from the backends' per-call ORCA
//! load reports (`qps / (utilization + eps/qps * errorUtilizationPenalty)`), by an earliest
//! deadline first scheduler rebuilt every `weightUpdatePeriod`. Fleets without load reports
//! can give static weights as address attributes instead ([`Weight`], or a `"weight"` in
//! the endpoint's registry metadata, [`EndpointMetadata`]).

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    Balancer, BalancerBuilder, BalancerConfig, ConnectivityState, Helper, JsonValue, Pick,
    PickInfo, PickResult, Picker, Subchannel,
};
use crate::client::resolver::{Address, EndpointMetadata, ResolverUpdate, Weight};
use crate::orca::OrcaLoadReport;
use crate::{Error, Status};

/// Builds `weighted_round_robin` balancers. Config (all optional, gRFC A58's defaults):
/// `{"blackoutPeriod": "10s", "weightExpirationPeriod": "180s", "weightUpdatePeriod": "1s",
/// "errorUtilizationPenalty": 1.0}`. A backend's reported weight is used once it has
/// reported for `blackoutPeriod`, and dropped after `weightExpirationPeriod` without a
/// report; a READY backend without a usable weight gets the mean of the others'. With fewer
/// than two reported weights, static weights from address attributes apply if any address
/// has one (others count 1), else calls rotate evenly. Out-of-band reporting
/// (`enableOobLoadReport: true`) is not supported: such a config is rejected, and the
/// channel takes the next `loadBalancingConfig` entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedRoundRobinBuilder;

/// `weighted_round_robin`'s parsed config.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WrrConfig {
    blackout_period: Duration,
    weight_expiration_period: Duration,
    weight_update_period: Duration,
    error_utilization_penalty: f64,
}

impl Default for WrrConfig {
    fn default() -> WrrConfig {
        WrrConfig {
            blackout_period: Duration::from_secs(10),
            weight_expiration_period: Duration::from_secs(180),
            weight_update_period: Duration::from_secs(1),
            error_utilization_penalty: 1.0,
        }
    }
}

/// The shortest `weightUpdatePeriod` (A58: shorter ones are raised to it).
const MIN_WEIGHT_UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// The token of the weight-update timer.
const UPDATE_WEIGHTS: u64 = 1;

/// Parses a protobuf JSON `Duration` (`"1.5s"`).
fn parse_duration(value: &JsonValue) -> Option<Duration> {
    let seconds: f64 = value.as_str()?.strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| crate::timeout::capped(Duration::from_secs_f64(seconds.min(1e9))))
}

impl BalancerBuilder for WeightedRoundRobinBuilder {
    fn name(&self) -> &str {
        "weighted_round_robin"
    }

    fn parse_config(&self, config: &JsonValue) -> Result<BalancerConfig, Error> {
        let invalid = |why: String| Error::new(format!("weighted_round_robin: {why}"));
        let object = config
            .as_object()
            .ok_or_else(|| invalid("the config is not a JSON object".into()))?;
        let mut parsed = WrrConfig::default();
        for (key, value) in object {
            let duration = || {
                parse_duration(value)
                    .ok_or_else(|| invalid(format!("{key} is not a duration like \"10s\"")))
            };
            match key.as_str() {
                "blackoutPeriod" => parsed.blackout_period = duration()?,
                "weightExpirationPeriod" => parsed.weight_expiration_period = duration()?,
                "weightUpdatePeriod" => {
                    parsed.weight_update_period = duration()?.max(MIN_WEIGHT_UPDATE_PERIOD);
                }
                "errorUtilizationPenalty" => {
                    parsed.error_utilization_penalty = value
                        .as_f64()
                        .filter(|p| *p >= 0.0 && p.is_finite())
                        .ok_or_else(|| {
                            invalid("errorUtilizationPenalty is not a number >= 0".into())
                        })?;
                }
                "enableOobLoadReport" if value.as_bool() == Some(true) => {
                    return Err(invalid("out-of-band load reports are not supported".into()));
                }
                "oobReportingPeriod" => {
                    duration()?;
                }
                _ => {} // unknown fields are ignored, as protobuf JSON readers do
            }
        }
        Ok(BalancerConfig::new(parsed))
    }

    fn build(&self) -> Box<dyn Balancer> {
        Box::new(WeightedRoundRobin::default())
    }
}

/// A backend's weight from its load reports (A58's `UpdateWeight` / `GetWeight`).
#[derive(Debug, Default)]
struct EndpointWeight(Mutex<WeightState>);

#[derive(Debug, Default)]
struct WeightState {
    weight: f64,
    /// Since when reports have been non-empty (reset when the subchannel becomes READY and
    /// when the weight expires).
    non_empty_since: Option<Instant>,
    last_updated: Option<Instant>,
}

impl EndpointWeight {
    fn update(&self, report: &OrcaLoadReport, error_utilization_penalty: f64) {
        let qps = report.rps_fractional;
        let mut utilization = if report.application_utilization > 0.0 {
            report.application_utilization
        } else {
            report.cpu_utilization
        };
        if utilization > 0.0 && qps > 0.0 {
            utilization += report.eps / qps * error_utilization_penalty;
        }
        let weight = if utilization > 0.0 {
            qps / utilization
        } else {
            0.0
        };
        if !(weight > 0.0 && weight.is_finite()) {
            return;
        }
        let now = Instant::now();
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.non_empty_since.get_or_insert(now);
        state.last_updated = Some(now);
        state.weight = weight;
    }

    fn reset(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .non_empty_since = None;
    }

    fn get(&self, config: &WrrConfig, now: Instant) -> f64 {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(last_updated) = state.last_updated else {
            return 0.0;
        };
        if now.saturating_duration_since(last_updated) >= config.weight_expiration_period {
            state.non_empty_since = None;
            return 0.0;
        }
        if !config.blackout_period.is_zero() {
            // Not since a report after the subchannel became READY: still in the blackout.
            let Some(since) = state.non_empty_since else {
                return 0.0;
            };
            if now.saturating_duration_since(since) < config.blackout_period {
                return 0.0;
            }
        }
        state.weight
    }
}

/// A static weight from an address's attributes: [`Weight`], or a positive whole `"weight"`
/// in its [`EndpointMetadata`].
fn static_weight(address: &Address) -> Option<f64> {
    if let Some(Weight(w)) = address.attributes().get::<Weight>() {
        return Some(f64::from((*w).max(1)));
    }
    let metadata = address.attributes().get::<EndpointMetadata>()?;
    let w = metadata.0.get("weight")?.as_u64().filter(|w| *w > 0)?;
    Some(w.min(u64::from(u32::MAX)) as f64)
}

struct Endpoint {
    subchannel: Subchannel,
    state: ConnectivityState,
    weight: Arc<EndpointWeight>,
    static_weight: Option<f64>,
}

#[derive(Default)]
struct WeightedRoundRobin {
    config: WrrConfig,
    endpoints: Vec<Endpoint>,
    state: ConnectivityState,
    last_error: Option<Status>,
    timer_armed: bool,
}

impl WeightedRoundRobin {
    /// Publishes the channel's state and, when READY, a picker with fresh weights.
    fn publish(&mut self, helper: &mut Helper<'_>) {
        let ready: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.state == ConnectivityState::Ready)
            .collect();
        if !ready.is_empty() {
            let now = Instant::now();
            let reported: Vec<f64> = ready
                .iter()
                .map(|e| e.weight.get(&self.config, now))
                .collect();
            let weights = if reported.iter().filter(|w| **w > 0.0).count() >= 2 {
                reported
            } else if ready.iter().any(|e| e.static_weight.is_some()) {
                ready
                    .iter()
                    .map(|e| e.static_weight.unwrap_or(1.0))
                    .collect()
            } else {
                vec![1.0; ready.len()]
            };
            let picker = WrrPicker {
                subchannels: ready.iter().map(|e| e.subchannel.clone()).collect(),
                weights: ready.iter().map(|e| e.weight.clone()).collect(),
                scheduler: Mutex::new(Edf::new(&weights)),
                error_utilization_penalty: self.config.error_utilization_penalty,
            };
            self.state = ConnectivityState::Ready;
            helper.update_picker(ConnectivityState::Ready, Arc::new(picker));
            if !self.timer_armed {
                self.timer_armed = true;
                helper.schedule(self.config.weight_update_period, UPDATE_WEIGHTS);
            }
            return;
        }
        let all_failed = self
            .endpoints
            .iter()
            .all(|e| e.state == ConnectivityState::TransientFailure);
        self.state =
            super::publish_not_ready(helper, self.state, all_failed, self.last_error.as_ref());
    }
}

impl Balancer for WeightedRoundRobin {
    fn resolver_update(
        &mut self,
        update: &ResolverUpdate,
        config: &BalancerConfig,
        helper: &mut Helper<'_>,
    ) {
        self.config = config.get::<WrrConfig>().copied().unwrap_or_default();
        let addresses = super::distinct_addresses(update);
        let mut old = std::mem::take(&mut self.endpoints);
        for address in &addresses {
            let static_weight = static_weight(address);
            match old.iter().position(|e| e.subchannel.address() == address) {
                Some(i) => {
                    let mut kept = old.swap_remove(i);
                    kept.static_weight = static_weight;
                    self.endpoints.push(kept);
                }
                None => {
                    let subchannel = helper.new_subchannel(address);
                    subchannel.connect();
                    self.endpoints.push(Endpoint {
                        subchannel,
                        state: ConnectivityState::Connecting,
                        weight: Arc::default(),
                        static_weight,
                    });
                }
            }
        }
        for gone in old {
            gone.subchannel.shutdown();
        }
        if self.endpoints.is_empty() {
            self.last_error = Some(Status::unavailable("the resolver returned no addresses"));
            self.state = ConnectivityState::TransientFailure;
        }
        self.publish(helper);
    }

    fn resolver_error(&mut self, error: &Status, helper: &mut Helper<'_>) {
        if self.endpoints.is_empty() {
            self.last_error = Some(error.clone());
            self.state = ConnectivityState::TransientFailure;
            self.publish(helper);
        }
    }

    fn subchannel_state(
        &mut self,
        subchannel: &Subchannel,
        state: ConnectivityState,
        error: Option<&Status>,
        helper: &mut Helper<'_>,
    ) {
        let Some(endpoint) = self
            .endpoints
            .iter_mut()
            .find(|e| e.subchannel == *subchannel)
        else {
            return;
        };
        let was = endpoint.state;
        // A58: an IDLE subchannel reconnects at once and counts as CONNECTING.
        endpoint.state = match state {
            ConnectivityState::Idle => {
                subchannel.connect();
                ConnectivityState::Connecting
            }
            s => s,
        };
        match state {
            ConnectivityState::Ready => endpoint.weight.reset(),
            ConnectivityState::TransientFailure => self.last_error = error.cloned(),
            _ => {}
        }
        if was != endpoint.state {
            self.publish(helper);
        }
    }

    fn exit_idle(&mut self, _helper: &mut Helper<'_>) {
        for e in &self.endpoints {
            e.subchannel.connect();
        }
    }

    fn wake(&mut self, token: u64, helper: &mut Helper<'_>) {
        if token == UPDATE_WEIGHTS {
            self.timer_armed = false;
            if self.state == ConnectivityState::Ready {
                self.publish(helper);
            }
        }
    }
}

/// Picks by weight, and feeds each call's load report back into its backend's weight.
struct WrrPicker {
    subchannels: Vec<Subchannel>,
    weights: Vec<Arc<EndpointWeight>>,
    scheduler: Mutex<Edf>,
    error_utilization_penalty: f64,
}

impl Picker for WrrPicker {
    fn pick(&self, info: &PickInfo<'_>) -> PickResult {
        let mut scheduler = self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut i = scheduler.next();
        // A hedge or retry: the scheduler's next backend not yet tried, if any.
        for _ in 1..self.subchannels.len() {
            match self.subchannels.get(i) {
                Some(s) if info.was_attempted(s) => i = scheduler.next(),
                _ => break,
            }
        }
        drop(scheduler);
        let (Some(subchannel), Some(weight)) = (self.subchannels.get(i), self.weights.get(i))
        else {
            return PickResult::Queue;
        };
        let weight = weight.clone();
        let penalty = self.error_utilization_penalty;
        PickResult::Pick(Pick::new(subchannel.clone()).on_done(move |end| {
            if let Some(report) = OrcaLoadReport::from_trailers(end.trailers()) {
                weight.update(&report, penalty);
            }
        }))
    }
}

/// Earliest deadline first (A58): each backend is a job whose period is the inverse of its
/// weight; the one with the earliest deadline is picked and its deadline moved on by its
/// period. Backends without a weight get the mean of the others'.
#[derive(Debug)]
struct Edf {
    queue: BinaryHeap<Reverse<Job>>,
    seq: u64,
}

#[derive(Debug)]
struct Job {
    deadline: f64,
    /// Breaks ties in insertion order.
    seq: u64,
    period: f64,
    index: usize,
}

impl PartialEq for Job {
    fn eq(&self, other: &Job) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Job) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    fn cmp(&self, other: &Job) -> CmpOrdering {
        self.deadline
            .total_cmp(&other.deadline)
            .then(self.seq.cmp(&other.seq))
    }
}

impl Edf {
    fn new(weights: &[f64]) -> Edf {
        let known: Vec<f64> = weights.iter().copied().filter(|w| *w > 0.0).collect();
        let mean = if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let mut queue = BinaryHeap::with_capacity(weights.len());
        for (index, w) in weights.iter().enumerate() {
            let period = 1.0 / if *w > 0.0 { *w } else { mean };
            // A random start in [0, period], so that pickers built at once do not all start
            // on the same backend.
            let start = (crate::random::next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            queue.push(Reverse(Job {
                deadline: start * period,
                seq: index as u64,
                period,
                index,
            }));
        }
        Edf {
            queue,
            seq: weights.len() as u64,
        }
    }

    fn next(&mut self) -> usize {
        let Some(Reverse(mut job)) = self.queue.pop() else {
            return 0;
        };
        let index = job.index;
        job.deadline += job.period;
        job.seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse(job));
        index
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::MetadataMap;
    use crate::balancer::CallEnd;
    use crate::testing::FakeChannel;

    fn config(json: JsonValue) -> Result<WrrConfig, Error> {
        WeightedRoundRobinBuilder
            .parse_config(&json)
            .map(|c| *c.get::<WrrConfig>().unwrap())
    }

    #[test]
    fn the_config_has_a58s_defaults_and_limits() {
        let c = config(serde_json::json!({})).unwrap();
        assert_eq!(c, WrrConfig::default());
        let c = config(serde_json::json!({
            "blackoutPeriod": "0s", "weightExpirationPeriod": "1.5s",
            "weightUpdatePeriod": "0.01s", "errorUtilizationPenalty": 2.5, "future": 1
        }))
        .unwrap();
        assert_eq!(c.blackout_period, Duration::ZERO);
        assert_eq!(c.weight_expiration_period, Duration::from_millis(1500));
        assert_eq!(c.weight_update_period, MIN_WEIGHT_UPDATE_PERIOD);
        assert_eq!(c.error_utilization_penalty, 2.5);
        for bad in [
            serde_json::json!({"blackoutPeriod": 10}),
            serde_json::json!({"blackoutPeriod": "-1s"}),
            serde_json::json!({"errorUtilizationPenalty": -1}),
            serde_json::json!({"enableOobLoadReport": true}),
            serde_json::json!([]),
        ] {
            assert!(config(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn edf_picks_in_proportion_to_weight() {
        let mut edf = Edf::new(&[1.0, 2.0, 3.0]);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            counts[edf.next()] += 1;
        }
        for (count, want) in counts.iter().zip([100, 200, 300]) {
            assert!(count.abs_diff(want) <= 1, "{counts:?}");
        }
        // A backend without a weight gets the mean of the others'.
        let mut edf = Edf::new(&[1.0, 0.0, 3.0]);
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            counts[edf.next()] += 1;
        }
        for (count, want) in counts.iter().zip([100, 200, 300]) {
            assert!(count.abs_diff(want) <= 1, "{counts:?}");
        }
    }

    fn report(qps: f64, utilization: f64, eps: f64) -> MetadataMap {
        let report = OrcaLoadReport {
            rps_fractional: qps,
            cpu_utilization: utilization,
            eps,
            ..Default::default()
        };
        let mut trailers = MetadataMap::new();
        trailers
            .insert_bin(
                crate::orca::ENDPOINT_LOAD_METRICS_BIN,
                &prost::Message::encode_to_vec(&report),
            )
            .unwrap();
        trailers
    }

    fn spread(ch: &FakeChannel, n: usize, trailers: &[MetadataMap]) -> HashMap<u64, usize> {
        let scs = ch.subchannels();
        let ok = Status::new(crate::Code::Ok, "");
        let mut counts = HashMap::new();
        for _ in 0..n {
            let PickResult::Pick(p) = ch.pick("/a.B/C") else {
                panic!("expected a pick");
            };
            let i = scs.iter().position(|s| *s == p.subchannel).unwrap();
            *counts.entry(p.subchannel.id()).or_default() += 1;
            p.finish(&CallEnd::new(&ok, &trailers[i]));
        }
        counts
    }

    #[tokio::test(start_paused = true)]
    async fn reported_weights_apply_after_the_blackout_and_lapse_when_stale() {
        let mut ch = FakeChannel::new();
        let mut lb = WeightedRoundRobinBuilder.build();
        let config = WeightedRoundRobinBuilder
            .parse_config(&serde_json::json!({
                "blackoutPeriod": "5s", "weightExpirationPeriod": "60s", "weightUpdatePeriod": "1s"
            }))
            .unwrap();
        let update = ResolverUpdate::new(
            (1..=3)
                .map(|i| Address::parse(&format!("10.0.0.{i}:1")))
                .collect(),
        );
        ch.update_with_config(&mut *lb, &update, &config);
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        assert_eq!(ch.timers(), [(Duration::from_secs(1), UPDATE_WEIGHTS)]);
        // Same qps, utilization 0.2 / 0.4 / 0.8: weights 500 / 250 / 125, 4:2:1.
        let trailers = [
            report(100.0, 0.2, 0.0),
            report(100.0, 0.4, 0.0),
            report(100.0, 0.8, 0.0),
        ];
        let even = spread(&ch, 300, &trailers);
        assert!(even.values().all(|n| n.abs_diff(100) <= 1), "{even:?}");

        // Within the blackout period, the weights are not used yet.
        tokio::time::advance(Duration::from_secs(1)).await;
        ch.wake(&mut *lb, UPDATE_WEIGHTS);
        let still_even = spread(&ch, 300, &trailers);
        assert!(
            still_even.values().all(|n| n.abs_diff(100) <= 1),
            "{still_even:?}"
        );

        // After it, calls follow the weights.
        tokio::time::advance(Duration::from_secs(5)).await;
        ch.wake(&mut *lb, UPDATE_WEIGHTS);
        let weighted = spread(&ch, 700, &trailers);
        for (sc, want) in scs.iter().zip([400, 200, 100]) {
            assert!(weighted[&sc.id()].abs_diff(want) <= 1, "{weighted:?}");
        }

        // Errors cost weight: eps/qps * penalty is added to the utilization.
        let trailers = [
            report(100.0, 0.2, 0.0),
            report(100.0, 0.4, 0.0),
            report(100.0, 0.2, 60.0),
        ];
        spread(&ch, 10, &trailers);
        tokio::time::advance(Duration::from_secs(1)).await;
        ch.wake(&mut *lb, UPDATE_WEIGHTS);
        let penalised = spread(&ch, 700, &trailers);
        // 500 / 250 / (100 / 0.8 = 125): 4:2:1 again.
        for (sc, want) in scs.iter().zip([400, 200, 100]) {
            assert!(penalised[&sc.id()].abs_diff(want) <= 1, "{penalised:?}");
        }

        // Reports that stop: after the expiration period, calls rotate evenly again.
        tokio::time::advance(Duration::from_secs(61)).await;
        ch.wake(&mut *lb, UPDATE_WEIGHTS);
        let none = [MetadataMap::new(), MetadataMap::new(), MetadataMap::new()];
        let expired = spread(&ch, 300, &none);
        assert!(
            expired.values().all(|n| n.abs_diff(100) <= 1),
            "{expired:?}"
        );
    }

    #[test]
    fn static_weights_from_attributes_split_calls_without_reports() {
        let mut ch = FakeChannel::new();
        let mut lb = WeightedRoundRobinBuilder.build();
        let update = ResolverUpdate::new(vec![
            Address::parse("10.0.0.1:1"),
            Address::parse("10.0.0.2:1").with_attribute(Weight(2)),
            Address::parse("10.0.0.3:1")
                .with_attribute(EndpointMetadata(serde_json::json!({"weight": 3}))),
        ]);
        ch.update(&mut *lb, &update);
        let scs = ch.subchannels();
        for sc in &scs {
            ch.set_state(&mut *lb, sc, ConnectivityState::Ready, None);
        }
        let none = [MetadataMap::new(), MetadataMap::new(), MetadataMap::new()];
        let counts = spread(&ch, 600, &none);
        for (sc, want) in scs.iter().zip([100, 200, 300]) {
            assert!(counts[&sc.id()].abs_diff(want) <= 1, "{counts:?}");
        }
        // A subchannel that drops out leaves the others' proportions.
        ch.set_state(&mut *lb, &scs[0], ConnectivityState::TransientFailure, None);
        let counts = spread(&ch, 500, &none);
        assert!(!counts.contains_key(&scs[0].id()));
        assert!(counts[&scs[1].id()].abs_diff(200) <= 1, "{counts:?}");
    }
}
