//! A KTAP version 1 parser (Linux `Documentation/dev-tools/ktap.rst`).
//!
//! It accepts what Linux's `kunit_parser.py` accepts: output may start after
//! arbitrary log lines; a subtest is a whole KTAP block (version line, plan,
//! results) followed by its parent's result line; unknown lines are ignored;
//! `#` lines are diagnostics attached to the next result.
//!
//! A truncated run (the kernel died or hung mid-way) is *not* a shorter
//! pass: every test the plan promised but never reported is `Crashed`, and
//! the one that was running is named from the kernel's
//! `contract::marker::RUNNING` line (or its `CRASHED_IN` line).

use std::{fmt, ops::AddAssign};

use contract::marker::{CRASHED_IN, RUNNING};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip(String),
    /// Never reported: the run ended first.
    Crashed,
    /// Was running when the runner killed the kernel at its deadline.
    Timeout,
}

#[derive(Clone, Debug)]
pub struct Test {
    pub name: String,
    pub status: Status,
    /// `#` lines printed just before this test's result.
    pub diagnostics: Vec<String>,
    pub subtests: Vec<Test>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Crashed or timed out (also included in `failed`).
    pub crashed: usize,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, b: Counts) {
        self.passed += b.passed;
        self.failed += b.failed;
        self.skipped += b.skipped;
        self.crashed += b.crashed;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )?;
        if self.crashed > 0 {
            write!(f, " ({} crashed or timed out)", self.crashed)?;
        }
        Ok(())
    }
}

impl Test {
    /// Counts leaves (a test with subtests counts its subtests).
    pub fn counts(&self) -> Counts {
        if self.subtests.is_empty() {
            let mut c = Counts::default();
            match self.status {
                Status::Pass => c.passed = 1,
                Status::Skip(_) => c.skipped = 1,
                Status::Fail => c.failed = 1,
                Status::Crashed | Status::Timeout => {
                    c.failed = 1;
                    c.crashed = 1;
                }
            }
            return c;
        }
        let mut c = sum(&self.subtests);
        // A parent reported "not ok" whose children all passed (for example
        // an error in suite setup) still counts as one failure.
        if self.status == Status::Fail && c.failed == 0 {
            c.failed += 1;
        }
        c
    }

    /// Visits every test, depth first, with its path (`suite.case`).
    pub fn walk<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Test)) {
        let path = if prefix.is_empty() {
            self.name.clone()
        } else {
            format!("{prefix}.{}", self.name)
        };
        f(&path, self);
        for t in &self.subtests {
            t.walk(&path, f);
        }
    }
}

fn sum(tests: &[Test]) -> Counts {
    let mut c = Counts::default();
    for t in tests {
        c += t.counts();
    }
    c
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// A `KTAP version` line was found at all.
    pub found: bool,
    pub plan: Option<usize>,
    pub tests: Vec<Test>,
    /// Every plan was satisfied.
    pub complete: bool,
    /// Format problems (wrong test numbers and the like).
    pub errors: Vec<String>,
    /// `suite.case` of the test that was running when output stopped.
    pub crashed_in: Option<String>,
}

impl Report {
    pub fn counts(&self) -> Counts {
        sum(&self.tests)
    }

    /// Every test path with a failing status, for reports.
    pub fn failures(&self) -> Vec<(String, Status)> {
        let mut v = Vec::new();
        for t in &self.tests {
            t.walk("", &mut |path, t| {
                if t.subtests.is_empty()
                    && matches!(t.status, Status::Fail | Status::Crashed | Status::Timeout)
                {
                    v.push((path.to_string(), t.status.clone()));
                }
            });
        }
        v
    }

    /// Marks the test that was running (the first crashed one) as timed out.
    pub fn mark_timeout(&mut self) {
        fn first_crashed(tests: &mut [Test]) -> bool {
            for t in tests {
                if first_crashed(&mut t.subtests) {
                    return true;
                }
                if t.subtests.is_empty() && t.status == Status::Crashed {
                    t.status = Status::Timeout;
                    return true;
                }
            }
            false
        }
        first_crashed(&mut self.tests);
    }
}

