//! Shared loom scaffolding: model builders, a shared table + pages, a
//! locktorture-style owner check, the data a releaser publishes for a
//! waiter ([`World::publish`], [`World::observe`]), the fast/slow path
//! bookkeeping of waits ([`waited`], [`assert_both_paths`]), and the
//! child-process runner that proves a known-bad model fails.
#![allow(dead_code)]

pub mod models;

use std::cell::Cell;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use pagesync::loom_platform::{LoomPlatform, times_blocked};
use pagesync::{Config, Page, PageWaitTable};

pub type Table = PageWaitTable<LoomPlatform>;

/// Default preemption bound; `LOOM_MAX_PREEMPTIONS` overrides it.
pub const PREEMPTIONS: usize = 3;

/// Runs `f` under loom with the preemption bound `bound` (unless the
/// environment sets `LOOM_MAX_PREEMPTIONS`).
pub fn model<F>(bound: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    b.check(f);
}

/// [`model`] with a larger branch budget, for a model whose one execution
/// is long (loom's default is 1000 branches).
pub fn long_model<F>(bound: usize, max_branches: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    b.max_branches = b.max_branches.max(max_branches);
    b.check(f);
}

/// A table and some pages, each page holding one reference (the page
/// cache's), plus per page a counter only touched under that page's lock.
pub struct World {
    pub table: Table,
    pub pages: Vec<Page>,
    pub counters: Vec<UnsafeCell<u32>>,
    /// What a releasing side writes before it releases (a page's contents,
    /// an I/O result) and a waiter reads after its wait returns. A loom
    /// cell: a read that the wait does not order after the write is a
    /// causality violation.
    pub data: UnsafeCell<u64>,
    /// Bumped by [`World::arrive`].
    pub arrivals: AtomicUsize,
}

impl World {
    pub fn new(cfg: Config, npages: usize) -> Arc<Self> {
        let pages: Vec<Page> = (0..npages).map(|_| Page::new()).collect();
        for p in &pages {
            p.init_ref().unwrap();
        }
        let counters = (0..npages).map(|_| UnsafeCell::new(0)).collect();
        Arc::new(Self {
            table: Table::new(cfg),
            pages,
            counters,
            data: UnsafeCell::new(0),
            arrivals: AtomicUsize::new(0),
        })
    }

    /// A spawned thread's first loom operation, an RMW: loom 0.7 never
    /// schedules a new thread ahead of its spawner at its first operation
    /// if that is a load (tokio-rs/loom#392), and every wait and every
    /// reference-count operation starts with a load. With this first, the
    /// thread can run before anything its spawner does next.
    pub fn arrive(&self) {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
    }

    /// The releasing side's write, before it releases (unlock, end of
    /// writeback, end of a read). Only one thread writes at a time in the
    /// models (the lock holder, or the one I/O completion).
    pub fn publish(&self, v: u64) {
        // SAFETY: see above; loom checks every overlap.
        self.data.with_mut(|d| unsafe { *d = v });
    }

    /// The waiter's read, after its wait returned.
    pub fn observe(&self) -> u64 {
        // SAFETY: loom checks that the write happens-before this read.
        self.data.with(|d| unsafe { *d })
    }

    pub fn page(&self, i: usize) -> &Page {
        &self.pages[i]
    }

    /// locktorture's check, right after taking page `i`'s lock: claim the
    /// owner word with a CAS (fails if someone else holds the lock), then
    /// bump a plain counter (loom reports a data race if the lock's
    /// orderings do not order the critical sections).
    pub fn enter(&self, i: usize, me: u64) {
        let p = self.page(i);
        assert_eq!(
            p.lock_owner()
                .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed),
            Ok(0),
            "two owners of page {i}"
        );
        // SAFETY: only touched while holding a page lock (what we check).
        self.counters[i].with_mut(|c| unsafe { *c += 1 });
    }

    /// Undoes [`World::enter`]; call right before unlocking.
    pub fn leave(&self, i: usize, me: u64) {
        let p = self.page(i);
        assert_eq!(
            p.lock_owner()
                .compare_exchange(me, 0, Ordering::Relaxed, Ordering::Relaxed),
            Ok(me)
        );
    }

    /// One full lock / check / unlock of page `i`.
    pub fn locked_section(&self, i: usize, me: u64) {
        self.table.lock_page(self.page(i));
        self.enter(i, me);
        self.leave(i, me);
        self.table.unlock_page(self.page(i));
    }

    /// Page 0's counter.
    pub fn counter(&self) -> u32 {
        // SAFETY: called after all threads joined.
        self.counters[0].with(|c| unsafe { *c })
    }

    /// Yields until `n` entries of page `i` are queued.
    pub fn wait_queued(&self, i: usize, n: usize) {
        while self.table.waiters_queued(self.page(i)) < n {
            loom::thread::yield_now();
        }
    }

    /// Quiescent-state checks: no lock held, no entry queued.
    pub fn assert_quiescent(&self) {
        for (i, p) in self.pages.iter().enumerate() {
            assert!(
                !p.flags().test(pagesync::flags::PG_LOCKED),
                "page {i} left locked"
            );
            assert_eq!(
                self.table.waiters_queued(p),
                0,
                "page {i} has queued waiters"
            );
        }
    }
}

