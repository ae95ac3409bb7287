//! Batched writeback and read-ahead (`kernel::pagecache::writeback`,
//! `kernel::pagecache::readahead`): what each promises, case by case, on
//! a fresh RAM partition. The tortures race them with everything else.

use alloc::vec::Vec;

use pagesync::flags::{PG_DIRTY, PG_ERROR, PG_READAHEAD, PG_UPTODATE, PG_WRITEBACK};

use super::{device_block, fresh_cache, pattern, put_device_block};
use crate::{
    kassert, kassert_eq,
    ktest::{Ctx, TestResult},
};
use kernel::{
    block::{BLOCK_SIZE, Inject, IoError, Op},
    pagecache::{FsError, readahead},
    pagelock::{table, unlock_page},
};

/// Sets `readahead=` for the rest of a case and back to the boot's value
/// when dropped.
struct Readahead(bool);

impl Readahead {
    fn set(ctx: &Ctx, on: bool) -> Readahead {
        readahead::set_enabled(on);
        Readahead(ctx.params.readahead)
    }
}

impl Drop for Readahead {
    fn drop(&mut self) {
        readahead::set_enabled(self.0);
    }
}

/// Dirty pages 0..40 and 50..52: one background pass sends three requests
/// (32 adjacent pages, the segment limit, then 8, then 2), and the device
/// holds every page once the writes have ended.
pub fn writeback_merges_adjacent_pages(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    kassert_eq!(c.dev.max_segments(), 32);
    let pages: Vec<u64> = (0..40).chain(50..52).collect();
    for &i in &pages {
        kassert_eq!(
            f.write(i * BLOCK_SIZE as u64, &pattern(1, i, 1)),
            Ok(BLOCK_SIZE)
        );
    }
    let s0 = f.stats();
    kassert_eq!(f.writeback(), pages.len());
    f.wait_writeback();
    let s1 = f.stats();
    kassert_eq!(s1.write_requests - s0.write_requests, 3);
    kassert_eq!(s1.writes_issued - s0.writes_issued, pages.len() as u64);
    for &i in &pages {
        kassert!(
            device_block(&*c.dev, c.layout.block(0, i)).unwrap() == pattern(1, i, 1),
            "page {} not on the device",
            i
        );
        kassert_eq!(f.page_state(i), Some((false, false)));
    }
    kassert_eq!(f.sync(), Ok(()));
    Ok(())
}

/// A background pass skips a page another thread holds locked (it keeps
/// its dirty mark and state); `sync` then waits for the lock and writes it.
pub fn background_writeback_skips_a_locked_page(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    for i in 0..4 {
        kassert_eq!(
            f.write(i * BLOCK_SIZE as u64, &pattern(2, i, 1)),
            Ok(BLOCK_SIZE)
        );
    }
    let held = f.find_lock_page(2).unwrap();
    let skipped0 = f.stats().writeback_skipped;
    kassert_eq!(f.writeback(), 3);
    f.wait_writeback();
    kassert_eq!(f.stats().writeback_skipped - skipped0, 1);
    kassert_eq!(f.page_state(2), Some((true, false)));
    kassert!(device_block(&*c.dev, c.layout.block(0, 2)).unwrap() != pattern(2, 2, 1));
    // The holder lets go from another thread while sync waits for it.
    let t = kernel::sched::spawn("pc-holder", None, move || {
        kernel::sched::timer::sleep_ns(20_000_000);
        unlock_page(&held);
    })
    .expect("spawn");
    kassert_eq!(f.sync(), Ok(()));
    kassert!(crate::sched::join_timeout(&t, 10_000));
    kassert!(device_block(&*c.dev, c.layout.block(0, 2)).unwrap() == pattern(2, 2, 1));
    kassert_eq!(f.page_state(2), Some((false, false)));
    Ok(())
}

/// A device error on one block of a multi-page request fails the whole
/// request: every page of it is dirty again with PG_ERROR (none is lost,
/// none counted written), `sync` reports the error once, and the next
/// sync writes them all.
pub fn failed_request_keeps_every_page_dirty(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    for i in 0..8 {
        kassert_eq!(
            f.write(i * BLOCK_SIZE as u64, &pattern(3, i, 1)),
            Ok(BLOCK_SIZE)
        );
    }
    c.dev.inject(Inject {
        op: Op::Write,
        block: Some(c.layout.block(0, 5)),
        count: 1,
    });
    let s0 = f.stats();
    kassert_eq!(f.writeback(), 8);
    f.wait_writeback();
    let s1 = f.stats();
    kassert_eq!(s1.write_requests - s0.write_requests, 1);
    kassert_eq!(s1.write_errors - s0.write_errors, 8);
    for i in 0..8 {
        let p = f.find_get_page(i).unwrap();
        kassert!(
            p.flags().test(PG_DIRTY) && p.flags().test(PG_ERROR) && !p.flags().test(PG_WRITEBACK),
            "page {} after the failed request: {:#x}",
            i,
            p.flags().load(core::sync::atomic::Ordering::Relaxed)
        );
    }
    kassert_eq!(f.sync(), Err(FsError::Io(IoError::Device)));
    kassert_eq!(f.sync(), Ok(()));
    for i in 0..8 {
        kassert!(device_block(&*c.dev, c.layout.block(0, i)).unwrap() == pattern(3, i, 1));
    }
    Ok(())
}

