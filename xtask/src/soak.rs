//! `cargo xtask soak`: the page-lock torture for a long time, with live
//! progress, stopping at the first failure.
//!
//! One boot runs `pagelock.torture` for the given time (`torture_ms=`),
//! on a debug kernel with the race-point jitter, as the tests do. The
//! torture prints its acquisitions every second (`# pcs: progress`), which
//! the live display turns into a count, a rate and an ETA; any failure
//! (a lost wake-up named by the watch, two owners, a stuck round, a
//! panic) ends the torture and the run with its report. The result is
//! written as a bench results file (`results.json`, the same schema as
//! `cargo xtask bench`): acquisitions, rate, and the torture's failures
//! and lost wake-ups, which must both be 0.

use std::{collections::BTreeMap, fs, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use boot::{
    Run,
    bench::{Results, RunInfo, parse_lines},
    build::Profile,
    progress::{Mode, Progress},
};
use clap::Args;

use crate::{Result, bench::stamp, params_ok, prepare, show, user_path};

#[derive(Args)]
pub struct SoakArgs {
    /// How long the torture runs, in minutes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
    minutes: u64,
    /// Number of CPUs (`-smp`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest memory.
    #[arg(long, default_value = "512M")]
    mem: String,
    /// Where to write results.json (default: target/soak/<date>-<time>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Echo the kernel console.
    #[arg(long)]
    verbose: bool,
    /// Further kernel parameters (after `--`), e.g. `bug=...` to soak a
    /// variant, `seed=`, `torture_pages=`.
    #[arg(last = true)]
    params: Vec<String>,
}

/// The number in `line` right before `word` (`... 123 acquisitions in`).
fn number_before(line: &str, word: &str) -> Option<u64> {
    let i = line.find(word)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

pub fn soak(a: SoakArgs) -> Result<bool> {
    let ms = a.minutes * 60_000;
    let mut params = vec![
        "filter=pagelock.torture".to_string(),
        format!("torture_ms={ms}"),
    ];
    params.extend(a.params.iter().cloned());
    let run = Run::new("soak")
        .profile(Profile::Dev)
        .smp(a.smp)
        .mem(&a.mem)
        // The torture's own stop, its final checks, and the boot.
        .timeout(Duration::from_secs(a.minutes * 60 + 300))
        .params(&params);
    if !params_ok(&run) {
        return Ok(false);
    }
    let id = stamp(SystemTime::now());
    let dir = match &a.out {
        Some(d) => user_path(d),
        None => boot::target_dir().join("soak").join(&id),
    };
    fs::create_dir_all(&dir)?;
    prepare(&run)?;
    let progress = Arc::new(Progress::new(Mode::detect(), a.verbose));
    progress.stage(
        &format!(
            "soak: pagelock.torture for {} min on {} CPUs",
            a.minutes, a.smp
        ),
        Some(Duration::from_secs(a.minutes * 60 + 300)),
    );
    let run = run.sink(progress.clone() as Arc<dyn boot::progress::LineSink>);
    let (out, v) = run.run()?;
    progress.finish();
    // "pagelock-torture: <name>: N acquisitions in M ms, ..." per shape.
    let mut acquisitions = 0u64;
    let mut elapsed_ms = 0u64;
    for l in out.lines.iter().filter(|l| l.contains("pagelock-torture:")) {
        if let (Some(n), Some(m)) = (
            number_before(l, "acquisitions in"),
            number_before(l, "ms, per thread"),
        ) {
            acquisitions += n;
            elapsed_ms += m;
        }
    }
    let lost = out
        .lines
        .iter()
        .filter(|l| l.contains("lost wake-up"))
        .count();
    let failures = out
        .lines
        .iter()
        .filter(|l| l.contains("pagelock-torture: FAILURE"))
        .count();
    let rate = if elapsed_ms > 0 {
        acquisitions as f64 * 1000.0 / elapsed_ms as f64
    } else {
        0.0
    };
    // The result as a bench record, so the results file is the bench's.
    let line = format!(
        "{} pagelock_soak torture cpus={} minutes={} round=0 acquisitions:count={acquisitions} acq_per_s:per_s={rate:.1} failures:count={failures} lost_wakeups:count={lost}",
        boot::contract::marker::BENCH,
        a.smp,
        a.minutes
    );
    let mut results = Results::new(
        &id,
        RunInfo {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            smp: a.smp,
            mem: a.mem.clone(),
            filter: Some("pagelock.torture".into()),
            params: params.clone(),
            rounds: 1,
            sweep: Vec::new(),
            kvm: false,
            profile: "dev".into(),
        },
    );
    results.add_boot(
        boot::bench::Boot {
            index: 0,
            sweep: BTreeMap::new(),
            params: run.param_string(),
            passed: v.passed,
            exit: out.exit.to_string(),
            elapsed_s: out.elapsed.as_secs_f64(),
            serial_log: show(&out.serial_log),
            failures: Vec::new(),
            line_errors: Vec::new(),
        },
        &parse_lines(&[line]),
    );
    let json = dir.join("results.json");
    results.write(&json)?;
    println!(
        "xtask: soak: {acquisitions} acquisitions in {:.1} s of torture ({rate:.0}/s) on {} CPUs; {failures} failures, {lost} lost wake-ups; {}",
        elapsed_ms as f64 / 1000.0,
        a.smp,
        if v.passed { "PASS" } else { "FAIL" }
    );
    println!("xtask: results: {}", show(&json));
    if !v.passed {
        eprint!("{}", v.explain(&out));
    }
    Ok(v.passed && failures == 0 && lost == 0)
}

#[cfg(test)]
mod tests {
    use super::number_before;

    #[test]
    fn reads_the_torture_summary() {
        let l = "    # pagelock-torture: torture: 1234567 acquisitions in 60000 ms, per thread max/min 9/8";
        assert_eq!(number_before(l, "acquisitions in"), Some(1_234_567));
        assert_eq!(number_before(l, "ms, per thread"), Some(60_000));
        assert_eq!(number_before("nothing here", "acquisitions in"), None);
    }
}
