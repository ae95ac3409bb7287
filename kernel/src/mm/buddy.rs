//! The buddy allocator: free frames in naturally aligned blocks of 2^order
//! frames, `order` in `0..=MAX_ORDER`, one free list per order.
//!
//! Mental model (Linux `mm/page_alloc.c`, one zone): a free block is its
//! head frame's descriptor, linked into `free[order]` through the
//! descriptor's link words, marked [`PG_BUDDY`] with the order in its
//! private word. The buddy of block `pfn` at `order` is
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

use core::ptr::NonNull;

use pagesync::{
    Page,
    flags::{PG_BUDDY, PG_RESERVED},
};

use super::{MAX_ORDER, frame_array, pfn::Pfn};
use crate::sync::IrqMutex;

/// Number of orders.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// One order's free list: the head block's descriptor and the number of
/// blocks on it.
#[derive(Clone, Copy)]
struct FreeList {
    head: Option<NonNull<Page>>,
    blocks: u64,
}

/// The free lists and the number of free frames they hold.
pub struct Zone {
    lists: [FreeList; NR_ORDERS],
    free_frames: u64,
}

// SAFETY: the list heads point at frame-array descriptors, which live for
// the rest of the run and are only ever reached through atomics; the Zone
// itself is only touched under `ZONE`'s lock.
unsafe impl Send for Zone {}

/// The buddy allocator's state.
pub static ZONE: IrqMutex<Zone> = IrqMutex::new(Zone {
    lists: [FreeList {
        head: None,
        blocks: 0,
    }; NR_ORDERS],
    free_frames: 0,
});

/// The descriptor a link or list head points at.
fn at(p: NonNull<Page>) -> &'static Page {
    // SAFETY: links and list heads only ever hold descriptors of the frame
    // array, which lives for the rest of the run.
    unsafe { p.as_ref() }
}

impl Zone {
    fn push(&mut self, page: &'static Page, order: u32) {
        let l = &mut self.lists[order as usize];
        page.set_link_prev(None);
        page.set_link_next(l.head);
        if let Some(h) = l.head {
            at(h).set_link_prev(Some(NonNull::from(page)));
        }
        l.head = Some(NonNull::from(page));
        l.blocks += 1;
        page.set_private(u64::from(order));
        page.flags().set(PG_BUDDY);
        self.free_frames += 1 << order;
    }

    fn unlink(&mut self, page: &'static Page, order: u32) {
        let l = &mut self.lists[order as usize];
        let (next, prev) = (page.link_next(), page.link_prev());
        match prev {
            None => l.head = next,
            Some(p) => at(p).set_link_next(next),
        }
        if let Some(n) = next {
            at(n).set_link_prev(prev);
        }
        l.blocks -= 1;
        page.set_link_next(None);
        page.set_link_prev(None);
        page.set_private(0);
        page.flags().clear(PG_BUDDY);
        self.free_frames -= 1 << order;
    }

    /// Takes a block of `order` frames; returns its head's descriptor.
    pub fn alloc(&mut self, order: u32) -> Option<&'static Page> {
        let found = (order..=MAX_ORDER).find(|&o| self.lists[o as usize].head.is_some())?;
        let head = at(self.lists[found as usize].head?);
        self.unlink(head, found);
        let pfn = frame_array::pfn_of(head);
        // Split: give back the upper half at each order above the request.
        for o in (order..found).rev() {
            let upper =
                frame_array::page(pfn.add(1 << o)).expect("buddy: split half has no descriptor");
            self.push(upper, o);
        }
        Some(head)
    }

    /// Returns the block of `order` frames at `pfn`, merging with free
    /// buddies. The caller has checked the block (aligned, described, not
    /// reserved, count 0).
    pub fn free(&mut self, pfn: Pfn, mut order: u32) {
        let mut pfn = pfn.0;
        while order < MAX_ORDER {
            let buddy_pfn = Pfn(pfn ^ (1 << order));
            let Some(buddy) = frame_array::page(buddy_pfn) else {
                break;
            };
            if !buddy.flags().test(PG_BUDDY) || buddy.private() != u64::from(order) {
                break;
            }
            self.unlink(buddy, order);
            pfn &= !(1 << order);
            order += 1;
        }
        let head = frame_array::page(Pfn(pfn)).expect("buddy: freed block has no descriptor");
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
pub fn add_free_range(lo: Pfn, hi: Pfn) {
    for pfn in lo.0..hi.0 {
        let p = frame_array::page(Pfn(pfn)).expect("buddy: usable frame has no descriptor");
        debug_assert!(p.flags().test(PG_RESERVED));
        // SAFETY: boot, one CPU: nobody else can see the frame yet.
        unsafe {
            p.flags().store_unshared(0);
            p.set_ref_count_unshared(0);
        }
    }
    let mut zone = ZONE.lock();
    let (mut pfn, hi) = (lo.0, hi.0);
    while pfn < hi {
        let mut order = MAX_ORDER;
        while order > 0 && (pfn & ((1 << order) - 1) != 0 || pfn + (1 << order) > hi) {
            order -= 1;
        }
        zone.free(Pfn(pfn), order);
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
