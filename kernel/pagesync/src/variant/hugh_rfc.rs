//! Hugh Dickins's RFC of August 2020 ("mm: silence soft lockups from
//! unlock_page", on v5.8 plus Linus's 2a9127fcf229 and 5ef64cc8987a),
//! `protocol=hugh-rfc`: the unlock keeps the lock bit set and the wake
//! walk passes it on.
//!
//! Mental model: while `PG_WAITERS` is set, `unlock_page` never clears
//! `PG_LOCKED`. It walks the page's queue holding the bit *for* the first
//! exclusive waiter the walk meets (`WaitPageKey::handing`): that waiter is
//! handed the lock without a test of the bit, and the walk stops there;
//! shared waiters ahead of it are woken with the bit still set. If the
//! walk finds no exclusive taker, the bit is cleared *after* the wake-ups,
//! still under the queue lock, as the RFC's last hunk (the one the first
//! seed quotes) does:
//!
//! ```text
//! if (exclude && !exclusive)
//!         clear_bit(bit_nr, &page->flags);
//! spin_unlock_irqrestore(&q->lock, flags);
//! ```
//!
//! Without `PG_WAITERS` the unlock clears the bit with a compare-exchange
//! that fails if any bit of the word changed since it was read, so a
//! waiter that sets `PG_WAITERS` in between sends it back to the walk.
//! Waiters use the 5.9 loop unchanged (`crate::page_lock`): `PG_WAITERS`,
//! then the try, under the queue lock (Linux 5.9's
//! `trylock_page_bit_common`, which the RFC's comment names). No lost
//! wake-up, in the RFC's own argument:
//!
//! ```text
//! unlocker (PG_waiters seen)            new locker W
//! lock queue; walk: no exclusive
//!   taker (only shared waiters)
//!                                       lock queue ... spins
//! clear PG_locked        <- under the queue lock
//! unlock queue
//!                                       set PG_waiters; try: free -> ours
//! ```
//!
//! Had the clear come after the queue unlock, W could set `PG_WAITERS`
//! (already set: the compare-exchange sees no change), fail its try on the
//! bit still set, queue and sleep; the late clear then wakes nobody. A walk
//! that drops the queue lock between chunks (`bookmarks=on`) leaves the
//! bit held for nobody meanwhile; a waiter that queues then is added at the
//! tail, behind the bookmark, so the rest of the walk still meets it ("new
//! entries are always added at tail").
//!
//! What the seed does not quote, and this file decides: which unlocks pass
//! the lock on. Only `unlock_page`; the end of a read keeps the one-RMW
//! unlock of 6.x (`end_page_read`), whose walk hands nothing over, so the
//! two kinds of walk meet on one queue. Every exclusive waiter takes a
//! handed bit, asked for or not (strict FIFO while waiters exist:
//! `unfairness=` only counts lost races, and there are none).
//!
//! Linus's doubts and the checks that answer them: async (io_uring-style)
//! waiters and `PG_WRITEBACK` waiters on the same queue, the
//! compare-exchange seeing `PG_WAITERS` change, and the bit cleared after
//! waking (`tests/loom_protocols.rs`, which runs every registered protocol
//! through the same models, and the in-kernel `pagelock.torture_protocols`).

use crate::flags::{PG_LOCKED, PG_WAITERS, mask};
use crate::page::Page;
use crate::platform::Platform;
use crate::race::RacePoint;
use crate::sync::Ordering;
use crate::variant::LockProtocol;
use crate::wait_table::{PageWaitTable, WaitPageKey};

/// The RFC (module docs).
pub struct HughRfc;

impl LockProtocol for HughRfc {
    const SUMMARY: &'static str = "Hugh Dickins's Aug 2020 RFC over 5.9: unlock keeps PG_locked while PG_waiters is set and the wake walk hands it to the first exclusive waiter; with no taker the bit is cleared after waking, still under the queue lock";
    const OWN_UNLOCK: bool = true;

    #[inline]
    fn unlock<P: Platform>(table: &PageWaitTable<P>, page: &Page) {
        unlock_passing_on(table, page, false);
    }
}

/// The RFC with its last hunk after the queue unlock, the order its own
/// comment warns against (module docs): known-bad, `protocol=hugh-rfc-late-clear`.
pub struct HughRfcLateClear;

impl LockProtocol for HughRfcLateClear {
    const SUMMARY: &'static str = "known-bad: hugh-rfc with the no-taker clear of PG_locked after the queue unlock, the race the RFC's comment names (a locker queues behind the bit, the clear wakes nobody)";
    const KNOWN_BAD: bool = true;
    const OWN_UNLOCK: bool = true;

    fn unlock<P: Platform>(table: &PageWaitTable<P>, page: &Page) {
        unlock_passing_on(table, page, true);
    }
}

/// The RFC's `unlock_page` (module docs); `late` moves the no-taker clear
/// after the queue unlock (known-bad). Inlined into `unlock_page` as the
/// 5.9+ unlock is; the walk is out of line.
#[inline]
fn unlock_passing_on<P: Platform>(table: &PageWaitTable<P>, page: &Page, late: bool) {
    let mut old = page.flags.load(Ordering::Relaxed);
    loop {
        if old & mask(PG_WAITERS) != 0 {
            pass_on(table, page, late);
            return;
        }
        // Release pairs with the next locker's Acquire test-and-set. The
        // exchange fails if the word changed since `old`; a waiter that set
        // PG_WAITERS meanwhile is then walked for above.
        match page
            .flags
            .compare_exchange(old, old & !mask(PG_LOCKED), Ordering::Release)
        {
            Ok(_) => return,
            Err(now) => old = now,
        }
    }
}

/// The walk that passes the lock on: with the bit held for the first
/// exclusive taker; with no taker, the clear.
#[cold]
#[inline(never)]
fn pass_on<P: Platform>(table: &PageWaitTable<P>, page: &Page, late: bool) {
    let mut key = WaitPageKey::new(page, PG_LOCKED, true);
    let locked = table.walk_page_bit(page, &mut key);
    P::race_point(RacePoint::WakeBeforeWaitersClear);
    if late {
        drop(locked);
        if key.handing {
            page.flags.clear_bit_unlock(PG_LOCKED);
        }
        return;
    }
    if key.handing {
        // `if (exclude && !exclusive) clear_bit(...)`, after waking and
        // before the queue unlock (module docs). Release pairs with the
        // next locker's Acquire test-and-set (its try under this queue
        // lock, or the fast path's).
        page.flags.clear_bit_unlock(PG_LOCKED);
    }
    drop(locked);
}
