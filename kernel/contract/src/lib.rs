//! The contract between the pcs kernel and the host that runs it, written
//! once and compiled into both sides.
//!
//! Mental model: the kernel and the host (`boot`, `xtask`, the integration
//! tests) talk through exactly these channels, and everything either side
//! must agree on about them lives here:
//!
//! 1. the **parameter string** the host hands over in the fw_cfg file
//!    [`FW_CFG_NAME`] (at most [`PARAMS_MAX_LEN`] bytes), whose keys, types,
//!    defaults and help are the table in [`params`], parsed by the one
//!    parser [`params::parse`] (the kernel parses it at boot; the host parses
//!    it before it builds or boots anything, so a typo costs no QEMU run);
//! 2. the **console lines** the host looks for in the serial output
//!    ([`marker`]), among them the benchmark results ([`bench`]);
//! 3. the **exit status** the kernel writes to QEMU's `isa-debug-exit`
//!    device and the status QEMU then exits with ([`exit`]);
//! 4. the **glob syntax** of `filter=` and of a key's scope ([`glob`]);
//! 5. the **data on the virtio disk** that the persistence check writes in
//!    one boot and reads in the next, and the host reads from the image
//!    file ([`disk`]), and the pages of the writeback torture with the
//!    manifest the host checks the image against ([`torture`]).
//!
//! The crate is `no_std`, has no dependencies and no `unsafe`, so the kernel
//! can link it and the host can unit-test it.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod bench;
pub mod crash;
pub mod disk;
pub mod exit;
pub mod glob;
pub mod marker;
pub mod params;
pub mod rng;
pub mod torture;

pub use exit::{ExitCode, QemuStatus};

/// The fw_cfg file that carries the parameter string (`-fw_cfg
/// name=opt/pcs/cmdline,file=...` on QEMU's command line).
pub const FW_CFG_NAME: &str = "opt/pcs/cmdline";

/// The longest parameter string, in bytes, the kernel accepts (its buffer).
pub const PARAMS_MAX_LEN: usize = 4096;
