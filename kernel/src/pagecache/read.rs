//! Reading through the cache: `read_cache_page` ([`File::read_page`]),
//! its asynchronous, io_uring-style form ([`File::read_async`]), and
//! [`File::read`] of bytes. A missing page is inserted locked and not up to
//! date and read; readers that find it locked wait on its page lock, and a
//! failed read leaves it not up to date for the next reader to read again.

use alloc::{boxed::Box, sync::Arc};
use core::sync::atomic::Ordering;

use pagesync::flags::PG_UPTODATE;

use super::file::{File, FsError};
use crate::{
    block::{BLOCK_SIZE, IoError, Op, Request},
    mm::Frame,
    pagelock::{table, unlock_page},
};

/// What an async read calls with its page (locked, up to date) or error.
pub type ReadDone = Box<dyn FnOnce(Result<Frame, FsError>) + Send>;

impl File {
    /// Issues the read of page `index` into `page`, which the caller has
    /// locked; the completion (device interrupt) unlocks it, marking it up
    /// to date on success (`folio_end_read`).
    fn submit_read(&self, index: u64, page: &Frame) {
        self.counters.reads_issued.fetch_add(1, Ordering::Relaxed);
        self.counters.read_requests.fetch_add(1, Ordering::Relaxed);
        let done = page.clone();
        self.dev.submit(Request {
            op: Op::Read,
            block: self.layout.block(self.id, index),
            frames: page.clone().into(),
            done: Box::new(move |r| table().end_page_read(&done, r.is_ok())),
        });
    }

    /// `read_cache_page`: page `index` up to date, with a reference,
    /// reading it in if needed. Readers that find the page locked and not
    /// up to date wait on the page lock; a failed read leaves it not up
    /// to date, and the next reader reads again.
    pub fn read_page(&self, index: u64) -> Result<Frame, FsError> {
        let ra = super::readahead::enabled();
        let r = self.read_page_inner(index, ra);
        if ra && r.is_ok() {
            // The next miss is sequential if it is the page after.
            self.note_read(index);
        }
        r
    }

