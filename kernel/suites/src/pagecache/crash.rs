//! `pagecache.crash_consistency`: the kernel's half of the
//! crash-consistency check of `sync` on the virtio disk
//! ([`contract::crash`] explains the whole check; the host's half replays
//! QEMU's `blklogwrites` log, `tests/tests/crash.rs`).
//!
//! Writers write whole versions of their own pages through the page
//! cache; one syncer notes what each sync must cover, syncs, prints what
//! the sync covered, and writes the sync's record block straight to the
//! device. Without the host's log this case checks only that every sync
//! returned `Ok`; it is the host that knows what the device made durable
//! and when.

use alloc::{format, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use contract::{
    crash::{FILE_PAGES, FIRST_BLOCK, Line, RECORD_BLOCK, RECORD_FILE, RECORDS},
    torture,
};

use crate::{
    kassert, kassert_eq,
    ktest::{Ctx, TestError, TestResult},
    pagelock::torture::Rng,
    sched::join_timeout,
};
use kernel::{
    block::{BLOCK_SIZE, BlockDevice, Op, Partition},
    mm::{AllocFlags, alloc_pages},
    pagecache::{Cache, io_sync},
    println, sched,
};

/// Syncs per run.
const SYNCS: u64 = 40;
/// Pages the writers write (of the file's [`FILE_PAGES`]).
const PAGES: u64 = 32;
/// Writer threads.
const WRITERS: u64 = 2;

struct Shared {
    stop: AtomicBool,
    /// Per page: the generation of the last write that returned.
    last: Vec<AtomicU64>,
    writes: AtomicU64,
}

pub fn crash_consistency(ctx: &Ctx) -> TestResult {
    let disk: &'static dyn BlockDevice = kernel::block::virtio_blk()
        .map(|d| d as &'static dyn BlockDevice)
        .map_err(TestError::Skip)?;
    let fs = Partition::new(disk, FIRST_BLOCK, 1 + FILE_PAGES)
        .ok_or(TestError::Skip("the virtio disk is too small"))?;
    let records = Partition::new(disk, RECORD_BLOCK, RECORDS)
        .ok_or(TestError::Skip("the virtio disk is too small"))?;
    let cache = Cache::open(Arc::new(fs), FILE_PAGES).map_err(|e| {
        println!("    # opening the check's file system: {e:?}");
        TestError::Fail
    })?;
    let file = cache.file(0).ok_or(TestError::Fail)?.clone();
    let run = ctx.params.seed ^ kernel::arch::time::rdtsc();
    println!("    {}", Line::Begin { run, pages: PAGES });
    let s = Arc::new(Shared {
        stop: AtomicBool::new(false),
        last: (0..PAGES).map(|_| AtomicU64::new(0)).collect(),
        writes: AtomicU64::new(0),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (s, file) = (s.clone(), file.clone());
            sched::spawn(&format!("crash-w{w}"), None, move || {
                let mut rng = Rng::new(run ^ (w + 1));
                let mut page = [0u8; BLOCK_SIZE];
                while !s.stop.load(Ordering::Acquire) {
                    let p = w + WRITERS * rng.below(PAGES / WRITERS);
                    let generation = s.last[p as usize].load(Ordering::Relaxed) + 1;
                    torture::fill(&mut page, run, 0, p, generation, w);
                    if file.write(p * BLOCK_SIZE as u64, &page) == Ok(BLOCK_SIZE) {
                        // Release pairs with the syncer's Acquire: a
                        // generation it sees was accepted by the cache.
                        s.last[p as usize].store(generation, Ordering::Release);
                        s.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    sched::yield_now();
                }
            })
            .map_err(|_| TestError::Fail)
        })
        .collect::<Result<_, _>>()?;
    let mut failures: Vec<String> = Vec::new();
    let record = alloc_pages(0, AllocFlags::ZERO).ok_or(TestError::Fail)?;
    for k in 1..=SYNCS {
        // Acquire pairs with the writers' Release: every generation seen
        // here was accepted before the sync starts.
        let covered: Vec<u64> = s.last.iter().map(|g| g.load(Ordering::Acquire)).collect();
        if let Err(e) = file.sync() {
            failures.push(format!("sync {k}: {e:?}"));
            break;
        }
        let gens: Vec<String> = covered.iter().map(|g| format!("{g}")).collect();
        println!(
            "    {}",
            Line::Covered {
                k,
                gens: &gens.join(",")
            }
        );
        // SAFETY: our frame, mapped, one page, no I/O on it now.
        let buf = unsafe { &mut *record.virt().cast::<[u8; BLOCK_SIZE]>() };
        torture::fill(buf, run, RECORD_FILE, k, k, 0);
        if let Err(e) = io_sync(&records, Op::Write, k % RECORDS, record.clone()) {
            failures.push(format!("record {k}: {e:?}"));
            break;
        }
    }
    s.stop.store(true, Ordering::Release);
    for t in &writers {
        kassert!(join_timeout(t, 10_000), "writer {} did not stop", t.name);
    }
    println!("    {}", Line::End { syncs: SYNCS });
    println!(
        "    # crash-consistency: {} writes, {SYNCS} syncs of {PAGES} pages; the host replays the device's write log",
        s.writes.load(Ordering::Relaxed)
    );
    kassert_eq!(failures, Vec::<String>::new());
    Ok(())
}
