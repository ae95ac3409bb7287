//! Thundering herds: how long a wake walk holds the queue lock when
//! thousands of waiters share one wait queue.
//!
//! Mental model: `n` threads sleep in `wait_on_page_locked` on `pages`
//! locked pages that all hash to one queue (a 1-queue table), so the queue
//! holds `n` entries. Unlocking page 0 walks every entry (waking the `n /
//! pages` of page 0 and skipping the colliding rest) under the queue lock,
//! or, with bookmarks, in chunks of 64 with the lock dropped in between.
//!
//! pagesync has no hook inside its spin lock, so two outside measures:
//! * `walk_ns`: the `unlock_page` call that does the walk, start to end
//!   (with bookmarks this includes the gaps where the lock was free);
//! * `max_lock_wait_ns`: a prober thread on another CPU takes and drops
//!   the same queue lock in a loop during the walk; its longest wait to get
//!   it is the longest stretch somebody else held it (with bookmarks, one
//!   chunk; without, the whole walk). Needs two CPUs running at once.
//!
//! Without the prober ([`Probe::None`]) the waiters use every CPU, and the
//! walk is the only long stretch with interrupts off: what the lockup
//! watchdog sees in `super::lockup`.

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::sched::join_timeout;
use kernel::pagelock::Table;
use kernel::{
    arch::time,
    mm::{AllocFlags, Frame, alloc_pages},
    sched::{self, timer, watchdog},
    smp::online_cpus,
};

const MS: u64 = 1_000_000;

#[derive(Debug, Default)]
pub struct HerdReport {
    /// Entries in the queue when the walk began.
    pub queued: usize,
    /// Waiters of page 0 (woken by the measured walk).
    pub woken_by_walk: usize,
    pub walk_ns: u64,
    /// 0 when there was no second CPU for the prober.
    pub max_lock_wait_ns: u64,
    pub prober_rounds: u64,
    /// Threads that did not finish (a failure).
    pub unfinished: usize,
    pub error: Option<&'static str>,
    /// One `waiters_queued` pass over the full queue just before the walk
    /// (an O(n) walk under the queue lock that wakes nobody: what a debug
    /// build's invariant check adds to every wake).
    pub scan_ns: u64,
    /// Lockup reports between the unlock and the end of the walk window
    /// (see [`wake_walk`]'s `watch`).
    pub soft_lockups: u64,
    pub hard_lockups: u64,
    /// Watched walks: from the unlock until the first waiter it woke on the
    /// walker's own CPU ran, i.e. how long the walker kept its CPU from the
    /// threads it made runnable (what the soft-lockup watchdog judges);
    /// `None` when no such waiter exists.
    pub cpu_held_ns: Option<u64>,
    /// Watched walks: the longest stretch the walker's CPU went without a
    /// switch while threads waited for it, as the watchdog's ticks saw it.
    pub longest_stall_ns: u64,
}

/// Whether a prober thread measures the queue-lock hold (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A prober on CPU 1; waiters stay off it.
    QueueLock,
    /// No prober; waiters on every CPU.
    None,
}

/// Free memory bounds a herd: a thread costs a 16 KiB stack plus a guard
/// page, and stacks are cached after use, so keep the herd within a third
/// of free memory.
pub fn max_waiters() -> usize {
    kernel::mm::page_alloc::free_frames() as usize * 4096 / 3 / (20 * 1024)
}

/// The lockup threshold outside a watched walk: Linux's `watchdog_thresh`.
const SETUP_LOCKUP_LIMIT_NS: u64 = 10_000 * MS;
/// The hung-task limit during a watched herd: Linux's 120 s.
const SETUP_HUNG_LIMIT_NS: u64 = 120_000 * MS;

