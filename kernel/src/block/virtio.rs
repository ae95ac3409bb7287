//! virtio-blk over PCI, completed by its interrupt.
//!
//! Mental model: the device has one virtqueue of 16 descriptors
//! (virtio-drivers' `VirtIOBlk`). A request occupies one descriptor when
//! the device offers indirect descriptors (QEMU does) and three otherwise
//! (header, data, status), so at most 16, or 5, are on the device at once.
//! [`BlockDevice::submit`] therefore puts a request on a software queue
//! (`waiting`) and moves as many as fit onto the virtqueue; the rest follow
//! from the interrupt handler as the device hands slots back. Nobody polls:
//! the submitter returns at once, and the device's INTx line, routed by the
//! I/O APIC to one CPU, runs [`irq`], which
//!
//! 1. reads the ISR register (`ack_interrupt`), which lowers the line;
//! 2. takes every finished token off the used ring and completes it with
//!    virtio-drivers (`complete_read_blocks`/`complete_write_blocks`), and
//!    for writes compares the frame's checksum with the one taken at submit
//!    (the device has consumed the data by the time it reports it used);
//! 3. feeds waiting requests into the freed descriptors;
//! 4. drops the driver lock, then runs the completions; the EOI follows in
//!    the interrupt entry (`arch::x86_64::interrupts::device`).
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
    device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk},
    transport::{
        DeviceType, InterruptStatus,
        pci::{PciTransport, bus::BarInfo, virtio_device_type},
    },
};

use super::{
    BLOCK_SIZE, BlockDevice, DeviceStats, Inject, IoError, Op, Request,
    common::{self, Counters, Injector, RateLimit},
    hal::KernelHal,
};
use crate::{
    arch::x86_64::{
        apic, handlers,
        ioapic::{self, Route},
        paging,
        pci::{self, PortCam},
        percpu, smp as arch_smp,
    },
    mm::PAGE_SIZE,
    sync::IrqMutex,
};

/// Descriptors in virtio-drivers' block virtqueue (`VirtIOBlk`'s
/// `QUEUE_SIZE`); tokens are descriptor indices below it.
const QUEUE_SIZE: usize = 16;
/// Sectors per block.
const SECTORS_PER_BLOCK: u64 = (BLOCK_SIZE / SECTOR_SIZE) as u64;
/// Device interrupt line of the INTx interrupt (through the I/O APIC).
pub const IRQ_LINE: usize = 0;
/// Device interrupt line of the driver's own completion IPI.
pub const SOFT_LINE: usize = 1;
/// The CPU that takes the device's interrupts: the boot CPU, always
/// online.
pub const IRQ_CPU: usize = 0;

/// A request with the memory virtio-drivers borrows for it: the header and
/// status live on the heap (physical map, see `hal`), so they stay put
/// while the request moves between queues.
struct Queued {
    req: Request,
    hdr: Box<BlkReq>,
    resp: Box<BlkResp>,
    /// The frame's checksum at submit (writes).
    sum: Option<u64>,
}

struct Inner {
    blk: VirtIOBlk<KernelHal, PciTransport>,
    /// Submitted, not yet on the virtqueue (FIFO).
    waiting: VecDeque<Queued>,
    /// On the virtqueue, by token.
    inflight: [Option<Queued>; QUEUE_SIZE],
    nr_inflight: usize,
    /// Failed before reaching the device, to complete from `soft_irq`.
    failed: VecDeque<(Request, IoError)>,
    /// [`BlockDevice::plug`]: nothing goes from `waiting` to the device.
    plugged: bool,
}

