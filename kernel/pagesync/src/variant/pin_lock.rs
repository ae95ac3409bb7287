//! The lock scheme (John Hubbard, Jan Kara), `gup=lock`, the default: the
//! pinner takes the page lock; if the page is under writeback it unlocks,
//! waits for the write-out and retries; else it adds the bias and
//! unlocks. Writeback starts only with the page lock held and reads the
//! pin state under it, so the lock orders the two critical sections:
//! whichever comes second sees the first. The pinner can contend (on the
//! lock, with writers and flushers). The invariant both schemes keep is
//! in `crate::pin`.

use crate::flags::{PG_LOCKED, PG_WRITEBACK};
use crate::page::Page;
use crate::platform::Platform;
use crate::refcount::RefError;
use crate::variant::{Bug, PinProtocol};
use crate::wait_table::PageWaitTable;

/// The lock scheme (module docs).
pub struct Lock;

impl PinProtocol for Lock {
    const SUMMARY: &'static str = "the pinner takes the page lock and pins only if the page is not under writeback; writeback starts under the same lock (John Hubbard, Jan Kara); can contend";

    fn try_pin<P: Platform>(table: &PageWaitTable<P>, page: &Page) -> Result<bool, RefError> {
        if table.cfg.bug == Some(Bug::GupCheckOutsideLock) {
            // BUG(GupCheckOutsideLock): the test before the lock, none
            // under it. Writeback may take the lock, start and read "no
            // pin" between our test and our pin.
            if page.flags.test(PG_WRITEBACK) {
                return Ok(false);
            }
            table.lock_page(page);
            let r = page.pin();
            table.unlock_page(page);
            return r.map(|_| true);
        }
        table.lock_page(page);
        // Acquire, although we hold the page lock: the lock keeps writeback
        // from *starting*, but its end (the completion's Release RMW, which
        // takes no lock) may clear the bit between our lock and this test,
        // and a Relaxed test that sees that clear is ordered after nothing
        // the completion wrote. Pairs with that Release (loom found this:
        // `visibility_pin_schemes` in `tests/loom_gup.rs`).
        if page.flags.test_acquire(PG_WRITEBACK) {
            table.unlock_page(page);
            return Ok(false);
        }
        // Under the page lock: `start_page_writeback` (which needs the
        // lock) either ran before us, and we saw its bit, or runs after our
        // unlock and sees the bias (the lock's Release/Acquire).
        let r = page.pin();
        table.unlock_page(page);
        r.map(|_| true)
    }

    fn after_writeback_set<P: Platform>(_: &PageWaitTable<P>, page: &Page) {
        // Under the page lock (asserted by the caller): the lock orders us
        // against the pinner's critical section.
        debug_assert!(page.flags.test(PG_LOCKED));
    }
}
