//! The known-bad mutations, one function per [`Bug`], each named after its
//! variant and called from the one spot of the correct protocol it mutates
//! (`crate::page_lock`, `crate::wait_table`, `crate::writeback`; search
//! for `bugs::`).
//!
//! Mental model: each function is given the configured bug and returns
//! "not mine" (`None`, `false`) unless it is its own, so the correct code
//! path runs untouched by default. Each comment says what goes wrong, step
//! by step. The functions know nothing of the table: what they must do to
//! it (wake a page) is handed in.
//!
//! Nothing here widens a bug's race window: the kernel's torture catches
//! the bugs whose window is only a few instructions wide because every
//! access to a page's flags word and reference count is a race point
//! ([`crate::race`]), where the kernel's test builds delay at random,
//! whether the access is in correct code or in a bug. A bug gets no more
//! jitter than the correct code it replaces.

use crate::flags::{PG_LOCKED, PG_WAITERS, mask};
use crate::page::Page;
use crate::sync::{AtomicU32, Ordering};
use crate::variant::Bug;
use crate::waitqueue::{WQ_FLAG_DONE, WQ_FLAG_WOKEN};

impl Bug {
    /// Whether the bug replaces `unlock_page` ([`unlock_page`]).
    pub(crate) const fn mutates_unlock(self) -> bool {
        matches!(self, Bug::ClearAfterWake | Bug::NonAtomicFlags)
    }
}

/// [`Bug::TasOutsideLock`], at the top of the exclusive wait loop, before
/// the queue lock: the waiter tries the bit *outside* the lock, and then
/// queues without trying again under it. The owner can unlock between the
/// failed try and our setting of `PG_WAITERS`, see no waiters and wake
/// nobody; we then queue and sleep with the lock free (lost wake-up).
///
/// Returns `None` unless this bug is configured (the correct code then tries
/// under the lock), else whether the bit was taken (the entry is marked
/// done, as the correct try would).
pub(crate) fn tas_outside_lock(
    bug: Option<Bug>,
    page: &Page,
    bit: u32,
    exclusive: bool,
    entry_flags: &AtomicU32,
    flags: u32,
) -> Option<bool> {
    if bug != Some(Bug::TasOutsideLock) || !exclusive {
        return None;
    }
    let got = !page.flags.test_and_set(bit);
    if got {
        // The entry is not queued: nobody else reads its flags.
        entry_flags.store(flags | WQ_FLAG_WOKEN | WQ_FLAG_DONE, Ordering::Relaxed);
    }
    Some(got)
}

/// The bugs that replace `unlock_page` ([`Bug::mutates_unlock`]); `wake`
/// is the table's `wake_page_bit(page, PG_LOCKED)`.
pub(crate) fn unlock_page(bug: Bug, page: &Page, wake: impl FnOnce()) {
    match bug {
        Bug::NonAtomicFlags => non_atomic_flags(page, wake),
        Bug::ClearAfterWake => clear_after_wake(page, wake),
        _ => unreachable!("{bug} does not mutate unlock_page"),
    }
}

/// [`Bug::NonAtomicFlags`]: unlock with a plain load and store instead of
/// one RMW (the `__ClearPageDirty` bug on THP split). A waiter can set
/// `PG_WAITERS` between our load and store, test `PG_LOCKED` (still set),
/// queue and sleep; the store then erases `PG_WAITERS`, and `old` never had
/// it, so nobody wakes the waiter.
fn non_atomic_flags(page: &Page, wake: impl FnOnce()) {
    let old = page.flags.load(Ordering::Relaxed);
    page.flags.store_release_racy(old & !mask(PG_LOCKED));
    if old & mask(PG_WAITERS) != 0 {
        wake();
    }
}

/// [`Bug::ClearAfterWake`]: wake while the bit is still set, then clear it
/// outside the queue lock without re-reading `PG_WAITERS` (the ordering
/// Linus rejected in the seed mail). The exclusive waiter's wake function
/// sees the bit held and stops the walk; after the clear nobody walks again.
fn clear_after_wake(page: &Page, wake: impl FnOnce()) {
    if page.flags.test(PG_WAITERS) {
        wake();
    }
    page.flags.clear_bit_unlock(PG_LOCKED);
}

