//! virtio-blk over PCI, completed by its interrupt.
//!
//! Mental model: the device has one virtqueue of [`QUEUE_SIZE`]
//! descriptors. The driver uses virtio-drivers' PCI transport and
//! virtqueue, and frames the requests itself ([`Header`], the data
//! segments, a status byte: the virtio spec's block request, 5.2.6),
//! because virtio-drivers' `VirtIOBlk` has no non-blocking flush and takes
//! one contiguous buffer per request, where a request here carries one
//! frame per block (several adjacent blocks from frames anywhere in
//! memory) or none (`VIRTIO_BLK_T_FLUSH`, negotiated as
//! `VIRTIO_BLK_F_FLUSH`). A request occupies one descriptor when the
//! device offers indirect descriptors (QEMU does) and two plus its
//! segments otherwise. [`BlockDevice::submit`] therefore puts a request on
//! a software queue (`waiting`) and moves as many as fit onto the
//! virtqueue; the rest follow from the interrupt handler as the device
//! hands slots back. Nobody polls:
//! the submitter returns at once, and the device's INTx line, routed by the
//! I/O APIC to one CPU, runs [`irq`], which
//!
//! 1. reads the ISR register (`ack_interrupt`), which lowers the line;
//! 2. takes every finished token off the used ring (`pop_used` with the
//!    very buffers it was added with) and reads its status byte, and for
//!    writes compares each frame's checksum with the one taken at submit
//!    (the device has consumed the data by the time it reports it used);
//! 3. feeds waiting requests into the freed descriptors;
//! 4. drops the driver lock, then runs the completions; the EOI follows in
//!    the interrupt entry (`arch::interrupts::device`).
//!
//! Requests that never reach the device (an injected failure, a frame
//! that is not one page) are completed from the same kind of context:
//! they go on `failed` and the driver raises its second line, a fixed
//! IPI to the interrupt CPU, whose handler [`soft_irq`] completes them. An out-of-range request does go to
//! the device, which rejects it (QEMU checks the sector against the
//! capacity and answers IOERR); the driver reports `OutOfRange` because it
//! knows the block is past the end.
//!
//! [`BlockDevice::plug`] stops the feeding: submitted requests wait in
//! `waiting` (in flight for their submitters) until `unplug` feeds them.
//!
//! Locking: the whole driver state is one [`IrqMutex`]. The interrupt CPU
//! takes it in the handler with interrupts off, and every submitter takes
//! it with interrupts off too, so a submitter on the interrupt CPU cannot
//! be interrupted by the handler while it holds the lock. Completions run
//! after the lock is dropped: they take page wait-queue locks and may
//! submit again.

