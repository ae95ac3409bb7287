//! Benchmarks of the page cache on both block devices (issue 10):
//!
//! * `pagecache_writeback`: writeback throughput (dirty [`PAGES`] pages
//!   with whole-page writes, then `File::writeback` + `wait_writeback`),
//!   against the same device written raw with the same number of requests,
//!   all submitted at once as writeback submits them, in the same run (the
//!   ratio is the page cache's overhead); and reads, page by page: a read
//!   miss (pages evicted first), a cached read, and the device's raw read
//!   at queue depth 1;
//! * `pagecache_fault`: read-fault latency of a thread in an address space
//!   on a file-mapped page that is not cached (a page-cache miss: the
//!   device read happens in the fault), against a cached one (a minor
//!   fault), on CPU 0 (which takes the virtio-blk interrupt) and CPU 1;
//! * `pagecache_stable`: how long writers waited for stable pages while a
//!   flusher wrote the same pages back, with the waits and without.
//!
//! Every variant runs [`ROUNDS`] times, the variants interleaved within a
//! round so a slow phase of the host hits all of them; each figure is
//! printed as `median[min..max]` over the rounds (`crate::bench::Spread`).
//! Under QEMU TCG on a shared 2-core host everything is slow and noisy and
//! vCPUs beyond two time-share the host cores: the figures are reported,
//! never judged. Run with `cargo xtask bench --smp 4 --filter 'pagecache_*'`.
//!
//! Output (one line per device and variant, then the ratios):
//! ```text
//! BENCH pagecache_writeback ram/cache pages=1024 rounds=5 pages_per_s=..[..] mib_s=..[..] dirty_ns_per_page=..[..]
//! BENCH pagecache_writeback ram/raw pages=1024 rounds=5 pages_per_s=..[..] mib_s=..[..]
//! BENCH pagecache_writeback ram/ratio cache_over_raw_time=..[..]
//! BENCH pagecache_read ram/miss pages=1024 rounds=5 p50_ns=..[..] p99_ns=..[..]   (also cached, raw_qd1; ratio)
//! BENCH pagecache_fault ram/miss cpu=0 pages=256 rounds=5 p50_ns=..[..] p99_ns=..[..]   (also cached, mapped; ratio; cpu=1)
//! BENCH pagecache_stable ram/waits writers=2 pages=8 ms=400 rounds=5 writes=..[..] writebacks=..[..] under_writeback_pct=..[..] wait_p50_ns=..[..] wait_p99_ns=..[..] write_p50_ns=..[..] write_p99_ns=..[..] violations=..[..]
//! ```
//!
//! `pagecache_stable` gets both variants in one boot although the page
//! cache runs on the global page wait table: only the writer's wait step
//! uses a table of the variant's own (see `stable_writer`). With
//! `bug=no-stable-wait` at boot the global table skips the wait too, and
//! both variants show the no-wait figures.

use alloc::{boxed::Box, format, sync::Arc, vec, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagesync::{Bug, Config, flags::PG_WRITEBACK};

use crate::{
    arch::x86_64::time::{self, cycles_to_ns},
    bench::{Bench, Spread, percentile, rdtsc},
    bench_result,
    block::{self, BLOCK_SIZE, BlockDevice, Op, Partition, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    pagecache::{Cache, File, io_sync},
    pagelock::{Table, config, leak_table, table},
    params::Params,
    println,
    sched::{self, thread::WaitQueue},
    smp::online_cpus,
    tests::{
        pagelock::torture::Rng,
        sched::join_timeout,
        vm::source::{read, run_in},
    },
    vm::{AddressSpace, MapSource, Prot},
};

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "pagecache_writeback",
        run: pagecache_writeback,
    },
    Bench {
        name: "pagecache_fault",
        run: pagecache_fault,
    },
    Bench {
        name: "pagecache_stable",
        run: pagecache_stable,
    },
];

/// Rounds of every variant.
const ROUNDS: usize = 5;
/// Pages written back (and read) per round: 4 MiB.
const PAGES: u64 = 1024;
/// Pages faulted per round.
const FAULT_PAGES: u64 = 256;
/// Where the benchmarks' partitions start on each device: past the blocks
/// `blk_io` cycles through (`block::bench::SPAN`).
const FIRST_BLOCK: u64 = 1024;
const PAGE: u64 = BLOCK_SIZE as u64;

