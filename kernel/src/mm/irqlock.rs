//! An interrupt-safe spin lock for the memory manager's shared state.
//!
//! Everything in `mm` that two CPUs can reach (the buddy free lists, each
//! per-CPU cache, the heap) sits behind an [`IrqMutex`]: taking it disables
//! maskable interrupts on this CPU first, so an interrupt handler that
//! allocates can never spin on a lock its own CPU holds, and the holder
//! cannot be preempted or migrated while it holds it (Linux
//! `spin_lock_irqsave`). The previous interrupt state is kept in the lock
//! itself, which only the holder touches, and restored on unlock; locks
//! therefore nest correctly when released in reverse order.
//!
//! It implements `lock_api::RawMutex` (through talc's re-export), so the
//! heap's `TalcLock` uses the same lock.

use core::sync::atomic::{AtomicBool, Ordering};

use talc::lock_api::{self, GuardNoSend, RawMutex};
use x86_64::instructions::interrupts;

/// The raw lock: a test-and-test-and-set spin lock plus the saved
/// interrupt flag of the holder.
pub struct IrqSpinRaw {
    locked: AtomicBool,
    /// Whether interrupts were enabled when the holder locked. Written by
    /// the holder right after it takes the lock and read by it before it
    /// releases: only ever accessed inside the critical section, so Relaxed.
    irq_were_enabled: AtomicBool,
}

/// A value protected by an [`IrqSpinRaw`].
pub type IrqMutex<T> = lock_api::Mutex<IrqSpinRaw, T>;

// SAFETY: `lock` returns only once this CPU swapped `locked` from false to
// true, `try_lock` likewise, and `unlock` is the only way back to false: at
// most one holder at a time.
unsafe impl RawMutex for IrqSpinRaw {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = IrqSpinRaw {
        locked: AtomicBool::new(false),
        irq_were_enabled: AtomicBool::new(false),
    };
    // Interrupts are off for this CPU only: the guard must not move to
    // another CPU.
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // Acquire pairs with the Release store in `unlock` of the previous
        // holder: its critical section happens-before ours.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        self.irq_were_enabled.store(were, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // Acquire: as in `lock`.
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
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
        // Release pairs with the Acquire in the next `lock`/`try_lock`.
        self.locked.store(false, Ordering::Release);
        if were {
            interrupts::enable();
        }
    }

    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}
