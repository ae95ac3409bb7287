//! A RAM-backed block device that completes asynchronously, like a DMA
//! device.
//!
//! Mental model: the backing store is frames from the allocator (chunks
//! of [`CHUNK_ORDER`]). [`BlockDevice::submit`] does no I/O: it queues the
//! request for a *completion CPU*, the next online CPU after the
//! submitter's (the submitter's own with one CPU), and raises that CPU's
//! device line with a fixed IPI. The IPI handler ([`irq`]) is the device's
//! engine and completion context in one: it moves the data (for a write it
//! reads the frame *now*, as a DMA engine would, so a frame changed after
//! submit is what gets stored), checks a write's frame against its
//! checksum from submit (the stable-page check), and runs the completion,
//! all in interrupt context on another CPU. Between submit and the
//! handler, the request is really in flight.
//!
//! Why an IPI rather than the timer tick: a tick would hold every request
//! for up to a tick period (10 ms at `hz=100`), which says nothing about
//! the page cache and would swamp the latency benchmark; the IPI comes
//! within microseconds, from real interrupt context on another CPU, the
//! way a device's completion interrupt does.
//!
//! Each CPU has its own queue; a submitter that finds the target queue
//! empty sends the IPI, and the handler empties the whole queue under its
//! lock before it works: so an IPI is on its way whenever a queue is not
//! empty (unless the device is stopped), and one IPI serves a burst.
//!
//! A plug (`BlockDevice::plug`) holds every request (the handler leaves
//! the queues alone) until the last plug is released, like stopping a
//! hardware queue: tests use it to act inside the in-flight window
//! deterministically, and batched writeback to send a batch at once.
//!
//! The volatile write cache (module docs of `super`): the device keeps a
//! second, *durable* copy of every block. A write changes the visible
//! copy (what reads return) and marks the block dirty; a flush copies the
//! dirty blocks to the durable copy; [`RamDisk::power_cut`] copies them
//! back the other way, losing every write no flush made durable, and
//! [`RamDisk::durable_block`] reads what a power cut would leave. Writes
//! and flushes serialise on one lock (`cache`), so a flush never copies a
//! block half written.

use alloc::{collections::VecDeque, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{
    BLOCK_SIZE, BlockDevice, DeviceStats, Inject, IoError, Op, Request,
    common::{self, Counters, Injector, RateLimit},
};
use crate::{
    arch::{apic, handlers, percpu, smp as arch_smp},
    config::MAX_CPUS,
    mm::{AllocFlags, Frame, PAGE_SIZE, alloc_pages},
    sync::IrqMutex,
};

/// Backing store chunks: 2^8 frames = 1 MiB each.
pub const CHUNK_ORDER: u32 = 8;
const BLOCKS_PER_CHUNK: u64 = 1 << CHUNK_ORDER;
/// Device interrupt line of the completion IPI.
pub const LINE: usize = 2;

struct Queued {
    req: Request,
    /// Checksums at submit (writes that will reach the store).
    sums: Vec<u64>,
    /// Fails without touching the store.
    fail: Option<IoError>,
}

/// The most frames one request may carry here.
const SEGMENTS: usize = super::MAX_SEGMENTS;

/// The RAM device (module docs).
pub struct RamDisk {
    chunks: Vec<Frame>,
    /// The durable copy, chunk for chunk (module docs).
    durable: Vec<Frame>,
    /// Blocks written since the last flush, one bit each; changed only
    /// under `cache`.
    dirty: Vec<AtomicU64>,
    /// Serialises writes into the store with flushes and power cuts.
    cache: IrqMutex<()>,
    blocks: u64,
    /// Requests waiting for each completion CPU.
    queues: [IrqMutex<VecDeque<Queued>>; MAX_CPUS],
    stopped: AtomicBool,
    /// Plugs held now ([`BlockDevice::plug`] nests): the device stops at
    /// the first and starts again when the last is released.
    plugs: IrqMutex<usize>,
    counters: Counters,
    inject: Injector,
    stable_log: RateLimit,
}

static DEVICE: spin::Once<RamDisk> = spin::Once::new();

/// Sets up a RAM device of `mb` MiB (0: none). `Err` says why not.
pub fn init(mb: u64) -> Result<Option<&'static RamDisk>, alloc::string::String> {
    if mb == 0 {
        return Ok(None);
    }
    let nchunks = mb * (1 << 20) / (BLOCKS_PER_CHUNK * PAGE_SIZE as u64);
    let mut chunks = Vec::new();
    let mut durable = Vec::new();
    for _ in 0..nchunks {
        match (
            alloc_pages(CHUNK_ORDER, AllocFlags::ZERO),
            alloc_pages(CHUNK_ORDER, AllocFlags::ZERO),
        ) {
            (Some(f), Some(d)) => {
                chunks.push(f);
                durable.push(d);
            }
            _ => {
                return Err(alloc::format!(
                    "ramdisk={mb}: out of memory after {} MiB of backing store (and as much for its durable copy)",
                    chunks.len()
                ));
            }
        }
    }
    let blocks = nchunks * BLOCKS_PER_CHUNK;
    let dev = DEVICE.call_once(|| RamDisk {
        blocks,
        chunks,
        durable,
        dirty: (0..blocks.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect(),
        cache: IrqMutex::new(()),
        queues: [const { IrqMutex::new(VecDeque::new()) }; MAX_CPUS],
        stopped: AtomicBool::new(false),
        plugs: IrqMutex::new(0),
        counters: Counters::default(),
        inject: Injector::new(),
        stable_log: RateLimit::new(),
    });
    handlers::register_device_irq(LINE, irq);
    log::info!(
        "ramdisk: {} blocks of {BLOCK_SIZE} B ({mb} MiB, and as much for the durable copy behind its write cache) in {nchunks} chunks of {} KiB; completions by IPI (vector {:#x}) on the next CPU",
        dev.blocks,
        (BLOCKS_PER_CHUNK * PAGE_SIZE as u64) >> 10,
        apic::DEVICE_VECTOR_BASE + LINE as u8
    );
    Ok(Some(dev))
}

/// The device, if [`init`] made one.
pub fn device() -> Option<&'static RamDisk> {
    DEVICE.get()
}

