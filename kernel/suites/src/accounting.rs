//! The accounting check after every case of an accounted suite (`mm`,
//! `vm`, `pagelock`, `block`, `pagecache`, `gup`): a green case leaves
//! nothing behind.
//!
//! Mental model: the framework (`crate::ktest`) takes a [`Snapshot`] before
//! the case and hands it to [`Accounted::check`] after the case returned,
//! when it has dropped everything it made (pins, mappings, address spaces,
//! caches, threads). One pass over the whole frame array with the
//! allocator stopped (`mm::page_alloc::audit`) plus the heap, the stack
//! area and the page wait table, and these rules, each exact:
//!
//! 1. **No frame lost**: free frames (per-CPU caches drained) plus the
//!    frames held for good by the two owners that never give any back
//!    (the heap, which grows and keeps what it took, and the thread-stack
//!    area, which caches stacks for reuse) are what they were. One page
//!    left in a cache, one bounce copy or pinned page never freed, shows.
//! 2. **No orphan**: no more frames than before with count 0 that are on
//!    no free list (a page whose last reference went by a path that did
//!    not free it: lost for good, as the end of writeback once did).
//! 3. **No page left locked, under writeback or maybe-pinned** (a pin
//!    never unpinned, an unpin lost on an error path, a lock never
//!    released, a writeback never ended).
//! 4. **No waiter left queued** on the page wait table.
//!
//! A frame may come back a little after the case ends: a thread that has
//! returned still holds its locals until it is reaped, a device completion
//! or the page-cache worker may drop the last reference of a page on
//! another CPU. So a mismatch is looked at again for up to [`SETTLE_MS`]
//! before it counts: a leak stays, a late release does not (and how long
//! it took is printed).

use alloc::{format, string::String, vec::Vec};

use crate::{
    kassert,
    ktest::{Accounting, TestResult},
};
use kernel::{
    arch::time,
    mm::{
        PAGE_SIZE, heap,
        page_alloc::{Audit, Dump, audit},
    },
    pagelock::table,
    println,
    sched::stack,
};

/// How long [`Snapshot::check`] lets late releases come back.
const SETTLE_MS: u64 = 2_000;

/// The frame array, the heap, the stack area and the wait table at one
/// moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub audit: Audit,
    /// Frames taken by the heap.
    pub heap: u64,
    /// Frames taken by the stack area.
    pub stacks: u64,
    /// Entries queued on the page wait table.
    pub queued: usize,
}

impl Snapshot {
    /// The state now. Call with nothing else allocating (between cases,
    /// or after every thread of the case has finished).
    pub fn take() -> Snapshot {
        Snapshot {
            audit: audit(),
            heap: heap::stats().0 / PAGE_SIZE as u64,
            stacks: stack::frames(),
            queued: table().queued_entries(),
        }
    }

    /// The frames accounted for: free, or held for good by the heap or
    /// the stack area.
    fn accounted(&self) -> u64 {
        self.audit.free + self.heap + self.stacks
    }

    /// What breaks the rules of the module docs between `self` (taken at
    /// the start) and `now`; empty if nothing.
    pub fn problems(&self, now: &Snapshot) -> Vec<String> {
        let (a, b) = (&now.audit, &self.audit);
        let mut out = Vec::new();
        if now.accounted() != self.accounted() {
            out.push(format!(
                "{} frames free or held by heap and stacks, {} before: {} frames lost",
                now.accounted(),
                self.accounted(),
                self.accounted() as i64 - now.accounted() as i64
            ));
        }
        let kinds = [
            (
                a.orphans,
                b.orphans,
                "frames with count 0 on no free list (orphaned)",
            ),
            (a.locked, b.locked, "pages left locked"),
            (a.writeback, b.writeback, "pages left under writeback"),
            (a.pinned, b.pinned, "pages are still maybe-pinned"),
        ];
        for (k, (now_n, before_n, what)) in kinds.into_iter().enumerate() {
            if now_n > before_n {
                let mut line = format!("{} {what} (before: {before_n})", now_n - before_n);
                for pfn in a.examples[k].iter().flatten() {
                    line += &format!("; {}", Dump(*pfn));
                }
                out.push(line);
            }
        }
        if now.queued > self.queued {
            out.push(format!(
                "{} wait-queue entries left queued (before: {})",
                now.queued - self.queued,
                self.queued
            ));
        }
        out
    }

