//! Asynchronous page waits: a waiter that is a callback, not a sleeping
//! thread (Linux's `wait_page_queue`, `__folio_lock_async` and
//! `folio_wait_locked_async`, as io_uring's buffered reads use them).
//!
//! Mental model: the async waiter queues an entry on the page's hashed
//! queue like any other waiter, but nobody sleeps on it: the caller
//! returns at once. The entry lives on the heap and belongs to the queue
//! until a waker's walk picks it; the wake function then runs the
//! callback, in the waker's context (an unlocker, or the end of a read in
//! a device interrupt), with the queue lock held and interrupts off. So a
//! callback must be short and must not sleep or touch the page wait table
//! (it would deadlock on the queue lock it runs under): it hands the work
//! on, e.g. to a worker thread's queue.
//!
//! * [`PageWaitTable::lock_page_async`] (exclusive): takes the lock now, or
//!   queues a waiter that always asks for the hand-off. The waker takes the
//!   lock *for* it, exactly as for a sleeping waiter that ran out of
//!   unfairness, and the callback runs owning the lock: it must arrange for
//!   an unlock (its worker unlocks). If the lock is held again when the
//!   walk reaches the entry, the walk stops there (the new owner's unlock
//!   will come back), so a callback never takes a hand-off a sleeping
//!   waiter ahead of it needed, and is never skipped.
//! * [`PageWaitTable::wait_on_page_locked_async`] (shared): runs the
//!   callback at the next wake-up of the page's lock bit, like a shared
//!   sleeping waiter (the work re-checks the page, as shared waiters do).
//!
//! A queued async waiter holds a reference on its page, taken when it
//! queues and handed to its callback ([`PageRef`]): without it a page
//! freed and reused while the entry waits would have the stale entry take
//! the *new* page's lock (the entry matches by descriptor address). A
//! page with no reference at all is refused with a panic.
//!
//! This is Hugh Dickins's worry in the first seed ("other people waiting on
//! the page lock (ie we now have that whole io_uring case)"): sleeping
//! exclusive waiters, shared writeback waiters and callback waiters on one
//! colliding queue, with hand-off. The protocol keeps the 5.9+ invariants
//! for them: `PG_WAITERS` is set and the bit re-tested under the queue lock
//! before the entry is queued (no lost wake-up), and the entry is unlinked
//! by the one walk that runs its callback, before the callback runs (so the
//! callback may free everything it owns).

use alloc::boxed::Box;
use core::ptr::NonNull;

use crate::flags::PG_LOCKED;
use crate::page::Page;
use crate::page_lock::{PageEntry, wake_page_begin};
use crate::platform::Platform;
use crate::refcount::PutOutcome;
use crate::sync::Ordering;
use crate::wait_table::{PageBit, PageKind, PageWaitTable, WaitPageKey};
use crate::waitqueue::{
    LockedQueue, WQ_FLAG_CUSTOM, WQ_FLAG_DONE, WQ_FLAG_EXCLUSIVE, WQ_FLAG_WOKEN,
};

/// What an async waiter's callback is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncWake {
    /// [`PageWaitTable::lock_page_async`]: the lock was handed to the
    /// callback, which now owns `PG_LOCKED` and must see it unlocked.
    Locked,
    /// [`PageWaitTable::wait_on_page_locked_async`]: the lock bit was
    /// woken (it may be set again by the time the work runs).
    Woken,
}

/// The callback of an async waiter (module docs: no sleeping, no page
/// wait-table calls). It receives the page reference its waiter held.
pub type AsyncCallback = Box<dyn FnOnce(AsyncWake, PageRef) + Send>;

/// One counted reference on a page: the one a queued async waiter held,
/// handed to its callback (module docs). The callback gives it back with
/// [`PageRef::put`] (freeing the page itself on
/// [`PutOutcome::LastReference`]) or turns it into the platform's own
/// handle with [`PageRef::into_raw`] (the kernel makes it a `Frame`).
/// Dropping it puts the reference too, and panics if that was the last
/// one (nobody would free the page).
#[must_use = "a page reference: give it back with put(), or keep it with into_raw()"]
pub struct PageRef {
    page: NonNull<Page>,
}

// SAFETY: a counted reference to a page descriptor, reached only through
// the descriptor's atomics, as the `&Page` the wait paths already share
// between threads.
unsafe impl Send for PageRef {}

impl PageRef {
    /// The page, for as long as the reference is held.
    pub fn page(&self) -> &Page {
        // SAFETY: the reference we hold keeps the descriptor's frame in
        // use; descriptors themselves outlive every reference.
        unsafe { self.page.as_ref() }
    }

    /// Gives up the handle, keeping the reference: the caller now owns it.
    pub fn into_raw(self) -> NonNull<Page> {
        let p = self.page;
        core::mem::forget(self);
        p
    }

    /// Drops the reference; on [`PutOutcome::LastReference`] the caller
    /// frees the page.
    pub fn put(self) -> PutOutcome {
        let p = self.into_raw();
        // SAFETY: as in `page`: we held the reference until this put.
        unsafe { p.as_ref() }
            .put_page()
            .expect("PageRef::put: the reference this handle held is gone")
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        let page = self.page();
        match page.put_page() {
            Ok(PutOutcome::StillReferenced) => {}
            Ok(PutOutcome::LastReference) => panic!(
                "a dropped PageRef took the last reference of page {:#x}: nobody frees it (use put())",
                page.addr()
            ),
            Err(e) => panic!("PageRef of page {:#x}: {e:?}", page.addr()),
        }
    }
}

