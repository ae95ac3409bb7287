//! Pass or fail for one kernel run: a run passes only if QEMU exited with the
//! success status, the KTAP output is complete (every plan satisfied), the
//! kernel printed its end-of-run line, and no test failed. Anything else is a
//! failure with a reason that names what went wrong.

use std::fmt::Write;

use contract::marker::{END_OF_RUN, FATAL, NOTE};

use crate::{
    ktap::{self, Report},
    qemu::{Exit, Outcome},
};

#[derive(Debug)]
pub struct Verdict {
    pub passed: bool,
    pub report: Report,
    /// Empty when passed; otherwise one line per problem.
    pub reasons: Vec<String>,
    /// The kernel's notes (`contract::marker::NOTE` lines, the marker
    /// stripped), e.g. parameters without effect: worth repeating in a
    /// summary whether or not the run passed.
    pub notes: Vec<String>,
}

pub fn judge(out: &Outcome) -> Verdict {
    let mut report = ktap::parse(&out.lines);
    if matches!(out.exit, Exit::Timeout(_)) {
        report.mark_timeout();
    }
    let mut reasons = Vec::new();
    if out.exit != Exit::Success {
        reasons.push(format!("QEMU exit: {}", out.exit));
    }
    if !report.found {
        reasons.push("no KTAP output".into());
    } else if !report.complete {
        let mut r = "KTAP output truncated".to_string();
        if let Some(c) = &report.crashed_in {
            let _ = write!(r, " while running {c}");
        }
        reasons.push(r);
    }
    if !out.lines.iter().any(|l| l.trim() == END_OF_RUN) {
        reasons.push("no end-of-run line".into());
    }
    for (path, status) in report.failures() {
        reasons.push(format!("{path}: {status:?}"));
    }
    for e in &report.errors {
        reasons.push(format!("KTAP format: {e}"));
    }
    if let Some(fatal) = out.lines.iter().find(|l| l.contains(FATAL)) {
        reasons.push(fatal.trim().to_string());
    }
    let notes = out
        .lines
        .iter()
        .filter_map(|l| Some(l.trim().strip_prefix(NOTE)?.to_string()))
        .collect();
    Verdict {
        passed: reasons.is_empty(),
        report,
        reasons,
        notes,
    }
}

impl Verdict {
    /// A multi-line failure report with the log paths.
    pub fn explain(&self, out: &Outcome) -> String {
        let mut s = String::new();
        for r in &self.reasons {
            let _ = writeln!(s, "  - {r}");
        }
        if let Some(elf) = &out.kernel_elf {
            // Every report with a backtrace: a panic's or exception's (the
            // failing CPU), and the watchdog's lockup reports.
            for bt in crate::symbolize::backtraces(&out.lines, elf) {
                let _ = writeln!(s, "  backtrace after: {}", bt.heading);
                for l in bt.frames {
                    let _ = writeln!(s, "  {l}");
                }
            }
        }
        let _ = writeln!(s, "  serial log: {}", out.serial_log.display());
        let _ = writeln!(s, "  QEMU log:   {}", out.qemu_log.display());
        s
    }
}
