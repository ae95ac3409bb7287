//! Allocating and freeing frames: the public API and its checks.
//!
//! Mental model: [`alloc_pages`] hands out a naturally aligned block of
//! 2^order frames as a [`Pages`] value that owns the head frame's single
//! reference (count 1); dropping it (or [`free_pages`]) gives the block
//! back. Single frames go through this CPU's cache ([`super::pcp`]) unless
//! the caches are off; larger blocks come from the buddy lists.
//!
//! Checks (Linux `check_new_pages` / `free_pages_prepare` / `bad_page`):
//! * on the way out, every frame of the block must look free: count 0, no
//!   flags, not mapped; anything else means someone wrote to a free frame,
//!   and the kernel panics with a dump of the descriptor;
//! * on the way in, [`try_free_raw`] refuses, with a typed [`FreeError`]
//!   and the frame left as it was, a frame that is already free (double
//!   free), still referenced by someone else, reserved, locked or under
//!   writeback, mapped, or whose tail frames are in use. [`free_pages`]
//!   and dropping a [`Pages`] turn such an error into a panic with the
//!   dump; tests call [`try_free_raw`] to see each error caught.
//!
//! Reference counts follow pagesync's rules ([`pagesync::refcount`]):
//! [`get_page`] and [`put_page`] take and drop extra references on a single
//! frame, and the last `put_page` frees it.

use core::fmt;

use pagesync::{
    Page,
    flags::{self, PG_LOCKED, PG_RESERVED, PG_WRITEBACK, mask},
    refcount::{PutOutcome, RefError},
};

use super::{MAX_ORDER, PAGE_SIZE, PG_BUDDY, buddy, frame_array, pcp};

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

/// A block of 2^order frames owned by the holder, who holds the head
/// frame's reference. Dropping it frees the block (panicking on a broken
/// rule, see [`try_free_raw`]).
#[must_use = "dropping a Pages frees the frames at once"]
#[derive(Debug)]
pub struct Pages {
    pfn: u64,
    order: u32,
}

impl Pages {
    /// The first frame's number.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }
    /// log2 of the number of frames.
    pub fn order(&self) -> u32 {
        self.order
    }
    /// Physical address of the first byte.
    pub fn phys(&self) -> u64 {
        frame_array::phys(self.pfn)
    }
    /// Kernel virtual address of the first byte.
    pub fn virt(&self) -> *mut u8 {
        frame_array::virt(self.pfn)
    }
    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        PAGE_SIZE << self.order
    }
    /// The head frame's descriptor.
    pub fn page(&self) -> &'static Page {
        frame_array::page(self.pfn).expect("allocated frame has a descriptor")
    }
    /// Gives up ownership without freeing: the caller must eventually pass
    /// the pair to [`try_free_raw`] (or keep the frames forever).
    pub fn into_raw(self) -> (u64, u32) {
        let raw = (self.pfn, self.order);
        core::mem::forget(self);
        raw
    }
    /// Takes back ownership of a block from [`Pages::into_raw`].
    ///
    /// # Safety
    /// `(pfn, order)` came from `into_raw` and nobody else owns the block.
    pub unsafe fn from_raw(pfn: u64, order: u32) -> Pages {
        Pages { pfn, order }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Err(e) = try_free_raw(self.pfn, self.order) {
            bad_page(self.pfn, e);
        }
    }
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
    BadTail { pfn: u64 },
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
        }
    }
}

const FLAG_NAMES: [&str; 15] = [
    "locked",
    "writeback",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "head",
    "waiters",
    "active",
    "workingset",
    "error",
    "reserved",
    "private",
    "reclaim",
    "buddy",
];

/// Flag bits by name: `0x801(locked|reserved)`.
struct FlagNames(u64);

impl fmt::Display for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:#x}(", self.0)?;
        let mut sep = "";
        for (bit, name) in FLAG_NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        write!(f, ")")
    }
}

