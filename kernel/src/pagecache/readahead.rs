//! Read-ahead (Linux `mm/readahead.c`, much reduced): a sequential reader's
//! misses read a *window* of pages in one request, and the page marked
//! `PG_READAHEAD` starts the next window before the reader needs it.
//!
//! Mental model: each [`File`] keeps one [`RaState`] (Linux's
//! `file_ra_state`, here per file rather than per open file): the current
//! window `start..start + size`, of which the last `async_size` pages are
//! the part whose first page carries the mark, and the last index read.
//!
//! * A miss ([`File::sync_readahead`], `page_cache_sync_ra`): if the access
//!   is sequential (the previous read was the page before, or this is page
//!   0, or the miss is just past the current window) a new window starts
//!   here, 4 pages the first time and growing (x4 while small, then x2)
//!   up to [`RA_MAX`] pages (256 KiB); otherwise
//!   (random access) only the page itself is read, as without read-ahead.
//! * A hit on a marked page ([`File::async_readahead`],
//!   `page_cache_async_ra`): the reader that clears the mark (exactly one,
//!   `pagesync::readahead`) starts the next window, right after the
//!   current one, and does not wait for it.
//! * A window ([`File::read_window`], `page_cache_ra_unbounded`): every
//!   page of it not cached is inserted locked and not up to date, the
//!   marked one marked while locked; runs of adjacent new pages go out as
//!   one read request each (up to the device's segment limit) under one
//!   plug, and a page already cached ends a run and is skipped. Nothing
//!   waits: the completion ends each page's read (`end_page_readahead`:
//!   up to date and unlocked, or, on failure, unmarked, unlocked and not up
//!   to date, so its reader reads it again and gets the error).
//!
//! Read-ahead never sleeps and never takes a page lock it could wait for:
//! it only creates pages, which it alone can hold locked. `readahead=off`
//! reads one page per miss, for comparison.

use alloc::{boxed::Box, vec::Vec};
use core::sync::atomic::{AtomicBool, Ordering};

use super::file::File;
use crate::{
    block::{Op, Request},
    mm::Frame,
    pagelock::table,
};

/// Most pages in a window: 256 KiB, twice Linux's default `ra_pages`
/// (block drivers raise it to their optimal I/O size). Under QEMU a
/// reader that outruns the device sleeps, and a wake-up costs tens of
/// microseconds; a 32-page window left it sleeping at most window
/// boundaries on the RAM device (measured by `pagecache_seqread`).
pub const RA_MAX: u64 = 64;
/// A first window's pages (Linux `get_init_ra_size` for a one-page read
/// with a 128 KiB maximum).
const RA_INIT: u64 = 4;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// `readahead=`: set at boot (and by tests that compare).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the page cache reads ahead.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One file's read-ahead state (Linux `file_ra_state`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RaState {
    /// The current window: `start..start + size`.
    pub start: u64,
    pub size: u64,
    /// The window's last `async_size` pages; the first of them is marked.
    pub async_size: u64,
    /// The last page read, if any.
    pub prev: Option<u64>,
}

/// Linux `get_next_ra_size`: x4 while small, x2 up to half the maximum,
/// then the maximum.
fn next_size(cur: u64) -> u64 {
    if cur < RA_MAX / 16 {
        (4 * cur).min(RA_MAX)
    } else if cur <= RA_MAX / 2 {
        2 * cur
    } else {
        RA_MAX
    }
}

impl File {
    /// Notes a read of page `index` (hit or miss): the next miss is
    /// sequential if it is the page after.
    pub(super) fn note_read(&self, index: u64) {
        self.ra.lock().prev = Some(index);
    }

