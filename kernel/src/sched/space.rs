//! Threads that run in an address space: which top-level page table a CPU
//! has loaded, and which CPUs may hold a space's translations.
//!
//! Mental model: a thread may carry an address space ([`ThreadSpace`],
//! implemented by `crate::vm::AddressSpace`; the scheduler never names it).
//! Invariant, kept with interrupts off by [`switch_mm`] and [`set_space`]:
//! **CR3 on a CPU is the root of its current thread's space, or the kernel
//! root when the thread has none.** So a space is loaded only where a thread
//! holding a strong reference to it runs, and its page tables cannot be freed
//! under a CPU. Switching to a thread without a space loads the kernel root
//! at once (no lazy TLB), which also flushes the old space's translations.
//!
//! Each space keeps the set of CPUs that may hold its translations
//! ([`ThreadSpace::cpus`], bit i = CPU i): a CPU sets its bit *before* it
//! loads the space's root and clears it *after* it has loaded another root
//! (the CR3 write flushes every non-global entry; user mappings are never
//! global). A TLB shoot-down reads the set after changing the page table:
//!
//! ```text
//! CPU switching in (switch_mm)           CPU unmapping (vm)
//! lock or cpus |= me     (full barrier)  xchg pte <- 0      (full barrier)
//! mov cr3, root; page walks read ptes    load cpus; IPI every CPU in it
//! ```
//!
//! Both sides are a locked RMW followed by a load (the page walk reads
//! after the serialising CR3 write), so at least one sees the other: the
//! unmapper IPIs us, or our walks see the cleared entry. A CPU whose bit is
//! clear holds nothing of the space, since it cleared the bit only after
//! its CR3 switched away.

use alloc::sync::Arc;
use core::{
    any::Any,
    sync::atomic::{AtomicU64, Ordering},
};

use super::current;
use crate::arch::{paging, percpu};

/// What the scheduler needs from an address space.
pub trait ThreadSpace: Send + Sync + 'static {
    /// Physical address of the space's top-level page table.
    fn root(&self) -> u64;
    /// The CPUs that may hold translations of this space (bit i = CPU i).
    /// Only [`switch_mm`] changes it.
    fn cpus(&self) -> &AtomicU64;
    /// The space as `Any`, so its owner can get its own type back.
    fn as_any(&self) -> &dyn Any;
}

/// A counted reference to a thread's address space.
pub type SpaceRef = Arc<dyn ThreadSpace>;

fn root_of(space: Option<&dyn ThreadSpace>) -> u64 {
    space.map_or_else(paging::kernel_root, |s| s.root())
}

/// Makes `cpu` (the calling CPU, interrupts off) leave `prev`'s space and
/// enter `next`'s: loads the new root and keeps both CPU sets right (module
/// docs). Nothing to do when both are the same table.
///
/// # Safety
///
/// Interrupts are off; `prev` is the space (or none) whose root is loaded
/// now; `next`'s space stays alive while it is loaded (its thread holds a
/// reference and runs here next).
pub(super) unsafe fn switch_mm(
    cpu: usize,
    prev: Option<&dyn ThreadSpace>,
    next: Option<&dyn ThreadSpace>,
) {
    let (from, to) = (root_of(prev), root_of(next));
    debug_assert_eq!(
        paging::current_root(),
        from,
        "CR3 is not the current thread's space"
    );
    if from == to {
        return;
    }
    let bit = 1u64 << cpu;
    if let Some(n) = next {
        // SeqCst (a locked RMW, a full barrier) before the CR3 write: pairs
        // with the shoot-down's PTE exchange and its load of the set (module
        // docs).
        n.cpus().fetch_or(bit, Ordering::SeqCst);
    }
    // SAFETY: every root maps the kernel's upper half (spaces copy it), and
    // `next` stays alive while loaded (the caller's contract).
    unsafe { paging::load_root(to) };
    if let Some(p) = prev {
        // After the CR3 write: from here on this CPU holds nothing of `p`,
        // so a shoot-down that reads the bit clear may skip it. SeqCst as
        // above (a locked RMW either way).
        p.cpus().fetch_and(!bit, Ordering::SeqCst);
    }
}

/// The calling thread's address space, if it has one (also from an
/// exception handler; `None` before the scheduler runs on this CPU).
pub fn current_space() -> Option<SpaceRef> {
    let g = percpu::CpuGuard::new();
    let p = percpu::this_cpu(&g).current_thread.load(Ordering::Relaxed) as *const super::Thread;
    if p.is_null() {
        return None;
    }
    // SAFETY: the current thread is alive (its run queue holds it) and only
    // it writes its `space`, which it is not doing: we are it, with
    // interrupts off.
    unsafe { (*(*p).space.get()).clone() }
}

/// Moves the calling thread into `space` (or out of any, with `None`):
/// loads the new root at once and returns the previous space. Drop the
/// result with interrupts enabled: it may be the last reference, and
/// tearing a space down may take locks.
pub fn set_space(space: Option<SpaceRef>) -> Option<SpaceRef> {
    let me = current();
    let g = percpu::CpuGuard::new();
    let cpu = percpu::this_cpu(&g).index();
    // SAFETY: only the thread itself writes its `space`, with interrupts
    // off, and the scheduler of its CPU reads it only with interrupts off on
    // this CPU: nobody else touches it now.
    let slot = unsafe { &mut *me.space.get() };
    // SAFETY: interrupts are off (g); `slot` is what CR3 holds now (module
    // invariant), and `space` stays alive in `slot` while loaded.
    unsafe { switch_mm(cpu, slot.as_deref(), space.as_deref()) };
    let old = core::mem::replace(slot, space);
    drop(g);
    old
}
