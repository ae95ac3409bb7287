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

/// Linux's `writeback_control.sync_mode`: what a writeback pass does with
/// a page it cannot start at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `WB_SYNC_NONE`, background writeback: a page another thread holds
    /// locked, or one already under writeback, is skipped. It keeps its
    /// mark, and a later pass writes it.
    None,
    /// `WB_SYNC_ALL`, data integrity (`sync`): waits for each page's lock
    /// and for a write of it already in flight, then writes it, so every
    /// page dirty when the pass began is written by a write that started
    /// after that.
    All,
}

/// TSC cycles since `t`, and now, when profiling (`File::set_profile`).
#[inline]
fn lap(profile: bool, t: &mut u64) -> u64 {
    if !profile {
        return 0;
    }
    let now = crate::arch::time::rdtsc();
    let d = now - *t;
    *t = now;
    d
}

/// Adjacent pages on their way to one write request: a batch's current
/// run, from its first page's index.
struct Run {
    first: u64,
    data: Vec<Frame>,
    pages: Vec<WritebackPage>,
    /// Whether each page's dirty mark is still to be cleared (at submit).
    deferred: Vec<bool>,
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
        table().wait_on_page_writeback(&page);
        let force = how.force;
        let Some((data, wb, _)) =
            self.start_locked(index, page, force, how.started.as_mut(), false, &mut 0)
        else {
            return Ok(false);
        };
        let file = self.clone();
        let done = how.done.take();
        self.counters.writes_issued.fetch_add(1, Ordering::Relaxed);
        self.counters.write_requests.fetch_add(1, Ordering::Relaxed);
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

