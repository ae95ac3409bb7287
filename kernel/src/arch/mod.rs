//! Architecture code. Only x86_64 exists; everything outside `arch/` reaches
//! the hardware through the functions re-exported here.

pub mod x86_64;

pub use self::x86_64::{cpu_index, halt_forever, init_boot_cpu, qemu, without_interrupts};
