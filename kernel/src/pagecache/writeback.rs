//! Writeback: a page written back ([`File::writeback_page`]), with what a
//! caller that must know exactly what it wrote asks of it ([`Writeback`]),
//! the end of writeback in the device's completion context, every marked
//! page of a file ([`File::writeback`]), and `fsync` ([`File::sync`]).

use alloc::{boxed::Box, sync::Arc, vec::Vec};
use core::{ptr::NonNull, sync::atomic::Ordering};

use pagesync::{Page, PutOutcome, WriteResult};

use super::file::{File, FsError};
use crate::{
    block::{BLOCK_SIZE, Completion, IoError, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::{table, unlock_page},
    vm::Mapping,
};

/// A copy of `page`'s contents in a frame of its own, for the device to
/// write from; None without memory. The caller holds the page lock and
/// the page is under writeback, so no CPU writer changes it during the
/// copy; a DMA writer through a pin may, and the copy is then one snapshot
/// of what the memory held (as any DMA racing a read would see).
fn bounce_copy(page: &Frame) -> Option<Frame> {
    let copy = alloc_pages(0, AllocFlags::NONE)?;
    // SAFETY: both frames are mapped and one page long; the copy is ours.
    unsafe { core::ptr::copy_nonoverlapping(page.virt(), copy.virt(), BLOCK_SIZE) };
    Some(copy)
}

/// A page under writeback, as its completion sees it: no reference of its
/// own (as in Linux, where the bio holds none). What keeps the page from
/// being freed until the end of writeback has cleared `PG_WRITEBACK` is
/// the rule that a page leaves the cache only locked and after
/// `wait_on_page_writeback` ([`File::evict`]), and that the allocator
/// refuses to free a page with the bit set. After the clear the page may
/// go at once: `pagesync::end_page_writeback` holds its own temporary
/// reference across the wake-up (073861ed77b6), and when an eviction
/// dropped the cache's reference meanwhile, that temporary reference is
/// the last and the end of writeback frees the page
/// ([`File::end_writeback`], `pagecache.end_writeback_reuse_race`).
pub struct WritebackPage(NonNull<Page>);

// SAFETY: a descriptor of the 'static frame array, only reached through
// its atomics; sent once, from the submitter to the completion context.
unsafe impl Send for WritebackPage {}

impl WritebackPage {
    /// The page: valid while `PG_WRITEBACK` is set (type docs).
    fn page(&self) -> &Page {
        // SAFETY: frame-array descriptors live for the rest of the run.
        unsafe { self.0.as_ref() }
    }
}

/// How [`File::writeback_page_with`] writes a page back, beyond
/// [`File::writeback_page`] (`Writeback::default()`).
#[derive(Default)]
pub struct Writeback<'a> {
    /// Write the page even if it is clean ("write it once more"), reading
    /// it in first if it is not cached.
    pub force: bool,
    /// Called with the frame the device will write (the page, or its
    /// bounce copy) right after `start_page_writeback`, while the page is
    /// still locked: what it sees is what the device gets, as long as
    /// writers keep the stable-page rule (they need the page lock, which
    /// is held, and then wait for the writeback).
    pub started: Option<&'a mut dyn FnMut(&Frame)>,
    /// Runs in the completion context once the write is over, after the
    /// end of writeback (the page is already dirty again on an error).
    pub done: Option<Completion>,
}

impl File {
    /// Writes back page `index` if it is dirty: lock it, clear dirty for
    /// I/O, start writeback, unlock, submit (module docs of `super`).
    /// Returns whether a write was submitted.
    pub fn writeback_page(self: &Arc<Self>, index: u64) -> bool {
        self.writeback_page_with(index, Writeback::default())
            .unwrap_or(false)
    }

