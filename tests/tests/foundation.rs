//! The foundation's failure paths: each kind of failure is detected by the
//! runner and the verdict, with the right diagnostics, and a clean run passes.

use std::time::Duration;

use boot::{
    contract::params::{Key, NoEffect, Why},
    ktap::Status,
    qemu::Exit,
};
use tests::{boot, check};

#[test]
fn banner_and_passing_suite() {
    // The framework suites only: stage 1 of `cargo xtask test` runs them
    // all; this checks the banner and a clean verdict on its own boot.
    let (out, v) = boot("banner")
        .params(["filter=boot,ktest,params"])
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("a clean run must pass: {:?}", v.reasons),
        &out,
    );
    check(out.contains("pcs kernel "), "banner missing", &out);
    check(v.report.counts().passed >= 3, "too few cases passed", &out);
}

#[test]
fn deliberate_failure_is_reported() {
    // The framework suites only (the failing case is in `boot`): a whole
    // suite run is stage 1's job, and took 96 s of this test's boot.
    let (out, v) = boot("fail")
        .params(["fail=1", "filter=boot,ktest,params"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "a failing case must fail the run", &out);
    check(
        out.exit == Exit::TESTS_FAILED,
        "exit must be TestsFailed",
        &out,
    );
    check(
        v.report
            .failures()
            .iter()
            .any(|(p, s)| p == "boot.deliberate_failure" && *s == Status::Fail),
        "boot.deliberate_failure must be reported not ok",
        &out,
    );
    check(
        out.contains("expected: 5") && out.contains("actual: 4"),
        "expected/actual values missing",
        &out,
    );
    // The run went on past the failure: later suites still passed.
    check(
        v.report.complete && v.report.counts().passed >= 3,
        "run did not continue after the failure",
        &out,
    );
}

fn crash(kind: &str, exit: Exit, needle: &str) {
    let (out, v) = boot(kind)
        .params([&format!("crash={kind}")])
        .run()
        .expect("QEMU run");
    check(!v.passed, "a crash must fail the run", &out);
    check(out.exit == exit, &format!("exit must be {exit}"), &out);
    check(
        out.contains(needle),
        &format!("diagnostic '{needle}' missing"),
        &out,
    );
    check(
        v.report.crashed_in.as_deref() == Some("boot.deliberate_crash"),
        "crashed case not named",
        &out,
    );
    check(
        !v.report.complete,
        "a crashed run must not count as complete",
        &out,
    );
}

#[test]
fn panic_is_reported() {
    crash(
        "panic",
        Exit::PANIC,
        "PANIC: panicked at kernel/suites/src/boot.rs",
    );
    // The host names the functions of the failing CPU's backtrace.
    let (out, v) = boot("panic-symbols")
        .params(["crash=panic"])
        .run()
        .expect("QEMU run");
    let report = v.explain(&out);
    check(
        report.contains("suites::boot::deliberate_crash"),
        &format!("backtrace not symbolized:\n{report}"),
        &out,
    );
}

/// The lock-order check (debug builds) stops a kernel that took two locks in
/// both orders, naming the sites of both.
#[test]
fn lock_inversion_is_reported() {
    crash(
        "lock-inversion",
        Exit::PANIC,
        "lockdep: lock order inversion: taking lock class kernel/suites/src/boot.rs:",
    );
    let (out, _) = boot("lock-inversion-sites")
        .params(["crash=lock-inversion"])
        .run()
        .expect("QEMU run");
    // Four acquisition sites: B under A, and A under B.
    let line = out
        .lines
        .iter()
        .find(|l| l.contains("lock order inversion"))
        .cloned()
        .unwrap_or_default();
    check(
        line.matches("kernel/suites/src/boot.rs:").count() >= 6,
        &format!("both orders' classes and sites must be named:\n{line}"),
        &out,
    );
}

#[test]
fn page_fault_is_reported() {
    crash(
        "pagefault",
        Exit::EXCEPTION,
        "EXCEPTION: page fault (#PF) (vector 14)",
    );
    let (out, _) = boot("pagefault-cr2")
        .params(["crash=pagefault"])
        .run()
        .expect("QEMU run");
    check(out.contains("CR2=0xdeadb000"), "CR2 missing", &out);
}

#[test]
fn divide_error_is_reported() {
    crash(
        "divide",
        Exit::EXCEPTION,
        "EXCEPTION: divide error (#DE) (vector 0)",
    );
}

#[test]
fn stack_overflow_is_reported_as_double_fault() {
    crash("stackoverflow", Exit::EXCEPTION, "EXCEPTION: double fault");
}

#[test]
fn triple_fault_is_a_crash_not_a_success() {
    let (out, v) = boot("triplefault")
        .params(["crash=triplefault"])
        .run()
        .expect("QEMU run");
    check(
        out.exit == Exit::Reset,
        "a triple fault exits QEMU with status 0",
        &out,
    );
    check(!v.passed, "status 0 must never pass", &out);
    let log = std::fs::read_to_string(&out.qemu_log).unwrap_or_default();
    check(
        log.contains("Triple fault"),
        "QEMU log should record the triple fault",
        &out,
    );
}

#[test]
fn hang_is_killed_at_timeout() {
    let (out, v) = boot("hang")
        .params(["crash=hang"])
        .timeout(Duration::from_secs(25))
        .run()
        .expect("QEMU run");
    check(
        matches!(out.exit, Exit::Timeout(_)),
        "a hang must end in a timeout",
        &out,
    );
    check(!v.passed, "a timeout must fail", &out);
    check(
        v.report
            .failures()
            .iter()
            .any(|(p, s)| p == "boot.deliberate_crash" && *s == Status::Timeout),
        "the hanging case must be reported as timed out",
        &out,
    );
}

#[test]
fn malformed_parameters_are_rejected() {
    // Each bad string, the message, and the key whose help must follow it
    // (the kernel prints the contract's help; for a key it cannot guess,
    // the whole table, which contains every key's help).
    for (params, msg, key) in [
        ("seed=banana", "bad value 'banana' for 'seed'", Key::Seed),
        ("bogus=1", "unknown parameter 'bogus'", Key::Mode),
        (
            "loglevel",
            "'loglevel' is not of the form key=value",
            Key::Loglevel,
        ),
        ("fail=1 fail=0", "parameter 'fail' given twice", Key::Fail),
        ("fial=1", "did you mean 'fail'?", Key::Fail),
    ] {
        let (out, v) = boot("badparams").params([params]).run().expect("QEMU run");
        check(
            out.exit == Exit::BAD_PARAMS,
            &format!("'{params}' must be rejected"),
            &out,
        );
        check(out.contains(msg), &format!("message '{msg}' missing"), &out);
        let help = key.spec().help;
        check(out.contains(help), &format!("help '{help}' missing"), &out);
        check(!v.passed, "rejected parameters must fail", &out);
    }
}

#[test]
fn parameter_without_effect_is_noted() {
    // torture_ms is read only by pagelock.torture*; this run selects none.
    let (out, v) = boot("noeffect")
        .params(["filter=pagelock.trylock_unlock", "torture_ms=120000"])
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("the run must pass: {:?}", v.reasons),
        &out,
    );
    let note = NoEffect {
        key: Key::TortureMs,
        value: "120000",
        why: Why::NoSelectedCase,
    }
    .to_string();
    check(out.contains(&note), &format!("note '{note}' missing"), &out);
    check(
        v.notes.len() == 1 && note.ends_with(&v.notes[0]),
        &format!("the verdict must carry the note: {:?}", v.notes),
        &out,
    );
}

