//! Benchmark `mm_frame_alloc`: single-frame allocate+free latency with 1,
//! 2 and 4 CPUs allocating at once, with the per-CPU caches on and off.
//!
//! In each round, for each CPU count, both settings run one after the
//! other (their order alternating between rounds): each participating CPU
//! times [`ITERS`] `alloc_pages(0)` + drop pairs with `rdtsc`, after a
//! start barrier so that they contend from the first operation; CPUs
//! beyond the wanted count return at once. Per setting and round: the
//! p50, p99 and mean over all participating CPUs' samples, their
//! histogram, and for `pcp=off` the ratio of its p50 to `pcp=on`'s in the
//! same round. Run with `cargo xtask bench --filter 'mm*'`.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use contract::bench::Unit;

use crate::bench::{Bench, Hist, Record, percentile, rdtsc, rounds};
use kernel::mm::{AllocFlags, alloc_pages, pcp};
use kernel::{arch::time::cycles_to_ns, params::Params, println};

/// Timed pairs per CPU per setting per round.
pub const ITERS: usize = 5_000;

pub static BENCHES: &[Bench] = &[Bench {
    name: "mm_frame_alloc",
    run: frame_alloc,
}];

/// Every participating CPU's samples (ns) for one setting.
fn run_config(ncpus: usize, pcp_on: bool) -> Vec<u64> {
    pcp::set_enabled(pcp_on);
    let online = kernel::smp::online_cpus();
    let samples: Vec<kernel::sync::IrqMutex<Vec<u64>>> = (0..online)
        .map(|_| kernel::sync::IrqMutex::new(Vec::with_capacity(ITERS)))
        .collect();
    let arrived = AtomicU64::new(0);
    kernel::smp::run_on_all_cpus(&|cpu| {
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
    samples
        .iter()
        .take(ncpus)
        .flat_map(|s| {
            s.lock()
                .iter()
                .map(|&c| cycles_to_ns(c))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn frame_alloc(params: &Params) {
    const NAME: &str = "mm_frame_alloc";
    let online = kernel::smp::online_cpus();
    for ncpus in [1, 2, 4] {
        if ncpus > online {
            println!("# {NAME}: skipping {ncpus} CPUs ({online} online)");
        }
    }
    for round in 0..rounds() {
        for ncpus in [1, 2, 4].into_iter().filter(|&n| n <= online) {
            let order = if (round as usize + ncpus).is_multiple_of(2) {
                [true, false]
            } else {
                [false, true]
            };
            let mut p50 = [0u64; 2];
            let mut recs = Vec::new();
            for on in order {
                let mut v = run_config(ncpus, on);
                let mean = v.iter().sum::<u64>() / v.len().max(1) as u64;
                let mut h = Hist::new();
                for &ns in &v {
                    h.record(ns);
                }
                let median = percentile(&mut v, 50);
                p50[usize::from(!on)] = median;
                let rec = Record::new(NAME, if on { "pcp=on" } else { "pcp=off" })
                    .label("cpus", ncpus)
                    .round(round)
                    .metric("p50", Unit::Ns, median as f64)
                    .metric("p99", Unit::Ns, percentile(&mut v, 99) as f64)
                    .metric("mean", Unit::Ns, mean as f64);
                recs.push((on, rec, h));
            }
            for (on, rec, h) in recs {
                let rec = if on {
                    rec
                } else {
                    rec.metric("vs_on", Unit::Ratio, p50[1] as f64 / p50[0].max(1) as f64)
                };
                rec.emit_hist("alloc_free", Unit::Ns, &h);
                rec.emit();
            }
        }
    }
    pcp::set_enabled(params.pcp);
}
