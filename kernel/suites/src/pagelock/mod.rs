//! The `pagelock` KTAP suite: unit checks of the API on real frame-array
//! descriptors, short torture runs of the protocol in several shapes, and
//! a thundering-herd walk with thousands of waiters in one queue.
//!
//! The torture cases build on the boot configuration ([`super::config`]),
//! changing one knob each, so `bug=<variant>` reaches all of them; the
//! host test `tests/tests/pagelock.rs` runs `pagelock.torture` once per
//! known-bad variant and expects FAILURE.

use alloc::{boxed::Box, format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pagesync::{
    Config, Interrupted, Page, PutOutcome, WriteResult,
    flags::{PG_LOCKED, PG_WAITERS, PG_WRITEBACK, mask},
};

pub mod bench;
pub mod herd;
pub mod lockup;
pub mod torture;

use self::torture::{Options, Target};
use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestResult},
    sched::join_timeout,
};
use kernel::pagelock::{Table, config, leak_table, table};
use kernel::{
    arch::time,
    mm::{AllocFlags, Frame, alloc_pages},
    println,
    sched::{self, ThreadRef, timer},
};

const MS: u64 = 1_000_000;

fn frame() -> Frame {
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
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, mask(PG_LOCKED));
    t.unlock_page(p);
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, 0);
    t.lock_page(p);
    t.unlock_page(p);
    kassert_eq!(p.flags().load(Ordering::Relaxed), 0);
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
            // SAFETY: `private` is this test's own descriptor.
            unsafe { private.flags().store_unshared(v) };
            kassert!(
                form(private.flags(), 1 << PG_LOCKED) == waiters,
                "{name}: waiters={waiters}"
            );
            kassert_eq!(
                private.flags().load(Ordering::Relaxed),
                v & !mask(PG_LOCKED)
            );
        }
    }
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    let got = Arc::new(AtomicBool::new(false));
    let w = {
        let (got, f) = (got.clone(), f.clone());
        spawn_on("pl-waiter", move || {
            kernel::pagelock::lock_page(&f);
            got.store(true, Ordering::Release);
            kernel::pagelock::unlock_page(&f);
        })
    };
    kassert!(wait_queued(t, p, 1), "waiter never queued");
    kassert!(
        p.flags().test(PG_WAITERS),
        "PG_waiters clear with a sleeper queued"
    );
    kassert!(!got.load(Ordering::Acquire));
    t.unlock_page(p);
    kassert!(join_timeout(&w, 5_000), "waiter not woken by unlock_page");
    kassert!(got.load(Ordering::Acquire));
    kassert_eq!(t.waiters_queued(p), 0);
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, 0);
    Ok(())
}

/// wait_on_page_bit(PG_writeback) sleepers are woken by the end of
/// writeback; a lock waiter on the same page is not (key includes the bit).
fn writeback_waiters(_: &Ctx) -> TestResult {
    const N: usize = 3;
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    let _ = t.start_page_writeback(p);
    let done = Arc::new(AtomicUsize::new(0));
    let mut ws = Vec::new();
    for i in 0..N {
        let (done, f) = (done.clone(), f.clone());
        ws.push(spawn_on(&format!("pl-wb{i}"), move || {
            table().wait_on_page_writeback(&f);
            done.fetch_add(1, Ordering::AcqRel);
        }));
    }
    let locker = {
        let f = f.clone();
        spawn_on("pl-locker", move || {
            kernel::pagelock::lock_page(&f);
            kernel::pagelock::unlock_page(&f);
        })
    };
    kassert!(
        wait_queued(t, p, N + 1),
        "waiters never queued ({} queued)",
        t.waiters_queued(p)
    );
    kassert_eq!(done.load(Ordering::Acquire), 0);
    kassert_eq!(
        t.end_page_writeback(p, WriteResult::Written),
        PutOutcome::StillReferenced
    );
    for w in &ws {
        kassert!(join_timeout(w, 5_000), "writeback waiter not woken");
    }
    kassert_eq!(done.load(Ordering::Acquire), N);
    kassert_eq!(t.waiters_queued(p), 1);
    kassert!(
        p.flags().test(PG_WAITERS),
        "lock waiter remains: PG_waiters must stay"
    );
    kassert!(!p.flags().test(PG_WRITEBACK));
    t.unlock_page(p);
    kassert!(join_timeout(&locker, 5_000), "lock waiter not woken");
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, 0);
    Ok(())
}

