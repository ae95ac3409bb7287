//! Shared loom scaffolding: model builders, a shared table + pages, a
//! locktorture-style owner check, and the child-process runner that proves
//! a known-bad model fails.
#![allow(dead_code)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::Ordering;
use pagesync::loom_platform::LoomPlatform;
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

/// A table and some pages, each page holding one reference (the page
/// cache's), plus per page a counter only touched under that page's lock.
pub struct World {
    pub table: Table,
    pub pages: Vec<Page>,
    pub counters: Vec<UnsafeCell<u32>>,
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
        })
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

/// Runs the `#[ignore]`d test `name` of this test binary in a child process
/// and asserts that it fails with one of `signs` in its output. A child
/// process, because loom can abort (double panic) when it finds a deadlock.
pub fn expect_failure(name: &str, signs: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
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
