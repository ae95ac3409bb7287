//! Writing through the cache ([`File::write`]): per page, lock it, wait
//! for stable data, copy, mark it dirty, unlock.

use super::file::{File, FsError};
use crate::{
    block::BLOCK_SIZE,
    pagelock::{table, unlock_page},
};

impl File {
    /// Writes `data` at `offset` through the cache: per page, lock it,
    /// wait for stable data (writeback of the old contents must not see
    /// the new ones), copy, mark dirty, unlock. A page written whole needs
    /// no read first.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.bytes())
            .ok_or(FsError::OutOfRange)?;
        let t = table();
        let mut done = 0usize;
        let mut pos = offset;
        while pos < end {
            let (index, in_page) = (pos / BLOCK_SIZE as u64, (pos % BLOCK_SIZE as u64) as usize);
            let n = (BLOCK_SIZE - in_page).min((end - pos) as usize);
            let whole = n == BLOCK_SIZE;
            // A page written whole needs no read first; a partial write
            // reads the page in, then locks it (and starts over if it was
            // evicted in between).
            let page = if whole {
                self.find_or_create_lock(index)?.0
            } else {
                match self.lock_if_ours(self.read_page(index)?, index) {
                    Some(page) => page,
                    None => continue,
                }
            };
            t.wait_for_stable_page(&page);
            // SAFETY: we hold the page lock and the page is not under
            // writeback (stable-page wait; only lock holders start it), so
            // nobody else writes the page or hands it to the device.
            unsafe {
                core::ptr::copy_nonoverlapping(data[done..].as_ptr(), page.virt().add(in_page), n);
            }
            if whole {
                // Release: lockless readers test the bit with Acquire and
                // then read the page (`folio_mark_uptodate`).
                t.mark_page_uptodate(&page);
            }
            self.mark_dirty(index, &page);
            unlock_page(&page);
            done += n;
            pos += n as u64;
        }
        Ok(done)
    }
}
