//! Allocating and freeing frames: the public API and its checks.
//!
//! Mental model: [`alloc_pages`] hands out a naturally aligned block of
//! 2^order frames as a [`Frame`] that carries the head frame's first
//! reference (count 1) and records the order in the head page's flags.
//! Clones of the Frame are more references; when the last one drops, the
//! block goes back: single frames through this CPU's cache
//! ([`super::pcp`]) unless the caches are off, larger blocks to the buddy
//! lists.
//!
//! Checks (Linux `check_new_pages` / `free_pages_prepare` / `bad_page`):
//! * on the way out, every frame of the block must look free: count 0, no
//!   flags, not mapped; anything else means someone wrote to a free frame,
//!   and the kernel panics with a dump of the descriptor;
//! * on the way in, a block whose last reference went is refused, with a
//!   typed [`FreeError`], if it is locked, under writeback, mapped, or its
//!   tail frames are in use; the last drop of a Frame turns that into a
//!   panic with the dump. [`try_free_raw`] is the raw entry point for a
//!   block whose one reference the caller gave up with `Frame::into_raw`:
//!   it also refuses a frame that is already free (double free), still
//!   referenced by someone else, reserved or not RAM, leaving the frame as
//!   it was. Tests call it to see each error caught.

use core::fmt;

use pagesync::{
    Page,
    flags::{
        FlagNames, ORDER_MASK, ORDER_SHIFT, PG_BUDDY, PG_LOCKED, PG_RESERVED, PG_WRITEBACK, mask,
    },
    refcount::{PutOutcome, RefError},
};

use super::{MAX_ORDER, Pfn, buddy, frame_array, pcp};

/// How to allocate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocFlags {
    /// Fill the block with zeros before handing it out.
    pub zero: bool,
}

impl AllocFlags {
    /// Contents undefined.
    pub const NONE: AllocFlags = AllocFlags { zero: false };
    /// Contents zeroed (Linux `__GFP_ZERO`).
    pub const ZERO: AllocFlags = AllocFlags { zero: true };
}

/// Why a block could not be freed. The frames are left as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The count is already 0: the frame is free (or is a tail frame that
    /// was never handed out on its own).
    DoubleFree,
    /// Others still hold references: the count was not 1.
    Referenced { count: u32 },
    /// The frame is reserved (firmware, kernel, frame array, below 1 MiB).
    Reserved,
    /// No descriptor describes this frame.
    NotDescribed,
    /// The frame number is not aligned to the order, or the order is too big.
    Misaligned,
    /// Locked, under writeback, or on a free list.
    BadFlags { flags: u64 },
    /// Still mapped by page tables.
    Mapped { mapcount: i32 },
    /// A tail frame of the block is in use, reserved or flagged.
    BadTail { pfn: Pfn },
    /// The block was allocated with another order.
    WrongOrder { recorded: u32 },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FreeError::DoubleFree => write!(f, "double free (refcount already 0)"),
            FreeError::Referenced { count } => write!(
                f,
                "freeing a frame with refcount {count} (still referenced)"
            ),
            FreeError::Reserved => write!(f, "freeing a reserved frame"),
            FreeError::NotDescribed => write!(f, "freeing a frame that is not RAM"),
            FreeError::Misaligned => write!(f, "frame not aligned to its order"),
            FreeError::BadFlags { flags } => {
                write!(f, "freeing a frame with flags {}", FlagNames(*flags))
            }
            FreeError::Mapped { mapcount } => write!(f, "freeing a frame mapped {mapcount} times"),
            FreeError::BadTail { pfn } => write!(f, "tail frame {pfn:#x} of the block is not free"),
            FreeError::WrongOrder { recorded } => {
                write!(f, "the block was allocated with order {recorded}")
            }
        }
    }
}

/// A descriptor's state in one line, for reports.
pub struct Dump(pub Pfn);

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let pfn = self.0;
        let Some(p) = frame_array::page(pfn) else {
            return write!(f, "pfn={pfn:#x} (no descriptor)");
        };
        write!(
            f,
            "pfn={pfn:#x} phys={:#x} flags={} count={} mapcount={} private={:#x} mapping={:#x} index={}",
            pfn.phys(),
            FlagNames(p.flags().load(core::sync::atomic::Ordering::Relaxed)),
            p.ref_count(),
            p.mapcount(),
            p.private(),
            p.mapping(),
            p.index(),
        )
    }
}

/// The end of a kernel-internal bug on a frame.
#[cold]
#[track_caller]
pub fn bad_page(pfn: Pfn, why: impl fmt::Display) -> ! {
    panic!("mm: bad page: {why}: {}", Dump(pfn))
}

