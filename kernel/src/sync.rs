//! The kernel's lock: pagesync's [`RawSpinLock`] with interrupts masked.
//!
//! Mental model: the kernel has one spin lock, the test-and-test-and-set
//! [`RawSpinLock`] that the page wait queues use and that loom checks. Here
//! it gets the one guard type the rest of the kernel uses, [`IrqMutex`]:
//! taking it disables maskable interrupts on this CPU first, so an interrupt
//! handler that takes the same lock (the tick scanning the thread list, an
//! allocation from interrupt context) can never spin on a lock its own CPU
//! holds, and the holder cannot be preempted or migrated while it holds it
//! (Linux `spin_lock_irqsave`). The previous interrupt state is kept in the
//! lock itself, which only the holder touches, and restored on unlock;
//! locks therefore nest correctly when released in reverse order.
//!
//! [`IrqSpinRaw`] implements `lock_api::RawMutex` (through talc's
//! re-export), so the heap's `TalcLock` uses the same lock. The scheduler's
//! run-queue lock is a bare [`RawSpinLock`] driven through its raw entry
//! points, because the thread that takes it is not the one that releases it
//! (see `sched`).

use core::sync::atomic::{AtomicBool, Ordering};

pub use pagesync::sync::RawSpinLock;
use talc::lock_api::{self, GuardNoSend, RawMutex};
use x86_64::instructions::interrupts;

/// The raw lock of an [`IrqMutex`]: a [`RawSpinLock`] plus the saved
/// interrupt flag of the holder.
pub struct IrqSpinRaw {
    lock: RawSpinLock,
    /// Whether interrupts were enabled when the holder locked. Written by
    /// the holder right after it takes the lock and read by it before it
    /// releases: only ever accessed inside the critical section, whose
    /// edges (the lock's Acquire and Release) order it, so Relaxed.
    irq_were_enabled: AtomicBool,
}

/// A value protected by an [`IrqSpinRaw`]: lock it with interrupts masked.
pub type IrqMutex<T> = lock_api::Mutex<IrqSpinRaw, T>;
/// The guard of a locked [`IrqMutex`].
pub type IrqMutexGuard<'a, T> = lock_api::MutexGuard<'a, IrqSpinRaw, T>;

// SAFETY: `lock` returns, and `try_lock` returns true, only once this CPU
// took the `RawSpinLock`, which admits one holder at a time; `unlock` (for
// the holder only, by the trait's contract) is the only way to release it.
unsafe impl RawMutex for IrqSpinRaw {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = IrqSpinRaw {
        lock: RawSpinLock::new(),
        irq_were_enabled: AtomicBool::new(false),
    };
    // Interrupts are off for this CPU only: the guard must not move to
    // another CPU.
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // The lock's Acquire pairs with the Release in `unlock` of the
        // previous holder: its critical section happens-before ours.
        self.lock.lock_raw();
        self.irq_were_enabled.store(were, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // Acquire on success: as in `lock`.
        if self.lock.try_lock_raw() {
            self.irq_were_enabled.store(were, Ordering::Relaxed);
            true
        } else {
            if were {
                interrupts::enable();
            }
            false
        }
    }

    unsafe fn unlock(&self) {
        let were = self.irq_were_enabled.load(Ordering::Relaxed);
        // SAFETY: `RawMutex::unlock` is only called by the holder (the
        // trait's contract), who took the lock in `lock` or `try_lock`.
        // Its Release pairs with the Acquire of the next `lock`/`try_lock`.
        unsafe { self.lock.unlock_raw() };
        if were {
            interrupts::enable();
        }
    }

    fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }
}
