//! The kernel's locks: what kinds there are, the order they nest in, and
//! [`IrqMutex`], the guard for data.
//!
//! # The locks
//!
//! Every spin lock is pagesync's test-and-test-and-set [`RawSpinLock`], the
//! one spin loop loom checks; the kinds differ in what they do around it,
//! each for a reason:
//!
//! - [`IrqMutex`] (here): the kernel's lock for data. Taking it masks
//!   maskable interrupts on this CPU first, so an interrupt handler that
//!   takes the same lock (the tick scanning the thread list, an allocation
//!   from interrupt context) can never spin on a lock its own CPU holds, and
//!   the holder cannot be preempted or migrated (Linux
//!   `spin_lock_irqsave`). The previous interrupt state is kept in the lock,
//!   which only the holder touches, and restored on unlock.
//! - [`IrqSpinRaw`] as a `lock_api::RawMutex`: the same lock for the heap,
//!   because talc's `TalcLock` takes a `RawMutex`.
//! - pagesync's `SpinGuard` and `LockedQueue`: the wait-queue locks (the
//!   page wait table's hashed queues, thread and worker wait queues). They
//!   live in pagesync, masking interrupts through its `Platform`, because
//!   the protocol code is the same code loom runs on the host.
//! - The run queue's lock (`sched`): a bare [`RawSpinLock`] driven through
//!   its raw entry points, because it is held across a thread switch and
//!   released by the thread switched to, on the same CPU.
//! - The space lock (`vm::space::PtLock`): taken with interrupts *on* and
//!   preemption off, so the TLB shoot-down IPIs another CPU sends while it
//!   holds the lock still get through.
//!
//! Not spin locks in this sense: the page lock and PG_writeback (sleeping
//! bit locks, pagesync), `spin::Once` (one-time initialisation), the
//! console's owner word (`console`: re-entrant on its CPU so a panic can
//! print, and taken over after a timeout, so it never deadlocks), and the
//! torture's ticket lock (a benchmark baseline in the suites).
//!
//! # Lock order
//!
//! Outermost first; a lock may be taken while holding only locks above it.
//! [`crate::lockdep`] checks every acquisition of a debug kernel against
//! the order actually seen and panics on a cycle; the test suite's runs
//! print the graph they saw (`loglevel=debug`), whose edges all point down
//! this list.
//!
//! 1. The space lock (`vm::space`): a fault allocates page tables and
//!    frames under it.
//! 2. The thread list (`sched::THREADS`); the kernel-stack area
//!    (`sched::stack`), which allocates frames.
//! 3. Wait queues: the page wait table's hashed queues (one class, never
//!    two at once), thread wait queues, the page-cache worker's queue.
//!    A wake-up runs under the queue lock and takes what follows.
//! 4. The page-cache worker's job list (`pagecache::worker`): an async
//!    page-lock waiter's callback queues its job from the wake-up.
//! 5. A run queue (`sched`), one at a time: a wake-up queues the thread.
//! 6. Leaf locks, never held together: a file's index and its mappings
//!    (`pagecache::file`), the block devices' queues and state
//!    (`block::ram`, `block::virtio`), the fault injector
//!    (`block::common`), the I/O APIC and PCI configuration space (`arch`).
//! 7. The heap (`mm::heap`).
//! 8. The per-CPU frame caches (`mm::pcp`), several only in ascending CPU
//!    order (ascending address order, which the check enforces).
//! 9. The buddy lists (`mm::buddy::ZONE`).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

pub use pagesync::sync::RawSpinLock;
use talc::lock_api::{GuardNoSend, RawMutex};
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
///
/// The kernel's own type rather than `lock_api::Mutex<IrqSpinRaw, T>`:
/// its `new`, `lock` and `try_lock` are `#[track_caller]`, so the
/// lock-order check ([`crate::lockdep`]) keys each lock's class by where it
/// was made and reports where it was taken, not a line inside `lock_api`.
pub struct IrqMutex<T: ?Sized> {
    raw: IrqSpinRaw,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached through a guard, which exists only while
// `raw` is held (one holder at a time), or through `&mut IrqMutex`; `T:
// Send` because the holder may be any CPU.
unsafe impl<T: ?Sized + Send> Sync for IrqMutex<T> {}

/// The guard of a locked [`IrqMutex`]. Not `Send`: interrupts are masked on
/// the CPU that locked, which must be the one to unlock.
pub struct IrqMutexGuard<'a, T: ?Sized> {
    mutex: &'a IrqMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> IrqMutex<T> {
    /// An unlocked mutex holding `data`; its lock class is where this is
    /// called.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        IrqMutex {
            raw: IrqSpinRaw::new(),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized> IrqMutex<T> {
    /// Masks interrupts on this CPU, then spins until the lock is ours.
    #[track_caller]
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        self.raw.lock_here();
        IrqMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock if it is free.
    #[track_caller]
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly for a failed try
        // would be dropped at once and release the holder's lock.
        self.raw.try_lock_here().then(|| IrqMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        })
    }

    /// Whether some CPU holds the lock now (a snapshot, for checks).
    pub fn is_locked(&self) -> bool {
        self.raw.lock.is_locked()
    }

    /// The value, without locking: `&mut self` proves nobody holds it.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: ?Sized> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard's existence proves this CPU took the lock in
        // `lock` or `try_lock`.
        unsafe { self.mutex.raw.unlock_here() };
    }
}

impl IrqSpinRaw {
    /// An unlocked lock; its class is where this is called.
    #[track_caller]
    pub const fn new() -> Self {
        IrqSpinRaw {
            lock: RawSpinLock::new(),
            irq_were_enabled: AtomicBool::new(false),
        }
    }

    #[track_caller]
    fn lock_here(&self) {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // The lock's Acquire pairs with the Release in `unlock_here` of the
        // previous holder: its critical section happens-before ours.
        self.lock.lock_raw();
        self.irq_were_enabled.store(were, Ordering::Relaxed);
    }

    #[track_caller]
    fn try_lock_here(&self) -> bool {
        let were = interrupts::are_enabled();
        interrupts::disable();
        // Acquire on success: as in `lock_here`.
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

    /// # Safety
    /// The caller holds the lock, taken on this CPU.
    unsafe fn unlock_here(&self) {
        let were = self.irq_were_enabled.load(Ordering::Relaxed);
        // SAFETY: the caller holds the lock (this function's contract).
        // Its Release pairs with the Acquire of the next `lock_here`.
        unsafe { self.lock.unlock_raw() };
        if were {
            interrupts::enable();
        }
    }
}

// SAFETY: `lock` returns, and `try_lock` returns true, only once this CPU
// took the `RawSpinLock`, which admits one holder at a time; `unlock` (for
// the holder only, by the trait's contract) is the only way to release it.
unsafe impl RawMutex for IrqSpinRaw {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = IrqSpinRaw::new();
    // Interrupts are off for this CPU only: the guard must not move to
    // another CPU.
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        self.lock_here()
    }

    fn try_lock(&self) -> bool {
        self.try_lock_here()
    }

    unsafe fn unlock(&self) {
        // SAFETY: `RawMutex::unlock` is only called by the holder (the
        // trait's contract), on the CPU that locked (`GuardNoSend`).
        unsafe { self.unlock_here() }
    }

    fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }
}