/// Flags that must be clear on a frame being freed (besides reserved).
const BAD_AT_FREE: u64 = mask(PG_LOCKED) | mask(PG_WRITEBACK) | mask(PG_BUDDY);

/// The flags of a free frame's state, without the recorded order.
fn flags_without_order(p: &Page) -> u64 {
    p.flags().load(core::sync::atomic::Ordering::Relaxed) & !ORDER_MASK
}

/// Takes a block of 2^order frames (`order` at most `MAX_ORDER`) off the
/// free lists, checks it and gives its head the first reference, which the
/// caller owns (`Frame`s are made in `super::frame`).
pub(super) fn alloc_block(order: u32) -> Option<&'static Page> {
    let head = if order == 0 && pcp::enabled() {
        pcp::alloc()?
    } else {
        buddy::ZONE.lock().alloc(order)?
    };
    prep_new(head, order);
    Some(head)
}

/// Checks that a block leaving the allocator looks free, records its
/// order, then takes the head's first reference.
fn prep_new(head: &'static Page, order: u32) {
    let pfn = frame_array::pfn_of(head);
    for f in 0..1u64 << order {
        let f = pfn.add(f);
        let p = frame_array::page(f)
            .unwrap_or_else(|| bad_page(f, "allocated frame has no descriptor"));
        if p.ref_count() != 0
            || p.flags().load(core::sync::atomic::Ordering::Relaxed) != 0
            || p.mapcount() != 0
        {
            bad_page(f, "free frame modified while free (at allocation)");
        }
    }
    // SAFETY: the block is ours: off the free lists, count 0, so nobody
    // else writes its flags (a speculative getter only touches the count
    // and fails on 0).
    unsafe { head.flags().store_unshared(u64::from(order) << ORDER_SHIFT) };
    if head.init_ref().is_err() {
        bad_page(
            pfn,
            "allocated frame gained a reference while being allocated",
        );
    }
}

/// Frees the block `(pfn, order)` whose head's one reference the caller
/// gave up (with `Frame::into_raw`), or says why not, leaving every frame
/// as it was.
pub fn try_free_raw(pfn: Pfn, order: u32) -> Result<(), FreeError> {
    if order > MAX_ORDER || pfn.0 & ((1 << order) - 1) != 0 {
        return Err(FreeError::Misaligned);
    }
    let head = frame_array::page(pfn).ok_or(FreeError::NotDescribed)?;
    if head.flags().test(PG_RESERVED) {
        return Err(FreeError::Reserved);
    }
    // page_ref_freeze(1): only if ours is the one reference, take the count
    // to 0 in one step, so a racing speculative getter either got in first
    // (and we refuse) or fails.
    if !head.ref_freeze(1) {
        return Err(match head.ref_count() {
            0 => FreeError::DoubleFree,
            count => FreeError::Referenced { count },
        });
    }
    let recorded = head.flags().order();
    if recorded != order {
        head.ref_unfreeze(1);
        return Err(FreeError::WrongOrder { recorded });
    }
    free_unreferenced(head, pfn, order).inspect_err(|_| {
        // The frame stays the caller's: give its reference back.
        head.ref_unfreeze(1);
    })
}

/// Drops one reference on the block headed by `head` (the drop of a
/// `Frame`); the last one frees it. A broken rule panics with the dump.
pub(super) fn put_frame(head: &'static Page) {
    match head.put_page() {
        Ok(PutOutcome::StillReferenced) => {}
        Ok(PutOutcome::LastReference) => free_counted_out(head, frame_array::pfn_of(head)),
        // The count was already 0: a reference dropped twice.
        Err(RefError::Unused) => bad_page(frame_array::pfn_of(head), FreeError::DoubleFree),
        Err(e) => bad_page(frame_array::pfn_of(head), format_args!("put_page: {e:?}")),
    }
}

/// Frees the block whose head's count the caller just took to 0 with the
/// last put (outside a `Frame`: `Frame::put_via`). A broken rule panics
/// with the dump.
pub(super) fn free_last_reference(head: &Page) {
    let (head, pfn) = frame_array::descriptor(head);
    free_counted_out(head, pfn)
}

/// Frees the block headed by frame `pfn` (descriptor `head`), whose last
/// reference is gone; a broken rule panics with the dump.
fn free_counted_out(head: &'static Page, pfn: Pfn) {
    if let Err(e) = free_unreferenced(head, pfn, head.flags().order()) {
        head.ref_unfreeze(1);
        bad_page(pfn, e);
    }
}