/// An async waiter on the heap: the queue entry first, so the wake
/// function can find the waiter from its entry.
#[repr(C)]
struct AsyncWaiter<P: Platform> {
    entry: PageEntry<P>,
    callback: Option<AsyncCallback>,
}

/// The wake function of async entries, under the queue lock.
///
/// # Safety
///
/// As for [`crate::waitqueue::WakeFn`]; the entry is the first field of a
/// leaked `Box<AsyncWaiter<P>>` that only this function reclaims.
unsafe fn async_wake_page_function<P: Platform>(
    q: &mut LockedQueue<'_, P, PageKind>,
    entry: *const PageEntry<P>,
    key: &mut WaitPageKey,
) -> i32 {
    // SAFETY: the entry is linked in `q`, so live; the walk's page is live.
    unsafe {
        // As in `wake_page_function`: a new owner will walk again.
        let flags = match wake_page_begin(entry, key, false) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let page = &*key.page;
        let exclusive = flags & WQ_FLAG_EXCLUSIVE != 0;
        // Every async locker asks for the hand-off (CUSTOM). AcqRel:
        // Acquire pairs with the previous owner's Release unlock, so the
        // callback's work sees its critical section.
        // A handing walk (`WaitPageKey::handing`) holds the bit for us
        // already; its critical section is ordered before the callback by
        // program order (the callback runs in the waker).
        if exclusive {
            if key.handing {
                key.handing = false;
            } else if page.flags.test_and_set(key.bit) {
                return -1;
            }
        }
        (*entry)
            .flags()
            .store(flags | WQ_FLAG_WOKEN | WQ_FLAG_DONE, Ordering::Relaxed);
        q.del_init_careful(entry);
        // Unlinked: the waiter is ours (the only pointer to it was the
        // queue's).
        let mut waiter = Box::from_raw(entry.cast::<AsyncWaiter<P>>().cast_mut());
        let callback = waiter.callback.take().expect("an async waiter runs once");
        drop(waiter);
        // The reference the waiter took when it queued (on this page: the
        // entry matched the walk's key).
        let held = PageRef {
            page: NonNull::from(page),
        };
        callback(
            if exclusive {
                AsyncWake::Locked
            } else {
                AsyncWake::Woken
            },
            held,
        );
        i32::from(exclusive)
    }
}

/// Panics unless `page` has a reference (the caller's).
#[track_caller]
fn assert_held(page: &Page) {
    assert!(
        page.ref_count() != 0,
        "async wait on page {:#x}, which has no reference (a free page): the caller must hold one",
        page.addr()
    );
}

impl<P: Platform> PageWaitTable<P> {
    /// `__folio_lock_async`: takes the page lock now and returns true, or
    /// queues `callback` to run, owning the lock, when an unlock hands it
    /// over, and returns false (module docs). The queued waiter holds a
    /// reference on the page, which its callback receives.
    ///
    /// # Panics
    ///
    /// If the page has no reference (it is free: the caller must hold
    /// one).
    #[track_caller]
    pub fn lock_page_async(&self, page: &Page, callback: AsyncCallback) -> bool {
        assert_held(page);
        if self.trylock_page(page) {
            return true;
        }
        self.queue_async(page, WQ_FLAG_EXCLUSIVE | WQ_FLAG_CUSTOM, callback)
    }

    /// `folio_wait_locked_async`: returns true if the page is unlocked now,
    /// else queues `callback` to run at the next wake-up of its lock bit
    /// and returns false. Panics as [`Self::lock_page_async`].
    #[track_caller]
    pub fn wait_on_page_locked_async(&self, page: &Page, callback: AsyncCallback) -> bool {
        assert_held(page);
        if !page.flags.test_acquire(PG_LOCKED) {
            return true;
        }
        self.queue_async(page, 0, callback)
    }

    /// Queues an async waiter with `flags`, unless the try under the queue
    /// lock succeeds (then returns true and `callback` is dropped unrun).
    fn queue_async(&self, page: &Page, flags: u32, callback: AsyncCallback) -> bool {
        let waiter = Box::new(AsyncWaiter::<P> {
            entry: PageEntry::<P>::new(
                async_wake_page_function::<P>,
                PageBit::new(page, PG_LOCKED),
            ),
            callback: Some(callback),
        });
        waiter.entry.flags().store(flags, Ordering::Relaxed);
        let q = self.queue(page);
        let mut locked = q.lock();
        // First PG_WAITERS, then the try, under the queue lock: either the
        // try sees the lock free, or the unlocker's RMW sees PG_WAITERS and
        // its walk (which needs this lock) finds our entry (`page_lock`).
        self.claim_waiters(page);
        let got = if flags & WQ_FLAG_EXCLUSIVE != 0 {
            // AcqRel: Acquire pairs with the previous owner's unlock.
            !page.flags.test_and_set(PG_LOCKED)
        } else {
            !page.flags.test_acquire(PG_LOCKED)
        };
        if got {
            return true;
        }
        // The entry's reference (module docs), handed to the callback. The
        // caller holds one, so this cannot be the first.
        if let Err(e) = page.get_page() {
            panic!(
                "async waiter on page {:#x}: cannot take its reference ({e:?})",
                page.addr()
            );
        }
        let raw = Box::into_raw(waiter);
        // SAFETY: the waiter lives on the heap until the wake function
        // reclaims it, after unlinking it; its address does not change.
        unsafe { locked.add_tail(core::pin::Pin::new_unchecked(&(*raw).entry)) };
        false
    }
}
