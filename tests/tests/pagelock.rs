//! The page-lock torture can fail: every known-bad protocol variant
//! (`bug=<name>`, see `kernel/pagesync/src/variant/bugs.rs`) makes the
//! `pagelock.torture` case fail, and the correct default passes it.
//!
//! The variants carry no window widening of their own: the torture runs
//! with the default `jitter=on`, which delays at random after every access
//! to a page's flags word and reference count and at the steps of waits
//! and wake-ups, in correct and broken code alike (`pagesync::race`,
//! `kernel/src/sched/jitter.rs`). Each run checks that jitter was on and
//! injected delays. A variant whose first boot passes gets up to two more
//! (other seeds, a delay chance at every race point, `ATTEMPTS`): a check
//! that catches the bug only sometimes still fails the test if it never
//! does.
//!
//! Each boot: `-smp 2`, `filter=pagelock.torture`, `torture_ms=4000` (2 s
//! lockstep with one thread per CPU on one page, then 2 s free-running
//! with 4 threads per CPU on 16 pages; every wait kind in both). The
//! kernel bounds a bad run itself: the lost wake-up watch names a waiter
//! asleep on a clear bit of an idle page within about half a second, in
//! any phase; failing that, a stalled lockstep round is reported after
//! 1.5 s, or at the latest 2.5 s after the stop (plus the 2 s hung-task
//! limit). The QEMU timeout below (120 s) only guards against a kernel that
//! does not end at all. How each variant fails:
//! * `tas-outside-lock`, `clear-after-wake`: torture FAILURE naming the
//!   lost wake-up;
//! * `non-atomic-flags`: torture FAILURE from whichever update the racing
//!   plain read-modify-writes lost: a cleared bit lost (a waiter stuck on a
//!   bit nobody holds any more, or a lost wake-up), or a set bit lost
//!   (two holders: mutual exclusion broken);
//! * `clear-waiters-early`: in the dev build pagesync's debug invariant
//!   check in the wake walk panics first ("PG_waiters clear while N
//!   waiter(s) ... are queued").

use std::time::Duration;

use boot::qemu::Exit;
use tests::check;

const TIMEOUT_S: u64 = 120;
const KNOWN_BAD: [&str; 4] = [
    "tas-outside-lock",
    "clear-after-wake",
    "clear-waiters-early",
    "non-atomic-flags",
];

/// The failure each variant must produce.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The torture names a lost wake-up.
    LostWakeup,
    /// The torture fails on a lost flag update: a waiter stuck behind a
    /// bit left set, a lost wake-up, or two holders at once.
    LostUpdate,
    /// pagesync's PG_waiters invariant check panics.
    InvariantPanic,
}

fn boot(name: &str, bug: &str, extra: &[&str]) -> (boot::qemu::Outcome, boot::verdict::Verdict) {
    let bug = format!("bug={bug}");
    let mut params = vec!["filter=pagelock.torture", "torture_ms=4000", &bug];
    params.extend_from_slice(extra);
    tests::boot(name)
        .smp(2)
        .params(params)
        .timeout(Duration::from_secs(TIMEOUT_S))
        .run()
        .expect("QEMU run")
}

/// A known-bad variant gets the boots its measured catch probability asks
/// for (`tests::until_caught`; on a loaded host the two vCPUs may seldom
/// run at once, so a narrow window rarely opens: `non-atomic-flags` once
/// escaped a 4 s run). The first failing run is checked.
fn must_fail(bug: &str, expect: Expect) {
    let (out, v) = tests::until_caught(bug, |run| run.timeout(Duration::from_secs(TIMEOUT_S)));
    check(
        out.contains(&format!("pagelock: RUNNING KNOWN-BAD VARIANT {bug}")),
        "the known-bad variant must be announced",
        &out,
    );
    check(
        !matches!(out.exit, Exit::Timeout(_)),
        "a bad variant must end the run by itself, not hang it",
        &out,
    );
    check(
        !v.passed,
        &format!("bug={bug} must make the torture fail"),
        &out,
    );
    let torture_failed = out.contains("pagelock-torture: FAILURE");
    let invariant_panic = out.exit == Exit::PANIC && out.contains("PG_waiters clear while");
    match expect {
        Expect::LostWakeup => check(
            torture_failed && out.contains("lost wake-up: worker"),
            "the torture must fail naming the lost wake-up",
            &out,
        ),
        Expect::LostUpdate => check(
            torture_failed
                && (out.contains("lost wake-up: worker")
                    || out.contains("workers stuck waiting on a page")
                    || out.contains("MUTUAL EXCLUSION BROKEN")),
            "the torture must fail on the lost flag update",
            &out,
        ),
        Expect::InvariantPanic => check(
            invariant_panic,
            "the failure must come from the PG_waiters invariant",
            &out,
        ),
    }
    check(
        out.contains("pagelock: jitter on"),
        "the torture must run with jitter on (no per-variant widening exists)",
        &out,
    );
    eprintln!(
        "bug={bug}: {} after {:.1} s: {}",
        if torture_failed {
            "torture FAILURE"
        } else {
            "PG_waiters invariant panic"
        },
        out.elapsed.as_secs_f64(),
        out.lines
            .iter()
            .find(|l| l.contains("pagelock-torture: FAILURE") || l.contains("PANIC"))
            .map_or("", |l| l.trim())
    );
}

