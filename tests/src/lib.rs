//! Defaults for the integration tests: every test boots through the one
//! runner, `boot::Run` (which builds the kernel once per test binary), with
//! the settings below, and reports a failed check with the whole serial log.
//! [`torture`] is the host's check of a disk image against the writeback
//! torture's manifest, [`crash`] the replay of a write log against what
//! each `sync` promised.

pub mod crash;
pub mod torture;

use std::time::Duration;

use boot::{Run, qemu::Outcome};

/// A run with the tests' defaults: two CPUs (parallel test boots stay
/// affordable on a 2-core host), 256 MiB, a 240 s deadline.
pub fn boot(name: &str) -> Run {
    Run::new(name)
        .smp(2)
        .mem("256M")
        .timeout(Duration::from_secs(240))
}

/// Panics with the whole serial log when `cond` is false.
#[track_caller]
pub fn check(cond: bool, what: &str, out: &Outcome) {
    if !cond {
        panic!(
            "{what}\nexit: {}\nserial log ({}):\n{}",
            out.exit,
            out.serial_log.display(),
            out.lines.join("\n")
        );
    }
}
