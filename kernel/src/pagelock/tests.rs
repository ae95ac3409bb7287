//! The `pagelock` KTAP suite: unit checks of the API on real frame-array
//! descriptors, short torture runs of the protocol in several shapes, and
//! a thundering-herd walk with thousands of waiters in one queue.
//!
//! The torture cases build on the boot configuration ([`super::config`]),
//! changing one knob each, so `bug=<variant>` reaches all of them; the
//! host test `tests/tests/pagelock.rs` runs `pagelock.torture` once per
//! known-bad variant and expects FAILURE.

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pagesync::{
    Config, Page, PutOutcome,
    flags::{PG_LOCKED, PG_WAITERS, PG_WRITEBACK, mask},
};

use super::{
    Table, config, herd, leak_table, table,
    torture::{self, Options, Target},
};
use crate::{
    arch::x86_64::time,
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestResult},
    mm::{AllocFlags, Pages, alloc_pages},
    println,
    sched::{self, ThreadRef, tests::join_timeout, timer},
};

const MS: u64 = 1_000_000;

fn frame() -> Pages {
    alloc_pages(0, AllocFlags::ZERO).expect("no free frame")
}

/// Waits up to 5 s until `n` entries of `page` are queued.
fn wait_queued(t: &Table, page: &Page, n: usize) -> bool {
    let deadline = time::now_ns() + 5_000 * MS;
    while t.waiters_queued(page) != n {
        if time::now_ns() > deadline {
            return false;
        }
        timer::sleep_ns(MS);
    }
    true
}

fn spawn_on(name: &str, f: impl FnOnce() + Send + 'static) -> ThreadRef {
    sched::spawn(name, None, f).expect("spawn")
}

/// trylock takes a free lock, fails on a held one, unlock frees it; the
/// uncontended path never touches PG_waiters.
fn trylock_unlock(_: &Ctx) -> TestResult {
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    kassert!(!t.trylock_page(p));
    kassert_eq!(p.flags.load(Ordering::Relaxed) & 0xff, mask(PG_LOCKED));
    t.unlock_page(p);
    kassert_eq!(p.flags.load(Ordering::Relaxed) & 0xff, 0);
    t.lock_page(p);
    t.unlock_page(p);
    kassert_eq!(p.flags.load(Ordering::Relaxed), 0);
    Ok(())
}

/// The one unlock RMW reports PG_waiters (all three forms, the `lock xorb`
/// one included), and a real sleeper is woken and gets the lock.
fn unlock_reports_waiters(_: &Ctx) -> TestResult {
    let private = Page::new();
    type Form = fn(&pagesync::PageFlags, u8) -> bool;
    let forms: [(&str, Form); 3] = [
        (
            "lock xorb",
            pagesync::PageFlags::xor_unlock_is_negative_byte_asm,
        ),
        (
            "fetch_xor",
            pagesync::PageFlags::xor_unlock_is_negative_byte_fetch_xor,
        ),
        ("cas", pagesync::PageFlags::xor_unlock_is_negative_byte_cas),
    ];
    for (name, form) in forms {
        for waiters in [false, true] {
            let v = mask(PG_LOCKED) | if waiters { mask(PG_WAITERS) } else { 0 };
            private.flags.store_private(v);
            kassert!(
                form(&private.flags, 1 << PG_LOCKED) == waiters,
                "{name}: waiters={waiters}"
            );
            kassert_eq!(private.flags.load(Ordering::Relaxed), v & !mask(PG_LOCKED));
        }
    }
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    let got = Arc::new(AtomicBool::new(false));
    let w = {
        let got = got.clone();
        spawn_on("pl-waiter", move || {
            super::lock_page(p);
            got.store(true, Ordering::Release);
            super::unlock_page(p);
        })
    };
    kassert!(wait_queued(t, p, 1), "waiter never queued");
    kassert!(
        p.flags.test(PG_WAITERS),
        "PG_waiters clear with a sleeper queued"
    );
    kassert!(!got.load(Ordering::Acquire));
    t.unlock_page(p);
    kassert!(join_timeout(&w, 5_000), "waiter not woken by unlock_page");
    kassert!(got.load(Ordering::Acquire));
    kassert_eq!(t.waiters_queued(p), 0);
    kassert_eq!(p.flags.load(Ordering::Relaxed) & 0xff, 0);
    Ok(())
}