/// Reading a file in order reads it in windows, each one request, the
/// marked page starting the next: far fewer requests than pages, and every
/// page correct. With `readahead=off`, one request per page.
pub fn readahead_reads_in_windows(ctx: &Ctx) -> TestResult {
    let pages = super::FILE_PAGES;
    for ra in [true, false] {
        let _ra = Readahead::set(ctx, ra);
        let c = fresh_cache(1)?;
        let f = c.file(0).unwrap().clone();
        for i in 0..pages {
            kassert!(put_device_block(&*c.dev, c.layout.block(0, i), &pattern(4, i, 1)).is_ok());
        }
        let mut buf = [0u8; BLOCK_SIZE];
        for i in 0..pages {
            kassert_eq!(f.read(i * BLOCK_SIZE as u64, &mut buf), Ok(BLOCK_SIZE));
            kassert!(
                buf == pattern(4, i, 1),
                "page {} differs (readahead {})",
                i,
                ra
            );
        }
        let s = f.stats();
        kassert_eq!(s.reads_issued, pages);
        if ra {
            // 4 + 8 + 16 + 32 pages in growing windows: 4 requests (a
            // window is split at the segment limit, 32).
            kassert!(
                s.read_requests <= pages / 8,
                "{} read requests",
                s.read_requests
            );
            kassert!(s.readahead_async >= 2);
            kassert_eq!(s.readahead_pages, pages);
        } else {
            kassert_eq!(s.read_requests, pages);
            kassert_eq!(s.readahead_pages, 0);
        }
    }
    Ok(())
}

/// Random reads read one page each, read-ahead on.
pub fn random_reads_read_one_page(ctx: &Ctx) -> TestResult {
    let _ra = Readahead::set(ctx, true);
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let mut buf = [0u8; 8];
    for (k, i) in [40u64, 7, 23, 58, 2].into_iter().enumerate() {
        kassert_eq!(f.read(i * BLOCK_SIZE as u64, &mut buf), Ok(8));
        let s = f.stats();
        kassert_eq!(s.reads_issued, k as u64 + 1);
        kassert_eq!(s.read_requests, k as u64 + 1);
    }
    kassert_eq!(f.cached_pages(), 5);
    Ok(())
}

/// A read-ahead window whose request fails: no page of it is seen up to
/// date or keeps the mark; each reader then reads its page again alone and
/// gets the data (the injected error was one-shot), or the error if the
/// device fails again.
pub fn failed_window_reads_again(ctx: &Ctx) -> TestResult {
    let _ra = Readahead::set(ctx, true);
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    for i in 0..4 {
        kassert!(put_device_block(&*c.dev, c.layout.block(0, i), &pattern(5, i, 1)).is_ok());
    }
    // Page 0's miss reads the window 0..4 in one request; fail it.
    c.dev.inject(Inject {
        op: Op::Read,
        block: Some(c.layout.block(0, 2)),
        count: 1,
    });
    let mut buf = [0u8; BLOCK_SIZE];
    kassert_eq!(f.read(0, &mut buf), Ok(BLOCK_SIZE));
    kassert!(buf == pattern(5, 0, 1));
    for i in 1..4 {
        let p = f.find_get_page(i).unwrap();
        // Wait for the window's end (it has failed by now, or is failing).
        table().wait_on_page_locked(&p);
        kassert!(
            !p.flags().test(PG_UPTODATE) && !p.flags().test(PG_READAHEAD),
            "page {} of the failed window: {:#x}",
            i,
            p.flags().load(core::sync::atomic::Ordering::Relaxed)
        );
    }
    for i in 1..4 {
        kassert_eq!(f.read(i * BLOCK_SIZE as u64, &mut buf), Ok(BLOCK_SIZE));
        kassert!(
            buf == pattern(5, i, 1),
            "page {} differs after the retry",
            i
        );
    }
    // A read that keeps failing reports the error.
    c.dev.inject(Inject {
        op: Op::Read,
        block: Some(c.layout.block(0, 10)),
        count: 2,
    });
    kassert_eq!(
        f.read(10 * BLOCK_SIZE as u64, &mut buf),
        Err(FsError::Io(IoError::Device))
    );
    Ok(())
}
