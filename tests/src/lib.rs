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

/// Boots a known-bad variant's check (`boot::hunt::checks`: its cases,
/// parameters and CPUs, the same boot `cargo xtask hunt` measures) with
/// seeds 1, 2, ... until a boot fails (the variant was caught) or the
/// check's `boots` are used up; returns that boot. `variant` is a `bug=`
/// value or a known-bad `protocol=` value. `boots` comes from the
/// measured catch probability (enough for 99.9% detection at the lower
/// end of its interval), so a variant whose race the jitter opens only
/// now and then is not reported escaped after one unlucky boot. `adjust`
/// may add to the run (a timeout). The caller checks *how* it failed, and
/// that it did.
pub fn until_caught(
    variant: &str,
    adjust: impl Fn(Run) -> Run,
) -> (Outcome, boot::verdict::Verdict) {
    let c = boot::hunt::check(variant)
        .unwrap_or_else(|| panic!("no booted check for {variant} in boot::hunt::checks"));
    let chosen = c.variant();
    for seed in 1..=c.boots {
        let run = boot(&format!("known-bad-{variant}"))
            .smp(c.smp)
            .params(c.params)
            .params([chosen.clone(), format!("seed={seed}")]);
        let (out, v) = adjust(run).run().expect("QEMU run");
        if !v.passed || seed == c.boots {
            return (out, v);
        }
        eprintln!(
            "{chosen}: boot {seed} of {} passed: the race did not happen; next seed",
            c.boots
        );
    }
    unreachable!("a check has at least one boot")
}
