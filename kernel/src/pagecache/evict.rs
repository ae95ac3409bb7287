//! Taking pages out of the cache: truncation of one page
//! ([`File::evict`]) and the clean-only eviction of memory pressure
//! ([`File::evict_clean`]). A page leaves only locked, after its
//! writeback, which is what keeps a page under writeback allocated.

use core::sync::atomic::Ordering;

use pagesync::flags::{PG_DIRTY, PG_ERROR};

use super::file::File;
use crate::pagelock::{table, unlock_page};

impl File {
    /// Removes page `index` from the cache (truncation of one page): lock
    /// it, wait for writeback to end, drop its dirty data, unlink it,
    /// unlock; the cache's reference goes with it. Returns whether a page
    /// was removed.
    pub fn evict(&self, index: u64) -> bool {
        self.remove(index, true)
    }

    /// Removes page `index` only if it is clean (Linux
    /// `invalidate_mapping_pages`: memory pressure, not truncation): a
    /// dirty page keeps its data. Returns whether a page was removed.
    pub fn evict_clean(&self, index: u64) -> bool {
        self.remove(index, false)
    }

    fn remove(&self, index: u64, drop_dirty: bool) -> bool {
        let t = table();
        let Some(page) = self.find_lock_page(index) else {
            return false;
        };
        // A mapped page stays (Linux would unmap it first on truncation;
        // we leave mapped pages to the mappings' owners).
        if page.mapcount() != 0 {
            unlock_page(&page);
            return false;
        }
        // The rule that keeps a page under writeback allocated.
        t.wait_on_page_writeback(&page);
        if !drop_dirty && page.flags().test(PG_DIRTY) {
            unlock_page(&page);
            return false;
        }
        page.flags().clear(PG_DIRTY);
        page.flags().clear(PG_ERROR);
        // The entry is this page's: it is locked and still ours, and only
        // a holder of its lock removes it. Its dirty mark goes with it.
        let removed = self.remove_entry(index, &page);
        debug_assert!(
            removed.is_some(),
            "pagecache: evicting page {index}: the entry is not the locked page"
        );
        page.set_mapping(0, 0);
        unlock_page(&page);
        drop(removed);
        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }
}
