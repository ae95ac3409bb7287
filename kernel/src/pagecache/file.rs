//! One cached file: its pages, its dirty tag, and the read, write,
//! writeback, sync and eviction paths (module docs of `super`).

use alloc::{boxed::Box, collections::BTreeMap, sync::Arc, vec::Vec};
use core::{
    ptr::{self, NonNull},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use pagesync::{
    Page, PutOutcome, WriteResult,
    flags::{PG_DIRTY, PG_ERROR, PG_UPTODATE, PG_WRITEBACK},
};

use super::layout::{Layout, LayoutError};
use crate::{
    block::{BLOCK_SIZE, BlockDevice, Completion, IoError, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::table,
    sync::IrqMutex,
    vm::{MapSource, Mapping, VmError},
};

/// Why a page-cache operation failed. Nothing is left half-done: a failed
/// write leaves the pages it did not reach untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// The range is not inside the file.
    OutOfRange,
    /// No frame for a new page.
    NoMemory,
    /// The device failed the I/O.
    Io(IoError),
    /// The device's header.
    Layout(LayoutError),
}

/// One cached page and its dirty mark (Linux: an xarray entry and its
/// `PAGECACHE_TAG_DIRTY`). The mark belongs to the entry, not to the
/// index: it is set and cleared only on the entry of the very page that
/// was dirtied, and it leaves the cache with that entry, so a mark can
/// never describe a page other than the one it was set for. (An earlier
/// index-keyed set lost writes: a flusher that found a tagged index empty
/// removed the tag a moment later, in a second hold of the lock, after a
/// writer had created, dirtied and tagged a new page there.)
struct Slot {
    frame: Frame,
    /// May be dirty: set when the page becomes dirty, cleared by writeback
    /// (under the page lock) just before it clears `PG_DIRTY` for I/O.
    dirty: bool,
}

/// The file's pages (Linux: the xarray). Behind an IRQ-safe lock: a failed
/// write marks its page dirty again from the end of writeback, in
/// interrupt context.
struct Tree {
    pages: BTreeMap<u64, Slot>,
}

impl Tree {
    /// The entry at `index` if it holds `page`.
    fn slot_of(&mut self, index: u64, page: &Page) -> Option<&mut Slot> {
        self.pages
            .get_mut(&index)
            .filter(|s| ptr::eq(s.frame.page(), page))
    }
}

/// Counters (snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub hits: u64,
    pub misses: u64,
    pub reads_issued: u64,
    pub writes_issued: u64,
    pub write_errors: u64,
    pub evicted: u64,
    /// Writes done from a bounce copy (the page may have been pinned).
    pub bounced: u64,
    /// Writebacks put off for want of a frame for the copy.
    pub bounce_failures: u64,
    /// Pages whose last reference went at the end of their writeback (an
    /// eviction dropped the cache's reference while the write ran).
    pub freed_at_end_of_writeback: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    reads_issued: AtomicU64,
    writes_issued: AtomicU64,
    write_errors: AtomicU64,
    evicted: AtomicU64,
    bounced: AtomicU64,
    bounce_failures: AtomicU64,
    freed_at_end_of_writeback: AtomicU64,
}

/// A file of the device (module docs of `super`).
pub struct File {
    dev: Arc<dyn BlockDevice>,
    layout: Layout,
    /// The file's number.
    pub id: u64,
    tree: IrqMutex<Tree>,
    /// A write error not yet reported by [`File::sync`] (Linux's errseq,
    /// reduced to "report once").
    error: AtomicBool,
    counters: Counters,
    /// The address-space mappings of this file (Linux `i_mmap`): writeback
    /// cleans them. A spin lock taken with interrupts on; never held while
    /// calling into the VM (`Mapping::clean` may end in `unmapped`).
    mappings: spin::Mutex<Vec<Mapping>>,
}

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

