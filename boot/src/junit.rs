//! Test results for CI dashboards: JUnit XML (`cargo xtask test --junit
//! PATH`), written with `quick-junit` (cargo-nextest's serializer).
//!
//! Mental model: every stage of `cargo xtask test` becomes suites of
//! cases. The in-kernel KTAP suites map one to one (`kernel.<suite>`, a
//! case per KTAP case, its duration measured on the host from the
//! `# running:` line to the result line, its `#` diagnostics as the
//! failure text). `cargo test` output is read line by line
//! ([`CargoTests`]): one suite per test binary, a case per `test ... ok`
//! line, its duration from libtest's `--report-time` (`<0.123s>`), and the
//! captured output of a failed test (its `---- name stdout ----` section)
//! as the failure text.

use std::{io, path::Path, time::Duration};

use contract::marker::RUNNING;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::ktap::{self, Status};

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
    /// Never finished (the kernel crashed or hung; a test binary died).
    Error,
}

/// One test case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
    pub time: Option<Duration>,
    /// One line saying why it did not pass.
    pub message: Option<String>,
    /// Its diagnostics or captured output.
    pub output: String,
}

/// One suite of cases.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    pub name: String,
    pub cases: Vec<Case>,
}

impl Suite {
    /// (passed, failed or errors, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for k in &self.cases {
            match k.outcome {
                Outcome::Passed => c.0 += 1,
                Outcome::Failed | Outcome::Error => c.1 += 1,
                Outcome::Skipped => c.2 += 1,
            }
        }
        c
    }
}

/// The duration of each kernel case (`suite.case`), from the arrival time
/// of its `# running:` line to that of its result line.
pub fn case_durations(lines: &[String], times: &[Duration]) -> Vec<(String, Duration)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(case) = l.trim().strip_prefix(RUNNING) else {
            continue;
        };
        let end = lines[i + 1..]
            .iter()
            .position(|l| crate::ktap::case_result(l).is_some());
        if let (Some(j), Some(&t0)) = (end, times.get(i))
            && let Some(&t1) = times.get(i + 1 + j)
        {
            out.push((case.trim().to_string(), t1.saturating_sub(t0)));
        }
    }
    out
}

/// The KTAP report as suites (`kernel.<suite>`).
pub fn ktap_suites(report: &ktap::Report, durations: &[(String, Duration)]) -> Vec<Suite> {
    let mut suites = Vec::new();
    for s in &report.tests {
        let leaves: Vec<&ktap::Test> = if s.subtests.is_empty() {
            vec![s]
        } else {
            s.subtests.iter().collect()
        };
        let cases = leaves
            .into_iter()
            .map(|t| {
                let path = format!("{}.{}", s.name, t.name);
                let (outcome, message) = match &t.status {
                    Status::Pass => (Outcome::Passed, None),
                    Status::Skip(why) => (Outcome::Skipped, Some(why.clone())),
                    Status::Fail => (
                        Outcome::Failed,
                        Some(
                            t.diagnostics
                                .iter()
                                .rev()
                                .find(|d| d.contains("assertion failed") || d.contains("FAILURE"))
                                .or(t.diagnostics.last())
                                .map_or("failed".to_string(), |d| {
                                    d.trim_start_matches('#').trim().to_string()
                                }),
                        ),
                    ),
                    Status::Crashed => (
                        Outcome::Error,
                        Some(match &report.crashed_in {
                            Some(c) if *c == path => {
                                "the kernel stopped while this case ran".to_string()
                            }
                            _ => "never reported: the run ended before it".to_string(),
                        }),
                    ),
                    Status::Timeout => (
                        Outcome::Error,
                        Some("running when the host killed the kernel at its deadline".to_string()),
                    ),
                };
                Case {
                    time: durations.iter().find(|(p, _)| *p == path).map(|(_, d)| *d),
                    name: t.name.clone(),
                    outcome,
                    message,
                    output: t.diagnostics.join("\n"),
                }
            })
            .collect();
        suites.push(Suite {
            name: format!("kernel.{}", s.name),
            cases,
        });
    }
    suites
}

/// Reads `cargo test` output (libtest's human format, with
/// `-Zunstable-options --report-time`) into suites.
#[derive(Debug, Default)]
pub struct CargoTests {
    prefix: String,
    suites: Vec<Suite>,
    /// The failure section being read: (test name, its output).
    section: Option<(String, Vec<String>)>,
}

