//! The kernel console: `print!`/`println!`, and the `log` crate's macros with
//! levels, all on the serial port.
//!
//! Line atomicity: every `print!`/`println!`/log call formats its whole text
//! while holding the console lock with interrupts disabled, so text from two
//! CPUs never interleaves within one call. The lock remembers its owner CPU so
//! that an exception or panic raised *while printing* on the same CPU can
//! still print (it nests instead of deadlocking), and the panic path can take
//! the console from a CPU that died holding it (after a bounded wait).

use core::{
    cell::UnsafeCell,
    fmt::{self, Write},
    sync::atomic::{AtomicU8, AtomicUsize, Ordering},
};

use crate::arch::{self, serial::Serial};

const NO_OWNER: usize = usize::MAX;

struct Console {
    /// CPU index of the holder, or `NO_OWNER`.
    owner: AtomicUsize,
    serial: UnsafeCell<Serial>,
}

// SAFETY: `serial` is only reached through `with_console`, which holds the
// `owner` lock (or is the single-threaded nested/steal path documented there).
unsafe impl Sync for Console {}

static CONSOLE: Console = Console {
    owner: AtomicUsize::new(NO_OWNER),
    serial: UnsafeCell::new(Serial::uninit()),
};

/// Highest level printed (a `log::LevelFilter` as u8).
static LEVEL: AtomicU8 = AtomicU8::new(log::LevelFilter::Info as u8);

/// How many times the panic path spins for the lock before stealing it.
const STEAL_AFTER_SPINS: usize = 50_000_000;

pub fn init() {
    with_console(|s| s.init());
    log::set_logger(&LOGGER).expect("logger set twice");
    log::set_max_level(log::LevelFilter::Trace);
}

pub fn set_level(level: log::LevelFilter) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

fn with_console<R>(f: impl FnOnce(&mut Serial) -> R) -> R {
    arch::without_interrupts(|| {
        let me = arch::cpu_index();
        let nested = lock(me, usize::MAX);
        // SAFETY: we hold the console lock (or we are the CPU that already
        // holds it, interrupted in the middle of a line: the outer writer is
        // suspended until we return, so there is still one writer at a time).
        let r = f(unsafe { &mut *CONSOLE.serial.get() });
        if !nested {
            // Release pairs with the Acquire in `lock` of the next holder:
            // our UART writes happen before theirs.
            CONSOLE.owner.store(NO_OWNER, Ordering::Release);
        }
        r
    })
}

/// Takes the console lock for CPU `me`; returns whether it was already held
/// by `me` (nesting). After `spins` failed attempts the lock is stolen.
fn lock(me: usize, spins: usize) -> bool {
    let mut n = 0usize;
    loop {
        match CONSOLE.owner.compare_exchange_weak(
            NO_OWNER,
            me,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return false,
            Err(o) if o == me => return true,
            Err(_) => {
                n += 1;
                if n >= spins {
                    // The holder is presumably stopped or dead; take over.
                    CONSOLE.owner.store(me, Ordering::Relaxed);
                    return false;
                }
                core::hint::spin_loop();
            }
        }
    }
}

/// Prints on the panic/exception path: waits a bounded time for the console,
/// then takes it even if another CPU holds it, so a report always gets out.
pub fn emergency_print(args: fmt::Arguments) {
    arch::without_interrupts(|| {
        let me = arch::cpu_index();
        let nested = lock(me, STEAL_AFTER_SPINS);
        // SAFETY: as in `with_console`; after a steal the previous holder is
        // stopped or wedged, and the panic path never gives the console back.
        let _ = unsafe { &mut *CONSOLE.serial.get() }.write_fmt(args);
        if !nested {
            CONSOLE.owner.store(NO_OWNER, Ordering::Release);
        }
    })
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    with_console(|s| {
        let _ = s.write_fmt(args);
    });
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

struct Logger;
static LOGGER: Logger = Logger;

/// Sees each `[ERROR`/`[WARN` line's text (the test framework's check that
/// a case logs only what it expects), as a `fn(log::Level, &str)` cast to
/// a pointer; null: nobody.
static OBSERVER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Registers the observer of `[ERROR`/`[WARN` lines (boot, once). It may
/// be called in interrupt context and must not wait for a lock.
pub fn set_observer(f: fn(log::Level, &str)) {
    // Relaxed: the pointer names code, which needs no publication.
    OBSERVER.store(f as *mut (), Ordering::Relaxed);
}

/// Formats the message into a stack buffer (cut at 160 bytes, enough to
/// recognise it) and hands it to the observer.
fn observe(level: log::Level, args: &fmt::Arguments) {
    struct Buf([u8; 160], usize);
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                let mut utf8 = [0u8; 4];
                let c = c.encode_utf8(&mut utf8).as_bytes();
                if self.1 + c.len() > self.0.len() {
                    break;
                }
                self.0[self.1..self.1 + c.len()].copy_from_slice(c);
                self.1 += c.len();
            }
            Ok(())
        }
    }
    let f = OBSERVER.load(Ordering::Relaxed);
    if f.is_null() {
        return;
    }
    let mut b = Buf([0; 160], 0);
    let _ = b.write_fmt(*args);
    // SAFETY: `set_observer` is the only writer and stores only a
    // `fn(log::Level, &str)` cast to a pointer.
    let f = unsafe { core::mem::transmute::<*mut (), fn(log::Level, &str)>(f) };
    // The buffer holds whole characters only (see `write_str`).
    f(level, core::str::from_utf8(&b.0[..b.1]).unwrap_or(""));
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        (m.level() as u8) <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let cpu = arch::cpu_index();
            with_console(|s| {
                let _ = writeln!(s, "[{:<5} cpu{}] {}", r.level(), cpu, r.args());
            });
            if r.level() <= log::Level::Warn {
                observe(r.level(), r.args());
            }
        }
    }

    fn flush(&self) {}
}
