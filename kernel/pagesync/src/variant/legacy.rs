//! The pre-5.9 wait loop (Linux 4.10–5.8), `protocol=linux-5.8`: wake,
//! then race.
//!
//! Mental model: a waiter queues at the tail and sets `PG_WAITERS` under the
//! queue lock, sleeps if the bit is set, and then races for the bit
//! *outside* the lock. The wake function ([`legacy_wake_page_function`])
//! only wakes if the bit is clear and unlinks the entry, so a waiter that
//! loses the race goes back to the tail (starvation under contention, the
//! long-running watchdog reports of 2020), and "woken" and "got the lock"
//! can disagree:
//!
//! ```text
//! W1 (killable)                  T                   unlocker of T's hold
//! queued; bit clear: no sleep
//!                                takes the bit
//! test_and_set fails
//!                                                    wakes W1 (the one
//!                                                    exclusive wake-up),
//!                                                    unlinks it
//! cancel pending: returns -EINTR
//! W2, queued behind W1, sleeps with the bit free (Oleg Nesterov, 2020)
//! ```
//!
//! With `Config::killable_fix` (the default) a killable exclusive waiter
//! that leaves with [`Interrupted`] after a wake-up was spent on it passes
//! the wake-up on, as the 5.9+ code does in `crate::page_lock`. With
//! `killable_fix = false` the loop is Linux 5.8 as written and loom finds
//! the window (`tests/loom_pagelock.rs`).

use core::pin::pin;

use crate::page::Page;
use crate::page_lock::{Behavior, PageEntry, drop_ref, wake_page_begin};
use crate::platform::Platform;
use crate::race::RacePoint;
use crate::sync::Ordering;
use crate::variant::LockProtocol;
use crate::wait_table::{PageBit, PageKind, PageWaitTable, WaitPageKey};
use crate::waitqueue::{
    FinishWait, Interrupted, LockedQueue, WQ_FLAG_EXCLUSIVE, WQ_FLAG_WOKEN,
    autoremove_wake_function,
};

/// Linux 4.10–5.8 (module docs).
pub struct Linux58;

impl LockProtocol for Linux58 {
    const SUMMARY: &'static str = "Linux 4.10-5.8: wake, then race: a woken waiter tries the bit outside the queue lock and re-queues at the tail if it loses (no hand-off)";

    fn wait<P: Platform>(
        table: &PageWaitTable<P>,
        page: &Page,
        bit: u32,
        behavior: Behavior,
        killable: bool,
        free: Option<impl FnOnce(&Page)>,
    ) -> Result<(), Interrupted> {
        table.wait_bit_legacy(page, bit, behavior, killable, free)
    }
}

impl<P: Platform> PageWaitTable<P> {
    /// The pre-5.9 loop (module docs). Same contract as the 5.9+
    /// `wait_bit_handoff` it replaces.
    fn wait_bit_legacy(
        &self,
        page: &Page,
        bit: u32,
        behavior: Behavior,
        killable: bool,
        mut free: Option<impl FnOnce(&Page)>,
    ) -> Result<(), Interrupted> {
        let q = self.queue(page);
        let entry = pin!(PageEntry::<P>::new(
            legacy_wake_page_function::<P>,
            PageBit::new(page, bit)
        ));
        let entry = entry.as_ref();
        let base = if behavior == Behavior::Exclusive {
            WQ_FLAG_EXCLUSIVE
        } else {
            0
        };
        let finish = FinishWait { q, entry };
        let result = loop {
            P::race_point(RacePoint::WaitBeforeQueueLock);
            {
                let mut locked = q.lock();
                if !entry.is_linked_locked() {
                    // Unlinked: never queued, or a waker set WOKEN and then
                    // unlinked it under this lock, so it is done with the
                    // entry. Forget that wake-up: it was for the previous
                    // round, which we lost.
                    entry.flags().store(base, Ordering::Relaxed);
                    // SAFETY: `finish` unlinks the entry before it drops.
                    unsafe { locked.add_tail(entry) };
                }
                self.claim_waiters(page);
                P::prepare_to_sleep();
            }
            P::race_point(RacePoint::WaitQueued);
            let bit_is_set = page.flags.test(bit);
            if behavior == Behavior::Drop
                && let Some(free) = free.take()
            {
                drop_ref(page, free);
            }
            if bit_is_set {
                P::sleep();
            }
            match behavior {
                Behavior::Exclusive => {
                    if !page.flags.test_and_set_bit_lock(bit) {
                        break Ok(());
                    }
                }
                Behavior::Shared => {
                    // Acquire: see `shared_test`.
                    if !self.shared_test(page, bit) {
                        break Ok(());
                    }
                }
                Behavior::Drop => {}
            }
            if killable && P::cancel_pending() {
                break Err(Interrupted);
            }
            if behavior == Behavior::Drop {
                break Ok(());
            }
        };
        P::race_point(RacePoint::WaitBeforeFinish);
        drop(finish);
        if result.is_err() && behavior == Behavior::Exclusive && self.cfg.killable_fix {
            // Acquire pairs with the Release in `autoremove_wake_function`;
            // after `finish_wait` nobody else writes the flags. Redundant:
            // `finish_wait` just ordered us after the waker (its
            // `list_empty_careful` Acquire against the waker's
            // `del_init_careful` Release, or the queue lock), and the
            // waker's flags RMW precedes both; `cargo xtask orderings` finds
            // the weakening passing every model.
            if entry.flags().load(Ordering::Acquire) & WQ_FLAG_WOKEN != 0 {
                // The window in the module docs: a wake-up was spent on us
                // and we leave without the bit. Pass it on: the walk wakes
                // the next waiter if the bit is free, and stops harmlessly
                // if an owner holds it (whose unlock will wake).
                self.wake_page_bit(page, bit);
            }
        }
        result
    }
}

/// The pre-5.9 `wake_page_function`: wake only if the bit is clear, then
/// `autoremove_wake_function` (WOKEN, wake, careful unlink).
///
/// # Safety
///
/// As for [`crate::waitqueue::WakeFn`]; the walk's page is live.
unsafe fn legacy_wake_page_function<P: Platform>(
    q: &mut LockedQueue<'_, P, PageKind>,
    entry: *const PageEntry<P>,
    key: &mut WaitPageKey,
) -> i32 {
    // SAFETY: caller: the entry is linked here, the page is live.
    unsafe {
        // Before 5.9 every waiter stops the walk when the bit is taken.
        if let Err(r) = wake_page_begin(entry, key, true) {
            return r;
        }
        autoremove_wake_function(q, entry, key)
    }
}
