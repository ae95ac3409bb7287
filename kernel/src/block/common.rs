//! What both block devices share: counters, failure injection, the
//! stable-page check, and running a completion.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{BLOCK_SIZE, DeviceStats, Inject, IoError, Op, Request};
use crate::{arch::time, mm::Frame, sync::IrqMutex};

/// A checksum of the first [`BLOCK_SIZE`] bytes of `frame`: 64-bit words
/// folded with a multiply-rotate mix, so that any change of a word (and
/// the swap of two words) changes it with overwhelming probability.
///
/// The words are read with volatile loads: the frame may be written
/// concurrently by a writer that breaks the stable-page rule, which is
/// exactly what the check exists to notice; the loads must neither be
/// merged nor assumed stable.
pub fn checksum(frame: &Frame) -> u64 {
    let p = frame.virt() as *const u64;
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..BLOCK_SIZE / 8 {
        // SAFETY: the caller's reference keeps the frame allocated, and it
        // is mapped in the physical map for at least BLOCK_SIZE bytes.
        let w = unsafe { p.add(i).read_volatile() };
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29) ^ i as u64;
    }
    h
}

/// A device's counters (atomics; [`Counters::snapshot`] reads them all).
/// Relaxed everywhere: they are statistics, read after the fact; a reader
/// that needs them in step with completions waits for the completions
/// themselves (whose signalling orders the counts before it).
#[derive(Default)]
pub struct Counters {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
    pub completions: AtomicU64,
    pub interrupts: AtomicU64,
    pub stable_violations: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> DeviceStats {
        DeviceStats {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            completions: self.completions.load(Ordering::Relaxed),
            interrupts: self.interrupts.load(Ordering::Relaxed),
            stable_violations: self.stable_violations.load(Ordering::Relaxed),
        }
    }
}

/// Armed failure injections of one device.
pub struct Injector(IrqMutex<Vec<Inject>>);

impl Injector {
    pub const fn new() -> Injector {
        Injector(IrqMutex::new(Vec::new()))
    }

    pub fn arm(&self, f: Inject) {
        if f.count > 0 {
            self.0.lock().push(f);
        }
    }

    /// Drops the injections aimed at a block in `blocks`.
    pub fn disarm(&self, blocks: core::ops::Range<u64>) {
        self.0
            .lock()
            .retain(|f| f.block.is_none_or(|b| !blocks.contains(&b)));
    }

    /// Whether a request of `op` to blocks `block..block + n` must fail
    /// (and uses up one count of the first matching injection if so).
    pub fn take(&self, op: Op, block: u64, n: u64) -> bool {
        let mut armed = self.0.lock();
        let Some(i) = armed
            .iter()
            .position(|f| f.op == op && f.block.is_none_or(|b| b >= block && b - block < n.max(1)))
        else {
            return false;
        };
        armed[i].count -= 1;
        if armed[i].count == 0 {
            armed.remove(i);
        }
        true
    }
}

/// Why the device must not even try `req`: a read or write without
/// frames or with more than `max_segments`, a frame that is not one page
/// (each block is exactly one [`BLOCK_SIZE`] frame; a larger one would be
/// silently truncated), or a flush that carries frames.
pub fn malformed(req: &Request, max_segments: usize) -> Option<IoError> {
    let frames = req.frames.as_slice();
    let bad = match req.op {
        super::Op::Flush => !req.frames.is_empty(),
        _ => {
            frames.is_empty()
                || frames.len() > max_segments
                || frames.iter().any(|f| f.order() != 0)
        }
    };
    bad.then_some(IoError::BadRequest)
}

/// Whether a read or write of `req` runs past a device of `blocks` blocks.
pub fn out_of_range(req: &Request, blocks: u64) -> bool {
    req.op != super::Op::Flush && req.block.saturating_add(req.blocks()) > blocks
}

/// Checksums of a write's frames at submit (the stable-page check); none
/// for other requests.
pub fn checksums(req: &Request) -> Vec<u64> {
    if req.op == super::Op::Write {
        req.frames.as_slice().iter().map(checksum).collect()
    } else {
        Vec::new()
    }
}

/// The stable-page check for a write whose frame had checksum `at_submit`
/// and is being consumed by the device now: on a mismatch, counts a
/// violation and logs one line naming device and block, at most one line
/// per second per device (with the number of violations not logged since).
pub fn check_stable(
    dev: &'static str,
    counters: &Counters,
    limit: &RateLimit,
    block: u64,
    frame: &Frame,
    at_submit: u64,
) {
    let now = checksum(frame);
    if now == at_submit {
        return;
    }
    counters.stable_violations.fetch_add(1, Ordering::Relaxed);
    if let Some(quiet) = limit.allow() {
        log::warn!(
            "{dev}: stable-page violation: block {block} changed while its write was in flight (checksum {at_submit:#018x} at submit, {now:#018x} when the device took it){}",
            Suppressed(quiet)
        );
    }
}

/// [`check_stable`] for every frame of a write whose checksums at submit
/// are `sums` ([`checksums`]).
pub fn check_stable_all(
    dev: &'static str,
    counters: &Counters,
    limit: &RateLimit,
    req: &Request,
    sums: &[u64],
) {
    for (i, (f, &sum)) in req.frames.as_slice().iter().zip(sums).enumerate() {
        check_stable(dev, counters, limit, req.block + i as u64, f, sum);
    }
}

struct Suppressed(u64);
impl core::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        if self.0 > 0 {
            write!(f, "; {} more since the last report", self.0)
        } else {
            Ok(())
        }
    }
}

/// At most one event per second gets through; the others are counted.
pub struct RateLimit {
    /// `time::now_ns()` of the last event let through; 0 = none yet.
    last_ns: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            last_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events suppressed since the last one let through)` if this
    /// one may be reported.
    pub fn allow(&self) -> Option<u64> {
        let now = time::now_ns().max(1);
        let last = self.last_ns.load(Ordering::Relaxed);
        // The CAS picks one winner among concurrent reporters; Relaxed,
        // since it guards only a log line.
        if (last == 0 || now.saturating_sub(last) >= 1_000_000_000)
            && self
                .last_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Ends `req` with `result` in the completion context: counts it, drops
/// the device's frame references, then runs the completion (module docs of
/// `super`: the device is done with the memory, and a completion holds no
/// device reference, as a Linux bio's end_io holds none of the block
/// layer's). Call with no device lock held: completions take page
/// wait-queue locks.
pub fn finish(counters: &Counters, req: Request, result: Result<(), IoError>) {
    match req.op {
        Op::Read => counters.reads.fetch_add(1, Ordering::Relaxed),
        Op::Write => counters.writes.fetch_add(1, Ordering::Relaxed),
        Op::Flush => counters.flushes.fetch_add(1, Ordering::Relaxed),
    };
    if result.is_err() {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    counters.completions.fetch_add(1, Ordering::Relaxed);
    // The device is done with the memory: its reference goes first, and
    // the completion runs holding none of the device's (as with Linux's
    // bio, whose pages the block layer does not count). A completion that
    // needs the page, such as the end of writeback, keeps it alive by its
    // own rules (`crate::pagecache::WritebackPage`).
    let Request { frames, done, .. } = req;
    drop(frames);
    done(result);
}
