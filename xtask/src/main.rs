//! `cargo xtask`: the project's front end.
//!
//! - `cargo xtask run`: build the kernel, boot it in QEMU, stream its serial
//!   output, and exit non-zero unless the run passed (see `boot::verdict`).
//! - `cargo xtask test [FILTER]`: host unit tests, QEMU integration tests,
//!   loom model checks and the in-kernel KTAP suites, with one summary line.

use std::{
    io::{BufRead, BufReader},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use boot::{
    build::{self, Profile},
    image::{self, Firmware},
    ktap::Counts,
    qemu, verdict,
};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, boot and test the pcs kernel")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the kernel and boot it in QEMU, streaming the serial console.
    Run(RunArgs),
    /// Run the in-kernel benchmarks (release build) and print their results.
    Bench(BenchArgs),
    /// Run every test: host, loom, QEMU integration, in-kernel suites.
    Test {
        /// Only tests whose name contains FILTER (kernel cases: `*FILTER*`).
        filter: Option<String>,
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
    /// Kernel parameters, `key=value` (after `--`).
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
    /// Further kernel parameters, `key=value` (after `--`).
    #[arg(last = true)]
    params: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Test { filter } => test(filter.as_deref()),
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

fn kernel_image(release: bool, fw: Firmware, verbose: bool) -> Result<std::path::PathBuf> {
    let t = Instant::now();
    let elf = build::kernel(
        if release {
            Profile::Release
        } else {
            Profile::Dev
        },
        verbose,
    )?;
    let img = image::disk_image(&elf, fw)?;
    eprintln!(
        "xtask: kernel and image ready in {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        img.display()
    );
    Ok(img)
}

fn run(a: RunArgs) -> Result<bool> {
    let fw = if a.uefi {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    qemu::ensure_qemu(fw)?;
    let img = kernel_image(a.release, fw, true)?;
    let mut cfg = qemu::Config::new("run", img);
    cfg.firmware = fw;
    cfg.smp = a.smp;
    cfg.mem = a.mem;
    cfg.params = a.params;
    cfg.gdb = a.gdb;
    cfg.kvm = a.kvm;
    cfg.echo = true;
    cfg.timeout = Duration::from_secs(if a.gdb { 24 * 3600 } else { a.timeout });
    if a.gdb {
        let elf = build::kernel_out_dir(if a.release {
            Profile::Release
        } else {
            Profile::Dev
        })
        .join("kernel");
        eprintln!("xtask: QEMU waits for gdb; in another shell run:");
        eprintln!("    gdb {} -ex 'target remote :1234'", elf.display());
    }
    eprintln!(
        "xtask: booting: -smp {} -m {} params: {}",
        cfg.smp,
        cfg.mem,
        cfg.params.join(" ")
    );
    let out = qemu::run(&cfg)?;
    let v = verdict::judge(&out);
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
    Ok(v.passed)
}

fn bench(a: BenchArgs) -> Result<bool> {
    qemu::ensure_qemu(Firmware::Bios)?;
    let img = kernel_image(true, Firmware::Bios, true)?;
    let mut cfg = qemu::Config::new("bench", img);
    cfg.smp = a.smp;
    cfg.mem = a.mem;
    cfg.timeout = Duration::from_secs(a.timeout);
    cfg.echo = true;
    cfg.params = vec!["mode=bench".into()];
    if let Some(f) = a.filter {
        cfg.params.push(format!("filter={f}"));
    }
    cfg.params.extend(a.params);
    eprintln!(
        "xtask: benchmarks: -smp {} -m {} {}",
        cfg.smp,
        cfg.mem,
        cfg.params.join(" ")
    );
    let out = qemu::run(&cfg)?;
    let results: Vec<&str> = out
        .lines
        .iter()
        .filter(|l| l.starts_with("BENCH "))
        .map(|l| l.as_str())
        .collect();
    let dir = boot::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("bench-smp{}.txt", cfg.smp));
    std::fs::write(&file, results.join("\n") + "\n")?;
    println!();
    println!(
        "xtask: {} result lines (also in {}):",
        results.len(),
        file.display()
    );
    for r in &results {
        println!("  {}", r.trim_start_matches("BENCH "));
    }
    let ok = out.exit == qemu::Exit::Success && out.contains(verdict::END_OF_RUN);
    if !ok {
        eprintln!(
            "xtask: benchmark run failed: {}\n  serial log: {}",
            out.exit,
            out.serial_log.display()
        );
    }
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

fn add(a: &mut Counts, b: Counts) {
    a.passed += b.passed;
    a.failed += b.failed;
    a.skipped += b.skipped;
    a.crashed += b.crashed;
}

fn test(filter: Option<&str>) -> Result<bool> {
    let start = Instant::now();
    qemu::ensure_qemu(Firmware::Bios)?;
    let mut total = Counts::default();
    let mut stages = Vec::new();

    // 1. Kernel suites, booted directly so each KTAP case counts.
    let t = Instant::now();
    let img = kernel_image(false, Firmware::Bios, true)?;
    let mut cfg = qemu::Config::new("suites", img);
    cfg.echo = true;
    cfg.timeout = Duration::from_secs(600);
    if let Some(f) = filter {
        cfg.params.push(format!("filter=*{f}*"));
    }
    eprintln!(
        "xtask: == in-kernel suites: -smp {} -m {} {}",
        cfg.smp,
        cfg.mem,
        cfg.params.join(" ")
    );
    let out = qemu::run(&cfg)?;
    let v = verdict::judge(&out);
    let kc = v.report.counts();
    if !v.passed {
        eprintln!("xtask: in-kernel suites FAILED:\n{}", v.explain(&out));
    }
    let mut kc2 = kc;
    if !v.passed && kc.failed == 0 {
        kc2.failed += 1;
    }
    add(&mut total, kc2);
    stages.push(format!(
        "in-kernel suites: {kc} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    // 2. Host unit tests and the QEMU integration tests in tests/.
    let t = Instant::now();
    let mut args = vec!["test", "--workspace"];
    if let Some(f) = filter {
        args.extend(["--", f]);
    }
    let c = cargo_tests("host and QEMU integration tests", &args, &[])?;
    add(&mut total, c);
    stages.push(format!(
        "host and integration tests: {c} ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));

    // 3. loom model checks of the portable protocol code.
    let t = Instant::now();
    let loom_dir = boot::target_dir().join("loom");
    let loom_dir = loom_dir.to_string_lossy().into_owned();
    let mut args = vec!["test", "--package", "pagesync", "--release", "--tests"];
    if let Some(f) = filter {
        args.extend(["--", f]);
    }
    let c = cargo_tests(
        "loom model checks",
        &args,
        &[("RUSTFLAGS", "--cfg loom"), ("CARGO_TARGET_DIR", &loom_dir)],
    )?;
    add(&mut total, c);
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