    /// Checks the rules against `self` (taken at the start) and prints
    /// what it found; `what` names the case.
    pub fn check(&self, what: &str) -> TestResult {
        let start = time::now_ns();
        let mut now = Snapshot::take();
        let mut retries = 0;
        while !self.problems(&now).is_empty() && time::now_ns() - start < SETTLE_MS * 1_000_000 {
            kernel::sched::timer::sleep_ns(10_000_000);
            now = Snapshot::take();
            retries += 1;
        }
        let problems = self.problems(&now);
        if retries > 0 {
            let ms = (time::now_ns() - start) / 1_000_000;
            let how = if problems.is_empty() {
                "came back"
            } else {
                "did not come back"
            };
            println!(
                "    # accounting after {what}: frames {how} within {ms} ms ({retries} looks)"
            );
        }
        if !problems.is_empty() {
            println!(
                "    # accounting after {what}: free frames {} -> {}, heap +{}, stacks +{}",
                self.audit.free,
                now.audit.free,
                now.heap as i64 - self.heap as i64,
                now.stacks as i64 - self.stacks as i64
            );
        }
        kassert!(
            problems.is_empty(),
            "{what} left things behind: {}",
            problems.join("; ")
        );
        Ok(())
    }
}

/// What the framework runs around each case: the accounting of an
/// accounted suite, and after a failed case, the check that it left
/// nothing running.
pub struct Accounted;

/// The state before a case: the first thread id it could spawn, and for an
/// accounted suite the full [`Snapshot`].
pub struct Before {
    threads_from: u64,
    full: Option<Snapshot>,
}

/// How long a failed case's threads get to exit once asked to give up.
const REAP_MS: u64 = 2_000;

impl Accounting for Accounted {
    type Snapshot = Before;

    fn take(full: bool) -> Before {
        Before {
            threads_from: kernel::sched::next_thread_id(),
            full: full.then(Snapshot::take),
        }
    }

    fn check(before: &Before, case: &str) -> TestResult {
        match &before.full {
            Some(s) => s.check(case),
            None => Ok(()),
        }
    }

    /// Threads the case spawned are cancelled (their killable waits give
    /// up) and waited for; what still runs after [`REAP_MS`], and any page
    /// left locked or under writeback or waiter left queued (accounted
    /// suites), is what the case left behind.
    fn after_failure(before: &Before, _case: &str) -> Result<(), String> {
        let left = kernel::sched::live_threads_since(before.threads_from);
        for t in &left {
            kernel::sched::cancel(t);
        }
        let deadline = time::now_ns() + REAP_MS * 1_000_000;
        let mut still: Vec<_> = left;
        while !still.is_empty() && time::now_ns() < deadline {
            kernel::sched::timer::sleep_ns(10_000_000);
            still.retain(|t| !t.exited.load(core::sync::atomic::Ordering::Acquire));
        }
        let mut out = Vec::new();
        if !still.is_empty() {
            let names: Vec<String> = still
                .iter()
                .map(|t| format!("'{}' (cpu{}, {})", t.name, t.cpu(), t.wait_desc()))
                .collect();
            out.push(format!(
                "{} thread(s) still running {REAP_MS} ms after being cancelled: {}",
                still.len(),
                names.join(", ")
            ));
        }
        if let Some(s) = &before.full {
            let now = Snapshot::take();
            for p in s.problems(&now) {
                if !p.contains("frames") {
                    out.push(p);
                }
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out.join("; "))
        }
    }
}
