//! Benchmarks `gup_pin` and `gup_pin_range` (issue 11).
//!
//! `gup_pin` is the seed's argument in numbers. "One can contend, the other
//! will never contend": the lock scheme's pinner takes the page lock, the
//! barrier scheme's never does; both back off and wait while the page is
//! under writeback. One page, `pin_page` + `unpin_page` timed together
//! (`rdtsc`) on CPU 0, in three settings:
//!
//! * `idle`: nothing else touches the page; pins in a loop for [`RUN_MS`];
//! * `writeback`: a flusher on CPU 1 writes the same page back, and the
//!   pinner pins once per round at a random moment of it;
//! * `locked`: a writer on CPU 1 holds the page lock (as `File::write` and
//!   writeback do), and the pinner pins once per round at a random moment.
//!
//! The two contended settings run in lockstep rounds, [`LOCKSTEP_ROUNDS`]
//! per run: both threads meet, then the other side starts its window at
//! once (writeback: lock, `start_page_writeback`, unlock, [`WINDOW_NS`]
//! "in flight", `end_page_writeback`; locked: lock, hold [`WINDOW_NS`],
//! unlock) and says so; the pinner waits for that, then a random
//! 0..2x[`WINDOW_NS`], and pins, so about half the pins land inside the
//! window. Lockstep because free-running
//! threads measured the host here, not the kernel: with the host's 2 cores
//! shared by other work (load average 11-13 during the runs) the two vCPU
//! threads rarely ran at the same time, and a pinner spinning next to a
//! flusher with writeback in flight half the time saw it in 0.01% of its
//! pins.
//!
//! For each: the pin+unpin latency (p50, p99, max), how often the pin
//! waited for writeback (`Pinned::waited_for_writeback > 0`), the failed
//! `try_pin_page` attempts per 1000 pins, and how many pins took over
//! 10 µs (an uncontended pin takes ~150 ns; a pin that slept, on the page
//! lock or on writeback, waited for a wake-up IPI, tens of µs under TCG).
//! The two schemes, each on a table of its own, alternate within each of
//! [`ROUNDS`] rounds; every figure is `median[min..max]` over the rounds.
//! Also the bulk cost of an uncontended pin+unpin and of starting and
//! ending writeback.
//!
//! `gup_pin_range`: `crate::gup::pin_user_pages` + drop (unpin) of ranges
//! of 1 to 1,024 pages of an anonymous region (faulted in beforehand), on
//! 1, 2 and 4 CPUs at once, each CPU on its own region of one shared
//! address space, for [`RANGE_MS`]: pages pinned per second. It runs the
//! boot's scheme (`gup=`); CPU counts beyond the boot's are reported as
//! skipped.
//!
//! Under QEMU TCG on a 2-core host every atomic is emulated, figures vary
//! up to 2x between runs, and more than two busy vCPUs time-share the host
//! cores (said in the output): ratios from one run are what to read, and
//! no timing decides anything.
//!
//! ```text
//! BENCH gup_pin uncontended/<scheme> rounds=5 ns_per_pin=..[..] over_lock=..[..]
//! BENCH gup_pin writeback_start/<scheme> rounds=5 ns=..[..]
//! BENCH gup_pin idle/<scheme> rounds=3 pins=.. pins_per_s=..[..] p50_ns=..[..] p99_ns=..[..] max_ns=..[..] waited_pct=..[..] failed_tries_per_1000=..[..] over_10us_pct=..[..]
//! BENCH gup_pin <writeback|locked>/<scheme> rounds=3 pins=1000 window_ns=100000 p50_ns=..[..] ...
//! BENCH gup_pin <setting>/ratio lock_over_barrier_p50=..[..] lock_over_barrier_p99=..[..]
//! BENCH gup_pin_range cpus=N pages=R gup=<scheme> rounds=3 pages_per_s=..[..] ns_per_page_per_cpu=..[..]
//! ```

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use pagesync::{Config, PinScheme, WriteResult};