/// Ending writeback while the only waiter queued for the page waits for
/// its *lock* must leave PG_waiters set: the walk for PG_writeback wakes
/// nobody, but it meets an entry of this page (another bit), so the bit
/// stays, and the unlock after it still finds PG_waiters and wakes the
/// lock waiter. (Clearing it there is the hang of `bug=clear-waiters-early`
/// in this shape; in debug builds pagesync's invariant check in the walk
/// stops the kernel first.)
fn end_writeback_keeps_lock_waiters(_: &Ctx) -> TestResult {
    let f = frame();
    let (t, p) = (table(), f.page());
    kassert!(t.trylock_page(p));
    let _ = t.start_page_writeback(p);
    let locker = {
        let f = f.clone();
        spawn_on("pl-wb-locker", move || {
            kernel::pagelock::lock_page(&f);
            kernel::pagelock::unlock_page(&f);
        })
    };
    kassert!(wait_queued(t, p, 1), "lock waiter never queued");
    kassert_eq!(
        t.end_page_writeback(p, WriteResult::Written),
        PutOutcome::StillReferenced
    );
    kassert!(!p.flags().test(PG_WRITEBACK));
    kassert!(
        p.flags().test(PG_WAITERS),
        "end of writeback cleared PG_waiters with a lock waiter of the page queued"
    );
    kassert_eq!(t.waiters_queued(p), 1);
    t.unlock_page(p);
    kassert!(join_timeout(&locker, 5_000), "lock waiter not woken");
    kassert_eq!(t.waiters_queued(p), 0);
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, 0);
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
        let (result, f) = (result.clone(), f.clone());
        spawn_on("pl-killable", move || {
            let r = kernel::pagelock::lock_page_killable(&f);
            result.store(if r.is_ok() { 1 } else { 2 }, Ordering::Release);
            if r.is_ok() {
                kernel::pagelock::unlock_page(&f);
            }
        })
    };
    let plain = {
        let f = f.clone();
        spawn_on("pl-plain", move || {
            kernel::pagelock::lock_page(&f);
            kernel::pagelock::unlock_page(&f);
        })
    };
    kassert!(wait_queued(t, p, 2), "waiters never queued");
    w.cancel.store(true, Ordering::SeqCst);
    sched::wake(&w);
    kassert!(join_timeout(&w, 5_000), "cancelled waiter did not return");
    kassert_eq!(result.load(Ordering::Acquire), 2);
    kassert_eq!(t.waiters_queued(p), 1);
    kassert!(
        p.flags().test(PG_LOCKED),
        "the owner's lock must survive a waiter's cancel"
    );
    t.unlock_page(p);
    kassert!(join_timeout(&plain, 5_000), "remaining waiter not woken");
    kassert_eq!(p.flags().load(Ordering::Relaxed) & 0xff, 0);
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

/// Hugh's worry in the first seed: sleeping exclusive waiters, shared
/// writeback waiters and asynchronous (callback) lockers on one colliding
/// queue (`bits=0`), with hand-off. Rounds: main holds the locks of a few
/// pages and keeps others under writeback; sleeping lockers, writeback
/// waiters and async lockers queue; main unlocks and ends writeback; the
/// async lockers' work (on the page-cache worker) claims the owner word,
/// then unlocks. Every locker must get its turn alone, nobody is left
/// asleep.
fn async_waiters_mixed(_: &Ctx) -> TestResult {
    const ROUNDS: usize = 50;
    const LOCKED: usize = 3;
    let t = leak_table(Config {
        table_bits: 0,
        ..config()
    });
    let pages: Vec<Frame> = (0..LOCKED + 2).map(|_| frame()).collect();
    let owner_failures = Arc::new(AtomicUsize::new(0));
    let async_done = Arc::new(AtomicUsize::new(0));
    let claim = |p: &Page, me: u64| {
        p.lock_owner()
            .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    };
    for round in 0..ROUNDS {
        for p in &pages[..LOCKED] {
            t.lock_page(p);
        }
        for p in &pages[LOCKED..] {
            t.lock_page(p);
            let _ = t.start_page_writeback(p);
            t.unlock_page(p);
        }
        let mut threads = Vec::new();
        for (k, p) in pages[..LOCKED].iter().enumerate() {
            let (p, fails) = (p.clone(), owner_failures.clone());
            threads.push(spawn_on(&format!("mix-lock{k}"), move || {
                t.lock_page(&p);
                if !claim(&p, 1 + k as u64) {
                    fails.fetch_add(1, Ordering::Relaxed);
                }
                p.lock_owner().store(0, Ordering::Relaxed);
                t.unlock_page(&p);
            }));
        }
        for (k, p) in pages[LOCKED..].iter().enumerate() {
            let p = p.clone();
            threads.push(spawn_on(&format!("mix-wb{k}"), move || {
                t.wait_on_page_writeback(&p);
            }));
        }
        for (k, p) in pages[..LOCKED].iter().enumerate() {
            let (p2, fails, done) = (p.clone(), owner_failures.clone(), async_done.clone());
            let me = 100 + k as u64;
            let got = t.lock_page_async(
                p,
                Box::new(move |why, held| {
                    assert_eq!(why, pagesync::AsyncWake::Locked);
                    let held = kernel::mm::Frame::from_page_ref(held);
                    kernel::pagecache::worker::queue(Box::new(move || {
                        drop(held);
                        if !claim(&p2, me) {
                            fails.fetch_add(1, Ordering::Relaxed);
                        }
                        p2.lock_owner().store(0, Ordering::Relaxed);
                        t.unlock_page(&p2);
                        done.fetch_add(1, Ordering::AcqRel);
                    }))
                }),
            );
            kassert!(!got, "round {}: the async locker got a held lock", round);
        }
        for p in &pages[..LOCKED] {
            t.unlock_page(p);
        }
        for p in &pages[LOCKED..] {
            let _ = t.end_page_writeback(p, WriteResult::Written);
        }
        for th in &threads {
            kassert!(
                join_timeout(th, 10_000),
                "round {}: {} left asleep",
                round,
                th.name
            );
        }
        let want = (round + 1) * LOCKED;
        let deadline = time::now_ns() + 10_000 * MS;
        while async_done.load(Ordering::Acquire) < want && time::now_ns() < deadline {
            timer::sleep_ns(MS);
        }
        kassert_eq!(async_done.load(Ordering::Acquire), want);
    }
    kassert_eq!(owner_failures.load(Ordering::Relaxed), 0);
    for p in &pages {
        kassert_eq!(p.flags().load(Ordering::Relaxed) & 0x7f, 0);
    }
    Ok(())
}