use alloc::{boxed::Box, collections::VecDeque, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use virtio_drivers::{
    queue::VirtQueue,
    transport::{
        DeviceType, InterruptStatus, Transport,
        pci::{PciTransport, bus::BarInfo, virtio_device_type},
    },
};

use super::{
    BLOCK_SIZE, BlockDevice, DeviceStats, Inject, IoError, Op, Request,
    common::{self, Counters, Injector, RateLimit},
    hal::KernelHal,
};
use crate::{
    arch::{
        apic, handlers,
        ioapic::{self, Route},
        paging,
        pci::{self, PortCam},
        percpu, smp as arch_smp,
    },
    mm::PAGE_SIZE,
    sync::IrqMutex,
};

/// Descriptors in the virtqueue; tokens are descriptor indices below it.
/// With indirect descriptors a request takes one, however many segments
/// it has (up to `QUEUE_SIZE - 2`, virtio-drivers' limit for one chain).
pub const QUEUE_SIZE: usize = 64;
/// The virtqueue's index.
const QUEUE: u16 = 0;
/// Bytes per sector, the unit of the request header's `sector`.
const SECTOR_SIZE: usize = 512;
/// Sectors per block.
const SECTORS_PER_BLOCK: u64 = (BLOCK_SIZE / SECTOR_SIZE) as u64;

bitflags::bitflags! {
    /// The virtio-blk and transport feature bits this driver knows
    /// (virtio 1.2, 5.2.3 and 6).
    #[derive(Copy, Clone, Debug, Default, Eq, PartialEq)]
    struct Features: u64 {
        /// `seg_max` in the configuration says how many data segments a
        /// request may carry.
        const SEG_MAX = 1 << 2;
        const RO = 1 << 5;
        /// Flush command (`VIRTIO_BLK_F_FLUSH`): the device has a volatile
        /// write cache and makes it durable on request.
        const FLUSH = 1 << 9;
        const RING_INDIRECT_DESC = 1 << 28;
        const RING_EVENT_IDX = 1 << 29;
        const VERSION_1 = 1 << 32;
    }
}

/// What the driver accepts of what the device offers.
const SUPPORTED: Features = Features::SEG_MAX
    .union(Features::RO)
    .union(Features::FLUSH)
    .union(Features::RING_INDIRECT_DESC)
    .union(Features::RING_EVENT_IDX)
    .union(Features::VERSION_1);

/// Request types (`VIRTIO_BLK_T_*`).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
/// Status byte value of a success (`VIRTIO_BLK_S_OK`).
const S_OK: u8 = 0;

/// The device-readable head of every request (`struct virtio_blk_req`'s
/// first three fields, little-endian as x86).
#[repr(C)]
struct Header {
    kind: u32,
    reserved: u32,
    sector: u64,
}

impl Header {
    fn bytes(&self) -> &[u8] {
        // SAFETY: a `repr(C)` struct of integers without padding (4 + 4 +
        // 8 bytes), fully initialised; read as bytes for as long as `self`
        // is borrowed.
        unsafe { core::slice::from_raw_parts((self as *const Header).cast::<u8>(), 16) }
    }
}

/// The transport and its one virtqueue, set up by [`Queue::new`].
struct Queue {
    transport: PciTransport,
    vq: VirtQueue<KernelHal, QUEUE_SIZE>,
    features: Features,
    /// Capacity in sectors.
    capacity: u64,
    /// Data segments one request may carry.
    segments: usize,
}

impl Queue {
    /// virtio initialisation (virtio 1.2, 3.1.1): negotiate features, read
    /// the configuration, set up the virtqueue, DRIVER_OK.
    fn new(mut transport: PciTransport) -> Result<Queue, virtio_drivers::Error> {
        let features = transport.begin_init(SUPPORTED);
        let capacity = transport.read_consistent(|| {
            Ok(u64::from(transport.read_config_space::<u32>(0)?)
                | (u64::from(transport.read_config_space::<u32>(4)?) << 32))
        })?;
        let seg_max = if features.contains(Features::SEG_MAX) {
            transport.read_config_space::<u32>(12)? as usize
        } else {
            1
        };
        let vq = VirtQueue::new(
            &mut transport,
            QUEUE,
            features.contains(Features::RING_INDIRECT_DESC),
            features.contains(Features::RING_EVENT_IDX),
        )?;
        transport.finish_init();
        Ok(Queue {
            transport,
            vq,
            features,
            capacity,
            segments: seg_max.clamp(1, (QUEUE_SIZE - 2).min(super::MAX_SEGMENTS)),
        })
    }

    /// The buffers of `q` as the virtqueue takes them: device-readable
    /// (header, and a write's frames) and device-writable (a read's
    /// frames, and the status byte). Addresses and lengths only: neither
    /// the driver nor anyone else reads the frames through these slices
    /// while the device owns them.
    fn buffers(q: &mut Queued) -> (Vec<&[u8]>, Vec<&mut [u8]>) {
        let op = q.req.op;
        let data = q.req.frames.as_slice().iter().map(|f| {
            // SAFETY: the frame is held by the request and mapped for
            // BLOCK_SIZE bytes (see above for who reads it).
            unsafe { core::slice::from_raw_parts_mut(f.virt(), BLOCK_SIZE) }
        });
        let mut inputs: Vec<&[u8]> = Vec::with_capacity(1 + q.req.frames.len());
        let mut outputs: Vec<&mut [u8]> = Vec::with_capacity(1 + q.req.frames.len());
        inputs.push(q.hdr.bytes());
        match op {
            Op::Read => outputs.extend(data),
            Op::Write => inputs.extend(data.map(|d| &*d)),
            Op::Flush => {}
        }
        outputs.push(core::slice::from_mut(&mut *q.status));
        (inputs, outputs)
    }

    /// Offers request `q` to the device; returns its token.
    ///
    /// # Safety
    ///
    /// `q`'s header, status and frames stay where they are, untouched,
    /// until [`Queue::complete`] with the token returns.
    unsafe fn add(&mut self, q: &mut Queued) -> Result<u16, virtio_drivers::Error> {
        let (inputs, mut outputs) = Self::buffers(q);
        // SAFETY: the caller keeps every buffer in place and untouched
        // until `complete`.
        let token = unsafe { self.vq.add(&inputs, &mut outputs)? };
        if self.vq.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(token)
    }

    /// Takes the finished request `token` off the used ring; returns
    /// whether the device reported success.
    ///
    /// # Safety
    ///
    /// `q` is the request [`Queue::add`] returned `token` for.
    unsafe fn complete(
        &mut self,
        token: u16,
        q: &mut Queued,
    ) -> Result<bool, virtio_drivers::Error> {
        {
            let (inputs, mut outputs) = Self::buffers(q);
            // SAFETY: the buffers `add` passed with this token.
            unsafe { self.vq.pop_used(token, &inputs, &mut outputs)? };
        }
        Ok(*q.status == S_OK)
    }
}
/// Device interrupt line of the INTx interrupt (through the I/O APIC).
pub const IRQ_LINE: usize = 0;
/// Device interrupt line of the driver's own completion IPI.
pub const SOFT_LINE: usize = 1;
/// The CPU that takes the device's interrupts: the boot CPU, always
/// online.
pub const IRQ_CPU: usize = 0;

/// A request with the memory the device reads and writes besides its
/// frames: the header and status live on the heap (physical map, see
/// `hal`), so they stay put while the request moves between queues.
struct Queued {
    req: Request,
    hdr: Box<Header>,
    status: Box<u8>,
    /// The frames' checksums at submit (writes).
    sums: Vec<u64>,
}

struct Inner {
    blk: Queue,
    /// Submitted, not yet on the virtqueue (FIFO).
    waiting: VecDeque<Queued>,
    /// On the virtqueue, by token.
    inflight: [Option<Queued>; QUEUE_SIZE],
    nr_inflight: usize,
    /// Ended before reaching the device (refused, or a flush on a device
    /// without a write cache), to complete from `soft_irq`.
    failed: VecDeque<(Request, Result<(), IoError>)>,
    /// [`BlockDevice::plug`]: nothing goes from `waiting` to the device.
    /// Plugs held now ([`BlockDevice::plug`] nests).
    plugged: usize,
}

/// The virtio-blk device (module docs).
pub struct VirtioBlk {
    inner: IrqMutex<Inner>,
    blocks: u64,
    /// The device has a volatile write cache (`VIRTIO_BLK_F_FLUSH`).
    flush: bool,
    /// Data segments (blocks) one request may carry.
    segments: usize,
    counters: Counters,
    inject: Injector,
    stable_log: RateLimit,
    route: Route,
    /// Interrupts whose ISR read found no queue interrupt (a line shared
    /// with another device, or a wrongly programmed polarity).
    spurious: AtomicU64,
    /// Most requests on the virtqueue at once.
    max_inflight: AtomicU64,
    /// Most requests waiting in the software queue at once.
    max_waiting: AtomicU64,
    /// Whether a soft completion IPI is on its way (avoids one per request).
    soft_raised: AtomicBool,
    /// The first [`IRR_SAMPLES`] interrupts read their redirection entry
    /// before the EOI: how many did, and how many found remote IRR set
    /// (the I/O APIC treats the line as level triggered and waits for our
    /// EOI).
    irr_sampled: AtomicU64,
    irr_set: AtomicU64,
}

/// Interrupts whose redirection entry the handler samples.
const IRR_SAMPLES: u64 = 8;

/// Extra counters of the virtio device, for tests and reports.
#[derive(Debug, Clone, Copy)]
pub struct VirtioExtra {
    pub spurious: u64,
    pub max_inflight: u64,
    pub max_waiting: u64,
    pub route: Route,
    /// Interrupts that sampled their redirection entry before the EOI,
    /// and of those, how many found remote IRR set.
    pub irr_sampled: u64,
    pub irr_set: u64,
}

static DEVICE: spin::Once<VirtioBlk> = spin::Once::new();

/// Finds the first virtio-blk function among `functions`, brings it up,
/// routes its interrupt, and registers it. `Err` says why there is none.
pub fn probe(functions: &[pci::Function]) -> Result<&'static VirtioBlk, alloc::string::String> {
    use alloc::format;
    let f = functions
        .iter()
        .find(|f| virtio_device_type(&f.info) == Some(DeviceType::Block))
        .ok_or_else(|| {
            alloc::string::String::from("no virtio-blk PCI function (booted without a disk?)")
        })?;
    if !(1..=4).contains(&f.irq_pin) || f.irq_line == 0xff {
        return Err(format!(
            "{f}: no INTx routed (pin {}, line {:#x})",
            f.irq_pin, f.irq_line
        ));
    }
    let at = f.at;
    let mut root = pci::root();
    // Its memory BARs must be reachable through the physical map (the
    // firmware may place a 64-bit BAR above it on a large machine): the
    // transport maps them with `KernelHal::mmio_phys_to_virt`, which
    // cannot fail.
    let bars = root
        .bars(at)
        .map_err(|e| format!("{f}: reading its BARs: {e}"))?;
    for (i, bar) in bars.iter().enumerate() {
        if let Some(BarInfo::Memory { address, size, .. }) = bar
            && *size > 0
            && !(*address..address + size)
                .step_by(PAGE_SIZE)
                .all(|p| paging::is_mapped(paging::phys_to_virt(p)))
        {
            return Err(format!(
                "{f}: BAR{i} {address:#x}+{size:#x} is outside the physical map"
            ));
        }
    }
    // Decode its BARs, let it master the bus (DMA), and let it assert
    // INTx (we do not enable MSI-X).
    let cmd = pci::read(at.bus, at.device, at.function, pci::COMMAND);
    let cmd = (cmd & 0xffff & !pci::COMMAND_INTX_DISABLE)
        | pci::COMMAND_IO
        | pci::COMMAND_MEMORY
        | pci::COMMAND_BUS_MASTER;
    pci::write(at.bus, at.device, at.function, pci::COMMAND, cmd);
    let transport = PciTransport::new::<KernelHal, PortCam>(&mut root, at)
        .map_err(|e| format!("{f}: virtio PCI transport: {e}"))?;
    let blk = Queue::new(transport).map_err(|e| format!("{f}: virtio-blk init: {e}"))?;
    if blk.features.contains(Features::RO) {
        return Err(format!("{f}: the disk is read-only"));
    }
    let blocks = blk.capacity / SECTORS_PER_BLOCK;
    let (flush, segments) = (blk.features.contains(Features::FLUSH), blk.segments);
    let route = ioapic::pci_route(f.irq_line);
    let dev = DEVICE.call_once(|| VirtioBlk {
        inner: IrqMutex::new(Inner {
            blk,
            waiting: VecDeque::new(),
            inflight: [const { None }; QUEUE_SIZE],
            nr_inflight: 0,
            failed: VecDeque::new(),
            plugged: 0,
        }),
        blocks,
        flush,
        segments,
        counters: Counters::default(),
        inject: Injector::new(),
        stable_log: RateLimit::new(),
        route,
        spurious: AtomicU64::new(0),
        max_inflight: AtomicU64::new(0),
        max_waiting: AtomicU64::new(0),
        soft_raised: AtomicBool::new(false),
        irr_sampled: AtomicU64::new(0),
        irr_set: AtomicU64::new(0),
    });
    // Handlers first, then the source (see `handlers`: the Release of the
    // registration is ordered before the I/O APIC write that lets the
    // interrupt happen).
    handlers::register_device_irq(IRQ_LINE, irq);
    handlers::register_device_irq(SOFT_LINE, soft_irq);
    let dest = percpu::cpu(IRQ_CPU).apic_id.load(Ordering::Relaxed);
    ioapic::program(&route, apic::DEVICE_VECTOR_BASE + IRQ_LINE as u8, dest)
        .map_err(|e| format!("{f}: routing {route}: {e}"))?;
    log::info!(
        "virtio-blk: {f}: {blocks} blocks of {BLOCK_SIZE} B ({} MiB), {}, up to {segments} blocks per request; INTx {route} -> vector {:#x} on cpu{IRQ_CPU}",
        (blocks * BLOCK_SIZE as u64) >> 20,
        if flush {
            "volatile write cache with flush"
        } else {
            "no flush command (writes are durable when they complete)"
        },
        apic::DEVICE_VECTOR_BASE + IRQ_LINE as u8
    );
    Ok(dev)
}

