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
//! For each: the pin+unpin latency (p50, p99, max), and, counted over the
//! timed pins, the pins that waited for writeback
//! (`Pinned::waited_for_writeback > 0`), the failed `try_pin_page`
//! attempts, and the pins that took over 10 µs (an uncontended pin takes
//! ~150 ns; a pin that slept, on the page lock or on writeback, waited for
//! a wake-up IPI, tens of µs under TCG). Also the bulk cost of an
//! uncontended pin+unpin and of starting and ending writeback (lock,
//! `start_page_writeback`, unlock, `end_page_writeback`). The two schemes,
//! each on a table of its own, alternate within each of `bench_rounds=`
//! rounds (`crate::bench::rounds`). Each round divides, in every setting,
//! the lock scheme's p50, p99 and share of pins over 10 µs by the barrier
//! scheme's, and in the bulk loops the barrier scheme's cost by the lock
//! scheme's: `cargo xtask bench` reports the median of those per-round
//! ratios. A pin the table refuses (`RefError`: the page is ours, it
//! cannot be), a wait for writeback where there is none, or a stuck helper
//! thread fails the run (`crate::bench::fail`).
//!
//! `gup_pin_range`: `kernel::gup::pin_user_pages` + drop (unpin) of ranges
//! of 1 to 1,024 pages of an anonymous region (faulted in beforehand), on
//! 1, 2 and 4 CPUs at once, each CPU on its own region of one shared
//! address space, for [`RANGE_MS`] per run, `bench_rounds=` rounds: pages
//! pinned per second, and CPU time per page (CPUs x wall time / pages). It
//! runs the boot's scheme (`gup=`); CPU counts beyond the boot's are
//! reported as skipped. A range that does not pin fails the run.
//!
//! Under QEMU TCG on a 2-core host every atomic is emulated, figures vary
//! up to 2x between runs, and more than two busy vCPUs time-share the host
//! cores (said in the output): ratios from one run are what to read, and
//! no timing decides anything.
//!
//! Output, per round (format: `contract::bench`; the counts are of the
//! timed pins: `timed` when idle, `pins` in lockstep, so 288 there is
//! 28.8 %; `vs_barrier_over_10us` divides the shares of pins over 10 µs,
//! and counts none of the barrier scheme's as one, a lower bound then):
//! ```text
//! BENCH gup_pin uncontended scheme=lock round=0 mean:ns=..
//! BENCH gup_pin uncontended scheme=barrier round=0 mean:ns=.. vs_lock:ratio=..
//! BENCH gup_pin writeback_start scheme=<scheme> round=0 mean:ns=..   (barrier: vs_lock:ratio=..)
//! BENCH gup_pin idle scheme=<scheme> round=0 pins_per_s:per_s=.. timed:count=.. p50:ns=.. p99:ns=.. max:ns=.. waited:count=.. failed_tries:count=.. over_10us:count=..
//! BENCH gup_pin <writeback|locked> scheme=<scheme> pins=1000 window_us=100 round=0 p50:ns=.. p99:ns=.. max:ns=.. waited:count=.. failed_tries:count=.. over_10us:count=..
//!   (scheme=lock, every setting: ... vs_barrier_p50:ratio=.. vs_barrier_p99:ratio=.. vs_barrier_over_10us:ratio=..)
//! BENCH gup_pin_range anon scheme=<scheme> cpus=N pages=R round=0 pages_per_s:per_s=.. cpu_per_page:ns=..
//! ```

use alloc::{
    format,
    string::{String, ToString},
    sync::Arc,
    vec::Vec,
};
use core::sync::atomic::{AtomicU64, Ordering};

use contract::bench::Unit;
use pagesync::{Config, PinScheme, WriteResult};