/// A torture case's own shape, then the boot knobs on top: every torture
/// case honours `torture_threads=` (per CPU), `torture_pages=` and
/// `torture_ms=` (the case's whole run time).
fn opts(ctx: &Ctx, base: Options) -> Options {
    let tp = ctx.params.torture;
    Options {
        duration_ms: tp.ms.unwrap_or(base.duration_ms),
        threads_per_cpu: tp
            .threads_per_cpu
            .map_or(base.threads_per_cpu, |n| n as usize),
        pages: tp.pages.map_or(base.pages, |n| n as usize),
        seed: ctx.params.seed,
        ..base
    }
}

/// A case's shape: `Options::DEFAULT` with a name, a length and a page
/// count.
const fn shape(name: &'static str, duration_ms: u64, pages: usize) -> Options {
    Options {
        name,
        duration_ms,
        pages,
        ..Options::DEFAULT
    }
}

/// The boot protocol: the case the known-bad host tests run. Half the time
/// in lockstep with one thread per CPU on one page (every round all CPUs
/// race for the same lock, then quiesce: the sharpest lost wake-up
/// detector), half free-running, 4 threads per CPU on 16 pages, with
/// pauses. The knobs override both halves (`torture_ms=` is the total).
fn torture(ctx: &Ctx) -> TestResult {
    let base = opts(ctx, shape("torture", 4000, 16));
    let half = base.duration_ms.div_ceil(2);
    let tp = ctx.params.torture;
    let lockstep = Options {
        name: "torture_lockstep",
        lockstep: true,
        stutter_ms: 0,
        threads_per_cpu: tp.threads_per_cpu.map_or(1, |n| n as usize),
        pages: tp.pages.map_or(1, |n| n as usize),
        hold_yield_one_in: 0,
        max_hold_spins: 4,
        duration_ms: half,
        ..base
    };
    torture_with(None, lockstep)?;
    torture_with(
        None,
        Options {
            duration_ms: half,
            ..base
        },
    )
}

fn torture_many_pages(ctx: &Ctx) -> TestResult {
    torture_with(None, opts(ctx, shape("many_pages", 2000, 256)))
}

fn torture_one_page(ctx: &Ctx) -> TestResult {
    torture_with(None, opts(ctx, shape("one_page", 2000, 1)))
}

/// bits=0: every page's waiters share one queue (collisions everywhere).
fn torture_one_queue(ctx: &Ctx) -> TestResult {
    torture_with(
        Some(Config {
            table_bits: 0,
            ..config()
        }),
        opts(ctx, shape("one_queue", 2000, 16)),
    )
}