/// The device, if [`probe`] found one.
pub fn device() -> Option<&'static VirtioBlk> {
    DEVICE.get()
}

impl VirtioBlk {
    pub fn extra(&self) -> VirtioExtra {
        VirtioExtra {
            spurious: self.spurious.load(Ordering::Relaxed),
            max_inflight: self.max_inflight.load(Ordering::Relaxed),
            max_waiting: self.max_waiting.load(Ordering::Relaxed),
            route: self.route,
            irr_sampled: self.irr_sampled.load(Ordering::Relaxed),
            irr_set: self.irr_set.load(Ordering::Relaxed),
        }
    }

    /// Moves waiting requests onto the virtqueue while descriptors are
    /// free. A request the driver cannot even queue goes to `failed`;
    /// returns whether it put one there.
    fn feed(&self, inner: &mut Inner) -> bool {
        let mut failed = false;
        if inner.plugged > 0 {
            return false;
        }
        while let Some(mut q) = inner.waiting.pop_front() {
            // The sector of a block past the end saturates: the device
            // rejects it all the same.
            *q.hdr = Header {
                kind: match q.req.op {
                    Op::Read => T_IN,
                    Op::Write => T_OUT,
                    Op::Flush => T_FLUSH,
                },
                reserved: 0,
                sector: if q.req.op == Op::Flush {
                    0
                } else {
                    q.req.block.saturating_mul(SECTORS_PER_BLOCK)
                },
            };
            // SAFETY: the frames are held by `q.req`; the header, status
            // and frames stay where they are (heap boxes, the frames) and
            // untouched until `reap` passes the same `Queued` to
            // `complete` with this token.
            let r = unsafe { inner.blk.add(&mut q) };
            match r {
                Ok(token) => {
                    let slot = &mut inner.inflight[token as usize];
                    assert!(slot.is_none(), "virtio-blk: token {token} reused");
                    *slot = Some(q);
                    inner.nr_inflight += 1;
                    self.max_inflight
                        .fetch_max(inner.nr_inflight as u64, Ordering::Relaxed);
                }
                Err(virtio_drivers::Error::QueueFull) => {
                    inner.waiting.push_front(q);
                    break;
                }
                Err(e) => {
                    log::error!("virtio-blk: could not queue block {}: {e}", q.req.block);
                    inner.failed.push_back((q.req, Err(IoError::Device)));
                    failed = true;
                }
            }
        }
        failed
    }

