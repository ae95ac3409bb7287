//! The project's one pseudo-random generator: xorshift64* (Vigna 2014).
//! Everything derived from `seed=` uses it: the kernel's tortures,
//! shuffles and race-point jitter, and the host's random crash points. It
//! is fast, has 64 bits of state, and is plenty for choosing pages, delays
//! and interleavings; it is not for anything that must be unpredictable.

/// One step of the state (never 0 from a non-zero state).
pub const fn step(x: u64) -> u64 {
    let mut x = x;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x
}

/// The output for a state: the state times the xorshift64* multiplier.
pub const fn output(x: u64) -> u64 {
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A generator (module docs).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value, 0 included).
    pub const fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = step(self.0);
        output(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), near enough (a multiply-shift of the
    /// high 32 bits; bias below 2^-32 for any `n` below 2^32).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_seed_and_stay_in_range() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(2));
        assert_ne!(a.next(), b.next());
        let mut zero = Rng::new(0);
        for _ in 0..1000 {
            assert!(zero.below(7) < 7);
        }
        assert_ne!(step(1), 0);
    }
}
