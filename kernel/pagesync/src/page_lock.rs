//! Sleeping on page bits: the page lock, writeback waits and hand-off.
//!
//! Mental model (Linux 5.9+ `folio_wait_bit_common`): a waiter decides
//! "take the bit now, or queue" *inside* the queue's critical section, right
//! after setting `PG_WAITERS`. An unlocker clears the bit and reads
//! `PG_WAITERS` in one RMW; if it saw the bit it takes the same queue lock
//! to wake. So either the waiter's try sees the bit free, or the unlocker's
//! RMW sees `PG_WAITERS` and its walk runs after the waiter is queued. Both
//! cannot miss each other:
//!
//! ```text
//! waiter (queue lock held)             unlocker
//! set PG_WAITERS           (RMW 1)     xor PG_LOCKED -> old   (RMW 2)
//! test_and_set PG_LOCKED   (RMW 3)     if old has PG_WAITERS: lock queue, walk
//! fails -> queue at tail, unlock
//! ```
//! RMW 1 and RMW 2 are ordered on one word: if 2 comes first, 3 (later in
//! the waiter's program) sees the lock free; if 1 comes first, 2 sees
//! `PG_WAITERS`, and the walk needs the lock the waiter holds until queued.
//!
//! Waking happens in `wake_page_function`, under the queue lock. For an
//! exclusive (lock) waiter it stops the walk if the bit is held again (the
//! new owner will wake the next one). If the waiter has asked for a
//! hand-off (`WQ_FLAG_CUSTOM`, after `unfairness` lost races) it takes the
//! bit *for* the waiter and says so with `WQ_FLAG_DONE`. A woken waiter
//! never re-queues while it holds a hand-off; without one it races once for
//! the bit and re-queues at the tail if it loses.
//!
//! This file is Linux 6.7+ alone (registered as `protocol=linux-5.9` in
//! `crate::variant::linux_5_9`). The other protocols live in
//! `crate::variant`, one file each; each known-bad
//! [`crate::Bug`] is a function named after it in `crate::variant::bugs`,
//! called from the one spot it mutates here (search for `bugs::`).

use core::pin::pin;

use crate::flags::PG_LOCKED;
use crate::page::Page;
use crate::platform::Platform;
use crate::race::RacePoint;
use crate::refcount::PutOutcome;
use crate::sync::Ordering;
use crate::variant::bugs;
use crate::wait_table::{PageBit, PageKind, PageWaitTable, WaitPageKey};
use crate::waitqueue::{
    FinishWait, Interrupted, LockedQueue, WQ_FLAG_CUSTOM, WQ_FLAG_DONE, WQ_FLAG_EXCLUSIVE,
    WQ_FLAG_WOKEN, WaitEntry,
};

/// A page waiter's entry.
pub(crate) type PageEntry<P> = WaitEntry<P, PageKind>;

/// What a waiter wants (Linux `enum behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    /// Take the bit (lock).
    Exclusive,
    /// Wait for the bit to clear.
    Shared,
    /// Like `Shared`, but drop the caller's page reference once queued and
    /// never touch the page again.
    Drop,
}

/// Whether the entry's (page, bit) is the walk's; records a page match.
///
/// # Safety
///
/// `entry` is live.
pub(crate) unsafe fn wake_page_match<P: Platform>(
    entry: *const PageEntry<P>,
    key: &mut WaitPageKey,
) -> bool {
    // SAFETY: caller.
    let PageBit { page, bit } = unsafe { (*entry).key() };
    if page != key.page {
        return false;
    }
    key.page_match = true;
    bit == key.bit
}

/// The opening every page wake function shares (the head of Linux's
/// `wake_page_function`): `Err(0)` if the entry waits for another (page,
/// bit), `Err(-1)` (stop the walk) if the bit was taken again since it
/// was cleared and the entry is exclusive, or any entry when `any_waiter`
/// (the pre-5.9 rule): the new owner's unlock walks again. Otherwise the
/// entry's flags.
///
/// # Safety
///
/// As for [`crate::waitqueue::WakeFn`]: the entry is linked in the queue
/// whose lock the walk holds, and the walk's page is live.
pub(crate) unsafe fn wake_page_begin<P: Platform>(
    entry: *const PageEntry<P>,
    key: &mut WaitPageKey,
    any_waiter: bool,
) -> Result<u32, i32> {
    // SAFETY: caller.
    unsafe {
        if !wake_page_match(entry, key) {
            return Err(0);
        }
        let flags = (*entry).flags().load(Ordering::Relaxed);
        // A handing walk's bit is set on purpose: it is the one handed.
        if !key.handing
            && (any_waiter || flags & WQ_FLAG_EXCLUSIVE != 0)
            && (*key.page).flags.test(key.bit)
        {
            return Err(-1);
        }
        Ok(flags)
    }
}

