//! Read-ahead's page mark: which reader starts the next window.
//!
//! Mental model (Linux `mm/readahead.c`): a read miss on a file read
//! sequentially reads a *window* of pages, each inserted locked and not up
//! to date and read in one request; one page of the window, `async_size`
//! pages before its end, carries `PG_READAHEAD`. The first reader that
//! reaches that page while it is cached clears the mark and starts the next
//! window asynchronously, so a sequential reader finds its pages already
//! being read. Readers of a page still being read wait on its page lock as
//! for any read.
//!
//! The rules, each with what it pairs with:
//! * [`PageWaitTable::set_page_readahead`] marks a page only while it is
//!   locked and not up to date (inserted by the window, the read not
//!   ended), so the mark is in place before any reader can use the page:
//!   the read's end, an unlock with Release, publishes it, and a reader
//!   that sees the page up to date (Acquire) sees the mark.
//! * [`PageWaitTable::test_clear_page_readahead`] is one atomic
//!   test-and-clear: of any number of readers that reach the page, exactly
//!   one gets `true` and starts the next window (Linux
//!   `folio_test_clear_readahead`).
//! * [`PageWaitTable::end_page_readahead`] ends the read of a window's
//!   page. On failure it clears the mark *before* the unlock, so a window
//!   that failed to read never starts the next one, and the page is left
//!   not up to date: a reader never sees a failed page up to date, and
//!   reads it again itself.
//!
//! `tests/loom_readahead.rs` checks both promises under every
//! interleaving loom explores: one window started per mark, and no
//! failed page seen up to date.

use crate::{
    flags::{PG_LOCKED, PG_READAHEAD, PG_UPTODATE},
    page::Page,
    platform::Platform,
    wait_table::PageWaitTable,
};

impl<P: Platform> PageWaitTable<P> {
    /// Marks `page`, which the caller holds locked and whose read has not
    /// ended, as the one whose first reader starts the next window.
    ///
    /// # Panics
    ///
    /// If the page is not locked or is already up to date: a mark set on a
    /// page readers can already use could be cleared before it is set.
    pub fn set_page_readahead(&self, page: &Page) {
        assert!(
            page.flags.test(PG_LOCKED) && !page.flags.test(PG_UPTODATE),
            "set_page_readahead: page {:#x} not locked, or already up to date",
            page.addr()
        );
        // Relaxed: the end of the read (a Release unlock) publishes it.
        page.flags.set(PG_READAHEAD);
    }

    /// Whether this caller reached the mark first: clears it and returns
    /// true for exactly one caller per mark. A plain test first keeps the
    /// common case (no mark) free of a locked RMW.
    pub fn test_clear_page_readahead(&self, page: &Page) -> bool {
        if let Some(took) = crate::variant::bugs::readahead_racy_clear(self.config().bug, page) {
            return took;
        }
        page.flags.test(PG_READAHEAD) && page.flags.test_and_clear(PG_READAHEAD)
    }

    /// Ends the read of a window's page (`end_page_read`), clearing the
    /// mark first if the read failed (module docs).
    pub fn end_page_readahead(&self, page: &Page, ok: bool) {
        if !ok {
            // Before the unlock's Release: whoever locks the page or sees
            // it unlocked afterwards sees the mark gone.
            page.flags.clear(PG_READAHEAD);
        }
        self.end_page_read(page, ok);
    }
}
