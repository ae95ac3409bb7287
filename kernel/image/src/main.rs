//! The bootable pcs kernel: the bootloader's entry point, the kernel's boot
//! sequence (`kernel::boot`), then the mode the parameters select.
//!
//! Mental model: the kernel proper (`kernel`) knows nothing of its tests;
//! the suites (`suites`, behind the `suites` feature, on by default) know
//! the kernel. This crate is where the two meet, and the only place that
//! names both. Built without the feature, the image is the kernel alone:
//! `mode=idle` boots and exits, and `mode=test` or `mode=bench` ends the
//! run saying the image has no suites.

#![no_std]
#![no_main]

use bootloader_api::{BootInfo, entry_point};
use kernel::{
    arch::qemu::{ExitCode, exit},
    params::Mode,
};

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

fn main(boot_info: &'static mut BootInfo) -> ! {
    let params = kernel::boot(boot_info);
    let ok = match params.mode {
        Mode::Idle => {
            log::info!("mode=idle: nothing to run; exiting");
            true
        }
        #[cfg(feature = "suites")]
        Mode::Test => suites::run_tests(&params),
        #[cfg(feature = "suites")]
        Mode::Bench => suites::run_benches(&params),
        #[cfg(not(feature = "suites"))]
        mode => {
            log::error!(
                "mode={}: this image was built without the test suites and benchmarks (kernel/image's `suites` feature)",
                mode.name()
            );
            false
        }
    };
    exit(if ok {
        ExitCode::Success
    } else {
        ExitCode::TestsFailed
    })
}