/// `wake_page_function`, run by the waker under the queue lock.
///
/// # Safety
///
/// As for [`crate::waitqueue::WakeFn`]; the walk's page is live (its waker
/// holds a reference).
pub(crate) unsafe fn wake_page_function<P: Platform>(
    q: &mut LockedQueue<'_, P, PageKind>,
    entry: *const PageEntry<P>,
    key: &mut WaitPageKey,
) -> i32 {
    // SAFETY: the entry is linked in `q`, so live until we unlink it below;
    // the page is live (caller).
    unsafe {
        // An exclusive waiter whose bit somebody took since it was cleared
        // stays queued: the taker will unlock and walk again.
        let mut flags = match wake_page_begin(entry, key, false) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let page = &*key.page;
        if flags & WQ_FLAG_EXCLUSIVE != 0 {
            if key.handing {
                // The waker holds the bit for the first exclusive waiter
                // (`WaitPageKey::handing`): it is ours already. Nothing
                // here orders the waker's critical section before ours
                // but the Release store of DONE below, which the waiter's
                // Acquire loads of its flags (and `finish_wait`'s Acquire
                // against `del_init_careful`'s Release) pair with: for this
                // hand-off those are not redundant.
                key.handing = false;
                flags |= WQ_FLAG_DONE;
                (*entry)
                    .handed_at
                    .store(P::now_ns().max(1), core::sync::atomic::Ordering::Relaxed);
            } else if flags & WQ_FLAG_CUSTOM != 0 {
                // Hand-off: take the bit for the waiter. AcqRel: Acquire
                // pairs with the unlocker's Release xor (the previous
                // critical section happens-before the waiter's, through the
                // Release store of DONE below).
                if page.flags.test_and_set(key.bit) {
                    return -1;
                }
                flags |= WQ_FLAG_DONE;
                // The hand-off's time, for its idle-time statistics
                // (`crate::stats`); published by the Release store below.
                (*entry)
                    .handed_at
                    .store(P::now_ns().max(1), core::sync::atomic::Ordering::Relaxed);
            }
        }
        // Release pairs with the waiter's Acquire load of its flags (in the
        // wait loop, or after finish_wait): seeing WOKEN|DONE, it sees the
        // bit taken on its behalf. Redundant: the waiter returns only
        // after `finish_wait`, whose `list_empty_careful` Acquire pairs
        // with the Release in `del_init_careful` below (or which takes the
        // queue lock this walk holds), and both come after this store and
        // the hand-off's test-and-set; `cargo xtask orderings` finds the
        // weakening passing every model, and weakening it together with
        // that Acquire caught (`--mutations`). Kept as Linux keeps it
        // (`smp_store_release` in `wake_page_function`).
        (*entry)
            .flags()
            .store(flags | WQ_FLAG_WOKEN, Ordering::Release);
        P::race_point(RacePoint::WakeChosen);
        P::wake((*entry).thread());
        P::race_point(RacePoint::WakeBeforeUnlink);
        // Last touch of the entry: after this the waiter may return.
        q.del_init_careful(entry);
        i32::from(flags & WQ_FLAG_EXCLUSIVE != 0)
    }
}

/// `folio_trylock_flag`, under the queue lock, on an unqueued entry: take
/// (exclusive) or check (shared) the bit; on success mark the entry done.
fn trylock_flag<P: Platform>(
    table: &PageWaitTable<P>,
    page: &Page,
    bit: u32,
    entry: &PageEntry<P>,
) -> bool {
    let flags = entry.flags().load(Ordering::Relaxed);
    if flags & WQ_FLAG_EXCLUSIVE != 0 {
        // AcqRel: Acquire pairs with the previous owner's Release unlock.
        if page.flags.test_and_set(bit) {
            return false;
        }
    } else if table.shared_test(page, bit) {
        return false;
    }
    entry
        .flags()
        .store(flags | WQ_FLAG_WOKEN | WQ_FLAG_DONE, Ordering::Relaxed);
    true
}