/// The devices of this boot, with their names.
fn devices() -> Vec<(&'static str, &'static dyn BlockDevice)> {
    let mut v: Vec<(&'static str, &'static dyn BlockDevice)> = Vec::new();
    match block::ram_disk() {
        Some(d) => v.push(("ram", d)),
        None => println!("# pagecache benches: no RAM device (ramdisk=0)"),
    }
    match block::virtio_blk() {
        Ok(d) => v.push(("virtio", d)),
        Err(why) => println!("# pagecache benches: no virtio-blk device: {why}"),
    }
    v
}

/// A page cache with one file of `pages` pages on a fresh partition of
/// `dev` (its header block zeroed first, so it is formatted).
fn cache_on(dev: &'static dyn BlockDevice, first: u64, pages: u64) -> Option<Cache> {
    let Some(part) = Partition::new(dev, first, 1 + pages) else {
        println!(
            "# pagecache benches: {} has no room for {} blocks at {first}",
            dev.name(),
            1 + pages
        );
        return None;
    };
    let part: Arc<dyn BlockDevice> = Arc::new(part);
    let zero = alloc_pages(0, AllocFlags::ZERO)?;
    drop(io_sync(&*part, Op::Write, 0, zero).ok()?);
    Cache::open(part, pages).ok()
}

/// Fills a frame with a pattern of (`tag`, `index`).
fn fill(buf: &mut [u8], tag: u64, index: u64) {
    for (i, w) in buf.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        *w = ((tag << 48) ^ (index << 20) ^ i as u64).to_le_bytes();
    }
}

/// Completions counted, and a queue to sleep on until they are all in.
struct Batch {
    done: AtomicU64,
    failed: AtomicU64,
    wq: WaitQueue,
}

/// Writes `frames` to blocks `first..first + frames.len()` of `dev`, all
/// submitted at once (as writeback submits its pages), and sleeps until
/// every completion ran. Returns nanoseconds, None on an I/O error.
fn raw_batch(dev: &dyn BlockDevice, op: Op, first: u64, frames: &[Frame]) -> Option<u64> {
    let b = Arc::new(Batch {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        wq: WaitQueue::new(),
    });
    let n = frames.len() as u64;
    let t0 = time::now_ns();
    for (i, f) in frames.iter().enumerate() {
        let b = b.clone();
        dev.submit(Request {
            op,
            block: first + i as u64,
            frame: f.clone(),
            done: Box::new(move |r| {
                if r.is_err() {
                    // Relaxed: published by the Release increment below.
                    b.failed.fetch_add(1, Ordering::Relaxed);
                }
                // Release pairs with the Acquire in the waiter's condition.
                if b.done.fetch_add(1, Ordering::Release) + 1 == n {
                    b.wq.wake_up_all();
                }
            }),
        });
    }
    b.wq.wait_event(|| b.done.load(Ordering::Acquire) == n);
    let ns = time::now_ns() - t0;
    // Relaxed: after the Acquire load of `done` that saw every completion.
    (b.failed.load(Ordering::Relaxed) == 0).then_some(ns)
}

/// One read of block `block` at queue depth 1: nanoseconds.
fn raw_read(dev: &dyn BlockDevice, block: u64, f: &Frame) -> u64 {
    let t0 = rdtsc();
    let _ = io_sync(dev, Op::Read, block, f.clone());
    cycles_to_ns(rdtsc() - t0)
}

/// Per-device figures of one round of `pagecache_writeback`.
#[derive(Default)]
struct WbRound {
    cache_ns: Vec<f64>,
    raw_ns: Vec<f64>,
    dirty_ns: Vec<f64>,
    miss_p50: Vec<f64>,
    miss_p99: Vec<f64>,
    hit_p50: Vec<f64>,
    hit_p99: Vec<f64>,
    raw_p50: Vec<f64>,
    raw_p99: Vec<f64>,
}

/// Dirties every page of `file` (whole-page writes: no read first), then
/// writes them back and waits. Returns (dirtying ns per page, writeback ns).
fn cache_writeback(file: &Arc<File>, round: u64) -> (f64, f64) {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let t0 = time::now_ns();
    for i in 0..PAGES {
        fill(&mut buf, round, i);
        file.write(i * PAGE, &buf).expect("write through the cache");
    }
    let t1 = time::now_ns();
    let submitted = file.writeback();
    file.wait_writeback();
    let t2 = time::now_ns();
    assert_eq!(submitted as u64, PAGES, "every dirty page written back");
    ((t1 - t0) as f64 / PAGES as f64, (t2 - t1) as f64)
}

