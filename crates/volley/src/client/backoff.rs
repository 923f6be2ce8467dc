//! Reconnect backoff, as `doc/connection-backoff.md` in grpc/grpc specifies it.

use std::time::Duration;

use crate::timeout::{capped, scaled};

/// How a subchannel spaces its connection attempts after failures
/// (`doc/connection-backoff.md`). The defaults are the spec's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The delay after the first failure. Default: 1 s.
    pub base_delay: Duration,
    /// The factor the delay grows by after each further failure. Default: 1.6.
    pub multiplier: f64,
    /// The random spread of each delay, as a fraction of it (0.2 means +/-20%). Default: 0.2.
    pub jitter: f64,
    /// The longest delay. Default: 120 s.
    pub max_delay: Duration,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            base_delay: crate::defaults::BACKOFF_BASE_DELAY,
            multiplier: crate::defaults::BACKOFF_MULTIPLIER,
            jitter: crate::defaults::BACKOFF_JITTER,
            max_delay: crate::defaults::BACKOFF_MAX_DELAY,
        }
    }
}

impl BackoffConfig {
    /// The config with every field in range, so that no delay computed from it can overflow
    /// or be NaN: durations at most a century, a multiplier of at least 1 (a value that is
    /// not a number is taken as 1), a jitter within 0..=1 (not a number: 0).
    pub(crate) fn sanitized(self) -> BackoffConfig {
        let finite_or = |x: f64, or: f64| if x.is_finite() { x } else { or };
        BackoffConfig {
            base_delay: capped(self.base_delay),
            multiplier: finite_or(self.multiplier, 1.0).max(1.0),
            jitter: finite_or(self.jitter, 0.0).clamp(0.0, 1.0),
            max_delay: capped(self.max_delay),
        }
    }
}

/// The delays between the attempts of one retry sequence (`doc/connection-backoff.md`), for
/// subchannels and for resolvers or balancers that retry on their own.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// The un-jittered delay the next failure waits.
    current: Duration,
}

impl Backoff {
    /// A sequence starting at `config.base_delay`.
    pub fn new(config: BackoffConfig) -> Backoff {
        let config = config.sanitized();
        Backoff {
            current: config.base_delay,
            config,
        }
    }

    /// The delay before the next attempt (jittered), advancing the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = scaled(self.current, self.config.multiplier).min(self.config.max_delay);
        let factor = 1.0 + self.config.jitter * crate::random::symmetric_unit();
        scaled(delay, factor)
    }

    /// Starts the sequence over (after a success).
    pub fn reset(&mut self) {
        self.current = self.config.base_delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_multiplier_within_the_jitter_up_to_the_max() {
        let mut backoff = Backoff::new(BackoffConfig::default());
        let mut nominal = 1.0f64;
        for _ in 0..20 {
            let d = backoff.next_delay().as_secs_f64();
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "{d} outside {nominal} +/- 20%"
            );
            nominal = (nominal * 1.6).min(120.0);
        }
        assert_eq!(nominal, 120.0);
        backoff.reset();
        let d = backoff.next_delay().as_secs_f64();
        assert!((0.8..=1.2).contains(&d));
    }

    #[test]
    fn jitter_spreads_delays() {
        let config = BackoffConfig::default();
        let delays: Vec<f64> = (0..200)
            .map(|_| Backoff::new(config).next_delay().as_secs_f64())
            .collect();
        assert!(delays.iter().any(|d| *d < 0.9));
        assert!(delays.iter().any(|d| *d > 1.1));
    }

    #[test]
    fn out_of_range_configs_never_panic() {
        for config in [
            BackoffConfig {
                base_delay: Duration::MAX,
                multiplier: f64::INFINITY,
                jitter: f64::NAN,
                max_delay: Duration::MAX,
            },
            BackoffConfig {
                base_delay: Duration::from_secs(1),
                multiplier: 1e300,
                jitter: 5.0,
                max_delay: Duration::MAX,
            },
            BackoffConfig {
                base_delay: Duration::ZERO,
                multiplier: f64::NAN,
                jitter: -1.0,
                max_delay: Duration::ZERO,
            },
        ] {
            let mut backoff = Backoff::new(config);
            for _ in 0..10 {
                let _ = tokio::time::Instant::now() + backoff.next_delay();
            }
        }
    }
}
