//! Per-CPU state, reached through the GS base.
//!
//! Each CPU's `IA32_GS_BASE` points at its own [`PerCpu`], whose first word
//! points at itself, so `gs:[0]` gives the structure and `gs:[8]` the CPU
//! index in one instruction each. Slots are statically allocated for up to
//! [`MAX_CPUS`] CPUs; the index is the order in which CPUs came up (0 = boot
//! CPU), not the APIC id.
//!
//! Migration: a reference to "this CPU's" data is only meaningful while the
//! code cannot move to another CPU. [`this_cpu`] therefore takes a
//! [`CpuGuard`] (interrupts disabled, so neither preemption nor migration can
//! happen) and ties the reference's lifetime to it. [`cpu_index`] returns a
//! plain number for logging, which may be stale after the next preemption.

use core::{
    cell::UnsafeCell,
    marker::PhantomData,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

use x86_64::{VirtAddr, registers::model_specific::GsBase};

use super::gdt::{CpuTables, IstStacks};
use crate::config::MAX_CPUS;

#[repr(C, align(64))]
pub struct PerCpu {
    /// Address of this structure (read as `gs:[0]`).
    self_addr: AtomicU64,
    /// CPU index (read as `gs:[8]`). Set at compile time, never changes.
    index: usize,
    /// Local APIC id of the CPU in this slot.
    pub apic_id: AtomicU32,
    /// Set (Release) by the CPU itself once it is fully up; paired with the
    /// Acquire loads in `smp` that count online CPUs.
    pub online: AtomicBool,
    /// Local APIC timer interrupts taken on this CPU.
    pub ticks: AtomicU64,
    /// Pending function-call request for this CPU (see `crate::smp`).
    pub call: AtomicPtr<()>,
    /// The thread running on this CPU (for the scheduler).
    pub current_thread: AtomicPtr<()>,
    /// Scratch counter for tests (each CPU increments its own).
    pub test_counter: AtomicU64,
    /// Test IPIs (`apic::PING_VECTOR`) received.
    pub pings: AtomicU64,
    /// CPU to answer each ping to (ping-pong tests), or `usize::MAX`.
    pub pong_to: AtomicUsize,
    /// TSC when this CPU reached its Rust entry.
    pub boot_tsc: AtomicU64,
    /// Device interrupts (any line) taken on this CPU.
    pub device_irqs: AtomicU64,
    /// Depth of device-interrupt handlers running on this CPU (0 or 1:
    /// they run with interrupts off). Only the CPU itself changes or reads
    /// its own, with interrupts off, so Relaxed.
    pub irq_depth: AtomicU32,
    tables: UnsafeCell<CpuTables>,
}

// SAFETY: all fields but `tables` are atomics or immutable; `tables` is
// written once by the owning CPU in `init_cpu` before it is marked online.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new(index: usize) -> PerCpu {
        PerCpu {
            self_addr: AtomicU64::new(0),
            index,
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            call: AtomicPtr::new(core::ptr::null_mut()),
            current_thread: AtomicPtr::new(core::ptr::null_mut()),
            test_counter: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            pong_to: AtomicUsize::new(usize::MAX),
            boot_tsc: AtomicU64::new(0),
            device_irqs: AtomicU64::new(0),
            irq_depth: AtomicU32::new(0),
            tables: UnsafeCell::new(CpuTables::new()),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

const fn all_slots() -> [PerCpu; MAX_CPUS] {
    let mut slots = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        slots[i].index = i;
        i += 1;
    }
    slots
}

static CPUS: [PerCpu; MAX_CPUS] = all_slots();
/// IST stacks, kept apart from `CPUS` so that they stay in `.bss`.
static IST: [IstStacks; MAX_CPUS] = [const { IstStacks::new() }; MAX_CPUS];

/// Slot `i` (any CPU's).
pub fn cpu(i: usize) -> &'static PerCpu {
    &CPUS[i]
}

/// Makes slot `index` the calling CPU's: sets GS base, loads its GDT/TSS.
///
/// # Safety
/// Call once per slot, on the CPU that will own it, before it takes
/// interrupts.
pub unsafe fn init_cpu(index: usize, apic_id: u32) {
    let slot = &CPUS[index];
    slot.self_addr
        .store(slot as *const PerCpu as u64, Ordering::Relaxed);
    slot.apic_id.store(apic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(slot));
    // SAFETY: the caller guarantees this CPU is the only user of the slot's
    // tables, and this is the only time they are loaded.
    let tables = unsafe { &mut *slot.tables.get() };
    tables.load(&IST[index]);
}

/// The calling CPU's index. Valid from the first line of `kernel_main` (the
/// boot CPU's GS is set before anything else). Possibly stale once the
/// caller can be preempted and migrated; use [`this_cpu`] for state.
#[inline]
pub fn cpu_index() -> usize {
    let i: usize;
    // SAFETY: GS points at this CPU's PerCpu, whose second word is `index`.
    unsafe {
        core::arch::asm!("mov {}, gs:[8]", out(reg) i, options(nostack, readonly, preserves_flags))
    };
    i
}

/// Proof that the holder cannot migrate: interrupts are off until it drops.
/// Nests: the previous interrupt state is restored on drop.
pub struct CpuGuard {
    were_enabled: bool,
    _not_send: PhantomData<*const ()>,
}

impl CpuGuard {
    pub fn new() -> CpuGuard {
        let were_enabled = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        CpuGuard {
            were_enabled,
            _not_send: PhantomData,
        }
    }
}

impl Drop for CpuGuard {
    fn drop(&mut self) {
        if self.were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// Whether the caller runs inside a device-interrupt handler on this CPU.
/// Meaningful from any context: a thread that is not in such a handler
/// reads 0 on whatever CPU it runs, since handlers never switch threads.
pub fn in_device_irq() -> bool {
    let g = CpuGuard::new();
    this_cpu(&g).irq_depth.load(Ordering::Relaxed) > 0
}

/// This CPU's state, valid as long as `guard` keeps us on this CPU.
pub fn this_cpu(_guard: &CpuGuard) -> &PerCpu {
    &CPUS[cpu_index()]
}
