//! `cargo xtask compare`: two configurations, the same benchmarks, one
//! verdict per metric.
//!
//! A configuration is a set of kernel parameters (`-- A... -- B...`) or a
//! git revision (`--rev A --rev B`, each built in a worktree of its own
//! under `target/compare/`). The two are booted in interleaved rounds, A B
//! then B A, one boot per configuration per round with `bench_rounds=1`
//! and the round's seed, so a slow phase of the host hits both. Every
//! metric both report is compared by `boot::compare` (ratio of medians B/A,
//! bootstrap interval, verdict beyond a noise threshold). Written into one
//! directory (default `target/compare/<date>-<time>/`): `compare.json`,
//! `compare.md`, and SVG plots with the two configurations side by side;
//! the table is printed. The exit status is non-zero if a boot of either
//! failed or reported a correctness failure.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, SystemTime},
};

use boot::{
    Run,
    bench::{Group, Metric, Results, RunInfo},
    compare::{self, Change, Rule, Verdict},
    contract::bench::Unit,
    plot,
    progress::{Mode, Progress},
};
use clap::Args;
use serde::Serialize;

use crate::{Result, bench::boot_into, bench::stamp, params_ok, prepare, show, user_path};

#[derive(Args)]
pub struct CompareArgs {
    /// Number of CPUs (`-smp`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest memory (`-m` syntax).
    #[arg(long, default_value = "512M")]
    mem: String,
    /// Only benchmarks whose name matches this glob (kernel `filter=`).
    #[arg(long)]
    filter: Option<String>,
    /// Rounds: boots per configuration, interleaved.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=100))]
    rounds: u32,
    /// Compare two git revisions (give `--rev` twice) instead of two
    /// parameter sets; parameters after `--` then apply to both.
    #[arg(long = "rev", value_name = "REV")]
    revs: Vec<String>,
    /// Noise threshold: a change must leave 1 ± this ratio entirely.
    #[arg(long, default_value_t = 0.02)]
    noise: f64,
    /// Width of the bootstrap confidence interval.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Kill QEMU after this many seconds (per boot).
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Where to write compare.json, compare.md and the plots (default:
    /// target/compare/<date>-<time>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not echo the kernel console.
    #[arg(long, short)]
    quiet: bool,
    /// The configurations: `-- KEY=V ... -- KEY=V ...` (A, then B).
    #[arg(last = true)]
    params: Vec<String>,
}

/// One side of the comparison.
#[derive(Clone, Debug, Serialize)]
struct Config {
    /// Short name for tables and plots (`A: unfairness=0`).
    name: String,
    /// Kernel parameters of this side (beyond the shared ones).
    params: Vec<String>,
    /// The git revision, if comparing revisions.
    rev: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    command: String,
    smp: u32,
    mem: &'a str,
    filter: Option<&'a str>,
    rounds: u32,
    rule: Rule,
    a: &'a Config,
    b: &'a Config,
    failures: &'a [String],
    verdicts: &'a [Verdict],
}

/// A revision as the reports name it: as given, with the commit it
/// resolves to when that is not what was given (`HEAD (0cf161f)`), so a
/// committed report says which code it measured.
fn describe_rev(rev: &str) -> String {
    let short = Command::new("git")
        .args([
            "rev-parse",
            "--short",
            "--verify",
            &format!("{rev}^{{commit}}"),
        ])
        .current_dir(boot::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match short {
        Some(s) if !s.starts_with(rev) && !rev.starts_with(&s) => format!("{rev} ({s})"),
        _ => rev.to_string(),
    }
}

/// Splits `A... -- B...` (or, with revisions, the shared parameters).
fn configs(a: &CompareArgs) -> std::result::Result<(Vec<String>, Config, Config), String> {
    let mut parts = a.params.split(|w| w == "--");
    let first: Vec<String> = parts.next().unwrap_or_default().to_vec();
    let second: Option<Vec<String>> = parts.next().map(<[String]>::to_vec);
    if parts.next().is_some() {
        return Err("more than two parameter sets after `--`".into());
    }
    let name = |tag: &str, ps: &[String], rev: Option<&str>| {
        let what = match rev {
            Some(r) => describe_rev(r),
            None if ps.is_empty() => "defaults".to_string(),
            None => ps.join(" "),
        };
        format!("{tag}: {what}")
    };
    match (a.revs.as_slice(), second) {
        ([], Some(b)) => Ok((
            Vec::new(),
            Config {
                name: name("A", &first, None),
                params: first,
                rev: None,
            },
            Config {
                name: name("B", &b, None),
                params: b,
                rev: None,
            },
        )),
        ([], None) => Err(
            "give two configurations: `cargo xtask compare -- KEY=V ... -- KEY=V ...` or `--rev A --rev B`"
                .into(),
        ),
        ([ra, rb], None) => Ok((
            first,
            Config {
                name: name("A", &[], Some(ra)),
                params: Vec::new(),
                rev: Some(ra.clone()),
            },
            Config {
                name: name("B", &[], Some(rb)),
                params: Vec::new(),
                rev: Some(rb.clone()),
            },
        )),
        ([_, _], Some(_)) => {
            Err("with --rev, give one parameter set after `--` (shared by both)".into())
        }
        _ => Err("--rev must be given exactly twice".into()),
    }
}

/// A worktree of `rev` under `target/compare/rev-<sha>`, made or moved to
/// it; returns its path.
fn worktree(rev: &str) -> Result<PathBuf> {
    let root = boot::workspace_root();
    let sha = Command::new("git")
        .args(["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .current_dir(&root)
        .output()?;
    if !sha.status.success() {
        return Err(format!("not a git revision: {rev}").into());
    }
    let sha = String::from_utf8_lossy(&sha.stdout).trim().to_string();
    let dir = boot::target_dir()
        .join("compare")
        .join(format!("rev-{}", &sha[..12]));
    if !dir.join(".git").exists() {
        let ok = Command::new("git")
            .args(["worktree", "add", "--detach"])
            .arg(&dir)
            .arg(&sha)
            .current_dir(&root)
            .status()?
            .success();
        if !ok {
            return Err(format!("git worktree add {} {sha} failed", dir.display()).into());
        }
    }
    Ok(dir)
}

/// One boot of a revision's own `cargo xtask bench` (its kernel, its
/// benchmarks), its results read back.
fn bench_rev(dir: &Path, a: &CompareArgs, words: &[String], out: &Path) -> Result<Option<Results>> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args(["xtask", "bench", "--quiet", "--smp"])
        .arg(a.smp.to_string())
        .args(["--mem", &a.mem, "--timeout"])
        .arg(a.timeout.to_string())
        .arg("--out")
        .arg(out);
    if let Some(f) = &a.filter {
        cmd.args(["--filter", f]);
    }
    cmd.arg("--").args(words);
    let status = cmd.status()?;
    match Results::read(&out.join("results.json")) {
        Ok(r) if status.success() => Ok(Some(r)),
        Ok(_) | Err(_) => Ok(None),
    }
}

/// The rounds of both sides as one results set for the plots: one group
/// per side, benchmark, variant and labels, with the side as a sweep
/// value (`config`), so every plot draws the two side by side, each side
/// in its own colour throughout.
fn merged(a_name: &str, a: &[Results], b_name: &str, b: &[Results], base: &Results) -> Results {
    let mut r = Results::new(&base.run_id, RunInfo::default());
    r.sweep = vec![boot::bench::Axis {
        key: "config".into(),
        values: vec![a_name.into(), b_name.into()],
    }];
    r.smp = base.smp;
    r.mem = base.mem.clone();
    r.profile = base.profile.clone();
    for (name, rounds) in [(a_name, a), (b_name, b)] {
        // (bench, variant, labels) -> metric name -> (unit, samples)
        let mut acc: Vec<(Group, BTreeMap<String, (String, Vec<f64>)>)> = Vec::new();
        for round in rounds {
            for g in &round.results {
                let i = match acc.iter().position(|(h, _)| {
                    h.bench == g.bench && h.variant == g.variant && h.labels == g.labels
                }) {
                    Some(i) => i,
                    None => {
                        let mut h = g.clone();
                        h.metrics.clear();
                        h.histograms.clear();
                        h.sweep = BTreeMap::from([("config".to_string(), name.to_string())]);
                        acc.push((h, BTreeMap::new()));
                        acc.len() - 1
                    }
                };
                for m in &g.metrics {
                    acc[i]
                        .1
                        .entry(m.name.clone())
                        .or_insert_with(|| (m.unit.clone(), Vec::new()))
                        .1
                        .push(compare::median(&m.samples));
                }
            }
        }
        for (mut g, metrics) in acc {
            g.metrics = metrics
                .into_iter()
                .filter_map(|(n, (u, s))| Some(Metric::of(&n, Unit::from_name(&u)?, s)))
                .collect();
            r.results.push(g);
        }
    }
    r
}

pub fn compare(a: CompareArgs) -> Result<bool> {
    let (shared, ca, cb) = match configs(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: compare: {e}");
            return Ok(false);
        }
    };
    let rule = Rule {
        noise: a.noise,
        confidence: a.confidence,
        ..Rule::default()
    };
    let mut fixed: Vec<String> = vec!["mode=bench".into(), "bench_rounds=1".into()];
    fixed.extend(a.filter.as_ref().map(|f| format!("filter={f}")));
    fixed.extend(shared.iter().cloned());
    let base = Run::new("compare")
        .profile(boot::build::Profile::Release)
        .smp(a.smp)
        .mem(&a.mem)
        .timeout(Duration::from_secs(a.timeout))
        .params(&fixed);
    // Both sides' parameters are checked before anything is built.
    for c in [&ca, &cb] {
        if c.rev.is_none() && !params_ok(&base.clone().params(&c.params)) {
            return Ok(false);
        }
    }
    let run_id = stamp(SystemTime::now());
    let dir = match &a.out {
        Some(d) => user_path(d),
        None => boot::target_dir().join("compare").join(&run_id),
    };
    fs::create_dir_all(&dir)?;
    let trees = match (&ca.rev, &cb.rev) {
        (Some(ra), Some(rb)) => Some((worktree(ra)?, worktree(rb)?)),
        _ => {
            prepare(&base)?;
            None
        }
    };
    let progress = Arc::new(Progress::new(Mode::detect(), !a.quiet));
    let mut sides: [Vec<Results>; 2] = [Vec::new(), Vec::new()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..a.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let c = if side == 0 { &ca } else { &cb };
            let seed = format!("seed={}", round + 1);
            progress.stage(
                &format!("[round {}/{}] {}", round + 1, a.rounds, c.name),
                Some(Duration::from_secs(a.timeout)),
            );
            let got = match &trees {
                Some((ta, tb)) => {
                    let tree = if side == 0 { ta } else { tb };
                    let mut words = shared.clone();
                    words.extend(["bench_rounds=1".to_string(), seed]);
                    let out = dir.join(format!("{}-round{}", ["a", "b"][side], round + 1));
                    bench_rev(tree, &a, &words, &out)?
                }
                None => {
                    let run = base
                        .clone()
                        .params(&c.params)
                        .params([seed])
                        .sink(progress.clone() as Arc<dyn boot::progress::LineSink>);
                    let mut r = Results::new(&run_id, RunInfo::default());
                    let ok = boot_into(&run, BTreeMap::new(), &mut r, &progress)?;
                    ok.then_some(r)
                }
            };
            match got {
                Some(r) => sides[side].push(r),
                None => failures.push(format!("round {}: {} failed", round + 1, c.name)),
            }
        }
    }
    progress.finish();
    let verdicts = compare::compare(&sides[0], &sides[1], &rule);
    let report = Report {
        schema: "pcs-compare",
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smp: a.smp,
        mem: &a.mem,
        filter: a.filter.as_deref(),
        rounds: a.rounds,
        rule,
        a: &ca,
        b: &cb,
        failures: &failures,
        verdicts: &verdicts,
    };
    let json = dir.join("compare.json");
    fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")?;
    let md = compare::markdown(&verdicts, &ca.name, &cb.name, &rule);
    let md_path = dir.join("compare.md");
    fs::write(
        &md_path,
        format!(
            "# {} vs {}\n\n{} rounds, interleaved; ratio B/A of the medians with its bootstrap interval; a change is reported when the whole interval lies beyond 1 ± {}.\n\n{md}",
            ca.name, cb.name, a.rounds, rule.noise
        ),
    )?;
    let mut plots = Vec::new();
    if let (Some(first), false) = (sides[0].first(), sides[1].is_empty()) {
        let m = merged(&ca.name, &sides[0], &cb.name, &sides[1], first);
        plots = plot::write_plots(&m, &dir)?;
    }
    println!();
    print!("{md}");
    let changed = verdicts
        .iter()
        .filter(|v| !matches!(v.change, Change::NoDifference | Change::Undecided))
        .count();
    println!(
        "xtask: {} metrics compared: {changed} changed beyond the noise, {} no difference, {} undecided",
        verdicts.len(),
        verdicts
            .iter()
            .filter(|v| v.change == Change::NoDifference)
            .count(),
        verdicts
            .iter()
            .filter(|v| v.change == Change::Undecided)
            .count()
    );
    println!("xtask: report: {}", show(&json));
    println!("xtask:         {}", show(&md_path));
    for p in &plots {
        println!("xtask:         {}", show(p));
    }
    if failures.is_empty() {
        Ok(true)
    } else {
        eprintln!("xtask: compare FAILED (a boot failed or reported a correctness failure):");
        for f in &failures {
            eprintln!("  - {f}");
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CompareArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<(Vec<String>, Config, Config), String> {
        let mut v = vec!["compare"];
        v.extend(args);
        configs(&T::parse_from(v).a)
    }

    #[test]
    fn two_parameter_sets_or_two_revisions() {
        let (shared, a, b) = parse(&["--", "unfairness=0", "--", "unfairness=5"]).unwrap();
        assert!(shared.is_empty());
        assert_eq!(a.params, ["unfairness=0"]);
        assert_eq!(b.params, ["unfairness=5"]);
        assert_eq!(b.name, "B: unfairness=5");
        let (shared, a, b) = parse(&["--rev", "HEAD~1", "--rev", "HEAD", "--", "hz=250"]).unwrap();
        assert_eq!(shared, ["hz=250"]);
        assert_eq!(
            (a.rev.as_deref(), b.rev.as_deref()),
            (Some("HEAD~1"), Some("HEAD"))
        );
        let (_, a, _) = parse(&["--", "--", "bits=4"]).unwrap();
        assert_eq!(a.name, "A: defaults");
        assert!(parse(&["--", "bits=4"]).is_err());
        assert!(parse(&["--rev", "HEAD"]).is_err());
        assert!(parse(&["--", "a=1", "--", "b=2", "--", "c=3"]).is_err());
    }
}
