//! The `sched` suite: threads, sleeping and waking, wait queues,
//! preemption, timed sleeps and the watchdogs.

pub mod bench;

use alloc::{format, sync::Arc, vec::Vec};
use core::{
    pin::pin,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use pagesync::{
    platform::Platform,
    waitqueue::{LockedQueue, WaitEntry, WaitKind, WaitQueueHead, autoremove_wake_function},
};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
};
use kernel::sched::{KernelPlatform, ThreadRef, spawn, timer, watchdog};
use kernel::{arch::time, println, smp::online_cpus};

type Wq = WaitQueueHead<KernelPlatform>;
const MS: u64 = 1_000_000;

/// Polls `cond` every millisecond for up to `ms`; returns whether it held.
/// Used where a woken thread must get to run: under TCG on a busy host a
/// vCPU can be descheduled for a while, so no fixed delay is long enough.
fn eventually(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = time::now_ns() + ms * MS;
    while !cond() {
        if time::now_ns() > deadline {
            return false;
        }
        timer::sleep_ns(MS);
    }
    true
}

/// Waits up to `ms` for `t` to exit.
pub fn join_timeout(t: &ThreadRef, ms: u64) -> bool {
    timer::wait_event_timeout(&t.join_wq, || t.exited.load(Ordering::Acquire), ms * MS)
}

fn other_cpu() -> usize {
    online_cpus() - 1
}

/// Two threads on different CPUs hand a token back and forth through one
/// wait queue; every hand-off needs a wake-up, so a lost one hangs (caught
/// by the join deadline).
fn ping_pong_threads(_: &Ctx) -> TestResult {
    const ROUNDS: u64 = 20_000;
    struct Shared {
        turn: AtomicU64,
        wq: Wq,
    }
    let s = Arc::new(Shared {
        turn: AtomicU64::new(0),
        wq: Wq::new(),
    });
    let mk = |parity: u64, cpu: usize| {
        let s = s.clone();
        spawn(&format!("pingpong{parity}"), Some(cpu), move || {
            for _ in 0..ROUNDS {
                s.wq.wait_event(|| s.turn.load(Ordering::Acquire) % 2 == parity);
                s.turn.fetch_add(1, Ordering::AcqRel);
                s.wq.wake_up_all();
            }
        })
        .expect("spawn")
    };
    let a = mk(0, 0);
    let b = mk(1, other_cpu());
    // "Stuck" means no hand-off at all for a long while, not "slow": under
    // TCG on a loaded host every wake-up of a halted vCPU can cost a host
    // scheduler slice, so the whole run may take minutes, while a lost
    // wake-up stops the turn counter for good.
    const STALL_MS: u64 = 30_000;
    let mut last = s.turn.load(Ordering::Acquire);
    let mut last_progress = time::now_ns();
    for t in [&a, &b] {
        while !join_timeout(t, 1_000) {
            let now = s.turn.load(Ordering::Acquire);
            if now != last {
                last = now;
                last_progress = time::now_ns();
            }
            kassert!(
                time::now_ns() - last_progress < STALL_MS * MS,
                "ping-pong stuck at turn {now}: no hand-off for {} s",
                STALL_MS / 1000
            );
        }
    }
    kassert_eq!(s.turn.load(Ordering::Relaxed), 2 * ROUNDS);
    Ok(())
}