/// wait_on_page_bit(PG_writeback) sleepers are woken by the end of
/// writeback; a lock waiter on the same page is not (key includes the bit).
fn writeback_waiters(_: &Ctx) -> TestResult {
    const N: usize = 3;
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    t.set_page_writeback(p);
    let done = Arc::new(AtomicUsize::new(0));
    let mut ws = Vec::new();
    for i in 0..N {
        let done = done.clone();
        ws.push(spawn_on(&format!("pl-wb{i}"), move || {
            table().wait_on_page_writeback(p);
            done.fetch_add(1, Ordering::AcqRel);
        }));
    }
    let locker = spawn_on("pl-locker", move || {
        super::lock_page(p);
        super::unlock_page(p);
    });
    kassert!(
        wait_queued(t, p, N + 1),
        "waiters never queued ({} queued)",
        t.waiters_queued(p)
    );
    kassert_eq!(done.load(Ordering::Acquire), 0);
    kassert_eq!(t.end_page_writeback(p), Ok(PutOutcome::StillReferenced));
    for w in &ws {
        kassert!(join_timeout(w, 5_000), "writeback waiter not woken");
    }
    kassert_eq!(done.load(Ordering::Acquire), N);
    kassert_eq!(t.waiters_queued(p), 1);
    kassert!(
        p.flags.test(PG_WAITERS),
        "lock waiter remains: PG_waiters must stay"
    );
    kassert!(!p.flags.test(PG_WRITEBACK));
    t.unlock_page(p);
    kassert!(join_timeout(&locker, 5_000), "lock waiter not woken");
    kassert_eq!(p.flags.load(Ordering::Relaxed) & 0xff, 0);
    Ok(())
}

/// A cancelled lock_page_killable returns Interrupted and unqueues; the
/// lock stays with its owner and a later waiter still gets it.
fn killable_cancel(_: &Ctx) -> TestResult {
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    let result = Arc::new(AtomicUsize::new(0));
    let w = {
        let result = result.clone();
        spawn_on("pl-killable", move || {
            let r = super::lock_page_killable(p);
            result.store(if r.is_ok() { 1 } else { 2 }, Ordering::Release);
            if r.is_ok() {
                super::unlock_page(p);
            }
        })
    };
    let plain = spawn_on("pl-plain", move || {
        super::lock_page(p);
        super::unlock_page(p);
    });
    kassert!(wait_queued(t, p, 2), "waiters never queued");
    w.cancel.store(true, Ordering::SeqCst);
    sched::wake(&w);
    kassert!(join_timeout(&w, 5_000), "cancelled waiter did not return");
    kassert_eq!(result.load(Ordering::Acquire), 2);
    kassert_eq!(t.waiters_queued(p), 1);
    kassert!(
        p.flags.test(PG_LOCKED),
        "the owner's lock must survive a waiter's cancel"
    );
    t.unlock_page(p);
    kassert!(join_timeout(&plain, 5_000), "remaining waiter not woken");
    kassert_eq!(p.flags.load(Ordering::Relaxed) & 0xff, 0);
    Ok(())
}

fn torture_with(cfg: Option<Config>, o: Options) -> TestResult {
    let t = match cfg {
        Some(c) => leak_table(c),
        None => table(),
    };
    let r = torture::run(Target::Pages(t), &o);
    kassert!(r.ok(), "torture {}: {:?}", o.name, r.failures);
    kassert!(r.total > 0, "no acquisitions");
    Ok(())
}

fn opts(ctx: &Ctx, name: &'static str, ms: u64) -> Options {
    Options {
        name,
        duration_ms: ms,
        seed: ctx.params.seed,
        ..Options::DEFAULT
    }
}

