//! Benchmark `mm_frame_alloc`: single-frame allocate+free latency per CPU,
//! with 1, 2 and 4 CPUs allocating at once, with the per-CPU caches on and
//! off, and the off/on ratio of the medians in the same run.
//!
//! Each participating CPU times [`ITERS`] `alloc_pages(0)` + drop pairs
//! with `rdtsc`, after a start barrier so that they contend from the first
//! operation; CPUs beyond the wanted count return at once. Run with
//! `cargo xtask bench --filter 'mm*'` (4 CPUs by default).
//!
//! Output, per CPU and then per CPU count:
//! ```text
//! BENCH mm_frame_alloc pcp=on/cpus=2 cpu=1 p50_ns=.. p99_ns=.. mean_ns=..
//! BENCH mm_frame_alloc ratio/cpus=2 off_over_on_p50=3.10 off_over_on_mean=2.95
//! ```

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::{AllocFlags, alloc_pages, pcp};
use crate::{
    arch::x86_64::time::cycles_to_ns,
    bench::{Bench, percentile, rdtsc},
    params::Params,
    println,
};

/// Timed pairs per CPU per configuration.
pub const ITERS: usize = 20_000;

pub static BENCHES: &[Bench] = &[Bench {
    name: "mm_frame_alloc",
    run: frame_alloc,
}];

/// (p50, p99, mean) in cycles of one configuration, summed over CPUs for
/// the mean of means.
fn run_config(ncpus: usize, pcp_on: bool) -> (u64, u64) {
    pcp::set_enabled(pcp_on);
    let online = crate::smp::online_cpus();
    let samples: Vec<spin::Mutex<Vec<u64>>> = (0..online)
        .map(|_| spin::Mutex::new(Vec::with_capacity(ITERS)))
        .collect();
    let arrived = AtomicU64::new(0);
    crate::smp::run_on_all_cpus(&|cpu| {
        if cpu >= ncpus {
            return;
        }
        let mut s = samples[cpu].lock();
        // Warm up the cache (and the refill path) before the barrier.
        for _ in 0..64 {
            drop(alloc_pages(0, AllocFlags::NONE));
        }
        arrived.fetch_add(1, Ordering::AcqRel);
        while arrived.load(Ordering::Acquire) < ncpus as u64 {
            core::hint::spin_loop();
        }
        for _ in 0..ITERS {
            let t0 = rdtsc();
            let p = alloc_pages(0, AllocFlags::NONE);
            drop(p);
            s.push(rdtsc() - t0);
        }
    });
    let variant = if pcp_on { "on" } else { "off" };
    let (mut p50_sum, mut mean_sum) = (0, 0);
    for (cpu, s) in samples.iter().enumerate().take(ncpus) {
        let mut v = s.lock();
        let mean = v.iter().sum::<u64>() / v.len().max(1) as u64;
        let p50 = percentile(&mut v, 50);
        let p99 = percentile(&mut v, 99);
        crate::bench_result!(
            "mm_frame_alloc pcp={variant}/cpus={ncpus} cpu={cpu} p50_ns={} p99_ns={} mean_ns={} p50_cycles={p50}",
            cycles_to_ns(p50),
            cycles_to_ns(p99),
            cycles_to_ns(mean)
        );
        p50_sum += p50;
        mean_sum += mean;
    }
    (p50_sum / ncpus as u64, mean_sum / ncpus as u64)
}

/// Hundredths of `a / b`, printed as `x.yy`.
struct Ratio(u64, u64);
impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let r = self.0 * 100 / self.1.max(1);
        write!(f, "{}.{:02}", r / 100, r % 100)
    }
}

fn frame_alloc(params: &Params) {
    let online = crate::smp::online_cpus();
    for ncpus in [1, 2, 4] {
        if ncpus > online {
            println!("# mm_frame_alloc: skipping {ncpus} CPUs ({online} online)");
            continue;
        }
        let (on_p50, on_mean) = run_config(ncpus, true);
        let (off_p50, off_mean) = run_config(ncpus, false);
        crate::bench_result!(
            "mm_frame_alloc ratio/cpus={ncpus} off_over_on_p50={} off_over_on_mean={} on_p50_ns={} off_p50_ns={}",
            Ratio(off_p50, on_p50),
            Ratio(off_mean, on_mean),
            cycles_to_ns(on_p50),
            cycles_to_ns(off_p50)
        );
    }
    pcp::set_enabled(params.pcp);
}