impl CargoTests {
    /// Suites named `<prefix><binary>: <source>`.
    pub fn new(prefix: &str) -> CargoTests {
        CargoTests {
            prefix: prefix.into(),
            ..CargoTests::default()
        }
    }

    pub fn line(&mut self, line: &str) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Running ") {
            self.close_section();
            // `unittests src/lib.rs (target/debug/deps/boot-0123abcd)`
            let (source, bin) = match rest.rsplit_once(" (") {
                Some((src, bin)) => (src, bin.trim_end_matches(')')),
                None => (rest, rest),
            };
            let bin = bin.rsplit('/').next().unwrap_or(bin);
            let bin = bin.rsplit_once('-').map_or(bin, |(b, _)| b);
            self.suites.push(Suite {
                name: format!("{}{bin}: {source}", self.prefix),
                cases: Vec::new(),
            });
            return;
        }
        if let Some(krate) = t.strip_prefix("Doc-tests ") {
            self.close_section();
            self.suites.push(Suite {
                name: format!("{}doc-tests {krate}", self.prefix),
                cases: Vec::new(),
            });
            return;
        }
        if let Some(rest) = t.strip_prefix("---- ")
            && let Some(name) = rest
                .strip_suffix(" stdout ----")
                .or(rest.strip_suffix(" stderr ----"))
        {
            self.close_section();
            self.section = Some((name.to_string(), Vec::new()));
            return;
        }
        if t == "failures:" || t.starts_with("test result:") {
            self.close_section();
            return;
        }
        if let Some((_, out)) = &mut self.section {
            out.push(line.to_string());
            return;
        }
        if let Some(rest) = t.strip_prefix("test ")
            && let Some((name, status)) = rest.rsplit_once(" ... ")
        {
            let (status, time) = match status.split_once(" <") {
                Some((s, t)) => (
                    s,
                    t.trim_end_matches('>')
                        .trim_end_matches('s')
                        .parse::<f64>()
                        .ok(),
                ),
                None => (status, None),
            };
            let outcome = match status {
                "ok" => Outcome::Passed,
                "FAILED" => Outcome::Failed,
                s if s.starts_with("ignored") => Outcome::Skipped,
                _ => return,
            };
            let message = (outcome == Outcome::Failed).then(|| "failed".to_string());
            if self.suites.is_empty() {
                self.suites.push(Suite {
                    name: format!("{}tests", self.prefix),
                    cases: Vec::new(),
                });
            }
            let suite = self.suites.last_mut().expect("one exists");
            suite.cases.push(Case {
                name: name.to_string(),
                outcome,
                time: time.map(Duration::from_secs_f64),
                message,
                output: String::new(),
            });
        }
    }

    /// A test binary that died without its summary: one error case.
    pub fn binary_failed(&mut self, why: &str) {
        let suite = match self.suites.last_mut() {
            Some(s) => s,
            None => {
                self.suites.push(Suite {
                    name: format!("{}tests", self.prefix),
                    cases: Vec::new(),
                });
                self.suites.last_mut().expect("pushed")
            }
        };
        suite.cases.push(Case {
            name: "(the test binary itself)".into(),
            outcome: Outcome::Error,
            time: None,
            message: Some(why.into()),
            output: String::new(),
        });
    }

    fn close_section(&mut self) {
        let Some((name, out)) = self.section.take() else {
            return;
        };
        // The section belongs to a case of the current suite.
        if let Some(c) = self
            .suites
            .iter_mut()
            .rev()
            .flat_map(|s| s.cases.iter_mut())
            .find(|c| c.name == name && c.outcome == Outcome::Failed)
        {
            let text = out.join("\n").trim().to_string();
            c.message = text
                .lines()
                .find(|l| l.contains("panicked at") || l.contains("assertion"))
                .map(|l| l.trim().to_string())
                .or(c.message.take());
            c.output = text;
        }
    }

    pub fn finish(mut self) -> Vec<Suite> {
        self.close_section();
        self.suites
    }
}