/// Spawns a loom thread that runs `f` on its own handle of the world.
pub fn spawn_with<R: 'static>(
    w: &Arc<World>,
    f: impl FnOnce(&World) -> R + 'static,
) -> loom::thread::JoinHandle<R> {
    let w = w.clone();
    loom::thread::spawn(move || f(&w))
}

std::thread_local! {
    /// Waits that returned without blocking / after blocking, in the
    /// models run on this OS thread (loom runs a model's threads on the
    /// OS thread that calls `model`).
    static PATHS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Runs one wait and records whether it blocked (slow path) or not (fast
/// path).
pub fn waited<R>(wait: impl FnOnce() -> R) -> R {
    let before = times_blocked();
    let r = wait();
    let slow = times_blocked() > before;
    PATHS.with(|p| {
        let (fast, slow_n) = p.get();
        p.set(if slow {
            (fast, slow_n + 1)
        } else {
            (fast + 1, slow_n)
        });
    });
    r
}

/// Forgets the paths recorded so far (call before `model`).
pub fn reset_paths() {
    PATHS.with(|p| p.set((0, 0)));
}

/// Asserts that over all executions the model explored, some wait returned
/// without blocking and some after blocking: the model checked both the
/// fast and the slow path of the wait.
pub fn assert_both_paths(what: &str) {
    let (fast, slow) = PATHS.with(Cell::get);
    assert!(
        fast > 0 && slow > 0,
        "{what}: the model reached the fast path {fast} times and the slow path {slow} times; \
         it must reach both"
    );
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process
/// and asserts that it fails with one of `signs` in its output. A child
/// process, because loom can abort (double panic) when it finds a deadlock.
///
/// With `PAGESYNC_CORRECT_MODELS_ONLY` set (by `cargo xtask orderings`,
/// which weakens the correct code and wants to know whether a *correct*
/// model notices), this returns at once: a known-bad model fails whatever
/// the weakening, so running it would only cost time.
pub fn expect_failure(name: &str, signs: &[&str]) {
    expect_failure_with(name, &[], signs);
}

/// [`expect_failure`] with environment variables `env` set in the child
/// (how a test that loops over variants names the one the child runs).
pub fn expect_failure_with(name: &str, env: &[(&str, &str)], signs: &[&str]) {
    if std::env::var_os("PAGESYNC_CORRECT_MODELS_ONLY").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .env_remove("LOOM_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("running 1 test"),
        "{name} did not run:\n{text}"
    );
    assert!(
        !out.status.success(),
        "known-bad model {name} passed; the test has no teeth"
    );
    assert!(
        signs.iter().any(|s| text.contains(s)),
        "{name} failed for an unexpected reason:\n{}",
        &text[text.len().saturating_sub(3000)..]
    );
}

/// What loom prints when every thread is blocked (a lost wake-up).
pub const DEADLOCK: &str = "deadlock";

/// What loom prints when a cell's read is not ordered after its write.
pub const CAUSALITY: &str = "Causality violation";

std::thread_local! {
    /// Executions in which a model's race went one way / the other
    /// ([`outcome`]).
    static OUTCOMES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Forgets the outcomes recorded so far (call before `model`).
pub fn reset_outcomes() {
    OUTCOMES.with(|c| c.set((0, 0)));
}

/// Records which way this execution's race went.
pub fn outcome(went_first_way: bool) {
    OUTCOMES.with(|c| {
        let (yes, no) = c.get();
        c.set(if went_first_way {
            (yes + 1, no)
        } else {
            (yes, no + 1)
        });
    });
}

/// Asserts that over all executions the race went both ways: the model
/// checked both outcomes (`yes` and `no` name them in the message).
pub fn assert_both_outcomes(what: &str, yes: &str, no: &str) {
    let (y, n) = OUTCOMES.with(Cell::get);
    assert!(
        y > 0 && n > 0,
        "{what}: the model must reach both outcomes: {yes} {y} times, {no} {n} times"
    );
}
