//! The QEMU runner: starts the kernel image, streams and records the serial
//! output, enforces a deadline, and decodes QEMU's exit status.
//!
//! Exit statuses (QEMU 7.2, measured): a write of `v` to `isa-debug-exit`
//! exits with `(v << 1) | 1`; a triple fault under `-no-reboot` exits with 0,
//! exactly like a power-off; QEMU's own errors exit with 1. So status 0 is a
//! crash, never a success. The codes below mirror `kernel/src/arch/x86_64/qemu.rs`.

use std::{
    fmt,
    fs::{self, File},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::image::Firmware;

pub const QEMU: &str = "qemu-system-x86_64";
/// The fw_cfg file the kernel reads its parameters from.
pub const PARAMS_FW_CFG: &str = "opt/pcs/cmdline";
/// OVMF firmware from Debian's `ovmf` package.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// How a QEMU process ended, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Kernel wrote 0x10: everything passed.
    Success,
    /// 0x11: the run completed with failed tests.
    TestsFailed,
    /// 0x12: a Rust panic.
    Panic,
    /// 0x13: an unhandled CPU exception.
    Exception,
    /// 0x14: the kernel rejected its parameters.
    BadParams,
    /// Status 0: a reset or power-off, e.g. a triple fault with `-no-reboot`.
    Reset,
    /// Status 1: QEMU itself failed (bad option, missing file, ...).
    QemuError,
    /// Any other status.
    Other(i32),
    /// Killed by a signal (not by us).
    Signal,
    /// We killed it at the deadline.
    Timeout(Duration),
}

impl Exit {
    fn from_status(s: ExitStatus) -> Exit {
        match s.code() {
            Some(33) => Exit::Success,
            Some(35) => Exit::TestsFailed,
            Some(37) => Exit::Panic,
            Some(39) => Exit::Exception,
            Some(41) => Exit::BadParams,
            Some(0) => Exit::Reset,
            Some(1) => Exit::QemuError,
            Some(c) => Exit::Other(c),
            None => Exit::Signal,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Exit::Success => write!(f, "success (status 33)"),
            Exit::TestsFailed => write!(f, "tests failed (status 35)"),
            Exit::Panic => write!(f, "kernel panic (status 37)"),
            Exit::Exception => write!(f, "CPU exception (status 39)"),
            Exit::BadParams => write!(f, "parameters rejected (status 41)"),
            Exit::Reset => write!(f, "unexpected reset or power-off (status 0; triple fault?)"),
            Exit::QemuError => write!(f, "QEMU error (status 1)"),
            Exit::Other(c) => write!(f, "unexpected exit status {c}"),
            Exit::Signal => write!(f, "QEMU killed by a signal"),
            Exit::Timeout(d) => write!(f, "timed out after {:.0} s (killed)", d.as_secs_f64()),
        }
    }
}

/// Everything that defines one run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Names the log directory: `target/runs/<name>-<timestamp>`.
    pub name: String,
    pub image: PathBuf,
    pub firmware: Firmware,
    pub smp: u32,
    /// QEMU `-m` syntax, e.g. `512M`.
    pub mem: String,
    /// `key=value` words handed to the kernel.
    pub params: Vec<String>,
    pub timeout: Duration,
    /// Wait for gdb on tcp::1234 before starting.
    pub gdb: bool,
    /// Use KVM instead of TCG (KVM does not work on this project's CI kind).
    pub kvm: bool,
    /// Copy serial output to our stdout as it arrives.
    pub echo: bool,
    pub extra_args: Vec<String>,
}

impl Config {
    pub fn new(name: &str, image: PathBuf) -> Config {
        Config {
            name: name.into(),
            image,
            firmware: Firmware::Bios,
            smp: 4,
            mem: "512M".into(),
            params: Vec::new(),
            timeout: Duration::from_secs(300),
            gdb: false,
            kvm: false,
            echo: false,
            extra_args: Vec::new(),
        }
    }
}

/// What a run left behind.
#[derive(Debug)]
pub struct Outcome {
    pub exit: Exit,
    /// Serial output, one entry per line, `\r` stripped.
    pub lines: Vec<String>,
    pub serial_log: PathBuf,
    pub qemu_log: PathBuf,
    pub elapsed: Duration,
    /// Time from QEMU start to the first `KTAP version` line, if any.
    pub first_ktap: Option<Duration>,
    /// The unstripped kernel ELF beside the image, for symbolizing.
    pub kernel_elf: Option<PathBuf>,
}

impl Outcome {
    pub fn contains(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }
}