/// The boot protocol and the boot knobs (`torture_threads=`,
/// `torture_pages=`, `torture_ms=`): the case the known-bad host tests run.
/// Half the time in lockstep with one thread per CPU on one page (every
/// round all CPUs race for the same lock, then quiesce: the sharpest lost
/// wake-up detector), half free-running, 4 threads per CPU on 16 pages,
/// with pauses. The knobs override both halves.
fn torture(ctx: &Ctx) -> TestResult {
    let tp = ctx.params.torture;
    let half = tp.ms.unwrap_or(4000).div_ceil(2);
    let knobs = |o: Options| Options {
        threads_per_cpu: tp.threads_per_cpu.map_or(o.threads_per_cpu, |n| n as usize),
        pages: tp.pages.map_or(o.pages, |n| n as usize),
        ..o
    };
    let base = opts(ctx, "torture", half);
    let lockstep = Options {
        name: "torture_lockstep",
        lockstep: true,
        stutter_ms: 0,
        threads_per_cpu: 1,
        pages: 1,
        hold_yield_one_in: 0,
        max_hold_spins: 4,
        ..base
    };
    torture_with(None, knobs(lockstep))?;
    torture_with(None, knobs(base))
}

fn torture_many_pages(ctx: &Ctx) -> TestResult {
    torture_with(
        None,
        Options {
            pages: 256,
            ..opts(ctx, "many_pages", 2000)
        },
    )
}

fn torture_one_page(ctx: &Ctx) -> TestResult {
    torture_with(
        None,
        Options {
            pages: 1,
            ..opts(ctx, "one_page", 2000)
        },
    )
}

/// bits=0: every page's waiters share one queue (collisions everywhere).
fn torture_one_queue(ctx: &Ctx) -> TestResult {
    torture_with(
        Some(Config {
            table_bits: 0,
            ..config()
        }),
        Options {
            pages: 16,
            ..opts(ctx, "one_queue", 2000)
        },
    )
}

/// Half the threads are killable and get cancelled several times a tick.
fn torture_killable(ctx: &Ctx) -> TestResult {
    torture_with(
        None,
        Options {
            killable_one_in: 2,
            cancels_per_tick: 4,
            pages: 4,
            ..opts(ctx, "killable", 2000)
        },
    )
}

/// unfairness=0: every contended acquisition is a FIFO hand-off.
fn torture_fifo(ctx: &Ctx) -> TestResult {
    torture_with(
        Some(Config {
            unfairness: 0,
            ..config()
        }),
        Options {
            pages: 4,
            ..opts(ctx, "fifo", 2000)
        },
    )
}

/// 2000 waiters on 4 colliding pages in one queue: the walk that wakes one
/// page's 500 visits all 2000 under the queue lock.
fn herd_wake_walk(_: &Ctx) -> TestResult {
    const N: usize = 2000;
    let t = leak_table(Config {
        table_bits: 0,
        ..config()
    });
    let r = herd::wake_walk(t, N, 4);
    println!(
        "    # pagelock-herd: {} entries in one queue, walk woke {}: unlock_page walk {} us, longest queue-lock hold seen by a prober {} us ({} probes)",
        r.queued,
        r.woken_by_walk,
        r.walk_ns / 1000,
        r.max_lock_wait_ns / 1000,
        r.prober_rounds
    );
    kassert!(r.error.is_none(), "{:?}", r.error);
    kassert_eq!(r.queued, N);
    kassert_eq!(r.unfinished, 0);
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "pagelock",
    cases: &[
        Case {
            name: "trylock_unlock",
            run: trylock_unlock,
        },
        Case {
            name: "unlock_reports_waiters",
            run: unlock_reports_waiters,
        },
        Case {
            name: "writeback_waiters",
            run: writeback_waiters,
        },
        Case {
            name: "killable_cancel",
            run: killable_cancel,
        },
        Case {
            name: "torture",
            run: torture,
        },
        Case {
            name: "torture_many_pages",
            run: torture_many_pages,
        },
        Case {
            name: "torture_one_page",
            run: torture_one_page,
        },
        Case {
            name: "torture_one_queue",
            run: torture_one_queue,
        },
        Case {
            name: "torture_killable",
            run: torture_killable,
        },
        Case {
            name: "torture_fifo",
            run: torture_fifo,
        },
        Case {
            name: "herd_wake_walk",
            run: herd_wake_walk,
        },
    ],
};