/// 1000 threads over all CPUs sleep on one queue and are all woken, five
/// times over.
fn thousand_sleepers(_: &Ctx) -> TestResult {
    const THREADS: usize = 1000;
    const ROUNDS: u64 = 5;
    struct Shared {
        generation: AtomicU64,
        arrived: AtomicUsize,
        wq: Wq,
    }
    let s = Arc::new(Shared {
        generation: AtomicU64::new(0),
        arrived: AtomicUsize::new(0),
        wq: Wq::new(),
    });
    let mut ts = Vec::new();
    for i in 0..THREADS {
        let s = s.clone();
        let t = spawn(&format!("sleeper{i}"), None, move || {
            for r in 1..=ROUNDS {
                s.arrived.fetch_add(1, Ordering::AcqRel);
                s.wq.wait_event(|| s.generation.load(Ordering::Acquire) >= r);
            }
        });
        kassert!(t.is_ok(), "spawn {i} failed: {:?}", t.err());
        ts.push(t.unwrap());
    }
    for r in 1..=ROUNDS {
        // Wait until everybody has arrived for round r, then wake all.
        let deadline = time::now_ns() + 60_000 * MS;
        while s.arrived.load(Ordering::Acquire) < THREADS * r as usize {
            kassert!(
                time::now_ns() < deadline,
                "round {r}: only {} arrivals",
                s.arrived.load(Ordering::Relaxed)
            );
            timer::sleep_ns(MS);
        }
        s.generation.store(r, Ordering::Release);
        s.wq.wake_up_all();
    }
    for t in &ts {
        kassert!(join_timeout(t, 60_000), "thread {} never finished", t.name);
    }
    println!(
        "    # {THREADS} threads x {ROUNDS} sleeps: all woken; most threads alive at once: {}",
        kernel::sched::MAX_THREADS.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Sleeps exclusively on `wq` until a token can be taken.
fn exclusive_wait(wq: &Wq, token: &AtomicUsize) {
    let entry = pin!(WaitEntry::<KernelPlatform>::new(
        autoremove_wake_function,
        ()
    ));
    let entry = entry.as_ref();
    loop {
        // SAFETY: finish_wait runs before `entry` is dropped.
        unsafe { wq.prepare_to_wait_exclusive(entry) };
        if token
            .try_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1))
            .is_ok()
        {
            break;
        }
        KernelPlatform::sleep();
    }
    wq.finish_wait(entry);
}

/// An exclusive wake-up wakes exactly one of several exclusive waiters.
fn exclusive_wakes_one(_: &Ctx) -> TestResult {
    const N: usize = 6;
    let wq = Arc::new(Wq::new());
    let token = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut ts = Vec::new();
    for i in 0..N {
        let (wq, token, done) = (wq.clone(), token.clone(), done.clone());
        ts.push(
            spawn(&format!("excl{i}"), None, move || {
                exclusive_wait(&wq, &token);
                done.fetch_add(1, Ordering::AcqRel);
            })
            .expect("spawn"),
        );
    }
    timer::sleep_ns(200 * MS);
    for k in 1..=N {
        token.fetch_add(1, Ordering::AcqRel);
        wq.wake_up(1);
        // One waiter must get through; then give any wrongly woken second
        // waiter time to show up too.
        kassert!(
            eventually(10_000, || done.load(Ordering::Acquire) >= k),
            "wake-up {k} woke nobody"
        );
        timer::sleep_ns(100 * MS);
        kassert_eq!(done.load(Ordering::Acquire), k);
    }
    for t in &ts {
        kassert!(join_timeout(t, 10_000), "{} did not finish", t.name);
    }
    Ok(())
}

/// A queue whose entries and walks carry a number.
struct Numbered;

impl WaitKind for Numbered {
    type EntryKey = usize;
    type WalkKey = usize;
}

/// Wake function that only wakes entries whose number is the walk's.
///
/// # Safety
/// As `WakeFn`.
unsafe fn keyed_wake(
    q: &mut LockedQueue<'_, KernelPlatform, Numbered>,
    entry: *const WaitEntry<KernelPlatform, Numbered>,
    key: &mut usize,
) -> i32 {
    // SAFETY: the entry is linked (walk contract).
    unsafe {
        if (*entry).key() != *key {
            return 0;
        }
        autoremove_wake_function(q, entry, key)
    }
}

/// A keyed wake-up wakes only the entries with that key.
fn keyed_wake_matches(_: &Ctx) -> TestResult {
    const KEYS: usize = 4;
    const PER_KEY: usize = 3;
    let wq = Arc::new(WaitQueueHead::<KernelPlatform, Numbered>::new());
    let open = Arc::new([const { AtomicBool::new(false) }; KEYS]);
    let woken = Arc::new([const { AtomicUsize::new(0) }; KEYS]);
    let mut ts = Vec::new();
    for k in 0..KEYS {
        for j in 0..PER_KEY {
            let (wq, open, woken) = (wq.clone(), open.clone(), woken.clone());
            ts.push(
                spawn(&format!("key{k}.{j}"), None, move || {
                    let entry = pin!(WaitEntry::<KernelPlatform, Numbered>::new(keyed_wake, k));
                    let entry = entry.as_ref();
                    loop {
                        // SAFETY: finish_wait runs before the entry drops.
                        unsafe { wq.prepare_to_wait(entry) };
                        if open[k].load(Ordering::Acquire) {
                            break;
                        }
                        KernelPlatform::sleep();
                    }
                    wq.finish_wait(entry);
                    woken[k].fetch_add(1, Ordering::AcqRel);
                })
                .expect("spawn"),
            );
        }
    }
    timer::sleep_ns(200 * MS);
    for k in 0..KEYS {
        open[k].store(true, Ordering::Release);
        let mut key = k;
        {
            let mut q = wq.lock();
            // SAFETY: no bookmark; every entry on this queue uses keyed_wake.
            unsafe { q.wake_up_locked_key(&mut key, 0, None, 0) };
        }
        kassert!(
            eventually(10_000, || woken[k].load(Ordering::Acquire) == PER_KEY),
            "key {k}: not all woken"
        );
        timer::sleep_ns(100 * MS);
        for (kk, w) in woken.iter().enumerate() {
            let expect = if kk <= k { PER_KEY } else { 0 };
            kassert_eq!(w.load(Ordering::Acquire), expect);
        }
    }
    for t in &ts {
        kassert!(join_timeout(t, 10_000), "{} did not finish", t.name);
    }
    Ok(())
}

