//! x86_64 support: serial port, descriptor tables, exceptions, APICs (local
//! and I/O), PCI configuration space, SMP bring-up, per-CPU state, time,
//! QEMU devices.

pub mod acpi;
pub mod apic;
pub mod exceptions;
pub mod frames;
pub mod fw_cfg;
pub mod gdt;
pub mod handlers;
pub mod interrupts;
pub mod ioapic;
pub mod paging;
pub mod pci;
pub mod percpu;
pub mod qemu;
pub mod serial;
pub mod smp;
pub mod time;
mod trampoline;

pub use percpu::cpu_index;

/// The boot CPU's first steps: per-CPU slot 0 (GS base, GDT/TSS), then the
/// IDT. Must run before anything that prints, so `cpu_index()` works.
pub fn init_boot_cpu() {
    // CPUID leaf 1, EBX[31:24]: the initial APIC id.
    let apic_id = core::arch::x86_64::__cpuid(1).ebx >> 24;
    // SAFETY: first and only initialisation of slot 0, on the boot CPU,
    // with interrupts still disabled by the bootloader.
    unsafe { percpu::init_cpu(0, apic_id) };
    exceptions::init();
}

/// Runs `f` with maskable interrupts disabled, restoring the previous state.
#[inline]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    ::x86_64::instructions::interrupts::without_interrupts(f)
}

/// Stops this CPU for good: interrupts off, then `hlt` forever.
pub fn halt_forever() -> ! {
    loop {
        ::x86_64::instructions::interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}
