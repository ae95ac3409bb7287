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
//! This is Hugh Dickins's worry in the first seed ("other people waiting on
//! the page lock (ie we now have that whole io_uring case)"): sleeping
//! exclusive waiters, shared writeback waiters and callback waiters on one
//! colliding queue, with hand-off. The protocol keeps the 5.9+ invariants
//! for them: `PG_WAITERS` is set and the bit re-tested under the queue lock
//! before the entry is queued (no lost wake-up), and the entry is unlinked
//! by the one walk that runs its callback, before the callback runs (so the
//! callback may free everything it owns).

use alloc::boxed::Box;

use crate::flags::{PG_LOCKED, PG_WAITERS};
use crate::page::Page;
use crate::page_lock::{PageEntry, wake_page_match};
use crate::platform::Platform;
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
/// wait-table calls).
pub type AsyncCallback = Box<dyn FnOnce(AsyncWake) + Send>;

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
        if !wake_page_match(entry, key) {
            return 0;
        }
        let page = &*key.page;
        let flags = (*entry).flags().load(Ordering::Relaxed);
        let exclusive = flags & WQ_FLAG_EXCLUSIVE != 0;
        if exclusive {
            // As in `wake_page_function`: a new owner will walk again; and
            // every async locker asks for the hand-off (CUSTOM). AcqRel:
            // Acquire pairs with the previous owner's Release unlock, so
            // the callback's work sees its critical section.
            if page.flags.test(key.bit) || page.flags.test_and_set(key.bit) {
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
        callback(if exclusive {
            AsyncWake::Locked
        } else {
            AsyncWake::Woken
        });
        i32::from(exclusive)
    }
}

impl<P: Platform> PageWaitTable<P> {
    /// `__folio_lock_async`: takes the page lock now and returns true, or
    /// queues `callback` to run, owning the lock, when an unlock hands it
    /// over, and returns false (module docs).
    pub fn lock_page_async(&self, page: &Page, callback: AsyncCallback) -> bool {
        if self.trylock_page(page) {
            return true;
        }
        self.queue_async(page, WQ_FLAG_EXCLUSIVE | WQ_FLAG_CUSTOM, callback)
    }

    /// `folio_wait_locked_async`: returns true if the page is unlocked now,
    /// else queues `callback` to run at the next wake-up of its lock bit
    /// and returns false.
    pub fn wait_on_page_locked_async(&self, page: &Page, callback: AsyncCallback) -> bool {
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
        page.flags.set(PG_WAITERS);
        let got = if flags & WQ_FLAG_EXCLUSIVE != 0 {
            // AcqRel: Acquire pairs with the previous owner's unlock.
            !page.flags.test_and_set(PG_LOCKED)
        } else {
            !page.flags.test_acquire(PG_LOCKED)
        };
        if got {
            return true;
        }
        let raw = Box::into_raw(waiter);
        // SAFETY: the waiter lives on the heap until the wake function
        // reclaims it, after unlinking it; its address does not change.
        unsafe { locked.add_tail(core::pin::Pin::new_unchecked(&(*raw).entry)) };
        false
    }
}
