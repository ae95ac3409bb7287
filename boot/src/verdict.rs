//! Pass or fail for one kernel run: a run passes only if QEMU exited with the
//! success status, the KTAP output is complete (every plan satisfied), the
//! kernel printed its end-of-run line, and no test failed. Anything else is a
//! failure with a reason that names what went wrong.

use std::fmt::Write;

use contract::marker::{END_OF_RUN, EXPECT_LOG, FATAL, KTAP_VERSION, NOTE, RUNNING};

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
    if out.exit != Exit::SUCCESS {
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
    reasons.extend(unexpected_log_lines(&out.lines));
    let mut notes: Vec<String> = out
        .lines
        .iter()
        .filter_map(|l| Some(l.trim().strip_prefix(NOTE)?.to_string()))
        .collect();
    if let Some(first) = &out.retried_after {
        // Repeated whether or not the second boot passed: a QEMU crash is
        // worth knowing about.
        notes.push(format!("booted twice: {first}"));
    }
    Verdict {
        passed: reasons.is_empty(),
        report,
        reasons,
        notes,
    }
}

/// Console lines of level error or warning.
fn is_error_or_warning(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("[ERROR") || l.starts_with("[WARN")
}

/// The `[ERROR`/`[WARN` lines from the first KTAP line on that no case
/// declared it expects: a case declares texts with `EXPECT_LOG` lines
/// right after its `RUNNING` line, and a line counts as expected if it
/// contains one of them, whether it comes while the case runs or after
/// its result (a completion in interrupt context may log late) and before
/// the next case starts. Lines before the first KTAP line are the boot's
/// (fault injection asked for by parameters, a missing disk) and are not
/// judged here. One reason per unexpected line, at most five.
pub fn unexpected_log_lines(lines: &[String]) -> Vec<String> {
    let Some(start) = lines.iter().position(|l| l.trim() == KTAP_VERSION) else {
        return Vec::new();
    };
    let mut case: Option<&str> = None;
    let mut finished = false;
    let mut expects: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    let mut more = 0usize;
    for line in &lines[start..] {
        let t = line.trim();
        if let Some(c) = t.strip_prefix(RUNNING) {
            case = Some(c.trim());
            finished = false;
            expects.clear();
        } else if let Some(e) = t.strip_prefix(EXPECT_LOG) {
            expects.push(e);
        } else if crate::ktap::result_line(t).is_some() {
            finished = true;
        } else if is_error_or_warning(line) && !expects.iter().any(|e| line.contains(e)) {
            if out.len() == 5 {
                more += 1;
                continue;
            }
            let when = match case {
                Some(c) if !finished => format!("during {c}"),
                Some(c) => format!("after {c}"),
                None => "before the first case".to_string(),
            };
            out.push(format!(
                "a log line no case expects, {when} (a case declares the lines it expects): {t}"
            ));
        }
    }
    if more > 0 {
        out.push(format!("{more} more log lines no case expects"));
    }
    out
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

#[cfg(test)]
mod tests {
    use contract::marker::{EXPECT_LOG, KTAP_VERSION, RUNNING};

    use super::unexpected_log_lines;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_declared_line_passes_and_an_undeclared_one_fails() {
        let running = |c: &str| format!("    {RUNNING}{c}");
        let expects = |e: &str| format!("    {EXPECT_LOG}{e}");
        let log = [
            "[WARN  cpu0] boot: before the run is not judged".to_string(),
            KTAP_VERSION.to_string(),
            "1..1".to_string(),
            running("block.stable_pages_ram"),
            expects("ram: stable-page violation"),
            "[WARN  cpu1] ram: stable-page violation: block 5 changed".to_string(),
            "    ok 1 stable_pages_ram".to_string(),
            "[WARN  cpu1] ram: stable-page violation: block 6 changed (late)".to_string(),
            running("block.errors_ram"),
            "[ERROR cpu1] pagecache: something nobody expects".to_string(),
            "    ok 2 errors_ram".to_string(),
            "[WARN  cpu2] ram: stable-page violation: after the case".to_string(),
        ];
        let found = unexpected_log_lines(&log);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("during block.errors_ram"), "{found:?}");
        assert!(found[0].contains("something nobody expects"), "{found:?}");
        assert!(found[1].contains("after block.errors_ram"), "{found:?}");
    }

    #[test]
    fn info_lines_and_runs_without_ktap_are_not_judged() {
        assert!(unexpected_log_lines(&lines(&["[ERROR cpu0] no KTAP at all"])).is_empty());
        let log = lines(&[KTAP_VERSION, "[INFO  cpu0] watchdog: cpu1 starved: ..."]);
        assert!(unexpected_log_lines(&log).is_empty());
    }
}
