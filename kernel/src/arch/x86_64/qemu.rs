//! Ending a run: QEMU's `isa-debug-exit` device, at the port and with the
//! codes of the host-kernel contract (`contract::exit`).
//!
//! A write of `v` makes QEMU exit with status `(v << 1) | 1`, which the host
//! decodes with the same contract; status 0 (a triple fault under
//! `-no-reboot`, or a power-off) never decodes as success.

use x86_64::instructions::port::Port;

pub use contract::ExitCode;

/// Exits QEMU with `code`. If the device is missing (not run by our runner),
/// the CPU halts instead; the runner's timeout then reports it.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(contract::exit::DEBUG_EXIT_IOBASE);
    // SAFETY: this port is the isa-debug-exit device our runner always
    // adds; writing it has no effect on memory. Without the device the
    // write is ignored by the (absent) hardware.
    unsafe { port.write(code.value()) };
    super::halt_forever()
}