    /// [`File::writeback_page`] for a caller that must know exactly what
    /// it wrote (the torture's manifest): see [`Writeback`]. Returns
    /// whether a write was submitted (if not, neither hook ran), or, with
    /// [`Writeback::force`], why the page could not be read in.
    pub fn writeback_page_with(
        self: &Arc<Self>,
        index: u64,
        mut how: Writeback<'_>,
    ) -> Result<bool, FsError> {
        let t = table();
        let page = if how.force {
            // Read in if needed; evicted between the read and the lock:
            // read it in again.
            loop {
                if let Some(page) = self.lock_if_ours(self.read_page(index)?, index) {
                    break page;
                }
            }
        } else {
            // Not cached: nothing to write, and no mark to clear (the mark
            // left with the page's entry).
            let Some(page) = self.find_lock_page(index) else {
                return Ok(false);
            };
            page
        };
        // A locked page can be under writeback from an earlier round (its
        // completion still pending); wait, so writeback starts only once.
        t.wait_on_page_writeback(&page);
        // `folio_mkclean`: write-protect every mapping of the page (the
        // next write through one faults and goes through `page_mkwrite`,
        // which waits for this writeback) and move the hardware dirty bits
        // into PG_DIRTY. Under the page lock, as Linux does.
        let mappings: Vec<Mapping> = self.mappings.lock().clone();
        for m in &mappings {
            if index >= m.first_index() && index < m.first_index() + m.pages() && m.clean(index) {
                self.mark_dirty(index, &page);
            }
        }
        if how.force {
            // Written whether dirty or not: dirty it under the lock, as a
            // writer would (it is up to date: `read_page`).
            self.mark_dirty(index, &page);
        }
        // Clear the mark before the flag, under the page lock: a writer
        // that dirties the page again needs the lock, and marks it again.
        self.set_mark(index, &page, false);
        if !t.clear_page_dirty_for_io(&page) {
            unlock_page(&page);
            return Ok(false);
        }
        let start = t.start_page_writeback(&page);
        let wb = WritebackPage(NonNull::from(&*page));
        // A page that may be DMA-pinned can change under the device at any
        // moment (a device writes through the pin, not through the page
        // cache, and stable-page waits cannot stop it). Write it from a
        // bounce copy taken now, after writeback started (so a pin that
        // `start_page_writeback` did not see cannot exist: `crate::gup`
        // waits for writeback before pinning): the disk then gets one
        // consistent image of the page, and the device's stable-page check
        // holds. Going beyond Linux, which still writes pinned pages in
        // place (Jan Kara's 2023 bounce proposal was not merged).
        let data =
            if start.maybe_pinned && pagesync::variant::bugs::bounce_pinned_pages(t.config().bug) {
                match bounce_copy(&page) {
                    Some(copy) => {
                        self.counters.bounced.fetch_add(1, Ordering::Relaxed);
                        copy
                    }
                    None => {
                        // No frame for the copy: give the page back its dirty
                        // state and leave it for the next writeback.
                        self.counters
                            .bounce_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.mark_dirty(index, &page);
                        let _ = t.end_page_writeback(&page, WriteResult::Written);
                        unlock_page(&page);
                        return Ok(false);
                    }
                }
            } else {
                page.clone()
            };
        if let Some(started) = how.started.as_mut() {
            started(&data);
        }
        unlock_page(&page);
        drop(page);
        self.counters.writes_issued.fetch_add(1, Ordering::Relaxed);
        let file = self.clone();
        let done = how.done.take();
        self.dev.submit(Request {
            op: Op::Write,
            block: self.layout.block(self.id, index),
            frames: data.into(),
            done: Box::new(move |r| {
                file.end_writeback(index, wb, r);
                if let Some(done) = done {
                    done(r);
                }
            }),
        });
        Ok(true)
    }

    /// The completion of a page's write (device interrupt).
    fn end_writeback(&self, index: u64, wb: WritebackPage, r: Result<(), IoError>) {
        let page = wb.page();
        let result = match r {
            Ok(()) => WriteResult::Written,
            Err(_) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                self.error.store(true, Ordering::Relaxed);
                // Mark it before the end of writeback makes the page's
                // dirtiness visible: a sync that waits for this page then
                // finds it marked. The page is still cached: writeback
                // keeps it there.
                self.set_mark(index, page, true);
                WriteResult::Failed
            }
        };
        match table().end_page_writeback(page, result) {
            PutOutcome::StillReferenced => {}
            // The page left the cache while it was being written (an
            // eviction waited for this writeback, then dropped the cache's
            // reference), and nobody else holds one: the temporary
            // reference was the last. Free it, as `folio_end_writeback`'s
            // `folio_put` does.
            PutOutcome::LastReference => {
                self.counters
                    .freed_at_end_of_writeback
                    .fetch_add(1, Ordering::Relaxed);
                // SAFETY: a frame-array descriptor (writeback keeps it
                // allocated until the clear), and the put inside
                // `end_page_writeback` just took its count to 0.
                unsafe { crate::mm::free_after_last_put(page) };
            }
        }
    }

    /// Starts writeback of every page marked dirty; returns how many writes
    /// were submitted.
    pub fn writeback(self: &Arc<Self>) -> usize {
        self.marked()
            .into_iter()
            .filter(|&i| self.writeback_page(i))
            .count()
    }

    /// Waits until no page of the file is under writeback.
    pub fn wait_writeback(&self) {
        for p in &self.cached() {
            table().wait_on_page_writeback(p);
        }
    }

    /// `fsync`: write back everything dirty, wait for it, and flush the
    /// device (`REQ_PREFLUSH`), so that what was written before the call
    /// survives a power cut once it returns `Ok`. Reports a write error
    /// once (pages that failed stay dirty with `PG_ERROR`, and are written
    /// again by the next writeback), and a failed flush.
    pub fn sync(self: &Arc<Self>) -> Result<(), FsError> {
        let written = self.write_and_wait();
        let flushed = super::flush_device(&*self.dev);
        written.and(flushed)
    }

    /// `filemap_write_and_wait`: the first half of [`File::sync`], without
    /// the flush (a caller syncing several files flushes once).
    pub fn write_and_wait(self: &Arc<Self>) -> Result<(), FsError> {
        self.writeback();
        self.wait_writeback();
        if self.error.swap(false, Ordering::Relaxed) {
            return Err(FsError::Io(IoError::Device));
        }
        Ok(())
    }
}
