//! [`Run`]: the one way the host boots the kernel, from build to verdict.
//!
//! Mental model: a `Run` is a plain value describing one boot (a name for
//! its log directory, CPUs, memory, kernel parameters, firmware, build
//! profile, deadline, the virtio data disk, whether a human is watching). [`Run::run`] then
//!
//! 1. makes sure QEMU (and OVMF for UEFI) is installed, once per process;
//! 2. builds the kernel and its disk image, once per process for each
//!    profile and firmware, however many runs or threads ask (concurrent
//!    callers wait for the first build);
//! 3. boots it ([`crate::qemu`]) and judges the output
//!    ([`crate::verdict`]).
//!
//! `cargo xtask run`, `bench` and `test` and the integration tests in
//! `tests/` all build a `Run`; they differ only in their defaults.
//! [`Run::check_params`] runs the contract's parameter parser on the host,
//! so a front end can reject a typo before anything is built; [`Run::run`]
//! itself hands the parameters over unchecked, so tests can also prove that
//! the kernel rejects bad ones.

use std::{
    fmt, io,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use contract::params::{Help, TextTable};

use crate::{
    build::{self, Profile},
    disk::{self, Disk},
    image::{self, Firmware},
    progress::LineSink,
    qemu::{self, Outcome},
    verdict::{self, Verdict},
};

/// One boot of the kernel in QEMU; see the module documentation.
#[derive(Clone)]
pub struct Run {
    /// Names the log directory: `target/runs/<name>-<timestamp>-<pid>`.
    pub(crate) name: String,
    pub(crate) profile: Profile,
    pub(crate) firmware: Firmware,
    pub(crate) smp: u32,
    /// QEMU `-m` syntax, e.g. `512M`.
    pub(crate) mem: String,
    /// `key=value` words handed to the kernel.
    pub(crate) params: Vec<String>,
    pub(crate) timeout: Duration,
    /// Wait for gdb on tcp::1234 before starting.
    pub(crate) gdb: bool,
    /// Use KVM instead of TCG (KVM does not work on this project's CI kind).
    pub(crate) kvm: bool,
    /// The virtio-blk data disk.
    pub(crate) disk: Disk,
    /// Copy serial output to our stdout as it arrives, and cargo's output
    /// to our stderr while the kernel builds.
    pub(crate) echo: bool,
    /// QEMU's deterministic virtual time: each instruction advances the
    /// clock by 2^shift ns (`-icount shift=N,sleep=off`).
    pub(crate) icount: Option<u32>,
    /// Receives every console line as it arrives (instead of the echo).
    pub(crate) sink: Option<Arc<dyn LineSink>>,
    /// Silence after which the runner asks QEMU for every vCPU's state and
    /// ends the run; `None`: derived from `lockup_ms=` ([`Run::silence_limit`]).
    pub(crate) silence: Option<Duration>,
    /// A QEMU block driver between the data disk and its image.
    pub(crate) disk_filter: Option<disk::Filter>,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Run({self}, icount {:?})", self.icount)
    }
}

impl Run {
    /// A run with the interactive defaults: BIOS, dev build, `-smp 4`,
    /// `-m 512M`, no parameters, 300 s deadline, quiet, and a fresh 64 MiB
    /// virtio disk in the run's directory.
    pub fn new(name: &str) -> Run {
        Run {
            name: name.into(),
            profile: Profile::Dev,
            firmware: Firmware::Bios,
            smp: 4,
            mem: "512M".into(),
            params: Vec::new(),
            timeout: Duration::from_secs(300),
            gdb: false,
            kvm: false,
            disk: Disk::fresh(disk::DEFAULT_BYTES),
            echo: false,
            icount: None,
            sink: None,
            silence: None,
            disk_filter: None,
        }
    }

    /// Puts QEMU's `blklogwrites` or `blkdebug` between the data disk and
    /// its image ([`disk::Filter`]).
    pub fn disk_filter(mut self, f: disk::Filter) -> Run {
        self.disk_filter = Some(f);
        self
    }

    /// Ends the run after its console has been silent for `d`, once QEMU
    /// has told where every vCPU is (the default: [`Run::silence_limit`]).
    pub fn silence(mut self, d: Duration) -> Run {
        self.silence = Some(d);
        self
    }