pub(crate) fn drop_ref(page: &Page, free: impl FnOnce(&Page)) {
    match page.put_page() {
        Ok(PutOutcome::StillReferenced) => {}
        Ok(PutOutcome::LastReference) => free(page),
        Err(e) => panic!(
            "put_and_wait_on_page_locked on page {:#x}: {e:?}",
            page.addr()
        ),
    }
}

impl<P: Platform> PageWaitTable<P> {
    /// A shared waiter's test of the bit it waits on (`folio_test_locked`
    /// in `folio_wait_locked`, the test in `folio_trylock_flag`, the loop
    /// test of `folio_wait_writeback`): true if the bit is still set.
    /// Acquire pairs with the Release RMW that cleared the bit (the unlock
    /// XOR, the end of writeback or of a read): a shared waiter that sees
    /// the bit clear sees everything its clearer wrote before, which is the
    /// promise of every shared wait (`tests/loom_pagelock.rs` and `tests/loom_pagecache.rs`). The one
    /// spot of the known-bad [`crate::Bug::SharedWaitRelaxed`].
    #[inline]
    pub(crate) fn shared_test(&self, page: &Page, bit: u32) -> bool {
        bugs::shared_wait_relaxed(self.cfg.bug, page, bit)
            .unwrap_or_else(|| page.flags.test_acquire(bit))
    }

    /// `folio_wait_bit_common`: the configured protocol's wait
    /// (`crate::variant::Protocol`).
    #[cold]
    #[inline(never)]
    fn wait_bit_common(
        &self,
        page: &Page,
        bit: u32,
        behavior: Behavior,
        killable: bool,
        free: Option<impl FnOnce(&Page)>,
    ) -> Result<(), Interrupted> {
        self.cfg
            .protocol
            .wait(self, page, bit, behavior, killable, free)
    }

