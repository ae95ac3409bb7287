//! Benchmark results on the console: the lines `cargo xtask bench` turns
//! into data (JSON, CSV, tables, plots).
//!
//! Mental model: a benchmark repeats its measurement in *rounds*, with its
//! variants interleaved round by round, and prints one [`crate::marker::BENCH`]
//! line per variant per round. The host groups the lines of one variant
//! (same benchmark, variant and labels except `round`) and reports the
//! median and the spread of every metric over the rounds. Distributions
//! too large to print sample by sample travel as histograms
//! ([`crate::marker::BENCH_HIST`]) over the fixed buckets of [`bucket_of`].
//! A correctness failure seen by a benchmark (a lost IPI, a failed
//! acquisition, a broken invariant) is a [`crate::marker::BENCH_FAILED`]
//! line, and the kernel then ends the run with a failure status.
//!
//! The line format, version [`FORMAT_VERSION`]:
//!
//! ```text
//! BENCH <bench> <variant> <field> <field> ...
//! BENCH_HIST <bench> <variant> <label> ... <metric>:<unit> <bucket>=<count> ...
//! # pcs: bench failed: <bench>: <what went wrong>
//! ```
//!
//! * `<bench>` and `<variant>` are single words of [`is_name`] characters
//!   (the variant may also contain `=`, `/` and `.`, e.g. `bookmarks=on`).
//! * A *label* is `key=value` ([`Label`]): what was measured (`cpus=2`,
//!   `round=3`). Keys are [`is_key`] words; values are non-empty and contain
//!   no whitespace.
//! * A *metric* is `key:unit=number` ([`Metric`]): a measured value with
//!   its [`Unit`]. The number is a decimal (Rust's `f64` syntax, finite).
//! * In a histogram line, each `<bucket>=<count>` gives the number of
//!   samples that fell in bucket `<bucket>` (an index, see [`bucket_of`]
//!   and [`bucket_bounds`]); empty buckets are left out.
//!
//! The kernel prints with the `Display` impls of this module; the host
//! reads with [`parse`]. Both sides compile this one definition.

use core::fmt;

use crate::marker::{BENCH, BENCH_FAILED, BENCH_HIST};

/// Version of the line format described in the module documentation.
pub const FORMAT_VERSION: u32 = 1;

/// The label that numbers the rounds of one variant (0-based).
pub const ROUND: &str = "round";

/// The unit of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Time-stamp-counter cycles.
    Cycles,
    /// Events per second.
    PerS,
    /// A ratio of two like quantities (dimensionless, "x").
    Ratio,
    /// A count of events or items.
    Count,
    /// A dimensionless index (e.g. Jain's fairness, 0..=1).
    Index,
    /// Mebibytes per second.
    MibPerS,
}

impl Unit {
    /// Every unit.
    pub const ALL: [Unit; 9] = [
        Unit::Ns,
        Unit::Us,
        Unit::Ms,
        Unit::Cycles,
        Unit::PerS,
        Unit::Ratio,
        Unit::Count,
        Unit::Index,
        Unit::MibPerS,
    ];

    /// The unit as written in a metric (`walk:us=2900`).
    pub const fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "us",
            Unit::Ms => "ms",
            Unit::Cycles => "cycles",
            Unit::PerS => "per_s",
            Unit::Ratio => "ratio",
            Unit::Count => "count",
            Unit::Index => "index",
            Unit::MibPerS => "mib_per_s",
        }
    }

    /// The unit called `name`.
    pub fn from_name(name: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.name() == name)
    }

    /// A short symbol for tables and axes (`ns`, `µs`, `/s`, `x`).
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
            Unit::Ms => "ms",
            Unit::Cycles => "cycles",
            Unit::PerS => "/s",
            Unit::Ratio => "x",
            Unit::Count => "",
            Unit::Index => "",
            Unit::MibPerS => "MiB/s",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `s` is a label or metric key: `[a-z0-9_]+`.
