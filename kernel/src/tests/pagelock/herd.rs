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

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::pagelock::Table;
use crate::{
    arch::x86_64::time,
    mm::{AllocFlags, Frame, alloc_pages},
    sched::{self, timer},
    smp::online_cpus,
    tests::sched::join_timeout,
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
}

/// Runs one herd of `n` waiters over `pages` colliding pages on `table`
/// (which should have `table_bits == 0`).
pub fn wake_walk(table: &'static Table, n: usize, pages: usize) -> HerdReport {
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
    let waiter_cpus: Vec<usize> = (0..cpus).filter(|&c| c != 1 || cpus == 1).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let mut ts = Vec::new();
    for k in 0..n {
        let (pg, done) = (pg.clone(), done.clone());
        match sched::spawn(
            &format!("herd{k}"),
            Some(waiter_cpus[k % waiter_cpus.len()]),
            move || {
                table.wait_on_page_locked(&pg[k % pg.len()]);
                done.fetch_add(1, Ordering::AcqRel);
            },
        ) {
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
    let prober = (cpus > 1).then(|| {
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
    // Let the prober settle, then forget its warm-up maximum.
    time::delay_us(2000);
    max_wait.store(0, Ordering::Relaxed);
    let t0 = time::rdtsc();
    table.unlock_page(&pg[0]);
    r.walk_ns = time::cycles_to_ns(time::rdtsc() - t0);
    time::delay_us(1000);
    stop.store(true, Ordering::Release);
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
    if r.unfinished != 0 {
        // Stranded waiters hold `pg`; a locked page must not be freed.
        core::mem::forget(pg);
    }
    r
}
