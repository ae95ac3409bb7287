//! Helpers for the integration tests: build the kernel once per test binary
//! and boot it through the shared runner (`boot::qemu`) and judge the run
//! with the shared verdict (`boot::verdict`).

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use boot::{
    build::{self, Profile},
    image::{self, Firmware},
    qemu::{self, Outcome},
    verdict::{self, Verdict},
};

/// The kernel image for `fw`, built once per process.
pub fn image(fw: Firmware) -> PathBuf {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    static BIOS: OnceLock<PathBuf> = OnceLock::new();
    static UEFI: OnceLock<PathBuf> = OnceLock::new();
    let elf = ELF.get_or_init(|| build::kernel(Profile::Dev, false).expect("kernel build"));
    let cell = if fw == Firmware::Bios { &BIOS } else { &UEFI };
    cell.get_or_init(|| image::disk_image(elf, fw).expect("disk image"))
        .clone()
}

/// One boot's settings; `Boot::new("name").params(&["seed=3"]).run()`.
pub struct Boot {
    cfg: qemu::Config,
}

impl Boot {
    pub fn new(name: &str) -> Boot {
        let mut cfg = qemu::Config::new(name, image(Firmware::Bios));
        // Two CPUs keeps parallel test boots affordable on a 2-core host.
        cfg.smp = 2;
        cfg.mem = "256M".into();
        cfg.timeout = Duration::from_secs(240);
        Boot { cfg }
    }

    pub fn params(mut self, p: &[&str]) -> Boot {
        self.cfg.params = p.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn smp(mut self, n: u32) -> Boot {
        self.cfg.smp = n;
        self
    }

    pub fn mem(mut self, m: &str) -> Boot {
        self.cfg.mem = m.into();
        self
    }

    pub fn timeout(mut self, secs: u64) -> Boot {
        self.cfg.timeout = Duration::from_secs(secs);
        self
    }

    pub fn uefi(mut self) -> Boot {
        self.cfg.firmware = Firmware::Uefi;
        self.cfg.image = image(Firmware::Uefi);
        self
    }

    pub fn run(self) -> (Outcome, Verdict) {
        let out = qemu::run(&self.cfg).expect("QEMU could not be started");
        let v = verdict::judge(&out);
        (out, v)
    }
}

/// Panics with the whole serial log when `cond` is false.
#[track_caller]
pub fn check(cond: bool, what: &str, out: &Outcome) {
    if !cond {
        panic!(
            "{what}\nexit: {}\nserial log ({}):\n{}",
            out.exit,
            out.serial_log.display(),
            out.lines.join("\n")
        );
    }
}
