//! Reference counting on [`Page`], with Linux's rules made into types.
//!
//! Mental model: `refcount == 0` means the frame is free and belongs to the
//! allocator. The allocator moves it 0 → 1 ([`Page::init_ref`]); holders add
//! references with [`Page::get_page`] (I already hold one) or
//! [`Page::try_get`] (GUP: refuse rather than wrap); whoever drops the last
//! one with [`Page::put_page`] is told, through a `#[must_use]` result, to
//! free the frame. A DMA pin ([`Page::pin`]) adds [`GUP_PIN_COUNTING_BIAS`]
//! instead of 1, so [`Page::maybe_dma_pinned`] can guess "pinned" from the
//! count alone (false positives allowed, false negatives not).
//!
//! Rule breaks are reported as [`RefError`] and leave the count unchanged:
//! taking a reference on a free page, dropping one that does not exist, or
//! counting past the overflow limits. That costs a compare-exchange loop
//! instead of one `lock xadd`; the kernel gets a precise report instead of a
//! silently corrupted count.
//!
//! Orderings: increments that succeed are Acquire (they pair with the
//! Release of the put that last freed the frame, so a speculative getter
//! sees the allocator's initialisation); decrements are Release, and the
//! last one adds an Acquire fence, so every holder's accesses happen-before
//! the free (the `Arc` pattern).
//!
//! Every read and every change of the count is followed by a race point
//! ([`crate::race`]: `RefRead`, `RefRmw`), as every access to the flags
//! word is.

use crate::page::Page;
use crate::race::{RacePoint, hit};
use crate::sync::{Ordering, fence};

/// What one DMA pin adds to the count (Linux `GUP_PIN_COUNTING_BIAS`).
pub const GUP_PIN_COUNTING_BIAS: u32 = 1 << 10;
/// [`Page::try_get`] and [`Page::pin`] refuse to raise the count to this
/// value or beyond (Linux 8fde12ca79af: GUP refuses past 2^31).
pub const GUP_REFCOUNT_LIMIT: u32 = 1 << 31;
/// [`Page::get_page`] refuses within this distance of wrapping (Linux
/// `page_ref_zero_or_close_to_overflow`).
pub const REFCOUNT_WRAP_MARGIN: u32 = 127;

/// A broken reference-count rule. The count is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefError {
    /// The page is free (count 0): nobody may take or drop a reference.
    Unused,
    /// The page is in use where a free page was required.
    Busy,
    /// The count would pass its limit.
    Overflow,
    /// An unpin without a matching pin (count below the bias).
    NotPinned,
}

/// The result of dropping a reference.
#[must_use = "on LastReference the caller must free the frame"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Others still hold references.
    StillReferenced,
    /// That was the last reference: free the frame now.
    LastReference,
}

impl Page {
    /// The current count (a racy snapshot).
    pub fn ref_count(&self) -> u32 {
        let c = self.refcount.load(Ordering::Relaxed);
        hit(RacePoint::RefRead);
        c
    }

    /// Allocator hand-out: 0 → 1. Acquire pairs with the Release of the
    /// [`Page::put_page`] that freed the frame.
    pub fn init_ref(&self) -> Result<(), RefError> {
        let r = self
            .refcount
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
            .map_err(|_| RefError::Busy);
        hit(RacePoint::RefRmw);
        r
    }

