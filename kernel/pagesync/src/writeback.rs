//! The writeback side of a page: dirty, writeback, stable pages, and the
//! end of a read.
//!
//! Mental model (Linux `mm/page-writeback.c` and `mm/filemap.c`, 6.7+):
//! a dirty page is written back by its flusher in three steps, the first
//! two under the page lock:
//!
//! 1. [`PageWaitTable::clear_page_dirty_for_io`]: the data as of now is
//!    what will be written; a later write dirties the page again (the
//!    caller first moves dirtiness from page tables into `PG_DIRTY`).
//! 2. [`PageWaitTable::start_page_writeback`]: test-and-set
//!    `PG_WRITEBACK` (an AcqRel RMW), then read the pin state, which it
//!    returns; what orders the set before that read is the pin scheme's
//!    business (the page lock, or the fence F2 of `crate::pin`). `PG_WRITEBACK` is only ever *set* with the page lock held,
//!    the rule that lets its clear use the unlock trick below.
//! 3. unlock, submit the I/O. On completion, usually in interrupt context,
//!    [`PageWaitTable::end_page_writeback`] clears `PG_WRITEBACK` and wakes
//!    its waiters.
//!
//! Ending writeback is the unlock of `PG_WRITEBACK`: one RMW clears the bit
//! and reads `PG_WAITERS`, so a waiter that set `PG_WAITERS` under the queue
//! lock and then found the bit set is always woken (the same argument as
//! for the page lock in `crate::page_lock`):
//!
//! ```text
//! waiter (queue lock held)               end of writeback (IRQ)
//! set PG_WAITERS              (RMW 1)    get_page (temporary reference)
//! test PG_WRITEBACK: set -> queue        xor PG_WRITEBACK -> old  (RMW 2)
//! unlock queue, sleep                    old has PG_WAITERS: lock queue,
//!                                        wake (page, PG_WRITEBACK) entries
//!                                        put_page
//! ```
//!
//! The temporary reference is Linux's fix 073861ed77b6: writeback holds no
//! reference of its own, so as soon as the bit is clear a truncation that
//! was waiting for it may free the page, and the allocator may hand it out
//! again, while the waker still has the walk to do. With a stale
//! `PG_WAITERS` the walk then runs on a page that belongs to somebody else
//! (Linux saw `BUG_ON(PageWriteback)` and `VM_BUG_ON(PageTail)`). The
//! known-bad [`crate::Bug::EndWritebackNoRef`] drops the reference, and the
//! waker's "I hold a reference" check in `wake_page_bit` catches it.
//!
//! Waiting: [`PageWaitTable::wait_on_page_writeback`] loops, because
//! without the page lock the page can go back under writeback as soon as
//! the bit clears. With the page lock held it cannot (only lock holders set
//! the bit), so a locked caller that returns from the wait sees the bit
//! clear until it unlocks. [`PageWaitTable::wait_for_stable_page`] is that
//! wait for writers: a page under writeback must not change, so the device
//! never sees it change while it is being written (stable pages; our
//! devices always ask for them).
//!
//! I/O errors: a failed write leaves the page dirty and `PG_ERROR` set for
//! a retry; both are set before the Release RMW that ends writeback, so a
//! waiter that sees the bit clear (Acquire) also sees them. Nothing is
//! lost, and the waiters are woken as on success.
//!
//! Reads: [`PageWaitTable::end_page_read`] is `folio_end_read`: the page was
//! locked (and not up to date) for the read; one XOR unlocks it and, if
//! the read succeeded, marks it up to date, and reports waiters.

use crate::flags::{PG_DIRTY, PG_ERROR, PG_LOCKED, PG_UPTODATE, PG_WAITERS, PG_WRITEBACK};
use crate::page::Page;
use crate::platform::Platform;
use crate::refcount::PutOutcome;
use crate::variant::bugs;
use crate::wait_table::PageWaitTable;
use crate::waitqueue::Interrupted;

/// What [`PageWaitTable::start_page_writeback`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a page that may be DMA-pinned must not be written from its own memory"]
pub struct WritebackStart {
    /// The page may have a DMA pin (`page_maybe_dma_pinned` after the bit
    /// was set): a device may write into it while it is being written out.
    pub maybe_pinned: bool,
}

/// How the write of a page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// The device has the data.
    Written,
    /// The device reported an error: keep the page dirty for a retry.
    Failed,
}

