//! The QEMU runner: starts the kernel image, streams and records the serial
//! output, enforces a deadline, and decodes QEMU's exit status with the
//! host-kernel contract (`contract::exit`: status 0 is a reset, never a
//! success). Runs are described by [`crate::Run`], the one way to boot.

use std::{
    fmt,
    fs::{self, File},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use contract::{
    ExitCode, QemuStatus,
    exit::{DEBUG_EXIT_IOBASE, DEBUG_EXIT_IOSIZE, STATUS_QEMU_ERROR, STATUS_RESET},
    marker::KTAP_VERSION,
};

use crate::{Run, disk::DRIVE_ID, image::Firmware};

pub const QEMU: &str = "qemu-system-x86_64";
/// OVMF firmware from Debian's `ovmf` package.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// How a QEMU process ended, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The kernel ended the run itself, with this code (the contract's
    /// [`ExitCode`]: success, failed tests, panic, exception, bad
    /// parameters).
    Kernel(ExitCode),
    /// [`QemuStatus::Reset`]: a reset or power-off, e.g. a triple fault
    /// with `-no-reboot`.
    Reset,
    /// [`QemuStatus::QemuError`]: QEMU itself failed (bad option, missing
    /// file, ...).
    QemuError,
    /// Any other status.
    Other(i32),
    /// QEMU died of a signal the runner did not send: QEMU itself
    /// crashed (a segfault), or something else killed it. Not a verdict
    /// on the kernel ([`crate::Run::run`] boots once more).
    Signal(i32),
    /// We killed it at the deadline.
    Timeout(Duration),
    /// We killed it after its console was silent this long, once QEMU had
    /// told us where every vCPU was ([`crate::qmp`]).
    Silent(Duration),
}

impl Exit {
    /// Decodes a process exit status.
    pub fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(sig) => Exit::Signal(sig),
            None => Exit::from_code(status.code()),
        }
    }

    /// Decodes a process exit code (`None`: killed by a signal we do not
    /// know).
    pub fn from_code(code: Option<i32>) -> Exit {
        let Some(code) = code else {
            return Exit::Signal(0);
        };
        match contract::exit::decode(code) {
            QemuStatus::Kernel(k) => Exit::Kernel(k),
            QemuStatus::Reset => Exit::Reset,
            QemuStatus::QemuError => Exit::QemuError,
            QemuStatus::Unknown(c) => Exit::Other(c),
        }
    }

    /// Everything passed.
    pub const SUCCESS: Exit = Exit::Kernel(ExitCode::Success);
    /// The run completed with failed tests.
    pub const TESTS_FAILED: Exit = Exit::Kernel(ExitCode::TestsFailed);
    /// A Rust panic.
    pub const PANIC: Exit = Exit::Kernel(ExitCode::Panic);
    /// An unhandled CPU exception.
    pub const EXCEPTION: Exit = Exit::Kernel(ExitCode::Exception);
    /// The kernel rejected its parameters.
    pub const BAD_PARAMS: Exit = Exit::Kernel(ExitCode::BadParams);

    /// The kernel's exit code, when the kernel ended the run itself.
    pub fn kernel_code(&self) -> Option<ExitCode> {
        match self {
            Exit::Kernel(k) => Some(*k),
            _ => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(k) = self.kernel_code() {
            return write!(f, "{} (status {})", k.describe(), k.qemu_status());
        }
        match self {
            Exit::Reset => write!(
                f,
                "unexpected reset or power-off (status {STATUS_RESET}; triple fault?)"
            ),
            Exit::QemuError => write!(f, "QEMU error (status {STATUS_QEMU_ERROR})"),
            Exit::Other(c) => write!(f, "unexpected exit status {c}"),
            Exit::Signal(sig) => write!(
                f,
                "QEMU died of signal {} ({}), not sent by the runner: QEMU crashed or was killed; this is no verdict on the kernel",
                sig,
                signal_name(*sig)
            ),
            Exit::Timeout(d) => write!(f, "timed out after {:.0} s (killed)", d.as_secs_f64()),
            Exit::Silent(d) => write!(
                f,
                "the kernel printed nothing for {:.0} s (every CPU stuck?); QEMU's view of each vCPU follows, then it was killed",
                d.as_secs_f64()
            ),
            _ => unreachable!("kernel exits are handled above"),
        }
    }
}

