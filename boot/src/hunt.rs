//! How likely one booted check is to catch a known-bad variant, and so how
//! many boots a test needs (`cargo xtask hunt`).
//!
//! [`CHECKS`] names, for every known-bad variant that a booted run can
//! catch, the cases and parameters of that run: the same boot the host
//! tests make. A hunt boots it again and again with fresh seeds and counts
//! the boots that failed; the catch probability per boot comes with a
//! Wilson score interval, and [`boots_for`] turns its lower end into the
//! number of boots that catch the variant with a given confidence. The
//! host tests take their boot counts from [`CHECKS`] (`boots`), measured
//! that way (README, "How far one green run can be trusted").
//!
//! The variants that only loom catches (`gup-no-fence`, `gup-wmb-only`,
//! `shared-wait-relaxed`, `readahead-racy-clear`) are not here: loom
//! explores every interleaving within its bounds, so its verdict does not
//! depend on luck, and x86 (or TCG) cannot show them at all.

use serde::{Deserialize, Serialize};

/// One variant's booted check.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The `bug=` value.
    pub bug: &'static str,
    /// Kernel parameters of the boot besides `bug=` and `seed=`.
    pub params: &'static [&'static str],
    /// `-smp`.
    pub smp: u32,
    /// Boots the host test gives the variant before it gives up: enough
    /// for at least 99.9% detection at the lower end of the measured catch
    /// probability's interval (at least 1).
    pub boots: usize,
}

/// Every variant a booted run catches, with its check. `boots`: every
/// check caught its variant in 10 of 10 boots (`cargo xtask hunt --all
/// --runs 10`, 2026-12-07), a catch probability per boot of at least 0.72
/// at 95%, for which 6 boots give 99.9% detection ([`boots_for`]). A test
/// stops at its first catch, so the extra boots cost only when a check
/// misses.
pub const CHECKS: &[Check] = &[
    Check {
        bug: "tas-outside-lock",
        params: &["filter=pagelock.torture", "torture_ms=4000"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "clear-after-wake",
        params: &["filter=pagelock.torture", "torture_ms=4000"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "clear-waiters-early",
        params: &["filter=pagelock.torture", "torture_ms=4000"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "non-atomic-flags",
        params: &["filter=pagelock.torture", "torture_ms=4000"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "end-writeback-no-ref",
        params: &["filter=pagecache.end_writeback_reuse_race", "jitter_rate=1"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "no-stable-wait",
        params: &["filter=pagecache.torture"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "gup-check-outside-lock",
        params: &["filter=gup.race_lock_scheme", "jitter_rate=1"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "write-pinned-in-place",
        params: &["filter=gup.dma_during_writeback"],
        smp: 2,
        boots: 6,
    },
    Check {
        bug: "sync-no-flush",
        params: &["filter=pagecache.sync_is_durable"],
        smp: 2,
        boots: 6,
    },
];

/// The check of `bug`, if a booted run catches it.
pub fn check(bug: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.bug == bug)
}

/// Wilson score interval of a proportion `k` of `n` at `z` (1.96 for
/// 95%): `(low, high)`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * ((p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Boots needed to catch, with probability at least `confidence`, a
/// variant caught with probability `p` per boot: the smallest `b` with
/// `1 - (1-p)^b >= confidence` (None if `p` is 0).
pub fn boots_for(p: f64, confidence: f64) -> Option<usize> {
    if p <= 0.0 {
        return None;
    }
    if p >= 1.0 {
        return Some(1);
    }
    Some(((1.0 - confidence).ln() / (1.0 - p).ln()).ceil().max(1.0) as usize)
}

/// One boot of a hunt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub seed: u64,
    pub caught: bool,
    /// From QEMU's start to the first line that reports the failure (or to
    /// the end of a boot that passed), in seconds.
    pub seconds: f64,
    /// That line.
    pub line: Option<String>,
    pub exit: String,
}

/// What a hunt found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hunt {
    pub bug: String,
    pub params: Vec<String>,
    pub smp: u32,
    pub attempts: Vec<Attempt>,
    pub caught: u64,
    pub boots: u64,
    pub p: f64,
    /// 95% Wilson interval of `p`.
    pub p_low: f64,
    pub p_high: f64,
    /// Time to catch over the boots that caught it: p50 and max, seconds.
    pub catch_p50_s: Option<f64>,
    pub catch_max_s: Option<f64>,
    /// Boots for 99.9% detection at `p_low` (None if nothing was caught).
    pub boots_for_999: Option<usize>,
}

impl Hunt {
    pub fn of(bug: &str, params: Vec<String>, smp: u32, attempts: Vec<Attempt>) -> Hunt {
        let n = attempts.len() as u64;
        let k = attempts.iter().filter(|a| a.caught).count() as u64;
        let (lo, hi) = wilson(k, n, 1.96);
        let mut t: Vec<f64> = attempts
            .iter()
            .filter(|a| a.caught)
            .map(|a| a.seconds)
            .collect();
        t.sort_by(f64::total_cmp);
        Hunt {
            bug: bug.into(),
            params,
            smp,
            caught: k,
            boots: n,
            p: if n == 0 { 0.0 } else { k as f64 / n as f64 },
            p_low: lo,
            p_high: hi,
            catch_p50_s: (!t.is_empty()).then(|| t[t.len() / 2]),
            catch_max_s: t.last().copied(),
            boots_for_999: boots_for(lo, 0.999),
            attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The boot counts of [`CHECKS`] follow from the measured hunt: 10 of
    /// 10 caught, the lower end of its interval, 99.9% detection.
    #[test]
    fn check_boots_follow_from_the_measured_catch_rate() {
        let (low, _) = wilson(10, 10, 1.96);
        let need = boots_for(low, 0.999).expect("a catch probability above 0");
        assert_eq!(need, 6);
        for c in CHECKS {
            assert!(
                c.boots >= need,
                "{}: {} boots, {need} needed",
                c.bug,
                c.boots
            );
        }
    }

    use super::*;

    #[test]
    fn wilson_intervals() {
        let (lo, hi) = wilson(20, 20, 1.96);
        assert!((lo - 0.839).abs() < 0.002 && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson(0, 20, 1.96);
        assert!(lo == 0.0 && (hi - 0.161).abs() < 0.002, "{lo} {hi}");
        let (lo, hi) = wilson(10, 20, 1.96);
        assert!((lo - 0.299).abs() < 0.002 && (hi - 0.701).abs() < 0.002);
    }

    #[test]
    fn boots_for_a_confidence() {
        assert_eq!(boots_for(0.839, 0.999), Some(4));
        assert_eq!(boots_for(0.5, 0.999), Some(10));
        assert_eq!(boots_for(1.0, 0.999), Some(1));
        assert_eq!(boots_for(0.0, 0.999), None);
    }

    #[test]
    fn every_check_names_a_known_bad_variant() {
        for c in CHECKS {
            assert!(
                contract::params::BUG_CHOICES.contains(&c.bug),
                "{} is not a bug= value",
                c.bug
            );
            assert!(c.boots >= 1);
        }
    }
}