pub fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` is a benchmark name or variant: non-empty, of
/// `[A-Za-z0-9_=/.<>+-]`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=/.<>+-".contains(&b))
}

/// Whether `s` can be a label's value: non-empty, no whitespace, no `=`
/// and no `:`.
pub fn is_value(s: &str) -> bool {
    !s.is_empty()
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'=' || b == b':')
}

/// A label, printed `key=value`.
#[derive(Clone, Copy, Debug)]
pub struct Label<V>(pub &'static str, pub V);

impl<V: fmt::Display> fmt::Display for Label<V> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}={}", self.0, self.1)
    }
}

/// A metric, printed `key:unit=value`. Non-finite values print as `nan`,
/// which [`parse`] rejects: a benchmark must not report one.
#[derive(Clone, Copy, Debug)]
pub struct Metric(pub &'static str, pub Unit, pub f64);

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let Metric(key, unit, v) = *self;
        // Integers print without a fraction; others with up to 4 decimals.
        if v.is_finite() && v == (v as i64) as f64 && v.abs() < 1e15 {
            write!(f, "{key}:{unit}={}", v as i64)
        } else if v.is_finite() {
            write!(f, "{key}:{unit}={v:.4}")
        } else {
            write!(f, "{key}:{unit}=nan")
        }
    }
}

// The histogram buckets are pagesync's (`pagesync::stats`), where the
// hand-off statistics count in them too: one bucketing for the kernel,
// its benchmarks and the host.
pub use pagesync::stats::{NUM_BUCKETS, SUB_BUCKETS, bucket_bounds, bucket_of};

/// One parsed benchmark line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Line<'a> {
    /// A `BENCH` line: one measurement.
    Result(Record<'a>),
    /// A `BENCH_HIST` line: a distribution.
    Hist(Hist<'a>),
    /// A `# pcs: bench failed:` line.
    Failed {
        /// The benchmark that failed.
        bench: &'a str,
        /// What went wrong.
        why: &'a str,
    },
}

/// A `BENCH` line: its fields are read with [`Record::fields`] (already
/// checked by [`parse`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record<'a> {
    /// The benchmark.
    pub bench: &'a str,
    /// The variant.
    pub variant: &'a str,
    rest: &'a str,
}

/// A field of a [`Record`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    /// `key=value`.
    Label {
        /// The key.
        key: &'a str,
        /// The value.
        value: &'a str,
    },
    /// `key:unit=number`.
    Metric {
        /// The key.
        key: &'a str,
        /// The unit.
        unit: Unit,
        /// The value (finite).
        value: f64,
    },
}

impl<'a> Record<'a> {
    /// The fields in line order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        self.rest
            .split_ascii_whitespace()
            .map(|w| field(w).expect("checked by parse"))
    }
}

/// A `BENCH_HIST` line: labels, then one metric's buckets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hist<'a> {
    /// The benchmark.
    pub bench: &'a str,
    /// The variant.
    pub variant: &'a str,
    /// The metric the samples are of.
    pub metric: &'a str,
    /// Their unit.
    pub unit: Unit,
    labels: &'a str,
    buckets: &'a str,
}

impl<'a> Hist<'a> {
    /// The labels, `(key, value)`, in line order.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.labels
            .split_ascii_whitespace()
            .map(|w| w.split_once('=').expect("checked by parse"))
    }

    /// `(bucket index, count)` in line order.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + 'a {
        self.buckets.split_ascii_whitespace().map(|w| {
            let (i, n) = w.split_once('=').expect("checked by parse");
            (
                i.parse().expect("checked by parse"),
                n.parse().expect("checked by parse"),
            )
        })
    }
}

