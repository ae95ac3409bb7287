//! Block devices: the interface the page cache submits I/O through.
//!
//! Mental model: a device is an array of 4 KiB blocks with a volatile
//! write cache. A [`Request`] names an operation, a first block and the
//! frames of memory to read into or write from (one order-0 frame per
//! block, adjacent blocks, up to [`BlockDevice::max_segments`]), and a
//! completion. [`BlockDevice::submit`] queues it and returns at once; the
//! device later calls the completion exactly once, from its completion
//! context (the device interrupt for virtio-blk, another CPU's interrupt
//! for the RAM device), with the result. A completion therefore must not
//! sleep: it may end writeback, end a read, wake waiters, drop references.
//!
//! A completed write is visible to every later read, but *durable* (it
//! survives a power cut) only once a [`Op::Flush`] issued after its
//! completion has completed: Linux's `REQ_PREFLUSH`, the promise `fsync`
//! makes. virtio-blk sends the flush to the device (`VIRTIO_BLK_T_FLUSH`;
//! QEMU writes its cache back to the image file); the RAM device models
//! the cache itself (a second, durable copy of every block, brought up to
//! date by a flush, and [`ram::RamDisk::power_cut`] to lose what was not).
//!
//! The device holds the request's [`Frame`] references while it uses the
//! memory, so the memory under I/O cannot be freed and reused (DMA into a
//! freed page), and drops it just *before* it runs the completion: like
//! Linux's bio, the completion holds no reference of the device's. (The
//! end of writeback therefore depends on `pagesync`'s temporary reference,
//! 073861ed77b6, as in Linux.) While a write is in flight the device checks
//! that the frame does not change (it compares a checksum taken at submit
//! with one taken when the data is consumed): a change is a *stable-page
//! violation*, counted in [`DeviceStats`], the check that catches a
//! writer that did not wait for writeback.
//!
//! Errors never lose a request: out of range, a request the device cannot
//! take (its frame is not one page), an injected failure or a device
//! error all complete the request with an [`IoError`], from the completion
//! context; none panics, and none moves a byte.
//!
//! The devices ([`init`] sets them up at boot, after SMP bring-up):
//! * [`virtio`]: virtio-blk over PCI, completed from its INTx interrupt
//!   routed through the I/O APIC (the disk image `cargo xtask run`
//!   attaches);
//! * [`ram`]: frames from the allocator, completed from a device IPI on
//!   another CPU (`ramdisk=` MiB).
//!
//! [`hal`] gives virtio-drivers its DMA memory and addresses; [`common`]
//! holds the counters, failure injection and the stable-page check both
//! devices use.

pub mod common;
pub mod hal;
pub mod ram;
pub mod virtio;

use alloc::{boxed::Box, string::String, vec::Vec};
use core::ops::Range;

use crate::{arch::pci, mm::Frame};

/// A range of another device's blocks as a device of its own (a
/// partition): block `b` of the partition is block `first + b` of `dev`.
/// Requests past its end are sent to a block past the end of `dev`, so
/// they complete with [`IoError::OutOfRange`] from `dev`'s completion
/// context like any other failure.
pub struct Partition {
    dev: &'static dyn BlockDevice,
    first: u64,
    blocks: u64,
}

impl Partition {
    /// Blocks `first..first + blocks` of `dev`, or None if they do not fit.
    pub fn new(dev: &'static dyn BlockDevice, first: u64, blocks: u64) -> Option<Partition> {
        let end = first.checked_add(blocks)?;
        (blocks > 0 && end <= dev.blocks()).then_some(Partition { dev, first, blocks })
    }
}

impl BlockDevice for Partition {
    fn name(&self) -> &'static str {
        self.dev.name()
    }
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn max_segments(&self) -> usize {
        self.dev.max_segments()
    }
    fn submit(&self, mut req: Request) {
        if req.op != Op::Flush {
            req.block = if req.block.saturating_add(req.blocks()) <= self.blocks {
                self.first + req.block
            } else {
                self.dev.blocks()
            };
        }
        self.dev.submit(req);
    }
    fn inject(&self, mut f: Inject) {
        f.block = f.block.map(|b| b + self.first);
        self.dev.inject(f);
    }
    fn plug(&self) {
        self.dev.plug();
    }
    fn unplug(&self) {
        self.dev.unplug();
    }
    fn disarm(&self, blocks: Range<u64>) {
        let end = blocks.end.min(self.blocks);
        self.dev
            .disarm(self.first + blocks.start.min(end)..self.first + end);
    }
    fn stats(&self) -> DeviceStats {
        self.dev.stats()
    }
}

/// Bytes in a block: one page.
pub const BLOCK_SIZE: usize = 4096;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Device blocks -> frames.
    Read,
    /// Frames -> device blocks.
    Write,
    /// Makes every write completed before it durable (no frames; the
    /// block number is ignored).
    Flush,
}

/// The most frames (blocks) one request may carry on any device here;
/// a device may take fewer ([`BlockDevice::max_segments`]).
pub const MAX_SEGMENTS: usize = 32;

/// The memory of a request: one order-0 frame per block, in block order
/// (none for a flush). One frame needs no heap allocation.
pub enum Frames {
    None,
    One(Frame),
    Many(Vec<Frame>),
}

