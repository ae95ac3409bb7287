//! Page-lock benchmarks (`mode=bench`, `cargo xtask bench --filter 'pagelock*'`).
//!
//! Every benchmark runs `bench_rounds=` rounds with its variants
//! interleaved round by round (see `crate::bench`).
//!
//! * `pagelock_uncontended`: `lock_page`+`unlock_page` on a real frame
//!   through the kernel's API (`kernel::pagelock`, what callers run),
//!   against two floors on the same descriptor: `rmw_floor`, the two RMWs
//!   the protocol cannot do without, bare (`lock bts`, then `lock xorb` +
//!   sign flag, both results used: `test_and_set_bit_lock` and
//!   `xor_unlock_is_negative_byte` called directly), and `floor`, a `lock
//!   bts` and a `lock and` whose result is dropped (cheaper than any
//!   unlock that must learn about waiters). Also the two other unlock
//!   forms (`fetch_xor`, CAS loop) after a `test_and_set_bit_lock`. In
//!   each round the variants alternate in chunks of [`CHUNK`] iterations,
//!   [`CHUNKS`] passes. A variant's ratio to a floor in a round is the
//!   median, over the passes, of its chunk against the floor's chunk of the
//!   same pass (both ran under the same host conditions), so a host hiccup
//!   spoils one pair, not the round; its cost is its median chunk.
//! * `pagelock_fairness`: throughput, Jain's index and the wait-time
//!   distribution with one and four threads per CPU on 1 and 64 pages,
//!   all CPUs, for the boot's protocol (`pagelock`: `protocol=`,
//!   `unfairness=`, `bits=`... as given) and a ticket spin lock, the two
//!   alternating. `cargo xtask compare -- protocol=linux-5.9 --
//!   protocol=hugh-rfc --filter pagelock_fairness` compares protocols.
//! * `pagelock_herd`: the wake walk over N waiters in one queue, bookmarks
//!   off and on (see `super::herd`).
//! * `pagelock_bookmark_livelock`: Bin Lai's 6.7 report: shared waiters on
//!   PG_writeback while writeback restarts during the walk.
//!
//! A torture that fails (a lost wake-up, broken mutual exclusion), a herd
//! whose waiters do not all finish, or stranded writeback waiters fail the
//! run (`crate::bench::fail`). All figures are under QEMU TCG; only ratios
//! within one run mean much.