/// [`Bug::ClearWaitersEarly`], at the end of the wake walk: clear
/// `PG_WAITERS` even though entries of the page remain queued, so the next
/// unlock skips the wake-up. Returns whether to clear regardless.
pub(crate) fn clear_waiters_early(bug: Option<Bug>) -> bool {
    bug == Some(Bug::ClearWaitersEarly)
}

/// [`Bug::EndWritebackNoRef`], in `end_page_writeback`: whether to take the
/// temporary reference across the clear and the wake-up (false only with
/// this bug; see `crate::writeback`).
pub(crate) fn end_writeback_takes_ref(bug: Option<Bug>) -> bool {
    bug != Some(Bug::EndWritebackNoRef)
}

/// [`Bug::NoStableWait`], in `wait_for_stable_page`: skip the wait for
/// writeback to end, so a writer may change the page under the device.
pub(crate) fn skip_stable_wait(bug: Option<Bug>) -> bool {
    bug == Some(Bug::NoStableWait)
}

/// [`Bug::GupPlainStores`], in `start_page_writeback`: set `PG_WRITEBACK`
/// with a plain load and store instead of an atomic (AcqRel) test-and-set.
/// Returns `None` unless this bug is configured, else whether the bit was
/// already set.
pub(crate) fn set_writeback_plain(bug: Option<Bug>, page: &Page) -> Option<bool> {
    if bug != Some(Bug::GupPlainStores) {
        return None;
    }
    let old = page.flags.load(Ordering::Relaxed);
    page.flags
        .store_release_racy(old | mask(crate::flags::PG_WRITEBACK));
    Some(old & mask(crate::flags::PG_WRITEBACK) != 0)
}

/// [`Bug::WritePinnedInPlace`], asked by a writeback that has just started
/// on a page `start_page_writeback` reported maybe pinned: whether to write
/// it from a bounce copy (the correct answer) or from the page itself.
pub fn bounce_pinned_pages(bug: Option<Bug>) -> bool {
    bug != Some(Bug::WritePinnedInPlace)
}

/// [`Bug::SyncNoFlush`], asked by the page cache's `sync` once its writes
/// completed: whether to flush the device's write cache before returning
/// (the correct answer) or return at once.
pub fn sync_flushes(bug: Option<Bug>) -> bool {
    bug != Some(Bug::SyncNoFlush)
}

/// [`Bug::ReadaheadRacyClear`], in `PageWaitTable::test_clear_page_readahead`:
/// the reader tests the mark, and if it is set clears it with a second,
/// separate RMW. Two readers can both test before either clears; both then
/// believe they reached the mark first and start the next window twice.
/// Returns `None` unless this bug is configured, else whether this reader
/// (believes it) took the mark.
pub(crate) fn readahead_racy_clear(bug: Option<Bug>, page: &Page) -> Option<bool> {
    (bug == Some(Bug::ReadaheadRacyClear)).then(|| {
        if page.flags.test(crate::flags::PG_READAHEAD) {
            page.flags.clear(crate::flags::PG_READAHEAD);
            true
        } else {
            false
        }
    })
}

/// [`Bug::SharedWaitRelaxed`], in `PageWaitTable::shared_test`: a shared
/// waiter tests the bit it waits on with a plain Relaxed load. When it
/// sees the bit clear (in `wait_on_page_locked`'s first test, in the try
/// under the queue lock, or in `wait_on_page_writeback`'s loop) and returns
/// without sleeping, nothing orders the clearer's earlier writes before
/// its own later reads: it may read the page (or the I/O result) as it was
/// before the unlock. x86 orders every load as Acquire, so only loom sees
/// this. Returns `None` unless this bug is configured, else whether the
/// bit is set.
pub(crate) fn shared_wait_relaxed(bug: Option<Bug>, page: &Page, bit: u32) -> Option<bool> {
    (bug == Some(Bug::SharedWaitRelaxed)).then(|| page.flags.test(bit))
}
