//! The host-verified writeback torture: writers, flushers, an evictor and
//! injected write errors on the virtio disk, with stable-page waits in
//! force, ending in a manifest of what the disk must hold, which the host
//! checks against the image file after QEMU exits (issue 10), optionally
//! with DMA engines writing into pinned pages (issue 11, `gup.torture_dma`).
//!
//! Mental model: every page is a version of itself ([`contract::torture`]:
//! header with run, file, index, generation and writer, a body derived
//! from them, a checksum of everything). Each page is written either by
//! one CPU writer, which writes whole new versions through the page cache
//! ([`File::write`], which waits for stable pages), or (DMA variant, the
//! first pages of file 0, pinned for write) by the DMA engines, which
//! write whole new versions straight into the pinned frame through the
//! kernel mapping, as a device would, and never wait for writeback (a
//! device cannot). Flushers write back and sync continuously,
//! an evictor drops clean pages, an injector makes some writes fail at the
//! device.
//!
//! The end is the delicate part. A final sync after the writers stop would
//! rewrite every page cleanly and hide a torn or lost write, so the run
//! ends like this instead:
//!
//! 1. flushers, evictor and injector stop; **writers and DMA engines keep
//!    going**;
//! 2. once no write is pending, a final writeback pass writes every page
//!    once more ([`File::writeback_page_with`], forced), recording for
//!    each the header of the version it started: captured under the page
//!    lock right after `start_page_writeback`, from the frame the device
//!    will write. The device is plugged while the pass submits
//!    ([`BlockDevice::plug`]), so that every final write is in flight at
//!    once and stays so until the DMA engines have written a newer version
//!    of every pinned page; then it gets them all. Two of these writes
//!    fail on purpose (armed injections), and every page whose final write
//!    failed is written (and recorded) again;
//! 3. writers and engines stop; the pass's writes have all completed; no
//!    sync follows (the pages the writers dirtied since stay unwritten);
//! 4. the manifest is printed ([`contract::torture::Line`]), then the
//!    kernel reads every block back from the device itself and checks it
//!    against the manifest (the host does the same with the image file).
//!
//! With stable pages, a writer that wants a page under its final write
//! waits until the device has it, so each block holds exactly the
//! manifest's version. With `bug=no-stable-wait` a writer changes the page
//! while the device writes it: the block is torn (checksum mismatch) or
//! newer than the manifest: with all final writes held and then queued
//! behind one another, writers fall into that window many times over.
//!
//! DMA engines take the page lock around each whole version they write
//! (the stand-in's driver starts a transfer only on a locked page), but,
//! like a device, never wait for writeback. That is what the bounce copy
//! relies on: it is taken under the page lock, so it holds one whole
//! version, and the device writes the copy while the engine goes on
//! writing the page. With `bug=write-pinned-in-place` the device writes
//! the page itself, which the engine changes under it: a torn or newer
//! block. (A real device's transfer is not bracketed by any lock; a copy
//! taken while it runs would hold a mix of two transfers, which no
//! writeback scheme can prevent. What the bounce copy guarantees, and the
//! check verifies, is that the device never writes memory that changes
//! under it.)

use alloc::{boxed::Box, format, string::String, sync::Arc, vec, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use contract::{
    disk::{TORTURE_BLOCKS, TORTURE_FILE_PAGES, TORTURE_FILES, TORTURE_MAX_PAGES},
    torture::{self as fmt, DMA_WRITER, Entry, Line},
};

use super::{device_block, put_device_block};
use crate::{ktest::TestError, pagelock::torture::Rng, sched::join_timeout};
use kernel::{
    arch::time,
    block::{BLOCK_SIZE, BlockDevice, Inject, Op, Partition},
    gup::{GupFlags, Pinned, pin_user_pages},
    mm::Frame,
    pagecache::{Cache, File, Writeback},
    pagelock::table,
    params::Params,
    println,
    sched::{self, ThreadRef, thread::WaitQueue, timer},
    vm::{AddressSpace, MapSource, Prot},
};

const MS: u64 = 1_000_000;
/// Where the DMA variant maps file 0.
const DMA_VA: u64 = 0x5c_0000_0000;
/// Final-pass rounds before the run gives up on a page.
const FINAL_ROUNDS: u32 = 50;
/// How long the final pass keeps the device plugged at least, its writes
/// all in flight while the writers go on.
const PLUG_HOLD_MS: u64 = 50;

/// Final writes that fail on purpose (armed before the pass).
const FORCED_FAILURES: usize = 2;

/// The DMA variant's shape.
#[derive(Clone, Copy, Debug)]
pub struct Dma {
    /// Pages pinned for write (the first pages of file 0).
    pub pages: u64,
    /// DMA engine threads, one per CPU up to this many.
    pub engines: usize,
}

/// One run's shape.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `suite.case`, for the manifest.
    pub case: &'static str,
    /// First block of the torture's region of the virtio disk.
    pub first_block: u64,
    pub writers: usize,
    pub flushers: usize,
    pub evictors: usize,
    pub pages: u64,
    pub duration_ms: u64,
    pub seed: u64,
    /// The injector arms one failing write every this many milliseconds.
    pub inject_every_ms: u64,
    pub dma: Option<Dma>,
}

