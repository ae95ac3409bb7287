//! The buddy allocator: free frames in naturally aligned blocks of 2^order
//! frames, `order` in `0..=MAX_ORDER`, one free list per order.
//!
//! Mental model (Linux `mm/page_alloc.c`, one zone): a free block is its
//! head frame's descriptor, linked into `free[order]` through the
//! descriptor's `list_next`/`list_prev` words, marked [`PG_BUDDY`] with the
//! order in `private`. The buddy of block `pfn` at `order` is
//! `pfn ^ (1 << order)`. Allocation takes the smallest non-empty order and
//! splits, putting the upper halves back; freeing merges with the buddy for
//! as long as the buddy is a free block of the same order, so memory returns
//! to the largest blocks it can form.
//!
//! Everything here runs under the one [`ZONE`] lock; the link words, the
//! `private` word and `PG_BUDDY` are only touched under it, so Relaxed
//! accesses suffice (the lock's Acquire/Release order them). Frames in
//! holes or below 1 MiB are reserved and never carry `PG_BUDDY`, so merging
//! never crosses into them; a buddy outside the array has no descriptor.
//!
//! The functions here do no checks on the frames' reference counts: the
//! callers in `page_alloc` check a frame before it comes in and after it
//! goes out.

use core::sync::atomic::Ordering;

use pagesync::{Page, flags::PG_RESERVED};

use super::{MAX_ORDER, PG_BUDDY, frame_array};
use crate::sync::IrqMutex;

/// Number of orders.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// One order's free list: the head block's descriptor address (0 = empty)
/// and the number of blocks on it.
#[derive(Clone, Copy)]
struct FreeList {
    head: usize,
    blocks: u64,
}

/// The free lists and the number of free frames they hold.
pub struct Zone {
    lists: [FreeList; NR_ORDERS],
    free_frames: u64,
}

/// The buddy allocator's state.
pub static ZONE: IrqMutex<Zone> = IrqMutex::new(Zone {
    lists: [FreeList { head: 0, blocks: 0 }; NR_ORDERS],
    free_frames: 0,
});

/// A descriptor from an address stored in a link word.
fn at(addr: usize) -> &'static Page {
    debug_assert!(addr != 0 && addr.is_multiple_of(core::mem::align_of::<Page>()));
    // SAFETY: link words and list heads only ever hold addresses of
    // descriptors in the frame array, which lives for the rest of the run.
    unsafe { &*(addr as *const Page) }
}

impl Zone {
    fn push(&mut self, page: &'static Page, order: u32) {
        let l = &mut self.lists[order as usize];
        page.list_prev.store(0, Ordering::Relaxed);
        page.list_next.store(l.head, Ordering::Relaxed);
        if l.head != 0 {
            at(l.head).list_prev.store(page.addr(), Ordering::Relaxed);
        }
        l.head = page.addr();
        l.blocks += 1;
        page.private.store(u64::from(order), Ordering::Relaxed);
        page.flags.set(PG_BUDDY);
        self.free_frames += 1 << order;
    }

    fn unlink(&mut self, page: &'static Page, order: u32) {
        let l = &mut self.lists[order as usize];
        let (next, prev) = (
            page.list_next.load(Ordering::Relaxed),
            page.list_prev.load(Ordering::Relaxed),
        );
        if prev == 0 {
            l.head = next;
        } else {
            at(prev).list_next.store(next, Ordering::Relaxed);
        }
        if next != 0 {
            at(next).list_prev.store(prev, Ordering::Relaxed);
        }
        l.blocks -= 1;
        page.list_next.store(0, Ordering::Relaxed);
        page.list_prev.store(0, Ordering::Relaxed);
        page.private.store(0, Ordering::Relaxed);
        page.flags.clear(PG_BUDDY);
        self.free_frames -= 1 << order;
    }

    /// Takes a block of `order` frames; returns its first frame number.
    pub fn alloc(&mut self, order: u32) -> Option<u64> {
        let found = (order..=MAX_ORDER).find(|&o| self.lists[o as usize].head != 0)?;
        let head = at(self.lists[found as usize].head);
        self.unlink(head, found);
        let pfn = frame_array::pfn_of(head);
        // Split: give back the upper half at each order above the request.
        for o in (order..found).rev() {
            let upper =
                frame_array::page(pfn + (1 << o)).expect("buddy: split half has no descriptor");
            self.push(upper, o);
        }
        Some(pfn)
    }

    /// Returns the block of `order` frames at `pfn`, merging with free
    /// buddies. The caller has checked the block (aligned, described, not
    /// reserved, count 0).
    pub fn free(&mut self, mut pfn: u64, mut order: u32) {
        while order < MAX_ORDER {
            let buddy_pfn = pfn ^ (1 << order);
            let Some(buddy) = frame_array::page(buddy_pfn) else {
                break;
            };
            if !buddy.flags.test(PG_BUDDY)
                || buddy.private.load(Ordering::Relaxed) != u64::from(order)
            {
                break;
            }
            self.unlink(buddy, order);
            pfn &= !(1 << order);
            order += 1;
        }
        let head = frame_array::page(pfn).expect("buddy: freed block has no descriptor");
        self.push(head, order);
    }

    /// Free frames on the lists.
    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// Free blocks per order.
    pub fn blocks(&self) -> [u64; NR_ORDERS] {
        core::array::from_fn(|o| self.lists[o].blocks)
    }
}

/// Boot: frames `lo..hi` are usable and unused. Their descriptors (reserved
/// until now) become free frames, given back as maximal aligned blocks.
pub fn add_free_range(lo: u64, hi: u64) {
    for pfn in lo..hi {
        let p = frame_array::page(pfn).expect("buddy: usable frame has no descriptor");
        debug_assert!(p.flags.test(PG_RESERVED));
        p.flags.store_private(0);
        p.set_ref_count_private(0);
    }
    let mut zone = ZONE.lock();
    let mut pfn = lo;
    while pfn < hi {
        let mut order = MAX_ORDER;
        while order > 0 && (pfn & ((1 << order) - 1) != 0 || pfn + (1 << order) > hi) {
            order -= 1;
        }
        zone.free(pfn, order);
        pfn += 1 << order;
    }
}

/// Free frames in the buddy lists (not counting per-CPU caches).
pub fn free_frames() -> u64 {
    ZONE.lock().free_frames()
}

/// Free blocks per order in the buddy lists.
pub fn blocks_per_order() -> [u64; NR_ORDERS] {
    ZONE.lock().blocks()
}
