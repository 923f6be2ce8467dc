//! Inputs for the property tests ("fuzz tests") of every parser a peer feeds: random bytes,
//! and valid examples mutated (bits flipped, bytes inserted, removed, repeated, replaced by
//! the bytes parsers care about, pieces of two examples spliced). Deterministic for a seed,
//! so that a failure is reproduced by its seed and index; stable Rust, no fuzzing engine.
//!
//! How many inputs a test runs: `VOLLEY_FUZZ_ITERATIONS` (default [`DEFAULT_ITERATIONS`], a
//! short run for `cargo test`); a long run sets it to 10,000,000 (`tests/fuzz-input/README.md`).

/// Inputs per target in a plain `cargo test`.
pub const DEFAULT_ITERATIONS: u64 = 20_000;

/// How many inputs each target runs: `VOLLEY_FUZZ_ITERATIONS`, or [`DEFAULT_ITERATIONS`].
pub fn iterations() -> u64 {
    std::env::var("VOLLEY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

/// The seed of a run: `VOLLEY_FUZZ_SEED`, or a fixed one (so that CI runs are repeatable).
pub fn seed() -> u64 {
    std::env::var("VOLLEY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026_1203)
}

/// A xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that parsers of gRPC's text formats treat specially.
const INTERESTING: &[u8] = b"\0\x01\x7f\x80\xff %/:.,;=[]{}\"\\-_+09aZHMSmunx\r\n\t";

/// Random and mutated inputs built from `corpus` (valid examples of the format).
#[derive(Debug)]
pub struct Inputs<'a> {
    rng: Rng,
    corpus: &'a [&'a [u8]],
    left: u64,
    /// Largest input made.
    pub max_len: usize,
}

impl<'a> Inputs<'a> {
    /// [`iterations`] inputs from `corpus`, seeded by [`seed`] and `salt` (each target its own).
    pub fn new(corpus: &'a [&'a [u8]], salt: u64) -> Inputs<'a> {
        Inputs::with(
            corpus,
            seed() ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            iterations(),
        )
    }

    /// `count` inputs from `corpus`, seeded by `seed`.
    pub fn with(corpus: &'a [&'a [u8]], seed: u64, count: u64) -> Inputs<'a> {
        Inputs {
            rng: Rng::new(seed),
            corpus,
            left: count,
            max_len: 256,
        }
    }

    /// The generator, for a target's own random choices (split points, limits).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn example(&mut self) -> Vec<u8> {
        if self.corpus.is_empty() || self.rng.one_in(8) {
            let len = self.rng.below(64);
            return (0..len).map(|_| self.rng.next_u64() as u8).collect();
        }
        self.corpus[self.rng.below(self.corpus.len())].to_vec()
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let rng = &mut self.rng;
        match rng.below(8) {
            0 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(input.len() + 1);
                input.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if !input.is_empty() => {
                let at = rng.below(input.len());
                input.remove(at);
            }
            3 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            4 if !input.is_empty() => {
                // Repeat a slice: long runs of one token.
                let start = rng.below(input.len());
                let end = start + 1 + rng.below((input.len() - start).min(16));
                let piece = input[start..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    input.splice(start..start, piece.iter().copied());
                }
            }
            5 => {
                input.truncate(rng.below(input.len() + 1));
            }
            6 => {
                // Splice the tail of another example.
                let other = if self.corpus.is_empty() {
                    &b""[..]
                } else {
                    self.corpus[rng.below(self.corpus.len())]
                };
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(input.len() + 1);
                input.insert(at, rng.next_u64() as u8);
            }
        }
        input.truncate(self.max_len);
    }
}

impl Iterator for Inputs<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut input = self.example();
        let mutations = self.rng.below(6);
        for _ in 0..mutations {
            self.mutate(&mut input);
        }
        Some(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_repeatable_and_varied() {
        let corpus: &[&[u8]] = &[b"1000m", b"{\"a\":1}"];
        let a: Vec<_> = Inputs::with(corpus, 7, 500).collect();
        let b: Vec<_> = Inputs::with(corpus, 7, 500).collect();
        assert_eq!(a, b);
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
        assert!(a.iter().any(|i| i.as_slice() == b"1000m"));
    }
}