    /// A reader missed page `index`: if the access is sequential (module
    /// docs), read a window from it and return true (the page is then
    /// cached, unless another thread's insertion won or memory ran out:
    /// the caller looks it up again either way); a random miss returns
    /// false and the caller reads the one page as without read-ahead.
    pub(super) fn sync_readahead(&self, index: u64) -> bool {
        let (start, size, async_size) = {
            let mut ra = self.ra.lock();
            let sequential = index == 0
                || ra.prev.is_some_and(|p| p + 1 == index || p == index)
                || (ra.size > 0 && index == ra.start + ra.size);
            let w = if !sequential {
                (index, 1, 0)
            } else if ra.size > 0 && index == ra.start + ra.size {
                // Caught up with a window that had no mark left to start
                // the next: grow it as the mark would have.
                let size = next_size(ra.size);
                (index, size, size)
            } else {
                (index, RA_INIT, RA_INIT - 1)
            };
            ra.start = w.0;
            ra.size = w.1;
            ra.async_size = w.2;
            ra.prev = Some(index);
            w
        };
        if size == 1 {
            return false;
        }
        self.read_window(start, size, async_size);
        true
    }

    /// A reader reached page `index` and cleared its mark: start the next
    /// window after the current one, without waiting for it.
    pub(super) fn async_readahead(&self, index: u64) {
        let (start, size) = {
            let mut ra = self.ra.lock();
            // The mark of the current window: the next starts at its end.
            // A mark of an older window (the state moved on since): start
            // right after this page.
            let start = if index >= ra.start && index < ra.start + ra.size {
                ra.start + ra.size
            } else {
                index + 1
            };
            let size = next_size(ra.size.max(1));
            ra.start = start;
            ra.size = size;
            ra.async_size = size;
            (start, size)
        };
        self.counters
            .readahead_async
            .fetch_add(1, Ordering::Relaxed);
        self.read_window(start, size, size);
    }

    /// Reads the pages of `start..start + size` that are not cached, the
    /// page `async_size` before the end marked (none if 0): module docs.
    pub(super) fn read_window(&self, start: u64, size: u64, async_size: u64) {
        let t = table();
        let end = start.saturating_add(size).min(self.pages());
        let mark = (async_size > 0).then(|| start + size - async_size);
        let max = self.dev.max_segments().max(1);
        let mut run: Vec<Frame> = Vec::new();
        let mut first = start;
        self.dev.plug();
        for index in start..end {
            let page = match self.find_or_create(index) {
                Ok((page, true)) => page,
                // Cached already (or being read by someone else): skip it,
                // ending the run. Out of memory: stop here.
                Ok((_, false)) => {
                    self.submit_window_run(first, core::mem::take(&mut run));
                    continue;
                }
                Err(_) => break,
            };
            if Some(index) == mark {
                t.set_page_readahead(&page);
            }
            if run.is_empty() {
                first = index;
                run.reserve(max.min((end - index) as usize));
            }
            run.push(page);
            if run.len() == max {
                self.submit_window_run(first, core::mem::take(&mut run));
            }
        }
        self.submit_window_run(first, run);
        self.dev.unplug();
    }

    /// One read request for adjacent new pages `first..`, each locked and
    /// not up to date; the completion ends each page's read.
    fn submit_window_run(&self, first: u64, run: Vec<Frame>) {
        let n = run.len() as u64;
        if n == 0 {
            return;
        }
        self.counters.reads_issued.fetch_add(n, Ordering::Relaxed);
        self.counters.read_requests.fetch_add(1, Ordering::Relaxed);
        self.counters
            .readahead_pages
            .fetch_add(n, Ordering::Relaxed);
        let pages = run.clone();
        self.dev.submit(Request {
            op: Op::Read,
            block: self.layout.block(self.id, first),
            frames: if n == 1 {
                run.into_iter().next().expect("one page").into()
            } else {
                run.into()
            },
            done: Box::new(move |r| {
                // One result for the whole request: a failed request fails
                // every page of it.
                for p in &pages {
                    table().end_page_readahead(p, r.is_ok());
                }
            }),
        });
    }
}
