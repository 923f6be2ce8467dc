//! Cheap, non-cryptographic randomness for jitter (backoff, connection ages) and for the
//! starting point of round-robin rotations.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A seed from the standard library's per-process random hash keys.
fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish() | 1
}

/// A uniformly distributed `u64` (xorshift64*).
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniformly distributed float in `[-1, 1)`.
pub(crate) fn symmetric_unit() -> f64 {
    // 53 random bits give every representable step of [0, 1).
    let unit = (next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_unit_spans_its_range() {
        let samples: Vec<f64> = (0..10_000).map(|_| symmetric_unit()).collect();
        assert!(samples.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(samples.iter().any(|x| *x < -0.9));
        assert!(samples.iter().any(|x| *x > 0.9));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }
}