use alloc::{format, sync::Arc};
use core::{
    hint::black_box,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use contract::bench::Unit;
use pagesync::{
    Config, Page,
    flags::{PG_LOCKED, PG_WRITEBACK},
};

use super::{herd, torture};
use crate::{
    bench::{self, Bench, Hist, Record, median, rounds},
    sched::join_timeout,
};
use kernel::pagelock::{config, leak_table};
use kernel::{
    arch::time,
    mm::{AllocFlags, alloc_pages},
    params::Params,
    println,
    sched::{self, timer},
    smp::online_cpus,
};

const MS: u64 = 1_000_000;

/// Iterations per timed chunk of `pagelock_uncontended`.
pub const CHUNK: u64 = 10_000;
/// Chunks per variant per round.
pub const CHUNKS: usize = 21;

/// Cycles per iteration of `f` over [`CHUNK`] iterations.
#[inline(always)]
fn chunk_cycles(f: impl Fn()) -> f64 {
    let t0 = time::rdtsc();
    for _ in 0..CHUNK {
        f();
    }
    (time::rdtsc() - t0) as f64 / CHUNK as f64
}

fn uncontended(_: &Params) {
    const NAME: &str = "pagelock_uncontended";
    const VARIANTS: [&str; 5] = [
        "rmw_floor",
        "floor",
        "lock_unlock",
        "unlock_fetch_xor",
        "unlock_cas",
    ];
    let frame = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let page = frame.page();
    // The floors work on the same descriptor (the same cache line and
    // page) as the lock.
    let word = page.lock_owner();
    // Each variant is its own closure, so each timed loop is compiled for
    // it alone (no call through a pointer inside the loop).
    // A result is used the way the lock uses it, in a branch: so the
    // compiler picks the same instructions (a `black_box`ed bool turns the
    // test-and-set into a `lock cmpxchg` loop instead of `lock bts`, which
    // costs differently under TCG).
    let rmw_floor = || {
        // The two RMWs no lock of this protocol can do without, bare: the
        // lock's test-and-set (`lock bts`) and the unlock's clear that
        // reports PG_waiters (`lock xorb` + sign flag).
        let f = page.flags();
        if f.test_and_set_bit_lock(PG_LOCKED) {
            black_box(());
        }
        if f.xor_unlock_is_negative_byte_asm(1 << PG_LOCKED) {
            black_box(());
        }
    };
    let floor = || {
        // Two locked RMWs on the line, the first one's result used (as a
        // lock's test-and-set is), the second's not (`lock and`): cheaper
        // than any unlock that must also learn about waiters.
        black_box(word.fetch_or(1, Ordering::Acquire) & 1);
        word.fetch_and(!1, Ordering::Release);
    };
    let lock_unlock = || {
        // What the kernel's callers run: the API of `kernel::pagelock`
        // (its checks cannot leave the loop: each follows an Acquire RMW).
        kernel::pagelock::lock_page(page);
        kernel::pagelock::unlock_page(page);
    };
    let fetch_xor = || {
        let f = page.flags();
        if f.test_and_set_bit_lock(PG_LOCKED) {
            black_box(());
        }
        if f.xor_unlock_is_negative_byte_fetch_xor(1 << PG_LOCKED) {
            black_box(());
        }
    };
    let cas = || {
        let f = page.flags();
        if f.test_and_set_bit_lock(PG_LOCKED) {
            black_box(());
        }
        if f.xor_unlock_is_negative_byte_cas(1 << PG_LOCKED) {
            black_box(());
        }
    };
    let (mut vs_rmw, mut vs_floor) = (alloc::vec::Vec::new(), alloc::vec::Vec::new());
    for round in 0..rounds() {
        // chunk[i][v]: cycles per iteration of variant v in chunk i.
        let mut chunk = [[0f64; 5]; CHUNKS];
        for c in chunk.iter_mut() {
            c[0] = chunk_cycles(rmw_floor);
            c[1] = chunk_cycles(floor);
            c[2] = chunk_cycles(lock_unlock);
            c[3] = chunk_cycles(fetch_xor);
            c[4] = chunk_cycles(cas);
        }
        // A variant's cost: its median chunk. Its ratio to a floor: the
        // median over chunks of the ratio to that floor's chunk of the same
        // pass, which ran under the same host conditions.
        let typical = |v: usize| {
            let mut r: alloc::vec::Vec<f64> = chunk.iter().map(|c| c[v]).collect();
            median(&mut r)
        };
        let ratio = |v: usize, to: usize| {
            let mut r: alloc::vec::Vec<f64> = chunk.iter().map(|c| c[v] / c[to]).collect();
            median(&mut r)
        };
        vs_rmw.push(ratio(2, 0));
        vs_floor.push(ratio(2, 1));
        for (i, name) in VARIANTS.iter().enumerate() {
            Record::new(NAME, name)
                .round(round)
                .metric("cycles", Unit::Cycles, typical(i))
                .metric(
                    "ns",
                    Unit::Ns,
                    time::cycles_to_ns((typical(i) * 1000.0) as u64) as f64 / 1000.0,
                )
                .metric("vs_rmw_floor", Unit::Ratio, ratio(i, 0))
                .metric("vs_floor", Unit::Ratio, ratio(i, 1))
                .emit();
        }
    }
    if frame.flags().test(PG_LOCKED) {
        bench::fail(
            NAME,
            format_args!("the page is still locked after the rounds"),
        );
    }
    for (what, v) in [("rmw_floor", &mut vs_rmw), ("floor", &mut vs_floor)] {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "# {NAME}: lock_unlock / {what}: median {:.3} over {} rounds (min {lo:.3}, max {hi:.3})",
            median(v),
            rounds()
        );
    }
}

