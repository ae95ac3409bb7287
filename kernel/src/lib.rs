//! The pcs kernel: a bare-metal x86_64 kernel whose memory manager reproduces
//! the page-level synchronization of Linux's page cache.
//!
//! This crate is the kernel proper, as a library: every subsystem, and the
//! boot sequence ([`boot`]). It holds no test: the in-kernel suites,
//! tortures and benchmarks, and the frameworks that run them, are the
//! `suites` crate (`kernel/suites`), and the bootable image is the `image`
//! crate (`kernel/image`), which starts the kernel with [`boot`] and then
//! runs the selected mode. What stays here for the tests' sake is only what
//! must live beside the code it checks: `pagesync`'s known-bad variants
//! (`bug=`, never the default), the race points' jitter (debug builds
//! only), the block devices' failure injection and stable-page check, and
//! the hooks the suites register (the console's log observer, the panic
//! path's case namer).
//!
//! Boot order (each step may rely on the ones before it):
//! 1. serial console, so that everything after can report;
//! 2. GDT/TSS and IDT, so that every CPU exception ends in a report;
//! 3. the handlers that interrupt and exception entry calls
//!    ([`register_handlers`]), before interrupts are enabled or APs start;
//! 4. run-time parameters from QEMU's fw_cfg, rejected loudly when malformed;
//! 5. memory, time, the CPUs, the scheduler, the page-lock table;
//! 6. the PCI functions and the block devices (which complete requests by
//!    interrupt, so every CPU is up and taking interrupts first);
//! 7. (the image's part) the selected mode: the in-kernel KTAP test suites
//!    (default), the benchmarks, or idle.
//!
//! Every run ends through [`arch::qemu::exit`] with a status the host runner
//! checks; a run never ends by falling off the end of the image's main.

#![no_std]
#![feature(abi_x86_interrupt)]

extern crate alloc;

pub mod arch;
pub mod block;
pub mod config;
pub mod console;
pub mod gup;
pub mod lockdep;
pub mod mm;
pub mod pagecache;
pub mod pagelock;
pub mod panic;
pub mod params;
pub mod sched;
pub mod smp;
pub mod sync;
pub mod vm;

use bootloader_api::{
    BootInfo, BootloaderConfig,
    config::{Mapping, Mappings},
};

use crate::arch::qemu::{ExitCode, exit};

/// Size of the boot CPU's kernel stack, set up by the bootloader with a guard
/// page below it. 256 KiB leaves ample room for the test suites' frames.
pub const KERNEL_STACK_SIZE: u64 = 256 * 1024;

/// The first address of the upper (kernel) half of the canonical address
/// space: top-level page-table slots 256..512.
pub const KERNEL_HALF_START: u64 = 0xffff_8000_0000_0000;

/// What we ask of the bootloader: all physical memory mapped at an offset the
/// bootloader picks (read back from `BootInfo::physical_memory_offset`), and
/// a kernel stack of [`KERNEL_STACK_SIZE`]. Everything the bootloader places
/// (kernel image, stack, boot info, physical map) goes in the upper half
/// ([`KERNEL_HALF_START`]), so that the lower half is free for the address
/// spaces of `vm`, which share only the upper-half top-level entries.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut mappings = Mappings::new_default();
    mappings.physical_memory = Some(Mapping::Dynamic);
    mappings.dynamic_range_start = Some(KERNEL_HALF_START);
    let mut config = BootloaderConfig::new_default();
    config.mappings = mappings;
    config.kernel_stack_size = KERNEL_STACK_SIZE;
    config
};

/// The version string in the banner; the host tests look for the banner.
pub const BANNER: &str = concat!("pcs kernel ", env!("CARGO_PKG_VERSION"));

mod bringup_fmt {
    /// Formats the average AP bring-up time, if any AP started.
    pub struct Avg(pub u64);
    impl core::fmt::Display for Avg {
        fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            if self.0 > 0 {
                write!(f, " (AP bring-up {} us each on average)", self.0 / 1000)
            } else {
                Ok(())
            }
        }
    }
}

/// Connects the hardware entry points to the subsystems that handle them.
/// The architecture code names none of them: it calls what is registered
/// here. Runs on the boot CPU with interrupts off and before any AP starts,
/// which is what makes the registrations visible everywhere (see
/// `arch::handlers`). Each handler copes with being called before
/// its subsystem is initialised (the scheduler ignores ticks until its run
/// queue is active; the watchdog claims only the NMIs it sent).
fn register_handlers() {
    use arch::handlers;
    handlers::register_fatal(panic::fatal_exception, panic::is_dying);
    handlers::register_tick(sched::tick);
    handlers::register_reschedule(sched::reschedule_ipi);
    handlers::register_call_function(smp::handle_call_ipi);
    handlers::register_nmi(sched::watchdog::nmi);
    handlers::register_page_fault(vm::handle_page_fault);
    handlers::register_idle(sched::idle_loop);
}

/// Boots the kernel (module docs, steps 1 to 6) on the boot CPU and
/// returns the run's parameters; the caller (the image) runs the mode.
/// Bad parameters end the run here, with the help for them.
pub fn boot(boot_info: &'static mut BootInfo) -> params::Params {
    arch::init_boot_cpu();
    // Every spin lock from here on is order-checked (debug builds).
    lockdep::init();
    console::init();
    register_handlers();
    println!("{BANNER}: page-cache synchronization on x86_64");

    let params = match params::load() {
        Ok(p) => p,
        Err(e) => {
            // The same message and help the host prints when it checks the
            // string before booting (both come from the contract).
            log::error!("bad kernel parameters: {e}");
            match e.key() {
                Some(key) => log::error!("{}", key.help()),
                None => {
                    log::error!("the parameters are:");
                    print!("{}", contract::params::TextTable);
                }
            }
            exit(ExitCode::BadParams);
        }
    };
    console::set_level(params.loglevel);
    log::info!(
        "boot: physical memory at offset {:#x}, {} memory regions, rsdp {:?}",
        boot_info.physical_memory_offset.into_option().unwrap_or(0),
        boot_info.memory_regions.len(),
        boot_info.rsdp_addr.into_option()
    );
    log::info!("parameters: {}", params.given.effective());
    arch::paging::init(
        boot_info
            .physical_memory_offset
            .into_option()
            .expect("physical memory mapping"),
    );
    mm::init(boot_info, params.pcp);

    let tsc_hz = arch::time::init();
    log::info!(
        "time: TSC {}.{:03} MHz (calibrated against the PIT), invariant TSC: {}",
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        if arch::time::invariant_tsc() {
            "yes"
        } else {
            "no"
        }
    );
    let up = arch::smp::init(
        &boot_info.memory_regions,
        boot_info.rsdp_addr.into_option(),
        params.hz,
        params.ap_skip,
    );
    x86_64::instructions::interrupts::enable();
    sched::init();
    sched::watchdog::set_lockup_limit_ms(params.lockup_ms);
    vm::init();
    pagelock::init(&params);
    pagecache::init(params.readahead);
    let started: u64 = up.ap_ns.iter().sum();
    let aps = up.online.saturating_sub(1) as u64;
    log::info!(
        "cpus online: {}/{}{}",
        up.online,
        up.present,
        bringup_fmt::Avg(started.checked_div(aps).unwrap_or(0))
    );

    let functions = arch::pci::enumerate();
    log::info!("pci: {} functions", functions.len());
    for f in &functions {
        log::info!("pci: {f}");
    }
    block::init(&functions, params.ramdisk_mb);
    drop(functions);

    params
}
