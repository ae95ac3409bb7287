//! DMA pins (`FOLL_PIN`) and the writeback that must never miss them.
//!
//! Mental model (the second seed, Jérôme Glisse, January 2019): a pinned
//! page may be written by a device at any moment, so writeback must know
//! whether the page it starts writing may be pinned, and a new pin must
//! not slip in unseen while writeback starts. Per race between one pinner
//! and one `start_page_writeback` of the same page, the invariant is:
//!
//! > it never happens that the pinner saw no writeback **and** writeback
//! > saw no pin.
//!
//! A pin adds [`GUP_PIN_COUNTING_BIAS`] to the reference count
//! ([`Page::pin`]); writeback reads `page_maybe_dma_pinned` (count ≥ bias).
//! Two ways to make the two sides see each other, selected by
//! [`crate::PinScheme`]; each is a file of its own in `crate::variant`
//! (`pin_lock.rs`, `pin_barrier.rs`, one registration line each), and a
//! new scheme is one more:
//!
//! **Lock** (John Hubbard, Jan Kara): the pinner takes the page lock; if
//! the page is under writeback it unlocks, waits for the write-out and
//! retries; else it adds the bias and unlocks. Writeback starts only with
//! the page lock held and reads the pin state under it. The lock orders
//! the two critical sections: whichever comes second sees the first. The
//! pinner can contend (on the lock, with writers and flushers).
//!
//! **Barrier** (Jérôme Glisse): the pinner adds the bias, issues a full
//! barrier, then tests `PG_WRITEBACK`; if set it removes the bias, waits
//! and retries. Writeback test-and-sets `PG_WRITEBACK`, issues a full
//! barrier, then reads the pin state. The pinner never takes a lock.
//!
//! ```text
//! pinner                              start_page_writeback
//! count += BIAS        (RMW on count) test_and_set PG_WRITEBACK (RMW on flags)
//! fence(SeqCst)        (F1)           fence(SeqCst)            (F2)
//! load flags: WRITEBACK?              load count: >= BIAS?
//! ```
//!
//! This is the store-buffer litmus test: two writes to different
//! locations, each followed by a read of the other's. Without F1 and F2
//! both reads may return the old values (on x86 through the store
//! buffer; in the Rust/C++ model because nothing orders a write before a
//! later read of another location). The SeqCst fences forbid it: the two
//! fences are totally ordered; if F1 comes first, the pinner's write
//! happens-before the writeback's read after F2, so writeback sees the
//! pin; if F2 comes first, writeback's set is seen by the pinner's read.
//! **The seed's `smp_wmb()` on the writeback side is not enough**: a
//! write barrier orders the test-and-set only against later *writes*, not
//! against the later *read* of the count, which may still be satisfied
//! before the set is visible. What made the seed's scheme correct in Linux
//! is that `test_and_set_bit` is itself fully ordered (an `smp_mb()` on
//! each side); Rust's AcqRel RMW is weaker (it does not order its store
//! before a later load of another location), so here F2 says it
//! explicitly. The known-bad
//! [`crate::Bug::GupWmbOnly`] puts the seed's write barrier in F2's place,
//! and [`crate::Bug::GupNoFence`] drops F1; loom finds the invariant broken
//! with either (`tests/loom_gup.rs`). Neither can show on x86 (the pin and
//! the test-and-set are `lock` RMWs, full barriers there, also under QEMU
//! TCG on an x86 host); [`crate::Bug::GupPlainStores`] makes both sides'
//! writes plain stores with no fence, the store-buffer reordering x86 does
//! perform, so the kernel's race rounds can catch it too.

use crate::page::Page;
use crate::platform::Platform;
use crate::refcount::{GUP_PIN_COUNTING_BIAS, PutOutcome, RefError};
use crate::wait_table::PageWaitTable;

/// How one pin went: whether the pinner saw the page under writeback (and
/// so waited) before it took the pin. For the race checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// Times the pinner found the page under writeback and waited.
    pub waited_for_writeback: u32,
}

impl<P: Platform> PageWaitTable<P> {
    /// `FOLL_PIN` on one page the caller holds a reference on: add the pin
    /// bias once the page is not under writeback, by the configured
    /// [`crate::PinScheme`] (module docs): tries, and while the page is under
    /// writeback waits for stable data and tries again. Refused as
    /// [`Page::pin`] refuses (count 0, or near overflow), nothing changed.
    pub fn pin_page(&self, page: &Page) -> Result<Pinned, RefError> {
        let mut waited = 0;
        while !self.try_pin_page(page)? {
            self.wait_on_page_writeback(page);
            waited += 1;
        }
        Ok(Pinned {
            waited_for_writeback: waited,
        })
    }

    /// One attempt of [`PageWaitTable::pin_page`]: `Ok(true)` if the page
    /// is now pinned (the pinner saw no writeback), `Ok(false)` if it found
    /// the page under writeback and holds no pin. The race checks call this
    /// directly: per race with one `start_page_writeback`, `Ok(true)` here
    /// and `maybe_pinned == false` there never both happen.
    pub fn try_pin_page(&self, page: &Page) -> Result<bool, RefError> {
        self.cfg.gup.try_pin(self, page)
    }

    /// Drops one pin (`unpin_user_page`). On `LastReference` the caller
    /// frees the page.
    pub fn unpin_page(&self, page: &Page) -> Result<PutOutcome, RefError> {
        page.unpin()
    }

    /// The writeback side's ordering between setting `PG_WRITEBACK` and
    /// reading the pin state, by scheme (called by `start_page_writeback`
    /// between the two). Returns whether the page may be pinned.
    pub(crate) fn pin_state_after_writeback_set(&self, page: &Page) -> bool {
        self.cfg.gup.after_writeback_set(self, page);
        page.ref_count() >= GUP_PIN_COUNTING_BIAS
    }
}
