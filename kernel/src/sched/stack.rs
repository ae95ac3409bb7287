//! Kernel thread stacks with guard pages.
//!
//! Stacks live in their own virtual area (a free top-level slot of the
//! upper half), mapped with 4 KiB pages: each slot is an unmapped guard page
//! followed by the stack, so an overflow faults (and the double-fault
//! handler, on its IST stack, reports it) instead of corrupting memory.
//!
//! A freed stack is kept, still mapped, on a free list and reused by the
//! next thread. Unmapping would need a TLB shoot-down on every CPU before
//! the frames or the virtual slot could be reused; caching avoids that, at
//! the cost of keeping the peak number of stacks allocated.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{
    arch::paging,
    mm::{AllocFlags, alloc_pages},
    sync::IrqMutex,
};

/// Stack size of a thread (without the guard page).
pub const STACK_SIZE: u64 = 16 * 1024;
/// Virtual size of one slot: guard page + stack.
const SLOT: u64 = STACK_SIZE + 4096;

static AREA_BASE: AtomicU64 = AtomicU64::new(0);
struct Area {
    next_slot: u64,
    free: Vec<u64>,
}
static AREA: IrqMutex<Area> = IrqMutex::new(Area {
    next_slot: 0,
    free: Vec::new(),
});
/// Stacks ever created (mapped), for the report.
pub static CREATED: AtomicU64 = AtomicU64::new(0);
/// Frames ever taken for stacks and their page tables (never given back).
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// Frames held by the stack area: stacks and the page tables mapping them
/// (they only grow; tests that account for every frame count them).
pub fn frames() -> u64 {
    FRAMES.load(Ordering::Relaxed)
}

pub fn init() {
    let base =
        paging::free_upper_half_slot().expect("no free top-level page-table slot for stacks");
    AREA_BASE.store(base, Ordering::Relaxed);
}

/// A thread's stack: `[bottom, top)`, with an unmapped guard page below.
pub struct Stack {
    pub bottom: u64,
    pub top: u64,
}

fn zeroed_frame() -> Option<u64> {
    let p = alloc_pages(0, AllocFlags::ZERO)?;
    let phys = p.phys();
    // Page-table and stack frames are never freed (see the module doc).
    let _ = p.into_raw();
    FRAMES.fetch_add(1, Ordering::Relaxed);
    Some(phys)
}

/// Allocates a stack, reusing a freed one when possible.
pub fn alloc() -> Option<Stack> {
    let mut area = AREA.lock();
    let bottom = match area.free.pop() {
        Some(b) => b,
        None => {
            let slot = area.next_slot;
            let bottom = AREA_BASE.load(Ordering::Relaxed) + slot * SLOT + 4096;
            for page in 0..STACK_SIZE / 4096 {
                let frame = zeroed_frame()?;
                if paging::map_4k(bottom + page * 4096, frame, &mut zeroed_frame).is_err() {
                    return None;
                }
            }
            area.next_slot += 1;
            CREATED.fetch_add(1, Ordering::Relaxed);
            bottom
        }
    };
    Some(Stack {
        bottom,
        top: bottom + STACK_SIZE,
    })
}

/// Returns a stack for reuse. Must not be the stack we are running on.
pub fn free(stack: Stack) {
    AREA.lock().free.push(stack.bottom);
}
