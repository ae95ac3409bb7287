//! Building the kernel ELF.
//!
//! The kernel is built by a nested `cargo build` into its own target
//! directory (`target/kernel`), so that it never waits on the lock of the
//! `cargo test` or `cargo run` that invoked us.

use std::{
    io,
    path::PathBuf,
    process::{Command, Stdio},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }
}

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Directory holding the kernel build for `profile`.
pub fn kernel_out_dir(profile: Profile) -> PathBuf {
    crate::target_dir()
        .join("kernel")
        .join(KERNEL_TARGET)
        .join(profile.dir())
}

/// Builds the kernel and returns the path of its ELF. Cargo's output goes to
/// our stderr when `verbose`, and is captured (and returned in the error)
/// otherwise.
pub fn kernel(profile: Profile, verbose: bool) -> io::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args(["build", "--package", "image", "--target", KERNEL_TARGET])
        .env("CARGO_TARGET_DIR", crate::target_dir().join("kernel"))
        // Flags meant for host builds (say `--cfg loom`) must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if profile == Profile::Release {
        // Thin LTO, for the kernel alone (host builds, loom's included, keep
        // the workspace profile): the protocol lives in `pagesync`, the
        // kernel proper and the suites are crates of their own, and without
        // LTO the page-lock and pin fast paths are calls across crates.
        // Measured (`docs/bench/compare-lto/`): lock+unlock 0.59x the time,
        // GUP pins 0.40-0.55x, `fault_in` 0.85x.
        cmd.arg("--release")
            .env("CARGO_PROFILE_RELEASE_LTO", "thin");
    }
    let out = if verbose {
        cmd.stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .output()?
    } else {
        cmd.arg("--quiet").output()?
    };
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "kernel build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(kernel_out_dir(profile).join("kernel"))
}