    /// Takes every finished request off the used ring into `done`.
    fn reap(&self, inner: &mut Inner, done: &mut Vec<(Request, Result<(), IoError>)>) {
        while let Some(token) = inner.blk.vq.peek_used() {
            let Some(mut q) = inner
                .inflight
                .get_mut(token as usize)
                .and_then(Option::take)
            else {
                panic!("virtio-blk: the device used token {token}, which is not in flight");
            };
            inner.nr_inflight -= 1;
            // SAFETY: `q` holds the very header, status and frames that
            // `feed` passed with this token.
            let r = unsafe { inner.blk.complete(token, &mut q) };
            let result = match r {
                Ok(true) => {
                    common::check_stable_all(
                        "virtio-blk",
                        &self.counters,
                        &self.stable_log,
                        &q.req,
                        &q.sums,
                    );
                    Ok(())
                }
                _ if common::out_of_range(&q.req, self.blocks) => Err(IoError::OutOfRange),
                Ok(false) => {
                    log::warn!(
                        "virtio-blk: {:?} of block {} (+{}): device error (status {})",
                        q.req.op,
                        q.req.block,
                        q.req.blocks(),
                        *q.status
                    );
                    Err(IoError::Device)
                }
                Err(e) => {
                    log::warn!("virtio-blk: block {}: virtqueue error {e}", q.req.block);
                    Err(IoError::Device)
                }
            };
            done.push((q.req, result));
        }
    }

