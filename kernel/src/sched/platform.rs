//! The kernel's implementation of `pagesync::Platform`: the portable wait
//! queue and page-lock code sleep and wake through this scheduler.

use core::sync::atomic::Ordering;

use pagesync::{RacePoint, platform::Platform};

use super::{RUNNING, SLEEPING, Thread, ThreadRef, current, schedule, wake};
use crate::arch::{percpu, time};

pub struct KernelPlatform;

/// The current thread without touching its reference count.
fn with_current<R>(f: impl FnOnce(&Thread) -> R) -> R {
    let g = percpu::CpuGuard::new();
    let p = percpu::this_cpu(&g).current_thread.load(Ordering::Relaxed) as *const Thread;
    assert!(!p.is_null(), "sleeping before the scheduler runs");
    // SAFETY: the current thread's Arc is held by the run queue while it
    // runs, and it is running (it is us).
    f(unsafe { &*p })
}

impl Platform for KernelPlatform {
    type Thread = ThreadRef;
    type IrqState = bool;

    fn current() -> ThreadRef {
        current()
    }

    fn prepare_to_sleep() {
        with_current(|t| {
            if t.sleep_since.load(Ordering::Relaxed) == 0 {
                t.sleep_since
                    .store(time::now_ns().max(1), Ordering::Relaxed);
            }
            // SeqCst store = `xchg` on x86, a full barrier: our later load
            // of the wait condition cannot pass it. Pairs with the waker,
            // which stores the condition before its locked RMW on the run
            // queue lock and its load of `state` in `sched::wake`.
            t.state.store(SLEEPING, Ordering::SeqCst);
        })
    }

    fn sleep() {
        schedule()
    }

    fn set_running() {
        with_current(|t| {
            t.state.store(RUNNING, Ordering::Relaxed);
            t.sleep_since.store(0, Ordering::Relaxed);
            t.hung_reported.store(false, Ordering::Relaxed);
        })
    }

    fn wake(t: &ThreadRef) {
        wake(t);
    }

    fn cancel_pending() -> bool {
        with_current(|t| t.cancel.load(Ordering::Relaxed))
    }

    fn irq_save() -> bool {
        let were = x86_64::instructions::interrupts::are_enabled();
        x86_64::instructions::interrupts::disable();
        were
    }

    fn irq_restore(were: bool) {
        if were {
            x86_64::instructions::interrupts::enable();
        }
    }

    fn cpu_relax() {
        core::hint::spin_loop()
    }

    /// Random short delays at the protocol's race points (`super::jitter`),
    /// in debug builds; nothing in release builds.
    #[inline(always)]
    fn race_point(point: RacePoint) {
        #[cfg(debug_assertions)]
        super::jitter::point(point);
        #[cfg(not(debug_assertions))]
        let _ = point;
    }

    /// The TSC-based clock, for the hand-off statistics.
    #[inline(always)]
    fn now_ns() -> u64 {
        crate::arch::time::now_ns()
    }
}