/// The virtio-blk device (module docs).
pub struct VirtioBlk {
    inner: IrqMutex<Inner>,
    blocks: u64,
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
    let blk = VirtIOBlk::<KernelHal, _>::new(transport)
        .map_err(|e| format!("{f}: virtio-blk init: {e}"))?;
    let blocks = blk.capacity() / SECTORS_PER_BLOCK;
    let route = ioapic::pci_route(f.irq_line);
    let dev = DEVICE.call_once(|| VirtioBlk {
        inner: IrqMutex::new(Inner {
            blk,
            waiting: VecDeque::new(),
            inflight: [const { None }; QUEUE_SIZE],
            nr_inflight: 0,
            failed: VecDeque::new(),
            plugged: false,
        }),
        blocks,
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
        "virtio-blk: {f}: {blocks} blocks of {BLOCK_SIZE} B ({} MiB); INTx {route} -> vector {:#x} on cpu{IRQ_CPU}",
        (blocks * BLOCK_SIZE as u64) >> 20,
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
        if inner.plugged {
            return false;
        }
        while let Some(mut q) = inner.waiting.pop_front() {
            // The sector of a block past the end saturates: the device
            // rejects it all the same.
            let sector = q.req.block.saturating_mul(SECTORS_PER_BLOCK);
            let sector = usize::try_from(sector).unwrap_or(usize::MAX);
            // SAFETY: the frame is held by `q.req` and mapped for
            // BLOCK_SIZE bytes; the slice only carries its address and
            // length to the device (the driver never reads it through the
            // slice while the device owns it). The header, status and
            // frame stay where they are (heap boxes, the frame) until
            // `reap` passes the same three to `complete_*`.
            let r = unsafe {
                let buf = core::slice::from_raw_parts_mut(q.req.frame.virt(), BLOCK_SIZE);
                match q.req.op {
                    Op::Read => inner
                        .blk
                        .read_blocks_nb(sector, &mut q.hdr, buf, &mut q.resp),
                    Op::Write => inner
                        .blk
                        .write_blocks_nb(sector, &mut q.hdr, buf, &mut q.resp),
                }
            };
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
                    inner.failed.push_back((q.req, IoError::Device));
                    failed = true;
                }
            }
        }
        failed
    }

    /// Takes every finished request off the used ring into `done`.
    fn reap(&self, inner: &mut Inner, done: &mut Vec<(Request, Result<(), IoError>)>) {
        while let Some(token) = inner.blk.peek_used() {
            let Some(mut q) = inner
                .inflight
                .get_mut(token as usize)
                .and_then(Option::take)
            else {
                panic!("virtio-blk: the device used token {token}, which is not in flight");
            };
            inner.nr_inflight -= 1;
            // SAFETY: `q` holds the very header, status and frame that
            // `feed` passed with this token.
            let r = unsafe {
                let buf = core::slice::from_raw_parts_mut(q.req.frame.virt(), BLOCK_SIZE);
                match q.req.op {
                    Op::Read => inner
                        .blk
                        .complete_read_blocks(token, &q.hdr, buf, &mut q.resp),
                    Op::Write => inner
                        .blk
                        .complete_write_blocks(token, &q.hdr, buf, &mut q.resp),
                }
            };
            let result = match r {
                Ok(()) => {
                    if let Some(sum) = q.sum {
                        common::check_stable(
                            "virtio-blk",
                            &self.counters,
                            &self.stable_log,
                            q.req.block,
                            &q.req.frame,
                            sum,
                        );
                    }
                    Ok(())
                }
                Err(_) if q.req.block >= self.blocks => Err(IoError::OutOfRange),
                Err(e) => {
                    log::warn!("virtio-blk: block {}: device error {e}", q.req.block);
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
        let isr = inner.blk.ack_interrupt();
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
    for (req, e) in failed {
        common::finish(&dev.counters, req, Err(e));
    }
}

impl BlockDevice for VirtioBlk {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn blocks(&self) -> u64 {
        self.blocks
    }

    fn submit(&self, req: Request) {
        let refused = common::malformed(&req).or_else(|| {
            self.inject
                .take(req.op, req.block)
                .then_some(IoError::Injected)
        });
        if let Some(e) = refused {
            self.inner.lock().failed.push_back((req, e));
            self.raise_soft();
            return;
        }
        let sum = (req.op == Op::Write).then(|| common::checksum(&req.frame));
        let q = Queued {
            req,
            hdr: Box::new(BlkReq::default()),
            resp: Box::new(BlkResp::default()),
            sum,
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
        self.inner.lock().plugged = true;
    }

    fn unplug(&self) {
        let failed = {
            let mut inner = self.inner.lock();
            inner.plugged = false;
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
