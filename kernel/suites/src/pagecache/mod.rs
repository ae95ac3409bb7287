//! The `pagecache` suite: reads through the cache, first readers waiting
//! on the page lock, writes reaching the device through writeback and
//! sync, stable pages, write errors kept for a retry, writeback waiters
//! woken from the device interrupt, bad input refused, a torture of
//! writers, flushers and evictors that checks every byte at the end, and
//! the host-verified torture on the virtio disk (`disk_torture.rs`). Its
//! benchmarks (writeback throughput, read misses and read faults,
//! stable-page waits) are in `bench.rs`.
//!
//! Each case but the last runs on its own RAM-backed device (asynchronous
//! completion from another CPU's interrupt), so the cases see the real
//! in-flight windows and do not depend on a disk image; the host-verified
//! torture and `persist` use fixed regions of the virtio disk
//! (`contract::disk`), which the host reads back.

pub mod batch;
pub mod bench;
pub mod crash;
pub mod disk_torture;
pub mod torture;

use alloc::{boxed::Box, format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use pagesync::flags::{PG_DIRTY, PG_ERROR, PG_WRITEBACK};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
    sched::join_timeout,
};
use kernel::{
    block::{BLOCK_SIZE, BlockDevice, Inject, IoError, Op, Partition},
    mm::{AllocFlags, alloc_pages, page_alloc::free_frames},
    pagecache::{Cache, FsError, io_sync},
    pagelock::table,
    println,
    sched::{self, ThreadRef},
    vm::{AddressSpace, Prot},
};

/// Pages per file in the test layouts.
pub const FILE_PAGES: u64 = 64;

/// Blocks of the RAM device handed out so far (each case gets fresh ones).
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

/// A fresh device of `blocks` blocks: a partition of the RAM device never
/// used by this suite before in this boot, zeroed (other suites write the
/// RAM device too), so it reads as unformatted. Skips the case when the
/// RAM device is missing or full.
pub fn ram_device(blocks: u64) -> Result<Arc<dyn BlockDevice>, TestError> {
    let ram: &'static dyn BlockDevice = kernel::block::ram_disk().ok_or(TestError::Skip(
        "needs the RAM block device (ramdisk=1 or more)",
    ))?;
    let first = NEXT_BLOCK.fetch_add(blocks, Ordering::Relaxed);
    let part = Partition::new(ram, first, blocks).ok_or(TestError::Skip(
        "the RAM block device is full (raise ramdisk=)",
    ))?;
    let dev: Arc<dyn BlockDevice> = Arc::new(part);
    for b in 0..blocks {
        put_device_block(&*dev, b, &[0; BLOCK_SIZE]).map_err(|_| TestError::Fail)?;
    }
    Ok(dev)
}

/// A cache on a fresh RAM device with `files` files.
pub fn fresh_cache(files: u64) -> Result<Cache, TestError> {
    let dev = ram_device(1 + files * FILE_PAGES)?;
    Cache::open(dev, FILE_PAGES).map_err(|e| {
        println!("    # opening a fresh cache failed: {e:?}");
        TestError::Fail
    })
}

