//! Benchmarks (`mode=bench`, driven by `cargo xtask bench`).
//!
//! Timings never decide pass or fail; they are reported. Each benchmark
//! prints machine-readable result lines
//!
//! ```text
//! BENCH <bench> <variant> key=value key=value ...
//! ```
//!
//! (the prefix is the contract's `marker::BENCH`; the end-of-run line is
//! `marker::END_OF_RUN`)
//!
//! that `cargo xtask bench` collects into a table. A benchmark measures its
//! baseline in the same run and reports ratios against it, because absolute
//! numbers under TCG mean little across hosts. Benchmarks that repeat their
//! variants in rounds print each figure as `median[min..max]` ([`Spread`]).
//!
//! Each benchmark module (in `crate::tests`) declares `pub static BENCHES:
//! &[Bench]`; `crate::tests::BENCHES` lists them and is handed to [`run_all`].

use contract::{glob, marker::END_OF_RUN};

use crate::{params::Params, println};

/// Prints one benchmark result line: the contract's `marker::BENCH`
/// prefix, then the arguments (`<bench> <variant> key=value ...`), which
/// `cargo xtask bench` collects.
#[macro_export]
macro_rules! bench_result {
    ($($arg:tt)*) => {
        $crate::println!("{}{}", ::contract::marker::BENCH, format_args!($($arg)*))
    };
}

pub struct Bench {
    pub name: &'static str,
    pub run: fn(&Params),
}

/// Reads the time-stamp counter (cycles at a constant rate on every CPU
/// QEMU emulates).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects and is allowed at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Percentile `p` (0..=100) of `v`, which is sorted in place.
pub fn percentile(v: &mut [u64], p: u32) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let idx = ((v.len() - 1) as u64 * p as u64 / 100) as usize;
    v[idx]
}

/// One figure measured once per round, as its median and spread: printed
/// `median[min..max]`, with the formatter's precision (`{:.1}`) applied to
/// all three. Benchmarks repeat their variants in interleaved rounds (so a
/// slow phase of the host hits every variant) and report this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (one value per round); all zero if `v` is empty.
    /// The median of an even count is the lower middle value.
    pub fn of(v: &[f64]) -> Spread {
        if v.is_empty() {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mut s = alloc::vec::Vec::from(v);
        s.sort_unstable_by(f64::total_cmp);
        Spread {
            median: s[(s.len() - 1) / 2],
            min: s[0],
            max: s[s.len() - 1],
        }
    }
}

impl core::fmt::Display for Spread {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let p = f.precision().unwrap_or(0);
        write!(f, "{:.p$}[{:.p$}..{:.p$}]", self.median, self.min, self.max)
    }
}

/// Runs every benchmark of `all` (groups, in run order) selected by
/// `filter=`, returning whether any ran.
pub fn run_all(all: &[&[Bench]], params: &Params) -> bool {
    let mut ran = 0;
    for group in all {
        for b in group.iter() {
            if params
                .filter
                .is_some_and(|f| !glob::list_matches(f, b.name))
            {
                continue;
            }
            println!("# bench: {}", b.name);
            (b.run)(params);
            ran += 1;
        }
    }
    println!("# pcs: {ran} benchmarks run");
    println!("{END_OF_RUN}");
    ran > 0
}
