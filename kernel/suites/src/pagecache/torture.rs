//! Page-cache torture: writers, flushers, evictors and readers on one file
//! of a RAM device, with completions in another CPU's interrupt, then an
//! exact check of every page.
//!
//! Mental model: writer `w` owns the pages `p` with `p % writers == w` and
//! writes whole pages `pattern(w, p, round)`, remembering the last round
//! per page; flushers start writeback and sync in a loop; evictors remove
//! random clean pages (so pages are freed right after their writeback
//! ends, and their frames reused by the allocator for new pages);
//! readers check that any page they read is a pattern of its owner (or
//! zeros). Detectors:
//!
//! 1. **Stable pages**: the device counts writes whose frame changed while
//!    in flight; any is a failure (`bug=no-stable-wait` makes them).
//! 2. **Lost or stale data**: after the stop, a final sync, eviction of
//!    every page and a re-read from the device must give exactly the last
//!    pattern of every page.
//! 3. **Torn reads**: a reader that sees a page that is neither zeros nor
//!    a pattern of the page's owner.
//! 4. **Hangs**: every thread must finish within a deadline after the
//!    stop (a lost writeback wake-up strands a flusher or evictor).
//! 5. **The reuse race** (073861ed77b6): with `bug=end-writeback-no-ref`
//!    the end of writeback walks a page an evictor has freed; the waker's
//!    reference check in `pagesync` (debug builds) stops the kernel.

use alloc::{format, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{FILE_PAGES, fresh_cache, pattern};
use crate::{ktest::TestError, pagelock::torture::Rng, sched::join_timeout};
use kernel::{
    arch::time,
    block::BLOCK_SIZE,
    pagecache::File,
    params::Params,
    println,
    sched::{self, ThreadRef, timer},
};

const MS: u64 = 1_000_000;

/// One run's shape.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub writers: usize,
    pub flushers: usize,
    pub evictors: usize,
    pub readers: usize,
    pub pages: u64,
    pub duration_ms: u64,
    pub seed: u64,
}

impl Options {
    /// The hot shape (`pagecache.torture`): two writers per CPU on 16
    /// pages, so pages are nearly always dirty or under writeback and
    /// writers keep meeting writeback (stable pages, writeback waits);
    /// then the `torture_*` knobs.
    pub fn hot(p: &Params) -> Options {
        let cpus = kernel::smp::online_cpus();
        Options {
            writers: 2 * cpus,
            flushers: 2,
            evictors: 2,
            readers: 1,
            pages: 16,
            duration_ms: 3000,
            seed: p.seed,
        }
        .with_knobs(p)
    }

    /// The churn shape (`pagecache.torture_churn`): one writer per CPU on
    /// 64 pages, three flushers and four evictors, for 6 s, so pages are
    /// often clean, evicted and created again while flushers walk a list
    /// of dirty pages taken a moment before: the windows between a
    /// page-cache lookup and what the caller does with its result (a page
    /// gone, or a new page at the same index) are crossed thousands of
    /// times a run, and the race points at every lookup and index change
    /// widen them. It found the lost write of a flusher that removed a
    /// new page's dirty mark (on the code before the fix, 5 of 6 runs of
    /// 6 s lost writes at `-smp 4`).
    pub fn churn(p: &Params) -> Options {
        let cpus = kernel::smp::online_cpus();
        Options {
            writers: cpus,
            flushers: 3,
            evictors: 4,
            readers: 1,
            pages: 64,
            duration_ms: 6000,
            seed: p.seed,
        }
        .with_knobs(p)
    }

