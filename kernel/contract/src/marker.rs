//! Console lines the host looks for in the kernel's serial output.
//!
//! The kernel prints each of these with the constant (never a copy of the
//! text), and the host recognises them with the same constant. Everything
//! else on the console is for people: the host only stores and shows it.
//! Lines starting with `#` are KTAP diagnostics, so none of these confuse a
//! KTAP parser.

use core::fmt;

/// The prefix of every line the kernel prints for the host and for people
/// outside KTAP's own lines: the run summary, the markers below, a nested
/// fatal error, the run-aborted line, a case that left state behind.
pub const PCS: &str = "# pcs: ";

/// The kernel's last line of a finished run (test or bench mode). A run
/// without it did not finish, whatever else it printed.
pub const END_OF_RUN: &str = "# pcs: end of run";

/// Starts the fatal-error report (panic or CPU exception):
/// `# pcs: FATAL on cpu<N>: <what happened>`.
pub const FATAL: &str = "# pcs: FATAL";

/// Names the test case a fatal error happened in:
/// `# pcs: crashed in test case <suite>.<case>`.
pub const CRASHED_IN: &str = "# pcs: crashed in test case ";

/// Printed (indented as a case diagnostic) before each test case runs:
/// `# running: <suite>.<case>`. When output stops, the last one names the
/// case that was running.
pub const RUNNING: &str = "# running: ";

/// Printed (indented as a case diagnostic) after [`RUNNING`], once per
/// text the case declared it expects in `[ERROR`/`[WARN` console lines:
/// `# pcs: expects log: <text>`. Any other line of those levels from the
/// first KTAP line on fails the run.
pub const EXPECT_LOG: &str = "# pcs: expects log: ";

/// Heads the failing CPU's frame-pointer backtrace; one [`BacktraceFrame`]
/// line per frame follows.
pub const BACKTRACE: &str = "# backtrace:";

/// Starts a machine-readable benchmark result:
/// `BENCH <bench> <variant> <field> ...` (format: [`crate::bench`]).
pub const BENCH: &str = "BENCH ";

/// Printed before each benchmark runs: `# bench: <name> (<rounds> rounds)`.
pub const BENCH_START: &str = "# bench: ";

/// Starts a benchmark histogram: `BENCH_HIST <bench> <variant> <label> ...
/// <metric>:<unit> <bucket>=<count> ...` (format: [`crate::bench`]).
pub const BENCH_HIST: &str = "BENCH_HIST ";

/// Starts a correctness failure seen by a benchmark (the run then fails):
/// `# pcs: bench failed: <bench>: <why>` ([`crate::bench::Failed`]).
pub const BENCH_FAILED: &str = "# pcs: bench failed: ";

/// Starts a progress report of a long case or benchmark, for the host's
/// live display: `# pcs: progress <what> done=<n> unit=<what n counts>
/// elapsed_ms=<ms> budget_ms=<ms>` ([`Progress`]).
pub const PROGRESS: &str = "# pcs: progress ";

/// Starts a note the host repeats in its summary, e.g. a parameter that
/// has no effect in this run (see [`crate::params::NoEffect`]).
pub const NOTE: &str = "# pcs: note: ";

/// The KTAP header line the kernel prints; the host times the boot to it.
pub const KTAP_VERSION: &str = "KTAP version 1";

/// Starts a line of a torture's manifest (a KTAP diagnostic, indented as
/// one): what the disk must hold, checked by the host against the image
/// file (see [`crate::torture::Line`]).
pub const MANIFEST: &str = "# MANIFEST ";

/// Starts a line of the crash-consistency check of `sync` (a KTAP
/// diagnostic): which versions each returned sync covered (see
/// [`crate::crash::Line`]).
pub const SYNC: &str = "# SYNC ";

/// Every marker above, for checks that no second copy exists.
pub const ALL: [&str; 16] = [
    PCS,
    END_OF_RUN,
    EXPECT_LOG,
    FATAL,
    CRASHED_IN,
    RUNNING,
    BACKTRACE,
    BENCH,
    BENCH_START,
    BENCH_HIST,
    BENCH_FAILED,
    PROGRESS,
    NOTE,
    KTAP_VERSION,
    MANIFEST,
    SYNC,
];