    /// Adds `n` unless the page is free or the result would exceed `limit`.
    /// Returns the new count.
    fn add_checked(&self, n: u32, limit: u32) -> Result<u32, RefError> {
        let mut old = self.refcount.load(Ordering::Relaxed);
        loop {
            if old == 0 {
                return Err(RefError::Unused);
            }
            let new = old
                .checked_add(n)
                .filter(|&new| new <= limit)
                .ok_or(RefError::Overflow)?;
            // Acquire: see module docs.
            match self.refcount.compare_exchange_weak(
                old,
                new,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    hit(RacePoint::RefRmw);
                    return Ok(new);
                }
                Err(now) => old = now,
            }
        }
    }

    /// `get_page`: one more reference for a caller that already holds one.
    /// A free page is a caught bug ([`RefError::Unused`]).
    pub fn get_page(&self) -> Result<u32, RefError> {
        self.add_checked(1, u32::MAX - REFCOUNT_WRAP_MARGIN)
    }

    /// `try_get_page` / GUP: like [`Page::get_page`] but refuses once the
    /// count would reach 2^31, long before it could wrap, and also works as
    /// a speculative get (`get_page_unless_zero`) on a page that may be
    /// freed concurrently.
    pub fn try_get(&self) -> Result<u32, RefError> {
        self.add_checked(1, GUP_REFCOUNT_LIMIT - 1)
    }

    /// `put_page`: drops one reference. Dropping on a free page is a caught
    /// bug. On [`PutOutcome::LastReference`] the caller frees the frame.
    pub fn put_page(&self) -> Result<PutOutcome, RefError> {
        self.sub_checked(1, RefError::Unused)
    }

    fn sub_checked(&self, n: u32, short: RefError) -> Result<PutOutcome, RefError> {
        let mut old = self.refcount.load(Ordering::Relaxed);
        loop {
            if old == 0 {
                return Err(RefError::Unused);
            }
            if old < n {
                return Err(short);
            }
            // Release pairs with the Acquire fence below in whichever thread
            // drops the last reference.
            match self.refcount.compare_exchange_weak(
                old,
                old - n,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) if old == n => {
                    // Pairs with the Release decrements of every other
                    // holder: their accesses happen-before our free.
                    fence(Ordering::Acquire);
                    hit(RacePoint::RefRmw);
                    return Ok(PutOutcome::LastReference);
                }
                Ok(_) => {
                    hit(RacePoint::RefRmw);
                    return Ok(PutOutcome::StillReferenced);
                }
                Err(now) => old = now,
            }
        }
    }

    /// FOLL_PIN on a small page: adds [`GUP_PIN_COUNTING_BIAS`]. The caller
    /// must already hold a reference (count > 0); refuses past 2^31.
    pub fn pin(&self) -> Result<u32, RefError> {
        self.add_checked(GUP_PIN_COUNTING_BIAS, GUP_REFCOUNT_LIMIT - 1)
    }

    /// Drops one pin. Unpinning below the bias is a caught bug.
    pub fn unpin(&self) -> Result<PutOutcome, RefError> {
        self.sub_checked(GUP_PIN_COUNTING_BIAS, RefError::NotPinned)
    }

    /// `page_maybe_dma_pinned`: the unsigned count is at least the bias.
    /// True while any pin is held; may also be true for a page with 1024+
    /// ordinary references. A Relaxed snapshot: callers that must not miss
    /// a concurrent pin need their own barrier pairing.
    pub fn maybe_dma_pinned(&self) -> bool {
        self.ref_count() >= GUP_PIN_COUNTING_BIAS
    }

    /// Overwrites the count.
    ///
    /// # Safety
    ///
    /// Nobody else may take or drop references meanwhile: a page not yet
    /// published (boot, tests), or one whose every other holder is known to
    /// be quiet. A store over a concurrent get or put loses it.
    pub unsafe fn set_ref_count_unshared(&self, count: u32) {
        self.refcount.store(count, Ordering::Relaxed);
    }

    /// `page_ref_freeze`: if exactly `expected` references exist, take the
    /// count to 0 in one compare-exchange and return true. While frozen,
    /// [`Page::try_get`] and [`Page::get_page`] fail with
    /// [`RefError::Unused`], so the caller owns the page alone (to free it,
    /// or to move it). Acquire on success pairs with the Release decrements
    /// of the holders that brought the count down to `expected`: their
    /// accesses happen-before ours.
    pub fn ref_freeze(&self, expected: u32) -> bool {
        let frozen = expected != 0
            && self
                .refcount
                .compare_exchange(expected, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        hit(RacePoint::RefRmw);
        frozen
    }

    /// `page_ref_unfreeze`: give a frozen page `count` references again.
    /// Release pairs with the Acquire of the next successful get, which
    /// then sees what the freezer did.
    ///
    /// # Panics
    ///
    /// If the page is not frozen (count not 0): unfreezing would overwrite
    /// somebody's reference.
    pub fn ref_unfreeze(&self, count: u32) {
        let old = self.refcount.swap(count, Ordering::Release);
        hit(RacePoint::RefRmw);
        assert_eq!(old, 0, "ref_unfreeze on a page that was not frozen");
    }

    /// The number of page-table mappings.
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Relaxed)
    }

    /// One more page-table mapping; returns the new count.
    pub fn map_inc(&self) -> i32 {
        self.mapcount.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// One mapping fewer; returns the new count (negative is a bug the
    /// caller should report).
    pub fn map_dec(&self) -> i32 {
        self.mapcount.fetch_sub(1, Ordering::Relaxed) - 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn set(p: &Page, count: u32) {
        // SAFETY: the page is this test's alone.
        unsafe { p.set_ref_count_unshared(count) };
    }

    #[test]
    fn free_page_rules() {
        let p = Page::new();
        assert_eq!(p.get_page(), Err(RefError::Unused));
        assert_eq!(p.try_get(), Err(RefError::Unused));
        assert_eq!(p.put_page(), Err(RefError::Unused));
        assert_eq!(p.pin(), Err(RefError::Unused));
        assert_eq!(p.ref_count(), 0);
        p.init_ref().unwrap();
        assert_eq!(p.init_ref(), Err(RefError::Busy));
        assert_eq!(p.get_page(), Ok(2));
        assert_eq!(p.put_page(), Ok(PutOutcome::StillReferenced));
        assert_eq!(p.put_page(), Ok(PutOutcome::LastReference));
        assert_eq!(p.ref_count(), 0);
    }

    #[test]
    fn freeze_and_unfreeze() {
        let p = Page::new();
        assert!(!p.ref_freeze(0));
        p.init_ref().unwrap();
        p.get_page().unwrap();
        assert!(!p.ref_freeze(1), "two references, expected one");
        assert_eq!(p.ref_count(), 2);
        assert!(p.ref_freeze(2));
        assert_eq!(p.try_get(), Err(RefError::Unused));
        assert_eq!(p.get_page(), Err(RefError::Unused));
        p.ref_unfreeze(1);
        assert_eq!(p.ref_count(), 1);
        assert_eq!(p.put_page(), Ok(PutOutcome::LastReference));
    }

    #[test]
    #[should_panic(expected = "not frozen")]
    fn unfreeze_of_a_live_page_panics() {
        let p = Page::new();
        p.init_ref().unwrap();
        p.ref_unfreeze(1);
    }

    #[test]
    fn overflow_limits() {
        let p = Page::new();
        set(&p, GUP_REFCOUNT_LIMIT - 2);
        assert_eq!(p.try_get(), Ok(GUP_REFCOUNT_LIMIT - 1));
        assert_eq!(p.try_get(), Err(RefError::Overflow));
        // get_page still works past 2^31 (a holder's own reference) ...
        assert!(p.get_page().is_ok());
        // ... until it comes within the wrap margin.
        set(&p, u32::MAX - REFCOUNT_WRAP_MARGIN - 1);
        assert!(p.get_page().is_ok());
        assert_eq!(p.get_page(), Err(RefError::Overflow));
        assert_eq!(p.ref_count(), u32::MAX - REFCOUNT_WRAP_MARGIN);
        set(&p, GUP_REFCOUNT_LIMIT - GUP_PIN_COUNTING_BIAS);
        assert_eq!(p.pin(), Err(RefError::Overflow));
    }

    #[test]
    fn pin_bias() {
        let p = Page::new();
        p.init_ref().unwrap();
        assert!(!p.maybe_dma_pinned());
        assert_eq!(p.pin(), Ok(1 + GUP_PIN_COUNTING_BIAS));
        assert!(p.maybe_dma_pinned());
        assert_eq!(p.unpin(), Ok(PutOutcome::StillReferenced));
        assert!(!p.maybe_dma_pinned());
        assert_eq!(p.ref_count(), 1);
        assert_eq!(p.unpin(), Err(RefError::NotPinned));
        // 1024 plain references look pinned: false positives are allowed.
        set(&p, GUP_PIN_COUNTING_BIAS);
        assert!(p.maybe_dma_pinned());
        // The unsigned view stays right past 2^31.
        set(&p, GUP_REFCOUNT_LIMIT + 5);
        assert!(p.maybe_dma_pinned());
        set(&p, GUP_PIN_COUNTING_BIAS);
        assert_eq!(p.unpin(), Ok(PutOutcome::LastReference));
    }

    #[test]
    fn mapcount() {
        let p = Page::new();
        assert_eq!(p.map_inc(), 1);
        assert_eq!(p.map_dec(), 0);
        assert_eq!(p.mapcount(), 0);
    }
}
