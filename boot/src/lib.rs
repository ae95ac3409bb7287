//! Host side of the pcs kernel: everything between `cargo` and a verdict.
//!
//! - [`build`]: compiles the kernel ELF for `x86_64-unknown-none`;
//! - [`image`]: turns it into BIOS/UEFI disk images with the `bootloader`
//!   crate, rebuilding only when the kernel changed;
//! - [`qemu`]: the one QEMU runner (deadline, logs, exit-status decoding);
//! - [`ktap`]: the one KTAP parser (nested subtests, truncated runs);
//! - [`verdict`]: combines an exit status and a KTAP report into pass/fail.
//!
//! `xtask` and the integration tests in `tests/` both use this crate, so
//! there is exactly one runner and one parser.

pub mod build;
pub mod image;
pub mod ktap;
pub mod qemu;
pub mod symbolize;
pub mod verdict;

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
