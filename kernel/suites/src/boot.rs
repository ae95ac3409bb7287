//! The `boot` suite: the kernel checks its own foundation, and hosts the
//! deliberate failures the host tests use to prove that every kind of failure
//! (a failed assertion, a panic, a CPU exception, a hang) is detected.

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
};
use kernel::params::Crash;

/// The loaded IDT is ours (its limit covers all 256 gates) and the GDT has a
/// TSS loaded, so exceptions have somewhere to go.
fn descriptor_tables(_: &Ctx) -> TestResult {
    let idt = x86_64::instructions::tables::sidt();
    kassert_eq!(idt.limit as usize + 1, 256 * 16);
    let tr: u16;
    // SAFETY: `str` only reads the task register.
    unsafe { core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    kassert!(tr != 0, "no TSS loaded (TR = {:#x})", tr);
    Ok(())
}

/// Fails on purpose when `fail=1`, to show a failing assertion is reported.
fn deliberate_failure(ctx: &Ctx) -> TestResult {
    if !ctx.params.fail {
        return Err(TestError::Skip("enable with fail=1"));
    }
    let two_plus_two = core::hint::black_box(2) + 2;
    kassert_eq!(two_plus_two, 5);
    Ok(())
}

/// `crash=wedge`: fails after spawning a thread that sleeps for good on a
/// queue nobody wakes (the wedge) and one in a killable wait that only its
/// cancellation ends. The framework must cancel and reap the second, find
/// the first still there, say so, and stop the run.
fn wedge() -> TestResult {
    use alloc::sync::Arc;

    use kernel::sched::{self, thread::WaitQueue};
    let wq = Arc::new(WaitQueue::new());
    let (a, b) = (wq.clone(), wq.clone());
    let wedged = sched::spawn("wedged", None, move || a.wait_event(|| false));
    let killable = sched::spawn("killable", None, move || {
        let _ = b.wait_event_killable(|| false);
    });
    kassert!(wedged.is_ok() && killable.is_ok(), "spawn failed");
    kernel::sched::timer::sleep_ns(50_000_000);
    kassert!(
        false,
        "crash=wedge: this case fails with two threads asleep"
    );
    Ok(())
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the frame (and the recursion) from being optimised out.
    let frame = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

/// Takes two locks in one order, then in the other, one after the other on
/// one CPU: no deadlock happens, but the lock-order check must see that it
/// could and stop the kernel naming both orders' sites.
fn lock_inversion() -> TestResult {
    use kernel::sync::IrqMutex;
    if !kernel::lockdep::enabled() {
        return Err(TestError::Skip(
            "the lock-order check runs in debug builds only",
        ));
    }
    static A: IrqMutex<u32> = IrqMutex::new(0);
    static B: IrqMutex<u32> = IrqMutex::new(0);
    {
        let _a = A.lock();
        let _b = B.lock();
    }
    log::info!("crash=lock-inversion: took A then B; now B then A");
    let _b = B.lock();
    let _a = A.lock();
    kassert!(false, "the inverted order was not reported");
    Ok(())
}

/// Crashes on purpose in the way `crash=` names.
fn deliberate_crash(ctx: &Ctx) -> TestResult {
    match ctx.params.crash {
        Crash::None => Err(TestError::Skip("enable with crash=KIND")),
        Crash::Panic => panic!("deliberate panic (crash=panic)"),
        Crash::DoubleFree => crate::mm::deliberate_double_free(),
        Crash::VmReadonlyWrite => crate::vm::deliberate_readonly_write(),
        Crash::WritebackUnreferenced => {
            // A descriptor that is not in the frame array, so the report
            // cannot corrupt the allocator: under writeback, count 0.
            let page = alloc::boxed::Box::leak(alloc::boxed::Box::new(pagesync::Page::new()));
            page.flags().set(pagesync::flags::PG_WRITEBACK);
            let _ =
                kernel::pagelock::table().end_page_writeback(page, pagesync::WriteResult::Written);
            unreachable!("end_page_writeback on an unreferenced page returned");
        }
        Crash::PageFault => {
            // An address in the non-canonical-free but unmapped low range.
            let p = core::hint::black_box(0xdead_b000usize) as *const u64;
            // SAFETY: not safe at all: this read is meant to fault.
            let v = unsafe { core::ptr::read_volatile(p) };
            kassert!(false, "read of unmapped address returned {v}");
            Ok(())
        }
        Crash::Divide => {
            let zero = core::hint::black_box(0u64);
            // SAFETY: not safe at all: `div` by zero is meant to raise #DE
            // (Rust's `/` would panic before the CPU saw it).
            unsafe {
                core::arch::asm!("div {0}", in(reg) zero, inout("rax") 1u64 => _, inout("rdx") 0u64 => _)
            };
            Ok(())
        }
        Crash::StackOverflow => {
            let r = recurse(0);
            kassert!(false, "recursion returned {r}");
            Ok(())
        }
        Crash::Hang => {
            log::info!("crash=hang: spinning forever with interrupts off");
            kernel::arch::halt_forever()
        }
        Crash::ApPanic => {
            let n = kernel::smp::online_cpus();
            if n < 2 {
                return Err(TestError::Skip("crash=appanic needs -smp 2 or more"));
            }
            kernel::smp::call_on_cpu(n - 1, &|cpu| {
                panic!("deliberate panic on cpu{cpu} (crash=appanic)")
            });
            Ok(())
        }
        Crash::Wedge => wedge(),
        Crash::LockInversion => lock_inversion(),
        Crash::AllCpusStuck => {
            log::info!("crash=all-cpus-stuck: every CPU spins with interrupts off");
            kernel::smp::run_on_all_cpus(&|_| {
                x86_64::instructions::interrupts::disable();
                loop {
                    core::hint::spin_loop();
                }
            });
            unreachable!("every CPU spins for ever")
        }
        Crash::TripleFault => {
            log::info!("crash=triplefault: loading an empty IDT, then int3");
            let empty = x86_64::structures::DescriptorTablePointer {
                limit: 0,
                base: x86_64::VirtAddr::zero(),
            };
            // SAFETY: not safe at all: with no IDT, int3 escalates to a
            // triple fault, which is the point of this case.
            unsafe {
                x86_64::instructions::tables::lidt(&empty);
                core::arch::asm!("int3");
            }
            Ok(())
        }
    }
}

pub static SUITE: Suite = Suite {
    name: "boot",
    cases: &[
        Case {
            name: "descriptor_tables",
            run: descriptor_tables,
        },
        Case {
            name: "deliberate_failure",
            run: deliberate_failure,
        },
        Case {
            name: "deliberate_crash",
            run: deliberate_crash,
        },
    ],
    expect_log: &[(
        "deliberate_crash",
        // crash=hang spins with interrupts off until the hard-lockup probe
        // reports it (the run then ends by the host's deadline).
        &["watchdog: hard lockup on cpu"],
    )],
    ..Suite::DEFAULTS
};