use crate::rendezvous::Rendezvous;
use crate::{
    bench::{self, Bench, Record, percentile, rdtsc, rounds},
    pagelock::torture::Rng,
    sched::join_timeout,
};
use kernel::{
    arch::time,
    gup::{GupError, GupFlags, pin_user_pages},
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::{Table, config, leak_table},
    params::Params,
    println, sched,
    smp::online_cpus,
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

/// Bulk: ns per pin+unpin of one uncontended page; what went wrong if a
/// pin was refused or waited for writeback (nothing starts any).
fn uncontended(t: &'static Table) -> Result<f64, String> {
    const N: u64 = 50_000;
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let t0 = rdtsc();
    for _ in 0..N {
        let p = t
            .pin_page(&page)
            .map_err(|e| format!("uncontended pin refused: {e:?}"))?;
        if p.waited_for_writeback != 0 {
            return Err("an uncontended pin waited for writeback".to_string());
        }
        let _ = t.unpin_page(&page);
    }
    Ok(time::cycles_to_ns(rdtsc() - t0) as f64 / N as f64)
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
    /// Pins timed.
    pins: u64,
    /// Only for `idle` (the lockstep runs pace the pins).
    pins_per_s: f64,
    p50_ns: f64,
    p99_ns: f64,
    max_ns: f64,
    /// Timed pins that waited for writeback, failed tries of those, and
    /// timed pins over [`SLEPT_NS`].
    waited: u64,
    failed_tries: u64,
    slept: u64,
    /// Pins the table refused: a correctness failure (module docs).
    refused: u64,
    /// `idle` only: pins, timed or not, that waited for writeback although
    /// nothing starts any: a correctness failure.
    idle_waits: u64,
}

impl Run {
    /// What went wrong in the run, if anything did.
    fn problem(&self) -> Option<String> {
        if self.refused != 0 {
            Some(format!("{} pins refused", self.refused))
        } else if self.idle_waits != 0 {
            Some(format!(
                "{} pins waited for writeback with none started",
                self.idle_waits
            ))
        } else {
            None
        }
    }
}

/// Pin+unpin latencies (cycles) and outcomes, summarised.
#[derive(Default)]
struct Pins {
    lat: Vec<u64>,
    waited: u64,
    failed: u64,
    refused: u64,
}

impl Pins {
    fn pin(&mut self, t: &'static Table, page: &Frame) {
        let t0 = rdtsc();
        let Ok(p) = t.pin_page(page) else {
            self.refused += 1;
            return;
        };
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
            waited: self.waited,
            failed_tries: self.failed,
            slept: slept as u64,
            refused: self.refused,
            idle_waits: 0,
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
    let (mut untimed_waits, mut untimed_refused) = (0, 0);
    let start = time::now_ns();
    let end = start + RUN_MS * 1_000_000;
    let mut n = 0u64;
    while time::now_ns() < end {
        if n.is_multiple_of(4) && pins.lat.len() < pins.lat.capacity() {
            pins.pin(t, &page);
        } else {
            match t.pin_page(&page) {
                Ok(p) => {
                    let _ = t.unpin_page(&page);
                    untimed_waits += u64::from(p.waited_for_writeback > 0);
                }
                Err(_) => untimed_refused += 1,
            }
        }
        n += 1;
    }
    let elapsed = (time::now_ns() - start) as f64 / 1e9;
    let timed_waits = pins.waited;
    let mut r = pins.run(n as f64 / elapsed);
    r.refused += untimed_refused;
    r.idle_waits = timed_waits + untimed_waits;
    r
}

/// A two-thread lockstep ([`Rendezvous`]) and the last round whose window
/// has started (writeback started, or the lock taken).
struct Lockstep {
    rv: Rendezvous,
    started: AtomicU64,
}

impl Lockstep {
    fn meet(&self, g: u64) {
        self.rv.meet(g);
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
/// A refused pin is counted, not returned early: the other side still
/// expects its meetings. Fails if the other side is stuck.
fn lockstep(setting: Setting, t: &'static Table, seed: u64) -> Result<Run, String> {
    let page = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let step = Arc::new(Lockstep {
        rv: Rendezvous::new(),
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
    if !join_timeout(&other, 60_000) {
        return Err("the helper on CPU 1 is stuck (60 s)".to_string());
    }
    Ok(pins.run(0.0))
}

fn gup_pin(params: &Params) {
    const NAME: &str = "gup_pin";
    let tables = PinScheme::ALL.map(table);
    let names = PinScheme::ALL.map(PinScheme::name);
    let settings: Vec<Setting> = Setting::ALL
        .into_iter()
        .filter(|&s| s == Setting::Idle || online_cpus() >= 2)
        .collect();
    if online_cpus() < 2 {
        println!("# {NAME}: the writeback and locked settings need -smp 2 or more; skipped");
    }
    for round in 0..rounds() {
        // Alternate which scheme goes first.
        let order = [round as usize % 2, (round as usize + 1) % 2];
        // The bulk loops; the barrier scheme's figure over the lock's.
        let mut bulk = [0.0; 2];
        for k in order {
            match uncontended(tables[k]) {
                Ok(ns) => bulk[k] = ns,
                Err(why) => {
                    bench::fail(NAME, format_args!("{}, round {round}: {why}", names[k]));
                    return;
                }
            }
        }
        let mut start = [0.0; 2];
        for k in order {
            start[k] = writeback_start(tables[k]);
        }
        for (what, v) in [("uncontended", bulk), ("writeback_start", start)] {
            for k in 0..2 {
                let rec = Record::new(NAME, what)
                    .label("scheme", names[k])
                    .round(round)
                    .metric("mean", Unit::Ns, v[k]);
                match k {
                    0 => rec.emit(),
                    _ => rec
                        .metric("vs_lock", Unit::Ratio, v[k] / v[0].max(1e-9))
                        .emit(),
                }
            }
        }
        for (i, &s) in settings.iter().enumerate() {
            let mut runs: [Option<Run>; 2] = [None, None];
            for k in order {
                let seed = params.seed ^ (round as usize * 8 + i * 2 + k) as u64;
                let r = match s {
                    Setting::Idle => Ok(idle(tables[k])),
                    _ => lockstep(s, tables[k], seed),
                };
                let problem = match &r {
                    Ok(r) => r.problem(),
                    Err(why) => Some(why.clone()),
                };
                if let Some(why) = problem {
                    bench::fail(
                        NAME,
                        format_args!("{}/{}, round {round}: {why}", s.name(), names[k]),
                    );
                    return;
                }
                runs[k] = r.ok();
            }
            let [Some(lock), Some(barrier)] = &runs else {
                unreachable!("both schemes ran");
            };
            for (k, r) in [lock, barrier].into_iter().enumerate() {
                let mut rec = Record::new(NAME, s.name()).label("scheme", names[k]);
                rec = match s {
                    Setting::Idle => rec
                        .round(round)
                        .metric("pins_per_s", Unit::PerS, (r.pins_per_s as u64) as f64)
                        .metric("timed", Unit::Count, r.pins as f64),
                    _ => rec
                        .label("pins", r.pins)
                        .label("window_us", WINDOW_NS / 1000)
                        .round(round),
                };
                rec = rec
                    .metric("p50", Unit::Ns, r.p50_ns)
                    .metric("p99", Unit::Ns, r.p99_ns)
                    .metric("max", Unit::Ns, r.max_ns)
                    .metric("waited", Unit::Count, r.waited as f64)
                    .metric("failed_tries", Unit::Count, r.failed_tries as f64)
                    .metric("over_10us", Unit::Count, r.slept as f64);
                if k == 0 {
                    // Lock over barrier, this round's neighbouring runs. The
                    // shares of pins over 10 µs; no barrier pin over 10 µs
                    // counts as one.
                    let share = |r: &Run, n: u64| n as f64 / r.pins.max(1) as f64;
                    let slept = [
                        share(lock, lock.slept),
                        share(barrier, barrier.slept.max(1)),
                    ];
                    rec = rec
                        .metric(
                            "vs_barrier_p50",
                            Unit::Ratio,
                            lock.p50_ns / barrier.p50_ns.max(1.0),
                        )
                        .metric(
                            "vs_barrier_p99",
                            Unit::Ratio,
                            lock.p99_ns / barrier.p99_ns.max(1.0),
                        )
                        .metric("vs_barrier_over_10us", Unit::Ratio, slept[0] / slept[1]);
                }
                rec.emit();
            }
        }
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
/// Fails if a range does not pin (its thread stops) or a thread is stuck.
fn range_run(space: &Arc<AddressSpace>, cpus: usize, pages: u64) -> Result<f64, String> {
    let w = GupFlags {
        write: true,
        longterm: false,
    };
    let total = Arc::new(AtomicU64::new(0));
    let error = Arc::new(kernel::sync::IrqMutex::new(None::<(usize, GupError)>));
    let start = time::now_ns();
    let end = start + RANGE_MS * 1_000_000;
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let (space, total, error) = (space.clone(), total.clone(), error.clone());
            sched::spawn("gup-range", Some(cpu), move || {
                let va = RANGE_VA + cpu as u64 * REGION;
                let mut n = 0;
                while time::now_ns() < end {
                    match pin_user_pages(&space, va, pages as usize, w) {
                        Ok(p) => drop(p),
                        Err(e) => {
                            *error.lock() = Some((cpu, e));
                            break;
                        }
                    }
                    n += pages;
                }
                // Relaxed: read after the join (its Acquire).
                total.fetch_add(n, Ordering::Relaxed);
            })
            .expect("spawn")
        })
        .collect();
    for t in &threads {
        if !join_timeout(t, 60_000) {
            return Err("a pinning thread is stuck (60 s)".to_string());
        }
    }
    if let Some((cpu, e)) = *error.lock() {
        return Err(format!("pin_user_pages on CPU {cpu}: {e:?}"));
    }
    // Relaxed: every thread has exited (`join_timeout`'s Acquire).
    Ok(total.load(Ordering::Relaxed) as f64 * 1e9 / (time::now_ns() - start) as f64)
}

fn gup_pin_range(_: &Params) {
    const NAME: &str = "gup_pin_range";
    let online = online_cpus();
    let scheme = config().gup.name();
    let space = AddressSpace::new().expect("a space");
    let cpus: Vec<usize> = CPUS.into_iter().filter(|&c| c <= online).collect();
    for &c in CPUS.iter().filter(|&&c| c > online) {
        println!("# {NAME}: cpus={c} skipped ({online} CPUs online)");
    }
    let max = *cpus.last().expect("one CPU at least");
    if max > 2 {
        println!(
            "# {NAME}: {max} busy vCPUs on a 2-core TCG host time-share; more CPUs need not mean more throughput here"
        );
    }
    for k in 0..max as u64 {
        let va = RANGE_VA + k * REGION;
        space
            .map_anon(va, REGION, Prot::ReadWrite)
            .expect("map a region");
        // Fault every page in once (and check the range pins).
        let w = GupFlags {
            write: true,
            longterm: false,
        };
        match pin_user_pages(&space, va, 1024, w) {
            Ok(p) => drop(p),
            Err(e) => {
                bench::fail(NAME, format_args!("faulting in region {k}: {e:?}"));
                return;
            }
        }
    }
    for round in 0..rounds() {
        for &c in &cpus {
            for &r in &RANGES {
                let per_s = match range_run(&space, c, r) {
                    Ok(v) => v,
                    Err(why) => {
                        bench::fail(
                            NAME,
                            format_args!("{c} CPUs, {r} pages, round {round}: {why}"),
                        );
                        return;
                    }
                };
                Record::new(NAME, "anon")
                    .label("scheme", scheme)
                    .label("cpus", c)
                    .label("pages", r)
                    .round(round)
                    .metric("pages_per_s", Unit::PerS, (per_s as u64) as f64)
                    .metric("cpu_per_page", Unit::Ns, c as f64 * 1e9 / per_s.max(1e-9))
                    .emit();
            }
        }
    }
}
