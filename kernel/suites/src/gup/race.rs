//! The second seed's invariant under real concurrency: per round, a pinner
//! and a writeback race on one page; it must never happen that the pinner
//! saw no writeback and writeback saw no pin.
//!
//! Mental model: CPUs are paired (0 pins, 1 writes back; 2 pins, 3 writes
//! back; ...), each pair on its own page. Every round both threads meet at
//! a spinning barrier, spin a random few hundred cycles (so the two sides'
//! steps overlap in every alignment), then do their one step each: the
//! pinner one `try_pin_page`, the writeback thread lock, `start_page_
//! writeback`, unlock. After a second barrier the writeback thread records
//! the pair of observations, ends writeback, and the pinner drops its pin.
//!
//! On x86 (and under QEMU TCG on an x86 host) the pin and the test-and-set
//! are `lock` RMWs, full barriers, so the barrier-less variants that loom
//! catches (`gup-no-fence`, `gup-wmb-only`) cannot fail here; the plain
//! stores of `gup-plain-stores` can (the store buffer), and do.

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use pagesync::WriteResult;

use crate::rendezvous::Rendezvous;
use crate::{pagelock::torture::Rng, sched::join_timeout};
use kernel::{
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::Table,
    sched::{self, ThreadRef},
    smp::online_cpus,
};

/// What the rounds found.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaceReport {
    pub pairs: usize,
    pub rounds: u64,
    /// Rounds where the pinner got its pin without seeing writeback.
    pub pinned: u64,
    /// Rounds where writeback saw a pin.
    pub saw_pin: u64,
    /// Both blind: the invariant broken.
    pub violations: u64,
    /// Threads that did not finish.
    pub stuck: usize,
    /// Wall time of the rounds.
    pub elapsed_ms: u64,
    /// Times the race threads were switched in (each sleep on the page
    /// lock, each yield that let another thread run, each preemption).
    pub switches: u64,
}

/// One pair's shared state. Each barrier is a counter both sides bump and
/// then wait to reach `2 * (generation)`, spinning briefly, then asleep.
struct Pair {
    page: Frame,
    rv: Rendezvous,
    pinned: AtomicU64,
    violations: AtomicU64,
    pins: AtomicU64,
    seen: AtomicU64,
}

/// Meets the other thread of the pair ([`Rendezvous::meet`]).
fn meet(p: &Pair, g: u64) {
    p.rv.meet(g);
}

/// Spins before each side's step: small, so that the two steps, which
/// take tens of nanoseconds, overlap in every alignment.
const JITTER: u64 = 32;

fn jitter(rng: &mut Rng) {
    for _ in 0..rng.below(JITTER) {
        core::hint::spin_loop();
    }
}

fn pinner(t: &'static Table, p: &Pair, rounds: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    for r in 0..rounds {
        meet(p, 3 * r + 1);
        jitter(&mut rng);
        let pinned = t.try_pin_page(&p.page).expect("a referenced page pins");
        p.pinned.store(u64::from(pinned), Ordering::Relaxed);
        meet(p, 3 * r + 2);
        // The writeback side checks the round and ends writeback.
        meet(p, 3 * r + 3);
        if pinned {
            let _ = t.unpin_page(&p.page);
        }
    }
}

fn writeback(t: &'static Table, p: &Pair, rounds: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    for r in 0..rounds {
        meet(p, 3 * r + 1);
        jitter(&mut rng);
        t.lock_page(&p.page);
        let saw = t.start_page_writeback(&p.page).maybe_pinned;
        t.unlock_page(&p.page);
        meet(p, 3 * r + 2);
        let pinned = p.pinned.load(Ordering::Relaxed) != 0;
        p.pins.fetch_add(u64::from(pinned), Ordering::Relaxed);
        p.seen.fetch_add(u64::from(saw), Ordering::Relaxed);
        if pinned && !saw {
            p.violations.fetch_add(1, Ordering::Relaxed);
        }
        let _ = t.end_page_writeback(&p.page, WriteResult::Written);
        meet(p, 3 * r + 3);
    }
}

