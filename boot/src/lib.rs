//! Host side of the pcs kernel: everything between `cargo` and a verdict.
//!
//! - [`Run`]: the one way to boot the kernel (a builder: settings, then
//!   build once per process, boot, verdict);
//! - [`contract`]: the host-kernel contract (exit statuses, console
//!   markers, the parameter table and parser), re-exported;
//! - [`build`]: compiles the kernel ELF for `x86_64-unknown-none`;
//! - [`disk`]: the virtio-blk data disk a run attaches;
//! - [`image`]: turns it into BIOS/UEFI disk images with the `bootloader`
//!   crate, rebuilding only when the kernel changed;
//! - [`qemu`]: the one QEMU runner (deadline, logs, exit-status decoding);
//! - [`qmp`]: QEMU's view of every vCPU, for a kernel gone silent;
//! - [`ktap`]: the one KTAP parser (nested subtests, truncated runs);
//! - [`verdict`]: combines an exit status and a KTAP report into pass/fail;
//! - [`symbolize`]: names the functions of a kernel backtrace;
//! - [`toolchain`]: the toolchain's LLVM tools;
//! - [`bench`]: benchmark results as data (JSON schema, CSV, tables),
//!   [`plot`]: their SVG plots, [`sweep`]: parameter sweeps, [`compare`]:
//!   two configurations compared with a verdict per metric;
//! - [`progress`]: the live progress display;
//! - [`junit`]: test results as JUnit XML for CI dashboards.
//!
//! `xtask` and the integration tests in `tests/` both use this crate, so
//! there is exactly one runner and one parser.

pub mod bench;
pub mod build;
pub mod compare;
pub mod disk;
pub mod hunt;
pub mod image;
pub mod junit;
pub mod ktap;
pub mod plot;
pub mod progress;
pub mod qemu;
pub mod qmp;
mod run;
pub mod sweep;
pub mod symbolize;
pub mod toolchain;
pub mod verdict;

pub use contract;
pub use disk::Disk;
pub use run::{BadParams, Run};

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/boot`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("boot/ has a parent")
        .to_path_buf()
}

/// `<root>/target`, where all artifacts and run logs go.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}