use crate::{
    arch::x86_64::time,
    bench::{Bench, Spread, percentile, rdtsc},
    bench_result,
    gup::{GupFlags, pin_user_pages},
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::{Table, config, leak_table},
    params::Params,
    println,
    sched::{self, thread::WaitQueue},
    smp::online_cpus,
    tests::{pagelock::torture::Rng, sched::join_timeout},
    vm::{AddressSpace, Prot},
};

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "gup_pin",
        run: gup_pin,
    },
    Bench {
        name: "gup_pin_range",
        run: gup_pin_range,
    },
];

/// Rounds of every `gup_pin` setting and of `gup_pin_range`.
const ROUNDS: usize = 3;
/// Rounds of the bulk loops.
const BULK_ROUNDS: usize = 5;
/// Length of one `idle` run.
const RUN_MS: u64 = 300;
/// Pins per lockstep run, and the other side's window in each: about a
/// virtio-blk 4 KiB write here (`blk_io`: p50 ~130 µs).
const LOCKSTEP_ROUNDS: u64 = 1000;
const WINDOW_NS: u64 = 100_000;
/// A pin slower than this slept (module docs).
const SLEPT_NS: u64 = 10_000;

fn table(gup: PinScheme) -> &'static Table {
    leak_table(Config { gup, ..config() })
}

/// Busy-waits `ns` (the other side's window, the pinner's random offset),
/// without `pause` (under TCG, a trip through QEMU's main loop).
fn spin_ns(ns: u64) {
    let end = time::now_ns() + ns;
    while time::now_ns() < end {}
}

/// Bulk: ns per pin+unpin, one uncontended page, per scheme, per round.
fn uncontended(tables: &[&'static Table; 2]) -> [Vec<f64>; 2] {
    const N: u64 = 50_000;
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let mut out: [Vec<f64>; 2] = Default::default();
    for _ in 0..BULK_ROUNDS {
        for (k, t) in tables.iter().enumerate() {
            let t0 = rdtsc();
            for _ in 0..N {
                let p = t.pin_page(&page).expect("pin");
                assert_eq!(p.waited_for_writeback, 0);
                let _ = t.unpin_page(&page);
            }
            out[k].push(time::cycles_to_ns(rdtsc() - t0) as f64 / N as f64);
        }
    }
    out
}

/// Bulk: ns for lock + start_page_writeback + unlock + end_page_writeback.
fn writeback_start(t: &'static Table) -> f64 {
    const N: u64 = 20_000;
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let t0 = rdtsc();
    for _ in 0..N {
        t.lock_page(&page);
        let _ = t.start_page_writeback(&page);
        t.unlock_page(&page);
        let _ = t.end_page_writeback(&page, WriteResult::Written);
    }
    time::cycles_to_ns(rdtsc() - t0) as f64 / N as f64
}

/// What else happens to the page while CPU 0 pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Idle,
    Writeback,
    Locked,
}

impl Setting {
    const ALL: [Setting; 3] = [Setting::Idle, Setting::Writeback, Setting::Locked];

    fn name(self) -> &'static str {
        match self {
            Setting::Idle => "idle",
            Setting::Writeback => "writeback",
            Setting::Locked => "locked",
        }
    }
}

/// One run's figures.
struct Run {
    pins: u64,
    /// Only for `idle` (the lockstep runs pace the pins).
    pins_per_s: f64,
    p50_ns: f64,
    p99_ns: f64,
    max_ns: f64,
    waited_pct: f64,
    failed_per_1000: f64,
    slept_pct: f64,
}

/// Pin+unpin latencies (cycles) and outcomes, summarised.
#[derive(Default)]
struct Pins {
    lat: Vec<u64>,
    waited: u64,
    failed: u64,
}

impl Pins {
    fn pin(&mut self, t: &'static Table, page: &Frame) {
        let t0 = rdtsc();
        let p = t.pin_page(page).expect("pin");
        let _ = t.unpin_page(page);
        self.lat.push(rdtsc() - t0);
        self.waited += u64::from(p.waited_for_writeback > 0);
        self.failed += u64::from(p.waited_for_writeback);
    }