/// Why a benchmark line does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError<'a> {
    /// The benchmark or variant is missing or has characters outside
    /// [`is_name`].
    BadName(&'a str),
    /// A field is neither `key=value` nor `key:unit=number`.
    BadField(&'a str),
    /// A metric's unit is not a [`Unit`].
    UnknownUnit(&'a str),
    /// A metric's value is not a finite number.
    BadNumber(&'a str),
    /// A histogram line lacks its `metric:unit` word.
    NoHistMetric,
    /// A histogram word is not `<bucket>=<count>` with a valid index.
    BadBucket(&'a str),
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            LineError::BadName(w) => write!(f, "bad benchmark or variant name '{w}'"),
            LineError::BadField(w) => {
                write!(f, "field '{w}' is neither key=value nor key:unit=number")
            }
            LineError::UnknownUnit(w) => write!(f, "unknown unit in '{w}'"),
            LineError::BadNumber(w) => write!(f, "value of '{w}' is not a finite number"),
            LineError::NoHistMetric => f.write_str("histogram line without a metric:unit word"),
            LineError::BadBucket(w) => {
                write!(f, "histogram word '{w}' is not <bucket index>=<count>")
            }
        }
    }
}

fn field(w: &str) -> Result<Field<'_>, LineError<'_>> {
    let (lhs, value) = w.split_once('=').ok_or(LineError::BadField(w))?;
    match lhs.split_once(':') {
        None => {
            if is_key(lhs) && is_value(value) {
                Ok(Field::Label { key: lhs, value })
            } else {
                Err(LineError::BadField(w))
            }
        }
        Some((key, unit)) => {
            if !is_key(key) {
                return Err(LineError::BadField(w));
            }
            let unit = Unit::from_name(unit).ok_or(LineError::UnknownUnit(w))?;
            let value: f64 = value.parse().map_err(|_| LineError::BadNumber(w))?;
            if !value.is_finite() {
                return Err(LineError::BadNumber(w));
            }
            Ok(Field::Metric { key, unit, value })
        }
    }
}

/// Splits `<bench> <variant> <rest>`.
fn head(s: &str) -> Result<(&str, &str, &str), LineError<'_>> {
    let s = s.trim();
    let (bench, rest) = s.split_once(' ').unwrap_or((s, ""));
    let rest = rest.trim_start();
    let (variant, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    for n in [bench, variant] {
        if !is_name(n) {
            return Err(LineError::BadName(n));
        }
    }
    Ok((bench, variant, rest))
}

/// Parses a console line. `None`: not a benchmark line at all; `Some(Err)`:
/// a benchmark line that breaks the format.
pub fn parse(line: &str) -> Option<Result<Line<'_>, LineError<'_>>> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix(BENCH) {
        return Some(parse_record(rest).map(Line::Result));
    }
    if let Some(rest) = line.strip_prefix(BENCH_HIST) {
        return Some(parse_hist(rest).map(Line::Hist));
    }
    let rest = line.trim_start().strip_prefix(BENCH_FAILED)?;
    Some(match rest.split_once(": ") {
        Some((bench, why)) if is_name(bench) => Ok(Line::Failed { bench, why }),
        _ => Err(LineError::BadName(rest)),
    })
}

fn parse_record(s: &str) -> Result<Record<'_>, LineError<'_>> {
    let (bench, variant, rest) = head(s)?;
    for w in rest.split_ascii_whitespace() {
        field(w)?;
    }
    Ok(Record {
        bench,
        variant,
        rest,
    })
}

fn parse_hist(s: &str) -> Result<Hist<'_>, LineError<'_>> {
    let (bench, variant, rest) = head(s)?;
    // Labels up to the `metric:unit` word (which has a colon and no `=`).
    let split = rest
        .split_ascii_whitespace()
        .find(|w| w.contains(':') && !w.contains('='))
        .ok_or(LineError::NoHistMetric)?;
    let at = rest.find(split).expect("a word of rest");
    let (labels, tail) = (&rest[..at], &rest[at + split.len()..]);
    for w in labels.split_ascii_whitespace() {
        match field(w)? {
            Field::Label { .. } => {}
            Field::Metric { .. } => return Err(LineError::BadField(w)),
        }
    }
    let (metric, unit) = split.split_once(':').expect("has a colon");
    if !is_key(metric) {
        return Err(LineError::BadField(split));
    }
    let unit = Unit::from_name(unit).ok_or(LineError::UnknownUnit(split))?;
    for w in tail.split_ascii_whitespace() {
        let ok = w.split_once('=').is_some_and(|(i, n)| {
            i.parse::<usize>().is_ok_and(|i| i < NUM_BUCKETS) && n.parse::<u64>().is_ok()
        });
        if !ok {
            return Err(LineError::BadBucket(w));
        }
    }
    Ok(Hist {
        bench,
        variant,
        metric,
        unit,
        labels,
        buckets: tail,
    })
}

/// The failure line the kernel prints for a correctness failure seen by a
/// benchmark: `# pcs: bench failed: <bench>: <why>`.
pub struct Failed<'a, W>(pub &'a str, pub W);

