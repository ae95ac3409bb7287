//! Architecture code. Only x86_64 exists. Everything outside `arch/`
//! reaches the hardware through this module's re-exports
//! (`crate::arch::time`, `crate::arch::percpu`, ...), never through
//! `arch::x86_64` by name: a second architecture would provide the same
//! modules and functions, and only this file would change.

pub mod x86_64;

pub use self::x86_64::{
    apic, cpu_index, frames, fw_cfg, halt_forever, handlers, init_boot_cpu, ioapic, paging, pci,
    percpu, qemu, serial, smp, time, without_interrupts,
};
