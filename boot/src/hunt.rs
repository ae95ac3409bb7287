//! How likely one booted check is to catch a known-bad variant, and so how
//! many boots a test needs (`cargo xtask hunt`).
//!
//! [`checks`] names, for every known-bad variant that a booted run can
//! catch, the cases and parameters of that run: the same boot the host
//! tests make. A variant is a `bug=` mutation ([`BUG_CHECKS`], one entry
//! each) or a known-bad page-lock protocol of `pagesync`'s registry
//! (`protocol=`), which needs no entry: each goes through the page-lock
//! torture ([`PROTOCOL_CHECK`]), so a known-bad protocol added to the
//! registry is hunted and tested with no other edit. A hunt boots a check
//! again and again with fresh seeds and counts the boots that failed; the
//! catch probability per boot comes with a Wilson score interval, and
//! [`boots_for`] turns its lower end into the number of boots that catch
//! the variant with a given confidence. The host tests take their boot
//! counts from the checks (`boots`), measured that way (README, "How far
//! one green run can be trusted").
//!
//! The variants that only loom catches (`gup-no-fence`, `gup-wmb-only`,
//! `shared-wait-relaxed`, `readahead-racy-clear`) are not here: loom
//! explores every interleaving within its bounds, so its verdict does not
//! depend on luck, and x86 (or TCG) cannot show them at all.

use serde::{Deserialize, Serialize};

/// One variant's booted check.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The parameter that selects the variant: `bug` or `protocol`.
    pub key: &'static str,
    /// The variant: that parameter's value.
    pub name: &'static str,
    /// Kernel parameters of the boot besides the variant's and `seed=`.
    pub params: &'static [&'static str],
    /// `-smp`.
    pub smp: u32,
    /// Boots the host test gives the variant before it gives up: enough
    /// for at least 99.9% detection at the lower end of the measured catch
    /// probability's interval (at least 1).
    pub boots: usize,
    /// That measurement: boots that caught the variant, of boots run
    /// (`cargo xtask hunt NAME --runs N`).
    pub measured: (u64, u64),
}

impl Check {
    /// The kernel parameter that selects the variant (`bug=...`).
    pub fn variant(&self) -> String {
        format!("{}={}", self.key, self.name)
    }

    /// The kernel parameter that selects the correct code instead:
    /// `bug=none`, or `protocol=` with the parameter table's default.
    pub fn correct(&self) -> String {
        use contract::params::{DefaultValue, Key, Value};
        match (self.key, Key::Protocol.spec().default) {
            ("bug", _) => "bug=none".to_string(),
            (key, DefaultValue::Is(Value::Choice(name))) => format!("{key}={name}"),
            (key, d) => unreachable!("{key}: the default protocol is a choice, not {d:?}"),
        }
    }
}

