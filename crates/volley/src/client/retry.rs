//! Configured retries (gRFC A6): the per-channel throttle and the backoff between attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use super::method_config::{RetryPolicy, RetryThrottling};
use crate::metadata::{GRPC_RETRY_PUSHBACK_MS, MetadataMap};

/// A6's token bucket, counted in thousandths of a token (the ratio has three decimals).
/// Shared by every call while the service config that made it is in force.
#[derive(Debug)]
pub(crate) struct Throttle {
    max: u32,
    ratio: u32,
    tokens: AtomicU32,
}

impl PartialEq for Throttle {
    /// Two buckets of the same size and ratio are the same configuration.
    fn eq(&self, other: &Throttle) -> bool {
        (self.max, self.ratio) == (other.max, other.ratio)
    }
}

impl Throttle {
    pub(crate) fn new(config: RetryThrottling) -> Throttle {
        let max = config.max_tokens.saturating_mul(1000);
        Throttle {
            max,
            ratio: (config.token_ratio * 1000.0).round() as u32,
            tokens: AtomicU32::new(max),
        }
    }

    /// A failed attempt (retryable status, or pushback): one token less.
    pub(crate) fn failure(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(1000))
            });
    }

    /// A successful call: `tokenRatio` more, up to the bucket's size.
    pub(crate) fn success(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(self.ratio).min(self.max))
            });
    }

    /// Whether retries and hedges may go out: more than half the tokens are left.
    pub(crate) fn allows(&self) -> bool {
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }
}

/// What the server's pushback says, from a failed attempt's trailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// None sent: the policy's backoff applies.
    None,
    /// Retry after this long.
    After(Duration),
    /// Do not retry (a negative or malformed value).
    Stop,
}

impl Pushback {
    pub(crate) fn read(trailers: &MetadataMap) -> Pushback {
        let Some(value) = trailers.get(GRPC_RETRY_PUSHBACK_MS) else {
            return match trailers.contains_key(GRPC_RETRY_PUSHBACK_MS) {
                true => Pushback::Stop, // present but not ASCII
                false => Pushback::None,
            };
        };
        // A6: a signed 32-bit integer, no unneeded leading zeros.
        let canonical = value == "0"
            || (!value.starts_with('0') && !value.starts_with("-0") && !value.starts_with('+'));
        match value.parse::<i32>() {
            Ok(ms) if ms >= 0 && canonical => Pushback::After(Duration::from_millis(ms as u64)),
            _ => Pushback::Stop,
        }
    }
}

/// The delays between a call's attempts: random in [0, bound], the bound growing by the
/// multiplier up to `maxBackoff`, and back to `initialBackoff` after a pushback.
#[derive(Debug)]
pub(crate) struct RetryBackoff {
    bound: Duration,
}