    /// `folio_wait_bit_common`, the 5.9+ algorithm (module docs).
    pub(crate) fn wait_bit_handoff(
        &self,
        page: &Page,
        bit: u32,
        behavior: Behavior,
        killable: bool,
        mut free: Option<impl FnOnce(&Page)>,
    ) -> Result<(), Interrupted> {
        let q = self.queue(page);
        let entry = pin!(PageEntry::<P>::new(
            wake_page_function::<P>,
            PageBit::new(page, bit)
        ));
        let entry = entry.as_ref();
        let finish = FinishWait { q, entry };
        let mut unfairness = i64::from(self.cfg.unfairness);
        'repeat: loop {
            let mut flags = 0;
            if behavior == Behavior::Exclusive {
                flags = WQ_FLAG_EXCLUSIVE;
                unfairness -= 1;
                if unfairness < 0 {
                    flags |= WQ_FLAG_CUSTOM;
                }
            }
            // The entry is not queued by us here: it was never queued, or a
            // waker set WOKEN and unlinks it. That waker may not have
            // reached its unlink yet, but it reads no flags after setting
            // WOKEN, and we link the entry again only under the queue lock,
            // which the waker holds until its walk is over. So nobody reads
            // this store before the lock below publishes it.
            entry.flags().store(flags, Ordering::Relaxed);
            let early = bugs::tas_outside_lock(
                self.cfg.bug,
                page,
                bit,
                behavior == Behavior::Exclusive,
                entry.flags(),
                flags,
            );
            P::race_point(RacePoint::WaitBeforeQueueLock);
            {
                let mut locked = q.lock();
                // First PG_WAITERS, then the try (module docs).
                self.claim_waiters(page);
                let done = early.unwrap_or_else(|| trylock_flag(self, page, bit, &entry));
                if !done {
                    P::race_point(RacePoint::WaitBeforeQueue);
                    // SAFETY: `finish` unlinks the entry before it drops.
                    unsafe { locked.add_tail(entry) };
                }
            }
            P::race_point(RacePoint::WaitQueued);
            if behavior == Behavior::Drop
                && let Some(free) = free.take()
            {
                drop_ref(page, free);
            }
            loop {
                P::prepare_to_sleep();
                P::race_point(RacePoint::WaitBeforeCheck);
                // Acquire pairs with the Release store in
                // `wake_page_function`. Redundant: after seeing WOKEN the
                // waiter either races for the bit itself (an AcqRel
                // test-and-set) or leaves through `finish_wait`, which
                // synchronizes with the waker's `del_init_careful` (see
                // there); `cargo xtask orderings` finds the weakening
                // passing every model.
                let flags = entry.flags().load(Ordering::Acquire);
                if flags & WQ_FLAG_WOKEN == 0 {
                    if killable && P::cancel_pending() {
                        break 'repeat;
                    }
                    P::sleep();
                    continue;
                }
                if behavior != Behavior::Exclusive || flags & WQ_FLAG_DONE != 0 {
                    break 'repeat;
                }
                P::race_point(RacePoint::WokenBeforeRace);
                // Woken without a hand-off: race for the bit once. AcqRel:
                // Acquire pairs with the unlocker's Release.
                if page.flags.test_and_set(bit) {
                    continue 'repeat;
                }
                entry.flags().fetch_or(WQ_FLAG_DONE, Ordering::Relaxed);
                break 'repeat;
            }
        }
        P::race_point(RacePoint::WaitBeforeFinish);
        drop(finish);
        // Only now are the flags final: a waker may have chosen us between
        // our last look and finish_wait. Acquire pairs with its Release.
        // Redundant: `finish_wait` just ordered us after that waker (its
        // `list_empty_careful` Acquire against the waker's
        // `del_init_careful`, or the queue lock), and the waker's flags
        // store precedes both; `cargo xtask orderings` finds the weakening
        // passing every model.
        let flags = entry.flags().load(Ordering::Acquire);
        if behavior == Behavior::Exclusive {
            if flags & WQ_FLAG_DONE != 0 {
                // A hand-off: the lock was ours, idle, from the waker's
                // stamp until now (`crate::stats`).
                let at = entry.handed_at.load(core::sync::atomic::Ordering::Relaxed);
                if at != 0 {
                    self.handoffs.record(P::now_ns().saturating_sub(at));
                }
                // Includes a hand-off that raced with cancellation: we own
                // the bit and report success, as Linux does.
                return Ok(());
            }
            if flags & WQ_FLAG_WOKEN != 0 && self.cfg.killable_fix {
                // THE KILLABLE WINDOW. We saw no WOKEN, saw the cancel and
                // left the loop; then an unlocker chose us (WOKEN without
                // DONE) and stopped its walk, using up the one exclusive
                // wake-up. Returning Interrupted now would leave the next
                // waiter asleep with the bit free until somebody else locks
                // and unlocks. Pass the wake-up on: the walk wakes the next
                // waiter if the bit is free, and stops harmlessly if a new
                // owner holds it (that owner's unlock will wake).
                self.wake_page_bit(page, bit);
            }
            return Err(Interrupted);
        }
        if flags & WQ_FLAG_WOKEN != 0 {
            Ok(())
        } else {
            Err(Interrupted)
        }
    }

    /// `folio_trylock`: take the page lock if it is free, without sleeping.
    #[inline]
    pub fn trylock_page(&self, page: &Page) -> bool {
        !page.flags.test_and_set_bit_lock(PG_LOCKED)
    }

    /// `folio_lock`: take the page lock, sleeping uninterruptibly.
    #[inline]
    pub fn lock_page(&self, page: &Page) {
        if !self.trylock_page(page) {
            let r = self.wait_bit_common(page, PG_LOCKED, Behavior::Exclusive, false, NO_FREE);
            debug_assert!(r.is_ok());
        }
    }

    /// `folio_lock_killable`: take the page lock, or give up when
    /// [`Platform::cancel_pending`]. `Ok` means the caller holds the lock.
    pub fn lock_page_killable(&self, page: &Page) -> Result<(), Interrupted> {
        if self.trylock_page(page) {
            return Ok(());
        }
        self.wait_bit_common(page, PG_LOCKED, Behavior::Exclusive, true, NO_FREE)
    }

    /// `folio_unlock`: release the lock and wake the next waiter if
    /// `PG_WAITERS` was set.
    ///
    /// # Panics
    ///
    /// If the page is not locked, in every build: the unlock is an XOR, so
    /// on an unlocked page it would *take* the lock for nobody.
    #[inline]
    #[track_caller]
    pub fn unlock_page(&self, page: &Page) {
        // Linux checks this only under CONFIG_DEBUG_VM (VM_BUG_ON_FOLIO).
        // Here it is a plain load of the line the caller's lock brought
        // into this CPU's cache and the XOR below writes anyway
        // (`pagelock_uncontended` measures the pair with it). A caller that
        // holds the lock sees its own bit; only a misuse sees it clear (a
        // racing misuse may slip through, as with any such check).
        if !page.flags.test(PG_LOCKED) {
            unlock_of_unlocked(page);
        }
        // The fast path's only look at the variant: does the configured
        // protocol or known-bad mutation replace the unlock (never by
        // default)? A protocol's own unlock is inlined here as the 5.9+
        // one is (a call out of line cost an own unlock ~100 cycles under
        // TCG: `pagelock_uncontended`); a known-bad mutation runs out of
        // line.
        if self.own_unlock {
            match self.cfg.bug.filter(|b| b.mutates_unlock()) {
                Some(bug) => self.unlock_page_bug(bug, page),
                None => self.cfg.protocol.unlock(self, page),
            }
            return;
        }
        // Release pairs with the next owner's Acquire test-and-set.
        let waiters = page.flags.xor_unlock_is_negative_byte(1 << PG_LOCKED);
        if waiters {
            self.wake_page_bit(page, PG_LOCKED);
        }
    }

    /// [`Self::unlock_page`] replaced by a known-bad mutation of the
    /// unlock ([`crate::Bug`]'s `mutates_unlock`).
    #[cold]
    #[inline(never)]
    fn unlock_page_bug(&self, bug: crate::Bug, page: &Page) {
        bugs::unlock_page(bug, page, || self.wake_page_bit(page, PG_LOCKED));
    }

    /// `folio_wait_locked`: sleep until the lock is free (shared; does not
    /// take it).
    pub fn wait_on_page_locked(&self, page: &Page) {
        if self.shared_test(page, PG_LOCKED) {
            let _ = self.wait_bit_common(page, PG_LOCKED, Behavior::Shared, false, NO_FREE);
        }
    }

    /// `folio_wait_locked_killable`.
    pub fn wait_on_page_locked_killable(&self, page: &Page) -> Result<(), Interrupted> {
        if !self.shared_test(page, PG_LOCKED) {
            return Ok(());
        }
        self.wait_bit_common(page, PG_LOCKED, Behavior::Shared, true, NO_FREE)
    }

    /// `folio_wait_bit`: sleep until a wake-up of (`page`, `bit`) finds the
    /// bit clear (shared). It may be set again by the time this returns.
    ///
    /// # Panics
    ///
    /// If `bit` is not below `PG_WAITERS` (no clear of it wakes anyone).
    #[track_caller]
    pub fn wait_on_page_bit(&self, page: &Page, bit: u32) {
        Self::check_wait_bit(bit);
        let _ = self.wait_bit_common(page, bit, Behavior::Shared, false, NO_FREE);
    }

    /// `folio_wait_bit_killable` (panics as [`Self::wait_on_page_bit`]).
    #[track_caller]
    pub fn wait_on_page_bit_killable(&self, page: &Page, bit: u32) -> Result<(), Interrupted> {
        Self::check_wait_bit(bit);
        self.wait_bit_common(page, bit, Behavior::Shared, true, NO_FREE)
    }

    /// `folio_put_wait_locked`: queue for the lock to be released, drop the
    /// caller's reference (calling `free` if it was the last), sleep, and
    /// return without touching the page again. Lets migration succeed while
    /// this thread waits (Linux 9a1ea439b16b).
    pub fn put_and_wait_on_page_locked(
        &self,
        page: &Page,
        killable: bool,
        free: impl FnOnce(&Page),
    ) -> Result<(), Interrupted> {
        self.wait_bit_common(page, PG_LOCKED, Behavior::Drop, killable, Some(free))
    }
}

const NO_FREE: Option<fn(&Page)> = None;

/// The panic of [`PageWaitTable::unlock_page`] on an unlocked page, out of
/// the fast path.
#[cold]
#[inline(never)]
#[track_caller]
fn unlock_of_unlocked(page: &Page) -> ! {
    panic!("unlock_page: page {:#x} is not locked", page.addr())
}
