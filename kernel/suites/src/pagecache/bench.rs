//! Benchmarks of the page cache on both block devices (issue 10):
//!
//! * `pagecache_writeback`: writeback throughput (dirty [`PAGES`] pages
//!   with whole-page writes, then one batched `File::writeback` +
//!   `wait_writeback`), against the same pages written raw in the same run,
//!   under one plug, in requests as large as the device takes (its segment
//!   limit, as batched writeback may): the ratio is the page cache's own
//!   cost. The cache's record also gives the requests it sent and where
//!   its time went per page (`File::set_profile`: looking the marked pages
//!   up, locking, cleaning mappings, clearing dirty and starting
//!   writeback, building and submitting requests, and the completion's
//!   per-page work, which runs in interrupt context, overlapping the
//!   others); and reads, page by page: a read
//!   miss (pages evicted first, read-ahead off), a cached read, and the
//!   device's raw read at queue depth 1; random misses (a quarter of the
//!   pages in a seeded order) with read-ahead on and off (printed as
//!   `pagecache_read`); and the whole file read in order from a cold cache
//!   with read-ahead on and off, against the device read raw at queue
//!   depth 16 (`pagecache_seqread`);
//! * `pagecache_fault`: read-fault latency of a thread in an address space
//!   on a file-mapped page that is not cached (a page-cache miss: the
//!   device read happens in the fault), against a cached one (a minor
//!   fault), on CPU 0 (which takes the virtio-blk interrupt) and CPU 1,
//!   read-ahead off (so each miss is one);
//! * `pagecache_stable`: how long writers waited for stable pages while a
//!   flusher wrote the same pages back (data-integrity passes, which wait
//!   for the writers' page locks), with the waits and without.
//!
//! Every variant runs in `bench_rounds=` rounds ([`rounds`]), the variants
//! interleaved within a round so a slow phase of the host hits all of
//! them, and prints one record per device, variant and round (format:
//! `contract::bench`; `cargo xtask bench` reports the median and spread
//! over the rounds). A ratio against the in-run baseline is computed per
//! round, between neighbouring runs, and printed with the round's record.
//! Under QEMU TCG on a shared 2-core host everything is slow and noisy and
//! vCPUs beyond two time-share the host cores: the figures are reported,
//! never judged. A failed I/O, a write that does not reach writeback, a
//! page that will not leave the cache, a stuck writer or a stable-page
//! violation with the waits on (and no `bug=no-stable-wait` at boot) fails
//! the run (`crate::bench::fail`). Run with `cargo xtask bench --smp 4
//! --filter 'pagecache_*'`.
//!
//! Output, per round:
//! ```text
//! BENCH pagecache_writeback cache device=ram pages=1024 round=0 pages_per_s:per_s=.. mib_s:mib_per_s=.. dirty_per_page:ns=.. vs_raw_time:ratio=.. requests:count=.. lookup_per_page:ns=.. lock_per_page:ns=.. mkclean_per_page:ns=.. start_per_page:ns=.. submit_per_page:ns=.. complete_per_page:ns=..
//! BENCH pagecache_writeback raw device=ram pages=1024 round=0 pages_per_s:per_s=.. mib_s:mib_per_s=..
//! BENCH pagecache_read miss device=ram pages=1024 round=0 p50:ns=.. p99:ns=.. vs_cached_p50:ratio=.. vs_raw_p50:ratio=..
//! BENCH pagecache_read cached device=ram pages=1024 round=0 p50:ns=.. p99:ns=..   (also raw_qd1)
//! BENCH pagecache_read random_ra device=ram pages=256 round=0 p50:ns=.. p99:ns=.. vs_no_ra_p50:ratio=..   (also random_no_ra)
//! BENCH pagecache_seqread cache_ra device=ram pages=1024 round=0 pages_per_s:per_s=.. mib_s:mib_per_s=.. vs_qd16_throughput:ratio=..   (also cache_no_ra; raw_qd16 without the ratio)
//! BENCH pagecache_fault miss device=ram cpu=0 pages=256 round=0 p50:ns=.. p99:ns=.. vs_cached_p50:ratio=..
//! BENCH pagecache_fault cached device=ram cpu=0 pages=256 round=0 p50:ns=.. p99:ns=..   (also mapped; cpu=1)
//! BENCH pagecache_stable waits device=ram writers=2 pages=8 ms=400 round=0 writes:count=.. writebacks:count=.. under_writeback:count=.. wait_p50:ns=.. wait_p99:ns=.. write_p50:ns=.. write_p99:ns=.. violations:count=..
//! BENCH pagecache_stable no-waits device=ram ...
//! ```
//! (`device=virtio` likewise.) `vs_raw_time` is the page cache's
//! writeback time over the raw batch's in the same round (its overhead);
//! `vs_cached_p50` and `vs_raw_p50` are the miss's p50 over the cached
//! read's and the raw QD1 read's of the same round. `under_writeback`
//! counts the `writes` that found their page under writeback; `wait_*`
//! are over those writes only (0 if there were none).
//!
//! `pagecache_stable` gets both variants in one boot although the page
//! cache runs on the global page wait table: only the writer's wait step
//! uses a table of the variant's own (see `stable_writer`). With
//! `bug=no-stable-wait` at boot the global table skips the wait too, and
//! both variants show the no-wait figures.

