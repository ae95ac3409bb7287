//! Accounting after a GUP or DMA run (issue 11): every pin given back and
//! every frame back in the allocator.
//!
//! Mental model: a case takes a [`Snapshot`] before it starts and calls
//! [`Snapshot::check`] after it has dropped everything it made (pins,
//! mappings, address spaces, the page cache's pages, evicted first). Two
//! checks, both exact:
//!
//! 1. **No pin left**: a scan of the whole frame array finds no page whose
//!    count says it may be DMA-pinned (`page_maybe_dma_pinned`: the count
//!    is at least the pin bias, 1024). A pin that was never unpinned, or an
//!    unpin lost on an error path, leaves its page above the bias for good.
//! 2. **No frame lost**: the frame allocator's free count is back to its
//!    starting value, except for the frames that moved, for good and by
//!    design, to the two owners that never give any back: the heap (which
//!    grows and keeps what it took) and the thread-stack area (stacks are
//!    cached for reuse, with their page tables). Those are counted, so the
//!    sum `free + heap + stacks` must be exactly what it was: one page
//!    left in a cache, one bounce copy or pinned page never freed, shows.

use alloc::{format, string::String, vec::Vec};

use crate::{
    kassert,
    ktest::TestResult,
    mm::{frame_array, heap, page_alloc::free_frames, pcp},
    println,
    sched::stack,
};

/// Frames by owner, at one moment.
/// How long [`Snapshot::check`] lets late releases come back.
const SETTLE_MS: u64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Free in the allocator (buddy lists; the per-CPU caches are drained
    /// first).
    pub free: u64,
    /// Taken by the heap.
    pub heap: u64,
    /// Taken by the stack area.
    pub stacks: u64,
    /// Pages that look DMA-pinned.
    pub pinned: u64,
}

/// Pages of the whole frame array whose count is at least the pin bias.
pub fn pinned_pages() -> u64 {
    let mut n = 0;
    for (start, end) in frame_array::sections() {
        for pfn in start.0..end.0 {
            if frame_array::page(crate::mm::Pfn(pfn)).is_some_and(|p| p.maybe_dma_pinned()) {
                n += 1;
            }
        }
    }
    n
}

impl Snapshot {
    /// The state now. Call with nothing else allocating (between cases,
    /// or after every thread of the case has finished).
    pub fn take() -> Snapshot {
        pcp::drain_all();
        Snapshot {
            free: free_frames(),
            heap: heap::stats().0 / crate::mm::PAGE_SIZE as u64,
            stacks: stack::frames(),
            pinned: pinned_pages(),
        }
    }

    /// The frames accounted for: free, or held for good by the heap or
    /// the stack area.
    fn accounted(&self) -> u64 {
        self.free + self.heap + self.stacks
    }

    /// What breaks the two rules of the module docs between `self`
    /// (taken at the start) and `now`; empty if nothing.
    pub fn problems(&self, now: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        if now.pinned != 0 {
            out.push(format!("{} pages are still maybe-pinned", now.pinned));
        }
        if now.accounted() != self.accounted() {
            out.push(format!(
                "{} frames free or held by heap and stacks, {} before: {} frames lost",
                now.accounted(),
                self.accounted(),
                self.accounted() as i64 - now.accounted() as i64
            ));
        }
        out
    }

    /// Checks the two rules against `self` (taken at the start) and prints
    /// what it found; `what` names the run.
    ///
    /// A frame may come back a little after the case ends: a thread that
    /// has returned still holds its locals until it is reaped, a device
    /// completion or the page-cache worker may drop the last reference of
    /// a page on another CPU. So a mismatch is looked at again for up to
    /// [`SETTLE_MS`] before it counts: a leak stays, a late release does
    /// not (and how long it took is printed).
    pub fn check(&self, what: &str) -> TestResult {
        let start = crate::arch::x86_64::time::now_ns();
        let mut now = Snapshot::take();
        let mut retries = 0;
        while !self.problems(&now).is_empty()
            && crate::arch::x86_64::time::now_ns() - start < SETTLE_MS * 1_000_000
        {
            crate::sched::timer::sleep_ns(10_000_000);
            now = Snapshot::take();
            retries += 1;
        }
        if retries > 0 {
            let ms = (crate::arch::x86_64::time::now_ns() - start) / 1_000_000;
            let how = if self.problems(&now).is_empty() {
                "came back"
            } else {
                "did not come back"
            };
            println!(
                "    # accounting after {what}: frames {how} within {ms} ms ({retries} looks)"
            );
        }
        println!(
            "    # accounting after {what}: {} pages maybe pinned (before: {}); free frames {} -> {}, heap +{}, stacks +{}",
            now.pinned,
            self.pinned,
            self.free,
            now.free,
            now.heap - self.heap,
            now.stacks - self.stacks
        );
        let problems = self.problems(&now);
        kassert!(problems.is_empty(), "{}: {}", what, problems.join("; "));
        Ok(())
    }
}