    fn run(mut self, pins_per_s: f64) -> Run {
        let n = self.lat.len() as u64;
        let slept = self
            .lat
            .iter()
            .filter(|&&c| time::cycles_to_ns(c) > SLEPT_NS)
            .count();
        let mut ns = |p| time::cycles_to_ns(percentile(&mut self.lat, p)) as f64;
        Run {
            pins: n,
            pins_per_s,
            p50_ns: ns(50),
            p99_ns: ns(99),
            max_ns: ns(100),
            waited_pct: 100.0 * self.waited as f64 / n.max(1) as f64,
            failed_per_1000: 1000.0 * self.failed as f64 / n.max(1) as f64,
            slept_pct: 100.0 * slept as f64 / n.max(1) as f64,
        }
    }
}

/// `idle`: pin and unpin in a loop for [`RUN_MS`], timing every 4th pin
/// (the sample then spans the whole run within 1 MiB of heap).
fn idle(t: &'static Table) -> Run {
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let mut pins = Pins {
        lat: Vec::with_capacity(1 << 17),
        ..Pins::default()
    };
    let start = time::now_ns();
    let end = start + RUN_MS * 1_000_000;
    let mut n = 0u64;
    while time::now_ns() < end {
        if n.is_multiple_of(4) && pins.lat.len() < pins.lat.capacity() {
            pins.pin(t, &page);
        } else {
            let p = t.pin_page(&page).expect("pin");
            let _ = t.unpin_page(&page);
            debug_assert_eq!(p.waited_for_writeback, 0);
        }
        n += 1;
    }
    let elapsed = (time::now_ns() - start) as f64 / 1e9;
    pins.run(n as f64 / elapsed)
}

/// Generation `g` of a two-thread lockstep is complete when both threads
/// have arrived `g` times; spins a little, then sleeps.
struct Lockstep {
    arrived: AtomicU64,
    wq: WaitQueue,
    /// The last round whose window has started (writeback started, or
    /// the lock taken).
    started: AtomicU64,
}

impl Lockstep {
    fn meet(&self, g: u64) {
        // AcqRel pairs with the Acquire loads below in the other thread.
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == 2 * g {
            // Second to arrive: the queue lock orders our count before the
            // first one's re-check under the same lock.
            self.wq.wake_up_all();
            return;
        }
        for _ in 0..2_000 {
            if self.arrived.load(Ordering::Acquire) >= 2 * g {
                return;
            }
            core::hint::spin_loop();
        }
        self.wq
            .wait_event(|| self.arrived.load(Ordering::Acquire) >= 2 * g);
    }
}

/// The other side's window in round `g` of a lockstep (module docs).
fn window(setting: Setting, t: &'static Table, page: &Frame, step: &Lockstep, g: u64) {
    // Release pairs with the pinner's Acquire load: it starts its random
    // offset once the window has begun.
    match setting {
        Setting::Idle => unreachable!("no other side when idle"),
        Setting::Writeback => {
            t.lock_page(page);
            let _ = t.start_page_writeback(page);
            t.unlock_page(page);
            step.started.store(g, Ordering::Release);
            spin_ns(WINDOW_NS);
            let _ = t.end_page_writeback(page, WriteResult::Written);
        }
        Setting::Locked => {
            t.lock_page(page);
            step.started.store(g, Ordering::Release);
            spin_ns(WINDOW_NS);
            t.unlock_page(page);
        }
    }
}

/// A lockstep run of `setting` (module docs), the other side on CPU 1.
fn lockstep(setting: Setting, t: &'static Table, seed: u64) -> Run {
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let step = Arc::new(Lockstep {
        arrived: AtomicU64::new(0),
        wq: WaitQueue::new(),
        started: AtomicU64::new(0),
    });
    let other = {
        let (step, page) = (step.clone(), page.clone());
        sched::spawn(&format!("gup-{}", setting.name()), Some(1), move || {
            for g in 1..=LOCKSTEP_ROUNDS {
                step.meet(g);
                window(setting, t, &page, &step, g);
            }
        })
        .expect("spawn")
    };
    let mut rng = Rng::new(seed);
    let mut pins = Pins {
        lat: Vec::with_capacity(LOCKSTEP_ROUNDS as usize),
        ..Pins::default()
    };
    for g in 1..=LOCKSTEP_ROUNDS {
        step.meet(g);
        // The offset counts from the start of the window, not from the
        // meeting: the other side may still be waking up from it (an IPI
        // to a halted vCPU, ~100 µs under TCG). A plain loop (no `pause`)
        // bounded by 50 ms, in case its vCPU is descheduled for long.
        let deadline = time::now_ns() + 50_000_000;
        // Acquire pairs with the Release store in `window`.
        while step.started.load(Ordering::Acquire) < g && time::now_ns() < deadline {
            // No `spin_loop`: under TCG a `pause` is a trip through
            // QEMU's main loop, microseconds.
            core::hint::black_box(());
        }
        spin_ns(rng.below(2 * WINDOW_NS));
        pins.pin(t, &page);
    }
    assert!(join_timeout(&other, 60_000), "a gup_pin helper is stuck");
    pins.run(0.0)
}

