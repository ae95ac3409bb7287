//! `cargo xtask`: the project's front end.
//!
//! - `cargo xtask run`: build the kernel, boot it in QEMU, stream its serial
//!   output, and exit non-zero unless the run passed (see `boot::verdict`).
//! - `cargo xtask bench`: the in-kernel benchmarks (release build), with
//!   parameter sweeps; results as a table, JSON, CSV and SVG plots
//!   (`bench.rs`).
//! - `cargo xtask plot RESULTS.json`: the table and plots again from a
//!   results file.
//! - `cargo xtask test [FILTER] [--junit PATH]`: host unit tests, QEMU
//!   integration tests, loom model checks and the in-kernel KTAP suites,
//!   stage by stage, with one summary line (`test.rs`).
//!   FILTER selects by full name in every layer (`select.rs`): a
//!   subsystem's name selects its kernel cases, QEMU tests and loom models.
//! - `cargo xtask orderings [--mutations] [--only TEXT]`: weakens each
//!   non-Relaxed ordering of `kernel/pagesync/src` in turn, in a scratch
//!   copy, and runs the loom models: which ones are load-bearing
//!   (`orderings.rs`).
//! - `cargo xtask params [--markdown | --protocols]`: the kernel parameter
//!   table, or the registered page-lock protocols.
//!
//! Every boot goes through `boot::Run`. Kernel parameters are checked with
//! the contract's parser before anything is built or booted, so a typo is
//! reported at once, with the key's help.

mod bench;
mod compare;
mod hunt;
mod soak;
mod test;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use boot::{
    Disk, Run,
    build::Profile,
    contract::params::{MarkdownTable, ProtocolTable, TextTable},
    image::Firmware,
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

/// Shown under `bench --help`.
const BENCH_HELP: &str = "Kernel parameters are `key=value` words after `--`, e.g. \
`cargo xtask bench --filter pagelock_fairness -- bench_rounds=9`. `--sweep key=v1,v2` \
boots once per value (several --sweep: once per combination), e.g. `--sweep \
unfairness=0,1,5,20 --sweep protocol=linux-5.9,linux-5.8`. Parameters and sweeps are checked before \
anything is built or booted. `cargo xtask params` lists every key with its values, \
default and meaning. Results: target/bench/<run>/results.json (schema: \
docs/bench-results.md), <bench>.csv, <bench>.svg.";

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel and boot it in QEMU, streaming the serial console.
    #[command(after_help = PARAMS_HELP)]
    Run(RunArgs),
    /// Run the in-kernel benchmarks (release build): a table, and JSON, CSV
    /// and SVG plots under target/bench/.
    #[command(after_help = BENCH_HELP)]
    Bench(bench::BenchArgs),
    /// Print the table and draw the plots of a results file again.
    Plot(bench::PlotArgs),
    /// Run the same benchmarks under two configurations (parameter sets or
    /// git revisions) in interleaved rounds: per metric both medians, the
    /// ratio with a bootstrap interval, and a verdict.
    Compare(compare::CompareArgs),
    /// Boot a known-bad variant's check again and again with fresh seeds:
    /// the catch probability per boot with an interval, the time to catch,
    /// and the boots needed for 99.9% detection.
    Hunt(hunt::HuntArgs),
    /// Run the page-lock torture for a long time with live progress; stop
    /// at the first failure; write a results file.
    Soak(soak::SoakArgs),
    /// Run every test: in-kernel suites, host and QEMU integration tests,
    /// loom.
    Test(test::TestArgs),
    /// Weaken each non-Relaxed `Ordering` of pagesync in turn (in a scratch
    /// copy) and run the loom models: prints ordering -> caught/redundant.
    Orderings(orderings::Args),
    /// Print the kernel parameters: keys, values, defaults, meaning.
    Params {
        /// Print the table as Markdown (the README's).
        #[arg(long)]
        markdown: bool,
        /// Print the registered page-lock protocols (`protocol=`) as the
        /// README's Markdown table instead.
        #[arg(long)]
        protocols: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Plot(a) => bench::plot(a),
        Cmd::Compare(a) => compare::compare(a),
        Cmd::Hunt(a) => hunt::hunt(a),
        Cmd::Soak(a) => soak::soak(a),
        Cmd::Test(a) => test::test(a),
        Cmd::Orderings(a) => orderings::run(&a),
        Cmd::Params {
            markdown,
            protocols,
        } => {
            if protocols {
                print!("{ProtocolTable}");
            } else if markdown {
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

/// A path relative to the workspace root when it is under it (shorter to
/// read), else as is.
fn show(p: &std::path::Path) -> String {
    p.strip_prefix(boot::workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// `PathBuf` of a path argument, relative to where `cargo xtask` was
/// started (cargo runs us in the workspace root).
fn user_path(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::var_os("PWD")
        .map(PathBuf::from)
        .unwrap_or_else(boot::workspace_root)
        .join(p)
}

/// Checks `run`'s parameters with the contract's parser; on a bad one,
/// reports it with the key's help and returns false. Nothing has been built
/// or booted yet when this runs.
pub(crate) fn params_ok(run: &Run) -> bool {
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
pub(crate) fn prepare(run: &Run) -> Result<()> {
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
pub(crate) fn print_notes(notes: &[String]) {
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