/// A signal's name, for reports.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// The first line of `qemu-system-x86_64 --version`, once per process.
pub fn qemu_version() -> String {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        Command::new(QEMU)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "unknown QEMU version".to_string())
    })
    .clone()
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
    /// When each line arrived, from QEMU's start (one per `lines` entry).
    pub times: Vec<Duration>,
    /// The unstripped kernel ELF beside the image, for symbolizing.
    pub kernel_elf: Option<PathBuf>,
    /// The longest stretch without a console line (after the first line).
    pub longest_silence: Duration,
    /// Set when this outcome is a second boot after QEMU itself crashed in
    /// the first: what happened then.
    pub retried_after: Option<String>,
}

impl Outcome {
    pub fn contains(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }
}

/// Finds QEMU (and OVMF for UEFI), installing them on Debian/Ubuntu when
/// running as root. Checks once per process and firmware; later calls
/// repeat the first answer.
pub fn ensure_qemu(firmware: Firmware) -> io::Result<()> {
    static BIOS: OnceLock<Result<(), String>> = OnceLock::new();
    static UEFI: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = match firmware {
        Firmware::Bios => &BIOS,
        Firmware::Uefi => &UEFI,
    };
    cell.get_or_init(|| find_or_install_qemu(firmware).map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn find_or_install_qemu(firmware: Firmware) -> io::Result<()> {
    let have_qemu = Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_ovmf = firmware == Firmware::Bios || Path::new(OVMF).exists();
    if have_qemu && have_ovmf {
        return Ok(());
    }
    // The firmware and device ROMs come with qemu-system-x86's own
    // dependencies (seabios, qemu-system-data); its recommendations (the
    // GUI, block drivers, qemu-utils) are not needed and are most of the
    // download.
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
        // Never removes a package: if apt would have to (a conflicting
        // package is installed), it stops, and the user decides.
        eprintln!("pcs: {QEMU} or OVMF missing; installing with apt-get: {pkgs}");
        let ok = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-remove --no-install-recommends {pkgs}"
                ),
            ])
            .status()?
            .success();
        if ok {
            return Ok(());
        }
        return Err(io::Error::other(format!(
            "apt-get install {pkgs} failed (above). If apt wanted to remove a package, the runner \
             does not do that for you; to install anyway, run yourself:\n    \
             apt-get install --no-install-recommends {pkgs}"
        )));
    }
    Err(io::Error::other(format!(
        "{QEMU} (or OVMF for --uefi) is missing; install it, e.g. on Debian/Ubuntu:\n    sudo apt-get install -y --no-install-recommends {pkgs}"
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

/// The QEMU command line for `run` booting `image`, writing logs into `dir`
/// (where a fresh data disk is made too).
fn command(run: &Run, image: &Path, dir: &Path, qmp: &Path) -> io::Result<Command> {
    let mut cmd = Command::new(QEMU);
    let params_file = dir.join("params.txt");
    fs::write(&params_file, run.param_string())?;
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
    .arg("-device")
    .arg(format!(
        "isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize={DEBUG_EXIT_IOSIZE:#04x}"
    ))
    .args(["-smp", &run.smp.to_string(), "-m", &run.mem])
    .args(["-accel", if run.kvm { "kvm" } else { "tcg" }])
    .args(
        run.icount
            .map(|shift| ["-icount".to_string(), format!("shift={shift},sleep=off")])
            .into_iter()
            .flatten(),
    )
    .args(["-d", "cpu_reset,guest_errors", "-D"])
    .arg(dir.join("qemu.log"))
    .arg("-fw_cfg")
    .arg(format!(
        "name={},file={}",
        contract::FW_CFG_NAME,
        params_file.display()
    ))
    .arg("-drive")
    // snapshot=on: writes go to a throw-away overlay, so many runs can
    // share one image without QEMU's image lock refusing them.
    .arg(format!("format=raw,snapshot=on,file={}", image.display()));
    if let Some(disk) = run.disk.prepare(dir)? {
        // The data disk, without snapshot: the guest's writes reach the
        // file. QEMU locks it, so two runs cannot share one image.
        cmd.arg("-drive")
            .arg(match &run.disk_filter {
                None => format!("file={},if=none,id={DRIVE_ID},format=raw", disk.display()),
                Some(f) => {
                    f.prepare()?;
                    f.drive(&disk, DRIVE_ID)
                }
            })
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive={DRIVE_ID}"));
    }
    if run.firmware == Firmware::Uefi {
        cmd.args(["-bios", OVMF]);
    }
    if run.gdb {
        cmd.args(["-s", "-S"]);
    }
    cmd.arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    Ok(cmd)
}

/// Boots `image` as `run` describes, to completion or to the deadline.
/// The caller has checked for QEMU ([`ensure_qemu`]).
pub(crate) fn launch(run: &Run, image: &Path) -> io::Result<Outcome> {
    let dir = run_dir(&run.name)?;
    let serial_log = dir.join("serial.log");
    let qemu_log = dir.join("qemu.log");
    static BOOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let qmp = crate::qmp::socket_path(
        &BOOTS
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    let _ = fs::remove_file(&qmp);
    let mut cmd = command(run, image, &dir, &qmp)?;
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
    let mut times = Vec::new();
    let mut first_ktap = None;
    let deadline = start + run.timeout;
    let mut timed_out = false;
    let mut silent = None;
    let mut last_line: Option<Instant> = None;
    let mut longest_silence = Duration::ZERO;
    let silence_limit = run.silence_limit();
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        if let (Some(limit), Some(last)) = (silence_limit, last_line)
            && now - last >= limit
        {
            silent = Some(now - last);
            break;
        }
        // Wake up once a second so a live display can tick.
        match rx.recv_timeout((deadline - now).min(Duration::from_secs(1))) {
            Ok(line) => {
                if first_ktap.is_none() && line.trim_start().starts_with(KTAP_VERSION) {
                    first_ktap = Some(start.elapsed());
                }
                writeln!(log, "{line}")?;
                match &run.sink {
                    Some(s) => s.line(&line),
                    None if run.echo => println!("{line}"),
                    None => {}
                }
                times.push(start.elapsed());
                lines.push(line);
                let now = Instant::now();
                if let Some(last) = last_line {
                    longest_silence = longest_silence.max(now - last);
                }
                last_line = Some(now);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(s) = &run.sink {
                    s.tick();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = if let Some(quiet) = silent {
        // Ask QEMU where every vCPU is before killing it (module docs of
        // `crate::qmp`); the answer goes into the log like console lines.
        let mut host = vec![format!(
            "[host] the kernel printed nothing for {:.0} s; QEMU's view of every vCPU:",
            quiet.as_secs_f64()
        )];
        match crate::qmp::dump_vcpus(&qmp) {
            Ok(cpus) => host.extend(cpus.iter().flat_map(crate::qmp::Vcpu::lines)),
            Err(e) => host.push(format!("[host] QMP did not answer: {e}")),
        }
        for l in host {
            writeln!(log, "{l}")?;
            if run.echo {
                println!("{l}");
            }
            times.push(start.elapsed());
            lines.push(l);
        }
        kill(&mut child);
        Exit::Silent(quiet)
    } else if timed_out {
        kill(&mut child);
        Exit::Timeout(run.timeout)
    } else {
        Exit::from_status(child.wait()?)
    };
    let _ = fs::remove_file(&qmp);
    let _ = reader.join();
    let stderr_text = err_thread.join().unwrap_or_default();
    if !stderr_text.trim().is_empty() {
        for l in stderr_text.lines() {
            writeln!(log, "[qemu stderr] {l}")?;
            if run.echo {
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
        times,
        kernel_elf: Some(image.with_file_name("kernel")).filter(|p| p.exists()),
        longest_silence,
        retried_after: None,
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decode_through_the_contract() {
        for k in ExitCode::ALL {
            let e = Exit::from_code(Some(k.qemu_status()));
            assert_eq!(e.kernel_code(), Some(k), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("status {}", k.qemu_status()))
            );
        }
        assert_eq!(Exit::from_code(Some(STATUS_RESET)), Exit::Reset);
        assert_ne!(Exit::from_code(Some(0)), Exit::SUCCESS);
        assert_eq!(Exit::from_code(Some(STATUS_QEMU_ERROR)), Exit::QemuError);
        assert_eq!(Exit::from_code(None), Exit::Signal(0));
        assert_eq!(Exit::Reset.kernel_code(), None);
    }
}