/// `pagelock_fairness` shapes: (threads per CPU, pages).
pub const FAIRNESS_SHAPES: [(usize, usize); 5] = [(1, 1), (1, 64), (2, 1), (4, 1), (4, 64)];
/// Length of one measurement.
pub const FAIRNESS_MS: u64 = 500;

fn fairness(p: &Params) {
    const NAME: &str = "pagelock_fairness";
    let cpus = online_cpus();
    println!(
        "# {NAME}: {cpus} vCPUs; the host has 2 cores, so with more than 2 vCPUs they time-share and do not all run in parallel (TCG); protocol: {}",
        kernel::pagelock::Describe(&config())
    );
    // One table for the whole benchmark: the boot's protocol, bug= included.
    let pages_table = leak_table(config());
    for round in 0..rounds() {
        for (shape, &(threads_per_cpu, pages)) in FAIRNESS_SHAPES.iter().enumerate() {
            // Alternate which variant goes first, so neither always follows
            // the other's leftovers.
            let order: [(&str, torture::Target); 2] = if (round as usize + shape).is_multiple_of(2)
            {
                [
                    ("pagelock", torture::Target::Pages(pages_table)),
                    ("ticket", torture::Target::Ticket),
                ]
            } else {
                [
                    ("ticket", torture::Target::Ticket),
                    ("pagelock", torture::Target::Pages(pages_table)),
                ]
            };
            let mut acq = [0.0f64; 2];
            let mut recs = alloc::vec::Vec::new();
            for (name, target) in order {
                let o = torture::Options {
                    name: "fairness",
                    threads_per_cpu,
                    cpus,
                    pages,
                    duration_ms: FAIRNESS_MS,
                    killable_one_in: 0,
                    cancels_per_tick: 0,
                    stutter_ms: 0,
                    max_hold_spins: 100,
                    hold_yield_one_in: 0,
                    lockstep: false,
                    mixed_waits: false,
                    verbose: false,
                    wait_hist: true,
                    seed: p.seed ^ u64::from(round),
                };
                let idle0 = pages_table.handoff_idle();
                let r = torture::run(target, &o);
                // Hand-offs of this run: the table's counts since `idle0`
                // (the ticket lock has none).
                let mut handoff = Hist::new();
                if name == "pagelock" {
                    let idle1 = pages_table.handoff_idle();
                    handoff.add_counts(idle1.0.iter().zip(idle0.0.iter()).map(|(a, b)| a - b));
                }
                if !r.ok() {
                    bench::fail(
                        NAME,
                        format_args!(
                            "{name} with {threads_per_cpu} thread(s) per CPU on {pages} page(s), round {round}: {}",
                            r.failures.join("; ")
                        ),
                    );
                    return;
                }
                let per_s = r.total as f64 * 1e9 / r.elapsed_ns.max(1) as f64;
                acq[usize::from(name == "ticket")] = per_s;
                let waits = r.waits.clone().unwrap_or_default();
                let rec = Record::new(NAME, name)
                    .label("cpus", cpus)
                    .label("threads", r.threads)
                    .label("pages", pages)
                    .round(round)
                    .metric("acq_per_s", Unit::PerS, (per_s as u64) as f64)
                    .metric("jain", Unit::Index, r.jain())
                    .metric("wait_p50", Unit::Ns, waits.percentile(50) as f64)
                    .metric("wait_p99", Unit::Ns, waits.percentile(99) as f64)
                    .metric("wait_max", Unit::Ns, r.max_wait_ns as f64);
                recs.push((name, rec, waits, handoff));
            }
            for (name, rec, waits, handoff) in recs {
                let rec = if name == "pagelock" {
                    rec.metric("vs_ticket", Unit::Ratio, acq[0] / acq[1].max(1.0))
                        .metric("handoffs", Unit::Count, handoff.count() as f64)
                        .metric("handoff_idle_p50", Unit::Ns, handoff.percentile(50) as f64)
                        .metric("handoff_idle_p99", Unit::Ns, handoff.percentile(99) as f64)
                } else {
                    rec
                };
                rec.emit_hist("wait", Unit::Ns, &waits);
                if name == "pagelock" {
                    rec.emit_hist("handoff_idle", Unit::Ns, &handoff);
                }
                rec.emit();
            }
        }
    }
}