/// Drops every page of `file` from the cache, then reads each page
/// through the cache twice (a miss, then a hit): per-page ns of both.
fn cache_reads(file: &File) -> (Vec<u64>, Vec<u64>) {
    for i in 0..PAGES {
        file.evict(i);
    }
    assert_eq!(file.cached_pages(), 0, "every page evicted");
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut pass = || -> Vec<u64> {
        (0..PAGES)
            .map(|i| {
                let t0 = rdtsc();
                file.read(i * PAGE, &mut buf)
                    .expect("read through the cache");
                cycles_to_ns(rdtsc() - t0)
            })
            .collect()
    };
    let miss = pass();
    let hit = pass();
    (miss, hit)
}

fn pagecache_writeback(_: &Params) {
    let devs = devices();
    // Per device: the cache's file, the raw frames, the raw partition's
    // first block (a second partition of the same size right after it).
    struct Dev {
        name: &'static str,
        dev: &'static dyn BlockDevice,
        cache: Cache,
        raw_first: u64,
        raw_frames: Vec<Frame>,
        r: WbRound,
    }
    let mut ds: Vec<Dev> = devs
        .into_iter()
        .filter_map(|(name, dev)| {
            let cache = cache_on(dev, FIRST_BLOCK, PAGES)?;
            let raw_first = FIRST_BLOCK + 1 + PAGES;
            if raw_first + PAGES > dev.blocks() {
                println!("# pagecache_writeback: {name} too small for the raw baseline");
                return None;
            }
            let raw_frames = (0..PAGES)
                .map(|i| {
                    let f = alloc_pages(0, AllocFlags::ZERO).expect("a frame");
                    // SAFETY: our frame, mapped, one page, no I/O on it yet.
                    let b = unsafe { core::slice::from_raw_parts_mut(f.virt(), BLOCK_SIZE) };
                    fill(b, 0xaa, i);
                    f
                })
                .collect();
            Some(Dev {
                name,
                dev,
                cache,
                raw_first,
                raw_frames,
                r: WbRound::default(),
            })
        })
        .collect();
    let probe = alloc_pages(0, AllocFlags::ZERO).expect("a frame");
    for round in 0..ROUNDS {
        // Interleaved: cache and raw alternate in order from round to round.
        for d in ds.iter_mut() {
            let file = d.cache.file(0).expect("one file").clone();
            let raw = || raw_batch(d.dev, Op::Write, d.raw_first, &d.raw_frames);
            let (cache, raw_ns) = if round % 2 == 0 {
                let c = cache_writeback(&file, round as u64);
                (c, raw())
            } else {
                let r = raw();
                (cache_writeback(&file, round as u64), r)
            };
            let Some(raw_ns) = raw_ns else {
                println!("# pagecache_writeback: {} raw write failed", d.name);
                continue;
            };
            d.r.dirty_ns.push(cache.0);
            d.r.cache_ns.push(cache.1);
            d.r.raw_ns.push(raw_ns as f64);
            let (mut miss, mut hit) = cache_reads(&file);
            let mut raw: Vec<u64> = (0..PAGES)
                .map(|i| raw_read(d.dev, d.raw_first + i, &probe))
                .collect();
            for (v, p50, p99) in [
                (&mut miss, &mut d.r.miss_p50, &mut d.r.miss_p99),
                (&mut hit, &mut d.r.hit_p50, &mut d.r.hit_p99),
                (&mut raw, &mut d.r.raw_p50, &mut d.r.raw_p99),
            ] {
                p50.push(percentile(v, 50) as f64);
                p99.push(percentile(v, 99) as f64);
            }
        }
    }
    let mib = (PAGES * PAGE) as f64 / (1 << 20) as f64;
    for d in &ds {
        let r = &d.r;
        let rate = |ns: &[f64]| -> (Spread, Spread) {
            let pps: Vec<f64> = ns.iter().map(|&t| PAGES as f64 * 1e9 / t).collect();
            let mbs: Vec<f64> = ns.iter().map(|&t| mib * 1e9 / t).collect();
            (Spread::of(&pps), Spread::of(&mbs))
        };
        let (cp, cm) = rate(&r.cache_ns);
        let (rp, rm) = rate(&r.raw_ns);
        let n = r.cache_ns.len();
        bench_result!(
            "pagecache_writeback {}/cache pages={PAGES} rounds={n} pages_per_s={cp:.0} mib_s={cm:.1} dirty_ns_per_page={:.0}",
            d.name,
            Spread::of(&r.dirty_ns)
        );
        bench_result!(
            "pagecache_writeback {}/raw pages={PAGES} rounds={n} pages_per_s={rp:.0} mib_s={rm:.1}",
            d.name
        );
        let ratio: Vec<f64> = r
            .cache_ns
            .iter()
            .zip(&r.raw_ns)
            .map(|(c, w)| c / w)
            .collect();
        bench_result!(
            "pagecache_writeback {}/ratio cache_over_raw_time={:.2}",
            d.name,
            Spread::of(&ratio)
        );
        for (what, p50, p99) in [
            ("miss", &r.miss_p50, &r.miss_p99),
            ("cached", &r.hit_p50, &r.hit_p99),
            ("raw_qd1", &r.raw_p50, &r.raw_p99),
        ] {
            bench_result!(
                "pagecache_read {}/{what} pages={PAGES} rounds={n} p50_ns={:.0} p99_ns={:.0}",
                d.name,
                Spread::of(p50),
                Spread::of(p99)
            );
        }
        let per_round = |a: &[f64], b: &[f64]| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| x / y.max(1.0)).collect()
        };
        bench_result!(
            "pagecache_read {}/ratio miss_over_cached_p50={:.1} miss_over_raw_p50={:.2}",
            d.name,
            Spread::of(&per_round(&r.miss_p50, &r.hit_p50)),
            Spread::of(&per_round(&r.miss_p50, &r.raw_p50))
        );
    }
}

