//! Crash consistency of `sync`, checked the way CrashMonkey and xfstests'
//! dm-log-writes tests check `fsync`: the kernel's disk sits behind QEMU's
//! `blklogwrites` driver, which logs every write and flush the device
//! completes; after the run the host replays the log onto the starting
//! image at every flush, at every sync's record, and at random points
//! with random subsets of the unflushed writes, and checks each state
//! against what every returned sync covered (`tests/src/crash.rs`,
//! `kernel/contract/src/crash.rs`). `bug=sync-no-flush` (a sync that does
//! not flush the device's cache) must fail the check.

use std::{fs, time::Instant};

use boot::disk::Filter;
use tests::{check, crash};

/// Random crash points per run, on top of every flush and record.
const RANDOM_POINTS: usize = 2000;

fn run(name: &str, bug: Option<&str>) -> (boot::qemu::Outcome, crash::Syncs, crash::Report, f64) {
    let log = std::env::temp_dir().join(format!("pcs-{name}-{}.log", std::process::id()));
    let _ = fs::remove_file(&log);
    let mut params = vec!["filter=pagecache.crash_consistency".to_string()];
    if let Some(b) = bug {
        params.push(format!("bug={b}"));
    }
    let (out, v) = tests::boot(name)
        .disk(boot::Disk::fresh(16 << 20))
        .disk_filter(Filter::LogWrites { log: log.clone() })
        .params(params)
        .run()
        .expect("QEMU run");
    check(v.passed, "the kernel's side of the check must pass", &out);
    let bytes = fs::read(&log).expect("the write log");
    let _ = fs::remove_file(&log);
    let started = Instant::now();
    let entries = crash::parse_log(&bytes).expect("a dm-log-writes log");
    let syncs = crash::syncs(&out.lines);
    let report = crash::check(&entries, &syncs, RANDOM_POINTS, syncs.run);
    (out, syncs, report, started.elapsed().as_secs_f64())
}

#[test]
fn every_returned_sync_survives_every_crash_point() {
    let (out, syncs, r, secs) = run("crash", None);
    eprintln!(
        "crash consistency: {} log entries ({} writes, {} flushes), {} sync records; {} crash points checked in {secs:.2} s; {} problems",
        r.entries, r.writes, r.flushes, r.records, r.points, r.problem_count
    );
    check(
        syncs.ended && !syncs.covered.is_empty(),
        "the kernel printed no syncs",
        &out,
    );
    check(
        r.records as u64 == syncs.covered.len() as u64 && r.flushes >= r.records,
        &format!("every sync's record and flush must be in the log: {r:?}"),
        &out,
    );
    check(
        r.problem_count == 0,
        &format!(
            "crash states that lose what a sync promised:\n{}",
            r.problems.join("\n")
        ),
        &out,
    );
}

#[test]
fn a_sync_that_skips_the_flush_is_caught() {
    let (out, _, r, _) = run("crash-no-flush", Some("sync-no-flush"));
    eprintln!(
        "sync-no-flush: {} flushes, {} records, {} crash points, {} problems; first: {:?}",
        r.flushes,
        r.records,
        r.points,
        r.problem_count,
        r.problems.first()
    );
    check(
        r.problem_count > 0
            && r.problems
                .iter()
                .any(|p| p.contains("missing") || p.contains("older")),
        "without the flush, a crash after a returned sync must lose what it covered",
        &out,
    );
}