impl RamDisk {
    /// Backing-store address of `block` (< blocks): the visible copy.
    fn store(&self, block: u64) -> *mut u8 {
        Self::at(&self.chunks, block)
    }

    /// The durable copy's address of `block` (< blocks).
    fn durable(&self, block: u64) -> *mut u8 {
        Self::at(&self.durable, block)
    }

    fn at(chunks: &[Frame], block: u64) -> *mut u8 {
        let chunk = &chunks[(block / BLOCKS_PER_CHUNK) as usize];
        // SAFETY: `block % BLOCKS_PER_CHUNK` frames into a chunk of that
        // many frames, mapped in the physical map.
        unsafe {
            chunk
                .virt()
                .add((block % BLOCKS_PER_CHUNK) as usize * PAGE_SIZE)
        }
    }

    /// Copies every dirty block from `from` to `to` and clears its mark:
    /// the flush (visible -> durable) and the power cut (durable ->
    /// visible). The caller holds `cache`.
    fn move_dirty(&self, to_durable: bool) -> u64 {
        let mut moved = 0;
        for (w, word) in self.dirty.iter().enumerate() {
            // Relaxed: every change of the bits is made under `cache`,
            // which the caller holds.
            let mut bits = word.swap(0, Ordering::Relaxed);
            while bits != 0 {
                let block = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let (from, to) = if to_durable {
                    (self.store(block), self.durable(block))
                } else {
                    (self.durable(block), self.store(block))
                };
                // SAFETY: two distinct blocks of the device's own chunks,
                // BLOCK_SIZE each; writers of either hold `cache` too.
                unsafe { core::ptr::copy_nonoverlapping(from, to, BLOCK_SIZE) };
                moved += 1;
            }
        }
        moved
    }

    /// A power cut: every write no flush made durable is lost (the
    /// visible copy goes back to the durable one). Returns how many blocks
    /// lost data. Requests in flight complete as usual afterwards (the
    /// device "came back").
    pub fn power_cut(&self) -> u64 {
        let _g = self.cache.lock();
        self.move_dirty(false)
    }

    /// What block `block` would hold after a power cut now; None past the
    /// end.
    pub fn durable_block(&self, block: u64, out: &mut [u8; BLOCK_SIZE]) -> Option<()> {
        if block >= self.blocks {
            return None;
        }
        let _g = self.cache.lock();
        let dirty = self.dirty[(block / 64) as usize].load(Ordering::Relaxed) & (1 << (block % 64));
        let from = if dirty != 0 {
            self.durable(block)
        } else {
            self.store(block)
        };
        // SAFETY: a block of the device's own chunks, copied under
        // `cache`, which every writer of it holds.
        unsafe { core::ptr::copy_nonoverlapping(from, out.as_mut_ptr(), BLOCK_SIZE) };
        Some(())
    }

    /// The CPU that completes requests submitted here.
    fn completion_cpu() -> usize {
        (percpu::cpu_index() + 1) % arch_smp::online()
    }