fn gup_pin(params: &Params) {
    let tables = PinScheme::ALL.map(table);
    let bulk = uncontended(&tables);
    for (k, scheme) in PinScheme::ALL.into_iter().enumerate() {
        let over: Vec<f64> = bulk[k].iter().zip(&bulk[0]).map(|(a, b)| a / b).collect();
        bench_result!(
            "gup_pin uncontended/{} rounds={BULK_ROUNDS} ns_per_pin={:.1} over_lock={:.2}",
            scheme.name(),
            Spread::of(&bulk[k]),
            Spread::of(&over)
        );
    }
    for (k, scheme) in PinScheme::ALL.into_iter().enumerate() {
        let v: Vec<f64> = (0..BULK_ROUNDS)
            .map(|_| writeback_start(tables[k]))
            .collect();
        bench_result!(
            "gup_pin writeback_start/{} rounds={BULK_ROUNDS} ns={:.1}",
            scheme.name(),
            Spread::of(&v)
        );
    }
    let settings: Vec<Setting> = Setting::ALL
        .into_iter()
        .filter(|&s| s == Setting::Idle || online_cpus() >= 2)
        .collect();
    if online_cpus() < 2 {
        println!("# gup_pin: the writeback and locked settings need -smp 2 or more; skipped");
    }
    // runs[setting][scheme]: one Run per round.
    let mut runs: Vec<[Vec<Run>; 2]> = settings.iter().map(|_| Default::default()).collect();
    for round in 0..ROUNDS {
        for (i, &s) in settings.iter().enumerate() {
            for j in 0..2 {
                // Alternate which scheme goes first.
                let k = (j + round) % 2;
                let seed = params.seed ^ (round * 8 + i * 2 + k) as u64;
                runs[i][k].push(match s {
                    Setting::Idle => idle(tables[k]),
                    _ => lockstep(s, tables[k], seed),
                });
            }
        }
    }
    for (i, s) in settings.iter().enumerate() {
        for (k, scheme) in PinScheme::ALL.into_iter().enumerate() {
            let rs = &runs[i][k];
            let f = |g: fn(&Run) -> f64| Spread::of(&rs.iter().map(g).collect::<Vec<f64>>());
            let rate = if *s == Setting::Idle {
                format!(" pins_per_s={:.0}", f(|r| r.pins_per_s))
            } else {
                format!(" window_ns={WINDOW_NS}")
            };
            bench_result!(
                "gup_pin {}/{} rounds={} pins={}{rate} p50_ns={:.0} p99_ns={:.0} max_ns={:.0} waited_pct={:.1} failed_tries_per_1000={:.1} over_10us_pct={:.1}",
                s.name(),
                scheme.name(),
                rs.len(),
                rs.first().map_or(0, |r| r.pins),
                f(|r| r.p50_ns),
                f(|r| r.p99_ns),
                f(|r| r.max_ns),
                f(|r| r.waited_pct),
                f(|r| r.failed_per_1000),
                f(|r| r.slept_pct)
            );
        }
        // Per round, lock over barrier (the runs of a round are neighbours).
        let ratio = |g: fn(&Run) -> f64| {
            let v: Vec<f64> = runs[i][0]
                .iter()
                .zip(&runs[i][1])
                .map(|(l, b)| g(l) / g(b).max(1e-9))
                .collect();
            Spread::of(&v)
        };
        bench_result!(
            "gup_pin {}/ratio lock_over_barrier_p50={:.2} lock_over_barrier_p99={:.2} lock_over_barrier_over_10us={:.2}",
            s.name(),
            ratio(|r| r.p50_ns),
            ratio(|r| r.p99_ns),
            ratio(|r| r.slept_pct)
        );
    }
}