/// `pagecache_fault`: per device, a file mapped read-only into a space; a
/// thread of the space touches every page: first not cached (each fault
/// reads the page from the device), then, after `discard` dropped the
/// mappings but not the cache, cached (a minor fault), then mapped (the
/// `rdtsc` pair's own cost). Between rounds the pages are discarded and
/// evicted again. The thread runs on CPU 0, which takes the virtio-blk
/// interrupt, and on CPU 1 (if there is one), each in every round.
fn pagecache_fault(_: &Params) {
    const VA: u64 = 0x60_0000_0000;
    let len = FAULT_PAGES * PAGE;
    let cpus: Vec<usize> = (0..online_cpus().min(2)).collect();
    struct Dev {
        name: &'static str,
        file: Arc<File>,
        space: Arc<AddressSpace>,
        /// `v[cpu][kind][p50, p99]`, one value per round.
        v: Vec<[[Vec<f64>; 2]; 3]>,
    }
    let mut ds: Vec<Dev> = devices()
        .into_iter()
        .filter_map(|(name, dev)| {
            // After `pagecache_writeback`'s two partitions.
            let cache = cache_on(dev, FIRST_BLOCK + 2 * (1 + PAGES), FAULT_PAGES)?;
            let file = cache.file(0)?.clone();
            let space = AddressSpace::new().ok()?;
            space
                .map_file(
                    VA,
                    len,
                    Prot::ReadOnly,
                    file.clone() as Arc<dyn MapSource>,
                    0,
                )
                .ok()?;
            Some(Dev {
                name,
                file,
                space,
                v: cpus.iter().map(|_| Default::default()).collect(),
            })
        })
        .collect();
    let time_pages = || -> Vec<u64> {
        (0..FAULT_PAGES)
            .map(|i| {
                let t0 = rdtsc();
                read(VA + i * PAGE);
                cycles_to_ns(rdtsc() - t0)
            })
            .collect()
    };
    for _ in 0..ROUNDS {
        for d in ds.iter_mut() {
            for &cpu in &cpus {
                d.space.discard(VA, len).expect("discard");
                for i in 0..FAULT_PAGES {
                    d.file.evict(i);
                }
                if d.file.cached_pages() != 0 {
                    println!(
                        "# pagecache_fault: {}: {} pages still cached after discard and evict; their faults count as misses",
                        d.name,
                        d.file.cached_pages()
                    );
                }
                let miss = run_in(&d.space, cpu, time_pages);
                d.space.discard(VA, len).expect("discard");
                let (cached, mapped) = run_in(&d.space, cpu, move || (time_pages(), time_pages()));
                for (k, mut v) in [miss, cached, mapped].into_iter().enumerate() {
                    d.v[cpu][k][0].push(percentile(&mut v, 50) as f64);
                    d.v[cpu][k][1].push(percentile(&mut v, 99) as f64);
                }
            }
        }
    }
    for d in &ds {
        for &cpu in &cpus {
            let v = &d.v[cpu];
            for (k, what) in ["miss", "cached", "mapped"].into_iter().enumerate() {
                bench_result!(
                    "pagecache_fault {}/{what} cpu={cpu} pages={FAULT_PAGES} rounds={} p50_ns={:.0} p99_ns={:.0}",
                    d.name,
                    v[k][0].len(),
                    Spread::of(&v[k][0]),
                    Spread::of(&v[k][1])
                );
            }
            let ratio: Vec<f64> = v[0][0]
                .iter()
                .zip(&v[1][0])
                .map(|(m, c)| m / c.max(1.0))
                .collect();
            bench_result!(
                "pagecache_fault {}/ratio cpu={cpu} miss_over_cached_p50={:.1}",
                d.name,
                Spread::of(&ratio)
            );
        }
        d.space.unmap(VA, len).expect("unmap");
    }
}