use alloc::{
    boxed::Box,
    format,
    string::{String, ToString},
    sync::Arc,
    vec,
    vec::Vec,
};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use contract::bench::Unit;
use pagesync::{Bug, Config, flags::PG_WRITEBACK};

use crate::{
    bench::{self, Bench, Record, percentile, rdtsc, rounds},
    pagelock::torture::Rng,
    sched::join_timeout,
    vm::source::{read, run_in},
};
use kernel::{
    arch::time::{self, cycles_to_ns},
    block::{self, BLOCK_SIZE, BlockDevice, Op, Partition, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    pagecache::{Cache, File, io_sync},
    pagelock::{Table, config, leak_table, table},
    params::Params,
    println,
    sched::{self, thread::WaitQueue},
    smp::online_cpus,
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

/// `a / b`, with `b` at least 1 (a p50 of 0 ns would be a broken clock).
fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(1.0)
}

/// Completions counted, and a queue to sleep on until they are all in.
struct Batch {
    done: AtomicU64,
    failed: AtomicU64,
    wq: WaitQueue,
}

/// Writes `frames` to blocks `first..first + frames.len()` of `dev` (or
/// reads them), all submitted at once under one plug, in requests of up
/// to `per_request` adjacent blocks, and sleeps until every completion
/// ran. Returns nanoseconds, or how many requests failed.
fn raw_batch(
    dev: &dyn BlockDevice,
    op: Op,
    first: u64,
    frames: &[Frame],
    per_request: usize,
) -> Result<u64, u64> {
    let b = Arc::new(Batch {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        wq: WaitQueue::new(),
    });
    let chunks = frames.chunks(per_request.max(1));
    let n = chunks.len() as u64;
    let t0 = time::now_ns();
    dev.plug();
    for (i, chunk) in chunks.enumerate() {
        let b = b.clone();
        dev.submit(Request {
            op,
            block: first + (i * per_request.max(1)) as u64,
            frames: chunk.to_vec().into(),
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
    dev.unplug();
    b.wq.wait_event(|| b.done.load(Ordering::Acquire) == n);
    let ns = time::now_ns() - t0;
    // Relaxed: after the Acquire load of `done` that saw every completion.
    match b.failed.load(Ordering::Relaxed) {
        0 => Ok(ns),
        failed => Err(failed),
    }
}

/// One read of block `block` at queue depth 1: nanoseconds.
fn raw_read(dev: &dyn BlockDevice, block: u64, f: &Frame) -> Result<u64, String> {
    let t0 = rdtsc();
    let r = io_sync(dev, Op::Read, block, f.clone());
    let ns = cycles_to_ns(rdtsc() - t0);
    r.map(|_| ns)
        .map_err(|e| format!("raw read of block {block}: {e:?}"))
}

/// Writeback passes of each kind per round (`pagecache_writeback`).
const PASSES: u64 = 5;

/// The writeback phases timed per page (`File::set_profile`), as metric
/// names.
const PHASES: [&str; 6] = [
    "lookup_per_page",
    "lock_per_page",
    "mkclean_per_page",
    "start_per_page",
    "submit_per_page",
    "complete_per_page",
];

/// Where one writeback pass spent its time, per page, and how many
/// requests it sent.
struct Phases {
    per_page: [f64; 6],
    requests: f64,
}

/// Dirties every page of `file` (whole-page writes: no read first), then
/// writes them back and waits, timing the phases if `profile`. Returns
/// (dirtying ns per page, writeback ns, the phases: zero unless
/// profiled), or what went wrong: a failed write, a dirty page writeback
/// did not submit, a write error in writeback.
fn cache_writeback(
    file: &Arc<File>,
    round: u64,
    profile: bool,
) -> Result<(f64, f64, Phases), String> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let s0 = file.stats();
    let t0 = time::now_ns();
    for i in 0..PAGES {
        fill(&mut buf, round, i);
        file.write(i * PAGE, &buf)
            .map_err(|e| format!("write of page {i} through the cache: {e:?}"))?;
    }
    let t1 = time::now_ns();
    file.set_profile(profile);
    let submitted = file.writeback();
    file.wait_writeback();
    let t2 = time::now_ns();
    file.set_profile(false);
    if submitted as u64 != PAGES {
        return Err(format!(
            "writeback submitted {submitted} of {PAGES} dirty pages"
        ));
    }
    // The completion counts an error before the Release RMW that ends the
    // page's writeback, and `wait_writeback`'s Acquire test saw that end:
    // the count is in (the phase counters likewise).
    let s1 = file.stats();
    let errors = s1.write_errors - s0.write_errors;
    if errors != 0 {
        return Err(format!("{errors} writeback writes failed"));
    }
    let pages = (s1.wb_profiled - s0.wb_profiled).max(1) as f64;
    let per = |c1: u64, c0: u64| cycles_to_ns(c1 - c0) as f64 / pages;
    let phases = Phases {
        per_page: [
            per(s1.wb_lookup_cycles, s0.wb_lookup_cycles),
            per(s1.wb_lock_cycles, s0.wb_lock_cycles),
            per(s1.wb_mkclean_cycles, s0.wb_mkclean_cycles),
            per(s1.wb_start_cycles, s0.wb_start_cycles),
            per(s1.wb_submit_cycles, s0.wb_submit_cycles),
            per(s1.wb_complete_cycles, s0.wb_complete_cycles),
        ],
        requests: (s1.write_requests - s0.write_requests) as f64,
    };
    Ok(((t1 - t0) as f64 / PAGES as f64, (t2 - t1) as f64, phases))
}

/// Drops every page of `file` from the cache, then reads each page
/// through the cache twice (a miss, then a hit): per-page ns of both.
fn cache_reads(file: &File, order: &[u64], ra: bool) -> Result<(Vec<u64>, Vec<u64>), String> {
    evict_all(file)?;
    kernel::pagecache::readahead::set_enabled(ra);
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut pass = || -> Result<Vec<u64>, String> {
        order
            .iter()
            .map(|&i| {
                let t0 = rdtsc();
                let r = file.read(i * PAGE, &mut buf);
                let ns = cycles_to_ns(rdtsc() - t0);
                r.map(|_| ns)
                    .map_err(|e| format!("read of page {i} through the cache: {e:?}"))
            })
            .collect()
    };
    let miss = pass();
    let hit = pass();
    kernel::pagecache::readahead::set_enabled(config_readahead());
    Ok((miss?, hit?))
}

/// The boot's `readahead=`, which the read benchmarks restore.
fn config_readahead() -> bool {
    READAHEAD_AT_BOOT.load(Ordering::Relaxed)
}

static READAHEAD_AT_BOOT: AtomicBool = AtomicBool::new(true);

/// Drops every page of `file` from the cache (nothing maps them and no
/// writeback is running, so each must go).
fn evict_all(file: &File) -> Result<(), String> {
    for i in 0..PAGES {
        file.evict(i);
    }
    let left = file.cached_pages();
    if left != 0 {
        return Err(format!(
            "{left} pages still cached after evicting every page"
        ));
    }
    Ok(())
}

/// Reads the whole file in order, 4 KiB at a time, from a cold cache, with
/// read-ahead `ra`: nanoseconds.
fn sequential_read(file: &File, ra: bool) -> Result<u64, String> {
    evict_all(file)?;
    kernel::pagecache::readahead::set_enabled(ra);
    let mut buf = vec![0u8; BLOCK_SIZE];
    let t0 = time::now_ns();
    let r = (0..PAGES).try_for_each(|i| {
        file.read(i * PAGE, &mut buf)
            .map(|_| ())
            .map_err(|e| format!("sequential read of page {i}: {e:?}"))
    });
    let ns = time::now_ns() - t0;
    kernel::pagecache::readahead::set_enabled(config_readahead());
    r.map(|()| ns)
}

/// Reads blocks `first..first + frames.len()` of `dev` into `frames`,
/// keeping `depth` single-block reads in flight: nanoseconds, or how many
/// failed.
fn raw_read_depth(
    dev: &dyn BlockDevice,
    first: u64,
    frames: &[Frame],
    depth: u64,
) -> Result<u64, u64> {
    struct Q {
        inflight: AtomicU64,
        done: AtomicU64,
        failed: AtomicU64,
        wq: WaitQueue,
    }
    let q = Arc::new(Q {
        inflight: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        wq: WaitQueue::new(),
    });
    let n = frames.len() as u64;
    let t0 = time::now_ns();
    for (i, f) in frames.iter().enumerate() {
        // Acquire pairs with the completion's Release decrement.
        q.wq.wait_event(|| q.inflight.load(Ordering::Acquire) < depth);
        q.inflight.fetch_add(1, Ordering::Relaxed);
        let q2 = q.clone();
        dev.submit(Request {
            op: Op::Read,
            block: first + i as u64,
            frames: f.clone().into(),
            done: Box::new(move |r| {
                if r.is_err() {
                    // Relaxed: published by the Release below.
                    q2.failed.fetch_add(1, Ordering::Relaxed);
                }
                // Release pairs with the Acquire loads of the submitter.
                q2.done.fetch_add(1, Ordering::Release);
                q2.inflight.fetch_sub(1, Ordering::Release);
                q2.wq.wake_up_all();
            }),
        });
    }
    q.wq.wait_event(|| q.done.load(Ordering::Acquire) == n);
    let ns = time::now_ns() - t0;
    match q.failed.load(Ordering::Relaxed) {
        0 => Ok(ns),
        f => Err(f),
    }
}

fn pagecache_writeback(params: &Params) {
    const NAME: &str = "pagecache_writeback";
    READAHEAD_AT_BOOT.store(params.readahead, Ordering::Relaxed);
    let devs = devices();
    // Per device: the cache's file, the raw frames, the raw partition's
    // first block (a second partition of the same size right after it).
    struct Dev {
        name: &'static str,
        dev: &'static dyn BlockDevice,
        cache: Cache,
        raw_first: u64,
        raw_frames: Vec<Frame>,
    }
    let ds: Vec<Dev> = devs
        .into_iter()
        .filter_map(|(name, dev)| {
            let cache = cache_on(dev, FIRST_BLOCK, PAGES)?;
            let raw_first = FIRST_BLOCK + 1 + PAGES;
            if raw_first + PAGES > dev.blocks() {
                println!("# {NAME}: {name} too small for the raw baseline");
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
            })
        })
        .collect();
    let probe = alloc_pages(0, AllocFlags::ZERO).expect("a frame");
    let mib = (PAGES * PAGE) as f64 / (1 << 20) as f64;
    for round in 0..rounds() {
        for d in &ds {
            let failed = |why: &dyn core::fmt::Display| {
                bench::fail(NAME, format_args!("{}, round {round}: {why}", d.name));
            };
            // Interleaved: cache and raw alternate in order from round to round.
            let file = d.cache.file(0).expect("one file").clone();
            // The raw baseline writes the same pages in the largest
            // requests the device takes, as batched writeback may.
            let seg = d.dev.max_segments();
            let raw = || raw_batch(d.dev, Op::Write, d.raw_first, &d.raw_frames, seg);
            if round == 0 {
                // A warm-up of both, untimed: the first pass allocates the
                // cache's pages and fills the device's caches.
                if let Err(why) = cache_writeback(&file, 1 << 32, false) {
                    return failed(&why);
                }
                let _ = raw();
            }
            // One pass writes 1024 pages in about 10 ms, a tick's length:
            // a round is several pass pairs, alternating which goes first,
            // and compares the sums (one pass alone swung by 2x).
            let (mut dirty_ns, mut cache_ns, mut raw_ns) = (0.0, 0.0, 0.0);
            for rep in 0..PASSES {
                let tag = (u64::from(round) << 8) + rep;
                let (cache, raw_r) = if (u64::from(round) + rep) % 2 == 0 {
                    let c = cache_writeback(&file, tag, false);
                    (c, raw())
                } else {
                    let r = raw();
                    (cache_writeback(&file, tag, false), r)
                };
                match cache {
                    Ok((d, c, _)) => {
                        dirty_ns += d / PASSES as f64;
                        cache_ns += c;
                    }
                    Err(why) => return failed(&why),
                }
                match raw_r {
                    Ok(ns) => raw_ns += ns as f64,
                    Err(n) => {
                        return failed(&format_args!("{n} of {PAGES} raw writes failed"));
                    }
                }
            }
            // The phase breakdown from a pass of its own (timing the
            // phases costs a few `rdtsc`s per page, kept out of the ratio).
            let phases = match cache_writeback(&file, (1 << 40) + u64::from(round), true) {
                Ok((_, _, p)) => p,
                Err(why) => return failed(&why),
            };
            for (what, ns) in [("cache", cache_ns), ("raw", raw_ns)] {
                let pages = (PAGES * PASSES) as f64;
                let rec = Record::new(NAME, what)
                    .label("device", d.name)
                    .label("pages", PAGES)
                    .round(round)
                    .metric("pages_per_s", Unit::PerS, pages * 1e9 / ns)
                    .metric("mib_s", Unit::MibPerS, mib * PASSES as f64 * 1e9 / ns);
                match what {
                    "cache" => {
                        let mut rec = rec
                            .metric("dirty_per_page", Unit::Ns, dirty_ns)
                            .metric("vs_raw_time", Unit::Ratio, cache_ns / raw_ns)
                            .metric("requests", Unit::Count, phases.requests);
                        for (k, v) in PHASES.iter().zip(phases.per_page) {
                            rec = rec.metric(k, Unit::Ns, v);
                        }
                        rec.emit()
                    }
                    _ => rec.emit(),
                }
            }
            // Page by page, in order, read-ahead off: one miss is one
            // device round trip (the figure comparable with earlier runs).
            let in_order: Vec<u64> = (0..PAGES).collect();
            let (mut miss, mut hit) = match cache_reads(&file, &in_order, false) {
                Ok(r) => r,
                Err(why) => return failed(&why),
            };
            let raw: Result<Vec<u64>, String> = (0..PAGES)
                .map(|i| raw_read(d.dev, d.raw_first + i, &probe))
                .collect();
            let mut raw = match raw {
                Ok(v) => v,
                Err(why) => return failed(&why),
            };
            let p50 = [&mut miss, &mut hit, &mut raw].map(|v| percentile(v, 50) as f64);
            for (k, (what, v)) in [("miss", miss), ("cached", hit), ("raw_qd1", raw)]
                .into_iter()
                .enumerate()
            {
                let mut v = v;
                let rec = Record::new("pagecache_read", what)
                    .label("device", d.name)
                    .label("pages", PAGES)
                    .round(round)
                    .metric("p50", Unit::Ns, p50[k])
                    .metric("p99", Unit::Ns, percentile(&mut v, 99) as f64);
                match k {
                    0 => rec
                        .metric("vs_cached_p50", Unit::Ratio, ratio(p50[0], p50[1]))
                        .metric("vs_raw_p50", Unit::Ratio, ratio(p50[0], p50[2]))
                        .emit(),
                    _ => rec.emit(),
                }
            }
            // Random 4 KiB reads, cold: read-ahead on must cost nothing
            // (a random miss reads one page either way).
            let mut order: Vec<u64> = (0..PAGES).collect();
            let mut rng = Rng::new(0x5eed ^ u64::from(round));
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let random: Vec<u64> = order[..(PAGES / 4) as usize].to_vec();
            let mut rand_p50 = [0.0; 2];
            let mut rand_p99 = [0.0; 2];
            // Alternate which goes first, round by round.
            for k in [round as usize % 2, 1 - round as usize % 2] {
                let ra = k == 0;
                match cache_reads(&file, &random, ra) {
                    Ok((mut m, _)) => {
                        rand_p50[k] = percentile(&mut m, 50) as f64;
                        rand_p99[k] = percentile(&mut m, 99) as f64;
                    }
                    Err(why) => return failed(&why),
                }
            }
            for (k, what) in ["random_ra", "random_no_ra"].into_iter().enumerate() {
                let rec = Record::new("pagecache_read", what)
                    .label("device", d.name)
                    .label("pages", PAGES / 4)
                    .round(round)
                    .metric("p50", Unit::Ns, rand_p50[k])
                    .metric("p99", Unit::Ns, rand_p99[k]);
                match k {
                    0 => rec
                        .metric("vs_no_ra_p50", Unit::Ratio, ratio(rand_p50[0], rand_p50[1]))
                        .emit(),
                    _ => rec.emit(),
                }
            }
            // Sequential read of the whole file, cold, with and without
            // read-ahead, against the device read raw at queue depth 16.
            // Several passes each, interleaved, summed (as the writes).
            let (mut seq_ns, mut qd16_ns) = ([0.0f64; 2], 0.0);
            for _ in 0..PASSES {
                for (k, ra) in [true, false].into_iter().enumerate() {
                    match sequential_read(&file, ra) {
                        Ok(ns) => seq_ns[k] += ns as f64,
                        Err(why) => return failed(&why),
                    }
                }
                match raw_read_depth(d.dev, d.raw_first, &d.raw_frames, 16) {
                    Ok(ns) => qd16_ns += ns as f64,
                    Err(n) => {
                        return failed(&format_args!("{n} of {PAGES} raw QD16 reads failed"));
                    }
                }
            }
            let pages = (PAGES * PASSES) as f64;
            for (k, what) in ["cache_ra", "cache_no_ra"].into_iter().enumerate() {
                let ns = seq_ns[k];
                Record::new("pagecache_seqread", what)
                    .label("device", d.name)
                    .label("pages", PAGES)
                    .round(round)
                    .metric("pages_per_s", Unit::PerS, pages * 1e9 / ns)
                    .metric("mib_s", Unit::MibPerS, mib * PASSES as f64 * 1e9 / ns)
                    .metric("vs_qd16_throughput", Unit::Ratio, qd16_ns / ns)
                    .emit();
            }
            Record::new("pagecache_seqread", "raw_qd16")
                .label("device", d.name)
                .label("pages", PAGES)
                .round(round)
                .metric("pages_per_s", Unit::PerS, pages * 1e9 / qd16_ns)
                .metric("mib_s", Unit::MibPerS, mib * PASSES as f64 * 1e9 / qd16_ns)
                .emit();
        }
    }
}

/// `pagecache_fault`: per device, a file mapped read-only into a space; a
/// thread of the space touches every page: first not cached (each fault
/// reads the page from the device), then, after `discard` dropped the
/// mappings but not the cache, cached (a minor fault), then mapped (the
/// `rdtsc` pair's own cost). Between rounds the pages are discarded and
/// evicted again. The thread runs on CPU 0, which takes the virtio-blk
/// interrupt, and on CPU 1 (if there is one), each in every round.
fn pagecache_fault(params: &Params) {
    const NAME: &str = "pagecache_fault";
    // A miss must be a miss: read-ahead would have the faults of pages
    // 1.. find them read by page 0's window (the sequential read is
    // `pagecache_seqread`'s business).
    kernel::pagecache::readahead::set_enabled(false);
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            kernel::pagecache::readahead::set_enabled(self.0);
        }
    }
    let _restore = Restore(params.readahead);
    const VA: u64 = 0x60_0000_0000;
    let len = FAULT_PAGES * PAGE;
    let cpus: Vec<usize> = (0..online_cpus().min(2)).collect();
    struct Dev {
        name: &'static str,
        file: Arc<File>,
        space: Arc<AddressSpace>,
    }
    let ds: Vec<Dev> = devices()
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
            Some(Dev { name, file, space })
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
    for round in 0..rounds() {
        for d in &ds {
            for &cpu in &cpus {
                d.space.discard(VA, len).expect("discard");
                for i in 0..FAULT_PAGES {
                    d.file.evict(i);
                }
                if d.file.cached_pages() != 0 {
                    println!(
                        "# {NAME}: {}: {} pages still cached after discard and evict; their faults count as misses",
                        d.name,
                        d.file.cached_pages()
                    );
                }
                let miss = run_in(&d.space, cpu, time_pages);
                d.space.discard(VA, len).expect("discard");
                let (cached, mapped) = run_in(&d.space, cpu, move || (time_pages(), time_pages()));
                let mut v = [miss, cached, mapped];
                let p50 = v.each_mut().map(|v| percentile(v, 50) as f64);
                for (k, what) in ["miss", "cached", "mapped"].into_iter().enumerate() {
                    let rec = Record::new(NAME, what)
                        .label("device", d.name)
                        .label("cpu", cpu)
                        .label("pages", FAULT_PAGES)
                        .round(round)
                        .metric("p50", Unit::Ns, p50[k])
                        .metric("p99", Unit::Ns, percentile(&mut v[k], 99) as f64);
                    match k {
                        0 => rec
                            .metric("vs_cached_p50", Unit::Ratio, ratio(p50[0], p50[1]))
                            .emit(),
                        _ => rec.emit(),
                    }
                }
            }
        }
    }
    for d in &ds {
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

/// What one writer saw: writes, writes under writeback, waits, write times.
type WriterOut = (u64, u64, Vec<u64>, Vec<u64>);

/// One writer: the steps of `File::write` for a whole cached page (lock,
/// wait for stable data, copy, mark dirty, unlock; the benchmark evicts
/// nothing, so the page stays the file's), with the wait timed. `wait`
/// is the table whose `wait_for_stable_page` runs: the global one, or a
/// leaked `bug=no-stable-wait` table whose wait returns at once without
/// touching its queues (so it never sleeps on a queue the global end of
/// writeback does not wake). The lock and unlock are always the global
/// table's, the flusher's. Fails if a hot page is not cached.
fn stable_writer(
    file: &File,
    wait: &'static Table,
    stop: &AtomicBool,
    seed: u64,
) -> Result<WriterOut, String> {
    let t = table();
    let pages: Vec<Frame> = (0..STABLE_PAGES)
        .map(|i| {
            file.find_get_page(i)
                .ok_or_else(|| format!("hot page {i} is not cached"))
        })
        .collect::<Result<_, _>>()?;
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
    Ok((writes, under, waits, write_ns))
}

/// One run of one variant: the writers and this thread's flusher for
/// [`STABLE_MS`]. Returns what went wrong instead if a writer failed or is
/// stuck, or the final sync failed.
fn stable_run(
    dev: &dyn BlockDevice,
    file: &Arc<File>,
    wait: &'static Table,
    writers: usize,
    seed: u64,
) -> Result<StableRun, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(kernel::sync::IrqMutex::new(Vec::new()));
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
        // Data-integrity passes (`WB_SYNC_ALL`): a background pass skips
        // the pages the writers hold locked, which is nearly all of them,
        // and would measure nothing.
        writebacks += file.writeback_pages(kernel::pagecache::writeback::SyncMode::All) as u64;
        sched::yield_now();
    }
    // Release pairs with the writers' Acquire load.
    stop.store(true, Ordering::Release);
    for t in &threads {
        if !join_timeout(t, 30_000) {
            return Err("a stable-page writer is stuck (30 s after the stop)".to_string());
        }
    }
    file.sync()
        .map_err(|e| format!("sync after the run: {e:?}"))?;
    let mut r = StableRun {
        writes: 0,
        under_wb: 0,
        waits: Vec::new(),
        write_ns: Vec::new(),
        violations: dev.stats().stable_violations - v0,
        writebacks,
    };
    for w in out.lock().drain(..) {
        let (w, u, waits, ns) = w?;
        r.writes += w;
        r.under_wb += u;
        r.waits.extend(waits);
        r.write_ns.extend(ns);
    }
    Ok(r)
}