/// Half the threads are killable and get cancelled several times a tick.
fn torture_killable(ctx: &Ctx) -> TestResult {
    torture_with(
        None,
        opts(
            ctx,
            Options {
                killable_one_in: 2,
                cancels_per_tick: 4,
                ..shape("killable", 2000, 4)
            },
        ),
    )
}

/// unfairness=0: every contended acquisition is a FIFO hand-off.
fn torture_fifo(ctx: &Ctx) -> TestResult {
    torture_with(
        Some(Config {
            unfairness: 0,
            ..config()
        }),
        opts(ctx, shape("fifo", 2000, 4)),
    )
}

/// Every correct registered protocol (`pagesync::Protocol`), whatever the
/// boot's `protocol=`: in lockstep on one page, then free-running on one
/// colliding queue (`bits=0`) with half the threads killable and cancelled
/// several times a tick. A protocol added to the registry is tortured here
/// with no other edit; a known-bad one is left to the checks that must
/// catch it (`tests/loom_protocols.rs`, `protocol=` boots).
fn torture_protocols(ctx: &Ctx) -> TestResult {
    for p in pagesync::Protocol::ALL {
        if p.is_known_bad() {
            println!("    # pagelock: protocol {p} is known-bad: not tortured here");
            continue;
        }
        let cfg = Config {
            protocol: p,
            ..config()
        };
        let base = opts(ctx, shape("protocols", 600, 1));
        torture_with(
            Some(cfg),
            Options {
                lockstep: true,
                stutter_ms: 0,
                threads_per_cpu: 1,
                hold_yield_one_in: 0,
                max_hold_spins: 4,
                ..base
            },
        )?;
        torture_with(
            Some(Config {
                table_bits: 0,
                ..cfg
            }),
            opts(
                ctx,
                Options {
                    killable_one_in: 2,
                    cancels_per_tick: 4,
                    ..shape("protocols", 900, 16)
                },
            ),
        )?;
        println!("    # pagelock: protocol {p}: torture passed");
    }
    Ok(())
}

fn sleeping(t: &ThreadRef) -> bool {
    t.state.load(Ordering::Acquire) == sched::SLEEPING
}

/// Spawns a thread that runs `wait` on its own reference to `f` and
/// records 1 for Ok, 2 for Interrupted.
fn spawn_waiter(
    name: &str,
    f: &Frame,
    wait: impl FnOnce(&Frame) -> Result<(), Interrupted> + Send + 'static,
) -> (ThreadRef, Arc<AtomicUsize>) {
    let (f, result) = (f.clone(), Arc::new(AtomicUsize::new(0)));
    let r = result.clone();
    let t = spawn_on(name, move || {
        let v = if wait(&f).is_ok() { 1 } else { 2 };
        r.store(v, Ordering::Release);
    });
    (t, result)
}

/// The killable shared waits (`wait_on_page_locked_killable`,
/// `wait_on_page_writeback_killable`) and the generic `wait_event_killable`:
/// a cancelled waiter returns Interrupted and leaves the queue, an
/// uncancelled one returns Ok once the bit clears (or the event happens).
fn killable_shared_waits(_: &Ctx) -> TestResult {
    let f = frame();
    let t = table();
    kassert!(t.trylock_page(&f));
    let _ = t.start_page_writeback(&f);
    let (lk_cancel, lk_cancel_r) = spawn_waiter("pl-lk-c", &f, |f| {
        kernel::pagelock::wait_on_page_locked_killable(f)
    });
    let (lk, lk_r) = spawn_waiter("pl-lk", &f, |f| {
        kernel::pagelock::wait_on_page_locked_killable(f)
    });
    let (wb_cancel, wb_cancel_r) = spawn_waiter("pl-wb-c", &f, |f| {
        kernel::pagelock::wait_on_page_writeback_killable(f)
    });
    let (wb, wb_r) = spawn_waiter("pl-wb", &f, |f| {
        kernel::pagelock::wait_on_page_writeback_killable(f)
    });
    kassert!(wait_queued(t, &f, 4), "waiters never queued");
    for w in [&lk_cancel, &wb_cancel] {
        w.cancel.store(true, Ordering::SeqCst);
        sched::wake(w);
        kassert!(join_timeout(w, 5_000), "cancelled waiter did not return");
    }
    kassert_eq!(lk_cancel_r.load(Ordering::Acquire), 2);
    kassert_eq!(wb_cancel_r.load(Ordering::Acquire), 2);
    kassert_eq!(t.waiters_queued(&f), 2);
    kassert_eq!(
        t.end_page_writeback(&f, WriteResult::Written),
        PutOutcome::StillReferenced
    );
    kassert!(join_timeout(&wb, 5_000), "writeback waiter not woken");
    kassert_eq!(wb_r.load(Ordering::Acquire), 1);
    t.unlock_page(&f);
    kassert!(join_timeout(&lk, 5_000), "lock waiter not woken");
    kassert_eq!(lk_r.load(Ordering::Acquire), 1);
    kassert_eq!(t.waiters_queued(&f), 0);

    // wait_event_killable on a plain queue: cancel wins over a false
    // condition; a true condition wins.
    let wq = Arc::new(kernel::sched::thread::WaitQueue::new());
    let flag = Arc::new(AtomicBool::new(false));
    let spawn_ev = |name: &str| {
        let (wq, flag, r) = (wq.clone(), flag.clone(), Arc::new(AtomicUsize::new(0)));
        let rr = r.clone();
        let t = spawn_on(name, move || {
            let v = wq.wait_event_killable(|| flag.load(Ordering::Acquire));
            rr.store(if v.is_ok() { 1 } else { 2 }, Ordering::Release);
        });
        (t, r)
    };
    let (ev_cancel, ev_cancel_r) = spawn_ev("pl-ev-c");
    let (ev, ev_r) = spawn_ev("pl-ev");
    let deadline = time::now_ns() + 5_000 * MS;
    while !(sleeping(&ev) && sleeping(&ev_cancel)) && time::now_ns() < deadline {
        timer::sleep_ns(MS);
    }
    ev_cancel.cancel.store(true, Ordering::SeqCst);
    sched::wake(&ev_cancel);
    kassert!(
        join_timeout(&ev_cancel, 5_000),
        "cancelled wait_event did not return"
    );
    kassert_eq!(ev_cancel_r.load(Ordering::Acquire), 2);
    flag.store(true, Ordering::Release);
    wq.wake_up_all();
    kassert!(join_timeout(&ev, 5_000), "wait_event not woken");
    kassert_eq!(ev_r.load(Ordering::Acquire), 1);
    Ok(())
}