/// Hot pages the stable-page writers and the flusher share.
const STABLE_PAGES: u64 = 8;
/// Length of one stable-page variant run.
const STABLE_MS: u64 = 400;

/// What the writers of one `pagecache_stable` run saw.
struct StableRun {
    writes: u64,
    /// Writes that found the page under writeback once they held its lock.
    under_wb: u64,
    /// Wait for stable data of those writes, ns.
    waits: Vec<u64>,
    /// Whole write (lock to unlock), ns, every write.
    write_ns: Vec<u64>,
    /// The device's stable-page violations during the run.
    violations: u64,
    writebacks: u64,
}

/// One writer: the steps of `File::write` for a whole cached page (lock,
/// wait for stable data, copy, mark dirty, unlock; the benchmark evicts
/// nothing, so the page stays the file's), with the wait timed. `wait`
/// is the table whose `wait_for_stable_page` runs: the global one, or a
/// leaked `bug=no-stable-wait` table whose wait returns at once without
/// touching its queues (so it never sleeps on a queue the global end of
/// writeback does not wake). The lock and unlock are always the global
/// table's, the flusher's.
fn stable_writer(
    file: &File,
    wait: &'static Table,
    stop: &AtomicBool,
    seed: u64,
) -> (u64, u64, Vec<u64>, Vec<u64>) {
    let t = table();
    let pages: Vec<Frame> = (0..STABLE_PAGES)
        .map(|i| file.find_get_page(i).expect("the hot pages are cached"))
        .collect();
    let mut rng = Rng::new(seed);
    let (mut writes, mut under) = (0u64, 0u64);
    let (mut waits, mut write_ns) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; BLOCK_SIZE];
    // Acquire pairs with the Release store of `stop`.
    while !stop.load(Ordering::Acquire) {
        let i = rng.below(STABLE_PAGES);
        let page = &pages[i as usize];
        fill(&mut buf, seed, writes);
        let t0 = rdtsc();
        t.lock_page(page);
        let was_wb = page.flags().test(PG_WRITEBACK);
        let w0 = rdtsc();
        wait.wait_for_stable_page(page);
        let w1 = rdtsc();
        // SAFETY: we hold the page lock (and, with the waits, the page is
        // not under writeback): no other writer changes it. Without the
        // waits the device may be reading it: that is the variant's point,
        // and the device's stable-page check counts it.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), page.virt(), BLOCK_SIZE) };
        file.mark_dirty(i, page);
        t.unlock_page(page);
        let t1 = rdtsc();
        writes += 1;
        if was_wb {
            under += 1;
            if waits.len() < 1 << 16 {
                waits.push(cycles_to_ns(w1 - w0));
            }
        }
        if write_ns.len() < 1 << 16 {
            write_ns.push(cycles_to_ns(t1 - t0));
        }
        // A short pause between writes (a plain loop: under TCG `pause`
        // is a trip through QEMU's main loop).
        for n in 0..64u32 {
            core::hint::black_box(n);
        }
    }
    (writes, under, waits, write_ns)
}

