//! The first seed's symptom, reproduced on demand: "silence soft lockups
//! from unlock_page". `pagelock.walk_lockup` (kernel/suites/src/pagelock/
//! lockup.rs) queues [`WAITERS`] sleepers on 4 pages that all hash to the
//! one queue of a 1-queue table (`bits=0`) and unlocks one page: its wake
//! walk passes every entry. With `bookmarks=off` (Linux 6.7+, and before
//! 4.14) the walk runs with interrupts off from start to end, and the
//! lockup watchdog, with a small threshold ([`LOCKUP_MS`], `lockup_ms=`),
//! reports a soft lockup whose backtrace names the walk
//! (`PageWaitTable::wake_page_bit`, called by `unlock_page`); with
//! `bookmarks=on` (4.14-6.6) the same walk drops the lock every 64 entries,
//! the tick preempts the waker in between, and nothing is reported.
//!
//! Both boots run on QEMU's instruction-counted clock (`-icount
//! shift=2,sleep=off`, `boot::Run::icount`): guest time is then a function
//! of the instructions executed, not of the host's load, so the walk's
//! length against the threshold is the same on every run and both tests
//! are reproducible. One CPU: with several, icount runs them in turn on one
//! host thread, and a CPU waiting for its turn would look stuck. Measured
//! here (dev build, with the lock-order check on every lock): the
//! bookmark-less walk keeps the CPU 22-25 ms (the watchdog sees 25-29 ms
//! without a switch), the bookmarked one 0.6 ms (longest stretch 4.2 ms),
//! against the 6 ms threshold.

use std::time::Duration;

use boot::{qemu::Outcome, symbolize, verdict::Verdict};
use tests::check;

/// Sleepers queued before the watched unlock.
const WAITERS: u32 = 20_000;
/// The watchdog's threshold in the watched window (virtual ms).
const LOCKUP_MS: u32 = 6;

fn boot(name: &str, bookmarks: &str) -> (Outcome, Verdict) {
    tests::boot(name)
        .smp(1)
        .mem("2G")
        .icount(2)
        .timeout(Duration::from_secs(600))
        .params([
            "filter=pagelock.walk_lockup".to_string(),
            "bits=0".into(),
            "hz=1000".into(),
            format!("lockup_ms={LOCKUP_MS}"),
            format!("walk_waiters={WAITERS}"),
            format!("bookmarks={bookmarks}"),
        ])
        .run()
        .expect("QEMU run")
}

/// The case's own account of the walk (`pagelock-walk: ...`).
fn walk_line(out: &Outcome) -> String {
    out.lines
        .iter()
        .find(|l| l.contains("pagelock-walk: ") && l.contains("waiters on 4 pages"))
        .map_or(String::new(), |l| l.trim().to_string())
}

#[test]
fn unbookmarked_walk_is_reported_as_a_lockup_naming_the_walk() {
    let (out, v) = boot("lockup-bookmarks-off", "off");
    let walk = walk_line(&out);
    check(!walk.is_empty(), "the case must describe the walk", &out);
    check(
        walk.contains(&format!("walked {WAITERS} queued entries")),
        "every waiter must be in the one queue the walk passes",
        &out,
    );
    check(
        !v.passed
            && v.report
                .failures()
                .iter()
                .any(|(p, _)| p == "pagelock.walk_lockup"),
        "pagelock.walk_lockup must fail: the walk trips the watchdog",
        &out,
    );
    let elf = out
        .kernel_elf
        .clone()
        .expect("the unstripped kernel beside the image");
    let reports: Vec<symbolize::Backtrace> = symbolize::backtraces(&out.lines, &elf)
        .into_iter()
        .filter(|b| {
            b.heading.contains("watchdog: soft lockup")
                || b.heading.contains("watchdog: hard lockup")
        })
        .collect();
    check(
        !reports.is_empty(),
        "a lockup report with a backtrace",
        &out,
    );
    let naming: Vec<&symbolize::Backtrace> = reports
        .iter()
        .filter(|b| b.names("wake_page_bit"))
        .collect();
    check(
        !naming.is_empty(),
        &format!(
            "a lockup report must name the wake walk (wake_page_bit); got:\n{}",
            reports
                .iter()
                .map(|b| format!("{}\n{}", b.heading, b.frames.join("\n")))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        &out,
    );
    // For the record (`cargo test --test lockup -- --nocapture`).
    eprintln!("{walk}");
    eprintln!("{}", naming[0].heading);
    for f in &naming[0].frames {
        eprintln!("{f}");
    }
}

#[test]
fn bookmarked_walk_under_the_same_load_is_not() {
    let (out, v) = boot("lockup-bookmarks-on", "on");
    let walk = walk_line(&out);
    check(
        walk.contains(&format!("walked {WAITERS} queued entries")),
        "the same herd in the same queue",
        &out,
    );
    check(
        v.passed,
        &format!(
            "with bookmarks the walk must not trip the watchdog: {:?}",
            v.reasons
        ),
        &out,
    );
    check(
        walk.contains("0 soft and 0 hard lockup report(s)"),
        "no lockup reported during the walk",
        &out,
    );
    eprintln!("{walk}");
}