    fn read_page_inner(&self, index: u64, ra: bool) -> Result<Frame, FsError> {
        let t = table();
        let mut missed = false;
        loop {
            let (page, created) = if ra {
                // `filemap_get_pages`: a miss reads ahead (which inserts
                // this page, locked, unless a racing reader did), then we
                // look again; a hit on a marked page starts the next
                // window.
                match self.find_get_page(index) {
                    Some(page) => {
                        if t.test_clear_page_readahead(&page) {
                            self.async_readahead(index);
                        }
                        (page, false)
                    }
                    None => {
                        if index >= self.pages() {
                            return Err(FsError::OutOfRange);
                        }
                        if !missed {
                            missed = true;
                            self.counters.misses.fetch_add(1, Ordering::Relaxed);
                        }
                        // A window inserted it and is reading it, or
                        // (random access, out of memory, a racing
                        // eviction) not: the plain path creates it then.
                        let found = if self.sync_readahead(index) {
                            self.find_get_page(index)
                        } else {
                            None
                        };
                        match found {
                            Some(page) => (page, false),
                            None => self.find_or_create(index)?,
                        }
                    }
                }
            } else {
                self.find_or_create(index)?
            };
            if created {
                if !missed {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
                self.submit_read(index, &page);
            } else if page.flags().test_acquire(PG_UPTODATE) {
                // Acquire pairs with the Release XOR of `end_page_read`:
                // the data is visible.
                if !missed {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(page);
            }
            t.wait_on_page_locked(&page);
            if page.flags().test_acquire(PG_UPTODATE) {
                return Ok(page);
            }
            // Not up to date: a failed read, or a page still being read.
            // Evicted meanwhile: look again.
            let Some(page) = self.lock_if_ours(page, index) else {
                continue;
            };
            if page.flags().test(PG_UPTODATE) {
                unlock_page(&page);
                return Ok(page);
            }
            self.submit_read(index, &page);
            t.wait_on_page_locked(&page);
            return if page.flags().test_acquire(PG_UPTODATE) {
                Ok(page)
            } else {
                Err(FsError::Io(IoError::Device))
            };
        }
    }

    /// Asynchronous `read_cache_page` (io_uring's buffered read): never
    /// sleeps. If page `index` is up to date, `done` runs at once with it;
    /// otherwise the read is started if needed and an async locker is
    /// queued on the page (`pagesync::async_wait`), whose callback (in the
    /// waker's context, owning the lock by hand-off) hands the rest to the
    /// worker thread; there the page is checked, read again once if a read
    /// failed, unlocked, and `done` runs. `done` runs exactly once, from
    /// the caller or from the worker.
    pub fn read_async(self: &Arc<Self>, index: u64, done: ReadDone) {
        let (page, created) = match self.find_or_create(index) {
            Ok(x) => x,
            Err(e) => return done(Err(e)),
        };
        if created {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            self.submit_read(index, &page);
        } else if page.flags().test_acquire(PG_UPTODATE) {
            // Acquire pairs with the Release XOR of `end_page_read`.
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return done(Ok(page));
        }
        self.lock_async(index, page, done, true);
    }

    /// Queues the async locker of `read_async` (or, if the lock is free,
    /// finishes at once).
    fn lock_async(self: &Arc<Self>, index: u64, page: Frame, done: ReadDone, may_retry: bool) {
        let (file, p) = (self.clone(), page.clone());
        // `done` moves into the callback; if the lock is taken at once the
        // callback is dropped unrun, so keep a way back to it.
        let slot = Arc::new(crate::sync::IrqMutex::new(Some(done)));
        let s = slot.clone();
        let callback: pagesync::AsyncCallback = Box::new(move |_, held| {
            // The waiter's own reference: dropped by the worker, never in
            // the waker's context.
            let held = Frame::from_page_ref(held);
            super::worker::queue(Box::new(move || {
                drop(held);
                let done = s.lock().take().expect("one completion");
                file.finish_read_async(index, p, done, may_retry);
            }))
        });
        if table().lock_page_async(&page, callback) {
            let done = slot.lock().take().expect("one completion");
            self.finish_read_async(index, page, done, may_retry);
        }
    }

    /// The worker's part of `read_async`: we own the page lock.
    fn finish_read_async(
        self: &Arc<Self>,
        index: u64,
        page: Frame,
        done: ReadDone,
        may_retry: bool,
    ) {
        let _t = table();
        if !self.owns(&page, index) {
            // Evicted meanwhile: start over.
            unlock_page(&page);
            return self.read_async(index, done);
        }
        if page.flags().test(PG_UPTODATE) {
            unlock_page(&page);
            return done(Ok(page));
        }
        if !may_retry {
            unlock_page(&page);
            return done(Err(FsError::Io(IoError::Device)));
        }
        // A failed read: read again; its end unlocks the page and hands
        // the lock to the async locker queued next.
        self.submit_read(index, &page);
        self.lock_async(index, page, done, false);
    }

    /// Copies bytes of the file at `offset` into `buf` (through the
    /// cache); returns the bytes copied (short at the end of the file).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let end = offset.saturating_add(buf.len() as u64).min(self.bytes());
        if offset > self.bytes() {
            return Err(FsError::OutOfRange);
        }
        let mut done = 0usize;
        let mut pos = offset;
        while pos < end {
            let (index, in_page) = (pos / BLOCK_SIZE as u64, (pos % BLOCK_SIZE as u64) as usize);
            let n = (BLOCK_SIZE - in_page).min((end - pos) as usize);
            let page = self.read_page(index)?;
            // SAFETY: the page is up to date and mapped; readers copy
            // without the page lock, as Linux's filemap_read does (a
            // concurrent writer's bytes may or may not be seen).
            let src = unsafe { core::slice::from_raw_parts(page.virt().add(in_page), n) };
            buf[done..done + n].copy_from_slice(src);
            done += n;
            pos += n as u64;
        }
        Ok(done)
    }
}
