//! Compile-time limits of the kernel, in one place at the bottom of the
//! dependency graph: the architecture code, the memory manager, the
//! scheduler and the SMP layer all size their per-CPU tables from here.
//!
//! Run-time choices (tick rate, per-CPU caches on or off, wait-table size)
//! are boot parameters instead (`params`).

/// The most CPUs the kernel runs on: per-CPU slots, AP stacks, run queues,
/// frame caches and watchdog state are statically sized by it. Firmware
/// listing more enabled CPUs gets the first `MAX_CPUS` started and the rest
/// reported. At most 64, because CPU sets are `u64` bit masks
/// (`smp::run_on_cpus`).
pub const MAX_CPUS: usize = 64;