/// A race point of the page cache's index (`pagesync::race`): after every
/// lookup and every change of the index, once its lock is dropped, so the
/// jitter widens "looked up, then acted on what it found" windows as it
/// does the protocol's own.
#[inline(always)]
fn race(p: pagesync::RacePoint) {
    #[cfg(debug_assertions)]
    crate::sched::jitter::point(p);
    #[cfg(not(debug_assertions))]
    let _ = p;
}

/// What the mapping word of a cached page holds: the file's address.
fn key(file: &File) -> usize {
    ptr::from_ref(file) as usize
}

impl File {
    pub(super) fn new(dev: Arc<dyn BlockDevice>, layout: Layout, id: u64) -> File {
        File {
            dev,
            layout,
            id,
            tree: IrqMutex::new(Tree {
                pages: BTreeMap::new(),
            }),
            error: AtomicBool::new(false),
            counters: Counters::default(),
            mappings: spin::Mutex::new(Vec::new()),
        }
    }

    /// Size in pages.
    pub fn pages(&self) -> u64 {
        self.layout.file_blocks
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages() * BLOCK_SIZE as u64
    }

    /// Whether `page` is (still) this file's page `index`.
    fn owns(&self, page: &Page, index: u64) -> bool {
        page.mapping() == key(self) && page.index() == index
    }

    /// `filemap_get_folio`: the cached page at `index`, with a reference.
    pub fn find_get_page(&self, index: u64) -> Option<Frame> {
        let found = self.tree.lock().pages.get(&index).map(|s| s.frame.clone());
        race(pagesync::RacePoint::CacheLookup);
        found
    }

    /// Pages in the cache now.
    pub fn cached_pages(&self) -> usize {
        self.tree.lock().pages.len()
    }

    /// The cached page at `index`, or a new one inserted locked and not up
    /// to date (`__filemap_add_folio` of a locked folio). Returns the page
    /// and whether we created it (and so hold its lock).
    fn find_or_create(&self, index: u64) -> Result<(Frame, bool), FsError> {
        if index >= self.pages() {
            return Err(FsError::OutOfRange);
        }
        if let Some(f) = self.find_get_page(index) {
            return Ok((f, false));
        }
        // Allocate outside the tree lock; a racing creator may win.
        let new = alloc_pages(0, AllocFlags::ZERO).ok_or(FsError::NoMemory)?;
        // Nobody else can see the page yet: the trylock cannot fail.
        assert!(table().trylock_page(&new));
        new.set_mapping(key(self), index);
        let mut t = self.tree.lock();
        if let Some(s) = t.pages.get(&index) {
            let f = s.frame.clone();
            drop(t);
            new.set_mapping(0, 0);
            table().unlock_page(&new);
            return Ok((f, false));
        }
        t.pages.insert(
            index,
            Slot {
                frame: new.clone(),
                dirty: false,
            },
        );
        drop(t);
        race(pagesync::RacePoint::CacheUpdate);
        Ok((new, true))
    }