const fn bug(name: &'static str, params: &'static [&'static str]) -> Check {
    Check {
        key: "bug",
        name,
        params,
        smp: 2,
        boots: 6,
        measured: (10, 10),
    }
}

/// Every `bug=` variant a booted run catches, with its check. `boots`:
/// every check caught its variant in 10 of 10 boots (`cargo xtask hunt
/// --all --runs 10`, 2026-12-07), a catch probability per boot of at
/// least 0.72 at 95%, for which 6 boots give 99.9% detection
/// ([`boots_for`]). A test stops at its first catch, so the extra boots
/// cost only when a check misses.
pub const BUG_CHECKS: &[Check] = &[
    bug(
        "tas-outside-lock",
        &["filter=pagelock.torture", "torture_ms=4000"],
    ),
    bug(
        "clear-after-wake",
        &["filter=pagelock.torture", "torture_ms=4000"],
    ),
    bug(
        "clear-waiters-early",
        &["filter=pagelock.torture", "torture_ms=4000"],
    ),
    bug(
        "non-atomic-flags",
        &["filter=pagelock.torture", "torture_ms=4000"],
    ),
    bug(
        "end-writeback-no-ref",
        &["filter=pagecache.end_writeback_reuse_race", "jitter_rate=1"],
    ),
    bug("no-stable-wait", &["filter=pagecache.torture"]),
    bug(
        "gup-check-outside-lock",
        &["filter=gup.race_lock_scheme", "jitter_rate=1"],
    ),
    bug(
        "write-pinned-in-place",
        &["filter=gup.dma_during_writeback"],
    ),
    bug("sync-no-flush", &["filter=pagecache.sync_is_durable"]),
];

/// The check of every known-bad page-lock protocol (`name` left empty):
/// the page-lock torture, as for the lock's own `bug=` variants, run 8 s
/// (4 s of it in lockstep, where most catches come). Its boots are
/// `hugh-rfc-late-clear`'s: caught in 31 of 40 boots (`cargo xtask hunt
/// hugh-rfc-late-clear --runs 40`, 2026-12-07; 27 of the catches in the
/// lockstep half), 0.78 per boot, at least 0.62 at 95%, so 8 boots for
/// 99.9%. With the `bug=` variants' 4 s torture it was caught in 26 of
/// 40 (0.65, at least 0.495: 11 boots). A known-bad protocol added to
/// the registry gets the same boots until a hunt of its own measures it.
pub const PROTOCOL_CHECK: Check = Check {
    key: "protocol",
    name: "",
    params: &["filter=pagelock.torture", "torture_ms=8000"],
    smp: 2,
    boots: 8,
    measured: (31, 40),
};

/// Every check: [`BUG_CHECKS`], then one [`PROTOCOL_CHECK`] for each
/// known-bad protocol of the registry.
pub fn checks() -> Vec<Check> {
    let protocols = contract::params::PROTOCOL_CHOICES
        .into_iter()
        .filter(|n| contract::params::protocol(n).is_some_and(|p| p.is_known_bad()))
        .map(|name| Check {
            name,
            ..PROTOCOL_CHECK
        });
    BUG_CHECKS.iter().copied().chain(protocols).collect()
}

/// The check of the variant `name` (a `bug=` or a `protocol=` value), if
/// a booted run catches it.
pub fn check(name: &str) -> Option<Check> {
    checks().into_iter().find(|c| c.name == name)
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
    /// The variant's parameter (`bug=tas-outside-lock`), or the correct
    /// code's (`bug=none`, `protocol=linux-5.9`) in a `--correct` hunt.
    #[serde(alias = "bug")]
    pub variant: String,
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
    pub fn of(variant: &str, params: Vec<String>, smp: u32, attempts: Vec<Attempt>) -> Hunt {
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
            variant: variant.into(),
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
    /// Each check's boot count follows from its measured hunt: the lower
    /// end of the catch probability's interval, 99.9% detection.
    #[test]
    fn check_boots_follow_from_the_measured_catch_rate() {
        assert_eq!(boots_for(wilson(10, 10, 1.96).0, 0.999), Some(6));
        assert_eq!(boots_for(wilson(26, 40, 1.96).0, 0.999), Some(11));
        assert_eq!(boots_for(wilson(31, 40, 1.96).0, 0.999), Some(8));
        for c in checks() {
            let (k, n) = c.measured;
            let need = boots_for(wilson(k, n, 1.96).0, 0.999).expect("a catch probability above 0");
            assert!(
                c.boots >= need,
                "{}: {} boots, {need} needed",
                c.name,
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
        let all = checks();
        for c in &all {
            let known_bad = match c.key {
                "bug" => contract::params::bug(c.name).is_some(),
                "protocol" => contract::params::protocol(c.name).is_some_and(|p| p.is_known_bad()),
                k => panic!("{}: no variant parameter {k}", c.name),
            };
            assert!(known_bad, "{} is not a known-bad variant", c.variant());
            assert!(c.boots >= 1);
            assert_eq!(
                all.iter().filter(|d| d.name == c.name).count(),
                1,
                "{}: two checks of one name",
                c.name
            );
        }
        // The registry's known-bad protocols are hunted without an entry.
        assert!(check("hugh-rfc-late-clear").is_some_and(|c| c.key == "protocol"));
        assert_eq!(
            check("tas-outside-lock").map(|c| c.variant()).as_deref(),
            Some("bug=tas-outside-lock")
        );
        // Every check's correct code is a correct variant.
        for c in &all {
            let correct = c.correct();
            let (key, name) = correct.split_once('=').unwrap();
            assert_eq!(key, c.key);
            match key {
                "bug" => assert_eq!(name, "none"),
                _ => assert!(
                    contract::params::protocol(name).is_some_and(|p| !p.is_known_bad()),
                    "{correct}"
                ),
            }
        }
    }
}