/// `pagecache_stable`: per device, writers on CPUs 1 and 2 write the
/// [`STABLE_PAGES`] hot pages of a file as fast as they can while this
/// thread writes them back continuously, [`STABLE_MS`] per run; the two
/// variants (stable-page waits, and none) interleaved in every round.
fn pagecache_stable(params: &Params) {
    const NAME: &str = "pagecache_stable";
    if online_cpus() < 2 {
        println!("# {NAME} needs -smp 2 or more; skipped");
        return;
    }
    // At most two writers: with the flusher that is three busy vCPUs
    // already, more than the 2 host cores (they time-share, said below).
    let writers = (online_cpus() - 1).min(2);
    if writers + 1 > 2 {
        println!(
            "# {NAME}: {} vCPUs busy at once (flusher and writers); under TCG on a 2-core host they time-share",
            writers + 1
        );
    }
    let boot_skips = config().bug == Some(Bug::NoStableWait);
    if boot_skips {
        println!(
            "# {NAME}: bug=no-stable-wait given at boot: the 'waits' variant does not wait either"
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
        let setup = (0..STABLE_PAGES)
            .try_for_each(|i| {
                fill(&mut buf, 1, i);
                file.write(i * PAGE, &buf).map(drop)
            })
            .and_then(|()| file.sync());
        if let Err(e) = setup {
            bench::fail(NAME, format_args!("{name}: writing the hot pages: {e:?}"));
            return;
        }
        for round in 0..rounds() {
            for k in 0..2 {
                // Alternate which variant goes first.
                let k = if round % 2 == 0 { k } else { 1 - k };
                let (vname, wait) = variants[k];
                let seed = params.seed ^ u64::from(round);
                let mut r = match stable_run(dev, &file, wait, writers, seed) {
                    Ok(r) => r,
                    Err(why) => {
                        bench::fail(NAME, format_args!("{name}/{vname}, round {round}: {why}"));
                        return;
                    }
                };
                if k == 0 && !boot_skips && r.violations != 0 {
                    bench::fail(
                        NAME,
                        format_args!(
                            "{name}/{vname}, round {round}: {} stable-page violations with the waits on",
                            r.violations
                        ),
                    );
                }
                Record::new(NAME, vname)
                    .label("device", name)
                    .label("writers", writers)
                    .label("pages", STABLE_PAGES)
                    .label("ms", STABLE_MS)
                    .round(round)
                    .metric("writes", Unit::Count, r.writes as f64)
                    .metric("writebacks", Unit::Count, r.writebacks as f64)
                    .metric("under_writeback", Unit::Count, r.under_wb as f64)
                    .metric("wait_p50", Unit::Ns, percentile(&mut r.waits, 50) as f64)
                    .metric("wait_p99", Unit::Ns, percentile(&mut r.waits, 99) as f64)
                    .metric(
                        "write_p50",
                        Unit::Ns,
                        percentile(&mut r.write_ns, 50) as f64,
                    )
                    .metric(
                        "write_p99",
                        Unit::Ns,
                        percentile(&mut r.write_ns, 99) as f64,
                    )
                    .metric("violations", Unit::Count, r.violations as f64)
                    .emit();
            }
        }
    }
}