fn herd_walks(_: &Params) {
    const NAME: &str = "pagelock_herd";
    let max = herd::max_waiters().min(10_000);
    println!("# {NAME}: largest herd {max} waiters (free memory bound)");
    for round in 0..rounds() {
        for n in [100usize, 1000, 10_000].into_iter().map(|n| n.min(max)) {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for bookmarks in order {
                let t = leak_table(Config {
                    table_bits: 0,
                    bookmarks,
                    ..config()
                });
                let r = herd::wake_walk(t, n, 4, herd::Probe::QueueLock, None);
                let variant = if bookmarks {
                    "bookmarks=on"
                } else {
                    "bookmarks=off"
                };
                if r.error.is_some() || r.unfinished != 0 {
                    bench::fail(
                        NAME,
                        format_args!(
                            "{variant}, {n} waiters, round {round}: {} waiters never finished{}",
                            r.unfinished,
                            r.error
                                .map_or(alloc::string::String::new(), |e| format!(" ({e})"))
                        ),
                    );
                    return;
                }
                Record::new(NAME, variant)
                    .label("waiters", r.queued)
                    .round(round)
                    .metric("woken", Unit::Count, r.woken_by_walk as f64)
                    .metric("walk", Unit::Us, r.walk_ns as f64 / 1000.0)
                    .metric("lock_hold", Unit::Us, r.max_lock_wait_ns as f64 / 1000.0)
                    .metric("probes", Unit::Count, r.prober_rounds as f64)
                    .emit();
            }
        }
    }
}

/// How long each waiter keeps restarting writeback in one livelock run.
pub const LIVELOCK_MS: u64 = 1_500;

/// What one livelock run found.
struct Livelock {
    calls: u64,
    longest_ns: u64,
    wakeups_in_longest: u64,
    /// Waiters that never exited (a failure).
    stranded: usize,
}

