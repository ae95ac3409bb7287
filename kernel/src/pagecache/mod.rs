//! The page cache: files of a block device, cached page by page, with the
//! Linux read, write, writeback and sync paths on top of `pagesync`.
//!
//! Mental model (Linux `mm/filemap.c`, `mm/page-writeback.c`): each
//! [`File`] maps a page index to a [`Frame`] (the xarray; here a `BTreeMap`
//! under the file's lock), plus a *dirty tag* set of the indices that may
//! need writing. Pages move through these states, every change of the
//! flags going through `pagesync`:
//!
//! ```text
//!            read in (locked, !uptodate)          write (locked, wait stable)
//! missing ──────────────────────────────> cached ────────────────────────────> dirty
//!            end_page_read: unlock+uptodate        set_page_dirty, tag, unlock     │
//!                                                                                  │ writeback:
//!                    end_page_writeback (IRQ)                                      │ lock, clear dirty
//!         cached <─────────────────────────── under writeback <──────────────────────┘ for io, start
//!                 clear+wake; on error: dirty+error          (unlocked while the I/O runs)
//! ```
//!
//! The rules that make it safe, each the Linux one:
//! * a missing page is created locked and not up to date, inserted, then
//!   read; readers that find it wait on the page lock and then check
//!   `PG_UPTODATE` (a failed read leaves it clear: the next reader locks
//!   the page and reads again);
//! * writers lock the page and wait for stable data
//!   (`wait_for_stable_page`) before they change it, so the device never
//!   sees a page change while it is being written;
//! * writeback locks the page, moves mapping dirtiness into `PG_DIRTY`
//!   (`vm::Mapping::clean`), clears it for I/O, starts writeback (only ever
//!   under the page lock), unlocks and submits; the end of writeback runs
//!   in the device's interrupt, holding no reference of its own
//!   ([`file::WritebackPage`]), so `pagesync` takes the temporary one
//!   (073861ed77b6);
//! * a page leaves the cache ([`File::evict`]) only locked and after
//!   `wait_on_page_writeback`, which is what keeps a page under writeback
//!   from being freed.

mod evict;
pub mod file;
pub mod layout;
mod map;
mod read;
pub mod readahead;
pub mod worker;
mod write;
pub mod writeback;

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU8, Ordering};

pub use file::{File, FileStats, FsError};
pub use layout::{Layout, LayoutError};
pub use writeback::Writeback;

use crate::{
    block::{BLOCK_SIZE, BlockDevice, IoError, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    sched::thread::WaitQueue,
};

/// Starts the page cache's worker thread (boot, after the scheduler) and
/// sets read-ahead on or off (`readahead=`).
pub fn init(readahead: bool) {
    readahead::set_enabled(readahead);
    worker::start();
}

/// The files of one device.
pub struct Cache {
    pub dev: Arc<dyn BlockDevice>,
    pub layout: Layout,
    files: Vec<Arc<File>>,
}

impl Cache {
    /// Reads the device's header (formatting an unformatted device with
    /// files of `file_blocks` blocks) and sets up one cached file per
    /// file of the layout.
    pub fn open(dev: Arc<dyn BlockDevice>, file_blocks: u64) -> Result<Cache, FsError> {
        let header = alloc_pages(0, AllocFlags::ZERO).ok_or(FsError::NoMemory)?;
        let header = io_sync(&*dev, Op::Read, 0, header)?;
        // SAFETY: the frame is ours, mapped, and one page long.
        let buf = unsafe { &mut *header.virt().cast::<[u8; BLOCK_SIZE]>() };
        let layout = match Layout::decode(buf, dev.blocks()) {
            Some(l) => l.map_err(FsError::Layout)?,
            None => {
                let l = Layout::new(dev.blocks(), file_blocks).map_err(FsError::Layout)?;
                l.encode(buf);
                let _ = io_sync(&*dev, Op::Write, 0, header)?;
                log::info!(
                    "pagecache: formatted {}: {} files of {} pages",
                    dev.name(),
                    l.files,
                    l.file_blocks
                );
                l
            }
        };
        let files = (0..layout.files)
            .map(|f| Arc::new(File::new(dev.clone(), layout, f)))
            .collect();
        Ok(Cache { dev, layout, files })
    }

    /// File number `f`.
    pub fn file(&self, f: u64) -> Option<&Arc<File>> {
        self.files.get(usize::try_from(f).ok()?)
    }

    /// All files.
    pub fn files(&self) -> &[Arc<File>] {
        &self.files
    }

    /// `syncfs`: writes back every dirty page of every file, waits for
    /// it, then flushes the device once; the first error seen (each file
    /// reports a write error once).
    pub fn sync(&self) -> Result<(), FsError> {
        let mut first = Ok(());
        for f in &self.files {
            if let Err(e) = f.write_and_wait()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        let flushed = flush_device(&*self.dev);
        first.and(flushed)
    }
}

/// Makes every write `dev` completed so far durable: a flush request
/// (`REQ_PREFLUSH`), waited for. The end of `sync` (`fsync`'s promise).
/// With the known-bad `bug=sync-no-flush`, returns at once.
pub fn flush_device(dev: &dyn BlockDevice) -> Result<(), FsError> {
    if !pagesync::variant::bugs::sync_flushes(crate::pagelock::config().bug) {
        return Ok(());
    }
    wait_for(dev, Request::flush).map_err(FsError::Io)
}

/// One synchronous block request (header I/O, tests): submits and sleeps
/// until the completion ran. Returns the frame.
pub fn io_sync(dev: &dyn BlockDevice, op: Op, block: u64, frame: Frame) -> Result<Frame, FsError> {
    let keep = frame.clone();
    wait_for(dev, |done| Request::new(op, block, frame, done))
        .map(|()| keep)
        .map_err(FsError::Io)
}

/// Submits the request `make` builds around a completion and sleeps until
/// that completion ran; its result.
pub fn wait_for(
    dev: &dyn BlockDevice,
    make: impl FnOnce(crate::block::Completion) -> Request,
) -> Result<(), IoError> {
    /// 0 while pending, then 1 + the index of the result in `RESULTS`.
    struct Done {
        state: AtomicU8,
        wq: WaitQueue,
    }
    const RESULTS: [Result<(), IoError>; 5] = [
        Ok(()),
        Err(IoError::OutOfRange),
        Err(IoError::BadRequest),
        Err(IoError::Injected),
        Err(IoError::Device),
    ];
    let done = Arc::new(Done {
        state: AtomicU8::new(0),
        wq: WaitQueue::new(),
    });
    let d = done.clone();
    dev.submit(make(alloc::boxed::Box::new(move |r| {
        let v = RESULTS.iter().position(|x| *x == r).unwrap_or(4) as u8 + 1;
        // Release pairs with the Acquire in the waiter's condition.
        d.state.store(v, Ordering::Release);
        d.wq.wake_up_all();
    })));
    done.wq
        .wait_event(|| done.state.load(Ordering::Acquire) != 0);
    let v = done.state.load(Ordering::Acquire);
    RESULTS[usize::from(v - 1)]
}