    /// Holds every request until [`RamDisk::release`] (the first plug).
    fn hold(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Releases held requests: raises the line of every CPU with a
    /// non-empty queue.
    fn release(&self) {
        // SeqCst store, then the queue checks under their locks: a
        // submitter that saw `stopped` (and so sent no IPI) pushed under the
        // same lock we read through.
        self.stopped.store(false, Ordering::SeqCst);
        for (cpu, q) in self.queues.iter().enumerate().take(arch_smp::online()) {
            if !q.lock().is_empty() {
                arch_smp::send_ipi(cpu, apic::DEVICE_VECTOR_BASE + LINE as u8);
            }
        }
    }

    /// The device's work for one request, in the completion context.
    fn process(&self, q: Queued) {
        if let Some(e) = q.fail {
            common::finish(&self.counters, q.req, Err(e));
            return;
        }
        match q.req.op {
            Op::Read => {
                for (i, f) in q.req.frames.as_slice().iter().enumerate() {
                    // SAFETY: both are BLOCK_SIZE bytes of mapped,
                    // allocated memory (the request holds the frame, the
                    // device its chunks), and they never overlap (a chunk
                    // is the device's own).
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            self.store(q.req.block + i as u64),
                            f.virt(),
                            BLOCK_SIZE,
                        )
                    };
                }
            }
            Op::Write => {
                let _g = self.cache.lock();
                for (i, f) in q.req.frames.as_slice().iter().enumerate() {
                    let block = q.req.block + i as u64;
                    // SAFETY: as for a read. The frame may be written
                    // concurrently by a writer that breaks the
                    // stable-page rule, as a DMA engine's source may; what
                    // we copy then is whatever the memory holds, and the
                    // check below notices.
                    unsafe {
                        core::ptr::copy_nonoverlapping(f.virt(), self.store(block), BLOCK_SIZE)
                    };
                    // Relaxed: under `cache`, as every change of the bits.
                    self.dirty[(block / 64) as usize]
                        .fetch_or(1 << (block % 64), Ordering::Relaxed);
                }
                drop(_g);
                common::check_stable_all("ram", &self.counters, &self.stable_log, &q.req, &q.sums);
            }
            Op::Flush => {
                let _g = self.cache.lock();
                self.move_dirty(true);
            }
        }
        common::finish(&self.counters, q.req, Ok(()));
    }
}

/// The completion IPI's handler: interrupts off, on the completion CPU.
fn irq() {
    let Some(dev) = DEVICE.get() else {
        return;
    };
    dev.counters.interrupts.fetch_add(1, Ordering::Relaxed);
    if dev.stopped.load(Ordering::SeqCst) {
        return;
    }
    let me = percpu::cpu_index();
    let batch = core::mem::take(&mut *dev.queues[me].lock());
    for q in batch {
        dev.process(q);
    }
}

impl BlockDevice for RamDisk {
    fn name(&self) -> &'static str {
        "ram"
    }

    fn blocks(&self) -> u64 {
        self.blocks
    }

    fn max_segments(&self) -> usize {
        SEGMENTS
    }

    fn submit(&self, req: Request) {
        let fail = if let Some(e) = common::malformed(&req, SEGMENTS) {
            Some(e)
        } else if common::out_of_range(&req, self.blocks) {
            Some(IoError::OutOfRange)
        } else if self.inject.take(req.op, req.block, req.blocks()) {
            Some(IoError::Injected)
        } else {
            None
        };
        let sums = if fail.is_none() {
            common::checksums(&req)
        } else {
            Vec::new()
        };
        // Interrupts off from choosing the CPU to queueing, so that the
        // choice is made on the CPU that queues (no migration in between).
        let g = percpu::CpuGuard::new();
        let cpu = Self::completion_cpu();
        let was_empty = {
            let mut q = self.queues[cpu].lock();
            let was_empty = q.is_empty();
            q.push_back(Queued { req, sums, fail });
            was_empty
        };
        if was_empty && !self.stopped.load(Ordering::SeqCst) {
            arch_smp::send_ipi(cpu, apic::DEVICE_VECTOR_BASE + LINE as u8);
        }
        drop(g);
    }

    fn inject(&self, f: Inject) {
        self.inject.arm(f);
    }

    fn disarm(&self, blocks: core::ops::Range<u64>) {
        self.inject.disarm(blocks);
    }

    /// Holds every request, failed ones too, until the last unplug.
    fn plug(&self) {
        let mut plugs = self.plugs.lock();
        *plugs += 1;
        if *plugs == 1 {
            self.hold();
        }
    }

    fn unplug(&self) {
        let mut plugs = self.plugs.lock();
        *plugs = plugs
            .checked_sub(1)
            .expect("ramdisk: unplug without a plug");
        if *plugs == 0 {
            self.release();
        }
    }

    fn stats(&self) -> DeviceStats {
        self.counters.snapshot()
    }
}