/// The count of the head (`pfn`'s descriptor) reached 0: check the block
/// and return it. Every free path ends here, the descriptor and its frame
/// number found once above it; the per-CPU caches keep descriptors, the
/// buddy lists frame numbers (a buddy is found by XOR on the number).
fn free_unreferenced(head: &'static Page, pfn: Pfn, order: u32) -> Result<(), FreeError> {
    let fl = flags_without_order(head);
    if fl & BAD_AT_FREE != 0 {
        return Err(FreeError::BadFlags { flags: fl });
    }
    if head.mapcount() != 0 {
        return Err(FreeError::Mapped {
            mapcount: head.mapcount(),
        });
    }
    for f in 1..1u64 << order {
        let f = pfn.add(f);
        let t = frame_array::page(f).ok_or(FreeError::BadTail { pfn: f })?;
        if t.ref_count() != 0
            || t.flags().load(core::sync::atomic::Ordering::Relaxed) != 0
            || t.mapcount() != 0
        {
            return Err(FreeError::BadTail { pfn: f });
        }
    }
    // SAFETY: the frame is ours alone (count 0, and nobody may take a
    // reference on a free frame), so a plain store may reset its flags.
    // PG_WAITERS cannot be set: a waiter holds a reference.
    unsafe { head.flags().store_unshared(0) };
    head.reset_owner_words();
    if order == 0 && pcp::enabled() {
        pcp::free(head);
    } else {
        buddy::ZONE.lock().free(pfn, order);
    }
    Ok(())
}

/// What one pass over the whole frame array found ([`audit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Free frames (all in the buddy lists: the per-CPU caches were
    /// drained for the pass).
    pub free: u64,
    /// Frames with count 0 that are neither free nor reserved nor the tail
    /// of an allocated block: lost for good (nobody holds them, nobody can
    /// hand them out).
    pub orphans: u64,
    /// Allocated pages with `PG_LOCKED` set.
    pub locked: u64,
    /// Allocated pages with `PG_WRITEBACK` set.
    pub writeback: u64,
    /// Allocated pages whose count says they may be DMA-pinned.
    pub pinned: u64,
    /// The first few frames of each kind above, for reports: orphans,
    /// locked, under writeback, pinned.
    pub examples: [[Option<Pfn>; 4]; 4],
}

impl Audit {
    fn note(&mut self, kind: usize, pfn: Pfn) {
        if let Some(slot) = self.examples[kind].iter_mut().find(|e| e.is_none()) {
            *slot = Some(pfn);
        }
    }
}

/// Walks the whole frame array with the allocator stopped
/// (`pcp::with_all_drained`) and counts what a quiet kernel should not
/// have: orphaned frames (count 0, on no free list), locked pages, pages
/// under writeback and maybe-pinned pages. The allocator's own view
/// (free frames) comes from the same instant. Blocks are aligned to their
/// order and never cross a section, so a walk from each section's start
/// meets every block's head before its tails and can skip the tails.
/// Interrupts are off on this CPU for the pass (~10 ms per 512 MiB under
/// TCG).
pub fn audit() -> Audit {
    pcp::with_all_drained(|zone| {
        let mut a = Audit {
            free: zone.free_frames(),
            ..Audit::default()
        };
        for (start, end) in frame_array::sections() {
            let mut pfn = start.0;
            while pfn < end.0 {
                let Some(p) = frame_array::page(Pfn(pfn)) else {
                    pfn += 1;
                    continue;
                };
                let fl = p.flags().load(core::sync::atomic::Ordering::Relaxed);
                let step = if fl & mask(PG_BUDDY) != 0 {
                    1u64 << p.private().min(u64::from(MAX_ORDER))
                } else if fl & mask(PG_RESERVED) != 0 {
                    1
                } else if p.ref_count() == 0 {
                    a.orphans += 1;
                    a.note(0, Pfn(pfn));
                    1
                } else {
                    if fl & mask(PG_LOCKED) != 0 {
                        a.locked += 1;
                        a.note(1, Pfn(pfn));
                    }
                    if fl & mask(PG_WRITEBACK) != 0 {
                        a.writeback += 1;
                        a.note(2, Pfn(pfn));
                    }
                    if p.maybe_dma_pinned() {
                        a.pinned += 1;
                        a.note(3, Pfn(pfn));
                    }
                    1u64 << ((fl & ORDER_MASK) >> ORDER_SHIFT).min(u64::from(MAX_ORDER))
                };
                pfn += step;
            }
        }
        a
    })
}

/// Free frames: in the buddy lists plus in the per-CPU caches (a snapshot,
/// exact when no CPU is allocating).
pub fn free_frames() -> u64 {
    buddy::free_frames() + pcp::cached_frames()
}
