//! Two configurations' benchmark results compared metric by metric, with a
//! verdict that says whether a difference is larger than the noise
//! (`cargo xtask compare`).
//!
//! Each configuration has one sample per round (a boot of its own, the
//! two configurations' boots interleaved). For every metric both have,
//! the verdict rests on the ratio of medians B/A and its bootstrap
//! confidence interval (percentile bootstrap: both sample sets resampled
//! with replacement, the ratio of their medians taken, a few thousand
//! times; the interval holds the middle `confidence` of those ratios), as
//! criterion's change detection does: a change is reported only if the
//! whole interval lies beyond the noise threshold on one side. Which side
//! is better follows the unit: less time is faster, more per second is
//! faster; for other units the verdict says higher or lower.
//!
//! The resampling uses a fixed-seed generator, so a report can be
//! reproduced from its samples.

use contract::{bench::Unit, rng::Rng};
use serde::{Deserialize, Serialize};

use crate::bench::Results;

/// What a metric did from A to B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// B takes less time or does more per second, beyond the noise.
    Faster,
    /// B takes more time or does less per second, beyond the noise.
    Slower,
    /// B's value is higher, beyond the noise (a unit without a better side).
    Higher,
    /// B's value is lower, beyond the noise.
    Lower,
    /// The interval reaches inside the noise threshold (or both sides).
    NoDifference,
    /// Too few samples, or a median of 0 in A.
    Undecided,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Faster => "faster",
            Change::Slower => "slower",
            Change::Higher => "higher",
            Change::Lower => "lower",
            Change::NoDifference => "no difference",
            Change::Undecided => "undecided",
        }
    }
}

/// How the verdicts are decided.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Rule {
    /// The ratio must leave `1 ± noise` entirely to count (criterion's
    /// noise threshold; default 0.02).
    pub noise: f64,
    /// Width of the bootstrap interval (default 0.95).
    pub confidence: f64,
    /// Bootstrap resamples (default 5000).
    pub resamples: u32,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            noise: 0.02,
            confidence: 0.95,
            resamples: 5000,
        }
    }
}

/// One metric compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verdict {
    pub bench: String,
    pub variant: String,
    /// Labels, `key=value`, space-separated.
    pub labels: String,
    pub metric: String,
    pub unit: String,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub a_median: f64,
    pub b_median: f64,
    /// `b_median / a_median` and its bootstrap interval.
    pub ratio: f64,
    pub ratio_lo: f64,
    pub ratio_hi: f64,
    pub change: Change,
}

/// The median of `v` (NaN if empty).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Whether more of `unit` is better (Some(true)), worse (Some(false)), or
/// neither.
fn higher_is_better(unit: Option<Unit>) -> Option<bool> {
    match unit? {
        Unit::Ns | Unit::Us | Unit::Ms | Unit::Cycles => Some(false),
        Unit::PerS | Unit::MibPerS => Some(true),
        Unit::Ratio | Unit::Count | Unit::Index => None,
    }
}

/// The ratio of medians B/A, its bootstrap interval, and the verdict.
pub fn judge(a: &[f64], b: &[f64], unit: Option<Unit>, rule: &Rule) -> (f64, f64, f64, Change) {
    let (ma, mb) = (median(a), median(b));
    if a.len() < 2 || b.len() < 2 || !(ma.is_finite() && mb.is_finite()) {
        return (f64::NAN, f64::NAN, f64::NAN, Change::Undecided);
    }
    if ma == 0.0 {
        let change = if mb == 0.0 {
            Change::NoDifference
        } else {
            Change::Undecided
        };
        return (f64::NAN, f64::NAN, f64::NAN, change);
    }
    let ratio = mb / ma;
    let mut rng = Rng::new(0x0c0f_fee5 ^ (a.len() as u64) << 32 ^ b.len() as u64);
    let mut ratios = Vec::with_capacity(rule.resamples as usize);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    for _ in 0..rule.resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len() as u64) as usize];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len() as u64) as usize];
        }
        let m = median(&ra);
        if m != 0.0 {
            ratios.push(median(&rb) / m);
        }
    }
    if ratios.len() < rule.resamples as usize / 2 {
        return (ratio, f64::NAN, f64::NAN, Change::Undecided);
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - rule.confidence) / 2.0;
    let at =
        |q: f64| ratios[((q * (ratios.len() - 1) as f64).round() as usize).min(ratios.len() - 1)];
    let (lo, hi) = (at(tail), at(1.0 - tail));
    let up = lo > 1.0 + rule.noise;
    let down = hi < 1.0 - rule.noise;
    let change = match (up, down, higher_is_better(unit)) {
        (false, false, _) => Change::NoDifference,
        (true, _, Some(true)) | (_, true, Some(false)) => Change::Faster,
        (true, _, Some(false)) | (_, true, Some(true)) => Change::Slower,
        (true, _, None) => Change::Higher,
        (_, true, None) => Change::Lower,
    };
    (ratio, lo, hi, change)
}

/// The per-round samples of every metric in `rounds` (one [`Results`] per
/// round, each from one boot with `bench_rounds=1`), keyed by benchmark,
/// variant, labels and metric, in order of first appearance.
fn samples(rounds: &[Results]) -> Vec<((String, String, String, String, String), Vec<f64>)> {
    let mut out: Vec<((String, String, String, String, String), Vec<f64>)> = Vec::new();
    for r in rounds {
        for g in &r.results {
            let labels = g
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            for m in &g.metrics {
                let key = (
                    g.bench.clone(),
                    g.variant.clone(),
                    labels.clone(),
                    m.name.clone(),
                    m.unit.clone(),
                );
                let v = median(&m.samples);
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, s)) => s.push(v),
                    None => out.push((key, vec![v])),
                }
            }
        }
    }
    out
}