#[test]
fn uefi_boot_passes() {
    // What UEFI changes is the boot path (firmware memory map, RSDP, the
    // bootloader's UEFI stage): the framework suites, SMP bring-up and the
    // frame allocator over the whole memory map cover it; the other suites
    // run under BIOS in stage 1.
    let (out, v) = boot("uefi")
        .uefi()
        .params(["filter=boot,ktest,params,smp,mm"])
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("UEFI boot must pass: {:?}", v.reasons),
        &out,
    );
}

/// Every CPU spins with interrupts off: no watchdog can speak and the
/// console goes silent. The runner asks QEMU for every vCPU's registers
/// and frame chain, names each one's functions, and ends the run.
#[test]
fn every_cpu_stuck_is_diagnosed_from_the_host() {
    let (out, v) = boot("all-cpus-stuck")
        .params(["crash=all-cpus-stuck", "filter=boot.deliberate_crash"])
        .silence(Duration::from_secs(10))
        .run()
        .expect("QEMU run");
    check(
        matches!(out.exit, Exit::Silent(_)),
        "a silent kernel must end in the host's diagnosis",
        &out,
    );
    check(!v.passed, "a silent kernel must fail", &out);
    let report = v.explain(&out);
    for cpu in 0..2 {
        check(
            report.contains(&format!("[host] cpu{cpu}: RIP=")) && report.contains("interrupts off"),
            &format!("no host view of cpu{cpu} in:\n{report}"),
            &out,
        );
    }
    check(
        report.matches("suites::boot::deliberate_crash").count() >= 2,
        &format!("each vCPU's RIP must be symbolized to the spinning case:\n{report}"),
        &out,
    );
}

/// A case that fails and leaves a thread asleep for good: its killable
/// thread is cancelled and reaped, the one that cannot be is named, and
/// the run stops there (the later cases are skipped, the KTAP output stays
/// complete) instead of hanging in the next case.
#[test]
fn a_failed_case_that_leaves_a_thread_stops_the_run() {
    let (out, v) = boot("wedge")
        .params(["crash=wedge", "filter=boot,ktest"])
        .run()
        .expect("QEMU run");
    check(
        !v.passed && out.exit == Exit::TESTS_FAILED,
        "the run must fail",
        &out,
    );
    check(
        v.report
            .failures()
            .iter()
            .any(|(p, _)| p == "boot.deliberate_crash"),
        "the wedging case must be reported not ok",
        &out,
    );
    check(
        out.contains("left behind: 1 thread(s) still running")
            && out.contains("'wedged'")
            && !out.contains("'killable'"),
        "the report must name the thread left behind, and only it",
        &out,
    );
    check(
        v.report.complete && out.contains("# SKIP the run stopped after boot.deliberate_crash"),
        "the later cases must be skipped, the output complete",
        &out,
    );
}
