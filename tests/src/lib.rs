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

/// The boots a known-bad variant gets before its test gives up: its race
/// has no widening of its own, so one boot may miss it on a loaded host.
/// The first boot has the defaults' parameters, the later ones other
/// seeds with jitter at every race point (`jitter_rate=1`, the jitter's
/// own knob, not the variant's).
pub const KNOWN_BAD_BOOTS: [&[&str]; 3] = [
    &["seed=1"],
    &["seed=2", "jitter_rate=1"],
    &["seed=3", "jitter_rate=1"],
];

/// [`KNOWN_BAD_BOOTS`] with jitter at every race point from the first
/// boot on, for races that one boot at the default rate missed on a loaded
/// CI host.
pub const KNOWN_BAD_BOOTS_JITTER: [&[&str]; 3] = [
    &["seed=1", "jitter_rate=1"],
    &["seed=2", "jitter_rate=1"],
    &["seed=3", "jitter_rate=1"],
];

/// Boots `run(extra)` for each parameter set of `boots` in turn until a
/// boot fails (the variant was caught) or none is left; returns that boot.
/// The caller checks *how* it failed, and that it did.
pub fn until_caught(
    what: &str,
    boots: &[&[&str]],
    mut run: impl FnMut(&[&str]) -> (Outcome, boot::verdict::Verdict),
) -> (Outcome, boot::verdict::Verdict) {
    for (i, extra) in boots.iter().enumerate() {
        let (out, v) = run(extra);
        if !v.passed || i + 1 == boots.len() {
            return (out, v);
        }
        eprintln!(
            "{what}: boot {} ({extra:?}) passed: the race did not happen; next {:?}",
            i + 1,
            boots[i + 1]
        );
    }
    unreachable!("at least one boot")
}
