//! `cargo xtask hunt`: how likely one booted check is to catch a
//! known-bad variant.
//!
//! Boots the variant's check (`boot::hunt::checks`: the boot its host test
//! makes; a `bug=` variant or a known-bad page-lock protocol) again and
//! again with seeds 1, 2, ..., counts the boots that failed, and reports
//! the catch probability per boot with a 95% Wilson interval, the time to
//! catch, and the boots needed for 99.9% detection. `--correct` boots the
//! same check with the correct code instead (`bug=none`, or the default
//! protocol): every boot must pass (a "catch" there is a false alarm).
//! Written to `target/hunt/<date>-<time>/hunt.json`.

use std::{fs, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use boot::{
    Run,
    build::Profile,
    hunt::{Attempt, Check, Hunt, check, checks},
    progress::{Mode, Progress},
};
use clap::Args;

use crate::{Result, bench::stamp, prepare, show, user_path};

#[derive(Args)]
pub struct HuntArgs {
    /// The variant to hunt: a `bug=` value or a known-bad `protocol=`
    /// value (see `cargo xtask params`); omit with `--all`.
    variant: Option<String>,
    /// Hunt every variant a booted run can catch, one after another.
    #[arg(long)]
    all: bool,
    /// Boots per variant.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10000))]
    runs: u64,
    /// Stop at the first boot that catches it.
    #[arg(long)]
    until_caught: bool,
    /// Boot the same check with the correct code (`bug=none`, or the
    /// default protocol for a protocol's check): every boot must pass.
    #[arg(long)]
    correct: bool,
    /// First seed (boot i uses seed FIRST + i).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Kill QEMU after this many seconds (per boot).
    #[arg(long, default_value_t = 240)]
    timeout: u64,
    /// Where to write hunt.json (default: target/hunt/<date>-<time>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Echo the kernel console.
    #[arg(long)]
    verbose: bool,
    /// Kernel parameters added to every boot, after `--` (e.g.
    /// `-- protocol=hugh-rfc`: hunt under another page-lock protocol, or
    /// with `--correct`, check that protocol with every check).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// The first console line that reports the failure, and when it came.
fn first_failure(out: &boot::qemu::Outcome) -> Option<(String, f64)> {
    const SIGNS: [&str; 5] = ["not ok", "FAILURE", "PANIC", "EXCEPTION", "FATAL"];
    let i = out
        .lines
        .iter()
        .position(|l| SIGNS.iter().any(|s| l.contains(s)))?;
    let t = out.times.get(i).map_or(out.elapsed, |d| *d);
    Some((out.lines[i].trim().to_string(), t.as_secs_f64()))
}

/// The variant's parameter in this hunt: `bug=NAME` or `protocol=NAME`;
/// with `--correct`, the correct code's (`bug=none`, the default
/// protocol).
fn variant_param(c: &Check, a: &HuntArgs) -> String {
    if a.correct { c.correct() } else { c.variant() }
}

/// The kernel parameters of one boot of `c` (without `seed=`): the
/// check's own, where a parameter after `--` with the same key replaces
/// the check's (`-- torture_ms=8000`: hunt with a longer torture), then
/// the variant's. A parameter after `--` that sets the variant's key or
/// `seed=` (each boot's own) is refused (`Err` names it): the kernel
/// would refuse a key given twice, and a hunt would count every refused
/// boot as a catch.
fn boot_params(c: &Check, a: &HuntArgs) -> std::result::Result<Vec<String>, String> {
    let key = |p: &str| p.split('=').next().unwrap_or_default().to_string();
    let mut params: Vec<String> = c.params.iter().map(|s| s.to_string()).collect();
    for p in &a.extra {
        if key(p) == "seed" || key(p) == c.key {
            return Err(p.clone());
        }
        match params.iter_mut().find(|o| key(o) == key(p)) {
            Some(o) => *o = p.clone(),
            None => params.push(p.clone()),
        }
    }
    params.push(variant_param(c, a));
    Ok(params)
}

fn hunt_one(c: &Check, a: &HuntArgs, progress: &Arc<Progress>) -> Result<Hunt> {
    let params = boot_params(c, a).map_err(|p| format!("hunt: {p}: refused"))?;
    let shown = variant_param(c, a);
    let base = Run::new(&format!("hunt-{}", c.name))
        .profile(Profile::Dev)
        .smp(c.smp)
        .mem("256M")
        .timeout(Duration::from_secs(a.timeout))
        .params(&params);
    prepare(&base)?;
    let mut attempts = Vec::new();
    for i in 0..a.runs {
        let seed = a.first_seed + i;
        progress.stage(
            &format!("[{} boot {}/{}] {shown} seed={seed}", c.name, i + 1, a.runs),
            Some(Duration::from_secs(a.timeout)),
        );
        let run = base
            .clone()
            .params([format!("seed={seed}")])
            .sink(progress.clone() as Arc<dyn boot::progress::LineSink>);
        let (out, v) = run.run()?;
        let failure = first_failure(&out);
        let caught = !v.passed;
        attempts.push(Attempt {
            seed,
            caught,
            seconds: failure
                .as_ref()
                .filter(|_| caught)
                .map_or(out.elapsed.as_secs_f64(), |f| f.1),
            line: failure.filter(|_| caught).map(|f| f.0),
            exit: out.exit.to_string(),
        });
        if caught && a.until_caught {
            break;
        }
    }
    Ok(Hunt::of(&shown, params, c.smp, attempts))
}

fn row(h: &Hunt, of: &str, correct: bool) -> String {
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1} s"));
    format!(
        "| `{}` | {} | {} of {} | {:.2} ({:.2}–{:.2}) | {} / {} | {} |",
        of,
        if correct { "correct code" } else { "known-bad" },
        h.caught,
        h.boots,
        h.p,
        h.p_low,
        h.p_high,
        secs(h.catch_p50_s),
        secs(h.catch_max_s),
        h.boots_for_999.map_or("-".to_string(), |b| b.to_string())
    )
}

pub fn hunt(a: HuntArgs) -> Result<bool> {
    let all = checks();
    let names = || all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let chosen: Vec<Check> = match (&a.variant, a.all) {
        (_, true) => all.clone(),
        (Some(v), false) => match check(v) {
            Some(c) => vec![c],
            None => {
                eprintln!(
                    "xtask: hunt: no booted check catches `{v}` (the loom-only variants are caught by their models, whatever the seed); hunted: {}",
                    names()
                );
                return Ok(false);
            }
        },
        (None, false) => {
            eprintln!(
                "xtask: hunt: name a variant (`cargo xtask hunt tas-outside-lock`) or give --all"
            );
            return Ok(false);
        }
    };
    // A parameter after `--` that sets the variant's own key (or `seed=`)
    // is refused for a named variant; with `--all` that check is left out
    // (`--all -- protocol=hugh-rfc` hunts every `bug=` variant under that
    // protocol, not the known-bad protocols).
    let mut kept = Vec::new();
    for c in chosen {
        match boot_params(&c, &a) {
            Ok(_) => kept.push(c),
            Err(p) if a.all => eprintln!(
                "xtask: hunt: `{}` left out: `{p}` sets a parameter its hunt sets itself",
                c.name
            ),
            Err(p) => {
                eprintln!(
                    "xtask: hunt: `{p}` after `--` sets a parameter the hunt sets itself ({} seed=N)",
                    variant_param(&c, &a)
                );
                return Ok(false);
            }
        }
    }
    let chosen = kept;
    let dir = match &a.out {
        Some(d) => user_path(d),
        None => boot::target_dir()
            .join("hunt")
            .join(stamp(SystemTime::now())),
    };
    fs::create_dir_all(&dir)?;
    let progress = Arc::new(Progress::new(Mode::detect(), a.verbose));
    let mut hunts = Vec::new();
    for c in &chosen {
        let h = hunt_one(c, &a, &progress)?;
        progress.say(&format!("xtask: {}", row(&h, c.name, a.correct)));
        hunts.push(h);
        // Written after each variant, so a long hunt keeps what it found.
        fs::write(
            dir.join("hunt.json"),
            serde_json::to_string_pretty(&hunts)? + "\n",
        )?;
    }
    progress.finish();
    println!(
        "| variant | boots of | caught | p per boot (95% interval) | time to catch p50 / max | boots for 99.9% |\n|---|---|---|---|---|---|"
    );
    for (h, c) in hunts.iter().zip(&chosen) {
        println!("{}", row(h, c.name, a.correct));
    }
    println!("xtask: report: {}", show(&dir.join("hunt.json")));
    // With --correct, a catch is a false alarm: the run fails.
    Ok(!a.correct || hunts.iter().all(|h| h.caught == 0))
}
