//! Live progress of long runs: which stage, suite/case or benchmark runs,
//! how long against its budget, torture acquisitions so far and their rate,
//! how many cases or tests are done.
//!
//! Mental model: a [`Progress`] is fed lines (the kernel's console as a
//! [`LineSink`] of a [`crate::Run`], or `cargo test`'s output through
//! [`Progress::cargo_line`]) and keeps one status line up to date. On a
//! terminal ([`Mode::Bar`]) that is an `indicatif` spinner under the
//! scrolling output; otherwise ([`Mode::Plain`], CI logs) it is a plain
//! `xtask: progress: ...` line whenever what runs changes, and a heartbeat
//! every [`Progress::heartbeat`], without carriage returns or escape
//! codes. The kernel's progress reports are the contract's
//! `marker::Progress` lines (torture runs print one a second).

use std::{
    io::{IsTerminal, Write},
    sync::Mutex,
    time::{Duration, Instant},
};

use contract::marker::{self, Progress as KernelProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// Receives a run's console lines as they arrive (see
/// [`crate::Run::sink`]).
pub trait LineSink: Send + Sync {
    /// One console line (without its newline).
    fn line(&self, line: &str);
    /// Called about once a second while no line arrives.
    fn tick(&self) {}
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live status line (a terminal).
    Bar,
    /// Plain lines (not a terminal).
    Plain,
}

impl Mode {
    /// `Bar` when stderr is a terminal (and `TERM` is not `dumb`), else
    /// `Plain`.
    pub fn detect() -> Mode {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

#[derive(Default)]
struct State {
    stage: String,
    started: Option<Instant>,
    budget: Option<Duration>,
    /// The case, benchmark or test binary running now.
    current: Option<String>,
    current_since: Option<Instant>,
    done: usize,
    failed: usize,
    total: Option<usize>,
    /// The last kernel progress report: what, done, unit, when, rate.
    work: Option<(String, u64, String, Instant, Option<f64>)>,
    last_plain: Option<Instant>,
}

/// See the module documentation.
pub struct Progress {
    mode: Mode,
    /// Echo the fed lines (the kernel console, cargo's output).
    echo: bool,
    heartbeat: Duration,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
    out: Mutex<Box<dyn Write + Send>>,
    echo_out: Mutex<Box<dyn Write + Send>>,
}

impl Progress {
    /// Progress on stderr (echoed lines on stdout).
    pub fn new(mode: Mode, echo: bool) -> Progress {
        Progress::with_writers(
            mode,
            echo,
            Box::new(std::io::stderr()),
            Box::new(std::io::stdout()),
        )
    }

    /// Progress written to `out`, echoed lines to `echo_out` (tests).
    pub fn with_writers(
        mode: Mode,
        echo: bool,
        out: Box<dyn Write + Send>,
        echo_out: Box<dyn Write + Send>,
    ) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner:.green} [{elapsed_precise}] {wide_msg}")
                    .expect("a valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            mode,
            echo,
            heartbeat: Duration::from_secs(15),
            bar,
            state: Mutex::new(State::default()),
            out: Mutex::new(out),
            echo_out: Mutex::new(echo_out),
        }
    }

    /// Sets how often plain mode repeats the status while nothing changes.
    pub fn heartbeat(mut self, every: Duration) -> Progress {
        self.heartbeat = every;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Starts a stage (`[1/3] in-kernel suites`): resets the counters and
    /// says so.
    pub fn stage(&self, name: &str, budget: Option<Duration>) {
        {
            let mut s = self.state.lock().expect("progress lock");
            *s = State {
                stage: name.to_string(),
                started: Some(Instant::now()),
                budget,
                ..State::default()
            };
        }
        self.say(&format!("xtask: == {name}"));
        self.refresh(true);
    }

    /// Prints a line above the status line.
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(self.out.lock().expect("progress lock"), "{line}");
            }
        }
    }

    fn echo(&self, line: &str) {
        if !self.echo {
            return;
        }
        match &self.bar {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(self.echo_out.lock().expect("progress lock"), "{line}");
            }
        }
    }

    /// Feeds one line of `cargo test` output.
    pub fn cargo_line(&self, line: &str) {
        self.echo(line);
        let t = line.trim();
        let mut changed = false;
        {
            let mut s = self.state.lock().expect("progress lock");
            if let Some(rest) = t.strip_prefix("Running ") {
                s.current = Some(rest.split(" (").next().unwrap_or(rest).to_string());
                s.current_since = Some(Instant::now());
                changed = true;
            } else if let Some(rest) = t.strip_prefix("Doc-tests ") {
                s.current = Some(format!("doc tests of {rest}"));
                s.current_since = Some(Instant::now());
                changed = true;
            } else if let Some(n) = t
                .strip_prefix("running ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
            {
                *s.total.get_or_insert(0) += n;
            } else if t.starts_with("test ") && t.contains(" ... ") {
                s.done += 1;
                if t.contains(" ... FAILED") {
                    s.failed += 1;
                }
            }
        }
        self.refresh(changed);
    }

    fn refresh(&self, changed: bool) {
        let status = self.status();
        match &self.bar {
            Some(b) => b.set_message(status),
            None => {
                let now = Instant::now();
                let due = {
                    let mut s = self.state.lock().expect("progress lock");
                    let due = changed
                        || s.last_plain
                            .is_none_or(|t| now.duration_since(t) >= self.heartbeat);
                    if due {
                        s.last_plain = Some(now);
                    }
                    due
                };
                if due {
                    let _ = writeln!(
                        self.out.lock().expect("progress lock"),
                        "xtask: progress: {status}"
                    );
                }
            }
        }
    }

    /// The status line: stage, elapsed against budget, what runs, counts,
    /// work and rate.
    pub fn status(&self) -> String {
        let s = self.state.lock().expect("progress lock");
        let mut out = s.stage.clone();
        if let Some(t) = s.started {
            out.push_str(&format!(", {:.0} s", t.elapsed().as_secs_f64()));
            if let Some(b) = s.budget {
                out.push_str(&format!(" of a {:.0} s budget", b.as_secs_f64()));
            }
        }
        match s.total {
            Some(total) => out.push_str(&format!("; {}/{total} done", s.done)),
            None if s.done > 0 => out.push_str(&format!("; {} done", s.done)),
            None => {}
        }
        if s.failed > 0 {
            out.push_str(&format!(", {} FAILED", s.failed));
        }
        if let Some(c) = &s.current {
            out.push_str(&format!("; running {c}"));
            if let Some(t) = s.current_since {
                out.push_str(&format!(" ({:.0} s)", t.elapsed().as_secs_f64()));
            }
        }
        if let Some((what, done, unit, _, rate)) = &s.work {
            out.push_str(&format!(
                "; {what}: {} {unit}",
                crate::bench::short(*done as f64)
            ));
            if let Some(r) = rate {
                out.push_str(&format!(" ({}/s)", crate::bench::short(*r)));
            }
        }
        out
    }

    /// Done, failed (cases or tests counted so far).
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().expect("progress lock");
        (s.done, s.failed)
    }

    /// Clears the live line (before a final summary).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl LineSink for Progress {
    fn line(&self, line: &str) {
        self.echo(line);
        let t = line.trim();
        let mut changed = false;
        {
            let mut s = self.state.lock().expect("progress lock");
            let now = Instant::now();
            if let Some(case) = t.strip_prefix(marker::RUNNING) {
                s.current = Some(case.trim().to_string());
                s.current_since = Some(now);
                s.work = None;
                changed = true;
            } else if let Some(bench) = t.strip_prefix(marker::BENCH_START) {
                if !bench.ends_with("FAILED") {
                    s.current = Some(bench.split(" (").next().unwrap_or(bench).to_string());
                    s.current_since = Some(now);
                    s.work = None;
                    changed = true;
                }
            } else if let Some(p) = KernelProgress::parse(t) {
                let rate = match &s.work {
                    Some((what, done, _, at, _)) if what == p.what && p.done >= *done => {
                        let dt = now.duration_since(*at).as_secs_f64();
                        (dt > 0.0).then(|| (p.done - done) as f64 / dt)
                    }
                    _ => None,
                };
                s.work = Some((p.what.to_string(), p.done, p.unit.to_string(), now, rate));
            } else if let Some(status) = crate::ktap::case_result(line) {
                s.done += 1;
                if status == crate::ktap::Status::Fail {
                    s.failed += 1;
                }
            } else if t.starts_with(marker::BENCH) {
                s.done += 1;
            }
        }
        self.refresh(changed);
    }

    fn tick(&self) {
        self.refresh(false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_mode_prints_plain_lines() {
        let (out, echo) = (Shared::default(), Shared::default());
        let p = Progress::with_writers(
            Mode::Plain,
            true,
            Box::new(out.clone()),
            Box::new(echo.clone()),
        )
        .heartbeat(Duration::ZERO);
        p.stage("[1/3] in-kernel suites", Some(Duration::from_secs(600)));
        let work = |done| {
            KernelProgress {
                what: "torture",
                done,
                unit: "acquisitions",
                elapsed_ms: done / 2,
                budget_ms: 4000,
            }
            .to_string()
        };
        for l in [
            "KTAP version 1".to_string(),
            format!("    {}pagelock.torture", marker::RUNNING),
            work(1000),
            work(3000),
            "    ok 1 torture".to_string(),
            format!("    {}pagelock.torture_fifo", marker::RUNNING),
            "    not ok 2 torture_fifo".to_string(),
        ] {
            p.line(&l);
        }
        p.tick();
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
        for l in text.lines() {
            assert!(l.starts_with("xtask: "), "{l:?}");
        }
        assert!(text.contains("running pagelock.torture ("), "{text}");
        assert!(text.contains("torture: 3000 acquisitions ("), "{text}");
        assert!(
            text.contains("of a 600 s budget; 2 done, 1 FAILED; running pagelock.torture_fifo"),
            "{text}"
        );
        let echoed = String::from_utf8(echo.0.lock().unwrap().clone()).unwrap();
        assert!(echoed.starts_with("KTAP version 1\n"), "{echoed}");
        assert_eq!(p.counts(), (2, 1));
    }

    #[test]
    fn plain_mode_heartbeat_is_rate_limited() {
        let out = Shared::default();
        let p = Progress::with_writers(
            Mode::Plain,
            false,
            Box::new(out.clone()),
            Box::new(Shared::default()),
        )
        .heartbeat(Duration::from_secs(3600));
        p.stage("bench", None);
        for _ in 0..100 {
            p.tick();
            p.line("some console line");
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "the stage line and one status: {text}"
        );
    }

    #[test]
    fn cargo_output_counts_tests() {
        let out = Shared::default();
        let p = Progress::with_writers(
            Mode::Plain,
            false,
            Box::new(out.clone()),
            Box::new(Shared::default()),
        )
        .heartbeat(Duration::from_secs(3600));
        p.stage("[2/3] host tests", None);
        for l in [
            "     Running tests/pagelock.rs (target/debug/deps/pagelock-1234)",
            "running 3 tests",
            "test a ... ok",
            "test b ... FAILED",
            "test c ... ignored",
        ] {
            p.cargo_line(l);
        }
        assert_eq!(p.counts(), (3, 1));
        assert!(
            p.status()
                .contains("3/3 done, 1 FAILED; running tests/pagelock.rs"),
            "{}",
            p.status()
        );
    }
}