impl Options {
    /// Defaults scaled to the CPUs (a short run: 2 s, 64 pages, two
    /// writers per CPU), then the `torture_*` knobs; at most
    /// [`TORTURE_MAX_PAGES`] pages.
    pub fn from_params(p: &Params, case: &'static str, first_block: u64, dma: bool) -> Options {
        let cpus = kernel::smp::online_cpus();
        let t = p.torture;
        Options {
            case,
            first_block,
            writers: t.threads_per_cpu.map_or(2 * cpus, |n| n as usize * cpus),
            flushers: 2,
            evictors: 1,
            pages: t.pages.map_or(64, u64::from).min(TORTURE_MAX_PAGES),
            duration_ms: t.ms.unwrap_or(2000),
            seed: p.seed,
            inject_every_ms: 2,
            dma: dma.then_some(Dma {
                pages: 8,
                engines: cpus,
            }),
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub writes: u64,
    pub dma_writes: u64,
    pub syncs: u64,
    pub evictions: u64,
    /// Writes that failed at the device (injected), during the run and the
    /// final pass.
    pub write_errors: u64,
    /// Final writes that failed and were written again.
    pub retries: u64,
    /// Pages in the manifest.
    pub manifest: u64,
    /// Blocks that were not the manifest's version, by kind.
    pub findings: Vec<(&'static str, u64)>,
    pub stable_violations: u64,
    pub bounced: u64,
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Page `p` of the run is page `p / FILES` of file `p % FILES`.
fn place(p: u64) -> (u64, u64) {
    (p % TORTURE_FILES, p / TORTURE_FILES)
}

struct Shared {
    files: Vec<Arc<File>>,
    dev: Arc<dyn BlockDevice>,
    run: u64,
    /// Flushers, evictors and the injector stop.
    stop_flush: AtomicBool,
    /// Writers and DMA engines stop.
    stop: AtomicBool,
    /// Last generation written per page: by its CPU writer only, or by a
    /// DMA engine holding the page lock.
    generation: Vec<AtomicU64>,
    writes: AtomicU64,
    dma_writes: AtomicU64,
    write_failures: AtomicU64,
    syncs: AtomicU64,
    evictions: AtomicU64,
    /// Pages read by the reader (through read-ahead windows, mostly).
    reads: AtomicU64,
    armed: AtomicU64,
}

impl Shared {
    fn block(&self, p: u64) -> u64 {
        let (f, i) = place(p);
        contract::disk::torture_block(0, TORTURE_FILE_PAGES, f, i)
    }
}

/// A run id: the seed and the time, mixed (splitmix64), so that blocks of
/// an earlier run on the same image never pass for this one's.
fn run_id(seed: u64) -> u64 {
    let mut z = seed ^ time::now_ns().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn page_buf() -> Box<[u8; BLOCK_SIZE]> {
    vec![0u8; BLOCK_SIZE]
        .into_boxed_slice()
        .try_into()
        .expect("one block")
}

/// The manifest entry of the version in `frame` (its header, read with
/// volatile loads: under the page lock nobody changes it, but the loads
/// must not be assumed stable by the compiler either).
fn entry_of(frame: &Frame) -> Entry {
    let mut head = [0u8; fmt::HEADER_BYTES];
    let src = frame.virt().cast::<u64>();
    for (w, chunk) in head.chunks_exact_mut(8).enumerate() {
        // SAFETY: the frame is referenced by the caller and mapped for a
        // page; the header is its first 64 bytes.
        let v = unsafe { src.add(w).read_volatile() };
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    match fmt::header(&head) {
        Some(h) => Entry {
            file: h.file,
            index: h.index,
            generation: h.generation,
            checksum: h.checksum,
        },
        // Not a torture page: an entry no block can match.
        None => Entry {
            file: u64::MAX,
            index: u64::MAX,
            generation: 0,
            checksum: 0,
        },
    }
}

/// Runs the torture (module docs). `Err(Skip)` without a virtio disk big
/// enough for the region.
pub fn run(o: &Options) -> Result<Report, TestError> {
    let disk: &'static dyn BlockDevice = kernel::block::virtio_blk()
        .map(|d| d as &'static dyn BlockDevice)
        .map_err(TestError::Skip)?;
    let part: Arc<dyn BlockDevice> = Arc::new(
        Partition::new(disk, o.first_block, TORTURE_BLOCKS).ok_or(TestError::Skip(
            "the virtio disk is too small for the torture's region (contract::disk::TORTURE_*)",
        ))?,
    );
    let mut r = Report::default();
    // A fresh file system: no header, so `open` formats.
    put_device_block(&*part, 0, &[0; BLOCK_SIZE]).map_err(|_| TestError::Fail)?;
    let cache = Cache::open(part.clone(), TORTURE_FILE_PAGES).map_err(|e| {
        println!("    # opening the torture's file system failed: {e:?}");
        TestError::Fail
    })?;
    if cache.layout.files != TORTURE_FILES {
        println!(
            "    # the torture's layout has {} files",
            cache.layout.files
        );
        return Err(TestError::Fail);
    }
    let s = Arc::new(Shared {
        files: cache.files().to_vec(),
        dev: part.clone(),
        run: run_id(o.seed),
        stop_flush: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        generation: (0..o.pages).map(|_| AtomicU64::new(0)).collect(),
        writes: AtomicU64::new(0),
        dma_writes: AtomicU64::new(0),
        write_failures: AtomicU64::new(0),
        syncs: AtomicU64::new(0),
        evictions: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        armed: AtomicU64::new(0),
    });
    // Owners: the first pages of file 0 go to the DMA engines, the rest to
    // the CPU writers, round robin.
    let dma_pages = o
        .dma
        .map_or(0, |d| d.pages.min(o.pages.div_ceil(TORTURE_FILES)));
    let pinned_pages: Vec<u64> = (0..dma_pages).map(|i| i * TORTURE_FILES).collect();
    let cpu_pages: Vec<u64> = (0..o.pages).filter(|p| !pinned_pages.contains(p)).collect();
    let engines = o.dma.map_or(0, |d| d.engines.max(1));
    let writer_of = |p: u64| -> u64 {
        match pinned_pages.iter().position(|&q| q == p) {
            Some(_) => DMA_WRITER,
            None => {
                let j = cpu_pages.iter().position(|&q| q == p).expect("a page");
                (j % o.writers.max(1)) as u64
            }
        }
    };
    println!(
        "    # {}: {} writers, {} flushers, {} evictors, {} pages ({} pinned, {} DMA engines) in {} files on the virtio disk at block {}, {} ms, a failing write armed every {} ms, run {:#x}, protocol: {}",
        o.case,
        o.writers,
        o.flushers,
        o.evictors,
        o.pages,
        dma_pages,
        engines,
        TORTURE_FILES,
        o.first_block,
        o.duration_ms,
        o.inject_every_ms,
        s.run,
        kernel::pagelock::Describe(table().config())
    );
    // Device errors are counted from here on: a disk behind QEMU's
    // blkdebug fails its first writes, those of generation 1.
    let stats0 = part.stats();
    // Generation 1 of every page, written and synced before anyone starts.
    let mut buf = page_buf();
    for p in 0..o.pages {
        let (f, i) = place(p);
        fmt::fill(&mut buf, s.run, f, i, 1, writer_of(p));
        if s.files[f as usize].write(i * BLOCK_SIZE as u64, &buf[..]) != Ok(BLOCK_SIZE) {
            println!("    # writing generation 1 of page {p} failed");
            return Err(TestError::Fail);
        }
        s.generation[p as usize].store(1, Ordering::Relaxed);
    }
    // A device error (a disk behind QEMU's blkdebug) fails a sync once
    // and leaves its pages dirty: the next sync writes them again.
    for f in &s.files {
        let mut tries = 0;
        while let Err(e) = f.sync() {
            tries += 1;
            if tries == 8 {
                println!("    # the first sync failed {tries} times, the last: {e:?}");
                return Err(TestError::Fail);
            }
        }
    }
    let bounced0: u64 = s.files.iter().map(|f| f.stats().bounced).sum();
    // The DMA variant: file 0's first pages mapped and pinned for write.
    let mut dma: Option<(Arc<AddressSpace>, Pinned)> = None;
    if dma_pages > 0 {
        let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
        let len = dma_pages * BLOCK_SIZE as u64;
        if let Err(e) = space.map_file(
            DMA_VA,
            len,
            Prot::ReadWrite,
            s.files[0].clone() as Arc<dyn MapSource>,
            0,
        ) {
            println!("    # map_file: {e:?}");
            return Err(TestError::Fail);
        }
        let write = GupFlags {
            write: true,
            longterm: false,
        };
        match pin_user_pages(&space, DMA_VA, dma_pages as usize, write) {
            Ok(p) => dma = Some((space, p)),
            Err(e) => {
                println!("    # pin_user_pages: {e:?}");
                return Err(TestError::Fail);
            }
        }
    }

    let mut flushing: Vec<ThreadRef> = Vec::new();
    let mut writing: Vec<ThreadRef> = Vec::new();
    let mut spawn = |list: &mut Vec<ThreadRef>,
                     name: String,
                     cpu: Option<usize>,
                     body: Box<dyn FnOnce() + Send>| {
        match sched::spawn(&name, cpu, body) {
            Ok(t) => list.push(t),
            Err(e) => r.failures.push(format!("spawn {name}: {e:?}")),
        }
    };
    for k in 0..o.writers {
        let mine: Vec<u64> = cpu_pages
            .iter()
            .enumerate()
            .filter(|(j, _)| j % o.writers == k)
            .map(|(_, &p)| p)
            .collect();
        let (s, seed) = (s.clone(), o.seed);
        spawn(
            &mut writing,
            format!("pcd-w{k}"),
            None,
            Box::new(move || writer(&s, &mine, k as u64, seed)),
        );
    }
    if let Some((_, pinned)) = &dma {
        for e in 0..engines {
            // Every engine writes every pinned page (under its lock).
            let mine: Vec<(u64, Frame)> = pinned
                .frames()
                .iter()
                .enumerate()
                .map(|(j, f)| (pinned_pages[j], f.clone()))
                .collect();
            let (s, seed) = (s.clone(), o.seed);
            let cpu = e % kernel::smp::online_cpus();
            spawn(
                &mut writing,
                format!("pcd-dma{e}"),
                Some(cpu),
                Box::new(move || engine(&s, &mine, e as u64, seed)),
            );
        }
    }
    for k in 0..o.flushers {
        let (s, seed) = (s.clone(), o.seed);
        spawn(
            &mut flushing,
            format!("pcd-f{k}"),
            None,
            Box::new(move || flusher(&s, k as u64, seed)),
        );
    }
    for k in 0..o.evictors {
        let (s, seed, pages) = (s.clone(), o.seed, o.pages);
        spawn(
            &mut flushing,
            format!("pcd-e{k}"),
            None,
            Box::new(move || evictor(&s, pages, k as u64, seed)),
        );
    }
    {
        let (s, seed, pages) = (s.clone(), o.seed, o.pages);
        spawn(
            &mut flushing,
            String::from("pcd-r0"),
            None,
            Box::new(move || reader(&s, pages, seed)),
        );
    }
    {
        let (s, seed, pages, every) = (s.clone(), o.seed, o.pages, o.inject_every_ms);
        spawn(
            &mut flushing,
            String::from("pcd-inject"),
            None,
            Box::new(move || injector(&s, pages, every, seed)),
        );
    }

    timer::sleep_ns(o.duration_ms * MS);

    // 1. Flushers, evictor and injector stop; writers go on.
    s.stop_flush.store(true, Ordering::Release);
    join_all(&flushing, &mut r);
    // 2. The final pass, while the writers and engines still write.
    let mut manifest: Vec<Option<Entry>> = vec![None; o.pages as usize];
    if r.ok() {
        // No write may be pending when the device is plugged (below).
        for f in &s.files {
            f.wait_writeback();
        }
        let order: Vec<u64> = cpu_pages.iter().chain(&pinned_pages).copied().collect();
        final_pass(&s, &order, &pinned_pages, &mut manifest, &mut r);
    }
    // 3. Writers and engines stop; nothing is written after this.
    s.stop.store(true, Ordering::Release);
    join_all(&writing, &mut r);
    part.disarm(0..TORTURE_BLOCKS);
    for f in &s.files {
        f.wait_writeback();
    }
    // 4. The manifest, then the kernel's own check of the disk.
    let entries: Vec<Entry> = manifest.iter().flatten().copied().collect();
    r.manifest = entries.len() as u64;
    println!(
        "    {}",
        Line::Begin {
            case: o.case,
            run: s.run,
            first_block: o.first_block,
            files: TORTURE_FILES,
            file_pages: TORTURE_FILE_PAGES,
            pages: o.pages,
            pinned: dma_pages,
        }
    );
    for e in &entries {
        println!("    {}", Line::Page(*e));
    }
    println!(
        "    {}",
        Line::End {
            pages: r.manifest,
            retries: r.retries,
        }
    );
    if r.manifest != o.pages {
        r.failures.push(format!(
            "{} of {} pages have no final write",
            o.pages - r.manifest,
            o.pages
        ));
    }
    check_disk(&s, &entries, &mut r);

    r.writes = s.writes.load(Ordering::Relaxed);
    r.dma_writes = s.dma_writes.load(Ordering::Relaxed);
    r.syncs = s.syncs.load(Ordering::Relaxed);
    r.evictions = s.evictions.load(Ordering::Relaxed);
    let stats = part.stats();
    r.write_errors = stats.errors - stats0.errors;
    r.stable_violations = stats.stable_violations - stats0.stable_violations;
    r.bounced = s.files.iter().map(|f| f.stats().bounced).sum::<u64>() - bounced0;
    let failed_writes = s.write_failures.load(Ordering::Relaxed);
    if failed_writes != 0 {
        r.failures
            .push(format!("{failed_writes} writes through the cache failed"));
    }
    if r.stable_violations != 0 {
        r.failures.push(format!(
            "{} pages changed while the device was writing them (stable pages broken)",
            r.stable_violations
        ));
    }
    if dma_pages > 0
        && r.bounced == 0
        && pagesync::variant::bugs::bounce_pinned_pages(table().config().bug)
    {
        r.failures.push(String::from(
            "no write of a pinned page went through a bounce copy",
        ));
    }
    {
        let st: Vec<_> = s.files.iter().map(|f| f.stats()).collect();
        let sum = |g: fn(&kernel::pagecache::FileStats) -> u64| st.iter().map(g).sum::<u64>();
        println!(
            "    # {}: {} pages read by the reader; {} pages read in {} requests, {} read-ahead windows started by a mark; {} pages written back in {} requests",
            o.case,
            s.reads.load(Ordering::Relaxed),
            sum(|x| x.reads_issued),
            sum(|x| x.read_requests),
            sum(|x| x.readahead_async),
            sum(|x| x.writes_issued),
            sum(|x| x.write_requests),
        );
    }
    println!(
        "    # {}: {} writes, {} DMA writes, {} syncs, {} evictions, {} failed device writes ({} armed), final pass: {} pages, {} retried; {} bounce copies, {} stable-page violations; disk against the manifest: {}: {}",
        o.case,
        r.writes,
        r.dma_writes,
        r.syncs,
        r.evictions,
        r.write_errors,
        s.armed.load(Ordering::Relaxed),
        r.manifest,
        r.retries,
        r.bounced,
        r.stable_violations,
        if r.findings.is_empty() {
            String::from("all the same")
        } else {
            r.findings
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if r.ok() {
            String::from("SUCCESS")
        } else {
            format!("FAILURE: {}", r.failures.join("; "))
        }
    );
    if !r.ok() && r.failures.iter().any(|f| f.contains("did not finish")) {
        // Stranded threads may still use the cache and the pins: keep them.
        core::mem::forget(dma);
        core::mem::forget(cache);
        return Ok(r);
    }
    // Tear down: pins, the mapping and its space, then every cached page
    // (dirty data dropped: nothing more is to be written), then the cache.
    if let Some((space, pinned)) = dma {
        drop(pinned);
        if let Err(e) = space.unmap(DMA_VA, dma_pages * BLOCK_SIZE as u64) {
            r.failures.push(format!("unmap: {e:?}"));
        }
        drop(space);
    }
    // Every page of every file: read-ahead windows may have brought in
    // pages past the torture's.
    for f in &s.files {
        for i in 0..f.pages() {
            f.evict(i);
        }
    }
    let left: usize = s.files.iter().map(|f| f.cached_pages()).sum();
    if left != 0 {
        r.failures
            .push(format!("{left} pages still cached after evicting all"));
    }
    drop(s);
    drop(cache);
    Ok(r)
}

/// Joins `threads`, each within what is left of a 10 s deadline (a hang
/// detector: a lost writeback wake-up strands a thread).
fn join_all(threads: &[ThreadRef], r: &mut Report) {
    let deadline = time::now_ns() + 10_000 * MS;
    for t in threads {
        let left = deadline.saturating_sub(time::now_ns()) / MS;
        if !join_timeout(t, left.max(1)) {
            r.failures
                .push(format!("{} did not finish after the stop", t.name));
        }
    }
}

/// Step 2 of the module docs: every page in `order` written once more,
/// each recorded in `manifest` as the version its write started with,
/// retried until a write of it succeeds.
/// The first round submits every write with the device plugged
/// ([`BlockDevice::plug`]): all of them are in flight at once, and stay so
/// while the writers and engines go on, until the engines have written a
/// newer version of each page of `dma_pages` (a device that keeps writing
/// into its buffers while they are written back); then the device gets
/// them. A writer that keeps the stable-page rule blocks on the first page
/// it wants; one that does not, and every DMA engine, changes pages whose
/// writes are waiting.
fn final_pass(
    s: &Arc<Shared>,
    order: &[u64],
    dma_pages: &[u64],
    manifest: &mut [Option<Entry>],
    r: &mut Report,
) {
    struct Done {
        /// Per page: 0 pending, 1 written, 2 failed.
        status: Vec<AtomicU8>,
        wq: WaitQueue,
    }
    let done = Arc::new(Done {
        status: (0..manifest.len()).map(|_| AtomicU8::new(0)).collect(),
        wq: WaitQueue::new(),
    });
    // The retry path must run: the first final writes fail for sure (no
    // other write of these blocks comes before them now).
    for &p in order.iter().take(FORCED_FAILURES) {
        s.dev.inject(Inject {
            op: Op::Write,
            block: Some(s.block(p)),
            count: 1,
        });
        s.armed.fetch_add(1, Ordering::Relaxed);
    }
    let mut pending: Vec<u64> = order.to_vec();
    for round in 0..FINAL_ROUNDS {
        if pending.is_empty() {
            return;
        }
        if round == 0 {
            s.dev.plug();
        }
        let mut submitted = Vec::new();
        for &p in &pending {
            let (f, i) = place(p);
            done.status[p as usize].store(0, Ordering::Relaxed);
            let mut seen = None;
            let mut started = |frame: &Frame| seen = Some(entry_of(frame));
            let d = done.clone();
            let how = Writeback {
                force: true,
                started: Some(&mut started),
                done: Some(Box::new(move |res| {
                    let v = if res.is_ok() { 1 } else { 2 };
                    // Release pairs with the Acquire below: the end of
                    // writeback, run before us, is visible too.
                    d.status[p as usize].store(v, Ordering::Release);
                    d.wq.wake_up_all();
                })),
            };
            match s.files[f as usize].writeback_page_with(i, how) {
                Ok(true) => {
                    manifest[p as usize] = seen;
                    submitted.push(p);
                }
                // No frame for a bounce copy: again next round.
                Ok(false) => {}
                Err(e) => r
                    .failures
                    .push(format!("final writeback of page {p}: {e:?}")),
            }
        }
        if round == 0 {
            let rewritten = |p: &u64| {
                manifest[*p as usize].is_none_or(|e| {
                    s.generation[*p as usize].load(Ordering::Relaxed) > e.generation
                })
            };
            // Held at least PLUG_HOLD_MS, so the writers run while every
            // final write is in flight (with stable pages they wait for it;
            // without, they change pages under the device): the window
            // must not depend on how many requests the virtqueue holds.
            let hold = time::now_ns() + PLUG_HOLD_MS * MS;
            let deadline = time::now_ns() + 10_000 * MS;
            while (time::now_ns() < hold || !dma_pages.iter().all(rewritten))
                && time::now_ns() < deadline
            {
                timer::sleep_ns(MS);
            }
            s.dev.unplug();
            if !dma_pages.iter().all(rewritten) {
                r.failures.push(String::from(
                    "the DMA engines wrote no new version of a pinned page in 10 s",
                ));
            }
        }
        let all_done = || {
            submitted
                .iter()
                .all(|&p| done.status[p as usize].load(Ordering::Acquire) != 0)
        };
        if !timer::wait_event_timeout(&done.wq, all_done, 30_000 * MS) {
            r.failures
                .push(String::from("final writes did not complete within 30 s"));
            return;
        }
        pending.retain(|&p| done.status[p as usize].load(Ordering::Acquire) != 1);
        for &p in &pending {
            manifest[p as usize] = None;
        }
        r.retries += pending.len() as u64;
    }
    if !pending.is_empty() {
        r.failures.push(format!(
            "{} pages still unwritten after {FINAL_ROUNDS} final rounds",
            pending.len()
        ));
    }
    if r.retries < FORCED_FAILURES.min(order.len()) as u64 {
        r.failures.push(format!(
            "only {} final writes failed, {} were made to fail",
            r.retries, FORCED_FAILURES
        ));
    }
}

/// Reads every manifest page's block back from the device (not through
/// the cache) and tallies what it holds compared with the manifest.
fn check_disk(s: &Shared, entries: &[Entry], r: &mut Report) {
    let mut shown = 0;
    for e in entries {
        let block = contract::disk::torture_block(0, TORTURE_FILE_PAGES, e.file, e.index);
        let finding = match device_block(&*s.dev, block) {
            Ok(data) => fmt::check_block(&data, e, s.run),
            Err(err) => {
                r.failures
                    .push(format!("reading block {block} back: {err:?}"));
                continue;
            }
        };
        if finding == fmt::Finding::Same {
            continue;
        }
        if shown < 5 {
            shown += 1;
            println!(
                "    # file {} page {}: the disk holds {:?}, the manifest says generation {}",
                e.file, e.index, finding, e.generation
            );
        }
        match r.findings.iter_mut().find(|(k, _)| *k == finding.name()) {
            Some((_, n)) => *n += 1,
            None => r.findings.push((finding.name(), 1)),
        }
    }
    if !r.findings.is_empty() {
        let n: u64 = r.findings.iter().map(|(_, n)| n).sum();
        r.failures.push(format!(
            "{n} of {} blocks on the disk are not the manifest's version",
            entries.len()
        ));
    }
}

fn writer(s: &Shared, mine: &[u64], k: u64, seed: u64) {
    if mine.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed ^ (k + 1).wrapping_mul(0x9e37));
    let mut buf = page_buf();
    while !s.stop.load(Ordering::Acquire) {
        let p = mine[rng.below(mine.len() as u64) as usize];
        let (f, i) = place(p);
        let generation = s.generation[p as usize].load(Ordering::Relaxed) + 1;
        fmt::fill(&mut buf, s.run, f, i, generation, k);
        if s.files[f as usize].write(i * BLOCK_SIZE as u64, &buf[..]) == Ok(BLOCK_SIZE) {
            s.generation[p as usize].store(generation, Ordering::Relaxed);
            s.writes.fetch_add(1, Ordering::Relaxed);
        } else {
            s.write_failures.fetch_add(1, Ordering::Relaxed);
        }
        if rng.below(4) == 0 {
            sched::yield_now();
        }
    }
}

/// A DMA engine (module docs): whole versions into pinned frames, each
/// under the page lock, never waiting for writeback. Engines share the
/// pinned pages; the page lock orders their versions of one page.
fn engine(s: &Shared, mine: &[(u64, Frame)], e: u64, seed: u64) {
    if mine.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed ^ (e + 1).wrapping_mul(0xd3a));
    let mut buf = page_buf();
    let t = table();
    while !s.stop.load(Ordering::Acquire) {
        let (p, frame) = &mine[rng.below(mine.len() as u64) as usize];
        let (f, i) = place(*p);
        t.lock_page(frame);
        // Under the page lock, which every engine takes for this page.
        let generation = s.generation[*p as usize].load(Ordering::Relaxed) + 1;
        fmt::fill(&mut buf, s.run, f, i, generation, DMA_WRITER + e);
        let dst = frame.virt().cast::<u64>();
        for (w, chunk) in buf.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            // SAFETY: the frame is pinned and referenced by us, mapped in
            // the physical map for a page. Like a device's DMA it does not
            // wait for writeback: the device may be reading this very page
            // (the known-bad in-place variant), which is the point
            // (volatile: every store happens, in order).
            unsafe { dst.add(w).write_volatile(v) };
        }
        s.files[f as usize].mark_dirty(i, frame);
        s.generation[*p as usize].store(generation, Ordering::Relaxed);
        t.unlock_page(frame);
        s.dma_writes.fetch_add(1, Ordering::Relaxed);
        if rng.below(4) == 0 {
            sched::yield_now();
        }
    }
}

fn flusher(s: &Shared, k: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xf1u64 << k);
    while !s.stop_flush.load(Ordering::Acquire) {
        for f in &s.files {
            if rng.below(3) == 0 {
                // Injected errors make some syncs fail: expected.
                let _ = f.sync();
                s.syncs.fetch_add(1, Ordering::Relaxed);
            } else {
                f.writeback();
            }
        }
        timer::sleep_ns(MS);
    }
}

fn evictor(s: &Shared, pages: u64, k: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xe7u64 << k);
    while !s.stop_flush.load(Ordering::Acquire) {
        let (f, i) = place(rng.below(pages));
        if s.files[f as usize].evict_clean(i) {
            s.evictions.fetch_add(1, Ordering::Relaxed);
        }
        timer::sleep_ns(MS / 2);
    }
}

/// Reads runs of up to 32 pages of one file in order from a random page,
/// after dropping the clean ones (read-ahead windows form and bring them
/// back while writers, flushers and the evictor act on them). What it reads is checked by nobody here: a
/// page may be read halfway through a write; the disk check at the end is
/// the judge. A read may fail only with an I/O error (none are injected on
/// reads here).
fn reader(s: &Shared, pages: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x2ead);
    let mut buf = page_buf();
    while !s.stop_flush.load(Ordering::Acquire) {
        // A run of one file's pages: drop the clean ones first (writers
        // keep most pages cached), so reading them in order misses and
        // read-ahead windows go to the disk.
        let (f, first) = place(rng.below(pages));
        let file = &s.files[f as usize];
        let end = (first + 1 + rng.below(32)).min(file.pages());
        for i in first..end {
            file.evict_clean(i);
        }
        for i in first..end {
            if file.read(i * BLOCK_SIZE as u64, &mut buf[..]).is_ok() {
                s.reads.fetch_add(1, Ordering::Relaxed);
            }
        }
        timer::sleep_ns(MS / 2);
    }
}

/// Arms one failing write of a random page's block every `every_ms`.
fn injector(s: &Shared, pages: u64, every_ms: u64, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x1e);
    while !s.stop_flush.load(Ordering::Acquire) {
        s.dev.inject(Inject {
            op: Op::Write,
            block: Some(s.block(rng.below(pages))),
            count: 1,
        });
        s.armed.fetch_add(1, Ordering::Relaxed);
        timer::sleep_ns(every_ms * MS);
    }
}