/// A busy thread does not starve another thread on the same CPU.
fn preemption(_: &Ctx) -> TestResult {
    let cpu = other_cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let progressed = Arc::new(AtomicU64::new(0));
    let busy = {
        let stop = stop.clone();
        spawn("busy", Some(cpu), move || {
            while !stop.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        })
        .expect("spawn")
    };
    let other = {
        let (stop, progressed) = (stop.clone(), progressed.clone());
        spawn("starved?", Some(cpu), move || {
            progressed.fetch_add(1, Ordering::AcqRel);
            stop.store(true, Ordering::Release);
        })
        .expect("spawn")
    };
    let ok = join_timeout(&other, 5_000);
    stop.store(true, Ordering::Release);
    kassert!(ok, "the second thread on cpu{cpu} never ran");
    // `stop` is set, so the busy thread ends: a plain join cannot hang.
    kernel::sched::join(&busy);
    kassert_eq!(progressed.load(Ordering::Acquire), 1);
    Ok(())
}

/// sleep_ns sleeps at least as long as asked, and not wildly longer.
fn timed_sleep(_: &Ctx) -> TestResult {
    for ms in [1u64, 20, 100] {
        let t0 = time::now_ns();
        timer::sleep_ns(ms * MS);
        let took = time::now_ns() - t0;
        kassert!(took >= ms * MS, "sleep {ms} ms took {took} ns");
        // Generous: under TCG a vCPU may wait for a host core.
        kassert!(took < ms * MS + 2_000 * MS, "sleep {ms} ms took {took} ns");
    }
    let wq = Wq::new();
    let t0 = time::now_ns();
    kassert!(
        !timer::wait_event_timeout(&wq, || false, 50 * MS),
        "nothing can make false true"
    );
    kassert!(time::now_ns() - t0 >= 50 * MS);
    Ok(())
}

/// A thread that is never woken is reported by the hung-task watchdog.
fn hung_task_reported(_: &Ctx) -> TestResult {
    let old = watchdog::HUNG_LIMIT_NS.swap(300 * MS, Ordering::Relaxed);
    let before = watchdog::HUNG_REPORTS.load(Ordering::Relaxed);
    let wq = Arc::new(Wq::new());
    let release = Arc::new(AtomicBool::new(false));
    let t = {
        let (wq, release) = (wq.clone(), release.clone());
        spawn("forgotten", None, move || {
            kernel::sched::thread::set_wait_desc(
                &kernel::sched::current(),
                &"a wait queue nobody wakes (test)",
            );
            wq.wait_event(|| release.load(Ordering::Acquire));
        })
        .expect("spawn")
    };
    timer::sleep_ns(1500 * MS);
    let reports = watchdog::HUNG_REPORTS.load(Ordering::Relaxed) - before;
    release.store(true, Ordering::Release);
    wq.wake_up_all();
    let joined = join_timeout(&t, 5_000);
    watchdog::HUNG_LIMIT_NS.store(old, Ordering::Relaxed);
    kassert_eq!(reports, 1);
    kassert!(joined);
    Ok(())
}

