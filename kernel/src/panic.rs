//! The end of every failed run: panics and fatal exceptions.
//!
//! Both print what happened, on which CPU, in which test case, and a
//! frame-pointer backtrace (the kernel is built with frame pointers), then
//! exit QEMU with a failure status. A fault *inside* this path (say, a bad
//! frame pointer during the backtrace) skips straight to the exit, so the
//! path can never loop or hang.

use core::{
    fmt,
    panic::PanicInfo,
    sync::atomic::{AtomicBool, Ordering},
};

use contract::marker::{BACKTRACE, BacktraceFrame, CRASHED_IN, FATAL, PCS};

use crate::{
    arch::{
        self,
        qemu::{ExitCode, exit},
    },
    console::emergency_print,
};

/// Names what was running (the test framework's current case), as a
/// `fn() -> Option<(&'static str, &'static str)>` cast to a pointer; null:
/// nothing registered.
static CONTEXT: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// The running test case (suite, case), for the report.
pub type CaseNamer = fn() -> Option<(&'static str, &'static str)>;

/// Registers what names the running case in a fatal report (the suites'
/// framework, before its first case). It runs on the fatal path: it must
/// only read statics.
pub fn set_case_namer(f: CaseNamer) {
    // Relaxed: the pointer names code, which needs no publication.
    CONTEXT.store(f as *mut (), Ordering::Relaxed);
}

fn running_case() -> Option<(&'static str, &'static str)> {
    let p = CONTEXT.load(Ordering::Relaxed);
    if p.is_null() {
        return None;
    }
    // SAFETY: `set_case_namer` is the only writer and stores only a
    // `CaseNamer` cast to a pointer.
    let f = unsafe { core::mem::transmute::<*mut (), CaseNamer>(p) };
    f()
}

/// Set by the first CPU to enter the fatal path.
static DYING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    die(ExitCode::Panic, format_args!("PANIC: {}", info))
}

/// Whether some CPU is already reporting a fatal error (the NMI handler
/// then parks its CPU instead of reporting a second one).
pub fn is_dying() -> bool {
    DYING.load(Ordering::Acquire)
}

pub fn fatal_exception(report: fmt::Arguments) -> ! {
    die(ExitCode::Exception, report)
}

fn die(code: ExitCode, report: fmt::Arguments) -> ! {
    if DYING.swap(true, Ordering::AcqRel) {
        // A second fault while reporting the first (or another CPU dying at
        // the same time): the first report is what matters.
        emergency_print(format_args!(
            "{PCS}nested fatal error on cpu{}: {}\n",
            arch::cpu_index(),
            report
        ));
        exit(code);
    }
    // Stop the other CPUs first, so the report is not interleaved with
    // their output and nothing runs on after the failure.
    if arch::apic::ready() {
        arch::smp::nmi_all_others();
    }
    emergency_print(format_args!(
        "\n{FATAL} on cpu{}: {}\n",
        arch::cpu_index(),
        report
    ));
    if let Some((suite, case)) = running_case() {
        emergency_print(format_args!("{CRASHED_IN}{suite}.{case}\n"));
    }
    backtrace();
    emergency_print(format_args!("{PCS}run aborted ({code:?})\n"));
    exit(code)
}

/// Walks the frame-pointer chain from the caller. Each frame is
/// `[rbp] = caller's rbp`, `[rbp + 8] = return address`. The walk only moves
/// upward within 1 MiB of where it started, so a corrupt chain ends it
/// instead of faulting.
fn backtrace() {
    let mut rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    let start = rbp;
    emergency_print(format_args!("{BACKTRACE}\n"));
    for depth in 0..32 {
        if rbp == 0 || !rbp.is_multiple_of(8) || rbp < start || rbp - start > (1 << 20) {
            break;
        }
        // SAFETY: rbp is 8-aligned and within 1 MiB above a live frame of
        // this stack, which is mapped (stacks are at least that large or
        // bounded below a guard page that the range check keeps us from).
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        emergency_print(format_args!("{}\n", BacktraceFrame { depth, addr: ret }));
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}