    /// Sends the soft completion IPI unless one is already on its way.
    fn raise_soft(&self) {
        // AcqRel: pairs with the swap in `soft_irq`; whoever sees `false`
        // sends, and the handler clears it before it looks at `failed`.
        if !self.soft_raised.swap(true, Ordering::AcqRel) {
            arch_smp::send_ipi(IRQ_CPU, apic::DEVICE_VECTOR_BASE + SOFT_LINE as u8);
        }
    }

    fn complete_all(&self, done: Vec<(Request, Result<(), IoError>)>) {
        for (req, result) in done {
            common::finish(&self.counters, req, result);
        }
    }
}

/// INTx handler (module docs). Interrupts are off; the EOI follows.
fn irq() {
    let Some(dev) = DEVICE.get() else {
        // Registered only after DEVICE is set.
        return;
    };
    // Evidence of the level handshake (see `ioapic`): before our EOI, the
    // entry of a level-triggered line has remote IRR set.
    if dev.irr_sampled.load(Ordering::Relaxed) < IRR_SAMPLES
        && let Ok(e) = ioapic::entry(dev.route.gsi)
    {
        dev.irr_sampled.fetch_add(1, Ordering::Relaxed);
        if e & ioapic::rte::REMOTE_IRR != 0 {
            dev.irr_set.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut done = Vec::new();
    let failed = {
        let mut inner = dev.inner.lock();
        // Reading ISR lowers the line: before the EOI, or the I/O APIC
        // delivers it again at once (level triggered).
        let isr = inner.blk.transport.ack_interrupt();
        if isr.contains(InterruptStatus::QUEUE_INTERRUPT) {
            dev.counters.interrupts.fetch_add(1, Ordering::Relaxed);
        } else {
            dev.spurious.fetch_add(1, Ordering::Relaxed);
        }
        dev.reap(&mut inner, &mut done);
        dev.feed(&mut inner)
    };
    if failed {
        dev.raise_soft();
    }
    dev.complete_all(done);
}

/// The driver's own completion IPI: completes the requests that failed
/// before reaching the device.
fn soft_irq() {
    let Some(dev) = DEVICE.get() else {
        return;
    };
    // Cleared before taking the list: a request failed after this point
    // raises a new IPI (pairs with the swap in `raise_soft`).
    dev.soft_raised.store(false, Ordering::Release);
    let failed = core::mem::take(&mut dev.inner.lock().failed);
    for (req, r) in failed {
        common::finish(&dev.counters, req, r);
    }
}

impl BlockDevice for VirtioBlk {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn blocks(&self) -> u64 {
        self.blocks
    }

    fn max_segments(&self) -> usize {
        self.segments
    }

    fn submit(&self, req: Request) {
        let early = common::malformed(&req, self.segments)
            .or_else(|| {
                self.inject
                    .take(req.op, req.block, req.blocks())
                    .then_some(IoError::Injected)
            })
            .map(Err)
            // A device without a write cache: every completed write is
            // already durable, and a flush has nothing to do.
            .or((req.op == Op::Flush && !self.flush).then_some(Ok(())));
        if let Some(r) = early {
            self.inner.lock().failed.push_back((req, r));
            self.raise_soft();
            return;
        }
        let sums = common::checksums(&req);
        let q = Queued {
            req,
            hdr: Box::new(Header {
                kind: 0,
                reserved: 0,
                sector: 0,
            }),
            status: Box::new(0xff),
            sums,
        };
        let failed = {
            let mut inner = self.inner.lock();
            inner.waiting.push_back(q);
            self.max_waiting
                .fetch_max(inner.waiting.len() as u64, Ordering::Relaxed);
            self.feed(&mut inner)
        };
        if failed {
            self.raise_soft();
        }
    }

    fn inject(&self, f: Inject) {
        self.inject.arm(f);
    }

    fn disarm(&self, blocks: core::ops::Range<u64>) {
        self.inject.disarm(blocks);
    }

    fn plug(&self) {
        self.inner.lock().plugged += 1;
    }

    fn unplug(&self) {
        let failed = {
            let mut inner = self.inner.lock();
            inner.plugged = inner
                .plugged
                .checked_sub(1)
                .expect("virtio-blk: unplug without a plug");
            self.feed(&mut inner)
        };
        if failed {
            self.raise_soft();
        }
    }

    fn stats(&self) -> DeviceStats {
        self.counters.snapshot()
    }
}