/// A CPU spinning with interrupts off is found (NMI from its neighbour);
/// one spinning with preemption off while others wait is a soft lockup.
/// A thread that runs alone on its CPU for longer than the soft-lockup
/// limit has stalled nobody; a thread queued behind it at the end must not
/// turn that solo run into a soft lockup. (It did: the stall was counted
/// from the last switch, and the check on the queued thread's reschedule
/// IPI saw a waiter and a long stretch. CI once failed
/// `ping_pong_threads` that way, after `main` had run the `mm` cases alone
/// for 10 s.)
fn waiter_after_a_long_solo_run(_: &Ctx) -> TestResult {
    if online_cpus() < 2 {
        return Err(TestError::Skip("needs two CPUs"));
    }
    let cpu = other_cpu();
    let old = watchdog::LOCKUP_LIMIT_NS.swap(300 * MS, Ordering::Relaxed);
    let soft0 = watchdog::SOFT_LOCKUPS.load(Ordering::Relaxed);
    let solo = spawn("solo-runner", Some(cpu), || time::delay_us(900_000)).expect("spawn");
    // Well past the limit into the solo run, queue a thread behind it.
    timer::sleep_ns(600 * MS);
    let late = spawn("queued-late", Some(cpu), || {}).expect("spawn");
    let ok = join_timeout(&solo, 10_000) && join_timeout(&late, 10_000);
    watchdog::LOCKUP_LIMIT_NS.store(old, Ordering::Relaxed);
    kassert!(ok, "threads did not finish");
    let soft = watchdog::SOFT_LOCKUPS.load(Ordering::Relaxed) - soft0;
    kassert!(
        soft == 0,
        "a solo run followed by a queued thread was reported as {soft} soft lockup(s)"
    );
    Ok(())
}

fn lockups_reported(_: &Ctx) -> TestResult {
    if online_cpus() < 2 {
        return Err(TestError::Skip("needs two CPUs"));
    }
    let cpu = other_cpu();
    let old = watchdog::LOCKUP_LIMIT_NS.swap(300 * MS, Ordering::Relaxed);
    let (hard0, soft0) = (
        watchdog::HARD_LOCKUPS.load(Ordering::Relaxed),
        watchdog::SOFT_LOCKUPS.load(Ordering::Relaxed),
    );
    let t = spawn("irqs-off-spinner", Some(cpu), move || {
        x86_64::instructions::interrupts::without_interrupts(|| time::delay_us(1_500_000));
    })
    .expect("spawn");
    let ok1 = join_timeout(&t, 10_000);
    let t = spawn("preempt-off-spinner", Some(cpu), move || {
        kernel::sched::preempt_disable();
        time::delay_us(1_500_000);
        kernel::sched::preempt_enable();
    })
    .expect("spawn");
    let waiter = spawn("waiting-behind", Some(cpu), || {}).expect("spawn");
    let ok2 = join_timeout(&t, 10_000) && join_timeout(&waiter, 10_000);
    watchdog::LOCKUP_LIMIT_NS.store(old, Ordering::Relaxed);
    kassert!(ok1 && ok2, "spinner threads did not finish");
    kassert!(
        watchdog::HARD_LOCKUPS.load(Ordering::Relaxed) > hard0,
        "hard lockup on cpu{cpu} not reported"
    );
    kassert!(
        watchdog::SOFT_LOCKUPS.load(Ordering::Relaxed) > soft0,
        "soft lockup on cpu{cpu} not reported"
    );
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "sched",
    cases: &[
        Case {
            name: "ping_pong_threads",
            run: ping_pong_threads,
        },
        Case {
            name: "thousand_sleepers",
            run: thousand_sleepers,
        },
        Case {
            name: "exclusive_wakes_one",
            run: exclusive_wakes_one,
        },
        Case {
            name: "keyed_wake_matches",
            run: keyed_wake_matches,
        },
        Case {
            name: "preemption",
            run: preemption,
        },
        Case {
            name: "timed_sleep",
            run: timed_sleep,
        },
        Case {
            name: "hung_task_reported",
            run: hung_task_reported,
        },
        Case {
            name: "waiter_after_a_long_solo_run",
            run: waiter_after_a_long_solo_run,
        },
        Case {
            name: "lockups_reported",
            run: lockups_reported,
        },
    ],
    expect_log: &[
        (
            "hung_task_reported",
            &["watchdog: hung task: thread 'forgotten'"],
        ),
        (
            "lockups_reported",
            &[
                "watchdog: soft lockup on cpu",
                "watchdog: hard lockup on cpu",
            ],
        ),
    ],
    ..Suite::DEFAULTS
};
