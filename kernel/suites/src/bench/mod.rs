//! Benchmarks (`mode=bench`, driven by `cargo xtask bench`).
//!
//! Timings never decide pass or fail; they are reported. Correctness
//! signals do: a benchmark that sees a lost IPI, a failed acquisition or a
//! broken invariant calls [`fail`], and the run then ends with a failure
//! status.
//!
//! Every benchmark repeats its measurement in [`rounds`] rounds
//! (`bench_rounds=`, default 5), with its variants interleaved round by
//! round so that slow phases of the host hit all of them alike, and prints
//! one [`Record`] per variant per round:
//!
//! ```text
//! BENCH <bench> <variant> <label>=<value> ... round=<r> <metric>:<unit>=<value> ...
//! BENCH_HIST <bench> <variant> <label>=<value> ... <metric>:<unit> <bucket>=<count> ...
//! ```
//!
//! (the format is the contract's, `contract::bench`). `cargo xtask bench`
//! groups the rounds of each variant and reports the median and the spread
//! of every metric, as tables, JSON, CSV and plots. A benchmark measures
//! its baseline in the same rounds and reports ratios against it, because
//! absolute numbers under TCG mean little across hosts.
//!
//! Each benchmark module (in `crate`) declares `pub static BENCHES:
//! &[Bench]`; `crate::BENCHES` lists them and is handed to [`run_all`].

use alloc::{boxed::Box, format, string::String, vec};
use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use contract::{
    bench::{self as line, Failed, Label, Metric, NUM_BUCKETS, ROUND, Unit, bucket_of},
    glob,
    marker::{BENCH, BENCH_HIST, BENCH_START, END_OF_RUN, Progress},
};

use kernel::{params::Params, println};

pub struct Bench {
    pub name: &'static str,
    pub run: fn(&Params),
}

/// Reads the time-stamp counter (cycles at a constant rate on every CPU
/// QEMU emulates).
pub use kernel::arch::time::rdtsc;

/// Percentile `p` (0..=100) of `v`, which is sorted in place.
pub fn percentile(v: &mut [u64], p: u32) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((v.len() - 1) as u64 * p as u64 / 100) as usize;
    v[idx]
}

/// The median of `v` (sorted in place); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

static ROUNDS: AtomicU32 = AtomicU32::new(5);
static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Rounds per benchmark (`bench_rounds=`).
pub fn rounds() -> u32 {
    ROUNDS.load(Ordering::Relaxed)
}

/// Reports a correctness failure seen by benchmark `bench` (a lost IPI, a
/// failed acquisition, a broken invariant): prints the contract's failure
/// line, and the run will end with a failure status.
pub fn fail(bench: &str, why: fmt::Arguments) {
    FAILURES.fetch_add(1, Ordering::Relaxed);
    println!("{}", Failed(bench, why));
}

/// Correctness failures reported so far.
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

/// Prints a progress report (`contract::marker::Progress`) for the host's
/// live display.
pub fn progress(what: &str, done: u64, unit: &str, elapsed_ms: u64, budget_ms: u64) {
    println!(
        "{}",
        Progress {
            what,
            done,
            unit,
            elapsed_ms,
            budget_ms
        }
    );
}

/// One measurement of one variant in one round, printed as a `BENCH` line
/// (and its histograms as `BENCH_HIST` lines with the same labels).
///
/// ```ignore
/// Record::new("pagelock_herd", "bookmarks=off")
///     .label("waiters", 1000)
///     .round(r)
///     .metric("walk", Unit::Us, walk_us)
///     .emit();
/// ```
#[must_use = "a record prints nothing until `emit`"]
pub struct Record {
    bench: &'static str,
    variant: String,
    labels: String,
    metrics: String,
}

impl Record {
    pub fn new(bench: &'static str, variant: impl fmt::Display) -> Record {
        let variant = format!("{variant}");
        debug_assert!(
            line::is_name(bench) && line::is_name(&variant),
            "{bench} {variant}"
        );
        Record {
            bench,
            variant,
            labels: String::new(),
            metrics: String::new(),
        }
    }

    /// Adds a label (`key=value`: what was measured).
    pub fn label(mut self, key: &'static str, value: impl fmt::Display) -> Record {
        let _ = write!(self.labels, " {}", Label(key, value));
        debug_assert!(line::is_key(key));
        self
    }

    /// Adds the round label.
    pub fn round(self, r: u32) -> Record {
        self.label(ROUND, r)
    }

    /// Adds a metric (`key:unit=value`).
    pub fn metric(mut self, key: &'static str, unit: Unit, value: f64) -> Record {
        debug_assert!(line::is_key(key) && value.is_finite(), "{key}={value}");
        let _ = write!(self.metrics, " {}", Metric(key, unit, value));
        self
    }

    /// Prints the `BENCH` line.
    pub fn emit(self) {
        println!(
            "{BENCH}{} {}{}{}",
            self.bench, self.variant, self.labels, self.metrics
        );
    }

    /// Prints `h` as a `BENCH_HIST` line with this record's labels.
    pub fn emit_hist(&self, key: &'static str, unit: Unit, h: &Hist) {
        let mut s = format!(
            "{BENCH_HIST}{} {}{} {key}:{unit}",
            self.bench, self.variant, self.labels
        );
        for (i, n) in h.counts.iter().enumerate() {
            if *n != 0 {
                let _ = write!(s, " {i}={n}");
            }
        }
        println!("{s}");
    }
}

/// A distribution over the contract's buckets (`contract::bench::bucket_of`:
/// 8 per power of two, so within 12.5 %).
#[derive(Clone)]
pub struct Hist {
    counts: Box<[u64]>,
}

impl fmt::Debug for Hist {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Hist({} samples)", self.count())
    }
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; NUM_BUCKETS].into_boxed_slice(),
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
    }

    /// Adds counts kept elsewhere, one per bucket.
    pub fn add_counts(&mut self, counts: impl Iterator<Item = u64>) {
        for (a, b) in self.counts.iter_mut().zip(counts) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The lower bound of the bucket holding percentile `p` (0..=100).
    pub fn percentile(&self, p: u32) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = (n - 1) * p as u64 / 100;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return line::bucket_bounds(i).0;
            }
        }
        0
    }
}

/// Runs every benchmark of `all` (groups, in run order) selected by
/// `filter=`. Returns whether any ran and none reported a failure.
pub fn run_all(all: &[&[Bench]], params: &Params) -> bool {
    ROUNDS.store(params.bench_rounds, Ordering::Relaxed);
    let mut ran = 0;
    for group in all {
        for b in group.iter() {
            if params
                .filter
                .is_some_and(|f| !glob::list_matches(f, b.name))
            {
                continue;
            }
            println!("{BENCH_START}{} ({} rounds)", b.name, rounds());
            let before = failures();
            (b.run)(params);
            if failures() != before {
                println!("{BENCH_START}{}: FAILED", b.name);
            }
            ran += 1;
        }
    }
    let failed = failures();
    println!(
        "{}{ran} benchmarks run, {failed} correctness failures",
        contract::marker::PCS
    );
    println!("{END_OF_RUN}");
    ran > 0 && failed == 0
}