    /// How long the console may stay silent before the runner diagnoses a
    /// stuck kernel from the host: the given limit, or 30 s, or four
    /// lockup thresholds plus 10 s if `lockup_ms=` is larger (a watchdog
    /// that can still speak reports within about two thresholds). None
    /// under gdb, where a stopped kernel is the point.
    pub fn silence_limit(&self) -> Option<Duration> {
        if self.gdb {
            return None;
        }
        if let Some(d) = self.silence {
            return Some(d);
        }
        let lockup_ms = self
            .params
            .iter()
            .find_map(|p| p.strip_prefix("lockup_ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(5_000);
        Some(Duration::from_secs(30).max(Duration::from_millis(4 * lockup_ms + 10_000)))
    }

    /// Runs the guest on QEMU's instruction-counted clock: every
    /// instruction advances virtual time by 2^`shift` ns, and an idle guest
    /// skips ahead to its next timer (`-icount shift=N,sleep=off`). Guest
    /// time then depends on the instructions executed only, not on how
    /// busy the host is, so time-based checks (the lockup watchdog) become
    /// reproducible. TCG then runs the vCPUs in turn on one host thread.
    pub fn icount(mut self, shift: u32) -> Run {
        self.icount = Some(shift);
        self
    }

    /// Hands every console line to `sink` as it arrives (a live progress
    /// display, say); `sink` decides whether to show it.
    pub fn sink(mut self, sink: Arc<dyn LineSink>) -> Run {
        self.sink = Some(sink);
        self
    }

    /// The virtio-blk data disk: [`Disk::fresh`] (a new image in the run
    /// directory, the default), [`Disk::at`] (a path that persists across
    /// runs), or [`Disk::None`].
    pub fn disk(mut self, d: Disk) -> Run {
        self.disk = d;
        self
    }

    /// The data disk this run attaches.
    pub fn disk_spec(&self) -> &Disk {
        &self.disk
    }

    /// Number of CPUs (`-smp`).
    pub fn smp(mut self, n: u32) -> Run {
        self.smp = n;
        self
    }

    /// Guest memory in QEMU's `-m` syntax (`256M`, `3G`).
    pub fn mem(mut self, mem: &str) -> Run {
        self.mem = mem.into();
        self
    }

    /// Appends kernel parameters (`key=value` words).
    pub fn params<I, S>(mut self, words: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.params
            .extend(words.into_iter().map(|w| w.as_ref().to_string()));
        self
    }

    /// Kills QEMU after this long.
    pub fn timeout(mut self, t: Duration) -> Run {
        self.timeout = t;
        self
    }

    /// Whether a human is watching: stream the serial console to stdout and
    /// cargo's build output to stderr.
    pub fn echo(mut self, on: bool) -> Run {
        self.echo = on;
        self
    }

    /// Boots through UEFI (OVMF) instead of BIOS.
    pub fn uefi(self) -> Run {
        self.firmware(Firmware::Uefi)
    }

    /// Boots through this firmware.
    pub fn firmware(mut self, fw: Firmware) -> Run {
        self.firmware = fw;
        self
    }

    /// Builds the kernel with optimisations.
    pub fn release(self) -> Run {
        self.profile(Profile::Release)
    }

    /// Builds the kernel with this profile.
    pub fn profile(mut self, p: Profile) -> Run {
        self.profile = p;
        self
    }

    /// Starts QEMU halted with a gdb stub on tcp::1234.
    pub fn gdb(mut self, on: bool) -> Run {
        self.gdb = on;
        self
    }

    /// Uses KVM instead of TCG.
    pub fn kvm(mut self, on: bool) -> Run {
        self.kvm = on;
        self
    }

    /// The parameter string the kernel will read.
    pub fn param_string(&self) -> String {
        self.params.join(" ")
    }

    /// Checks the parameters with the contract's parser, exactly as the
    /// kernel will, without building or booting anything.
    pub fn check_params(&self) -> Result<(), BadParams> {
        let s = self.param_string();
        contract::params::parse(&s)
            .map(|_| ())
            .map_err(|e| BadParams {
                error: e.to_string(),
                help: match e.key() {
                    Some(k) => Help(k).to_string(),
                    None => format!("the parameters are:\n{TextTable}"),
                },
            })
    }

    /// The unstripped kernel ELF of this run's profile (for gdb).
    pub fn kernel_elf(&self) -> PathBuf {
        build::kernel_out_dir(self.profile).join("kernel")
    }

    /// Builds the kernel ELF of this run's profile, once per process.
    pub fn kernel(&self) -> io::Result<PathBuf> {
        static DEV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        static RELEASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let cell = match self.profile {
            Profile::Dev => &DEV,
            Profile::Release => &RELEASE,
        };
        once(cell, || build::kernel(self.profile, self.echo))
    }

    /// The disk image for this run's profile and firmware, built (with the
    /// kernel) once per process.
    pub fn image(&self) -> io::Result<PathBuf> {
        static IMAGES: [OnceLock<Result<PathBuf, String>>; 4] = [const { OnceLock::new() }; 4];
        let idx = 2 * (self.profile == Profile::Release) as usize
            + (self.firmware == Firmware::Uefi) as usize;
        once(&IMAGES[idx], || {
            image::disk_image(&self.kernel()?, self.firmware)
        })
    }

    /// Checks for QEMU, then builds the kernel and image: everything before
    /// the boot, each step at most once per process. Returns the image.
    pub fn prepare(&self) -> io::Result<PathBuf> {
        qemu::ensure_qemu(self.firmware)?;
        self.image()
    }

    /// [`Run::prepare`], boots, and judges the run. If QEMU itself died
    /// of a signal (it segfaulted once in about 200 boots here), that is
    /// no verdict on the kernel: the boot runs once more, saying so, and
    /// the second outcome is judged (with the first named in it).
    pub fn run(&self) -> io::Result<(Outcome, Verdict)> {
        let image = self.prepare()?;
        let mut out = qemu::launch(self, &image)?;
        if let qemu::Exit::Signal(sig) = out.exit {
            let first = format!(
                "the first boot's QEMU ({}) died of signal {sig} ({}) after {:.1} s; its last console lines: {}; serial log {}",
                qemu::qemu_version(),
                qemu::signal_name(sig),
                out.elapsed.as_secs_f64(),
                out.lines
                    .iter()
                    .rev()
                    .take(3)
                    .rev()
                    .map(|l| format!("{l:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                out.serial_log.display()
            );
            eprintln!("pcs: {first}; booting once more (a QEMU crash is not a kernel verdict)");
            out = qemu::launch(self, &image)?;
            out.retried_after = Some(first);
        }
        let verdict = verdict::judge(&out);
        Ok((out, verdict))
    }
}

/// Runs `init` the first time, and returns its (cloned) result every time.
fn once(
    cell: &OnceLock<Result<PathBuf, String>>,
    init: impl FnOnce() -> io::Result<PathBuf>,
) -> io::Result<PathBuf> {
    cell.get_or_init(|| init().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

impl fmt::Display for Run {
    /// `-smp 4 -m 512M, BIOS, dev build, params: ...`
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "-smp {} -m {}, {:?}, {:?} build, params: {}",
            self.smp,
            self.mem,
            self.firmware,
            self.profile,
            if self.params.is_empty() {
                "(none)".to_string()
            } else {
                self.param_string()
            }
        )
    }
}

/// A parameter string the contract's parser rejected: the error and the
/// help that explains it (the offending key's, or the whole table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadParams {
    /// What is wrong, naming the key.
    pub error: String,
    /// The key's one-line help from the table, or the whole table.
    pub help: String,
}

impl fmt::Display for BadParams {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "bad kernel parameter: {}", self.error)?;
        for l in self.help.lines() {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BadParams {}

#[cfg(test)]
mod tests {
    use contract::params::Key;

    use super::*;

    #[test]
    fn builder_appends_parameters() {
        let r = Run::new("t")
            .params(["a=1"])
            .params(vec!["b=2".to_string()])
            .smp(2)
            .mem("256M")
            .uefi()
            .release();
        assert_eq!(r.param_string(), "a=1 b=2");
        assert_eq!((r.smp, r.mem.as_str()), (2, "256M"));
        assert_eq!((r.firmware, r.profile), (Firmware::Uefi, Profile::Release));
        assert_eq!(
            r.to_string(),
            "-smp 2 -m 256M, Uefi, Release build, params: a=1 b=2"
        );
        // A fresh 64 MiB disk unless told otherwise.
        assert_eq!(r.disk_spec(), &Disk::fresh(64 << 20));
        let r = r.disk(Disk::at("/tmp/x.img", 8192));
        assert_eq!(r.disk_spec().to_string(), "8K disk /tmp/x.img");
        assert_eq!(r.disk(Disk::None).disk_spec(), &Disk::None);
    }

    #[test]
    fn check_params_uses_the_contract() {
        assert_eq!(
            Run::new("t").params(["seed=3", "pcp=off"]).check_params(),
            Ok(())
        );
        let e = Run::new("t").params(["hz=5"]).check_params().unwrap_err();
        assert!(e.error.contains("'hz'"), "{e}");
        assert!(e.help.contains(Key::Hz.spec().help), "{e}");
        let e = Run::new("t").params(["fial=1"]).check_params().unwrap_err();
        assert!(
            e.error.contains("'fial'") && e.error.contains("'fail'"),
            "{e}"
        );
        assert!(e.help.contains(Key::Fail.spec().help), "{e}");
        // No key to blame: the whole table.
        let e = Run::new("t")
            .params(["zzzzzz=1"])
            .check_params()
            .unwrap_err();
        assert_eq!(e.help.lines().count(), 1 + Key::COUNT, "{e}");
    }
}
