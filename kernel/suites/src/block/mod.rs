//! The `block` suite: both block devices move data both ways, complete
//! from interrupt context, fail cleanly, keep nothing they should give
//! back, and catch a frame changed under an in-flight write.
//!
//! Every case that needs the virtio disk skips, saying why, when the boot
//! has none (`cargo xtask run --disk none`); the RAM device is there
//! unless `ramdisk=0`.

pub mod bench;

use alloc::{boxed::Box, format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use contract::disk::{PERSIST_BLOCKS, pattern_word};

use crate::{
    kassert, kassert_eq,
    ktest::{Ctx, Suite, TestError, TestResult},
};
use kernel::{
    arch::{
        apic,
        ioapic::{self, Polarity, Trigger, rte},
        percpu, time,
    },
    block::{self, BLOCK_SIZE, BlockDevice, Inject, IoError, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages, heap, page_alloc::free_frames, pcp},
    params::Persist,
    println,
    sched::{self, spawn},
    smp::online_cpus,
};

/// How long a batch of requests may take before a case gives up (TCG on
/// a shared host is slow; the devices are not).
const DEADLINE_NS: u64 = 60_000_000_000;

fn virtio() -> Result<&'static dyn BlockDevice, TestError> {
    block::virtio_blk()
        .map(|d| d as &'static dyn BlockDevice)
        .map_err(TestError::Skip)
}

fn ram() -> Result<&'static dyn BlockDevice, TestError> {
    block::ram_disk()
        .map(|d| d as &'static dyn BlockDevice)
        .ok_or(TestError::Skip("no RAM device (ramdisk=0)"))
}

/// What the completions of a batch saw.
#[derive(Default)]
pub struct Tracker {
    /// Completions run (Release: everything the completion and the device
    /// did before is visible to whoever reads the count with Acquire).
    pub done: AtomicU64,
    pub ok: AtomicU64,
    pub out_of_range: AtomicU64,
    pub injected: AtomicU64,
    pub bad_request: AtomicU64,
    pub device: AtomicU64,
    /// Completions that ran with interrupts enabled or outside a device
    /// interrupt handler.
    pub wrong_context: AtomicU64,
    /// Completions that ran on the submitter's CPU.
    pub same_cpu: AtomicU64,
}

impl Tracker {
    pub fn new() -> Arc<Tracker> {
        Arc::new(Tracker::default())
    }

    /// The completion of a request submitted on this CPU.
    pub fn completion(self: &Arc<Self>) -> block::Completion {
        let t = self.clone();
        let submit_cpu = percpu::cpu_index();
        Box::new(move |r| {
            if x86_64::instructions::interrupts::are_enabled() || !percpu::in_device_irq() {
                t.wrong_context.fetch_add(1, Ordering::Relaxed);
            }
            if percpu::cpu_index() == submit_cpu {
                t.same_cpu.fetch_add(1, Ordering::Relaxed);
            }
            let c = match r {
                Ok(()) => &t.ok,
                Err(IoError::OutOfRange) => &t.out_of_range,
                Err(IoError::Injected) => &t.injected,
                Err(IoError::BadRequest) => &t.bad_request,
                Err(IoError::Device) => &t.device,
            };
            c.fetch_add(1, Ordering::Relaxed);
            // Release pairs with the Acquire in `wait`.
            t.done.fetch_add(1, Ordering::Release);
        })
    }

    /// Waits until `n` completions have run; false at the deadline.
    pub fn wait(&self, n: u64) -> bool {
        let deadline = time::now_ns() + DEADLINE_NS;
        // Acquire pairs with the Release in the completion.
        while self.done.load(Ordering::Acquire) < n {
            if time::now_ns() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

/// Fills the first block of `f` with the pattern of (`seed`, `block`).
pub fn fill(f: &Frame, seed: u64, block: u64) {
    let p = f.virt() as *mut u64;
    for w in 0..BLOCK_SIZE / 8 {
        // SAFETY: we hold the frame, which is mapped for BLOCK_SIZE bytes,
        // and no I/O uses it right now.
        unsafe { p.add(w).write(pattern_word(seed, block, w as u64)) };
    }
}

/// The first word of `f` that differs from the pattern, if any.
pub fn mismatch(f: &Frame, seed: u64, block: u64) -> Option<(usize, u64, u64)> {
    let p = f.virt() as *const u64;
    (0..BLOCK_SIZE / 8).find_map(|w| {
        // SAFETY: as in `fill`; the read that filled it has completed.
        let got = unsafe { p.add(w).read() };
        let want = pattern_word(seed, block, w as u64);
        (got != want).then_some((w, got, want))
    })
}

fn frame() -> Frame {
    alloc_pages(0, AllocFlags::ZERO).expect("a frame")
}

fn submit(dev: &dyn BlockDevice, op: Op, block: u64, f: &Frame, t: &Arc<Tracker>) {
    dev.submit(Request {
        op,
        block,
        frames: f.clone().into(),
        done: t.completion(),
    });
}

/// Frames free or held by the heap (which never gives any back): a leak
/// of frames makes it drop.
fn frames_accounted() -> u64 {
    pcp::drain_all();
    free_frames() + heap::stats().0 / 4096
}

/// `blocks` blocks written with a pattern and read back, both from a
/// thread on every CPU at once (each thread submits its share without
/// waiting, so far more requests are outstanding than a virtqueue holds),
/// then checked word by word; every completion ran in device-interrupt
/// context and every device reference was given back.
fn round_trip(dev: &'static dyn BlockDevice, blocks: u64, seed: u64) -> TestResult {
    let ncpu = online_cpus();
    let before = dev.stats();
    let frames: Arc<Vec<Frame>> = Arc::new((0..blocks).map(|_| frame()).collect());
    for (op, what) in [(Op::Write, "writes"), (Op::Read, "reads")] {
        if op == Op::Read {
            for f in frames.iter() {
                // SAFETY: our frame, no I/O on it now.
                unsafe { core::ptr::write_bytes(f.virt(), 0, BLOCK_SIZE) };
            }
        }
        let t = Tracker::new();
        let threads: Vec<_> = (0..ncpu)
            .map(|cpu| {
                let (t, frames) = (t.clone(), frames.clone());
                spawn(&format!("blk{cpu}"), Some(cpu), move || {
                    for b in (cpu as u64..blocks).step_by(ncpu) {
                        let f = &frames[b as usize];
                        if op == Op::Write {
                            fill(f, seed, b);
                        }
                        submit(dev, op, b, f, &t);
                    }
                })
                .expect("spawn")
            })
            .collect();
        for th in &threads {
            sched::join(th);
        }
        kassert!(
            t.wait(blocks),
            "{}: only {} of {blocks} {what} completed",
            dev.name(),
            t.done.load(Ordering::Relaxed)
        );
        kassert_eq!(t.ok.load(Ordering::Relaxed), blocks);
        kassert_eq!(t.wrong_context.load(Ordering::Relaxed), 0);
        if ncpu > 1 && dev.name() == "ram" {
            // The RAM device completes on the next CPU.
            kassert_eq!(t.same_cpu.load(Ordering::Relaxed), 0);
        }
        println!(
            "    # {}: {blocks} {what} from {ncpu} CPUs, {} completed on the submitter's CPU",
            dev.name(),
            t.same_cpu.load(Ordering::Relaxed)
        );
    }
    for (b, f) in frames.iter().enumerate() {
        if let Some((w, got, want)) = mismatch(f, seed, b as u64) {
            kassert!(
                false,
                "{}: block {b} word {w}: read {got:#x}, wrote {want:#x}",
                dev.name()
            );
        }
        kassert_eq!(f.ref_count(), 1);
    }
    let after = dev.stats();
    kassert_eq!(after.writes - before.writes, blocks);
    kassert_eq!(after.reads - before.reads, blocks);
    kassert_eq!(after.errors, before.errors);
    kassert_eq!(after.completions - before.completions, 2 * blocks);
    kassert!(after.interrupts > before.interrupts, "no interrupt counted");
    kassert_eq!(after.stable_violations, before.stable_violations);
    println!(
        "    # {}: {} interrupts for {} completions",
        dev.name(),
        after.interrupts - before.interrupts,
        2 * blocks
    );
    Ok(())
}

fn round_trip_ram(ctx: &Ctx) -> TestResult {
    let dev = ram()?;
    round_trip(dev, dev.blocks().min(1024), ctx.params.seed)
}

fn round_trip_virtio(ctx: &Ctx) -> TestResult {
    let dev = virtio()?;
    round_trip(dev, dev.blocks().min(512), ctx.params.seed ^ 0x5a5a)?;
    let x = block::virtio_blk().map_err(TestError::Skip)?.extra();
    println!(
        "    # virtio-blk: at most {} requests on the virtqueue and {} waiting in the software queue",
        x.max_inflight, x.max_waiting
    );
    // Queue depth: more were outstanding than the virtqueue holds.
    kassert!(x.max_waiting > 0, "the software queue never held a request");
    Ok(())
}

/// Requests past the end, failures injected for a block and for an
/// operation, and requests whose frame is not one page complete with the
/// right error, from interrupt context, move no data, and leave every
/// frame with only our reference and no frame unaccounted.
fn errors(dev: &'static dyn BlockDevice) -> TestResult {
    let f = frame();
    // Warm up whatever the paths allocate once (heap growth, queues).
    let t = Tracker::new();
    submit(dev, Op::Read, 0, &f, &t);
    kassert!(t.wait(1));
    let accounted = frames_accounted();
    let before = dev.stats();
    let n = dev.blocks();
    let t = Tracker::new();
    for b in [n, n + 7, u64::MAX] {
        submit(dev, Op::Read, b, &f, &t);
        submit(dev, Op::Write, b, &f, &t);
    }
    kassert!(t.wait(6));
    kassert_eq!(t.out_of_range.load(Ordering::Relaxed), 6);
    let t = Tracker::new();
    dev.inject(Inject {
        op: Op::Write,
        block: Some(3),
        count: 2,
    });
    dev.inject(Inject {
        op: Op::Read,
        block: None,
        count: 1,
    });
    // The reads go to a frame of their own: a read that goes through
    // writes its frame while the writes are in flight, which the devices'
    // stable-page check would (rightly) report.
    let r = frame();
    submit(dev, Op::Write, 4, &f, &t); // not block 3: goes through
    submit(dev, Op::Write, 3, &f, &t); // injected
    submit(dev, Op::Read, 9, &r, &t); // injected (any block)
    submit(dev, Op::Write, 3, &f, &t); // injected
    submit(dev, Op::Write, 3, &f, &t); // used up: goes through
    submit(dev, Op::Read, 9, &r, &t); // used up
    kassert!(t.wait(6));
    kassert_eq!(t.injected.load(Ordering::Relaxed), 3);
    kassert_eq!(t.ok.load(Ordering::Relaxed), 3);
    kassert_eq!(t.wrong_context.load(Ordering::Relaxed), 0);
    kassert_eq!(f.ref_count(), 1);
    kassert_eq!(r.ref_count(), 1);
    drop(r);
    // A request whose frame is not one page (two here) is refused whole:
    // the write stores nothing (block 6 keeps its pattern), the read
    // leaves the frame as it was; neither is cut down to one page.
    {
        fill(&f, 0x6b, 6);
        let t = Tracker::new();
        submit(dev, Op::Write, 6, &f, &t);
        kassert!(t.wait(1));
        let two = alloc_pages(1, AllocFlags::ZERO).expect("two frames");
        for half in 0..2 {
            // SAFETY: our two frames, mapped, no I/O on them now.
            unsafe { core::ptr::write_bytes(two.virt().add(half * BLOCK_SIZE), 0x5a, BLOCK_SIZE) };
        }
        let t = Tracker::new();
        submit(dev, Op::Write, 6, &two, &t);
        submit(dev, Op::Read, 6, &two, &t);
        kassert!(t.wait(2));
        kassert_eq!(t.bad_request.load(Ordering::Relaxed), 2);
        kassert_eq!(t.wrong_context.load(Ordering::Relaxed), 0);
        // SAFETY: as above; the refused read did not touch it.
        let untouched = unsafe { core::slice::from_raw_parts(two.virt(), 2 * BLOCK_SIZE) };
        kassert!(
            untouched.iter().all(|&b| b == 0x5a),
            "a refused read wrote the frame"
        );
        kassert_eq!(two.ref_count(), 1);
        // SAFETY: our frame, no I/O on it now.
        unsafe { core::ptr::write_bytes(f.virt(), 0, BLOCK_SIZE) };
        let t = Tracker::new();
        submit(dev, Op::Read, 6, &f, &t);
        kassert!(t.wait(1));
        kassert_eq!(mismatch(&f, 0x6b, 6), None);
    }
    let after = dev.stats();
    kassert_eq!(after.errors - before.errors, 11);
    kassert_eq!(after.completions - before.completions, 16);
    kassert_eq!(frames_accounted(), accounted);
    Ok(())
}

fn errors_ram(_: &Ctx) -> TestResult {
    errors(ram()?)
}

fn errors_virtio(_: &Ctx) -> TestResult {
    errors(virtio()?)
}

/// The stable-page check of the RAM device: a frame changed after its
/// write was submitted, before the device copied it, is caught (the device
/// is stopped so that the change surely falls in the window); a writer
/// that leaves the frame alone is not.
fn stable_pages_ram(_: &Ctx) -> TestResult {
    let dev = block::ram_disk().ok_or(TestError::Skip("no RAM device (ramdisk=0)"))?;
    let f = frame();
    fill(&f, 1, 5);
    let v0 = dev.stats().stable_violations;
    // A well-behaved writer.
    let t = Tracker::new();
    dev.plug();
    submit(dev, Op::Write, 5, &f, &t);
    time::delay_us(1000);
    dev.unplug();
    kassert!(t.wait(1));
    kassert_eq!(dev.stats().stable_violations, v0);
    // A writer that does not wait for writeback.
    let t = Tracker::new();
    dev.plug();
    submit(dev, Op::Write, 5, &f, &t);
    // SAFETY: our frame; the device reads it only when it completes, after
    // `unplug` (that this write races the device is the point).
    unsafe { (f.virt() as *mut u64).add(17).write_volatile(0xdead_beef) };
    dev.unplug();
    kassert!(t.wait(1));
    kassert_eq!(dev.stats().stable_violations, v0 + 1);
    // What the device stored is what the frame held when it copied.
    let t = Tracker::new();
    let g = frame();
    submit(dev, Op::Read, 5, &g, &t);
    kassert!(t.wait(1));
    // SAFETY: our frame, its read completed.
    kassert_eq!(
        unsafe { (g.virt() as *const u64).add(17).read() },
        0xdead_beef
    );
    Ok(())
}

/// The virtio device checks at completion: a frame changed between submit
/// and the completion interrupt is caught. The change is made with
/// interrupts off on the CPU that takes the device's interrupt, so the
/// completion cannot run before it.
fn stable_pages_virtio(_: &Ctx) -> TestResult {
    let dev = virtio()?;
    if percpu::cpu_index() != block::virtio::IRQ_CPU {
        return Err(TestError::Skip("not on the device's interrupt CPU"));
    }
    let f = frame();
    fill(&f, 2, 6);
    let v0 = dev.stats().stable_violations;
    let t = Tracker::new();
    submit(dev, Op::Write, 6, &f, &t);
    kassert!(t.wait(1));
    kassert_eq!(dev.stats().stable_violations, v0);
    let t = Tracker::new();
    kernel::arch::without_interrupts(|| {
        submit(dev, Op::Write, 6, &f, &t);
        // SAFETY: our frame; the race with the device is the point.
        unsafe { (f.virt() as *mut u64).write_volatile(1) };
    });
    kassert!(t.wait(1));
    kassert_eq!(dev.stats().stable_violations, v0 + 1);
    Ok(())
}

/// The device's INTx is routed as the MADT says and the level handshake
/// works: inside the handler, before its EOI, the entry had remote IRR set
/// (the I/O APIC took the line as level triggered and waited for us);
/// Requests of several adjacent blocks, and flushes: one request writes
/// 8 blocks from 8 frames anywhere in memory and one reads them back into
/// 8 others; a request of more frames than the device takes, a flush
/// that carries a frame, and one that runs past the end are refused whole
/// (nothing written); a failure injected for the middle block fails the
/// whole request and moves nothing; flushes complete, and an injected
/// flush failure is reported.
fn multi_block_and_flush(dev: &'static dyn BlockDevice, seed: u64) -> TestResult {
    const N: u64 = 8;
    let first = 40;
    let before = dev.stats();
    let out: Vec<Frame> = (0..N).map(|_| frame()).collect();
    for (i, f) in out.iter().enumerate() {
        fill(f, seed, first + i as u64);
    }
    let t = Tracker::new();
    dev.submit(Request::new(Op::Write, first, out.clone(), t.completion()));
    kassert!(t.wait(1));
    kassert_eq!(t.ok.load(Ordering::Relaxed), 1);
    let back: Vec<Frame> = (0..N).map(|_| frame()).collect();
    let t = Tracker::new();
    dev.submit(Request::new(Op::Read, first, back.clone(), t.completion()));
    kassert!(t.wait(1));
    kassert_eq!(t.ok.load(Ordering::Relaxed), 1);
    for (i, f) in back.iter().enumerate() {
        kassert_eq!(mismatch(f, seed, first + i as u64), None);
    }
    let after = dev.stats();
    kassert_eq!(
        (after.writes - before.writes, after.reads - before.reads),
        (1, 1)
    );
    // Refused whole: too many frames, a flush with a frame, past the end.
    let too_many: Vec<Frame> = (0..dev.max_segments() + 1).map(|_| frame()).collect();
    let t = Tracker::new();
    dev.submit(Request::new(Op::Write, first, too_many, t.completion()));
    dev.submit(Request {
        op: Op::Flush,
        block: 0,
        frames: frame().into(),
        done: t.completion(),
    });
    let tail: Vec<Frame> = (0..4).map(|_| frame()).collect();
    dev.submit(Request::new(
        Op::Write,
        dev.blocks() - 2,
        tail,
        t.completion(),
    ));
    kassert!(t.wait(3));
    kassert_eq!(t.bad_request.load(Ordering::Relaxed), 2);
    kassert_eq!(t.out_of_range.load(Ordering::Relaxed), 1);
    // A failure for the middle block fails the whole request.
    let zeros: Vec<Frame> = (0..N).map(|_| frame()).collect();
    dev.inject(Inject {
        op: Op::Write,
        block: Some(first + N / 2),
        count: 1,
    });
    let t = Tracker::new();
    dev.submit(Request::new(Op::Write, first, zeros, t.completion()));
    kassert!(t.wait(1));
    kassert_eq!(t.injected.load(Ordering::Relaxed), 1);
    let t = Tracker::new();
    dev.submit(Request::new(Op::Read, first, back.clone(), t.completion()));
    kassert!(t.wait(1));
    for (i, f) in back.iter().enumerate() {
        kassert_eq!(mismatch(f, seed, first + i as u64), None);
    }
    // Flushes.
    let t = Tracker::new();
    dev.submit(Request::flush(t.completion()));
    dev.inject(Inject {
        op: Op::Flush,
        block: None,
        count: 1,
    });
    dev.submit(Request::flush(t.completion()));
    kassert!(t.wait(2));
    kassert_eq!(t.ok.load(Ordering::Relaxed), 1);
    kassert_eq!(t.injected.load(Ordering::Relaxed), 1);
    kassert_eq!(t.wrong_context.load(Ordering::Relaxed), 0);
    kassert!(dev.stats().flushes > before.flushes, "no flush counted");
    println!(
        "    # {}: {N} blocks per request both ways, up to {} per request; refusals, injected failures and flushes as expected",
        dev.name(),
        dev.max_segments()
    );
    Ok(())
}

fn multi_block_and_flush_ram(ctx: &Ctx) -> TestResult {
    multi_block_and_flush(ram()?, ctx.params.seed ^ 0x77)
}

fn multi_block_and_flush_virtio(ctx: &Ctx) -> TestResult {
    multi_block_and_flush(virtio()?, ctx.params.seed ^ 0x78)
}

/// The RAM device's volatile write cache: a completed write is visible to
/// reads at once but not durable; a flush makes it durable; a power cut
/// loses exactly the writes no flush covered.
fn ram_write_cache(ctx: &Ctx) -> TestResult {
    let ram = block::ram_disk().ok_or(TestError::Skip("no RAM device (ramdisk=0)"))?;
    let dev: &dyn BlockDevice = ram;
    let (b, seed) = (dev.blocks() - 1, ctx.params.seed);
    let io = |op: Op, f: &Frame| -> bool {
        let t = Tracker::new();
        dev.submit(Request::new(op, b, f.clone(), t.completion()));
        t.wait(1) && t.ok.load(Ordering::Relaxed) == 1
    };
    let flush = || -> bool {
        let t = Tracker::new();
        dev.submit(Request::flush(t.completion()));
        t.wait(1) && t.ok.load(Ordering::Relaxed) == 1
    };
    let (a, bb) = (frame(), frame());
    fill(&a, seed, b);
    fill(&bb, seed ^ 1, b);
    let mut durable = [0u8; BLOCK_SIZE];
    let same = |buf: &[u8; BLOCK_SIZE], f: &Frame| {
        // SAFETY: our frame, no I/O on it now.
        buf[..] == *unsafe { core::slice::from_raw_parts(f.virt(), BLOCK_SIZE) }
    };
    kassert!(io(Op::Write, &a) && flush(), "write A and flush");
    kassert!(ram.durable_block(b, &mut durable).is_some());
    kassert!(same(&durable, &a), "a flushed write is not durable");
    kassert!(io(Op::Write, &bb), "write B");
    let seen = frame();
    kassert!(io(Op::Read, &seen));
    kassert_eq!(mismatch(&seen, seed ^ 1, b), None);
    kassert!(ram.durable_block(b, &mut durable).is_some());
    kassert!(same(&durable, &a), "an unflushed write is already durable");
    kassert!(ram.power_cut() >= 1, "the power cut lost nothing");
    kassert!(io(Op::Read, &seen));
    kassert_eq!(mismatch(&seen, seed, b), None);
    kassert!(io(Op::Write, &bb) && flush(), "write B again and flush");
    kassert_eq!(ram.power_cut(), 0);
    kassert!(io(Op::Read, &seen));
    kassert_eq!(mismatch(&seen, seed ^ 1, b), None);
    Ok(())
}

/// after a burst of I/O the entry holds our vector, trigger and polarity,
/// is unmasked, has no EOI outstanding (remote IRR clear), and no
/// interrupt found the device idle (a line the handler did not quiet
/// before the EOI would be delivered again at once).
fn interrupt_routing(_: &Ctx) -> TestResult {
    let dev = block::virtio_blk().map_err(TestError::Skip)?;
    let t = Tracker::new();
    let f = frame();
    let before = dev.stats();
    for b in 0..64 {
        submit(dev, Op::Read, b, &f, &t);
    }
    kassert!(t.wait(64));
    let after = dev.stats();
    let x = dev.extra();
    let e = ioapic::entry(x.route.gsi).map_err(|_| TestError::Fail)?;
    println!(
        "    # {}; entry {e:#018x}; {} interrupts for 64 reads, {} found the device idle",
        x.route,
        after.interrupts - before.interrupts,
        x.spurious
    );
    kassert_eq!(
        e & 0xff,
        (apic::DEVICE_VECTOR_BASE + block::virtio::IRQ_LINE as u8) as u64
    );
    kassert_eq!(e & rte::MASKED, 0);
    kassert_eq!(e & rte::REMOTE_IRR, 0);
    kassert_eq!(e & rte::LEVEL != 0, x.route.trigger == Trigger::Level);
    kassert_eq!(
        e & rte::ACTIVE_LOW != 0,
        x.route.polarity == Polarity::ActiveLow
    );
    println!(
        "    # remote IRR set before the EOI in {} of the {} sampled interrupts",
        x.irr_set, x.irr_sampled
    );
    kassert!(x.irr_sampled > 0);
    if x.route.trigger == Trigger::Level {
        kassert_eq!(x.irr_set, x.irr_sampled);
    }
    kassert!(after.interrupts > before.interrupts);
    kassert!(after.interrupts - before.interrupts <= 64);
    kassert_eq!(x.spurious, 0);
    Ok(())
}

/// `blk_persist=write`: the pattern of `seed=` goes to the first blocks of
/// the virtio disk; `blk_persist=check`: they must hold it (the host boots
/// the same image twice, see `tests/tests/block.rs`).
fn persist(ctx: &Ctx) -> TestResult {
    let mode = ctx.params.blk_persist;
    if mode == Persist::Off {
        return Err(TestError::Skip("blk_persist=off"));
    }
    let dev = virtio()?;
    let seed = ctx.params.seed;
    let frames: Vec<Frame> = (0..PERSIST_BLOCKS).map(|_| frame()).collect();
    let t = Tracker::new();
    let op = if mode == Persist::Write {
        Op::Write
    } else {
        Op::Read
    };
    for (b, f) in frames.iter().enumerate() {
        if op == Op::Write {
            fill(f, seed, b as u64);
        }
        submit(dev, op, b as u64, f, &t);
    }
    kassert!(t.wait(PERSIST_BLOCKS));
    kassert_eq!(t.ok.load(Ordering::Relaxed), PERSIST_BLOCKS);
    if op == Op::Read {
        for (b, f) in frames.iter().enumerate() {
            if let Some((w, got, want)) = mismatch(f, seed, b as u64) {
                kassert!(
                    false,
                    "block {b} word {w}: disk holds {got:#x}, the pattern is {want:#x}"
                );
            }
        }
    }
    println!(
        "    # blk_persist={}: {PERSIST_BLOCKS} blocks {} with seed {seed}",
        mode.name(),
        if op == Op::Write {
            "written"
        } else {
            "checked"
        }
    );
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "block",
    cases: &[
        crate::case!(round_trip_ram),
        crate::case!(round_trip_virtio),
        crate::case!(errors_ram),
        crate::case!(errors_virtio),
        crate::case!(stable_pages_ram),
        crate::case!(stable_pages_virtio),
        crate::case!(interrupt_routing),
        crate::case!(multi_block_and_flush_ram),
        crate::case!(multi_block_and_flush_virtio),
        crate::case!(ram_write_cache),
        crate::case!(persist),
    ],
    accounted: true,
    expect_log: &[
        // Each changes a frame while its write is in flight, on purpose.
        ("stable_pages_ram", &["ram: stable-page violation"]),
        (
            "stable_pages_virtio",
            &["virtio-blk: stable-page violation"],
        ),
    ],
    ..Suite::DEFAULTS
};
