//! Per-CPU caches of free single frames ("pcp lists", Linux
//! `struct per_cpu_pages`).
//!
//! Mental model: each CPU keeps a small LIFO stack of free order-0 frames.
//! Allocating or freeing one frame touches only this CPU's stack; the
//! shared buddy lock is taken once per [`BATCH`] frames, to refill an empty
//! stack or to drain one that grew past [`HIGH`]. Recently freed frames
//! are handed out first, while they are still in this CPU's cache.
//!
//! Each stack has its own [`IrqMutex`], as Linux's `pcp->lock` has since
//! 5.19: on the owning CPU it is uncontended (one cache line that never
//! leaves the CPU), its interrupt-disabling keeps an interrupt handler on
//! the same CPU out, and it lets another CPU drain the stack
//! ([`drain_all`]) for exact accounting or when the caches are switched off.
//! The lock order is stack, then buddy ([`super::buddy::ZONE`]); the whole
//! kernel's order is in [`crate::sync`].
//!
//! Frames on a stack have count 0 and no flags; they are linked through
//! their descriptors' next link.

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use pagesync::Page;

use super::{buddy::ZONE, frame_array};
use crate::{config::MAX_CPUS, sync::IrqMutex};

/// Frames moved between a stack and the buddy lists at a time.
pub const BATCH: u64 = 31;
/// A stack longer than this is drained by one batch.
pub const HIGH: u64 = 4 * BATCH;

struct Stack {
    /// Top descriptor, None = empty.
    top: Option<NonNull<Page>>,
}

// SAFETY: the stack only holds frame-array descriptors, which live for the
// rest of the run; it is only touched under its lock.
unsafe impl Send for Stack {}

#[repr(align(64))]
struct PerCpuCache {
    stack: IrqMutex<Stack>,
    /// Frames on the stack. Written under the lock, read Relaxed by
    /// [`cached_frames`] (a snapshot; exact only when all CPUs are quiet).
    count: AtomicU64,
}

static CACHES: [PerCpuCache; MAX_CPUS] = [const {
    PerCpuCache {
        stack: IrqMutex::new(Stack { top: None }),
        count: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Whether order-0 allocations go through the caches. Relaxed: a CPU that
/// sees a stale value uses or skips its cache once more, which is harmless
/// (frames left in a cache are still counted and drained by [`drain_all`]).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Are the caches in use?
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Switches the caches on or off; switching off drains them all.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
    if !on {
        drain_all();
    }
}

fn at(p: NonNull<Page>) -> &'static Page {
    // SAFETY: stack links only hold frame-array descriptors, which live for
    // the rest of the run.
    unsafe { p.as_ref() }
}

fn this_cache() -> &'static PerCpuCache {
    // The index may be stale if we migrate right after reading it; the lock
    // keeps even a remote access correct.
    &CACHES[crate::arch::cpu_index()]
}

fn pop(stack: &mut Stack, count: &AtomicU64) -> Option<&'static Page> {
    let p = at(stack.top?);
    stack.top = p.link_next();
    p.set_link_next(None);
    count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    Some(p)
}

fn push(stack: &mut Stack, count: &AtomicU64, p: &'static Page) {
    p.set_link_next(stack.top);
    stack.top = Some(NonNull::from(p));
    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Takes one free frame from this CPU's cache, refilling it from the buddy
/// lists if empty. None when memory is exhausted.
pub fn alloc() -> Option<&'static Page> {
    let c = this_cache();
    let mut stack = c.stack.lock();
    if stack.top.is_none() {
        let mut zone = ZONE.lock();
        for _ in 0..BATCH {
            match zone.alloc(0) {
                Some(p) => push(&mut stack, &c.count, p),
                None => break,
            }
        }
    }
    pop(&mut stack, &c.count)
}

/// Puts a checked free frame on this CPU's cache, draining a batch to the
/// buddy lists when the cache is over [`HIGH`].
pub fn free(p: &'static Page) {
    let c = this_cache();
    let mut stack = c.stack.lock();
    push(&mut stack, &c.count, p);
    if c.count.load(Ordering::Relaxed) > HIGH {
        let mut zone = ZONE.lock();
        for _ in 0..BATCH {
            let p = pop(&mut stack, &c.count).expect("count > HIGH");
            zone.free(frame_array::pfn_of(p), 0);
        }
    }
}

/// Moves every cached frame of every CPU back to the buddy lists.
pub fn drain_all() {
    for c in &CACHES {
        let mut stack = c.stack.lock();
        if stack.top.is_none() {
            continue;
        }
        let mut zone = ZONE.lock();
        while let Some(p) = pop(&mut stack, &c.count) {
            zone.free(frame_array::pfn_of(p), 0);
        }
    }
}

/// Runs `f` with every CPU's cache locked and drained into the buddy
/// lists, and the buddy lock held: no frame can be allocated or freed
/// anywhere until `f` returns (interrupts are off on this CPU meanwhile),
/// so `f` sees the allocator's state exactly. Lock order: every stack in
/// CPU order, then the buddy lists, as everywhere else.
pub fn with_all_drained<R>(f: impl FnOnce(&mut super::buddy::Zone) -> R) -> R {
    let mut stacks: [Option<crate::sync::IrqMutexGuard<'_, Stack>>; MAX_CPUS] =
        [const { None }; MAX_CPUS];
    for (g, c) in stacks.iter_mut().zip(&CACHES) {
        *g = Some(c.stack.lock());
    }
    let mut zone = ZONE.lock();
    for (g, c) in stacks.iter_mut().zip(&CACHES) {
        let stack = g.as_mut().expect("locked above");
        while let Some(p) = pop(stack, &c.count) {
            zone.free(frame_array::pfn_of(p), 0);
        }
    }
    let r = f(&mut zone);
    drop(zone);
    // The stacks unlock in reverse order, restoring the interrupt state
    // each saved (`crate::sync`).
    for g in stacks.iter_mut().rev() {
        drop(g.take());
    }
    r
}

/// Frames sitting in all caches (a snapshot).
pub fn cached_frames() -> u64 {
    CACHES.iter().map(|c| c.count.load(Ordering::Relaxed)).sum()
}