/// Runs one herd of `n` waiters over `pages` pages on `table` (colliding in
/// one queue when `table_bits == 0`).
///
/// With `watch = Some(limit_ns)`, the lockup watchdog's threshold is
/// `limit_ns` only from just before the measured unlock until the waiters
/// it woke have run (plus one threshold), and 10 s while the herd is set up
/// and torn down: spawning and counting thousands of threads in one queue
/// has long stretches of its own, which are not the walk. The reports in
/// that window are counted in the report.
pub fn wake_walk(
    table: &'static Table,
    n: usize,
    pages: usize,
    probe: Probe,
    watch: Option<u64>,
) -> HerdReport {
    // Setting up tens of thousands of sleepers takes longer than the
    // hung-task limit; they are not hung.
    let restore = watch.map(|_| {
        (
            watchdog::LOCKUP_LIMIT_NS.swap(SETUP_LOCKUP_LIMIT_NS, Ordering::Relaxed),
            watchdog::HUNG_LIMIT_NS.swap(SETUP_HUNG_LIMIT_NS, Ordering::Relaxed),
        )
    });
    let mut r = HerdReport::default();
    let mut frames = Vec::new();
    for _ in 0..pages {
        let Some(f) = alloc_pages(0, AllocFlags::ZERO) else {
            r.error = Some("out of frames");
            return r;
        };
        frames.push(f);
    }
    let pg: Arc<Vec<Frame>> = Arc::new(core::mem::take(&mut frames));
    for p in pg.iter() {
        assert!(table.trylock_page(p), "fresh page already locked");
    }
    let cpus = online_cpus();
    // Waiters stay off the prober's CPU 1, so wake-ups there cannot switch
    // the prober out while it waits for the lock.
    let waiter_cpus: Vec<usize> = (0..cpus)
        .filter(|&c| c != 1 || cpus == 1 || probe == Probe::None)
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    // When the first waiter woken by the walk ran on the walker's CPU.
    let walker_cpu = kernel::arch::percpu::cpu_index();
    let first_here = Arc::new(AtomicU64::new(u64::MAX));
    let mut ts = Vec::new();
    for k in 0..n {
        let (pg, done, first_here) = (pg.clone(), done.clone(), first_here.clone());
        let cpu = waiter_cpus[k % waiter_cpus.len()];
        match sched::spawn(&format!("herd{k}"), Some(cpu), move || {
            table.wait_on_page_locked(&pg[k % pg.len()]);
            if cpu == walker_cpu && k % pg.len() == 0 {
                first_here.fetch_min(time::now_ns(), Ordering::Relaxed);
            }
            done.fetch_add(1, Ordering::AcqRel);
        }) {
            Ok(t) => ts.push(t),
            Err(_) => break,
        }
    }
    let n = ts.len();
    // All entries sit in one queue; counting page 0's is enough per pass
    // since `waiters_queued` counts per page.
    let deadline = time::now_ns() + (20_000 + n as u64 * 5) * MS;
    loop {
        let q: usize = pg.iter().map(|p| table.waiters_queued(p)).sum();
        if q == n {
            r.queued = q;
            break;
        }
        if time::now_ns() > deadline {
            r.error = Some("waiters never all queued");
            r.queued = q;
            break;
        }
        timer::sleep_ns(10 * MS);
    }
    r.woken_by_walk = (0..n).filter(|k| k % pg.len() == 0).count();
    let stop = Arc::new(AtomicBool::new(false));
    let max_wait = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let prober = (cpus > 1 && probe == Probe::QueueLock).then(|| {
        let (stop, max_wait, rounds, started, p0) = (
            stop.clone(),
            max_wait.clone(),
            rounds.clone(),
            started.clone(),
            pg[0].clone(),
        );
        sched::spawn("herd-prober", Some(1), move || {
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Acquire) {
                let t0 = time::rdtsc();
                let g = table.queue(&p0).lock();
                let waited = time::rdtsc() - t0;
                drop(g);
                max_wait.fetch_max(waited, Ordering::Relaxed);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
        .expect("spawn prober")
    });
    while prober.is_some() && !started.load(Ordering::Acquire) {
        sched::yield_now();
    }
    if prober.is_some() {
        // Let the prober settle, then forget its warm-up maximum.
        time::delay_us(2000);
        max_wait.store(0, Ordering::Relaxed);
    }
    let t0 = time::rdtsc();
    let _ = table.waiters_queued(&pg[0]);
    r.scan_ns = time::cycles_to_ns(time::rdtsc() - t0);
    let lockups = || {
        (
            watchdog::SOFT_LOCKUPS.load(Ordering::Relaxed),
            watchdog::HARD_LOCKUPS.load(Ordering::Relaxed),
        )
    };
    let before = lockups();
    if let Some(limit) = watch {
        watchdog::LOCKUP_LIMIT_NS.store(limit, Ordering::Relaxed);
        watchdog::reset_longest_stall();
    }
    // With the prober, the call is timed with preemption off, so that
    // woken waiters of this CPU do not run inside the measurement (the
    // tick would switch to them as soon as interrupts are back on).
    // Watched, the walk runs as any unlock does.
    let t0 = time::rdtsc();
    let t0_ns = time::now_ns();
    if prober.is_some() {
        sched::preempt_disable();
    }
    table.unlock_page(&pg[0]);
    if prober.is_some() {
        sched::preempt_enable();
    }
    r.walk_ns = time::cycles_to_ns(time::rdtsc() - t0);
    time::delay_us(1000);
    stop.store(true, Ordering::Release);
    if let Some(limit) = watch {
        // The walk's waiters run (and the watchdogs tick) meanwhile.
        let deadline = time::now_ns() + 10_000 * MS;
        while done.load(Ordering::Acquire) < r.woken_by_walk && time::now_ns() < deadline {
            timer::sleep_ns(MS);
        }
        timer::sleep_ns(limit + 20 * MS);
        let after = lockups();
        (r.soft_lockups, r.hard_lockups) = (after.0 - before.0, after.1 - before.1);
        r.longest_stall_ns = watchdog::longest_stall_ns(walker_cpu);
        let first = first_here.load(Ordering::Relaxed);
        r.cpu_held_ns = (first != u64::MAX).then(|| first.saturating_sub(t0_ns));
        watchdog::LOCKUP_LIMIT_NS.store(SETUP_LOCKUP_LIMIT_NS, Ordering::Relaxed);
    }
    r.max_lock_wait_ns = time::cycles_to_ns(max_wait.load(Ordering::Relaxed));
    r.prober_rounds = rounds.load(Ordering::Relaxed);
    if let Some(p) = &prober {
        join_timeout(p, 5_000);
    }
    for p in pg.iter().skip(1) {
        table.unlock_page(p);
    }
    let deadline = time::now_ns() + (10_000 + n as u64 * 5) * MS;
    while done.load(Ordering::Acquire) < n && time::now_ns() < deadline {
        timer::sleep_ns(10 * MS);
    }
    r.unfinished = n - done.load(Ordering::Acquire);
    if let Some((lockup, hung)) = restore {
        watchdog::LOCKUP_LIMIT_NS.store(lockup, Ordering::Relaxed);
        watchdog::HUNG_LIMIT_NS.store(hung, Ordering::Relaxed);
    }
    if r.unfinished != 0 {
        // Stranded waiters hold `pg`; a locked page must not be freed.
        core::mem::forget(pg);
    }
    r
}