#[derive(Debug, PartialEq)]
enum Line<'a> {
    Version,
    Plan(usize),
    Result {
        ok: bool,
        number: usize,
        name: &'a str,
        directive: Option<&'a str>,
    },
    Subtest(&'a str),
    Diagnostic(&'a str),
    Other,
}

fn classify(raw: &str) -> (usize, Line<'_>) {
    let indent = raw.len() - raw.trim_start().len();
    let s = raw.trim();
    let line = if let Some(v) = s.strip_prefix("KTAP version ") {
        if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() {
            Line::Version
        } else {
            Line::Other
        }
    } else if s == "TAP version 13" || s == "TAP version 14" {
        Line::Version
    } else if let Some(n) = s.strip_prefix("1..").and_then(|n| n.parse().ok()) {
        Line::Plan(n)
    } else if let Some(name) = s.strip_prefix("# Subtest: ") {
        Line::Subtest(name.trim())
    } else if s.starts_with('#') {
        Line::Diagnostic(s)
    } else if let Some(r) = parse_result(s) {
        r
    } else {
        Line::Other
    };
    (indent, line)
}

/// A KTAP result line (`ok N name`, `not ok N name # directive`, any
/// indentation): whether it passed and the test's name.
pub fn result_line(raw: &str) -> Option<(bool, &str)> {
    match parse_result(raw.trim())? {
        Line::Result { ok, name, .. } => Some((ok, name)),
        _ => None,
    }
}

/// A test case's result line: a result line indented as a suite's subtest
/// (the kernel's cases are one level down, four spaces), and its status
/// (`Pass`, `Fail` or `Skip`). The one test the live display, the JUnit
/// timings and the verdict use.
pub fn case_result(raw: &str) -> Option<Status> {
    if !raw.starts_with("    ") {
        return None;
    }
    match parse_result(raw.trim())? {
        Line::Result { ok, directive, .. } => Some(status_of(ok, directive)),
        _ => None,
    }
}

fn parse_result(s: &str) -> Option<Line<'_>> {
    let (ok, rest) = match s.strip_prefix("not ok ") {
        Some(r) => (false, r),
        None => (true, s.strip_prefix("ok ")?),
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number = rest[..digits].parse().ok()?;
    let rest = rest[digits..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, directive) = match rest
        .split_once(" # ")
        .or_else(|| rest.strip_prefix("# ").map(|d| ("", d)))
    {
        Some((n, d)) => (n.trim(), Some(d.trim())),
        None => (rest.trim(), None),
    };
    Some(Line::Result {
        ok,
        number,
        name,
        directive,
    })
}

struct Parser<'a> {
    lines: Vec<(usize, Line<'a>)>,
    pos: usize,
    errors: Vec<String>,
    crashed_in: Option<String>,
}

struct Block {
    name: Option<String>,
    plan: Option<usize>,
    tests: Vec<Test>,
    complete: bool,
}

fn status_of(ok: bool, directive: Option<&str>) -> Status {
    match directive {
        Some(d) if d.starts_with("SKIP") => {
            Status::Skip(d.trim_start_matches("SKIP").trim().to_string())
        }
        Some(d) if d.starts_with("TIMEOUT") => Status::Timeout,
        _ if ok => Status::Pass,
        _ => Status::Fail,
    }
}

impl<'a> Parser<'a> {
    /// Parses the block whose version line (at `indent`) was just consumed.
    fn block(&mut self, indent: usize, path: &str) -> Block {
        let mut b = Block {
            name: None,
            plan: None,
            tests: Vec::new(),
            complete: false,
        };
        let mut diags: Vec<String> = Vec::new();
        let mut running: Option<String> = None;
        while self.pos < self.lines.len() {
            if b.plan.is_some_and(|p| b.tests.len() >= p) {
                b.complete = true;
                return b;
            }
            let (ind, line) = &self.lines[self.pos];
            let ind = *ind;
            match *line {
                Line::Subtest(name) if b.tests.is_empty() && b.name.is_none() => {
                    b.name = Some(name.to_string());
                    self.pos += 1;
                }
                Line::Plan(n) if b.plan.is_none() && b.tests.is_empty() => {
                    b.plan = Some(n);
                    self.pos += 1;
                }
                Line::Version => {
                    self.pos += 1;
                    let sub_path = format!("{path}{}", if path.is_empty() { "" } else { "." });
                    let child = self.block(ind, &sub_path);
                    let name_hint = child.name.clone().unwrap_or_default();
                    if !child.complete {
                        // Died inside the subtest: it crashed, and so did
                        // everything after it at this level.
                        b.tests.push(Test {
                            name: name_hint,
                            status: Status::Crashed,
                            diagnostics: diags,
                            subtests: child.tests,
                        });
                        self.fill_missing(&mut b, path, None);
                        return b;
                    }
                    // The subtest's own result line follows.
                    let result = match self.lines.get(self.pos) {
                        Some((
                            _,
                            Line::Result {
                                ok,
                                number,
                                name,
                                directive,
                            },
                        )) => Some((*ok, *number, *name, *directive)),
                        _ => None,
                    };
                    match result {
                        Some((ok, number, name, directive)) => {
                            self.check_number(path, b.tests.len() + 1, number);
                            let mut status = status_of(ok, directive);
                            if status == Status::Pass
                                && child.tests.iter().any(|t| t.counts().failed > 0)
                            {
                                self.errors.push(format!(
                                    "{path}{name}: reported ok but has failing subtests"
                                ));
                                status = Status::Fail;
                            }
                            b.tests.push(Test {
                                name: name.to_string(),
                                status,
                                diagnostics: std::mem::take(&mut diags),
                                subtests: child.tests,
                            });
                            self.pos += 1;
                        }
                        _ => {
                            b.tests.push(Test {
                                name: name_hint,
                                status: Status::Crashed,
                                diagnostics: diags,
                                subtests: child.tests,
                            });
                            self.fill_missing(&mut b, path, None);
                            return b;
                        }
                    }
                }
                Line::Result { .. } if ind < indent => {
                    // A result at an outer level: this block (without a plan)
                    // is over.
                    b.complete = b.plan.is_none();
                    if !b.complete {
                        self.fill_missing(&mut b, path, running.as_deref());
                    }
                    return b;
                }
                Line::Result {
                    ok,
                    number,
                    name,
                    directive,
                } => {
                    self.check_number(path, b.tests.len() + 1, number);
                    b.tests.push(Test {
                        name: name.to_string(),
                        status: status_of(ok, directive),
                        diagnostics: std::mem::take(&mut diags),
                        subtests: Vec::new(),
                    });
                    running = None;
                    self.pos += 1;
                }
                Line::Diagnostic(d) => {
                    if let Some(r) = d.strip_prefix(RUNNING) {
                        running = Some(r.trim().to_string());
                    }
                    if let Some(r) = d.strip_prefix(CRASHED_IN) {
                        self.crashed_in = Some(r.trim().to_string());
                    }
                    diags.push(d.to_string());
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
        // End of input.
        b.complete = match b.plan {
            Some(p) => b.tests.len() >= p,
            None => true,
        };
        if !b.complete {
            self.fill_missing(&mut b, path, running.as_deref());
        }
        b
    }

    fn check_number(&mut self, path: &str, expected: usize, found: usize) {
        if expected != found {
            self.errors.push(format!(
                "{path}: expected test number {expected} but found {found}"
            ));
        }
    }

    /// Adds the tests a plan promised but the output never reported.
    fn fill_missing(&mut self, b: &mut Block, path: &str, running: Option<&str>) {
        let Some(plan) = b.plan else { return };
        let mut first = true;
        while b.tests.len() < plan {
            let name = match (first, running) {
                (true, Some(full)) => {
                    if self.crashed_in.is_none() {
                        self.crashed_in = Some(full.to_string());
                    }
                    full.rsplit('.').next().unwrap_or(full).to_string()
                }
                _ => {
                    let block = format!("{path}{}", b.name.as_deref().unwrap_or(""));
                    let block = if block.is_empty() {
                        "the top level".to_string()
                    } else {
                        block
                    };
                    format!("(test {} of {block} never reported)", b.tests.len() + 1)
                }
            };
            first = false;
            b.tests.push(Test {
                name,
                status: Status::Crashed,
                diagnostics: Vec::new(),
                subtests: Vec::new(),
            });
        }
    }
}

/// Parses serial output. Lines before the first `KTAP version` line, and any
/// line KTAP does not define, are ignored.
pub fn parse<S: AsRef<str>>(output: &[S]) -> Report {
    // Like kunit_parser.py, the first version line may follow a prefix (say,
    // a timestamp); that prefix is then stripped from every later line.
    let version_at = |l: &str| {
        let at = l.find("KTAP version ").or_else(|| l.find("TAP version "))?;
        (classify(&l[at..]).1 == Line::Version).then_some(at)
    };
    let Some((start, prefix_len)) = output
        .iter()
        .enumerate()
        .find_map(|(i, l)| Some((i, version_at(l.as_ref())?)))
    else {
        return Report::default();
    };
    let lines: Vec<(usize, Line)> = output[start + 1..]
        .iter()
        .map(|l| {
            let l = l.as_ref();
            classify(if l.len() >= prefix_len && l.is_char_boundary(prefix_len) {
                &l[prefix_len..]
            } else {
                l
            })
        })
        .collect();
    let mut p = Parser {
        lines,
        pos: 0,
        errors: Vec::new(),
        crashed_in: None,
    };
    let b = p.block(0, "");
    Report {
        found: true,
        plan: b.plan,
        tests: b.tests,
        complete: b.complete && b.plan.is_some(),
        errors: p.errors,
        crashed_in: p.crashed_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    /// A complete run: two suites, a skip, a failure with a diagnostic.
    fn good() -> String {
        format!(
            "\
boot log line
KTAP version 1
1..2
    KTAP version 1
    # Subtest: alpha
    1..2
    {RUNNING}alpha.one
    ok 1 one
    {RUNNING}alpha.two
    ok 2 two # SKIP not today
ok 1 alpha
    KTAP version 1
    # Subtest: beta
    1..1
    # beta.x:3: assertion failed
    not ok 1 x
not ok 2 beta
{}",
            contract::marker::END_OF_RUN
        )
    }

    #[test]
    fn nested_complete() {
        let good = good();
        let r = parse(&lines(&good));
        assert!(r.found && r.complete, "{r:?}");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(
            r.counts(),
            Counts {
                passed: 1,
                failed: 1,
                skipped: 1,
                crashed: 0
            }
        );
        assert_eq!(
            r.tests[0].subtests[1].status,
            Status::Skip("not today".into())
        );
        assert_eq!(r.failures(), vec![("beta.x".to_string(), Status::Fail)]);
        assert_eq!(
            r.tests[1].subtests[0].diagnostics,
            vec!["# beta.x:3: assertion failed".to_string()]
        );
    }

    #[test]
    fn truncated_mid_case_names_it_and_counts_the_rest() {
        let text = format!(
            "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: alpha\n    1..3\n    ok 1 one\n    {RUNNING}alpha.two\n{} on cpu0: PANIC",
            contract::marker::FATAL
        );
        let r = parse(&lines(&text));
        assert!(!r.complete);
        assert_eq!(r.crashed_in.as_deref(), Some("alpha.two"));
        let c = r.counts();
        assert_eq!((c.passed, c.crashed), (1, 3), "{r:#?}"); // two, three, and suite 2
        assert_eq!(r.tests[0].subtests[1].name, "two");
    }

    #[test]
    fn timeout_marks_running_case() {
        let text = format!(
            "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: a\n    1..2\n    {RUNNING}a.hang"
        );
        let mut r = parse(&lines(&text));
        r.mark_timeout();
        assert_eq!(r.tests[0].subtests[0].status, Status::Timeout);
        assert_eq!(r.tests[0].subtests[1].status, Status::Crashed);
    }

    #[test]
    fn crashed_in_line_names_the_case() {
        let text = format!(
            "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: a\n    1..2\n    ok 1 x\n{CRASHED_IN}a.y"
        );
        let r = parse(&lines(&text));
        assert_eq!(r.crashed_in.as_deref(), Some("a.y"));
    }

    #[test]
    fn counts_add() {
        let mut c = Counts {
            passed: 1,
            failed: 2,
            skipped: 3,
            crashed: 1,
        };
        c += c;
        assert_eq!(
            c,
            Counts {
                passed: 2,
                failed: 4,
                skipped: 6,
                crashed: 2
            }
        );
    }

    #[test]
    fn wrong_numbers_are_errors() {
        let r = parse(&lines("KTAP version 1\n1..2\nok 1 a\nok 3 b"));
        assert!(r.complete);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    }

    #[test]
    fn no_ktap_at_all() {
        let r = parse(&lines("garbage\nmore"));
        assert!(!r.found && !r.complete);
    }

    #[test]
    fn prefix_is_stripped_and_tap14_accepted() {
        let r = parse(&lines(
            "[ 0.1] TAP version 14\n[ 0.1] 1..1\n[ 0.2] ok 1 - thing",
        ));
        assert!(r.complete);
        assert_eq!(r.tests[0].name, "thing");
    }

    #[test]
    fn ok_parent_with_failing_child_is_failure() {
        let r = parse(&lines(
            "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 s",
        ));
        assert_eq!(r.tests[0].status, Status::Fail);
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn unplanned_subtest_ends_at_outer_result() {
        let r = parse(&lines(
            "KTAP version 1\n1..1\n  KTAP version 1\n  ok 1 a\n  ok 2 b\nok 1 s",
        ));
        assert!(r.complete, "{r:?}");
        assert_eq!(r.counts().passed, 2);
    }
}
