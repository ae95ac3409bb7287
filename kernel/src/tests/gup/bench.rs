//! Benchmark `gup_pin`: the seed's argument in numbers. "One can contend,
//! the other will never contend": the lock scheme's pinner takes the page
//! lock, the barrier scheme's never does.
//!
//! ```text
//! BENCH gup_pin uncontended/<scheme> cycles_per_pin=.. ratio_to_lock=..
//! BENCH gup_pin writeback_start/<scheme> cycles=..
//! BENCH gup_pin contended/<scheme> lockers=N pins_per_s=.. p50_ns=.. p99_ns=.. max_ns=.. locker_acq_per_s=..
//! BENCH gup_pin ratio contended_barrier_over_lock_pins=.. p99_lock_over_barrier=.. lockers_barrier_over_lock=..
//! ```
//!
//! Uncontended: one page, `try_pin_page` + `unpin_page` in a loop, the two
//! schemes interleaved in 5 rounds (best round). Contended: threads on the
//! other CPUs lock and unlock the page with short holds (writers and
//! flushers on a hot page) while a pinner on CPU 0 pins and unpins it for
//! a fixed time; per-pin latency percentiles and throughput per scheme,
//! and the lockers' throughput (what the pinner's contention costs them).

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagesync::{Config, PinScheme, WriteResult};

use crate::{
    arch::x86_64::time,
    bench::{Bench, percentile, rdtsc},
    mm::{AllocFlags, alloc_pages},
    pagelock::{Table, config, leak_table},
    params::Params,
    sched,
    smp::online_cpus,
    tests::sched::join_timeout,
};

pub static BENCHES: &[Bench] = &[Bench {
    name: "gup_pin",
    run: gup_pin,
}];

fn table(gup: PinScheme) -> &'static Table {
    leak_table(Config { gup, ..config() })
}

/// Best of 5 rounds, schemes interleaved, cycles per pin+unpin.
fn uncontended() -> [f64; 2] {
    const N: u64 = 100_000;
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let tables = PinScheme::ALL.map(table);
    let mut best = [f64::MAX; 2];
    for _ in 0..5 {
        for (k, t) in tables.iter().enumerate() {
            let t0 = rdtsc();
            for _ in 0..N {
                let pinned = t.try_pin_page(&page).expect("pin");
                assert!(pinned);
                let _ = t.unpin_page(&page);
            }
            best[k] = best[k].min((rdtsc() - t0) as f64 / N as f64);
        }
    }
    best
}

/// Cycles for lock + start_page_writeback + unlock + end_page_writeback.
fn writeback_start(t: &'static Table) -> f64 {
    const N: u64 = 50_000;
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let t0 = rdtsc();
    for _ in 0..N {
        t.lock_page(&page);
        let _ = t.start_page_writeback(&page);
        t.unlock_page(&page);
        let _ = t.end_page_writeback(&page, WriteResult::Written);
    }
    (rdtsc() - t0) as f64 / N as f64
}

struct Contended {
    pins_per_s: f64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    locker_acq_per_s: f64,
}

fn contended(t: &'static Table, ms: u64) -> Contended {
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let stop = Arc::new(AtomicBool::new(false));
    let acq = Arc::new(AtomicU64::new(0));
    let lockers: Vec<_> = (1..online_cpus())
        .map(|cpu| {
            let (stop, acq, page) = (stop.clone(), acq.clone(), page.clone());
            sched::spawn("gup-locker", Some(cpu), move || {
                while !stop.load(Ordering::Acquire) {
                    t.lock_page(&page);
                    for _ in 0..200 {
                        core::hint::spin_loop();
                    }
                    t.unlock_page(&page);
                    acq.fetch_add(1, Ordering::Relaxed);
                    for _ in 0..50 {
                        core::hint::spin_loop();
                    }
                }
            })
            .expect("spawn")
        })
        .collect();
    let mut lat = Vec::with_capacity(1 << 16);
    let mut pins = 0u64;
    let start = time::now_ns();
    let end = start + ms * 1_000_000;
    while time::now_ns() < end {
        pins += 1;
        let t0 = rdtsc();
        let pinned = t.try_pin_page(&page).expect("pin");
        let dt = rdtsc() - t0;
        if pinned {
            let _ = t.unpin_page(&page);
        }
        // Every 8th pin's latency (the first 64 Ki of them): the
        // percentiles cover the whole run.
        if pins % 8 == 0 && lat.len() < lat.capacity() {
            lat.push(dt);
        }
    }
    let elapsed = (time::now_ns() - start) as f64 / 1e9;
    stop.store(true, Ordering::Release);
    for l in &lockers {
        join_timeout(l, 10_000);
    }
    Contended {
        pins_per_s: pins as f64 / elapsed,
        p50_ns: time::cycles_to_ns(percentile(&mut lat, 50)),
        p99_ns: time::cycles_to_ns(percentile(&mut lat, 99)),
        max_ns: time::cycles_to_ns(percentile(&mut lat, 100)),
        locker_acq_per_s: acq.load(Ordering::Relaxed) as f64 / elapsed,
    }
}

fn gup_pin(_: &Params) {
    let [lock, barrier] = uncontended();
    for (scheme, c) in [(PinScheme::Lock, lock), (PinScheme::Barrier, barrier)] {
        crate::bench_result!(
            "gup_pin uncontended/{} cycles_per_pin={c:.1} ratio_to_lock={:.2}",
            scheme.name(),
            c / lock
        );
    }
    for scheme in PinScheme::ALL {
        crate::bench_result!(
            "gup_pin writeback_start/{} cycles={:.1}",
            scheme.name(),
            writeback_start(table(scheme))
        );
    }
    if online_cpus() < 2 {
        crate::println!("# gup_pin: contended runs need -smp 2 or more");
        return;
    }
    let mut results = Vec::new();
    // Two rounds, the schemes interleaved, so a slow phase of the host
    // hits both.
    for _ in 0..2 {
        for scheme in PinScheme::ALL {
            results.push((scheme, contended(table(scheme), 1000)));
        }
    }
    for (scheme, r) in &results {
        crate::bench_result!(
            "gup_pin contended/{} lockers={} pins_per_s={:.0} p50_ns={} p99_ns={} max_ns={} locker_acq_per_s={:.0}",
            scheme.name(),
            online_cpus() - 1,
            r.pins_per_s,
            r.p50_ns,
            r.p99_ns,
            r.max_ns,
            r.locker_acq_per_s
        );
    }
    let mean = |s: PinScheme, f: fn(&Contended) -> f64| {
        let v: Vec<f64> = results
            .iter()
            .filter(|(x, _)| *x == s)
            .map(|(_, r)| f(r))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    crate::bench_result!(
        "gup_pin ratio contended_barrier_over_lock_pins={:.2} p99_lock_over_barrier={:.2} lockers_barrier_over_lock={:.2}",
        mean(PinScheme::Barrier, |r| r.pins_per_s) / mean(PinScheme::Lock, |r| r.pins_per_s),
        mean(PinScheme::Lock, |r| r.p99_ns as f64) / mean(PinScheme::Barrier, |r| r.p99_ns as f64),
        mean(PinScheme::Barrier, |r| r.locker_acq_per_s)
            / mean(PinScheme::Lock, |r| r.locker_acq_per_s)
    );
}
