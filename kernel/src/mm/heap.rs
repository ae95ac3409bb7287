//! The kernel heap: `talc` as the global allocator, fed by buddy blocks.
//!
//! Mental model: the heap starts empty. When talc cannot satisfy a request
//! it calls [`BuddySource::acquire`], which takes a block of at least
//! [`MIN_GROW_ORDER`] (256 KiB) from the buddy allocator, large enough for
//! the request, and either extends the current heap (when the block starts
//! where the heap ends) or claims it as a new heap. The blocks stay the
//! heap's for good (their frames keep count 1; the heap never shrinks).
//! When the buddy allocator has no block large enough, acquire prints an
//! out-of-memory report and fails, and the allocation ends in Rust's
//! allocation-error panic.
//!
//! Locking: talc runs under an [`IrqSpinRaw`] (interrupts off, so an
//! interrupt handler may allocate); `acquire` runs inside it and takes the
//! buddy lock, so the order is heap, then buddy. `acquire` must not
//! allocate (talc's `Source` contract): it only uses the frame allocator
//! and the console, neither of which allocates.

use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use talc::{base::Talc, base::binning::Binning, min_first_heap_size, source::Source};

use super::{AllocFlags, MAX_ORDER, PAGE_SIZE, buddy, page_alloc};
use crate::sync::IrqSpinRaw;

/// The smallest block the heap grows by: 2^6 frames = 256 KiB.
pub const MIN_GROW_ORDER: u32 = 6;

/// Bytes the heap has taken from the buddy allocator.
static HEAP_BYTES: AtomicU64 = AtomicU64::new(0);
/// Times the heap grew.
static GROWS: AtomicU64 = AtomicU64::new(0);

/// Talc's memory source: buddy blocks.
#[derive(Debug)]
pub struct BuddySource {
    /// End of the most recent heap (0 = no heap yet), to extend it in place.
    heap_end: usize,
}

type Heap = talc::sync::TalcLock<IrqSpinRaw, BuddySource, talc::DefaultBinning>;

#[global_allocator]
static HEAP: Heap = Heap::new(BuddySource { heap_end: 0 });

/// (bytes taken from the buddy allocator, number of growths).
pub fn stats() -> (u64, u64) {
    (
        HEAP_BYTES.load(Ordering::Relaxed),
        GROWS.load(Ordering::Relaxed),
    )
}

// SAFETY: `acquire` touches only the frame allocator (which never
// allocates from the heap) and the console (which does not allocate); it
// never reaches the `TalcLock` that wraps it.
unsafe impl Source for BuddySource {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        // Room for the request at its alignment, talc's per-heap tags and,
        // for the first heap, its metadata.
        let need = layout.size()
            + layout.align()
            + 4 * talc::base::CHUNK_UNIT
            + min_first_heap_size::<B>();
        let order = need
            .div_ceil(PAGE_SIZE)
            .next_power_of_two()
            .trailing_zeros()
            .max(MIN_GROW_ORDER);
        let block = if order <= MAX_ORDER {
            super::alloc_pages(order, AllocFlags::NONE)
        } else {
            None
        };
        let Some(block) = block else {
            crate::println!(
                "# mm: heap out of memory: cannot grow by 2^{order} frames for a {}-byte request (align {}); {} frames free, largest blocks per order {:?}",
                layout.size(),
                layout.align(),
                page_alloc::free_frames(),
                buddy::blocks_per_order(),
            );
            return Err(());
        };
        let (base, bytes) = (block.virt(), block.bytes());
        // The heap keeps the block for good.
        let _ = block.into_raw();
        let end = base.wrapping_add(bytes);
        let prev = talc.source.heap_end;
        let new_end = if prev == base as usize {
            // SAFETY: `prev` is the end talc returned for the current heap
            // and has not changed; base..end is ours alone (just allocated,
            // never freed) and mapped.
            unsafe { talc.extend(NonNull::new(prev as *mut u8).ok_or(())?, end) }
        } else {
            // SAFETY: base..end is ours alone and mapped, for the rest of
            // the run.
            unsafe { talc.claim(base, bytes) }.ok_or(())?
        };
        talc.source.heap_end = new_end.as_ptr() as usize;
        HEAP_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
        GROWS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