/// A descriptor's state in one line, for reports.
pub struct Dump(pub u64);

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let pfn = self.0;
        let Some(p) = frame_array::page(pfn) else {
            return write!(f, "pfn={pfn:#x} (no descriptor)");
        };
        write!(
            f,
            "pfn={pfn:#x} phys={:#x} flags={} count={} mapcount={} private={:#x} mapping={:#x} index={}",
            frame_array::phys(pfn),
            FlagNames(p.flags.load(core::sync::atomic::Ordering::Relaxed)),
            p.ref_count(),
            p.mapcount(),
            p.private.load(core::sync::atomic::Ordering::Relaxed),
            p.mapping.load(core::sync::atomic::Ordering::Relaxed),
            p.index.load(core::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// The end of a kernel-internal bug on a frame.
#[cold]
#[track_caller]
pub fn bad_page(pfn: u64, why: impl fmt::Display) -> ! {
    panic!("mm: bad page: {why}: {}", Dump(pfn))
}

/// Flags that must be clear on a frame being freed (besides reserved).
const BAD_AT_FREE: u64 = mask(PG_LOCKED) | mask(PG_WRITEBACK) | mask(PG_BUDDY);

/// Allocates 2^order contiguous, naturally aligned frames, or None when no
/// block that large is free.
pub fn alloc_pages(order: u32, how: AllocFlags) -> Option<Pages> {
    if order > MAX_ORDER {
        return None;
    }
    let pfn = if order == 0 && pcp::enabled() {
        pcp::alloc()?
    } else {
        buddy::ZONE.lock().alloc(order)?
    };
    prep_new(pfn, order);
    let pages = Pages { pfn, order };
    if how.zero {
        // SAFETY: the block is ours (just allocated) and mapped in the
        // physical map for its whole length.
        unsafe { core::ptr::write_bytes(pages.virt(), 0, pages.bytes()) };
    }
    Some(pages)
}

/// Checks that a block leaving the allocator looks free, then takes the
/// head's first reference.
fn prep_new(pfn: u64, order: u32) {
    for f in pfn..pfn + (1 << order) {
        let p = frame_array::page(f)
            .unwrap_or_else(|| bad_page(f, "allocated frame has no descriptor"));
        if p.ref_count() != 0
            || p.flags.load(core::sync::atomic::Ordering::Relaxed) != 0
            || p.mapcount() != 0
        {
            bad_page(f, "free frame modified while free (at allocation)");
        }
    }
    let head = frame_array::page(pfn).expect("checked above");
    if head.init_ref().is_err() {
        bad_page(
            pfn,
            "allocated frame gained a reference while being allocated",
        );
    }
}

/// Frees the block `(pfn, order)` whose head's one reference the caller
/// holds, or says why not (leaving every frame as it was).
pub fn try_free_raw(pfn: u64, order: u32) -> Result<(), FreeError> {
    if order > MAX_ORDER || pfn & ((1 << order) - 1) != 0 {
        return Err(FreeError::Misaligned);
    }
    let head = frame_array::page(pfn).ok_or(FreeError::NotDescribed)?;
    if head.flags.test(PG_RESERVED) {
        return Err(FreeError::Reserved);
    }
    match head.ref_count() {
        0 => return Err(FreeError::DoubleFree),
        1 => {}
        count => return Err(FreeError::Referenced { count }),
    }
    match head.put_page() {
        Ok(PutOutcome::LastReference) => {}
        Ok(PutOutcome::StillReferenced) => {
            // Somebody took a reference between our snapshot and the put
            // (a speculative getter): give ours back and report.
            let count = head.get_page().unwrap_or(0);
            return Err(FreeError::Referenced { count });
        }
        // Raced with another free of the same frame.
        Err(_) => return Err(FreeError::DoubleFree),
    }
    free_unreferenced(pfn, order).inspect_err(|_| {
        // The frame stays the caller's: undo the put. Nobody else can hold
        // a reference to a frame whose count we took to 0.
        head.set_ref_count_private(1);
    })
}

/// The count of the head reached 0: check the block and return it.
fn free_unreferenced(pfn: u64, order: u32) -> Result<(), FreeError> {
    let head = frame_array::page(pfn).expect("checked by the caller");
    let fl = head.flags.load(core::sync::atomic::Ordering::Relaxed);
    if fl & BAD_AT_FREE != 0 {
        return Err(FreeError::BadFlags { flags: fl });
    }
    if head.mapcount() != 0 {
        return Err(FreeError::Mapped {
            mapcount: head.mapcount(),
        });
    }
    for f in pfn + 1..pfn + (1 << order) {
        let t = frame_array::page(f).ok_or(FreeError::BadTail { pfn: f })?;
        if t.ref_count() != 0
            || t.flags.load(core::sync::atomic::Ordering::Relaxed) != 0
            || t.mapcount() != 0
        {
            return Err(FreeError::BadTail { pfn: f });
        }
    }
    // The frame is ours alone (count 0, nobody may take a reference to a
    // free frame), so plain stores may reset its state. PG_WAITERS cannot
    // be set: a waiter holds a reference.
    head.flags.store_private(0);
    head.mapping.store(0, core::sync::atomic::Ordering::Relaxed);
    head.index.store(0, core::sync::atomic::Ordering::Relaxed);
    head.private.store(0, core::sync::atomic::Ordering::Relaxed);
    head.lock_owner
        .store(0, core::sync::atomic::Ordering::Relaxed);
    if order == 0 && pcp::enabled() {
        pcp::free(pfn);
    } else {
        buddy::ZONE.lock().free(pfn, order);
    }
    Ok(())
}

/// Frees a block; a broken rule is a kernel bug and panics with the dump.
pub fn free_pages(pages: Pages) {
    drop(pages);
}

/// One more reference on an allocated single frame; returns the new count.
pub fn try_get_page(pfn: u64) -> Result<u32, RefError> {
    frame_array::page(pfn).ok_or(RefError::Unused)?.get_page()
}

/// [`try_get_page`], panicking with the dump on a free frame or overflow.
pub fn get_page(pfn: u64) -> u32 {
    try_get_page(pfn).unwrap_or_else(|e| bad_page(pfn, format_args!("get_page: {e:?}")))
}

/// Drops a reference on a single frame; the last one frees it. Panics with
/// the dump on a free frame or a frame that fails the free checks.
pub fn put_page(pfn: u64) {
    let p = frame_array::page(pfn).unwrap_or_else(|| bad_page(pfn, "put_page: not RAM"));
    match p.put_page() {
        Ok(PutOutcome::StillReferenced) => {}
        Ok(PutOutcome::LastReference) => {
            if let Err(e) = free_unreferenced(pfn, 0) {
                p.set_ref_count_private(1);
                bad_page(pfn, e);
            }
        }
        Err(e) => bad_page(pfn, format_args!("put_page: {e:?}")),
    }
}

/// Free frames: in the buddy lists plus in the per-CPU caches (a snapshot,
/// exact when no CPU is allocating).
pub fn free_frames() -> u64 {
    buddy::free_frames() + pcp::cached_frames()
}

const _: () = assert!(flags::PG_FIRST_FREE as usize == FLAG_NAMES.len() - 1);