/// Writes `suites` as a JUnit XML file.
pub fn write(path: &Path, name: &str, suites: &[Suite]) -> io::Result<()> {
    let mut report = Report::new(name);
    for s in suites {
        let mut suite = TestSuite::new(s.name.as_str());
        let mut total = Duration::ZERO;
        for c in &s.cases {
            let mut status = match c.outcome {
                Outcome::Passed => TestCaseStatus::success(),
                Outcome::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Outcome::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
                Outcome::Skipped => TestCaseStatus::skipped(),
            };
            if let Some(m) = &c.message {
                status.set_message(m.as_str());
            }
            if c.outcome != Outcome::Passed && !c.output.is_empty() {
                status.set_description(c.output.as_str());
            }
            let mut case = TestCase::new(c.name.as_str(), status);
            case.set_classname(s.name.as_str());
            if let Some(t) = c.time {
                case.set_time(t);
                total += t;
            }
            suite.add_test_case(case);
        }
        suite.set_time(total);
        report.add_test_suite(suite);
    }
    let mut out = Vec::new();
    report.serialize(&mut out).map_err(io::Error::other)?;
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn ktap_cases_with_durations_and_diagnostics() {
        let out = lines(&format!(
            "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: pagelock\n    1..3\n    {RUNNING}pagelock.a\n    ok 1 a\n    {RUNNING}pagelock.b\n    # x.rs:3: assertion failed: 1 == 2\n    not ok 2 b\n    {RUNNING}pagelock.c\n    ok 3 c # SKIP needs two CPUs\nnot ok 1 pagelock\n",
        ));
        let times: Vec<Duration> = (0..out.len())
            .map(|i| Duration::from_millis(100 * i as u64))
            .collect();
        let d = case_durations(&out, &times);
        assert_eq!(d[0], ("pagelock.a".to_string(), Duration::from_millis(100)));
        assert_eq!(d[1], ("pagelock.b".to_string(), Duration::from_millis(200)));
        let report = ktap::parse(&out);
        let suites = ktap_suites(&report, &d);
        assert_eq!(suites.len(), 1);
        assert_eq!(suites[0].name, "kernel.pagelock");
        assert_eq!(suites[0].counts(), (1, 1, 1));
        let b = &suites[0].cases[1];
        assert_eq!(b.outcome, Outcome::Failed);
        assert_eq!(
            b.message.as_deref(),
            Some("x.rs:3: assertion failed: 1 == 2")
        );
        assert_eq!(
            suites[0].cases[2].message.as_deref(),
            Some("needs two CPUs")
        );
    }

    #[test]
    fn cargo_output_and_the_xml() {
        let mut c = CargoTests::new("");
        for l in lines(
            "     Running unittests src/lib.rs (target/debug/deps/boot-0123abcd)\n\nrunning 2 tests\ntest a::x ... ok <0.010s>\ntest a::y ... FAILED <1.500s>\n\nfailures:\n\n---- a::y stdout ----\n\nthread 'a::y' panicked at boot/src/a.rs:3:5:\nassertion `left == right` failed\n\nfailures:\n    a::y\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored\n   Doc-tests pagesync\ntest src/x.rs - y (line 3) ... ignored\n",
        ) {
            c.line(&l);
        }
        let suites = c.finish();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0].name, "boot: unittests src/lib.rs");
        let y = &suites[0].cases[1];
        assert_eq!(
            (y.outcome.clone(), y.time),
            (Outcome::Failed, Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            y.message.as_deref(),
            Some("thread 'a::y' panicked at boot/src/a.rs:3:5:")
        );
        assert!(
            y.output.contains("assertion `left == right` failed"),
            "{}",
            y.output
        );
        assert_eq!(suites[1].name, "doc-tests pagesync");
        assert_eq!(suites[1].counts(), (0, 0, 1));

        let path = std::env::temp_dir().join(format!("pcs-junit-{}.xml", std::process::id()));
        write(&path, "pcs", &suites).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("3"));
        assert_eq!(root.attribute("failures"), Some("1"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure element");
        assert!(
            failure
                .text()
                .unwrap_or("")
                .contains("assertion `left == right` failed"),
            "{xml}"
        );
        let case = failure.parent().unwrap();
        assert_eq!(case.attribute("name"), Some("a::y"));
        assert_eq!(case.attribute("time"), Some("1.500"));
    }
}