/// Shared waiters sleep on PG_writeback of one page; a woken waiter that
/// finds writeback ended restarts it (sets the bit again) and waits again,
/// as when writeback is restarted while ~100 processes wait (Bin Lai's
/// ltp-aiodio report). The waker ends writeback with `clear_bit_and_wake`.
/// With bookmarks the walk drops the lock every 64 entries; woken waiters
/// re-queue behind the bookmark meanwhile and the walk meets them again,
/// so one call can go on until the waiters stop restarting (after
/// [`LIVELOCK_MS`]). Waiters run on CPUs other than the waker's (CPU 0).
fn livelock_one(bookmarks: bool, n: usize) -> Livelock {
    let t = leak_table(Config {
        table_bits: 0,
        bookmarks,
        ..config()
    });
    let frame = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let page: &Page = &frame;
    let cpus = online_cpus();
    let stop = Arc::new(AtomicBool::new(false));
    let wakeups = Arc::new(AtomicU64::new(0));
    let exited = Arc::new(AtomicUsize::new(0));
    page.flags().test_and_set(PG_WRITEBACK);
    for k in 0..n {
        let (stop, wakeups, exited) = (stop.clone(), wakeups.clone(), exited.clone());
        let cpu = if cpus > 1 { 1 + k % (cpus - 1) } else { 0 };
        let frame = frame.clone();
        sched::spawn(&format!("wb-waiter{k}"), Some(cpu), move || {
            let page: &Page = &frame;
            while !stop.load(Ordering::Acquire) {
                if !page.flags().test(PG_WRITEBACK) {
                    // Restart writeback (only ever set here and above; the
                    // waker clears it).
                    page.flags().test_and_set(PG_WRITEBACK);
                }
                t.wait_on_page_bit(page, PG_WRITEBACK);
                wakeups.fetch_add(1, Ordering::Relaxed);
            }
            exited.fetch_add(1, Ordering::AcqRel);
        })
        .expect("spawn");
    }
    let t_queue = time::now_ns() + 10_000 * MS;
    while t.waiters_queued(page) < n && time::now_ns() < t_queue {
        timer::sleep_ns(10 * MS);
    }
    let stopper = {
        let stop = stop.clone();
        sched::spawn("wb-stopper", Some(cpus - 1), move || {
            timer::sleep_ns(LIVELOCK_MS * MS);
            stop.store(true, Ordering::Release);
        })
        .expect("spawn")
    };
    let mut r = Livelock {
        calls: 0,
        longest_ns: 0,
        wakeups_in_longest: 0,
        stranded: 0,
    };
    while !stop.load(Ordering::Acquire) {
        if !page.flags().test(PG_WRITEBACK) {
            sched::yield_now();
            continue;
        }
        let w0 = wakeups.load(Ordering::Relaxed);
        let t0 = time::now_ns();
        t.clear_bit_and_wake(page, PG_WRITEBACK);
        let dt = time::now_ns() - t0;
        r.calls += 1;
        if dt > r.longest_ns {
            r.longest_ns = dt;
            r.wakeups_in_longest = wakeups.load(Ordering::Relaxed) - w0;
        }
    }
    join_timeout(&stopper, 5_000);
    let deadline = time::now_ns() + 10_000 * MS;
    while exited.load(Ordering::Acquire) < n && time::now_ns() < deadline {
        page.flags().test_and_clear(PG_WRITEBACK);
        t.wake_page_bit(page, PG_WRITEBACK);
        timer::sleep_ns(10 * MS);
    }
    r.stranded = n - exited.load(Ordering::Acquire);
    if r.stranded == 0 {
        page.flags().test_and_clear(PG_WRITEBACK);
    } else {
        // Stranded waiters hold clones; the page is under writeback, which
        // the allocator refuses to free: keep it.
        core::mem::forget(frame);
    }
    r
}

fn bookmark_livelock(_: &Params) {
    const NAME: &str = "pagelock_bookmark_livelock";
    const N: usize = 100;
    for round in 0..rounds() {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for bookmarks in order {
            let r = livelock_one(bookmarks, N);
            let variant = if bookmarks {
                "bookmarks=on"
            } else {
                "bookmarks=off"
            };
            if r.stranded != 0 {
                bench::fail(
                    NAME,
                    format_args!(
                        "{variant}, round {round}: {} writeback waiters never woke",
                        r.stranded
                    ),
                );
                return;
            }
            // One call that woke more than twice the waiters met re-queued
            // waiters again: the walk chased its own tail.
            let livelock = r.wakeups_in_longest > 2 * N as u64;
            Record::new(NAME, variant)
                .label("waiters", N)
                .round(round)
                .metric("calls", Unit::Count, r.calls as f64)
                .metric("longest_call", Unit::Ms, r.longest_ns as f64 / 1e6)
                .metric(
                    "wakeups_in_longest",
                    Unit::Count,
                    r.wakeups_in_longest as f64,
                )
                .metric("livelock", Unit::Count, f64::from(u8::from(livelock)))
                .emit();
        }
    }
}

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "pagelock_uncontended",
        run: uncontended,
    },
    Bench {
        name: "pagelock_fairness",
        run: fairness,
    },
    Bench {
        name: "pagelock_herd",
        run: herd_walks,
    },
    Bench {
        name: "pagelock_bookmark_livelock",
        run: bookmark_livelock,
    },
];
