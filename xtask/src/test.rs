//! `cargo xtask test [FILTER] [--junit PATH]`: every test, in three stages,
//! each shown live (`boot::progress`): the in-kernel KTAP suites (one
//! boot, each case counted), `cargo test --workspace` (host unit tests and
//! the QEMU integration tests in `tests/`), and the loom model checks of
//! `pagesync`. One summary line at the end; with `--junit`, the results of
//! all three as JUnit XML (`boot::junit`).

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use boot::{
    Run,
    junit::{self, CargoTests, Case, Outcome, Suite},
    ktap::Counts,
    progress::{LineSink, Mode, Progress},
};
use clap::Args;

use crate::{Result, params_ok, prepare, print_notes, select, show, user_path};

#[derive(Args)]
pub struct TestArgs {
    /// Only tests whose full name contains FILTER: kernel cases
    /// `suite.case` (`filter=*FILTER*`), host tests and loom models
    /// `<test file or crate>::<test>` (`select.rs`). A subsystem's name
    /// (`pagelock`, `pagecache`, `gup`, ...) selects all three layers of it.
    filter: Option<String>,
    /// Also write the results as JUnit XML to PATH (suites, cases, status,
    /// durations, the diagnostics of failed cases).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
}

/// Deadline of the in-kernel suites' boot.
const SUITES_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs a cargo test command, its output (stdout and stderr, in order)
/// fed to the progress display and the JUnit reader, and adds up its
/// `test result:` lines.
fn cargo_tests(
    progress: &Progress,
    junit: &mut CargoTests,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<Counts> {
    progress.say(&format!("xtask: cargo {}", args.join(" ")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(boot::workspace_root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    // Our copies of the write end must go, or the reader never sees EOF.
    drop(cmd);
    let mut c = Counts::default();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        progress.cargo_line(&line);
        junit.line(&line);
        // "test result: ok. 8 passed; 0 failed; 1 ignored; ..."
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut w = part.split_whitespace().rev();
                let (Some(kind), Some(n)) = (w.next(), w.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<usize>() else { continue };
                match kind {
                    "passed" => c.passed += n,
                    "failed" => c.failed += n,
                    "ignored" => c.skipped += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && c.failed == 0 {
        // A build error or a crashed test binary: count it as a failure.
        c.failed += 1;
        progress.say(&format!("xtask: cargo exited with {status}"));
        junit.binary_failed(&format!("cargo exited with {status}"));
    }
    Ok(c)
}

/// libtest flags: report each test's duration (for JUnit and the slow
/// ones), on the pinned nightly's test harness.
const REPORT_TIME: [&str; 2] = ["-Zunstable-options", "--report-time"];

/// `args` with the libtest flags of [`REPORT_TIME`] after its `--` (added
/// if missing).
fn with_report_time<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    match v.iter().position(|a| *a == "--") {
        Some(i) => {
            for (k, f) in REPORT_TIME.iter().enumerate() {
                v.insert(i + 1 + k, f);
            }
        }
        None => {
            v.push("--");
            v.extend(REPORT_TIME);
        }
    }
    v
}

pub fn test(a: TestArgs) -> Result<bool> {
    let filter = a.filter.as_deref();
    let start = Instant::now();
    let mut total = Counts::default();
    let mut stages = Vec::new();
    let mut suites: Vec<Suite> = Vec::new();
    let progress = Arc::new(Progress::new(Mode::detect(), true));

    // 1. Kernel suites, booted directly so each KTAP case counts.
    let t = Instant::now();
    let run = Run::new("suites")
        .timeout(SUITES_TIMEOUT)
        .params(filter.map(|f| format!("filter=*{f}*")))
        .sink(progress.clone() as Arc<dyn LineSink>);
    if !params_ok(&run) {
        return Ok(false);
    }
    progress.say("xtask: [1/3] in-kernel suites: building the kernel");
    prepare(&run)?;
    progress.stage(
        &format!("[1/3] in-kernel suites ({run})"),
        Some(SUITES_TIMEOUT),
    );
    let (out, v) = run.run()?;
    let kc = v.report.counts();
    // A FILTER that names only host tests or loom models (`loom_pagelock`,
    // `visibility`) selects no kernel case: the kernel refuses such a
    // filter (kernel/suites/src/ktest/mod.rs, "selects no test case"), which here
    // only means that this layer has nothing to run.
    let no_kernel_case = filter.is_some()
        && kc.passed + kc.failed + kc.skipped == 0
        && out.contains("selects no test case");
    if no_kernel_case {
        progress.say(&format!(
            "xtask: no kernel case matches '*{}*'",
            filter.unwrap_or("")
        ));
    } else if !v.passed {
        progress.say(&format!(
            "xtask: in-kernel suites FAILED:\n{}",
            v.explain(&out)
        ));
    }
    print_notes(&v.notes);
    let mut counted = kc;
    if !v.passed && kc.failed == 0 && !no_kernel_case {
        counted.failed += 1;
    }
    total += counted;
    stages.push(format!(
        "[1/3] in-kernel suites: {kc} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    suites.extend(junit::ktap_suites(
        &v.report,
        &junit::case_durations(&out.lines, &out.times),
    ));
    if !v.passed && kc.failed == 0 && !no_kernel_case {
        suites.push(Suite {
            name: "kernel".into(),
            cases: vec![Case {
                name: "(the run)".into(),
                outcome: Outcome::Error,
                time: Some(out.elapsed),
                message: Some(v.reasons.join("; ")),
                output: format!("serial log: {}", show(&out.serial_log)),
            }],
        });
    }

    // 2. Host unit tests and the QEMU integration tests in tests/.
    let t = Instant::now();
    progress.stage("[2/3] host and QEMU integration tests", None);
    // --no-fail-fast: one failing test binary must not hide the others.
    let args = ["test", "--workspace", "--no-fail-fast"];
    let mut host = CargoTests::new("");
    let c = match filter {
        None => cargo_tests(&progress, &mut host, &with_report_time(&args), &[])?,
        Some(f) => select::run_selected(
            "host and QEMU integration tests",
            &args,
            &[],
            f,
            Some(&["test", "--workspace", "--doc", "--no-fail-fast"]),
            &mut |a, e| cargo_tests(&progress, &mut host, &with_report_time(a), e),
        )?,
    };
    total += c;
    stages.push(format!(
        "[2/3] host and integration tests: {c} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    suites.extend(host.finish());

    // 3. loom model checks of the portable protocol code.
    let t = Instant::now();
    progress.stage("[3/3] loom model checks", None);
    let loom_dir = boot::target_dir().join("loom");
    let loom_dir = loom_dir.to_string_lossy().into_owned();
    let args = [
        "test",
        "--package",
        "pagesync",
        "--release",
        "--tests",
        "--no-fail-fast",
    ];
    let envs = [
        ("RUSTFLAGS", "--cfg loom"),
        ("CARGO_TARGET_DIR", loom_dir.as_str()),
    ];
    let mut loom = CargoTests::new("loom: ");
    let c = match filter {
        None => cargo_tests(&progress, &mut loom, &with_report_time(&args), &envs)?,
        Some(f) => {
            select::run_selected("loom model checks", &args, &envs, f, None, &mut |a, e| {
                cargo_tests(&progress, &mut loom, &with_report_time(a), e)
            })?
        }
    };
    total += c;
    stages.push(format!(
        "[3/3] loom model checks: {c} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
    suites.extend(loom.finish());
    progress.finish();

    if let Some(path) = &a.junit {
        let path = user_path(path);
        junit::write(&path, "pcs: cargo xtask test", &suites)?;
        let cases: usize = suites.iter().map(|s| s.cases.len()).sum();
        stages.push(format!(
            "JUnit XML: {} ({} suites, {cases} cases)",
            show(&path),
            suites.len()
        ));
    }

    println!();
    for s in &stages {
        println!("xtask: {s}");
    }
    println!("xtask: total time {:.0} s", start.elapsed().as_secs_f64());
    println!(
        "{} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    Ok(total.failed == 0)
}
