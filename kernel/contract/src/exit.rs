//! How a run ends: the value the kernel writes to QEMU's `isa-debug-exit`
//! device and the process exit status the host then sees.
//!
//! QEMU 7.2 (measured): a write of `v` to the device makes QEMU exit with
//! status `(v << 1) | 1`; a triple fault under `-no-reboot` exits with 0,
//! exactly like a power-off; QEMU's own errors (bad option, missing file)
//! exit with 1. Every [`ExitCode`] is therefore odd and at least 33, and
//! [`decode`] never reads status 0 as success.

/// I/O port base of the `isa-debug-exit` device the host adds to QEMU.
pub const DEBUG_EXIT_IOBASE: u16 = 0xf4;
/// Width in bytes of the device's port (the kernel writes a `u32`).
pub const DEBUG_EXIT_IOSIZE: u16 = 0x04;

/// What the kernel reports when it ends a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ExitCode {
    /// All selected work finished and every test passed.
    Success = 0x10,
    /// The run finished but some test failed.
    TestsFailed = 0x11,
    /// A Rust panic.
    Panic = 0x12,
    /// An unexpected CPU exception.
    Exception = 0x13,
    /// The kernel rejected its parameters.
    BadParams = 0x14,
}

impl ExitCode {
    /// Every exit code.
    pub const ALL: [ExitCode; 5] = [
        ExitCode::Success,
        ExitCode::TestsFailed,
        ExitCode::Panic,
        ExitCode::Exception,
        ExitCode::BadParams,
    ];

    /// The value the kernel writes to the `isa-debug-exit` port.
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// The exit status of the QEMU process after the kernel wrote
    /// [`Self::value`]: `(value << 1) | 1`.
    pub const fn qemu_status(self) -> i32 {
        ((self as u32) << 1 | 1) as i32
    }

    /// A few words for reports.
    pub const fn describe(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::TestsFailed => "tests failed",
            ExitCode::Panic => "kernel panic",
            ExitCode::Exception => "CPU exception",
            ExitCode::BadParams => "parameters rejected",
        }
    }
}

/// A QEMU process exit status, as the host reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuStatus {
    /// The kernel ended the run through `isa-debug-exit`.
    Kernel(ExitCode),
    /// Status 0: a reset or power-off, e.g. a triple fault with
    /// `-no-reboot`. Never a success.
    Reset,
    /// Status 1: QEMU itself failed.
    QemuError,
    /// Anything else.
    Unknown(i32),
}

/// Status QEMU exits with on a reset or power-off under `-no-reboot`.
pub const STATUS_RESET: i32 = 0;
/// Status QEMU exits with when it fails by itself.
pub const STATUS_QEMU_ERROR: i32 = 1;

/// Reads a QEMU exit status.
pub const fn decode(status: i32) -> QemuStatus {
    let mut i = 0;
    while i < ExitCode::ALL.len() {
        if ExitCode::ALL[i].qemu_status() == status {
            return QemuStatus::Kernel(ExitCode::ALL[i]);
        }
        i += 1;
    }
    match status {
        STATUS_RESET => QemuStatus::Reset,
        STATUS_QEMU_ERROR => QemuStatus::QemuError,
        s => QemuStatus::Unknown(s),
    }
}

// No exit code may look like a reset or a QEMU error, and no two may share
// a status.
const _: () = {
    let mut i = 0;
    while i < ExitCode::ALL.len() {
        let s = ExitCode::ALL[i].qemu_status();
        assert!(s != STATUS_RESET && s != STATUS_QEMU_ERROR && s < 256);
        let mut j = i + 1;
        while j < ExitCode::ALL.len() {
            assert!(ExitCode::ALL[j].qemu_status() != s);
            j += 1;
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_measured_ones() {
        // QEMU 7.2: (v << 1) | 1.
        let statuses: std::vec::Vec<i32> = ExitCode::ALL.iter().map(|c| c.qemu_status()).collect();
        assert_eq!(statuses, [33, 35, 37, 39, 41]);
        assert_eq!(ExitCode::BadParams.value(), 0x14);
    }

    #[test]
    fn decode_round_trips_and_zero_is_never_success() {
        for c in ExitCode::ALL {
            assert_eq!(decode(c.qemu_status()), QemuStatus::Kernel(c));
        }
        assert_eq!(decode(0), QemuStatus::Reset);
        assert_ne!(decode(0), QemuStatus::Kernel(ExitCode::Success));
        assert_eq!(decode(1), QemuStatus::QemuError);
        // A write of the raw value without QEMU's shift is not a status.
        assert_eq!(decode(0x10), QemuStatus::Unknown(0x10));
        assert_eq!(decode(34), QemuStatus::Unknown(34));
    }
}