    /// The part of a page's writeback done under its lock, the lock held
    /// and the page not under writeback: clean its mappings, clear its
    /// mark and `PG_DIRTY` for I/O, start writeback, take a bounce copy if
    /// it may be pinned, then unlock. Returns the frame the device is to
    /// write and the page as its completion sees it, or None (the page
    /// unlocked) if it was clean or no frame was left for the copy, and
    /// whether the caller is to clear the page's mark ( `defer_mark`: see
    /// the comment at the clear). `cycles` gathers the phase's time when
    /// profiling.
    fn start_locked(
        &self,
        index: u64,
        page: Frame,
        force: bool,
        started: Option<&mut &mut dyn FnMut(&Frame)>,
        defer_mark: bool,
        cycles: &mut u64,
    ) -> Option<(Frame, WritebackPage, bool)> {
        let t = table();
        let profile = self.profile.load(Ordering::Relaxed);
        let mut t0 = if profile {
            crate::arch::time::rdtsc()
        } else {
            0
        };
        // `folio_mkclean`: write-protect every mapping of the page (the
        // next write through one faults and goes through `page_mkwrite`,
        // which waits for this writeback) and move the hardware dirty bits
        // into PG_DIRTY. Under the page lock, as Linux does: a mapping
        // added after this snapshot maps the page only through a fault,
        // which needs the lock. The same argument makes a Relaxed read of
        // the count enough: a mapping that can hold this page was added
        // (count written under the mappings lock) before its fault took and
        // released this page's lock, which our lock's Acquire follows.
        if self.nr_mappings.load(Ordering::Relaxed) > 0 {
            let mappings = self.mappings.lock().clone();
            for m in mappings.iter() {
                if index >= m.first_index() && index < m.first_index() + m.pages() && m.clean(index)
                {
                    self.mark_dirty(index, &page);
                }
            }
        }
        let mkclean = lap(profile, &mut t0);
        if profile {
            self.counters
                .wb_mkclean_cycles
                .fetch_add(mkclean, Ordering::Relaxed);
        }
        if force {
            // Written whether dirty or not: dirty it under the lock, as a
            // writer would (it is up to date: `read_page`).
            self.mark_dirty(index, &page);
        }
        if !t.clear_page_dirty_for_io(&page) {
            // Clean: a stale mark (the page was written since it was set).
            self.set_mark(index, &page, false);
            unlock_page(&page);
            return None;
        }
        let start = t.start_page_writeback(&page);
        // The mark goes only now that PG_WRITEBACK is set, as Linux's
        // `__folio_start_writeback` clears the dirty tag: a `sync` whose
        // pass no longer finds the mark (its lookup takes the index lock
        // after this clear) then finds the page under writeback when it
        // waits (`wait_writeback`). Cleared earlier, the mark could be gone
        // while PG_WRITEBACK is not yet set, and such a sync would return
        // before this write ended. Under the page lock, so a writer that
        // dirties the page again (it needs the lock) marks it after this.
        //
        // A batch may instead clear the marks of a whole run at once, when
        // it submits the run (`defer_mark`, [`File::submit_run`]): still
        // after PG_WRITEBACK is set, and before anyone can dirty the page
        // again, because from here until the run is submitted and its
        // write ends, a writer (CPU store or `page_mkwrite`) waits for
        // stable data. Not a page that may be pinned: a device may write
        // it through the pin meanwhile, and its holder mark it dirty, so
        // its mark goes now, under the lock, as above.
        let deferred = defer_mark && !start.maybe_pinned;
        if !deferred {
            self.set_mark(index, &page, false);
        }
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
                        return None;
                    }
                }
            } else {
                // The page itself goes to the device: its reference moves
                // into the request (no clone, no put).
                if let Some(started) = started {
                    started(&page);
                }
                unlock_page(&page);
                *cycles += lap(profile, &mut t0);
                return Some((page, wb, deferred));
            };
        if let Some(started) = started {
            started(&data);
        }
        unlock_page(&page);
        *cycles += lap(profile, &mut t0);
        Some((data, wb, deferred))
    }

    /// Writes back every page of the file marked dirty, in index order, as
    /// one batch (`writeback_iter`/`write_cache_pages`): the device is
    /// plugged for the pass, adjacent pages go out in one request of up to
    /// the device's segment limit, and each request's completion ends the
    /// writeback of all its pages in one interrupt. `mode` says what to do
    /// with a page that cannot start at once ([`SyncMode`]). Returns how
    /// many pages were submitted.
    ///
    /// Each page goes through the same steps as [`File::writeback_page`]
    /// under its own lock; the only difference is that a page is submitted
    /// later, with its run, after its lock was released. That is safe for
    /// the same reason the single-page path may submit after unlocking:
    /// from `start_page_writeback` on, PG_WRITEBACK keeps writers waiting
    /// (stable pages) and keeps the page in the cache ([`File::evict`]).
    pub fn writeback_pages(self: &Arc<Self>, mode: SyncMode) -> usize {
        let t = table();
        let profile = self.profile.load(Ordering::Relaxed);
        let mut t0 = if profile {
            crate::arch::time::rdtsc()
        } else {
            0
        };
        let marked = self.marked_pages();
        let lookup = lap(profile, &mut t0);
        let max = self.dev.max_segments().max(1);
        let (mut lock_c, mut start_c, mut submit_c, mut profiled) = (0, 0, 0, 0u64);
        let mkclean0 = self.counters.wb_mkclean_cycles.load(Ordering::Relaxed);
        let mut run: Option<Run> = None;
        let mut submitted = 0;
        self.dev.plug();
        for (index, page) in marked {
            // Lock it: skip a page another holds in a background pass (its
            // holder may be a writer about to dirty it again, or another
            // flusher), wait for it in a data-integrity one. Never sleep
            // holding the plug (Linux flushes a task's plug when it
            // sleeps): the holder may be waiting for a write our plug is
            // holding back, behind a second pass that waits for us.
            if !t.trylock_page(&page) {
                if mode == SyncMode::None {
                    self.counters
                        .writeback_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(r) = run.take() {
                    submitted += self.submit_run(r);
                }
                self.dev.unplug();
                crate::pagelock::lock_page(&page);
                self.dev.plug();
            }
            // Evicted (and maybe reused) between the lookup and the lock:
            // its entry, and mark, left with it.
            if !self.owns(&page, index) {
                unlock_page(&page);
                continue;
            }
            if page.flags().test(pagesync::flags::PG_WRITEBACK) {
                match mode {
                    SyncMode::None => {
                        unlock_page(&page);
                        self.counters
                            .writeback_skipped
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // A write of it is in flight; the page may have been
                    // dirtied since that write took its data. Wait for it,
                    // the plug released first (as above).
                    SyncMode::All => {
                        if let Some(r) = run.take() {
                            submitted += self.submit_run(r);
                        }
                        self.dev.unplug();
                        t.wait_on_page_writeback(&page);
                        self.dev.plug();
                    }
                }
            }
            lock_c += lap(profile, &mut t0);
            let Some((data, wb, deferred)) =
                self.start_locked(index, page, false, None, true, &mut start_c)
            else {
                continue;
            };
            let _ = lap(profile, &mut t0);
            profiled += 1;
            match run.as_mut() {
                Some(r) if r.first + r.data.len() as u64 == index && r.data.len() < max => {
                    r.data.push(data);
                    r.pages.push(wb);
                    r.deferred.push(deferred);
                }
                _ => {
                    if let Some(r) = run.take() {
                        submitted += self.submit_run(r);
                    }
                    let mut r = Run {
                        first: index,
                        data: Vec::with_capacity(max),
                        pages: Vec::with_capacity(max),
                        deferred: Vec::with_capacity(max),
                    };
                    r.data.push(data);
                    r.pages.push(wb);
                    r.deferred.push(deferred);
                    run = Some(r);
                }
            }
            submit_c += lap(profile, &mut t0);
        }
        if let Some(r) = run.take() {
            submitted += self.submit_run(r);
        }
        self.dev.unplug();
        submit_c += lap(profile, &mut t0);
        if profile {
            let c = &self.counters;
            c.wb_profiled.fetch_add(profiled, Ordering::Relaxed);
            c.wb_lookup_cycles.fetch_add(lookup, Ordering::Relaxed);
            c.wb_lock_cycles.fetch_add(lock_c, Ordering::Relaxed);
            // `start_locked` timed from the lock on: what it counted as
            // mkclean is not start.
            let mkclean = c.wb_mkclean_cycles.load(Ordering::Relaxed) - mkclean0;
            c.wb_start_cycles
                .fetch_add(start_c.saturating_sub(mkclean), Ordering::Relaxed);
            c.wb_submit_cycles.fetch_add(submit_c, Ordering::Relaxed);
        }
        submitted
    }

    /// Sends a run of adjacent pages under writeback as one request whose
    /// completion ends the writeback of each. Returns its page count.
    fn submit_run(self: &Arc<Self>, run: Run) -> usize {
        let n = run.data.len();
        let file = self.clone();
        let Run {
            first,
            data,
            pages,
            deferred,
        } = run;
        // The run's deferred marks, in one hold of the index lock (see
        // `start_locked`): before the submit, so before any write of the
        // run can end.
        self.clear_marks(
            pages
                .iter()
                .zip(&deferred)
                .enumerate()
                .filter(|(_, (_, d))| **d)
                .map(|(i, (wb, _))| (first + i as u64, wb.page())),
        );
        self.counters
            .writes_issued
            .fetch_add(n as u64, Ordering::Relaxed);
        self.counters.write_requests.fetch_add(1, Ordering::Relaxed);
        let frames = if n == 1 {
            data.into_iter().next().expect("one frame").into()
        } else {
            data.into()
        };
        self.dev.submit(Request {
            op: Op::Write,
            block: self.layout.block(self.id, first),
            frames,
            done: Box::new(move |r| {
                let profile = file.profile.load(Ordering::Relaxed);
                let mut t0 = if profile {
                    crate::arch::time::rdtsc()
                } else {
                    0
                };
                // One result for the whole request: a failed request
                // leaves every page of it dirty, marked, with the error.
                for (i, wb) in pages.into_iter().enumerate() {
                    file.end_writeback(first + i as u64, wb, r);
                }
                let c = lap(profile, &mut t0);
                if profile {
                    file.counters
                        .wb_complete_cycles
                        .fetch_add(c, Ordering::Relaxed);
                }
            }),
        });
        n
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

    /// Background writeback of every page marked dirty
    /// ([`File::writeback_pages`] with [`SyncMode::None`]); returns how many
    /// pages were submitted.
    pub fn writeback(self: &Arc<Self>) -> usize {
        self.writeback_pages(SyncMode::None)
    }

    /// Waits until no page of the file is under writeback.
    ///
    /// Walks the index in order and waits on the first page under
    /// writeback it finds (Linux waits on the writeback-tagged folios),
    /// then goes on after it: no reference is taken on a page that is not
    /// under writeback, so once the writes have ended the walk is a scan.
    /// A page under writeback stays in the index until its writeback ends
    /// ([`File::evict`]), so none is missed.
    pub fn wait_writeback(&self) {
        let mut from = 0;
        while let Some((index, page)) = self.next_under_writeback(from) {
            table().wait_on_page_writeback(&page);
            from = index + 1;
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
        self.writeback_pages(SyncMode::All);
        self.wait_writeback();
        if self.error.swap(false, Ordering::Relaxed) {
            return Err(FsError::Io(IoError::Device));
        }
        Ok(())
    }
}