/// Range sizes of `gup_pin_range`, in pages.
const RANGES: [u64; 4] = [1, 16, 256, 1024];
/// CPU counts of `gup_pin_range`.
const CPUS: [usize; 3] = [1, 2, 4];
/// Length of one `gup_pin_range` run.
const RANGE_MS: u64 = 200;
/// Where CPU `k`'s region starts (1024 pages each, 4 MiB apart).
const RANGE_VA: u64 = 0x70_0000_0000;
const REGION: u64 = 1024 * 4096;

/// `cpus` threads (on CPUs `0..cpus`) pin and unpin `pages`-page ranges of
/// their own regions for [`RANGE_MS`]: pages pinned per second, in all.
fn range_run(space: &Arc<AddressSpace>, cpus: usize, pages: u64) -> f64 {
    let w = GupFlags {
        write: true,
        longterm: false,
    };
    let total = Arc::new(AtomicU64::new(0));
    let start = time::now_ns();
    let end = start + RANGE_MS * 1_000_000;
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let (space, total) = (space.clone(), total.clone());
            sched::spawn("gup-range", Some(cpu), move || {
                let va = RANGE_VA + cpu as u64 * REGION;
                let mut n = 0;
                while time::now_ns() < end {
                    let p = pin_user_pages(&space, va, pages as usize, w).expect("pin a range");
                    drop(p);
                    n += pages;
                }
                // Relaxed: read after the join (its Acquire).
                total.fetch_add(n, Ordering::Relaxed);
            })
            .expect("spawn")
        })
        .collect();
    for t in &threads {
        assert!(join_timeout(t, 60_000), "a gup_pin_range thread is stuck");
    }
    // Relaxed: every thread has exited (`join_timeout`'s Acquire).
    total.load(Ordering::Relaxed) as f64 * 1e9 / (time::now_ns() - start) as f64
}

fn gup_pin_range(_: &Params) {
    let online = online_cpus();
    let scheme = config().gup.name();
    let space = AddressSpace::new().expect("a space");
    let cpus: Vec<usize> = CPUS.into_iter().filter(|&c| c <= online).collect();
    for &c in CPUS.iter().filter(|&&c| c > online) {
        bench_result!("gup_pin_range cpus={c} skipped online={online}");
    }
    let max = *cpus.last().expect("one CPU at least");
    if max > 2 {
        println!(
            "# gup_pin_range: {max} busy vCPUs on a 2-core TCG host time-share; more CPUs need not mean more throughput here"
        );
    }
    for k in 0..max as u64 {
        let va = RANGE_VA + k * REGION;
        space
            .map_anon(va, REGION, Prot::ReadWrite)
            .expect("map a region");
        // Fault every page in once (and check the range pins).
        drop(
            pin_user_pages(
                &space,
                va,
                1024,
                GupFlags {
                    write: true,
                    longterm: false,
                },
            )
            .expect("pin"),
        );
    }
    // results[c][r]: pages/s per round.
    let mut results = alloc::vec![alloc::vec![Vec::new(); RANGES.len()]; cpus.len()];
    for _ in 0..ROUNDS {
        for (ci, &c) in cpus.iter().enumerate() {
            for (ri, &r) in RANGES.iter().enumerate() {
                results[ci][ri].push(range_run(&space, c, r));
            }
        }
    }
    for (ci, &c) in cpus.iter().enumerate() {
        for (ri, &r) in RANGES.iter().enumerate() {
            let v = &results[ci][ri];
            let ns: Vec<f64> = v.iter().map(|p| c as f64 * 1e9 / p.max(1e-9)).collect();
            bench_result!(
                "gup_pin_range cpus={c} pages={r} gup={scheme} rounds={} pages_per_s={:.0} ns_per_page_per_cpu={:.0}",
                v.len(),
                Spread::of(v),
                Spread::of(&ns)
            );
        }
    }
}