/// `put_and_wait_on_page_locked` (Linux 9a1ea439b16b): the waiter's
/// reference is gone while it sleeps, so a migration-style `ref_freeze`
/// of the owner's one reference succeeds; unlocking wakes the waiter,
/// which never touches the page again. (Were the waiter's reference the
/// last, its put would free the frame through `Frame::put_via`; the lock
/// holder's own reference makes that impossible while the page is
/// locked.)
fn put_and_wait_drops_reference(_: &Ctx) -> TestResult {
    let f = frame();
    let t = table();
    kassert!(t.trylock_page(&f));
    let (w, r) = {
        let g = f.clone();
        let r = Arc::new(AtomicUsize::new(0));
        let rr = r.clone();
        let w = spawn_on("pl-putwait", move || {
            let v = kernel::pagelock::put_and_wait_on_page_locked(g, false);
            rr.store(if v.is_ok() { 1 } else { 2 }, Ordering::Release);
        });
        (w, r)
    };
    kassert!(wait_queued(t, &f, 1), "waiter never queued");
    let deadline = time::now_ns() + 5_000 * MS;
    while f.ref_count() != 1 && time::now_ns() < deadline {
        timer::sleep_ns(MS);
    }
    kassert_eq!(f.ref_count(), 1);
    kassert!(f.ref_freeze(1), "the sleeper still holds a reference");
    f.ref_unfreeze(1);
    t.unlock_page(&f);
    kassert!(join_timeout(&w, 5_000), "put-and-wait waiter not woken");
    kassert_eq!(r.load(Ordering::Acquire), 1);

    Ok(())
}

/// 2000 waiters on 4 colliding pages in one queue: the walk that wakes one
/// page's 500 visits all 2000 under the queue lock.
fn herd_wake_walk(_: &Ctx) -> TestResult {
    const N: usize = 2000;
    let t = leak_table(Config {
        table_bits: 0,
        ..config()
    });
    let r = herd::wake_walk(t, N, 4, herd::Probe::QueueLock, None);
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
            name: "end_writeback_keeps_lock_waiters",
            run: end_writeback_keeps_lock_waiters,
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
            name: "torture_protocols",
            run: torture_protocols,
        },
        Case {
            name: "herd_wake_walk",
            run: herd_wake_walk,
        },
        Case {
            name: "async_waiters_mixed",
            run: async_waiters_mixed,
        },
        Case {
            name: "walk_lockup",
            run: lockup::walk_lockup,
        },
        Case {
            name: "killable_shared_waits",
            run: killable_shared_waits,
        },
        Case {
            name: "put_and_wait_drops_reference",
            run: put_and_wait_drops_reference,
        },
    ],
    accounted: true,
    ..Suite::DEFAULTS
};
