//! COM1 through the `uart_16550` crate (a well-kept driver; nothing here is
//! hand-rolled beyond choosing the port).

use core::fmt;

use uart_16550::{Config, Uart16550Tty, backend::PioBackend};

/// I/O port base of COM1, where QEMU's `-serial` device sits.
const COM1: u16 = 0x3f8;

pub struct Serial(Option<Uart16550Tty<PioBackend>>);

impl Serial {
    pub const fn uninit() -> Self {
        Serial(None)
    }

    /// Initialise COM1 (115200 8N1 by the crate's default config).
    pub fn init(&mut self) {
        // SAFETY: COM1 is the legacy serial port that QEMU's `pc` machine
        // always provides at 0x3f8..0x400; only `Serial` touches those ports:
        // the console's (whose lock serialises all access to it) and, when
        // a CPU faults before the kernel's fatal path is registered, the one
        // `handlers::early_fatal` makes to report it just before the run
        // ends (it may garble a line the console is writing, nothing more).
        self.0 = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.ok();
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match &mut self.0 {
            Some(uart) => uart.write_str(s),
            // No serial port: nothing can be reported; drop the text.
            None => Ok(()),
        }
    }
}