impl<P: Platform> PageWaitTable<P> {
    /// `folio_mark_dirty` (the flag part): returns true if the page was
    /// clean. An AcqRel test-and-set: a dirtier that holds the page
    /// lock publishes its data by its unlock, one without it (a DMA
    /// completion) by this RMW's Release half, which the Acquire half of
    /// [`Self::clear_page_dirty_for_io`] pairs with
    /// (`loom_pagecache::visibility_lockless_dirtier`).
    pub fn set_page_dirty(&self, page: &Page) -> bool {
        !page.flags.test_and_set(PG_DIRTY)
    }

    /// `folio_mark_uptodate`: the caller wrote the whole page (holding the
    /// page lock, or before anyone else can see the page) and now declares
    /// its contents valid. Release, as Linux's `smp_wmb()` before the bit:
    /// readers test `PG_UPTODATE` with Acquire and then read the page
    /// without the lock (`filemap_read`), so they must see the data the bit
    /// vouches for.
    pub fn mark_page_uptodate(&self, page: &Page) {
        page.flags.set_release(PG_UPTODATE);
    }

    /// `folio_clear_dirty_for_io`: the caller holds the page lock and has
    /// already moved page-table dirtiness into `PG_DIRTY` (and write-
    /// protected the mappings). Returns whether the page was dirty, i.e.
    /// whether it must be written.
    ///
    /// # Panics
    ///
    /// If the page is not locked.
    pub fn clear_page_dirty_for_io(&self, page: &Page) -> bool {
        assert!(
            page.flags.test(PG_LOCKED),
            "clear_page_dirty_for_io: page {:#x} not locked",
            page.addr()
        );
        page.flags.test_and_clear(PG_DIRTY)
    }

    /// `__folio_start_writeback`: the caller holds the page lock. Sets
    /// `PG_WRITEBACK` with an AcqRel test-and-set, then reads whether the
    /// page may be DMA-pinned, ordered against a concurrent pinner as the
    /// configured scheme requires (`crate::pin`: the AcqRel RMW alone does
    /// not order its store before that load).
    ///
    /// # Panics
    ///
    /// If the page is not locked or already under writeback (a locked
    /// caller waits for writeback to end before starting it again).
    pub fn start_page_writeback(&self, page: &Page) -> WritebackStart {
        assert!(
            page.flags.test(PG_LOCKED),
            "start_page_writeback: page {:#x} not locked",
            page.addr()
        );
        // AcqRel: its Release half orders everything the flusher did to
        // the page before (under the lock) before the set; its Acquire
        // half orders later accesses after the read of the old bit. It
        // does not order the set (a store) before the pin-state load that
        // follows: that is F2's job under gup=barrier (a SeqCst fence) and
        // the page lock's under gup=lock (`crate::pin`).
        let was_set = bugs::set_writeback_plain(self.cfg.bug, page)
            .unwrap_or_else(|| page.flags.test_and_set(PG_WRITEBACK));
        assert!(
            !was_set,
            "start_page_writeback: page {:#x} already under writeback",
            page.addr()
        );
        WritebackStart {
            maybe_pinned: self.pin_state_after_writeback_set(page),
        }
    }

    /// `folio_end_writeback`, with the I/O result. May run in interrupt
    /// context. Holds a temporary reference across the clear and the
    /// wake-up (module docs; Linux 073861ed77b6). On `LastReference` the
    /// caller frees the page.
    ///
    /// # Panics
    ///
    /// If the page is not under writeback, or has no reference to take
    /// (count 0, or at the overflow limit). A page under writeback always
    /// has one (its owner's), so this is a kernel bug; returning instead
    /// would leave `PG_WRITEBACK` set and its waiters asleep for ever.
    pub fn end_page_writeback(&self, page: &Page, result: WriteResult) -> PutOutcome {
        assert!(
            page.flags.test(PG_WRITEBACK),
            "end_page_writeback: page {:#x} not under writeback",
            page.addr()
        );
        let took_ref = bugs::end_writeback_takes_ref(self.cfg.bug);
        if took_ref && let Err(e) = page.get_page() {
            panic!(
                "end_page_writeback: page {:#x} is under writeback but its reference count ({}) \
                 cannot take the temporary reference ({e:?}); PG_writeback would stay set \
                 and its waiters would sleep for ever",
                page.addr(),
                page.ref_count()
            );
        }
        if result == WriteResult::Failed {
            // Before the Release RMW below: a waiter that sees writeback
            // over sees the page dirty again and the error.
            page.flags.set(PG_ERROR);
            page.flags.set(PG_DIRTY);
        }
        // `clear_bit_and_wake`, written out so that the known-bad variant
        // can skip the reference. Release pairs with the Acquire test in
        // `wait_on_page_writeback`.
        let waiters = page.flags.xor_unlock_is_negative_byte(1 << PG_WRITEBACK);
        if waiters {
            self.wake_page_bit(page, PG_WRITEBACK);
        }
        if !took_ref {
            return PutOutcome::StillReferenced;
        }
        page.put_page()
            .expect("end_page_writeback: the reference taken above vanished")
    }