/// A progress report (see [`PROGRESS`]): `what` has done `done` `unit`
/// (e.g. acquisitions) in `elapsed_ms` of a planned `budget_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    /// What is running (`pagelock.torture`, a benchmark's name); one word.
    pub what: &'a str,
    /// Work done so far.
    pub done: u64,
    /// What `done` counts; one word.
    pub unit: &'a str,
    /// Time since it started.
    pub elapsed_ms: u64,
    /// How long it is planned to run (0: unknown).
    pub budget_ms: u64,
}

impl<'a> Progress<'a> {
    /// Reads a line printed by `Display` (leading whitespace allowed).
    pub fn parse(line: &'a str) -> Option<Progress<'a>> {
        let rest = line.trim().strip_prefix(PROGRESS)?;
        let mut words = rest.split_ascii_whitespace();
        let what = words.next()?;
        let (mut done, mut unit, mut elapsed_ms, mut budget_ms) = (None, None, None, None);
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "done" => done = v.parse().ok(),
                "unit" => unit = Some(v),
                "elapsed_ms" => elapsed_ms = v.parse().ok(),
                "budget_ms" => budget_ms = v.parse().ok(),
                _ => {}
            }
        }
        Some(Progress {
            what,
            done: done?,
            unit: unit?,
            elapsed_ms: elapsed_ms?,
            budget_ms: budget_ms.unwrap_or(0),
        })
    }
}

impl fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{PROGRESS}{} done={} unit={} elapsed_ms={} budget_ms={}",
            self.what, self.done, self.unit, self.elapsed_ms, self.budget_ms
        )
    }
}

/// One backtrace line: `#   <depth>: <return address>`, the address in
/// hexadecimal with `0x`. The kernel prints it with `Display`; the host
/// reads it back with [`BacktraceFrame::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacktraceFrame {
    /// 0 = the innermost frame.
    pub depth: u32,
    /// The return address found in the frame.
    pub addr: u64,
}

/// What precedes the depth in a [`BacktraceFrame`] line.
const FRAME_PREFIX: &str = "#   ";

impl BacktraceFrame {
    /// Reads a line printed by `Display` (surrounding whitespace allowed).
    pub fn parse(line: &str) -> Option<BacktraceFrame> {
        let rest = line.trim().strip_prefix(FRAME_PREFIX)?;
        let (depth, addr) = rest.split_once(": 0x")?;
        Some(BacktraceFrame {
            depth: depth.trim().parse().ok()?,
            addr: u64::from_str_radix(addr.trim(), 16).ok()?,
        })
    }
}

impl fmt::Display for BacktraceFrame {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{FRAME_PREFIX}{:2}: {:#018x}", self.depth, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::ToString};

    #[test]
    fn backtrace_frames_round_trip() {
        let f = BacktraceFrame {
            depth: 3,
            addr: 0x1000_0001_2345,
        };
        let line = f.to_string();
        assert_eq!(line, "#    3: 0x0000100000012345");
        assert_eq!(BacktraceFrame::parse(&line), Some(f));
        assert_eq!(
            BacktraceFrame::parse("  #   12: 0xffff\r"),
            Some(BacktraceFrame {
                depth: 12,
                addr: 0xffff
            })
        );
        assert_eq!(BacktraceFrame::parse(BACKTRACE), None);
        assert_eq!(BacktraceFrame::parse("# pcs: run aborted (Panic)"), None);
    }

    #[test]
    fn progress_round_trips() {
        let p = Progress {
            what: "pagelock.torture",
            done: 123_456,
            unit: "acquisitions",
            elapsed_ms: 2000,
            budget_ms: 4000,
        };
        let line = p.to_string();
        assert_eq!(
            line,
            "# pcs: progress pagelock.torture done=123456 unit=acquisitions elapsed_ms=2000 budget_ms=4000"
        );
        assert_eq!(Progress::parse(&format!("    {line}")), Some(p));
        assert_eq!(Progress::parse("# pcs: progress x done=1"), None);
        assert_eq!(Progress::parse("# pcs: note: x"), None);
    }

    #[test]
    fn markers_are_distinct_ktap_diagnostics_or_known_lines() {
        // PCS is the common prefix of the kernel's own lines: the others
        // must differ from each other, not from it.
        let all: std::vec::Vec<&str> = ALL.iter().copied().filter(|m| *m != PCS).collect();
        for (i, a) in all.iter().enumerate() {
            assert!(
                a.starts_with('#') || *a == BENCH || *a == BENCH_HIST || *a == KTAP_VERSION,
                "{a}"
            );
            for b in &all[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a} / {b}");
            }
        }
    }
}