impl<W: fmt::Display> fmt::Display for Failed<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{BENCH_FAILED}{}: {}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::ToString, vec::Vec};

    #[test]
    fn records_round_trip() {
        let line = format!(
            "{BENCH}pagelock_herd bookmarks=off {} {} {} {}",
            Label("waiters", 1000),
            Label(ROUND, 2),
            Metric("walk", Unit::Us, 2900.0),
            Metric("jain", Unit::Index, 0.98765)
        );
        assert_eq!(
            line,
            "BENCH pagelock_herd bookmarks=off waiters=1000 round=2 walk:us=2900 jain:index=0.9877"
        );
        let Some(Ok(Line::Result(r))) = parse(&line) else {
            panic!("{line}")
        };
        assert_eq!((r.bench, r.variant), ("pagelock_herd", "bookmarks=off"));
        let f: Vec<Field> = r.fields().collect();
        assert_eq!(
            f,
            [
                Field::Label {
                    key: "waiters",
                    value: "1000"
                },
                Field::Label {
                    key: "round",
                    value: "2"
                },
                Field::Metric {
                    key: "walk",
                    unit: Unit::Us,
                    value: 2900.0
                },
                Field::Metric {
                    key: "jain",
                    unit: Unit::Index,
                    value: 0.9877
                },
            ]
        );
        // A record without fields is fine (the variant alone).
        assert!(matches!(parse("BENCH a b"), Some(Ok(Line::Result(_)))));
    }

    #[test]
    fn bad_lines_are_errors_and_other_lines_are_not_bench_lines() {
        assert_eq!(parse("# pcs: end of run"), None);
        assert_eq!(parse("ok 1 boot"), None);
        assert_eq!(parse("BENCHMARK x"), None);
        let err = |l: &'static str| parse(l).unwrap().unwrap_err();
        assert_eq!(parse("BENCH "), None, "trailing blanks are dropped first");
        assert_eq!(err("BENCH  x"), LineError::BadName(""));
        assert_eq!(err("BENCH a"), LineError::BadName(""));
        assert_eq!(err("BENCH a b c"), LineError::BadField("c"));
        assert_eq!(err("BENCH a b X=1"), LineError::BadField("X=1"));
        assert_eq!(err("BENCH a b k=v=w"), LineError::BadField("k=v=w"));
        assert_eq!(
            err("BENCH a b k:parsec=1"),
            LineError::UnknownUnit("k:parsec=1")
        );
        assert_eq!(
            err("BENCH a b k:ns=fast"),
            LineError::BadNumber("k:ns=fast")
        );
        assert_eq!(err("BENCH a b k:ns=nan"), LineError::BadNumber("k:ns=nan"));
        assert_eq!(err("BENCH a b k:ns=inf"), LineError::BadNumber("k:ns=inf"));
        assert_eq!(err("BENCH a b\u{1} k=1"), LineError::BadName("b\u{1}"));
        assert_eq!(
            Metric("x", Unit::Ns, f64::NAN).to_string(),
            "x:ns=nan",
            "printed, then rejected by the host"
        );
    }

    #[test]
    fn histograms_round_trip() {
        let line = "BENCH_HIST pagelock_fairness pagelock cpus=2 round=0 wait:ns 3=5 100=7";
        let Some(Ok(Line::Hist(h))) = parse(line) else {
            panic!()
        };
        assert_eq!(
            (h.bench, h.variant, h.metric),
            ("pagelock_fairness", "pagelock", "wait")
        );
        assert_eq!(h.unit, Unit::Ns);
        assert_eq!(
            h.labels().collect::<Vec<_>>(),
            [("cpus", "2"), ("round", "0")]
        );
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(3, 5), (100, 7)]);
        let err = |l: &'static str| parse(l).unwrap().unwrap_err();
        assert_eq!(err("BENCH_HIST a b c=1"), LineError::NoHistMetric);
        assert_eq!(err("BENCH_HIST a b w:ns 1=x"), LineError::BadBucket("1=x"));
        assert_eq!(
            err("BENCH_HIST a b w:ns 496=1"),
            LineError::BadBucket("496=1")
        );
        assert_eq!(
            err("BENCH_HIST a b w:ms:ns 1=1"),
            LineError::UnknownUnit("w:ms:ns")
        );
    }

    #[test]
    fn failure_lines() {
        let l = Failed("ipi_round_trip", "IPI lost in round 3").to_string();
        assert_eq!(
            l,
            "# pcs: bench failed: ipi_round_trip: IPI lost in round 3"
        );
        assert_eq!(
            parse(&format!("    {l}")),
            Some(Ok(Line::Failed {
                bench: "ipi_round_trip",
                why: "IPI lost in round 3"
            }))
        );
    }

    #[test]
    fn buckets_cover_every_value_once_in_order() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(7), 7);
        assert_eq!(bucket_of(8), 8);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(17), 16);
        assert_eq!(bucket_of(u64::MAX), NUM_BUCKETS - 1);
        let mut prev_hi = 0;
        for i in 0..NUM_BUCKETS {
            let (lo, hi) = bucket_bounds(i);
            assert_eq!(lo, prev_hi, "bucket {i} starts where {} ends", i.max(1) - 1);
            assert!(hi > lo);
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi - 1), i);
            // Width at most 1/8 of the lower bound (above the exact ones).
            if lo >= SUB_BUCKETS {
                assert!((hi - lo) * SUB_BUCKETS <= lo, "bucket {i}: [{lo}, {hi})");
            }
            prev_hi = hi;
        }
        assert_eq!(prev_hi, u64::MAX);
        for v in [9u64, 1000, 123_456_789, 1 << 40] {
            let (lo, hi) = bucket_bounds(bucket_of(v));
            assert!(lo <= v && v < hi, "{v}");
        }
    }

    #[test]
    fn units_have_distinct_names() {
        for (i, a) in Unit::ALL.iter().enumerate() {
            assert_eq!(Unit::from_name(a.name()), Some(*a));
            assert!(is_key(a.name()));
            for b in &Unit::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
