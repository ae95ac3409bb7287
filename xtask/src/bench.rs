//! `cargo xtask bench` and `cargo xtask plot`.
//!
//! A bench run: check the parameters and sweeps (before anything is built),
//! build the release kernel once, boot once per sweep combination with the
//! live progress display, read each boot's benchmark lines
//! (`boot::bench`), and write into one directory (default
//! `target/bench/<date>-<time>-<filter>/`): `results.json` (schema:
//! `docs/bench-results.md`), one CSV per benchmark, and the SVG plots;
//! then print the table and the paths. The run fails if any boot failed or
//! any benchmark reported a correctness failure.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use boot::{
    Run,
    bench::{Boot, Results, RunInfo, parse_lines},
    contract::{
        marker::END_OF_RUN,
        params::{self, Key},
    },
    plot,
    progress::{Mode, Progress},
    qemu::Exit,
    sweep::Sweep,
};
use clap::Args;

use crate::{Result, params_ok, prepare, print_notes, show, user_path};

#[derive(Args)]
pub struct BenchArgs {
    /// Number of CPUs (`-smp`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest memory (`-m` syntax).
    #[arg(long, default_value = "512M")]
    mem: String,
    /// Only benchmarks whose name matches this glob (kernel `filter=`).
    #[arg(long)]
    filter: Option<String>,
    /// Boot once per value of a kernel parameter, `key=v1,v2,...`; repeat
    /// for every combination of several.
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    sweeps: Vec<String>,
    /// Kill QEMU after this many seconds (per boot).
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Where to write results.json, the CSVs and plots (default:
    /// target/bench/<date>-<time>-<filter>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not echo the kernel console (progress and results only).
    #[arg(long, short)]
    quiet: bool,
    /// Build the kernel without optimisations: quicker to build, for
    /// checking a benchmark's code; its figures are not comparable.
    #[arg(long)]
    dev: bool,
    /// Further kernel parameters, `key=value` (after `--`; see `cargo xtask params`).
    #[arg(last = true)]
    params: Vec<String>,
}

#[derive(Args)]
pub struct PlotArgs {
    /// A results.json written by `cargo xtask bench`.
    results: PathBuf,
    /// Where to write the SVGs (default: beside the results file).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `YYYYMMDD-HHMMSS` (UTC) of `t`.
pub(crate) fn stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn bench(a: BenchArgs) -> Result<bool> {
    let mut fixed: Vec<String> = vec!["mode=bench".into()];
    fixed.extend(a.filter.as_ref().map(|f| format!("filter={f}")));
    fixed.extend(a.params.iter().cloned());
    let base = Run::new("bench")
        .profile(if a.dev {
            boot::build::Profile::Dev
        } else {
            boot::build::Profile::Release
        })
        .smp(a.smp)
        .mem(&a.mem)
        .timeout(Duration::from_secs(a.timeout))
        .params(&fixed);
    if !params_ok(&base) {
        return Ok(false);
    }
    let sweep = match Sweep::parse(&a.sweeps, &fixed) {
        Ok(s) => s,
        Err(e) => {
            eprint!("xtask: {e}");
            eprintln!("xtask: `cargo xtask params` lists every parameter");
            return Ok(false);
        }
    };
    let rounds = params::parse(&base.param_string())
        .ok()
        .and_then(|p| p.uint(Key::BenchRounds))
        .unwrap_or(5) as u32;
    let run_id = format!(
        "{}-{}",
        stamp(SystemTime::now()),
        a.filter
            .as_deref()
            .map_or("all".to_string(), |f| f.replace(['*', ',', '/', '?'], "_"))
    );
    let dir = match &a.out {
        Some(d) => user_path(d),
        None => boot::target_dir().join("bench").join(&run_id),
    };
    fs::create_dir_all(&dir)?;
    let mut results = Results::new(
        &run_id,
        RunInfo {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            smp: a.smp,
            mem: a.mem.clone(),
            filter: a.filter.clone(),
            params: a.params.clone(),
            rounds,
            sweep: sweep.axes(),
            kvm: false,
            profile: if a.dev { "dev" } else { "release" }.into(),
        },
    );
    prepare(&base)?;
    let combos = sweep.combinations();
    let progress = Arc::new(Progress::new(Mode::detect(), !a.quiet));
    for (i, combo) in combos.iter().enumerate() {
        let words: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let run = base
            .clone()
            .params(&words)
            .sink(progress.clone() as Arc<dyn boot::progress::LineSink>);
        progress.stage(
            &format!(
                "[boot {}/{}] benchmarks {}",
                i + 1,
                combos.len(),
                if words.is_empty() {
                    String::new()
                } else {
                    words.join(" ")
                }
            ),
            Some(Duration::from_secs(a.timeout)),
        );
        boot_into(
            &run,
            combo.iter().cloned().collect(),
            &mut results,
            &progress,
        )?;
    }
    progress.finish();
    let json = dir.join("results.json");
    results.write(&json)?;
    let csvs = results.write_csvs(&dir)?;
    let plots = plot::write_plots(&results, &dir)?;
    println!();
    print!("{}", results.table());
    println!("xtask: results: {}", show(&json));
    for p in csvs.iter().chain(&plots) {
        println!("xtask:          {}", show(p));
    }
    let ok = results.passed();
    if ok {
        eprintln!(
            "xtask: PASS: {} boot(s), {} result groups",
            results.boots.len(),
            results.results.len()
        );
    } else {
        eprintln!("xtask: benchmark run FAILED:");
        for b in results.boots.iter().filter(|b| !b.passed) {
            eprintln!(
                "  boot {} ({}): {}; {}",
                b.index + 1,
                b.params,
                b.exit,
                if b.failures.is_empty() {
                    format!("serial log {}", b.serial_log)
                } else {
                    b.failures.join("; ")
                }
            );
        }
    }
    Ok(ok)
}

/// Boots `run` once, adds its benchmark results to `results` (with `sweep`
/// as the boot's sweep values) and says on `progress` why it failed, if it
/// did. Returns whether the boot passed.
pub(crate) fn boot_into(
    run: &Run,
    sweep: BTreeMap<String, String>,
    results: &mut Results,
    progress: &Progress,
) -> Result<bool> {
    let (out, v) = run.run()?;
    let parsed = parse_lines(&out.lines);
    let finished = out.exit == Exit::SUCCESS && out.contains(END_OF_RUN);
    let idx = results.add_boot(
        Boot {
            index: 0,
            sweep,
            params: run.param_string(),
            passed: finished,
            exit: out.exit.to_string(),
            elapsed_s: out.elapsed.as_secs_f64(),
            serial_log: show(&out.serial_log),
            failures: Vec::new(),
            line_errors: Vec::new(),
        },
        &parsed,
    );
    let b = &results.boots[idx];
    if !b.passed {
        let mut why = String::new();
        if !finished {
            why.push_str(&format!(
                "  - QEMU: {}, end-of-run line {}\n",
                out.exit,
                if out.contains(END_OF_RUN) {
                    "printed"
                } else {
                    "missing"
                }
            ));
        }
        for f in &b.failures {
            why.push_str(&format!("  - correctness failure: {f}\n"));
        }
        for e in &b.line_errors {
            why.push_str(&format!("  - malformed benchmark line: {e}\n"));
        }
        progress.say(&format!(
            "xtask: boot {} FAILED:\n{why}{}",
            idx + 1,
            v.explain(&out)
                .lines()
                .filter(|l| !l.contains("KTAP") && !l.contains("no end-of-run"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        ));
    }
    print_notes(&v.notes);
    Ok(b.passed)
}

pub fn plot(a: PlotArgs) -> Result<bool> {
    let path = user_path(&a.results);
    let results = Results::read(&path)?;
    let dir = match &a.out {
        Some(d) => user_path(d),
        None => path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    fs::create_dir_all(&dir)?;
    let plots = plot::write_plots(&results, &dir)?;
    print!("{}", results.table());
    for p in &plots {
        println!("xtask: plot: {}", show(p));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(stamp(UNIX_EPOCH), "19700101-000000");
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(1_796_060_912)),
            "20261130-174832"
        );
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229-000000"
        );
    }
}