impl RetryBackoff {
    pub(crate) fn new(policy: &RetryPolicy) -> RetryBackoff {
        RetryBackoff {
            bound: policy.initial_backoff,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next(&mut self, policy: &RetryPolicy, pushback: Pushback) -> Duration {
        if let Pushback::After(delay) = pushback {
            self.bound = policy.initial_backoff;
            return delay;
        }
        let fraction = (crate::random::next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let delay = self.bound.mul_f64(fraction);
        self.bound = self
            .bound
            .mul_f64(policy.backoff_multiplier)
            .min(policy.max_backoff);
        delay
    }
}

/// A channel's limits on configured retries and hedging, from its builder.
#[derive(Debug)]
pub(crate) struct RetryLimits {
    /// Retries and hedging from the service config apply (transparent retries always do).
    pub(crate) enabled: bool,
    /// The most attempts a call makes, whatever its policy says (A6's client-side maximum).
    pub(crate) max_call_attempts: u32,
    /// The most request bytes one call buffers for replay before it commits.
    pub(crate) per_call_buffer: usize,
    /// The request bytes all of the channel's uncommitted calls buffer together.
    pub(crate) pool: Arc<BufferPool>,
}

impl RetryLimits {
    pub(crate) fn new(channel_buffer: usize) -> RetryLimits {
        RetryLimits {
            enabled: true,
            max_call_attempts: crate::defaults::MAX_CALL_ATTEMPTS,
            per_call_buffer: crate::defaults::PER_CALL_RETRY_BUFFER,
            pool: Arc::new(BufferPool::new(channel_buffer)),
        }
    }
}

/// The bytes a channel's uncommitted calls hold for replay, against a limit.
#[derive(Debug)]
pub(crate) struct BufferPool {
    limit: usize,
    used: AtomicUsize,
}

impl BufferPool {
    pub(crate) fn new(limit: usize) -> BufferPool {
        BufferPool {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The bytes held now (for tests).
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One call's share of its channel's [`BufferPool`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    pool: Arc<BufferPool>,
    per_call: usize,
    bytes: usize,
}

impl Reservation {
    pub(crate) fn new(pool: Arc<BufferPool>, per_call: usize) -> Reservation {
        Reservation {
            pool,
            per_call,
            bytes: 0,
        }
    }

    /// Takes `more` bytes, unless the call's or the channel's limit would be passed (then
    /// nothing is taken and the call must commit).
    pub(crate) fn grow(&mut self, more: usize) -> bool {
        let Some(total) = self.bytes.checked_add(more).filter(|t| *t <= self.per_call) else {
            return false;
        };
        let limit = self.pool.limit;
        let taken = self
            .pool
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|u| *u <= limit)
            });
        if taken.is_err() {
            return false;
        }
        self.bytes = total;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![Code::Unavailable],
        }
    }

    #[test]
    fn the_bucket_stops_retries_at_half_and_refills_by_the_ratio() {
        let t = Throttle::new(RetryThrottling {
            max_tokens: 10,
            token_ratio: 0.5,
        });
        for _ in 0..5 {
            assert!(t.allows());
            t.failure();
        }
        assert!(!t.allows(), "5 of 10 tokens left: not more than half");
        t.success();
        assert!(t.allows(), "5.5 tokens");
        for _ in 0..100 {
            t.failure();
        }
        for _ in 0..11 {
            t.success();
        }
        assert!(t.allows(), "back over half after 11 successes");
        for _ in 0..100 {
            t.success();
        }
        assert_eq!(
            t.tokens.load(Ordering::Relaxed),
            10_000,
            "never over the size"
        );
    }

    #[test]
    fn backoff_grows_to_its_ceiling_and_pushback_resets_it() {
        let p = policy();
        let mut b = RetryBackoff::new(&p);
        let bounds: Vec<Duration> = (0..4)
            .map(|_| {
                let before = b.bound;
                assert!(b.next(&p, Pushback::None) <= before);
                before
            })
            .collect();
        assert_eq!(
            bounds,
            [100, 200, 300, 300].map(Duration::from_millis),
            "initial, x2, then maxBackoff"
        );
        let pushed = b.next(&p, Pushback::After(Duration::from_millis(42)));
        assert_eq!(pushed, Duration::from_millis(42));
        assert_eq!(b.bound, Duration::from_millis(100));
    }

    #[test]
    fn pushback_values() {
        let read = |v: &str| {
            let mut m = MetadataMap::new();
            m.insert(GRPC_RETRY_PUSHBACK_MS, v).unwrap();
            Pushback::read(&m)
        };
        assert_eq!(Pushback::read(&MetadataMap::new()), Pushback::None);
        assert_eq!(read("250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(read("0"), Pushback::After(Duration::ZERO));
        for stop in ["-1", "007", "soon", "99999999999", "+5", ""] {
            assert_eq!(read(stop), Pushback::Stop, "{stop:?}");
        }
    }

    #[test]
    fn reservations_stop_at_the_call_and_the_channel_limit_and_give_back_on_drop() {
        let pool = Arc::new(BufferPool::new(100));
        let mut a = Reservation::new(pool.clone(), 60);
        assert!(a.grow(50));
        assert!(!a.grow(11), "past the call's limit");
        assert!(a.grow(10));
        let mut b = Reservation::new(pool.clone(), 60);
        assert!(b.grow(40));
        assert!(!b.grow(1), "past the channel's limit");
        assert_eq!(pool.used(), 100);
        drop(a);
        assert_eq!(pool.used(), 40);
        assert!(b.grow(20));
        drop(b);
        assert_eq!(pool.used(), 0);
    }
}
