//! `cargo xtask`: the project's front end.
//!
//! - `cargo xtask run`: build the kernel, boot it in QEMU, stream its serial
//!   output, and exit non-zero unless the run passed (see `boot::verdict`).
//! - `cargo xtask bench`: the in-kernel benchmarks (release build).
//! - `cargo xtask test [FILTER]`: host unit tests, QEMU integration tests,
//!   loom model checks and the in-kernel KTAP suites, with one summary line.
//!   FILTER selects by full name in every layer (`select`): a subsystem's
//!   name selects its kernel cases, its QEMU tests and its loom models.
//! - `cargo xtask orderings [--mutations] [--only TEXT]`: weakens each
//!   non-Relaxed ordering of `kernel/pagesync/src` in turn, in a scratch
//!   copy, and runs the loom models: which ones are load-bearing
//!   (`orderings`).
//! - `cargo xtask params [--markdown]`: the kernel parameter table.
//!
//! Every boot goes through `boot::Run`. Kernel parameters are checked with
//! the contract's parser before anything is built or booted, so a typo is
//! reported at once, with the key's help.

use std::{
    io::{BufRead, BufReader},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use boot::{
    Disk, Run,
    build::Profile,
    contract::{
        marker,
        params::{MarkdownTable, TextTable},
    },
    image::Firmware,
    ktap::Counts,
    qemu::Exit,
};
use clap::{Args, Parser, Subcommand};

mod orderings;
mod select;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, boot and test the pcs kernel")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Shown under `run --help` and `bench --help`.
const PARAMS_HELP: &str = "Kernel parameters are `key=value` words after `--`, e.g. \
`cargo xtask run -- filter=mm.* seed=7`. They are checked before anything is built or \
booted. `cargo xtask params` lists every key with its values, default and meaning.";

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel and boot it in QEMU, streaming the serial console.
    #[command(after_help = PARAMS_HELP)]
    Run(RunArgs),
    /// Run the in-kernel benchmarks (release build) and print their results.
    #[command(after_help = PARAMS_HELP)]
    Bench(BenchArgs),
    /// Run every test: host, loom, QEMU integration, in-kernel suites.
    Test {
        /// Only tests whose full name contains FILTER: kernel cases
        /// `suite.case` (`filter=*FILTER*`), host tests and loom models
        /// `<test file or crate>::<test>`. A subsystem's name (`pagelock`,
        /// `pagecache`, `gup`, ...) selects all three layers of it.
        filter: Option<String>,
    },
    /// Weaken each non-Relaxed `Ordering` of pagesync in turn (in a scratch
    /// copy) and run the loom models: prints ordering -> caught/redundant.
    Orderings(orderings::Args),
    /// Print the kernel parameters: keys, values, defaults, meaning.
    Params {
        /// Print the table as Markdown (the README's).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Number of CPUs (`-smp`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest memory (`-m` syntax, e.g. 512M, 3G).
    #[arg(long, default_value = "512M")]
    mem: String,
    /// Build the kernel with optimisations.
    #[arg(long)]
    release: bool,
    /// Boot through UEFI (OVMF) instead of BIOS.
    #[arg(long)]
    uefi: bool,
    /// Start halted with a gdb stub on tcp::1234.
    #[arg(long)]
    gdb: bool,
    /// Use KVM instead of TCG.
    #[arg(long)]
    kvm: bool,
    /// Kill QEMU after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Size of the virtio-blk disk image `target/disk.img` (K/M/G suffix),
    /// created sparse if missing and kept across runs (its data persists);
    /// `none` boots without a disk.
    #[arg(long, default_value = "64M")]
    disk: String,
    /// Kernel parameters, `key=value` (after `--`; see `cargo xtask params`).
    #[arg(last = true)]
    params: Vec<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// Number of CPUs (`-smp`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=255))]
    smp: u32,
    /// Guest memory (`-m` syntax).
    #[arg(long, default_value = "512M")]
    mem: String,
    /// Only benchmarks whose name matches this glob (kernel `filter=`).
    #[arg(long)]
    filter: Option<String>,
    /// Kill QEMU after this many seconds.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// Further kernel parameters, `key=value` (after `--`; see `cargo xtask params`).
    #[arg(last = true)]
    params: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Test { filter } => test(filter.as_deref()),
        Cmd::Orderings(a) => orderings::run(&a),
        Cmd::Params { markdown } => {
            if markdown {
                print!("{MarkdownTable}");
            } else {
                print!("{TextTable}");
            }
            Ok(true)
        }
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Checks `run`'s parameters with the contract's parser; on a bad one,
/// reports it with the key's help and returns false. Nothing has been built
/// or booted yet when this runs.
fn params_ok(run: &Run) -> bool {
    match run.check_params() {
        Ok(()) => true,
        Err(e) => {
            eprint!("xtask: {e}");
            eprintln!("xtask: `cargo xtask params` lists every parameter");
            false
        }
    }
}

/// Checks for QEMU and builds the kernel and image, saying how long it took.
fn prepare(run: &Run) -> Result<()> {
    let t = Instant::now();
    let image = run.prepare()?;
    eprintln!(
        "xtask: kernel and image ready in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        image.display()
    );
    Ok(())
}

/// Repeats the kernel's notes (say, a parameter without effect) last, where
/// they are seen.
fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("xtask: note: {n}");
    }
}

/// `--disk SIZE|none` of `cargo xtask run`: the persistent image
/// `target/disk.img`.
fn run_disk(arg: &str) -> Result<Disk> {
    if arg == "none" {
        return Ok(Disk::None);
    }
    let bytes = boot::disk::parse_size(arg)?;
    Ok(Disk::at(boot::target_dir().join("disk.img"), bytes))
}