impl Frames {
    pub fn as_slice(&self) -> &[Frame] {
        match self {
            Frames::None => &[],
            Frames::One(f) => core::slice::from_ref(f),
            Frames::Many(v) => v,
        }
    }

    /// Blocks the request covers.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Frame> for Frames {
    fn from(f: Frame) -> Frames {
        Frames::One(f)
    }
}

impl From<Vec<Frame>> for Frames {
    fn from(v: Vec<Frame>) -> Frames {
        Frames::Many(v)
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The block is past the end of the device.
    OutOfRange,
    /// The request is malformed: its frame is not one page (an order-0
    /// frame). Refused whole, never truncated to its first page.
    BadRequest,
    /// [`BlockDevice::inject`] asked for this failure.
    Injected,
    /// The device reported an error.
    Device,
}

/// Runs once when the request is over, in the device's completion
/// context (must not sleep).
pub type Completion = Box<dyn FnOnce(Result<(), IoError>) + Send>;

/// One request: blocks `block..block + frames.len()`, or a flush.
pub struct Request {
    pub op: Op,
    /// The first block on the device (ignored by a flush).
    pub block: u64,
    /// The memory read into or written from: order-0 frames, one per
    /// block, 1 to [`BlockDevice::max_segments`] of them (anything else
    /// fails with [`IoError::BadRequest`]; a flush takes none). Held by
    /// the device until it is done with the memory, dropped before the
    /// completion runs.
    pub frames: Frames,
    pub done: Completion,
}

impl Request {
    /// A read or write of `frames` (one per block) from `block` on.
    pub fn new(op: Op, block: u64, frames: impl Into<Frames>, done: Completion) -> Request {
        Request {
            op,
            block,
            frames: frames.into(),
            done,
        }
    }

    /// A flush.
    pub fn flush(done: Completion) -> Request {
        Request {
            op: Op::Flush,
            block: 0,
            frames: Frames::None,
            done,
        }
    }

    /// Blocks the request covers.
    pub fn blocks(&self) -> u64 {
        self.frames.len() as u64
    }
}

/// Failures to inject (tests): the next `count` requests of `op` (those
/// covering `block` only, if given) fail with [`IoError::Injected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inject {
    pub op: Op,
    pub block: Option<u64>,
    pub count: u32,
}

/// Counters a device keeps (snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Read and write requests (a request of several blocks counts once).
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub errors: u64,
    /// Completions run from the device's completion context.
    pub completions: u64,
    /// Device interrupts taken (0 for devices without one).
    pub interrupts: u64,
    /// Writes whose frame changed between submit and the moment the
    /// device took the data (see the module docs).
    pub stable_violations: u64,
}

/// A block device (module docs).
pub trait BlockDevice: Send + Sync {
    /// For reports: `virtio-blk`, `ram`.
    fn name(&self) -> &'static str;
    /// Number of blocks.
    fn blocks(&self) -> u64;
    /// The most frames one request may carry (at most [`MAX_SEGMENTS`]).
    fn max_segments(&self) -> usize;
    /// Queues `req`; returns at once. The completion runs exactly once,
    /// later, from the completion context, also when the request fails.
    fn submit(&self, req: Request);
    /// Arms failure injection.
    fn inject(&self, f: Inject);
    /// Drops the armed injections aimed at a block in `blocks` (those
    /// for any block stay armed until used).
    fn disarm(&self, blocks: Range<u64>);
    /// Holds requests back from the device until [`BlockDevice::unplug`]
    /// (Linux's plugging, `blk_start_plug`): they are queued, in flight for
    /// their submitters, and reach the device together when it unplugs.
    /// A partition plugs its whole device. Plugs nest: the device holds
    /// requests until every plug is released.
    fn plug(&self);
    /// Releases one plug; the last lets held requests go to the device.
    /// An unplug without a plug is a kernel bug and panics.
    fn unplug(&self);
    /// Counters.
    fn stats(&self) -> DeviceStats;
}

/// Why there is no virtio-blk device, if there is none (set by [`init`]).
static VIRTIO_ABSENT: spin::Once<String> = spin::Once::new();

/// Finds and starts the block devices: the first virtio-blk function among
/// the PCI `functions`, and a RAM device of `ramdisk_mb` MiB (0: none).
/// A device that cannot be set up is reported and left out; the kernel
/// runs on without it. Boot CPU, once, with interrupts on and every CPU
/// online (the devices complete requests by interrupt on other CPUs).
pub fn init(functions: &[pci::Function], ramdisk_mb: u64) {
    match virtio::probe(functions) {
        Ok(_) => {}
        Err(why) => {
            log::warn!("virtio-blk: none: {why}");
            VIRTIO_ABSENT.call_once(|| why);
        }
    }
    match ram::init(ramdisk_mb) {
        Ok(Some(_)) => {}
        Ok(None) => log::info!("ramdisk: none (ramdisk=0)"),
        Err(why) => log::error!("ramdisk: none: {why}"),
    }
}

/// The virtio-blk device, or why there is none.
pub fn virtio_blk() -> Result<&'static virtio::VirtioBlk, &'static str> {
    virtio::device().ok_or_else(|| {
        VIRTIO_ABSENT
            .get()
            .map_or("block devices not initialised", |s| s.as_str())
    })
}

/// The RAM device, if there is one.
pub fn ram_disk() -> Option<&'static ram::RamDisk> {
    ram::device()
}
