//! Ending a run: QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
//!
//! A write of `v` makes QEMU exit with status `(v << 1) | 1`. The host runner
//! (`boot::qemu`) maps each status back to an [`ExitCode`]; it treats status 0
//! (a triple fault under `-no-reboot`, or a power-off) as a crash, never as
//! success. Keep this table in sync with `boot/src/qemu.rs`.

use x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// All selected work finished and every test passed (QEMU status 33).
    Success = 0x10,
    /// The run finished but some test failed (status 35).
    TestsFailed = 0x11,
    /// A Rust panic (status 37).
    Panic = 0x12,
    /// An unexpected CPU exception (status 39).
    Exception = 0x13,
    /// The kernel parameters were rejected (status 41).
    BadParams = 0x14,
}

/// Exits QEMU with `code`. If the device is missing (not run by our runner),
/// the CPU halts instead; the runner's timeout then reports it.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device our runner always adds;
    // writing it has no effect on memory. Without the device the write is
    // ignored by the (absent) hardware.
    unsafe { port.write(code as u32) };
    super::halt_forever()
}