/// Every metric both configurations have, compared.
pub fn compare(a: &[Results], b: &[Results], rule: &Rule) -> Vec<Verdict> {
    let sb = samples(b);
    samples(a)
        .into_iter()
        .filter_map(|(key, av)| {
            let (_, bv) = sb.iter().find(|(k, _)| *k == key)?;
            let unit = Unit::from_name(&key.4);
            let (ratio, lo, hi, change) = judge(&av, bv, unit, rule);
            Some(Verdict {
                bench: key.0,
                variant: key.1,
                labels: key.2,
                metric: key.3,
                unit: key.4,
                a_median: median(&av),
                b_median: median(bv),
                a: av,
                b: bv.clone(),
                ratio,
                ratio_lo: lo,
                ratio_hi: hi,
                change,
            })
        })
        .collect()
}

/// A number for a table: 4 significant digits.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    crate::bench::short(v)
}

/// The verdicts as a Markdown table (the terminal shows the same).
pub fn markdown(vs: &[Verdict], a_name: &str, b_name: &str, rule: &Rule) -> String {
    let mut s = format!(
        "| benchmark | variant | labels | metric | {a_name} | {b_name} | B/A | {:.0}% interval | verdict |\n|---|---|---|---|---|---|---|---|---|\n",
        rule.confidence * 100.0
    );
    for v in vs {
        s.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {}–{} | {} |\n",
            v.bench,
            v.variant,
            v.labels,
            v.metric,
            v.unit,
            num(v.a_median),
            num(v.b_median),
            if v.ratio.is_finite() {
                format!("{:.3}", v.ratio)
            } else {
                "-".into()
            },
            if v.ratio_lo.is_finite() {
                format!("{:.3}", v.ratio_lo)
            } else {
                "-".into()
            },
            if v.ratio_hi.is_finite() {
                format!("{:.3}", v.ratio_hi)
            } else {
                "-".into()
            },
            if matches!(v.change, Change::NoDifference | Change::Undecided) {
                v.change.word().to_string()
            } else {
                format!("**{}**", v.change.word())
            }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples around `center` with multiplicative noise of about
    /// ±`spread` (uniform in log space), as the host's benchmarks scatter.
    fn noisy(rng: &mut Rng, n: usize, center: f64, spread: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let u = rng.below(1_000_001) as f64 / 1_000_000.0 * 2.0 - 1.0;
                center * (1.0 + spread).powf(u)
            })
            .collect()
    }

    #[test]
    fn an_injected_2x_slowdown_is_flagged() {
        let mut rng = Rng::new(7);
        for trial in 0..50 {
            let a = noisy(&mut rng, 5, 1000.0, 0.3);
            let b: Vec<f64> = noisy(&mut rng, 5, 1000.0, 0.3)
                .iter()
                .map(|v| v * 2.0)
                .collect();
            let (ratio, lo, _, change) = judge(&a, &b, Some(Unit::Ns), &Rule::default());
            assert_eq!(
                change,
                Change::Slower,
                "trial {trial}: ratio {ratio}, lo {lo}"
            );
            // The same slowdown as throughput.
            let (_, _, _, change) = judge(&b, &a, Some(Unit::PerS), &Rule::default());
            assert_eq!(change, Change::Slower, "trial {trial}: throughput halved");
        }
    }

    #[test]
    fn identical_configurations_show_no_difference() {
        // With the 95% interval, about one trial in twenty may see a
        // difference by chance in two samples of five drawn from the same
        // distribution; the noise threshold and the median's robustness
        // keep it rarer. Allow 3 of 100.
        let mut rng = Rng::new(11);
        let mut seen = 0;
        for _ in 0..100 {
            let a = noisy(&mut rng, 5, 1000.0, 0.3);
            let b = noisy(&mut rng, 5, 1000.0, 0.3);
            let (_, lo, hi, change) = judge(&a, &b, Some(Unit::Ns), &Rule::default());
            assert!(lo <= hi);
            if change != Change::NoDifference {
                seen += 1;
            }
        }
        assert!(seen <= 3, "{seen} of 100 identical pairs judged different");
    }

    #[test]
    fn units_without_a_better_side_say_higher_or_lower() {
        let a = [1.0, 1.01, 0.99, 1.0, 1.02];
        let b = [1.5, 1.51, 1.49, 1.5, 1.52];
        assert_eq!(
            judge(&a, &b, Some(Unit::Ratio), &Rule::default()).3,
            Change::Higher
        );
        assert_eq!(
            judge(&b, &a, Some(Unit::Count), &Rule::default()).3,
            Change::Lower
        );
        assert_eq!(
            judge(&a, &b, Some(Unit::PerS), &Rule::default()).3,
            Change::Faster
        );
    }

    #[test]
    fn degenerate_inputs_are_undecided_not_wrong() {
        let r = Rule::default();
        assert_eq!(judge(&[1.0], &[2.0], None, &r).3, Change::Undecided);
        assert_eq!(
            judge(&[0.0, 0.0], &[0.0, 0.0], None, &r).3,
            Change::NoDifference
        );
        assert_eq!(
            judge(&[0.0, 0.0], &[1.0, 2.0], None, &r).3,
            Change::Undecided
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