    /// `folio_wait_writeback`: loop until `PG_WRITEBACK` is clear (it may be
    /// set again after a wake-up unless the caller holds the page lock).
    pub fn wait_on_page_writeback(&self, page: &Page) {
        // Acquire (`shared_test`) pairs with the Release RMW that ended
        // writeback: the error and dirty bits it set are visible, and so is
        // whatever the completion wrote before.
        while self.shared_test(page, PG_WRITEBACK) {
            self.wait_on_page_bit(page, PG_WRITEBACK);
        }
    }

    /// `folio_wait_writeback_killable`.
    pub fn wait_on_page_writeback_killable(&self, page: &Page) -> Result<(), Interrupted> {
        // Acquire: as in `wait_on_page_writeback`.
        while self.shared_test(page, PG_WRITEBACK) {
            self.wait_on_page_bit_killable(page, PG_WRITEBACK)?;
        }
        Ok(())
    }

    /// `folio_wait_stable`: a writer about to change a locked page waits
    /// until it is not being written out (module docs). The caller holds
    /// the page lock, so writeback cannot start again before it unlocks.
    ///
    /// # Panics
    ///
    /// If the page is not locked (the wait would guarantee nothing).
    pub fn wait_for_stable_page(&self, page: &Page) {
        assert!(
            page.flags.test(PG_LOCKED),
            "wait_for_stable_page: page {:#x} not locked",
            page.addr()
        );
        if bugs::skip_stable_wait(self.cfg.bug) {
            return;
        }
        self.wait_on_page_writeback(page);
    }

    /// `folio_end_read`: the read into a locked, not-up-to-date page ended.
    /// One Release XOR unlocks the page and, if `ok`, marks it up to date;
    /// waiters (readers in `wait_on_page_locked`, lockers) are woken. A
    /// reader that then sees the page unlocked (Acquire) sees the data
    /// and `PG_UPTODATE`.
    ///
    /// # Panics
    ///
    /// If the page is not locked or already up to date.
    pub fn end_page_read(&self, page: &Page, ok: bool) {
        assert!(
            page.flags.test(PG_LOCKED) && !page.flags.test(PG_UPTODATE),
            "end_page_read: page {:#x} not locked, or already up to date",
            page.addr()
        );
        let mask = if ok {
            (1 << PG_LOCKED) | (1 << PG_UPTODATE)
        } else {
            1 << PG_LOCKED
        };
        // Release pairs with the Acquire of the next locker or of a reader
        // that sees the lock clear; bit 7 reports waiters (crate::flags).
        if page.flags.xor_unlock_is_negative_byte(mask) {
            self.wake_page_bit(page, PG_LOCKED);
        }
    }

    /// Clears `bit` (which must be set, and must be set only by holders of
    /// the page lock) and wakes its waiters, in one RMW that also reads
    /// `PG_WAITERS` (Linux `folio_xor_flags_has_waiters`). May run in
    /// interrupt context. The caller holds a reference on the page.
    pub fn clear_bit_and_wake(&self, page: &Page, bit: u32) {
        assert!(
            bit < PG_WAITERS,
            "clear_bit_and_wake: bit {bit} not below PG_WAITERS"
        );
        assert!(
            page.flags.test(bit),
            "clear_bit_and_wake: bit {bit} of {:#x} clear",
            page.addr()
        );
        // Release pairs with the Acquire test in the waiter's check (and
        // `wait_on_page_writeback`'s loop).
        if page.flags.xor_unlock_is_negative_byte(1 << bit) {
            self.wake_page_bit(page, bit);
        }
    }
}