#[test]
fn correct_protocol_passes() {
    let (out, v) = boot("pagelock-none", "none", &[]);
    check(
        v.passed,
        &format!("the default protocol must pass: {:?}", v.reasons),
        &out,
    );
    check(
        out.contains("pagelock-torture: SUCCESS"),
        "torture verdict missing",
        &out,
    );
    check(
        out.lines
            .iter()
            .any(|l| l.contains("jitter: on") && !l.contains(", 0 delays in this run")),
        "the torture must inject jitter delays",
        &out,
    );
    check(
        !out.contains("KNOWN-BAD VARIANT"),
        "the default is not a bad variant",
        &out,
    );
}

#[test]
fn tas_outside_lock_fails() {
    must_fail(KNOWN_BAD[0], Expect::LostWakeup);
}

#[test]
fn clear_after_wake_fails() {
    must_fail(KNOWN_BAD[1], Expect::LostWakeup);
}

#[test]
fn clear_waiters_early_fails() {
    must_fail(KNOWN_BAD[2], Expect::InvariantPanic);
}

#[test]
fn non_atomic_flags_fails() {
    must_fail(KNOWN_BAD[3], Expect::LostUpdate);
}

/// Every known-bad protocol in the registry (`protocol=`, one file each in
/// `kernel/pagesync/src/variant/`; none needs naming here) fails the
/// booted torture with a named lost wake-up or a stuck waiter, within the
/// boots its check gets (`boot::hunt::PROTOCOL_CHECK`, the boot `cargo
/// xtask hunt` measures, an 8 s torture). `hugh-rfc-late-clear` was
/// caught in 31 of 40 boots, most of them in the lockstep half.
#[test]
fn known_bad_protocols_fail() {
    let protocols: Vec<_> = boot::hunt::checks()
        .into_iter()
        .filter(|c| c.key == "protocol")
        .collect();
    assert!(
        !protocols.is_empty(),
        "the registry has known-bad protocols"
    );
    for c in protocols {
        let chosen = c.variant();
        let (out, v) =
            tests::until_caught(c.name, |run| run.timeout(Duration::from_secs(TIMEOUT_S)));
        check(
            !v.passed,
            &format!("{chosen} passed {} boots of the torture", c.boots),
            &out,
        );
        check(
            out.contains(&format!("pagelock: RUNNING KNOWN-BAD VARIANT {chosen}")),
            "the known-bad protocol must be announced",
            &out,
        );
        check(
            !matches!(out.exit, Exit::Timeout(_)),
            "a bad protocol must end the run by itself, not hang it",
            &out,
        );
        check(
            out.contains("pagelock-torture: FAILURE")
                && (out.contains("lost wake-up: worker")
                    || out.contains("workers stuck waiting on a page")),
            "the torture must fail naming the lost wake-up",
            &out,
        );
    }
}

/// Ending writeback on a page with no reference to take is a kernel bug
/// that stops the run with a report naming the page (pagesync's
/// `end_page_writeback`), not a silent return that leaves PG_writeback set
/// and its waiters asleep.
#[test]
fn end_writeback_without_reference_is_fatal() {
    let (out, v) = tests::boot("writeback-unreferenced")
        .params(["crash=writeback-unreferenced"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "the run must fail", &out);
    check(out.exit == Exit::PANIC, "exit must be Panic", &out);
    check(
        out.contains("end_page_writeback: page 0x")
            && out.contains("is under writeback but its reference count (0)"),
        "the report must name the page and its count",
        &out,
    );
    check(
        v.report.crashed_in.as_deref() == Some("boot.deliberate_crash"),
        "the report must name the running case",
        &out,
    );
}