fn run(a: RunArgs) -> Result<bool> {
    let disk = match run_disk(&a.disk) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("xtask: --disk: {e}");
            return Ok(false);
        }
    };
    let run = Run::new("run")
        .disk(disk)
        .smp(a.smp)
        .mem(&a.mem)
        .params(&a.params)
        .firmware(if a.uefi {
            Firmware::Uefi
        } else {
            Firmware::Bios
        })
        .profile(if a.release {
            Profile::Release
        } else {
            Profile::Dev
        })
        .gdb(a.gdb)
        .kvm(a.kvm)
        .echo(true)
        .timeout(Duration::from_secs(if a.gdb {
            24 * 3600
        } else {
            a.timeout
        }));
    if !params_ok(&run) {
        return Ok(false);
    }
    prepare(&run)?;
    if a.gdb {
        eprintln!("xtask: QEMU waits for gdb; in another shell run:");
        eprintln!(
            "    gdb {} -ex 'target remote :1234'",
            run.kernel_elf().display()
        );
    }
    eprintln!("xtask: booting: {run}; {}", run.disk_spec());
    let (out, v) = run.run()?;
    let c = v.report.counts();
    if v.passed {
        let first = out.first_ktap.map_or("no KTAP output".to_string(), |d| {
            format!("first KTAP line after {:.1} s", d.as_secs_f64())
        });
        eprintln!(
            "xtask: PASS: {c}; {}; {first}; {:.1} s in all",
            out.exit,
            out.elapsed.as_secs_f64()
        );
    } else {
        eprintln!("xtask: FAIL ({c}):\n{}", v.explain(&out));
    }
    print_notes(&v.notes);
    Ok(v.passed)
}

fn bench(a: BenchArgs) -> Result<bool> {
    let run = Run::new("bench")
        .release()
        .smp(a.smp)
        .mem(&a.mem)
        .timeout(Duration::from_secs(a.timeout))
        .echo(true)
        .params(["mode=bench"])
        .params(a.filter.map(|f| format!("filter={f}")))
        .params(&a.params);
    if !params_ok(&run) {
        return Ok(false);
    }
    prepare(&run)?;
    eprintln!("xtask: benchmarks: {run}");
    let (out, v) = run.run()?;
    let results: Vec<&str> = out
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix(marker::BENCH))
        .collect();
    let dir = boot::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("bench-smp{}.txt", a.smp));
    let lines: Vec<String> = results
        .iter()
        .map(|r| format!("{}{r}", marker::BENCH))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    println!();
    println!(
        "xtask: {} result lines (also in {}):",
        results.len(),
        file.display()
    );
    for r in &results {
        println!("  {r}");
    }
    let ok = out.exit == Exit::Success && out.contains(marker::END_OF_RUN);
    if !ok {
        eprintln!(
            "xtask: benchmark run failed: {}\n  serial log: {}",
            out.exit,
            out.serial_log.display()
        );
    }
    print_notes(&v.notes);
    Ok(ok)
}

/// Runs a cargo test command, streaming its output, and adds up its
/// `test result:` lines.
fn cargo_tests(label: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<Counts> {
    eprintln!("xtask: == {label}: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(boot::workspace_root())
        .args(args)
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let mut c = Counts::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
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
        eprintln!("xtask: {label}: cargo exited with {status}");
    }
    Ok(c)
}

fn test(filter: Option<&str>) -> Result<bool> {
    let start = Instant::now();
    let mut total = Counts::default();
    let mut stages = Vec::new();

    // 1. Kernel suites, booted directly so each KTAP case counts.
    let t = Instant::now();
    let run = Run::new("suites")
        .echo(true)
        .timeout(Duration::from_secs(600))
        .params(filter.map(|f| format!("filter=*{f}*")));
    if !params_ok(&run) {
        return Ok(false);
    }
    prepare(&run)?;
    eprintln!("xtask: == in-kernel suites: {run}");
    let (out, v) = run.run()?;
    let kc = v.report.counts();
    // A FILTER that names only host tests or loom models (`loom_pagelock`,
    // `visibility`) selects no kernel case: the kernel refuses such a
    // filter (kernel/src/ktest/mod.rs, "selects no test case"), which here
    // only means that this layer has nothing to run.
    let no_kernel_case = filter.is_some()
        && kc.passed + kc.failed + kc.skipped == 0
        && out.contains("selects no test case");
    if no_kernel_case {
        eprintln!("xtask: no kernel case matches '*{}*'", filter.unwrap_or(""));
    } else if !v.passed {
        eprintln!("xtask: in-kernel suites FAILED:\n{}", v.explain(&out));
    }
    print_notes(&v.notes);
    let mut counted = kc;
    if !v.passed && kc.failed == 0 && !no_kernel_case {
        counted.failed += 1;
    }
    total += counted;
    stages.push(format!(
        "in-kernel suites: {kc} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    // 2. Host unit tests and the QEMU integration tests in tests/.
    let t = Instant::now();
    // --no-fail-fast: one failing test binary must not hide the others.
    let args = ["test", "--workspace", "--no-fail-fast"];
    let label = "host and QEMU integration tests";
    let c = match filter {
        None => cargo_tests(label, &args, &[])?,
        Some(f) => select::run_selected(
            label,
            &args,
            &[],
            f,
            Some(&["test", "--workspace", "--doc", "--no-fail-fast"]),
        )?,
    };
    total += c;
    stages.push(format!(
        "host and integration tests: {c} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    // 3. loom model checks of the portable protocol code.
    let t = Instant::now();
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
    let label = "loom model checks";
    let c = match filter {
        None => cargo_tests(label, &args, &envs)?,
        Some(f) => select::run_selected(label, &args, &envs, f, None)?,
    };
    total += c;
    stages.push(format!(
        "loom model checks: {c} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

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