/// Finds QEMU, installing it on Debian/Ubuntu when running as root.
pub fn ensure_qemu(firmware: Firmware) -> io::Result<()> {
    let have_qemu = Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_ovmf = firmware == Firmware::Bios || Path::new(OVMF).exists();
    if have_qemu && have_ovmf {
        return Ok(());
    }
    let pkgs = if firmware == Firmware::Uefi {
        "qemu-system-x86 ovmf"
    } else {
        "qemu-system-x86"
    };
    let debian = Path::new("/etc/debian_version").exists();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if debian && root {
        eprintln!("pcs: {QEMU} or OVMF missing; installing with apt-get: {pkgs}");
        let ok = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {pkgs}"
                ),
            ])
            .status()?
            .success();
        if ok {
            return Ok(());
        }
        return Err(io::Error::other(format!("apt-get install {pkgs} failed")));
    }
    Err(io::Error::other(format!(
        "{QEMU} (or OVMF for --uefi) is missing; install it, e.g. on Debian/Ubuntu:\n    sudo apt-get install -y {pkgs}"
    )))
}

fn run_dir(name: &str) -> io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let dir = crate::target_dir().join("runs").join(format!(
        "{name}-{}-{:09}-{}",
        stamp.as_secs(),
        stamp.subsec_nanos(),
        std::process::id()
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The QEMU command line for `cfg`, writing logs into `dir`.
pub fn command(cfg: &Config, dir: &Path) -> io::Result<Command> {
    let mut cmd = Command::new(QEMU);
    let params_file = dir.join("params.txt");
    fs::write(&params_file, cfg.params.join(" "))?;
    // `-nodefaults` drops QEMU's NIC and floppy; the bootloader's BIOS stage
    // needs a VGA device to set up its framebuffer, hence `-vga std`.
    cmd.args([
        "-nodefaults",
        "-vga",
        "std",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .args(["-smp", &cfg.smp.to_string(), "-m", &cfg.mem])
    .args(["-accel", if cfg.kvm { "kvm" } else { "tcg" }])
    .args(["-d", "cpu_reset,guest_errors", "-D"])
    .arg(dir.join("qemu.log"))
    .arg("-fw_cfg")
    .arg(format!(
        "name={PARAMS_FW_CFG},file={}",
        params_file.display()
    ))
    .arg("-drive")
    // snapshot=on: writes go to a throw-away overlay, so many runs can
    // share one image without QEMU's image lock refusing them.
    .arg(format!(
        "format=raw,snapshot=on,file={}",
        cfg.image.display()
    ));
    if cfg.firmware == Firmware::Uefi {
        cmd.args(["-bios", OVMF]);
    }
    if cfg.gdb {
        cmd.args(["-s", "-S"]);
    }
    cmd.args(&cfg.extra_args);
    Ok(cmd)
}

/// Runs QEMU to completion or to the deadline.
pub fn run(cfg: &Config) -> io::Result<Outcome> {
    ensure_qemu(cfg.firmware)?;
    let dir = run_dir(&cfg.name)?;
    let serial_log = dir.join("serial.log");
    let qemu_log = dir.join("qemu.log");
    let mut cmd = command(cfg, &dir)?;
    fs::write(dir.join("command.txt"), format!("{cmd:?}\n"))?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .replace('\r', "");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr = child.stderr.take().expect("piped");
    let qemu_stderr = dir.join("qemu-stderr.log");
    let err_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        let _ = fs::write(qemu_stderr, &s);
        s
    });

    let mut log = File::create(&serial_log)?;
    let mut lines = Vec::new();
    let mut first_ktap = None;
    let deadline = start + cfg.timeout;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                if first_ktap.is_none() && line.trim_start().starts_with("KTAP version") {
                    first_ktap = Some(start.elapsed());
                }
                writeln!(log, "{line}")?;
                if cfg.echo {
                    println!("{line}");
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = if timed_out {
        kill(&mut child);
        Exit::Timeout(cfg.timeout)
    } else {
        Exit::from_status(child.wait()?)
    };
    let _ = reader.join();
    let stderr_text = err_thread.join().unwrap_or_default();
    if !stderr_text.trim().is_empty() {
        for l in stderr_text.lines() {
            writeln!(log, "[qemu stderr] {l}")?;
            if cfg.echo {
                eprintln!("[qemu stderr] {l}");
            }
        }
    }
    Ok(Outcome {
        exit,
        lines,
        serial_log,
        qemu_log,
        elapsed: start.elapsed(),
        first_ktap,
        kernel_elf: Some(cfg.image.with_file_name("kernel")).filter(|p| p.exists()),
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