/// The bytes of page `index` written by writer `who` in round `round`.
pub fn pattern(who: u64, index: u64, round: u64) -> [u8; BLOCK_SIZE] {
    let mut b = [0u8; BLOCK_SIZE];
    for (i, w) in b.chunks_exact_mut(8).enumerate() {
        let v = (who << 56) ^ (index << 40) ^ (round << 16) ^ i as u64;
        w.copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Reads device block `block` directly (no cache).
pub fn device_block(dev: &dyn BlockDevice, block: u64) -> Result<[u8; BLOCK_SIZE], FsError> {
    let f = alloc_pages(0, AllocFlags::ZERO).ok_or(FsError::NoMemory)?;
    let f = io_sync(dev, Op::Read, block, f)?;
    let mut out = [0u8; BLOCK_SIZE];
    // SAFETY: the frame is ours, mapped, one page, the read is complete.
    out.copy_from_slice(unsafe { core::slice::from_raw_parts(f.virt(), BLOCK_SIZE) });
    Ok(out)
}

/// Writes `data` to device block `block` directly (no cache).
pub fn put_device_block(
    dev: &dyn BlockDevice,
    block: u64,
    data: &[u8; BLOCK_SIZE],
) -> Result<(), FsError> {
    let f = alloc_pages(0, AllocFlags::ZERO).ok_or(FsError::NoMemory)?;
    // SAFETY: the frame is ours, mapped, one page.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), f.virt(), BLOCK_SIZE) };
    io_sync(dev, Op::Write, block, f).map(drop)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> ThreadRef {
    sched::spawn(name, None, f).expect("spawn")
}

/// An unformatted device is formatted; opening it again finds the same
/// layout; a device too small for one file is refused.
fn format_and_reopen(_: &Ctx) -> TestResult {
    let dev = ram_device(1 + 3 * FILE_PAGES)?;
    let c = Cache::open(dev.clone(), FILE_PAGES);
    kassert!(c.is_ok(), "open: {:?}", c.as_ref().err());
    let c = c.unwrap();
    kassert_eq!((c.layout.files, c.layout.file_blocks), (3, FILE_PAGES));
    drop(c);
    let again = Cache::open(dev, 7).expect("reopen");
    kassert_eq!(
        (again.layout.files, again.layout.file_blocks),
        (3, FILE_PAGES)
    );
    kassert!(matches!(
        Cache::open(ram_device(4)?, FILE_PAGES),
        Err(FsError::Layout(_))
    ));
    Ok(())
}

/// Data on the device reads back through the cache; the second read is a
/// cache hit (no device read).
fn read_through_cache(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    for i in 0..4 {
        kassert!(put_device_block(&*c.dev, c.layout.block(0, i), &pattern(9, i, 1)).is_ok());
    }
    let mut buf = alloc::vec![0u8; 4 * BLOCK_SIZE];
    kassert_eq!(f.read(0, &mut buf), Ok(4 * BLOCK_SIZE));
    for i in 0..4u64 {
        let want = pattern(9, i, 1);
        kassert!(
            buf[i as usize * BLOCK_SIZE..][..BLOCK_SIZE] == want[..],
            "page {} differs",
            i
        );
    }
    let before = f.stats();
    kassert_eq!(f.read(100, &mut buf[..100]), Ok(100));
    let after = f.stats();
    kassert_eq!(after.reads_issued, before.reads_issued);
    kassert!(after.hits > before.hits);
    kassert_eq!(
        f.read(f.bytes() + 1, &mut buf[..1]),
        Err(FsError::OutOfRange)
    );
    Ok(())
}

/// Many threads read the same missing page at once: one device read; the
/// others find the page locked and not up to date and wait on the page
/// lock; all see the data.
fn first_readers_wait_on_the_page_lock(_: &Ctx) -> TestResult {
    const N: usize = 8;
    let c = fresh_cache(1)?;
    kassert!(put_device_block(&*c.dev, c.layout.block(0, 5), &pattern(3, 5, 7)).is_ok());
    let f = c.file(0).unwrap().clone();
    let good = Arc::new(AtomicUsize::new(0));
    let ts: Vec<ThreadRef> = (0..N)
        .map(|k| {
            let (f, good) = (f.clone(), good.clone());
            spawn(&format!("pc-reader{k}"), move || {
                let mut b = [0u8; 64];
                if f.read(5 * BLOCK_SIZE as u64 + 64, &mut b) == Ok(64)
                    && b[..] == pattern(3, 5, 7)[64..128]
                {
                    good.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    for t in &ts {
        kassert!(join_timeout(t, 10_000), "reader {} never finished", t.name);
    }
    kassert_eq!(good.load(Ordering::Acquire), N);
    // Page 5 read once: one read per cached page. (A reader that misses
    // page 5 after another noted it as read counts the access as
    // sequential, as Linux does for a re-read of the same page, and may
    // read ahead pages 6.. in the same pass.)
    kassert_eq!(f.stats().reads_issued, f.cached_pages() as u64);
    Ok(())
}

/// Writes through the cache reach the device only through writeback; sync
/// writes them and leaves the pages clean.
fn write_then_sync_reaches_the_device(_: &Ctx) -> TestResult {
    let c = fresh_cache(2)?;
    let f = c.file(1).unwrap().clone();
    let p = pattern(1, 3, 1);
    kassert_eq!(f.write(3 * BLOCK_SIZE as u64, &p), Ok(BLOCK_SIZE));
    // A partial write reads the page in first.
    kassert_eq!(f.write(4 * BLOCK_SIZE as u64 + 10, b"hello"), Ok(5));
    kassert_eq!(f.page_state(3), Some((true, false)));
    kassert!(device_block(&*c.dev, c.layout.block(1, 3)).unwrap() != p);
    kassert_eq!(f.sync(), Ok(()));
    kassert_eq!(f.page_state(3), Some((false, false)));
    kassert!(device_block(&*c.dev, c.layout.block(1, 3)).unwrap() == p);
    let b4 = device_block(&*c.dev, c.layout.block(1, 4)).unwrap();
    kassert!(&b4[10..15] == b"hello" && b4[..10].iter().all(|&x| x == 0));
    // Out of range, nothing written.
    kassert_eq!(f.write(f.bytes() - 2, b"abc"), Err(FsError::OutOfRange));
    Ok(())
}

/// `sync` is durable, on the RAM device's volatile write cache: round 1
/// of 32 pages is written and synced; round 2 is written back (every
/// write completed) but not synced; then the power is cut. Every page must
/// read back (from the device, the cache emptied) as round 1: what sync
/// promised survived, and what it did not promise was lost, so the device
/// really has a cache to flush. With `bug=sync-no-flush` round 1 is lost
/// too (`tests/tests/pagecache.rs`).
fn sync_is_durable(_: &Ctx) -> TestResult {
    const PAGES: u64 = 32;
    let ram = kernel::block::ram_disk().ok_or(TestError::Skip("needs the RAM block device"))?;
    let c = fresh_cache(1)?;
    // The format and the zeroed blocks made durable: the power cut below
    // must take away only what this case writes.
    kassert_eq!(c.sync(), Ok(()));
    let f = c.file(0).unwrap().clone();
    for round in 1..=2 {
        for i in 0..PAGES {
            kassert_eq!(
                f.write(i * BLOCK_SIZE as u64, &pattern(7, i, round)),
                Ok(BLOCK_SIZE)
            );
        }
        let r = if round == 1 {
            f.sync()
        } else {
            f.write_and_wait()
        };
        kassert_eq!(r, Ok(()));
    }
    let lost = ram.power_cut();
    for i in 0..PAGES {
        f.evict(i);
    }
    let mut buf = [0u8; BLOCK_SIZE];
    let mut wrong = Vec::new();
    for i in 0..PAGES {
        kassert_eq!(f.read(i * BLOCK_SIZE as u64, &mut buf), Ok(BLOCK_SIZE));
        if buf != pattern(7, i, 1) {
            let what = if buf == pattern(7, i, 2) {
                "round 2 (never synced) survived"
            } else if buf.iter().all(|&b| b == 0) {
                "zeros (the synced round 1 was lost)"
            } else {
                "neither round"
            };
            wrong.push(format!("page {i}: {what}"));
        }
    }
    println!(
        "    # power cut after sync of round 1 and an unsynced round 2: {lost} blocks lost, {} of {PAGES} pages wrong",
        wrong.len()
    );
    kassert!(
        wrong.is_empty(),
        "after the power cut, {} pages are not what sync made durable: {}",
        wrong.len(),
        wrong[..wrong.len().min(4)].join("; ")
    );
    Ok(())
}

/// A failed write keeps the page dirty with PG_ERROR, sync reports the
/// error once, and the next sync writes the data.
fn write_error_is_kept_for_a_retry(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let p = pattern(2, 0, 2);
    kassert_eq!(f.write(0, &p), Ok(BLOCK_SIZE));
    c.dev.inject(Inject {
        op: Op::Write,
        block: Some(c.layout.block(0, 0)),
        count: 1,
    });
    kassert_eq!(f.sync(), Err(FsError::Io(IoError::Device)));
    let page = f.find_get_page(0).unwrap();
    kassert!(page.flags().test(PG_DIRTY) && page.flags().test(PG_ERROR));
    kassert!(!page.flags().test(PG_WRITEBACK));
    kassert_eq!(f.stats().write_errors, 1);
    drop(page);
    kassert_eq!(f.sync(), Ok(()));
    kassert!(device_block(&*c.dev, c.layout.block(0, 0)).unwrap() == p);
    kassert_eq!(f.page_state(0), Some((false, false)));
    Ok(())
}

/// Threads waiting for a page's writeback are all woken by its end, which
/// runs in the device's completion interrupt.
fn writeback_waiters_are_woken(_: &Ctx) -> TestResult {
    const N: usize = 6;
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let irqs0 = c.dev.stats().completions;
    for round in 0..20u64 {
        kassert_eq!(f.write(0, &pattern(4, 0, round)), Ok(BLOCK_SIZE));
        kassert!(f.writeback_page(0));
        let page = f.find_get_page(0).unwrap();
        let ts: Vec<ThreadRef> = (0..N)
            .map(|k| {
                let p = page.clone();
                spawn(&format!("pc-wbw{k}"), move || {
                    table().wait_on_page_writeback(&p);
                })
            })
            .collect();
        for t in &ts {
            kassert!(
                join_timeout(t, 10_000),
                "round {}: {} not woken",
                round,
                t.name
            );
        }
        kassert!(!page.flags().test(PG_WRITEBACK));
    }
    kassert!(c.dev.stats().completions >= irqs0 + 20);
    Ok(())
}

/// Evicting pages gives their frames back; nothing of a file is leaked.
fn eviction_frees_pages(_: &Ctx) -> TestResult {
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let free0 = free_frames();
    for i in 0..16 {
        kassert_eq!(
            f.write(i * BLOCK_SIZE as u64, &pattern(5, i, 0)),
            Ok(BLOCK_SIZE)
        );
    }
    kassert_eq!(f.sync(), Ok(()));
    kassert_eq!(f.cached_pages(), 16);
    for i in 0..16 {
        kassert!(f.evict(i));
    }
    kassert_eq!(f.cached_pages(), 0);
    kernel::mm::pcp::drain_all();
    kassert!(
        free_frames() + 2 >= free0,
        "{} frames free after evicting all, {} before",
        free_frames(),
        free0
    );
    // Evicted pages read back from the device.
    let mut b = [0u8; BLOCK_SIZE];
    kassert_eq!(f.read(7 * BLOCK_SIZE as u64, &mut b), Ok(BLOCK_SIZE));
    kassert!(b == pattern(5, 7, 0));
    Ok(())
}

/// The reuse race of Linux 073861ed77b6, provoked on purpose: a page under
/// writeback carries a stale `PG_WAITERS` (allowed: the bit may outlive
/// its waiters), and a truncation on another CPU polls the page's
/// writeback bit and evicts the page the moment it clears, without ever
/// sleeping, so nothing but `pagesync`'s temporary reference keeps the
/// page alive while the end of writeback walks its queue. With the
/// reference every round passes; with `bug=end-writeback-no-ref` the walk
/// runs on a freed page and the waker's reference check stops the kernel.
fn end_writeback_reuse_race(_: &Ctx) -> TestResult {
    const ROUNDS: u64 = 2000;
    if kernel::smp::online_cpus() < 2 {
        return Err(TestError::Skip("needs -smp 2 or more"));
    }
    let ram = kernel::block::ram_disk().ok_or(TestError::Skip("needs the RAM block device"))?;
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let me = kernel::arch::cpu_index();
    let mut evicted = 0;
    for round in 0..ROUNDS {
        let i = round % FILE_PAGES;
        kassert_eq!(
            f.write(i * BLOCK_SIZE as u64, &pattern(6, i, round)),
            Ok(BLOCK_SIZE)
        );
        ram.plug();
        kassert!(f.writeback_page(i));
        {
            let page = f.find_get_page(i).unwrap();
            table().mark_waiters_stale(&page);
        }
        // The truncation: on this CPU (the completion runs on the next
        // one), spinning on the bit, then evicting.
        let poller = {
            let f = f.clone();
            sched::spawn("pc-truncate", Some(me), move || {
                while f.page_state(i).is_some_and(|(_, wb)| wb) {
                    core::hint::spin_loop();
                }
                f.evict_clean(i);
            })
            .expect("spawn")
        };
        ram.unplug();
        kassert!(
            join_timeout(&poller, 10_000),
            "round {}: truncation stuck",
            round
        );
        if f.find_get_page(i).is_none() {
            evicted += 1;
        }
    }
    let freed = f.stats().freed_at_end_of_writeback;
    println!(
        "    # {ROUNDS} rounds, page evicted right after its writeback in {evicted}, freed by the end of writeback (its temporary reference the last) in {freed}"
    );
    kassert!(
        evicted > 0,
        "the truncation never raced the end of writeback"
    );
    // The frames of those pages must be back: the suite's accounting
    // checks that every frame is free again (a page whose last reference
    // went at the end of writeback and was not freed is lost for good).
    kassert!(
        freed > 0,
        "the end of writeback never dropped the last reference: the race this case provokes did not happen"
    );
    Ok(())
}

/// Asynchronous reads (io_uring-style): many async readers of missing
/// pages, mixed with sleeping readers of the same pages; every completion
/// runs once with the up-to-date page, and each page is read from the
/// device once.
fn async_reads(_: &Ctx) -> TestResult {
    async_reads_with(2, 4)
}

/// Async readers alone: each registers on a page whose read the device
/// ends from its interrupt on another CPU, with no sleeping reader whose
/// PG_WAITERS or wake-up could mask a lost async wake-up (the
/// registration races the release it waits for).
fn async_reads_alone(_: &Ctx) -> TestResult {
    async_reads_with(0, 1)
}

/// `sleepers` threads read every page while `per_page` async reads of each
/// page are queued; every async read must complete with the data.
fn async_reads_with(sleepers: usize, per_page: usize) -> TestResult {
    const PAGES: u64 = 16;
    let per_page_n = per_page;
    let c = fresh_cache(1)?;
    for i in 0..PAGES {
        kassert!(put_device_block(&*c.dev, c.layout.block(0, i), &pattern(7, i, 3)).is_ok());
    }
    let f = c.file(0).unwrap().clone();
    let good = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let sleepers: Vec<ThreadRef> = (0..sleepers)
        .map(|k| {
            let f = f.clone();
            spawn(&format!("pc-sleepread{k}"), move || {
                let mut b = [0u8; 8];
                for i in 0..PAGES {
                    let _ = f.read(i * BLOCK_SIZE as u64, &mut b);
                }
            })
        })
        .collect();
    for _ in 0..per_page_n {
        for i in 0..PAGES {
            let (good, done) = (good.clone(), done.clone());
            f.read_async(
                i,
                Box::new(move |r| {
                    if let Ok(page) = r {
                        // SAFETY: the page is up to date and referenced.
                        let b = unsafe { core::slice::from_raw_parts(page.virt(), BLOCK_SIZE) };
                        if b == &pattern(7, i, 3)[..] {
                            good.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                }),
            );
        }
    }
    let want = PAGES as usize * per_page_n;
    let deadline = kernel::arch::time::now_ns() + 10_000 * 1_000_000;
    while done.load(Ordering::Acquire) < want && kernel::arch::time::now_ns() < deadline {
        kernel::sched::timer::sleep_ns(1_000_000);
    }
    for t in &sleepers {
        kassert!(join_timeout(t, 10_000), "{} stuck", t.name);
    }
    kassert_eq!(done.load(Ordering::Acquire), want);
    kassert_eq!(good.load(Ordering::Acquire), want);
    // Each page read once however many readers raced for it: one read per
    // cached page (read-ahead may have read pages past the ones asked for).
    kassert_eq!(f.stats().reads_issued, f.cached_pages() as u64);
    kassert!(f.cached_pages() as u64 >= PAGES);
    Ok(())
}

/// Where the mmap cases map their file.
const MAP_VA: u64 = 0x40_0000_0000;

/// Writes `v` at `va` in the current address space (a real store: it
/// faults the page in, and write-faults a write-protected one).
fn poke(va: u64, v: u64) {
    // SAFETY: `va` is inside a writable file mapping of the running
    // thread's address space (set up by the caller); faults are resolved
    // by the VM.
    unsafe { core::ptr::write_volatile(va as *mut u64, v) };
}

/// A file mapped into an address space: stores through the mapping make
/// the page dirty (through `page_mkwrite`), writeback write-protects the
/// mapping (`Mapping::clean`) so the next store faults again, sync writes
/// the stores to the device, and a store to a page under writeback waits
/// for its end (stable pages through mappings too).
fn mmap_writes_reach_the_device(_: &Ctx) -> TestResult {
    let ram = kernel::block::ram_disk().ok_or(TestError::Skip("needs the RAM block device"))?;
    let c = fresh_cache(1)?;
    let f = c.file(0).unwrap().clone();
    let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
    let pages = 4u64;
    let m = space.map_file(
        MAP_VA,
        pages * BLOCK_SIZE as u64,
        Prot::ReadWrite,
        f.clone() as Arc<dyn kernel::vm::MapSource>,
        0,
    );
    kassert!(m.is_ok(), "map_file: {:?}", m.err());
    let cpu = kernel::smp::online_cpus() - 1;
    let run = |name: &str, body: fn()| {
        let t = kernel::sched::spawn_in(name, Some(cpu), Some(space.thread_space()), body)
            .expect("spawn");
        join_timeout(&t, 10_000)
    };
    // 1. Stores through the mapping; sync writes them.
    kassert!(run("pc-mmap1", || {
        for p in 0..4 {
            poke(MAP_VA + p * BLOCK_SIZE as u64 + 8, 0x1000 + p);
        }
    }));
    kassert_eq!(f.page_state(2), Some((true, false)));
    kassert_eq!(f.sync(), Ok(()));
    let b = device_block(&*c.dev, c.layout.block(0, 2)).unwrap();
    kassert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x1002);
    kassert_eq!(f.page_state(2), Some((false, false)));
    // 2. Writeback write-protected the mapping: a new store faults,
    // dirties the page again, and sync writes it.
    let faults0 = space.stats().hw_faults;
    kassert!(run("pc-mmap2", || poke(
        MAP_VA + 2 * BLOCK_SIZE as u64 + 8,
        0x2002
    )));
    kassert!(
        space.stats().hw_faults > faults0,
        "the store after writeback did not fault"
    );
    kassert_eq!(f.page_state(2), Some((true, false)));
    kassert_eq!(f.sync(), Ok(()));
    let b = device_block(&*c.dev, c.layout.block(0, 2)).unwrap();
    kassert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x2002);
    // 3. A store to a page under writeback waits for the write-out.
    kassert!(run("pc-mmap3", || poke(MAP_VA + 8, 0x3000)));
    ram.plug();
    kassert!(f.writeback_page(0));
    let violations0 = c.dev.stats().stable_violations;
    let writer = kernel::sched::spawn_in("pc-mmap4", Some(cpu), Some(space.thread_space()), || {
        poke(MAP_VA + 8, 0x4000);
    })
    .expect("spawn");
    kernel::sched::timer::sleep_ns(50 * 1_000_000);
    kassert!(
        !writer.exited.load(Ordering::Acquire),
        "a store went through to a page under writeback"
    );
    ram.unplug();
    kassert!(
        join_timeout(&writer, 10_000),
        "the store never went through"
    );
    kassert_eq!(c.dev.stats().stable_violations, violations0);
    kassert_eq!(f.sync(), Ok(()));
    let b = device_block(&*c.dev, c.layout.block(0, 0)).unwrap();
    kassert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x4000);
    kassert!(space.unmap(MAP_VA, pages * BLOCK_SIZE as u64).is_ok());
    Ok(())
}

/// `blk_persist=write`: through the page cache on the virtio disk (a file
/// system at `PAGECACHE_FIRST_BLOCK`), the pattern of `seed=` goes into
/// file 1 and `sync` writes it; `blk_persist=check`: a later boot of the
/// same image reads it back through the cache (see `tests/tests/block.rs`).
fn persist(ctx: &Ctx) -> TestResult {
    use contract::disk::{
        PAGECACHE_FILE_PAGES, PAGECACHE_FILES, PAGECACHE_FIRST_BLOCK, PAGECACHE_PERSIST_PAGES,
        pattern_word,
    };
    use kernel::params::Persist;
    let mode = ctx.params.blk_persist;
    if mode == Persist::Off {
        return Err(TestError::Skip("blk_persist=off"));
    }
    let disk: &'static dyn BlockDevice = kernel::block::virtio_blk()
        .map(|d| d as &'static dyn BlockDevice)
        .map_err(TestError::Skip)?;
    let part = Partition::new(
        disk,
        PAGECACHE_FIRST_BLOCK,
        1 + PAGECACHE_FILES * PAGECACHE_FILE_PAGES,
    )
    .ok_or(TestError::Skip("the virtio disk is too small"))?;
    let c = Cache::open(Arc::new(part), PAGECACHE_FILE_PAGES);
    kassert!(c.is_ok(), "open: {:?}", c.as_ref().err());
    let c = c.unwrap();
    let f = c.file(1).unwrap().clone();
    let seed = ctx.params.seed;
    let want = |p: u64| {
        let mut b = [0u8; BLOCK_SIZE];
        for (w, chunk) in b.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&pattern_word(seed, 1000 + p, w as u64).to_le_bytes());
        }
        b
    };
    for p in 0..PAGECACHE_PERSIST_PAGES {
        if mode == Persist::Write {
            kassert_eq!(f.write(p * BLOCK_SIZE as u64, &want(p)), Ok(BLOCK_SIZE));
        } else {
            let mut got = [0u8; BLOCK_SIZE];
            kassert_eq!(f.read(p * BLOCK_SIZE as u64, &mut got), Ok(BLOCK_SIZE));
            kassert!(
                got == want(p),
                "page {}: the disk does not hold the pattern",
                p
            );
        }
    }
    if mode == Persist::Write {
        // The whole cache's sync (every file), as an unmount would.
        kassert_eq!(c.sync(), Ok(()));
        for p in 0..PAGECACHE_PERSIST_PAGES {
            kassert_eq!(f.page_state(p), Some((false, false)));
        }
        kassert!(c.files().len() == PAGECACHE_FILES as usize);
    }
    println!(
        "    # pagecache persist={}: {PAGECACHE_PERSIST_PAGES} pages {} through the cache with seed {seed}",
        mode.name(),
        if mode == Persist::Write {
            "written and synced"
        } else {
            "read back"
        }
    );
    Ok(())
}

fn torture_case(ctx: &Ctx) -> TestResult {
    let r = torture::run(&torture::Options::hot(ctx.params))?;
    kassert!(r.ok(), "pagecache torture: {:?}", r.failures);
    kassert!(r.writes > 0 && r.syncs > 0, "no work done");
    Ok(())
}

/// The torture in its churn shape (`torture::Options::churn`): pages
/// evicted and created again all the time under the flushers' feet.
fn torture_churn(ctx: &Ctx) -> TestResult {
    let r = torture::run(&torture::Options::churn(ctx.params))?;
    kassert!(r.ok(), "pagecache torture (churn): {:?}", r.failures);
    kassert!(
        r.writes > 0 && r.syncs > 0 && r.evictions > 0,
        "no work done"
    );
    Ok(())
}

/// The host-verified torture on the virtio disk (`disk_torture.rs`): the
/// disk must hold exactly the manifest's versions (checked here by reading
/// it back, and by the host from the image file), and every frame the run
/// took is given back (the suite's accounting).
fn torture_disk(ctx: &Ctx) -> TestResult {
    let o = disk_torture::Options::from_params(
        ctx.params,
        "pagecache.torture_disk",
        contract::disk::TORTURE_FIRST_BLOCK,
        false,
    );
    let r = disk_torture::run(&o)?;
    kassert!(r.ok(), "pagecache.torture_disk: {:?}", r.failures);
    kassert!(
        r.writes > 0 && r.syncs > 0 && r.write_errors > 0 && r.retries > 0,
        "no work done, or no write failed"
    );
    Ok(())
}

/// Bad input never panics and never half-happens (issue 10): reads and
/// writes beyond a file's end and the device's end, requests the block
/// layer cannot take, layouts that do not fit the device, and a full
/// device (its last block is the last page of the last file) all give an
/// error and change nothing; byte ranges that straddle pages work.
fn bad_input(_: &Ctx) -> TestResult {
    use kernel::pagecache::{Layout, LayoutError};
    // Two files that fill the device exactly.
    let c = fresh_cache(2)?;
    let dev = c.dev.clone();
    kassert_eq!(dev.blocks(), 1 + 2 * FILE_PAGES);
    let (f0, f1) = (c.file(0).unwrap().clone(), c.file(1).unwrap().clone());
    let end = f1.bytes();
    let mut buf = [0u8; 100];

    // 1. Beyond a file's end: reads past it fail, a read across it is
    // short, writes past or across it fail and dirty nothing; offsets whose
    // end overflows fail.
    kassert_eq!(f1.read(end + 1, &mut buf), Err(FsError::OutOfRange));
    kassert_eq!(f1.read(end, &mut buf), Ok(0));
    kassert_eq!(f1.read(end - 10, &mut buf), Ok(10));
    kassert_eq!(f1.read(u64::MAX - 1, &mut buf), Err(FsError::OutOfRange));
    kassert_eq!(f1.write(end, b"x"), Err(FsError::OutOfRange));
    kassert_eq!(f1.write(end - 2, b"abc"), Err(FsError::OutOfRange));
    kassert_eq!(f1.write(u64::MAX - 1, b"abc"), Err(FsError::OutOfRange));
    kassert_eq!(
        f1.page_state(FILE_PAGES - 1).map(|(dirty, _)| dirty),
        Some(false)
    );
    kassert_eq!(f1.page_state(FILE_PAGES), None);
    kassert!(!f1.writeback_page(FILE_PAGES) && !f1.evict(FILE_PAGES) && !f1.evict_clean(u64::MAX));
    kassert!(c.file(2).is_none() && c.file(u64::MAX).is_none());

    // 2. Byte ranges that straddle pages work, through the cache and to
    // the device.
    let msg: Vec<u8> = (0..100u8).collect();
    let at = BLOCK_SIZE as u64 - 50;
    kassert_eq!(f0.write(at, &msg), Ok(100));
    kassert_eq!(f0.read(at, &mut buf), Ok(100));
    kassert!(buf[..] == msg[..]);
    kassert_eq!(f0.sync(), Ok(()));
    let b0 = device_block(&*dev, c.layout.block(0, 0)).unwrap();
    let b1 = device_block(&*dev, c.layout.block(0, 1)).unwrap();
    kassert!(b0[BLOCK_SIZE - 50..] == msg[..50] && b1[..50] == msg[50..]);

    // 3. A full device: the last page of the last file is its last block;
    // it takes a whole page, and not one byte more.
    let last = pattern(7, FILE_PAGES - 1, 1);
    kassert_eq!(f1.write(end - BLOCK_SIZE as u64, &last), Ok(BLOCK_SIZE));
    kassert_eq!(
        f1.write(end - BLOCK_SIZE as u64 + 1, &last),
        Err(FsError::OutOfRange)
    );
    kassert_eq!(f1.sync(), Ok(()));
    kassert_eq!(c.layout.block(1, FILE_PAGES - 1), dev.blocks() - 1);
    kassert!(device_block(&*dev, dev.blocks() - 1).unwrap() == last);

    // 4. Beyond the device's end: errors from the device, a partition
    // that does not fit is refused.
    for b in [dev.blocks(), dev.blocks() + 1, u64::MAX] {
        kassert_eq!(
            device_block(&*dev, b).err(),
            Some(FsError::Io(IoError::OutOfRange))
        );
        kassert_eq!(
            put_device_block(&*dev, b, &last).err(),
            Some(FsError::Io(IoError::OutOfRange))
        );
    }
    let ram: &'static dyn BlockDevice = kernel::block::ram_disk().expect("fresh_cache found it");
    kassert!(Partition::new(ram, ram.blocks() - 1, 2).is_none());
    kassert!(Partition::new(ram, 0, 0).is_none());
    kassert!(Partition::new(ram, u64::MAX, 2).is_none());

    // 5. A request the block layer cannot take: a frame of two pages is
    // refused whole, read or write (the device block is unchanged).
    let two = alloc_pages(1, AllocFlags::ZERO).ok_or(TestError::Fail)?;
    for op in [Op::Write, Op::Read] {
        kassert_eq!(
            io_sync(&*dev, op, dev.blocks() - 1, two.clone()).err(),
            Some(FsError::Io(IoError::BadRequest))
        );
    }
    kassert!(device_block(&*dev, dev.blocks() - 1).unwrap() == last);
    kassert_eq!(two.ref_count(), 1);

    // 6. Layouts that do not fit the device.
    kassert_eq!(
        Layout::new(1, FILE_PAGES),
        Err(LayoutError::TooSmall {
            blocks: 1,
            file_blocks: FILE_PAGES
        })
    );
    kassert!(matches!(
        Layout::new(100, 0),
        Err(LayoutError::TooSmall { .. })
    ));
    kassert!(matches!(
        Cache::open(ram_device(FILE_PAGES)?, FILE_PAGES),
        Err(FsError::Layout(LayoutError::TooSmall { .. }))
    ));
    // Headers that describe more than the device holds.
    for (file_blocks, files) in [(FILE_PAGES, 3), (0, 1), (u64::MAX / 2, 3)] {
        let small = ram_device(1 + 2 * FILE_PAGES)?;
        let mut header = [0u8; BLOCK_SIZE];
        Layout { file_blocks, files }.encode(&mut header);
        kassert!(put_device_block(&*small, 0, &header).is_ok());
        kassert_eq!(
            Cache::open(small, FILE_PAGES).err(),
            Some(FsError::Layout(LayoutError::BadHeader))
        );
    }
    Ok(())
}

/// A case that needs more than one CPU.
#[allow(dead_code)]
fn needs_smp() -> TestResult {
    if kernel::smp::online_cpus() < 2 {
        return Err(TestError::Skip("needs -smp 2 or more"));
    }
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "pagecache",
    cases: &[
        Case {
            name: "format_and_reopen",
            run: format_and_reopen,
        },
        Case {
            name: "read_through_cache",
            run: read_through_cache,
        },
        Case {
            name: "first_readers_wait_on_the_page_lock",
            run: first_readers_wait_on_the_page_lock,
        },
        Case {
            name: "write_then_sync_reaches_the_device",
            run: write_then_sync_reaches_the_device,
        },
        Case {
            name: "sync_is_durable",
            run: sync_is_durable,
        },
        Case {
            name: "write_error_is_kept_for_a_retry",
            run: write_error_is_kept_for_a_retry,
        },
        Case {
            name: "writeback_waiters_are_woken",
            run: writeback_waiters_are_woken,
        },
        Case {
            name: "eviction_frees_pages",
            run: eviction_frees_pages,
        },
        Case {
            name: "async_reads",
            run: async_reads,
        },
        Case {
            name: "async_reads_alone",
            run: async_reads_alone,
        },
        Case {
            name: "mmap_writes_reach_the_device",
            run: mmap_writes_reach_the_device,
        },
        Case {
            name: "end_writeback_reuse_race",
            run: end_writeback_reuse_race,
        },
        Case {
            name: "writeback_merges_adjacent_pages",
            run: batch::writeback_merges_adjacent_pages,
        },
        Case {
            name: "background_writeback_skips_a_locked_page",
            run: batch::background_writeback_skips_a_locked_page,
        },
        Case {
            name: "failed_request_keeps_every_page_dirty",
            run: batch::failed_request_keeps_every_page_dirty,
        },
        Case {
            name: "readahead_reads_in_windows",
            run: batch::readahead_reads_in_windows,
        },
        Case {
            name: "random_reads_read_one_page",
            run: batch::random_reads_read_one_page,
        },
        Case {
            name: "failed_window_reads_again",
            run: batch::failed_window_reads_again,
        },
        Case {
            name: "torture",
            run: torture_case,
        },
        Case {
            name: "torture_churn",
            run: torture_churn,
        },
        Case {
            name: "torture_disk",
            run: torture_disk,
        },
        Case {
            name: "crash_consistency",
            run: crash::crash_consistency,
        },
        Case {
            name: "bad_input",
            run: bad_input,
        },
        Case {
            name: "persist",
            run: persist,
        },
    ],
    accounted: true,
    expect_log: &[(
        "torture_disk",
        // tests/tests/torture_disk.rs runs it behind QEMU's blkdebug, whose
        // rules fail writes with EIO (the torture checks that nothing is
        // lost); other runs have no device errors to log.
        &["virtio-blk: Write of block"],
    )],
    ..Suite::DEFAULTS
};