    /// The `torture_*` boot parameters over a shape's defaults.
    fn with_knobs(mut self, p: &Params) -> Options {
        let cpus = kernel::smp::online_cpus();
        let t = p.torture;
        if let Some(n) = t.threads_per_cpu {
            self.writers = n as usize * cpus;
        }
        if let Some(n) = t.pages {
            self.pages = u64::from(n);
        }
        self.pages = self.pages.min(FILE_PAGES);
        if let Some(ms) = t.ms {
            self.duration_ms = ms;
        }
        self
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub writes: u64,
    pub syncs: u64,
    pub evictions: u64,
    pub reads: u64,
    pub stable_violations: u64,
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

struct Shared {
    stop: AtomicBool,
    /// Last round written per page (by its owner only).
    last: Vec<AtomicU64>,
    writes: AtomicU64,
    syncs: AtomicU64,
    evictions: AtomicU64,
    reads: AtomicU64,
    torn: AtomicU64,
    /// Reads that returned an I/O error (an injected read failure that
    /// struck twice: allowed, counted).
    read_errors: AtomicU64,
    /// Read failures armed by the injector.
    injected: AtomicU64,
    /// The blocks of the file: the injector arms read failures on them.
    blocks: core::ops::Range<u64>,
    dev: Arc<dyn kernel::block::BlockDevice>,
}

/// Runs the torture (module docs).
pub fn run(o: &Options) -> Result<Report, TestError> {
    let mut r = Report::default();
    let cache = Arc::new(fresh_cache(1)?);
    let violations0 = cache.dev.stats().stable_violations;
    let file = cache.file(0).expect("one file").clone();
    let s = Arc::new(Shared {
        stop: AtomicBool::new(false),
        last: (0..o.pages).map(|_| AtomicU64::new(0)).collect(),
        writes: AtomicU64::new(0),
        syncs: AtomicU64::new(0),
        evictions: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        torn: AtomicU64::new(0),
        read_errors: AtomicU64::new(0),
        injected: AtomicU64::new(0),
        blocks: cache.layout.block(0, 0)..cache.layout.block(0, o.pages - 1) + 1,
        dev: cache.dev.clone(),
    });
    println!(
        "    # pagecache-torture: {} writers, {} flushers, {} evictors, {} readers, {} pages, {} ms, protocol: {}",
        o.writers,
        o.flushers,
        o.evictors,
        o.readers,
        o.pages,
        o.duration_ms,
        kernel::pagelock::Describe(kernel::pagelock::table().config())
    );
    let mut threads: Vec<ThreadRef> = Vec::new();
    let mut spawn = |name: String, f: fn(&Shared, &Arc<File>, &Options, usize), k: usize| {
        let (s, file, o) = (s.clone(), file.clone(), *o);
        match sched::spawn(&name, None, move || f(&s, &file, &o, k)) {
            Ok(t) => threads.push(t),
            Err(e) => r.failures.push(format!("spawn {name}: {e:?}")),
        }
    };
    for k in 0..o.writers {
        spawn(format!("pct-w{k}"), writer, k);
    }
    for k in 0..o.flushers {
        spawn(format!("pct-f{k}"), flusher, k);
    }
    for k in 0..o.evictors {
        spawn(format!("pct-e{k}"), evictor, k);
    }
    for k in 0..o.readers {
        spawn(format!("pct-r{k}"), reader, k);
    }
    spawn(String::from("pct-inject"), injector, 0);
    timer::sleep_ns(o.duration_ms * MS);
    s.stop.store(true, Ordering::Release);
    let deadline = time::now_ns() + 10_000 * MS;
    for t in &threads {
        let left = deadline.saturating_sub(time::now_ns()) / MS;
        if !join_timeout(t, left.max(1)) {
            r.failures
                .push(format!("{} did not finish after the stop", t.name));
        }
    }
    r.writes = s.writes.load(Ordering::Relaxed);
    r.syncs = s.syncs.load(Ordering::Relaxed);
    r.evictions = s.evictions.load(Ordering::Relaxed);
    r.reads = s.reads.load(Ordering::Relaxed);
    let torn = s.torn.load(Ordering::Relaxed);
    if torn != 0 {
        r.failures.push(format!("{torn} torn or foreign reads"));
    }
    // Read failures still armed would fail the final check's reads.
    cache.dev.disarm(s.blocks.clone());
    let st = file.stats();
    println!(
        "    # pagecache-torture: {} read failures armed, {} reads failed twice; {} pages read in {} requests, {} read-ahead windows started by a mark; {} pages written in {} requests, {} skipped by background passes",
        s.injected.load(Ordering::Relaxed),
        s.read_errors.load(Ordering::Relaxed),
        st.reads_issued,
        st.read_requests,
        st.readahead_async,
        st.writes_issued,
        st.write_requests,
        st.writeback_skipped
    );
    if r.ok() {
        check_final(o, &file, &s, &mut r);
    }
    r.stable_violations = cache.dev.stats().stable_violations - violations0;
    if r.stable_violations != 0 {
        r.failures.push(format!(
            "{} pages changed while the device was writing them (stable pages broken)",
            r.stable_violations
        ));
    }
    println!(
        "    # pagecache-torture: {} writes, {} syncs, {} evictions, {} reads, {} stable-page violations: {}",
        r.writes,
        r.syncs,
        r.evictions,
        r.reads,
        r.stable_violations,
        if r.ok() {
            String::from("SUCCESS")
        } else {
            format!("FAILURE: {}", r.failures.join("; "))
        }
    );
    if !r.ok() {
        // Stranded threads may still reference the cache: keep it.
        core::mem::forget(cache);
    }
    Ok(r)
}

/// Final sync, every page evicted, every page re-read from the device and
/// compared with its owner's last pattern.
fn check_final(o: &Options, file: &Arc<File>, s: &Shared, r: &mut Report) {
    if let Err(e) = file.sync() {
        r.failures.push(format!("final sync: {e:?}"));
        return;
    }
    for p in 0..o.pages {
        file.evict(p);
    }
    let mut buf = [0u8; BLOCK_SIZE];
    for p in 0..o.pages {
        let round = s.last[p as usize].load(Ordering::Acquire);
        let want = if round == 0 {
            [0u8; BLOCK_SIZE]
        } else {
            pattern(p % o.writers as u64, p, round)
        };
        match file.read(p * BLOCK_SIZE as u64, &mut buf) {
            Ok(n) if n == BLOCK_SIZE && buf == want => {}
            Ok(_) => r.failures.push(format!(
                "page {p}: device has not the last write (round {round})"
            )),
            Err(e) => r.failures.push(format!("page {p}: re-read failed: {e:?}")),
        }
    }
}

fn writer(s: &Shared, file: &Arc<File>, o: &Options, k: usize) {
    let mine: Vec<u64> = (0..o.pages)
        .filter(|p| p % o.writers as u64 == k as u64)
        .collect();
    if mine.is_empty() {
        return;
    }
    let mut rng = Rng::new(o.seed ^ (k as u64 + 1) * 0x9e37);
    while !s.stop.load(Ordering::Acquire) {
        let p = mine[rng.below(mine.len() as u64) as usize];
        let round = s.last[p as usize].load(Ordering::Relaxed) + 1;
        if file.write(p * BLOCK_SIZE as u64, &pattern(k as u64, p, round)) == Ok(BLOCK_SIZE) {
            // Release pairs with the final check's Acquire (after join).
            s.last[p as usize].store(round, Ordering::Release);
            s.writes.fetch_add(1, Ordering::Relaxed);
        }
        if rng.below(4) == 0 {
            sched::yield_now();
        }
    }
}

fn flusher(s: &Shared, file: &Arc<File>, o: &Options, k: usize) {
    let mut rng = Rng::new(o.seed ^ 0xf1u64 << k);
    while !s.stop.load(Ordering::Acquire) {
        if rng.below(3) == 0 {
            let _ = file.sync();
            s.syncs.fetch_add(1, Ordering::Relaxed);
        } else {
            file.writeback();
        }
        timer::sleep_ns(MS);
    }
}

fn evictor(s: &Shared, file: &Arc<File>, o: &Options, k: usize) {
    let mut rng = Rng::new(o.seed ^ 0xe7u64 << k);
    while !s.stop.load(Ordering::Acquire) {
        if file.evict_clean(rng.below(o.pages)) {
            s.evictions.fetch_add(1, Ordering::Relaxed);
        }
        sched::yield_now();
    }
}

/// Reads a random page, or a run of up to 16 pages from one, in order (so
/// read-ahead windows form, and their marks start the next, while writers,
/// flushers, evictors and the injector act on the same pages).
fn reader(s: &Shared, file: &Arc<File>, o: &Options, k: usize) {
    let mut rng = Rng::new(o.seed ^ 0x2eu64 << k);
    let mut buf = [0u8; BLOCK_SIZE];
    while !s.stop.load(Ordering::Acquire) {
        let first = rng.below(o.pages);
        let run = if rng.below(2) == 0 {
            1
        } else {
            1 + rng.below(16)
        };
        for p in first..(first + run).min(o.pages) {
            match file.read(p * BLOCK_SIZE as u64, &mut buf) {
                Ok(BLOCK_SIZE) => {
                    s.reads.fetch_add(1, Ordering::Relaxed);
                    if !plausible(&buf, p, o.writers as u64) {
                        s.torn.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(kernel::pagecache::FsError::Io(_)) => {
                    s.read_errors.fetch_add(1, Ordering::Relaxed);
                }
                // A short read or another error: counted with the torn
                // reads, which fail the run.
                _ => {
                    s.torn.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        sched::yield_now();
    }
}

/// Arms a one-shot read failure on a random page's block every 2 ms: it
/// strikes the next read request that covers the block, a read-ahead
/// window of several pages or a single page's read, failing all of it.
fn injector(s: &Shared, _file: &Arc<File>, o: &Options, _k: usize) {
    let mut rng = Rng::new(o.seed ^ 0x1ec7);
    while !s.stop.load(Ordering::Acquire) {
        let block = s.blocks.start + rng.below(s.blocks.end - s.blocks.start);
        s.dev.inject(kernel::block::Inject {
            op: kernel::block::Op::Read,
            block: Some(block),
            count: 1,
        });
        s.injected.fetch_add(1, Ordering::Relaxed);
        timer::sleep_ns(2 * MS);
    }
}

/// Zeros, or a whole pattern of page `p`'s owner (any round). Readers
/// copy without the page lock, so a read may catch a write half done:
/// that shows as two rounds in one page, which is allowed (Linux gives the
/// same guarantee); a word of another page or owner is not.
fn plausible(buf: &[u8; BLOCK_SIZE], p: u64, writers: u64) -> bool {
    if buf.iter().all(|&b| b == 0) {
        return true;
    }
    let owner = p % writers;
    buf.chunks_exact(8).enumerate().all(|(i, w)| {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ i as u64;
        v >> 56 == owner && (v >> 40) & 0xffff == p && v & 0xffff == 0
    })
}
