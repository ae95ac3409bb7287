//! Page-lock benchmarks (`mode=bench`, `cargo xtask bench --filter 'pagelock*'`).
//!
//! * `pagelock_uncontended`: `lock_page`+`unlock_page` on a real frame
//!   against the floor (one `lock bts` + one `lock and` on one cache line),
//!   and the three unlock forms (`lock xorb` + sign flag, `fetch_xor`, CAS
//!   loop) after a `test_and_set_bit_lock`.
//! * `pagelock_fairness`: throughput, max wait and Jain's index for 1 and
//!   64 pages, 1..=online CPUs (one thread per CPU), for unfairness=0,
//!   unfairness=5, handoff=off and a ticket spin lock.
//! * `pagelock_herd`: the wake walk over N waiters in one queue, bookmarks
//!   off and on (see `super::herd`).
//! * `pagelock_bookmark_livelock`: Bin Lai's 6.7 report: shared waiters on
//!   PG_writeback while writeback restarts during the walk.
//!
//! All figures are under QEMU TCG; only ratios within one run mean much.

use alloc::{format, sync::Arc};
use core::{
    hint::black_box,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use pagesync::{
    Config, Page,
    flags::{PG_LOCKED, PG_WRITEBACK},
};

use super::{herd, torture};
use crate::pagelock::{leak_table, table};
use crate::{
    arch::x86_64::time,
    bench::Bench,
    mm::{AllocFlags, alloc_pages, page_alloc::free_frames},
    params::Params,
    println,
    sched::{self, timer},
    smp::online_cpus,
    tests::sched::join_timeout,
};

const MS: u64 = 1_000_000;

/// Best of 5 runs of `n` iterations of `f`, in cycles per iteration.
fn cycles_per(n: u64, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t0 = time::rdtsc();
            for _ in 0..n {
                f();
            }
            (time::rdtsc() - t0) as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn uncontended(_: &Params) {
    const N: u64 = 1_000_000;
    let frame = alloc_pages(0, AllocFlags::ZERO).expect("frame");
    let page = frame.page();
    let t = table();
    let word = Page::new();
    let floor = cycles_per(N, || {
        // The floor: two locked RMWs on one line, the first one's result
        // used (as a lock's test-and-set is).
        let w = word.lock_owner();
        black_box(w.fetch_or(1, Ordering::Acquire) & 1);
        w.fetch_and(!1, Ordering::Release);
    });
    let lock_unlock = cycles_per(N, || {
        t.lock_page(black_box(page));
        t.unlock_page(black_box(page));
    });
    crate::bench_result!(
        "pagelock_uncontended floor cycles={floor:.1} ns={}",
        time::cycles_to_ns(floor as u64)
    );
    crate::bench_result!(
        "pagelock_uncontended lock_unlock cycles={lock_unlock:.1} ratio_to_floor={:.2} goal=1.2",
        lock_unlock / floor
    );
    type Form = fn(&pagesync::PageFlags, u8) -> bool;
    let forms: [(&str, Form); 3] = [
        (
            "unlock_lock_xorb",
            pagesync::PageFlags::xor_unlock_is_negative_byte_asm,
        ),
        (
            "unlock_fetch_xor",
            pagesync::PageFlags::xor_unlock_is_negative_byte_fetch_xor,
        ),
        (
            "unlock_cas",
            pagesync::PageFlags::xor_unlock_is_negative_byte_cas,
        ),
    ];
    for (name, form) in forms {
        let c = cycles_per(N, || {
            let f = black_box(page).flags();
            black_box(f.test_and_set_bit_lock(PG_LOCKED));
            black_box(form(f, 1 << PG_LOCKED));
        });
        crate::bench_result!(
            "pagelock_uncontended {name} cycles={c:.1} ratio_to_floor={:.2}",
            c / floor
        );
    }
}

fn fairness(p: &Params) {
    let online = online_cpus();
    println!(
        "# pagelock_fairness: {online} vCPUs online; the host has 2 cores, so with more than 2 vCPUs they time-share and do not all run in parallel (TCG)"
    );
    let variants: [(&str, Option<Config>); 4] = [
        (
            "unfairness=0",
            Some(Config {
                unfairness: 0,
                ..Config::DEFAULT
            }),
        ),
        ("unfairness=5", Some(Config::DEFAULT)),
        (
            "handoff=off",
            Some(Config {
                handoff: false,
                ..Config::DEFAULT
            }),
        ),
        ("ticket", None),
    ];
    // With one thread per CPU a queue never holds more than CPUs-1 waiters;
    // four per CPU lets queues form, which is where hand-off matters.
    for cpus in [1usize, 2, 4, 8].into_iter().filter(|&c| c <= online) {
        for (threads_per_cpu, pages) in [(1usize, 1usize), (1, 64), (4, 1), (4, 64)] {
            for (name, cfg) in variants {
                let target = cfg.map_or(torture::Target::Ticket, |c| {
                    torture::Target::Pages(leak_table(c))
                });
                let o = torture::Options {
                    name: "fairness",
                    threads_per_cpu,
                    cpus,
                    pages,
                    duration_ms: 1000,
                    killable_one_in: 0,
                    cancels_per_tick: 0,
                    stutter_ms: 0,
                    max_hold_spins: 100,
                    hold_yield_one_in: 0,
                    lockstep: false,
                    mixed_waits: false,
                    verbose: false,
                    seed: p.seed,
                };
                let r = torture::run(target, &o);
                let secs = r.elapsed_ns as f64 / 1e9;
                crate::bench_result!(
                    "pagelock_fairness {name} cpus={cpus} pages={pages} threads={} acq_per_s={:.0} max_wait_us={} jain={:.3} ok={}",
                    r.threads,
                    r.total as f64 / secs,
                    r.max_wait_ns / 1000,
                    r.jain(),
                    r.ok() as u8
                );
            }
        }
    }
}

fn herd_walks(_: &Params) {
    // A thread costs a 16 KiB stack plus a guard page; stacks are cached
    // after use, so keep the largest herd within a third of free memory.
    let max = (free_frames() as usize * 4096 / 3 / (20 * 1024)).min(10_000);
    println!("# pagelock_herd: largest herd {max} waiters (free memory bound)");
    for n in [100usize, 1000, 10_000].into_iter().map(|n| n.min(max)) {
        for bookmarks in [false, true] {
            let t = leak_table(Config {
                table_bits: 0,
                bookmarks,
                ..Config::DEFAULT
            });
            let r = herd::wake_walk(t, n, 4);
            crate::bench_result!(
                "pagelock_herd bookmarks={} waiters={} woken={} walk_us={} max_queue_lock_hold_us={} probes={} unfinished={}",
                if bookmarks { "on" } else { "off" },
                r.queued,
                r.woken_by_walk,
                r.walk_ns / 1000,
                r.max_lock_wait_ns / 1000,
                r.prober_rounds,
                r.unfinished
            );
        }
    }
}

/// Shared waiters sleep on PG_writeback of one page; a woken waiter that
/// finds writeback ended restarts it (sets the bit again) and waits again,
/// as when writeback is restarted while ~100 processes wait (Bin Lai's
/// ltp-aiodio report). The waker ends writeback with `clear_bit_and_wake`.
/// With bookmarks the walk drops the lock every 64 entries; woken waiters
/// re-queue behind the bookmark meanwhile and the walk meets them again,
/// so one call can go on until the waiters stop restarting (after 3 s).
/// Waiters run on CPUs other than the waker's (CPU 0).
fn livelock_one(bookmarks: bool, n: usize) {
    let t = leak_table(Config {
        table_bits: 0,
        bookmarks,
        ..Config::DEFAULT
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
            timer::sleep_ns(3_000 * MS);
            stop.store(true, Ordering::Release);
        })
        .expect("spawn")
    };
    let (mut calls, mut longest, mut wake_in_longest) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Acquire) {
        if !page.flags().test(PG_WRITEBACK) {
            sched::yield_now();
            continue;
        }
        let w0 = wakeups.load(Ordering::Relaxed);
        let t0 = time::now_ns();
        t.clear_bit_and_wake(page, PG_WRITEBACK);
        let dt = time::now_ns() - t0;
        calls += 1;
        if dt > longest {
            longest = dt;
            wake_in_longest = wakeups.load(Ordering::Relaxed) - w0;
        }
    }
    join_timeout(&stopper, 5_000);
    let deadline = time::now_ns() + 10_000 * MS;
    while exited.load(Ordering::Acquire) < n && time::now_ns() < deadline {
        page.flags().test_and_clear(PG_WRITEBACK);
        t.wake_page_bit(page, PG_WRITEBACK);
        timer::sleep_ns(10 * MS);
    }
    let livelock = longest > 1_000 * MS || wake_in_longest > 2 * n as u64;
    crate::bench_result!(
        "pagelock_bookmark_livelock bookmarks={} waiters={n} calls={calls} longest_call_ms={} wakeups_in_longest_call={wake_in_longest} livelock={}",
        if bookmarks { "on" } else { "off" },
        longest / MS,
        if livelock { "yes" } else { "no" }
    );
    if exited.load(Ordering::Acquire) == n {
        page.flags().test_and_clear(PG_WRITEBACK);
    } else {
        // Stranded waiters hold clones; the page is under writeback, which
        // the allocator refuses to free: keep it.
        core::mem::forget(frame);
    }
}

fn bookmark_livelock(_: &Params) {
    for bookmarks in [false, true] {
        livelock_one(bookmarks, 100);
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