/// Runs `rounds` rounds on every pair of online CPUs with the protocol of
/// `table` (its `gup` scheme and `bug`).
pub fn run(table: &'static Table, rounds: u64, seed: u64) -> RaceReport {
    let pairs = online_cpus() / 2;
    let mut r = RaceReport {
        pairs,
        rounds,
        ..RaceReport::default()
    };
    let shared: Vec<Arc<Pair>> = (0..pairs)
        .map(|_| {
            Arc::new(Pair {
                page: alloc_pages(0, AllocFlags::ZERO).expect("a frame"),
                rv: Rendezvous::new(),
                pinned: AtomicU64::new(0),
                violations: AtomicU64::new(0),
                pins: AtomicU64::new(0),
                seen: AtomicU64::new(0),
            })
        })
        .collect();
    let mut threads: Vec<ThreadRef> = Vec::new();
    let t0 = kernel::arch::time::now_ns();
    for (k, p) in shared.iter().enumerate() {
        let (pa, pb) = (p.clone(), p.clone());
        threads.push(
            sched::spawn(&format!("gup-pin{k}"), Some(2 * k), move || {
                pinner(table, &pa, rounds, seed ^ (2 * k as u64 + 1))
            })
            .expect("spawn"),
        );
        threads.push(
            sched::spawn(&format!("gup-wb{k}"), Some(2 * k + 1), move || {
                writeback(table, &pb, rounds, seed ^ (2 * k as u64 + 2))
            })
            .expect("spawn"),
        );
    }
    // A hang is no progress, not a slow run: under TCG a round costs tens
    // of microseconds when both vCPUs run, but a round where one side
    // sleeps on the page lock (frequent with the jitter of the race points)
    // costs a wake-up of a halted vCPU, up to ~100 ms when the host is
    // loaded. So the threads are declared stuck only after
    // `NO_PROGRESS_MS` without a single barrier arrival.
    const NO_PROGRESS_MS: u64 = 10_000;
    let arrivals = || -> u64 { shared.iter().map(|p| p.rv.arrivals()).sum() };
    let (mut last, mut last_change) = (arrivals(), kernel::arch::time::now_ns());
    for t in &threads {
        while !join_timeout(t, 100) {
            let now = kernel::arch::time::now_ns();
            let a = arrivals();
            if a != last {
                (last, last_change) = (a, now);
            } else if now - last_change > NO_PROGRESS_MS * 1_000_000 {
                r.stuck += 1;
                break;
            }
        }
    }
    r.elapsed_ms = (kernel::arch::time::now_ns() - t0) / 1_000_000;
    r.switches = threads
        .iter()
        .map(|t| t.switches.load(Ordering::Relaxed))
        .sum();
    if r.stuck != 0 {
        // Say where they are, so a hang is a diagnosis, not a timeout.
        for t in &threads {
            log::error!(
                "gup-race: {} exited={} state={} waits on {}",
                t.name,
                t.exited.load(Ordering::Acquire),
                t.state.load(Ordering::Acquire),
                t.wait_desc()
            );
        }
        for (k, p) in shared.iter().enumerate() {
            log::error!(
                "gup-race: pair {k}: arrivals {} flags {} count {} queued {}",
                p.rv.arrivals(),
                pagesync::flags::FlagNames(p.page.flags().load(Ordering::Relaxed)),
                p.page.ref_count(),
                table.waiters_queued(&p.page)
            );
        }
    }
    for p in &shared {
        r.pinned += p.pins.load(Ordering::Relaxed);
        r.saw_pin += p.seen.load(Ordering::Relaxed);
        r.violations += p.violations.load(Ordering::Relaxed);
    }
    if r.stuck != 0 {
        // Stranded threads hold the pairs: keep them.
        core::mem::forget(shared);
    }
    r
}