fn stable_run(
    dev: &dyn BlockDevice,
    file: &Arc<File>,
    wait: &'static Table,
    writers: usize,
    seed: u64,
) -> StableRun {
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(spin::Mutex::new(Vec::new()));
    let v0 = dev.stats().stable_violations;
    let threads: Vec<_> = (0..writers)
        .map(|k| {
            let (file, stop, out) = (file.clone(), stop.clone(), out.clone());
            let cpu = 1 + k % (online_cpus() - 1);
            sched::spawn(&format!("stable-w{k}"), Some(cpu), move || {
                let r = stable_writer(&file, wait, &stop, seed ^ (k as u64 + 1));
                out.lock().push(r);
            })
            .expect("spawn a writer")
        })
        .collect();
    // The flusher: this thread, writing back the hot pages continuously.
    let end = time::now_ns() + STABLE_MS * 1_000_000;
    let mut writebacks = 0u64;
    while time::now_ns() < end {
        writebacks += file.writeback() as u64;
        sched::yield_now();
    }
    // Release pairs with the writers' Acquire load.
    stop.store(true, Ordering::Release);
    for t in &threads {
        assert!(join_timeout(t, 30_000), "a stable-page writer is stuck");
    }
    file.sync().expect("sync after the stable-page run");
    let mut r = StableRun {
        writes: 0,
        under_wb: 0,
        waits: Vec::new(),
        write_ns: Vec::new(),
        violations: dev.stats().stable_violations - v0,
        writebacks,
    };
    for (w, u, waits, ns) in out.lock().drain(..) {
        r.writes += w;
        r.under_wb += u;
        r.waits.extend(waits);
        r.write_ns.extend(ns);
    }
    r
}

/// `pagecache_stable`: per device, writers on CPUs 1 and 2 write the
/// [`STABLE_PAGES`] hot pages of a file as fast as they can while this
/// thread writes them back continuously, [`STABLE_MS`] per run; the two
/// variants (stable-page waits, and none) interleaved in every round.
fn pagecache_stable(params: &Params) {
    if online_cpus() < 2 {
        println!("# pagecache_stable needs -smp 2 or more; skipped");
        return;
    }
    // At most two writers: with the flusher that is three busy vCPUs
    // already, more than the 2 host cores (they time-share, said below).
    let writers = (online_cpus() - 1).min(2);
    if writers + 1 > 2 {
        println!(
            "# pagecache_stable: {} vCPUs busy at once (flusher and writers); under TCG on a 2-core host they time-share",
            writers + 1
        );
    }
    let boot_skips = config().bug == Some(Bug::NoStableWait);
    if boot_skips {
        println!(
            "# pagecache_stable: bug=no-stable-wait given at boot: the 'waits' variant does not wait either"
        );
    }
    // The variants' tables for the wait step (see `stable_writer`).
    let variants: [(&str, &'static Table); 2] = [
        ("waits", table()),
        (
            "no-waits",
            leak_table(Config {
                bug: Some(Bug::NoStableWait),
                ..config()
            }),
        ),
    ];
    for (n, (name, dev)) in devices().into_iter().enumerate() {
        let first = FIRST_BLOCK + 2 * (1 + PAGES) + (1 + FAULT_PAGES) + n as u64 * 64;
        let Some(cache) = cache_on(dev, first, STABLE_PAGES) else {
            continue;
        };
        let file = cache.file(0).expect("one file").clone();
        let mut buf = vec![0u8; BLOCK_SIZE];
        for i in 0..STABLE_PAGES {
            fill(&mut buf, 1, i);
            file.write(i * PAGE, &buf).expect("write");
        }
        file.sync().expect("sync");
        let mut runs: [Vec<StableRun>; 2] = Default::default();
        for round in 0..ROUNDS {
            for k in 0..2 {
                // Alternate which variant goes first.
                let k = if round % 2 == 0 { k } else { 1 - k };
                let r = stable_run(
                    dev,
                    &file,
                    variants[k].1,
                    writers,
                    params.seed ^ round as u64,
                );
                runs[k].push(r);
            }
        }
        for (k, (vname, _)) in variants.iter().enumerate() {
            let rs = &mut runs[k];
            let f = |rs: &mut [StableRun], g: fn(&mut StableRun) -> f64| -> Spread {
                Spread::of(&rs.iter_mut().map(g).collect::<Vec<f64>>())
            };
            bench_result!(
                "pagecache_stable {name}/{vname} writers={writers} pages={STABLE_PAGES} ms={STABLE_MS} rounds={} writes={:.0} writebacks={:.0} under_writeback_pct={:.1} wait_p50_ns={:.0} wait_p99_ns={:.0} write_p50_ns={:.0} write_p99_ns={:.0} violations={:.0}",
                rs.len(),
                f(rs, |r| r.writes as f64),
                f(rs, |r| r.writebacks as f64),
                f(rs, |r| 100.0 * r.under_wb as f64 / r.writes.max(1) as f64),
                f(rs, |r| percentile(&mut r.waits, 50) as f64),
                f(rs, |r| percentile(&mut r.waits, 99) as f64),
                f(rs, |r| percentile(&mut r.write_ns, 50) as f64),
                f(rs, |r| percentile(&mut r.write_ns, 99) as f64),
                f(rs, |r| r.violations as f64)
            );
        }
    }
}