    /// Issues the read of page `index` into `page`, which the caller has
    /// locked; the completion (device interrupt) unlocks it, marking it up
    /// to date on success (`folio_end_read`).
    fn submit_read(&self, index: u64, page: &Frame) {
        self.counters.reads_issued.fetch_add(1, Ordering::Relaxed);
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
    pub fn get_page(&self, index: u64) -> Result<Frame, FsError> {
        let t = table();
        loop {
            let (page, created) = self.find_or_create(index)?;
            if created {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                self.submit_read(index, &page);
            } else if page.flags().test_acquire(PG_UPTODATE) {
                // Acquire pairs with the Release XOR of `end_page_read`:
                // the data is visible.
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(page);
            }
            t.wait_on_page_locked(&page);
            if page.flags().test_acquire(PG_UPTODATE) {
                return Ok(page);
            }
            // Not up to date: a failed read, or a page still being read.
            t.lock_page(&page);
            if !self.owns(&page, index) {
                // Evicted meanwhile: look again.
                t.unlock_page(&page);
                continue;
            }
            if page.flags().test(PG_UPTODATE) {
                t.unlock_page(&page);
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
    pub fn read_async(
        self: &Arc<Self>,
        index: u64,
        done: Box<dyn FnOnce(Result<Frame, FsError>) + Send>,
    ) {
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
    fn lock_async(
        self: &Arc<Self>,
        index: u64,
        page: Frame,
        done: Box<dyn FnOnce(Result<Frame, FsError>) + Send>,
        may_retry: bool,
    ) {
        let (file, p) = (self.clone(), page.clone());
        // `done` moves into the callback; if the lock is taken at once the
        // callback is dropped unrun, so keep a way back to it.
        let slot = Arc::new(spin::Mutex::new(Some(done)));
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
        done: Box<dyn FnOnce(Result<Frame, FsError>) + Send>,
        may_retry: bool,
    ) {
        let t = table();
        if !self.owns(&page, index) {
            // Evicted meanwhile: start over.
            t.unlock_page(&page);
            return self.read_async(index, done);
        }
        if page.flags().test(PG_UPTODATE) {
            t.unlock_page(&page);
            return done(Ok(page));
        }
        if !may_retry {
            t.unlock_page(&page);
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
            let page = self.get_page(index)?;
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
            let page = if whole {
                let (page, created) = self.find_or_create(index)?;
                if !created {
                    t.lock_page(&page);
                }
                page
            } else {
                let page = self.get_page(index)?;
                t.lock_page(&page);
                page
            };
            if !self.owns(&page, index) {
                // Evicted between the lookup and the lock: again.
                t.unlock_page(&page);
                continue;
            }
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
            t.unlock_page(&page);
            done += n;
            pos += n as u64;
        }
        Ok(done)
    }

    /// `folio_mark_dirty` plus the dirty mark of its entry. The caller
    /// keeps the page in the cache meanwhile: it holds the page lock and
    /// has checked that the page is still this file's page `index` (or the
    /// page is under writeback, which keeps it there: [`File::evict`]).
    pub fn mark_dirty(&self, index: u64, page: &Page) {
        if table().set_page_dirty(page) {
            self.set_mark(index, page, true);
        }
    }

    /// Sets or clears the dirty mark of `page`'s entry at `index`, in one
    /// hold of the index lock that also checks the entry is `page` (the
    /// caller's rules keep it so: see [`File::mark_dirty`]).
    fn set_mark(&self, index: u64, page: &Page, dirty: bool) {
        let found = self
            .tree
            .lock()
            .slot_of(index, page)
            .map(|s| s.dirty = dirty);
        race(pagesync::RacePoint::CacheUpdate);
        debug_assert!(
            found.is_some(),
            "pagecache: page {index} of file {} is not in the cache while its dirty mark changes",
            self.id
        );
    }

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
        let page = loop {
            let page = if how.force {
                self.get_page(index)?
            } else {
                // Not cached: nothing to write, and no mark to clear (the
                // mark left with the page's entry).
                let Some(page) = self.find_get_page(index) else {
                    return Ok(false);
                };
                page
            };
            t.lock_page(&page);
            if self.owns(&page, index) {
                break page;
            }
            t.unlock_page(&page);
            if !how.force {
                return Ok(false);
            }
            // Evicted between the lookup and the lock: read it in again.
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
            // writer would (it is up to date: `get_page`).
            self.mark_dirty(index, &page);
        }
        // Clear the mark before the flag, under the page lock: a writer
        // that dirties the page again needs the lock, and marks it again.
        self.set_mark(index, &page, false);
        if !t.clear_page_dirty_for_io(&page) {
            t.unlock_page(&page);
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
                        t.unlock_page(&page);
                        return Ok(false);
                    }
                }
            } else {
                page.clone()
            };
        if let Some(started) = how.started.as_mut() {
            started(&data);
        }
        t.unlock_page(&page);
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

    /// Starts writeback of every tagged page; returns how many writes were
    /// submitted.
    pub fn writeback(self: &Arc<Self>) -> usize {
        let tagged: Vec<u64> = self
            .tree
            .lock()
            .pages
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(&i, _)| i)
            .collect();
        race(pagesync::RacePoint::CacheLookup);
        tagged
            .into_iter()
            .filter(|&i| self.writeback_page(i))
            .count()
    }

    /// Waits until no page of the file is under writeback.
    pub fn wait_writeback(&self) {
        let pages: Vec<Frame> = self
            .tree
            .lock()
            .pages
            .values()
            .map(|s| s.frame.clone())
            .collect();
        race(pagesync::RacePoint::CacheLookup);
        for p in &pages {
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
        let Some(page) = self.find_get_page(index) else {
            return false;
        };
        t.lock_page(&page);
        // A mapped page stays (Linux would unmap it first on truncation;
        // we leave mapped pages to the mappings' owners).
        if !self.owns(&page, index) || page.mapcount() != 0 {
            t.unlock_page(&page);
            return false;
        }
        // The rule that keeps a page under writeback allocated.
        t.wait_on_page_writeback(&page);
        if !drop_dirty && page.flags().test(PG_DIRTY) {
            t.unlock_page(&page);
            return false;
        }
        page.flags().clear(PG_DIRTY);
        page.flags().clear(PG_ERROR);
        // The entry is this page's: it is locked and still ours, and only
        // a holder of its lock removes it. Its dirty mark goes with it.
        let removed = {
            let mut tr = self.tree.lock();
            let ours = tr.slot_of(index, &page).is_some();
            ours.then(|| tr.pages.remove(&index)).flatten()
        };
        race(pagesync::RacePoint::CacheUpdate);
        debug_assert!(
            removed.is_some(),
            "pagecache: evicting page {index}: the entry is not the locked page"
        );
        page.set_mapping(0, 0);
        t.unlock_page(&page);
        drop(removed);
        self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether page `index` is cached and dirty or under writeback.
    pub fn page_state(&self, index: u64) -> Option<(bool, bool)> {
        let p = self.find_get_page(index)?;
        Some((p.flags().test(PG_DIRTY), p.flags().test(PG_WRITEBACK)))
    }

    /// Counters.
    pub fn stats(&self) -> FileStats {
        let c = &self.counters;
        FileStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            reads_issued: c.reads_issued.load(Ordering::Relaxed),
            writes_issued: c.writes_issued.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            bounced: c.bounced.load(Ordering::Relaxed),
            bounce_failures: c.bounce_failures.load(Ordering::Relaxed),
            freed_at_end_of_writeback: c.freed_at_end_of_writeback.load(Ordering::Relaxed),
        }
    }
}

/// A file can be mapped into address spaces (`vm::AddressSpace::map_file`).
impl MapSource for File {
    fn get_page(&self, index: u64) -> Result<Frame, VmError> {
        File::get_page(self, index).map_err(|e| match e {
            FsError::NoMemory => VmError::OutOfMemory,
            _ => VmError::Io { index },
        })
    }

    /// The page is locked by the VM (see `MapSource`): wait for stable
    /// data (the mapping was write-protected when writeback started, which
    /// is why this write faulted), then dirty it. The page cannot go under
    /// writeback again before the VM unlocks it, after the entry is
    /// writable.
    fn page_mkwrite(&self, index: u64, page: &Frame) -> Result<(), VmError> {
        if !self.owns(page, index) {
            return Err(VmError::Retry);
        }
        table().wait_for_stable_page(page);
        self.mark_dirty(index, page);
        Ok(())
    }

    fn mapped(&self, m: Mapping) {
        self.mappings.lock().push(m);
    }

    fn unmapped(&self, m: &Mapping) {
        self.mappings.lock().retain(|x| x != m);
    }
}
