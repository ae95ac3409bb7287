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
//! [`PinScheme`]:
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

use crate::flags::{PG_LOCKED, PG_WRITEBACK};
use crate::page::Page;
use crate::platform::Platform;
use crate::refcount::{GUP_PIN_COUNTING_BIAS, PutOutcome, RefError};
use crate::sync::{Ordering, fence};
use crate::variant::{Bug, PinScheme};
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
    /// [`PinScheme`] (module docs): tries, and while the page is under
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
        match self.cfg.gup {
            PinScheme::Lock => {
                if self.cfg.bug == Some(Bug::GupCheckOutsideLock) {
                    // BUG(GupCheckOutsideLock): the test before the lock,
                    // none under it. Writeback may take the lock, start and
                    // read "no pin" between our test and our pin.
                    if page.flags.test(PG_WRITEBACK) {
                        return Ok(false);
                    }
                    self.lock_page(page);
                    let r = page.pin();
                    self.unlock_page(page);
                    return r.map(|_| true);
                }
                self.lock_page(page);
                // Acquire, although we hold the page lock: the lock keeps
                // writeback from *starting*, but its end (the completion's
                // Release RMW, which takes no lock) may clear the bit
                // between our lock and this test, and a Relaxed test that
                // sees that clear is ordered after nothing the completion
                // wrote. Pairs with that Release (loom found this:
                // `visibility_pin_lock_scheme` in `tests/loom_gup.rs`).
                if page.flags.test_acquire(PG_WRITEBACK) {
                    self.unlock_page(page);
                    return Ok(false);
                }
                // Under the page lock: `start_page_writeback` (which needs
                // the lock) either ran before us, and we saw its bit, or
                // runs after our unlock and sees the bias (the lock's
                // Release/Acquire).
                let r = page.pin();
                self.unlock_page(page);
                r.map(|_| true)
            }
            PinScheme::Barrier => {
                if self.cfg.bug == Some(Bug::GupPlainStores) {
                    // BUG(GupPlainStores): the bias added with a plain load
                    // and store, no fence. On x86 the store can wait in the
                    // store buffer while the flags load below runs (the one
                    // reordering x86 allows); with writeback's plain store
                    // of the bit doing the same, both sides read old values.
                    // Unlike a missing fence after an atomic RMW (a `lock`
                    // instruction, itself a full barrier on x86), this is
                    // visible on x86 and under TCG.
                    let c = page.refcount.load(Ordering::Relaxed);
                    if c == 0 {
                        return Err(RefError::Unused);
                    }
                    page.refcount
                        .store(c + GUP_PIN_COUNTING_BIAS, Ordering::Relaxed);
                } else {
                    page.pin()?;
                }
                // F1: pairs with F2 in `start_page_writeback` (module
                // docs): our bias is visible to its count load, or its bit
                // to our flags load below.
                if !matches!(self.cfg.bug, Some(Bug::GupNoFence | Bug::GupPlainStores)) {
                    fence(Ordering::SeqCst);
                }
                // Acquire pairs with the Release RMW that ended the last
                // writeback (`end_page_writeback`): a pinner that finds
                // writeback over sees what the completion wrote before it,
                // as a pinner that waited for it does (through the wait).
                // F1 orders our bias before this load, not the completion's
                // writes before our later accesses; without the Acquire the
                // fast path would promise less than the slow one
                // (`visibility_pin_barrier_scheme` in `tests/loom_gup.rs`).
                if !page.flags.test_acquire(PG_WRITEBACK) {
                    return Ok(true);
                }
                // Back off: remove the bias (never the last reference: the
                // caller holds one).
                let _ = page.unpin();
                Ok(false)
            }
        }
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
        match self.cfg.gup {
            // Under the page lock (asserted by the caller): the lock
            // orders us against the pinner's critical section.
            PinScheme::Lock => debug_assert!(page.flags.test(PG_LOCKED)),
            PinScheme::Barrier => {
                if self.cfg.bug == Some(Bug::GupPlainStores) {
                    // BUG(GupPlainStores): no fence at all (see the pinner).
                } else if self.cfg.bug == Some(Bug::GupWmbOnly) {
                    // BUG(GupWmbOnly): the seed's `smp_wmb()`. It orders
                    // the bit's store before later stores only; the count
                    // load below may still read the count from before a
                    // concurrent pin while that pinner reads the flags
                    // from before our set. Known-bad only: no correct
                    // model runs this fence.
                    fence(Ordering::Release);
                } else {
                    // F2: pairs with F1 in the barrier pinner.
                    fence(Ordering::SeqCst);
                }
            }
        }
        page.ref_count() >= GUP_PIN_COUNTING_BIAS
    }
}
