//! x86_64 support: serial port, descriptor tables, exceptions, QEMU devices.

pub mod exceptions;
pub mod fw_cfg;
pub mod gdt;
pub mod qemu;
pub mod serial;

/// Index of the CPU running this code (0 = boot CPU). Until the SMP bring-up
/// exists only the boot CPU runs.
#[inline]
pub fn cpu_index() -> usize {
    0
}

/// Descriptor tables and exception handlers for the boot CPU.
pub fn init_boot_cpu() {
    gdt::init_boot_cpu();
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
