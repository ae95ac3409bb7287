//! One cached file: the file itself, its index of cached pages with their
//! dirty marks (Linux's xarray), its counters, and the lookups every path
//! starts with. The paths themselves are one module each: [`super::read`],
//! [`super::write`], [`super::writeback`], [`super::evict`], and
//! [`super::map`] (the file as a mapping's source).

use alloc::{collections::BTreeMap, sync::Arc, vec::Vec};
use core::{
    ptr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use pagesync::{
    Page,
    flags::{PG_DIRTY, PG_WRITEBACK},
};

use super::layout::{Layout, LayoutError};
use crate::{
    block::{BLOCK_SIZE, BlockDevice, IoError},
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::{lock_page, table, unlock_page},
    sync::IrqMutex,
    vm::Mapping,
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

/// The counters of a file, each named once: [`FileStats`] (a snapshot)
/// and the live atomics behind it.
macro_rules! stats {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// A file's counters at one moment ([`File::stats`]).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct FileStats {
            $($(#[$doc])* pub $field: u64,)*
        }

        /// The live counters behind [`FileStats`]. Relaxed everywhere:
        /// statistics, read after the fact.
        #[derive(Default)]
        pub(super) struct Counters {
            $(pub(super) $field: AtomicU64,)*
        }

        impl Counters {
            fn snapshot(&self) -> FileStats {
                FileStats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

stats! {
    hits,
    misses,
    /// Pages submitted for reading.
    reads_issued,
    /// Read requests those pages went in (a read-ahead window's adjacent
    /// pages share one).
    read_requests,
    /// Pages read in read-ahead windows (the missed page included).
    readahead_pages,
    /// Windows started by a reader reaching a `PG_READAHEAD` mark.
    readahead_async,
    /// Pages submitted for writing.
    writes_issued,
    /// Write requests those pages went in (adjacent pages share one).
    write_requests,
    write_errors,
    evicted,
    /// Writes done from a bounce copy (the page may have been pinned).
    bounced,
    /// Writebacks put off for want of a frame for the copy.
    bounce_failures,
    /// Pages whose last reference went at the end of their writeback (an
    /// eviction dropped the cache's reference while the write ran).
    freed_at_end_of_writeback,
    /// Pages a background pass ([`super::writeback::SyncMode::None`])
    /// skipped: locked by another thread or already under writeback.
    writeback_skipped,
    /// With [`File::set_profile`]: pages whose writeback phases were timed,
    /// and the TSC cycles each phase took in all: looking the marked pages
    /// up, taking their locks, cleaning their mappings, clearing dirty and
    /// starting writeback (and any bounce copy), submitting, and the
    /// completion's per-page work.
    wb_profiled,
    wb_lookup_cycles,
    wb_lock_cycles,
    wb_mkclean_cycles,
    wb_start_cycles,
    wb_submit_cycles,
    wb_complete_cycles,
}

/// A file of the device (module docs of `super`).
pub struct File {
    pub(super) dev: Arc<dyn BlockDevice>,
    pub(super) layout: Layout,
    /// The file's number.
    pub id: u64,
    tree: IrqMutex<Tree>,
    /// A write error not yet reported by [`File::sync`] (Linux's errseq,
    /// reduced to "report once").
    pub(super) error: AtomicBool,
    pub(super) counters: Counters,
    /// The address-space mappings of this file (Linux `i_mmap`): writeback
    /// cleans them. Never held while calling into the VM
    /// (`Mapping::clean` may end in `unmapped`).
    /// Copy on write: a reader takes the `Arc` (no allocation on the
    /// writeback path), `mapped`/`unmapped` replace the list.
    pub(super) mappings: IrqMutex<Arc<Vec<Mapping>>>,
    /// How many entries `mappings` holds, written under its lock: lets
    /// writeback skip the lock for a file nobody maps (see
    /// `File::start_locked` for why a Relaxed read is enough).
    pub(super) nr_mappings: AtomicU64,
    /// Whether writeback times its phases ([`File::set_profile`]).
    pub(super) profile: AtomicBool,
    /// Read-ahead's window (`super::readahead`).
    pub(super) ra: IrqMutex<super::readahead::RaState>,
}

/// A race point of the page cache's index (`pagesync::race`): after every
/// lookup and every change of the index, once its lock is dropped, so the
/// jitter widens "looked up, then acted on what it found" windows as it
/// does the protocol's own.
#[inline(always)]
pub(super) fn race(p: pagesync::RacePoint) {
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
            mappings: IrqMutex::new(Arc::new(Vec::new())),
            nr_mappings: AtomicU64::new(0),
            profile: AtomicBool::new(false),
            ra: IrqMutex::new(super::readahead::RaState {
                start: 0,
                size: 0,
                async_size: 0,
                prev: None,
            }),
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
    pub(super) fn owns(&self, page: &Page, index: u64) -> bool {
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
    pub(super) fn find_or_create(&self, index: u64) -> Result<(Frame, bool), FsError> {
        if index >= self.pages() {
            return Err(FsError::OutOfRange);
        }
        if let Some(f) = self.find_get_page(index) {
            return Ok((f, false));
        }
        // Allocate outside the tree lock; a racing creator may win. Not
        // zeroed (as Linux's `filemap_alloc_folio`): a new page is locked
        // and not up to date, and nothing shows its contents before they
        // are filled, by a read that ends with PG_UPTODATE or by a write of
        // the whole page; a failed read leaves it not up to date.
        let new = alloc_pages(0, AllocFlags::NONE).ok_or(FsError::NoMemory)?;
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

    /// Locks `page`, found at `index`, and returns it locked if it is
    /// still this file's page `index` (an eviction may have taken it out
    /// between the lookup and the lock); otherwise unlocks it and returns
    /// `None`. The check every path makes after it locks a looked-up page.
    pub(super) fn lock_if_ours(&self, page: Frame, index: u64) -> Option<Frame> {
        lock_page(&page);
        if self.owns(&page, index) {
            return Some(page);
        }
        unlock_page(&page);
        None
    }

    /// `filemap_lock_folio`: the cached page at `index`, locked and still
    /// this file's, with a reference; `None` if none is cached. A page
    /// evicted between the lookup and the lock is looked up again.
    pub fn find_lock_page(&self, index: u64) -> Option<Frame> {
        loop {
            let page = self.find_get_page(index)?;
            if let Some(page) = self.lock_if_ours(page, index) {
                return Some(page);
            }
        }
    }

    /// `__filemap_get_folio(FGP_LOCK | FGP_CREAT)`: the page at `index`,
    /// locked, cached or inserted now (then not up to date: the caller
    /// fills it); returns whether it was created.
    pub(super) fn find_or_create_lock(&self, index: u64) -> Result<(Frame, bool), FsError> {
        loop {
            let (page, created) = self.find_or_create(index)?;
            if created {
                return Ok((page, true));
            }
            if let Some(page) = self.lock_if_ours(page, index) {
                return Ok((page, false));
            }
        }
    }

    /// The first cached page at `from` or after it that is under writeback
    /// now, with a reference.
    pub(super) fn next_under_writeback(&self, from: u64) -> Option<(u64, Frame)> {
        let found = self
            .tree
            .lock()
            .pages
            .range(from..)
            // Acquire: a page seen with writeback over is skipped without
            // a wait; this pairs with the Release RMW of its end of
            // writeback, so what the completion did first (an error
            // recorded) is visible to the caller after the walk, as after
            // a wait.
            .find(|(_, s)| s.frame.flags().test_acquire(PG_WRITEBACK))
            .map(|(&i, s)| (i, s.frame.clone()));
        race(pagesync::RacePoint::CacheLookup);
        found
    }

    /// Takes `page`'s entry at `index` out of the index, its dirty mark
    /// with it, if the entry is `page` (the caller holds the page lock and
    /// has checked it is still this file's page `index`; only a holder of
    /// its lock removes it). Returns the cache's reference.
    pub(super) fn remove_entry(&self, index: u64, page: &Page) -> Option<Frame> {
        let removed = {
            let mut tr = self.tree.lock();
            let ours = tr.slot_of(index, page).is_some();
            ours.then(|| tr.pages.remove(&index)).flatten()
        };
        race(pagesync::RacePoint::CacheUpdate);
        removed.map(|s| s.frame)
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
    pub(super) fn set_mark(&self, index: u64, page: &Page, dirty: bool) {
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

    /// Clears the dirty marks of these `(index, page)` entries in one hold
    /// of the index lock (a writeback run's, `super::writeback`): each
    /// entry must still be that page, which writeback keeps in the cache.
    pub(super) fn clear_marks<'a>(&self, entries: impl Iterator<Item = (u64, &'a Page)>) {
        let mut tree = self.tree.lock();
        for (index, page) in entries {
            let found = tree.slot_of(index, page).map(|s| s.dirty = false);
            debug_assert!(
                found.is_some(),
                "pagecache: page {index} of file {} under writeback is not in the cache",
                self.id
            );
        }
        drop(tree);
        race(pagesync::RacePoint::CacheUpdate);
    }

    /// Whether page `index` is cached and dirty or under writeback.
    pub fn page_state(&self, index: u64) -> Option<(bool, bool)> {
        let p = self.find_get_page(index)?;
        Some((p.flags().test(PG_DIRTY), p.flags().test(PG_WRITEBACK)))
    }

    /// Times writeback's phases from now on (or stops): the `wb_*`
    /// counters of [`FileStats`]. Off by default; a benchmark turns it on.
    pub fn set_profile(&self, on: bool) {
        self.profile.store(on, Ordering::Relaxed);
    }

    /// The cached pages whose entries carry the dirty mark now, in index
    /// order, each with a reference: one hold of the index lock for a
    /// whole writeback pass.
    pub(super) fn marked_pages(&self) -> Vec<(u64, Frame)> {
        let marked = self
            .tree
            .lock()
            .pages
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(&i, s)| (i, s.frame.clone()))
            .collect();
        race(pagesync::RacePoint::CacheLookup);
        marked
    }

    /// Counters.
    pub fn stats(&self) -> FileStats {
        self.counters.snapshot()
    }
}
