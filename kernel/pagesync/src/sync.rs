//! Synchronisation shims: one spelling of atomics for the kernel and loom.
//!
//! Mental model: every shared word in this crate is declared through this
//! module. In the kernel (and in ordinary host tests) the names resolve to
//! `core::sync::atomic`; under `--cfg loom` they resolve to loom's
//! instrumented types, so the model checker sees every access of the real
//! protocol code. Nothing else in the crate names `core::sync::atomic`
//! directly.
//!
//! The one lock in the crate, [`RawSpinLock`], is a test-and-test-and-set
//! spin lock. It calls the platform's IRQ-save hook before spinning and the
//! restore hook after releasing, so the kernel may take it from interrupt
//! context (wake-ups run from the end-of-I/O interrupt). Its busy-wait calls
//! [`Platform::cpu_relax`]. Under loom it is a `loom::sync::Mutex` instead
//! (see [`RawSpinLock`] for why).

use core::marker::PhantomData;

use crate::platform::Platform;

#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(not(loom))]
pub use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// `core::cell::UnsafeCell` with loom's closure API, so code written against
/// loom's cell compiles unchanged for the kernel.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents.
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A test-and-test-and-set spin lock with an IRQ-disable hook.
///
/// It guards the wait queues. Critical sections are short (queue a wait
/// entry, or walk the queue waking entries), never sleep, and may run in
/// interrupt context, so the lock masks interrupts on the local CPU for the
/// whole hold time (Linux `spin_lock_irqsave`).
///
/// The kernel also uses it, without a guard, for its own locks (kernel-only
/// [`lock_raw`](Self::lock_raw), [`try_lock_raw`](Self::try_lock_raw) and
/// [`unlock_raw`](Self::unlock_raw)): the interrupt-saving mutex of the
/// memory manager and the scheduler, and the run-queue lock, which one
/// thread takes and the next thread on that CPU releases after the context
/// switch. The raw entry points leave the interrupt state alone; their
/// callers mask interrupts themselves.
///
/// Under loom the guarded [`lock`](Self::lock) is a `loom::sync::Mutex`:
/// loom explores a blocking mutex far more cheaply than a spin loop (with
/// three threads the spinning version exceeds loom's branch limit), and
/// the protocol only needs the lock's mutual exclusion and its
/// Acquire/Release edges, which both provide. The spin loop itself, the
/// raw entry points, is compiled under loom too and checked on its own by
/// two-thread models (`tests/loom_spinlock.rs`).
///
/// **Lock classes.** In debug builds outside loom each lock remembers where
/// it was made ([`RawSpinLock::new`] is `#[track_caller]`): its *class*,
/// as Linux's lockdep keys a class by its initialisation site. Every
/// acquisition and release is reported to the hooks installed with
/// [`install_lock_hooks`] (the kernel's lock-order check), with the class,
/// the lock's address and the acquiring call site.
#[derive(Debug)]
pub struct RawSpinLock {
    locked: AtomicBool,
    #[cfg(loom)]
    mutex: loom::sync::Mutex<()>,
    #[cfg(all(not(loom), debug_assertions))]
    class: &'static core::panic::Location<'static>,
}

/// What the lock-order hooks are told: the class (where the lock was
/// made), the lock's address, and where it is being taken.
pub type AcquiredHook = fn(
    &'static core::panic::Location<'static>,
    usize,
    &'static core::panic::Location<'static>,
    bool,
);
/// The release hook: the lock's address.
pub type ReleasedHook = fn(usize);

#[cfg(all(not(loom), debug_assertions))]
static ACQUIRED: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
#[cfg(all(not(loom), debug_assertions))]
static RELEASED: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Routes every acquisition and release of a [`RawSpinLock`] to these
/// hooks (debug builds outside loom; elsewhere nothing is reported). The
/// `bool` of `acquired` is true for a try-lock (which cannot deadlock, so
/// it orders nothing, but is held from then on). Hooks run with the lock
/// just taken or about to be released, interrupts masked by the caller:
/// they must not take a `RawSpinLock`.
pub fn install_lock_hooks(acquired: AcquiredHook, released: ReleasedHook) {
    #[cfg(all(not(loom), debug_assertions))]
    {
        // Release so a CPU that sees the release hook also sees the
        // acquired one (installed first): pairs with the Acquire loads in
        // `report_released`, so a lock is never reported released without
        // its acquisition. Nothing else is published.
        ACQUIRED.store(acquired as *mut (), core::sync::atomic::Ordering::Release);
        RELEASED.store(released as *mut (), core::sync::atomic::Ordering::Release);
    }
    #[cfg(not(all(not(loom), debug_assertions)))]
    let _ = (acquired, released);
}

impl RawSpinLock {
    /// An unlocked lock; its class is where this is called (type docs).
    #[cfg(not(loom))]
    #[track_caller]
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            #[cfg(debug_assertions)]
            class: core::panic::Location::caller(),
        }
    }

    /// Tells the hooks this CPU has just taken the lock at `site`.
    #[inline(always)]
    fn report_acquired(&self, _site: &'static core::panic::Location<'static>, _try: bool) {
        #[cfg(all(not(loom), debug_assertions))]
        {
            // Acquire: see `install_lock_hooks`.
            let h = ACQUIRED.load(core::sync::atomic::Ordering::Acquire);
            if !h.is_null() {
                // SAFETY: `install_lock_hooks` stores only an
                // `AcquiredHook` cast to a pointer.
                let h = unsafe { core::mem::transmute::<*mut (), AcquiredHook>(h) };
                h(self.class, self as *const Self as usize, _site, _try);
            }
        }
    }

    /// Tells the hooks this CPU is about to release the lock.
    #[inline(always)]
    fn report_released(&self) {
        #[cfg(all(not(loom), debug_assertions))]
        {
            // Acquire: see `install_lock_hooks`.
            let h = RELEASED.load(core::sync::atomic::Ordering::Acquire);
            if !h.is_null() {
                // SAFETY: `install_lock_hooks` stores only a
                // `ReleasedHook` cast to a pointer.
                let h = unsafe { core::mem::transmute::<*mut (), ReleasedHook>(h) };
                h(self as *const Self as usize);
            }
        }
    }

    /// An unlocked lock (loom's mutex cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
            mutex: loom::sync::Mutex::new(()),
        }
    }

    /// Masks interrupts through `P`, then spins until the lock is ours.
    #[track_caller]
    pub fn lock<P: Platform>(&self) -> SpinGuard<'_, P> {
        let irq = P::irq_save();
        #[cfg(not(loom))]
        {
            self.acquire(P::cpu_relax);
            self.report_acquired(core::panic::Location::caller(), false);
            SpinGuard {
                lock: self,
                irq: Some(irq),
                _platform: PhantomData,
                _this_cpu: PhantomData,
            }
        }
        #[cfg(loom)]
        {
            let guard = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
            SpinGuard {
                _lock: self,
                guard: Some(guard),
                irq: Some(irq),
                _platform: PhantomData,
                _this_cpu: PhantomData,
            }
        }
    }

    /// Spins until the lock is ours, calling `relax` while it is held by
    /// someone else.
    #[inline]
    fn acquire(&self, relax: impl Fn()) {
        // Acquire pairs with the Release store in `release` by the previous
        // holder: everything it did under the lock is visible here
        // (Acquire -> Relaxed is caught by
        // `loom_spinlock::raw_lock_mutual_exclusion`).
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Spin on a plain load so waiting CPUs share the cache line
            // instead of bouncing it with failed RMWs.
            while self.locked.load(Ordering::Relaxed) {
                relax();
            }
        }
    }

    /// Gives the lock up.
    #[inline]
    fn release(&self) {
        debug_assert!(
            self.locked.load(Ordering::Relaxed),
            "RawSpinLock: unlock of an unlocked lock"
        );
        // Release pairs with the Acquire CAS in `acquire` or `try_lock_raw`
        // of the next holder: our critical section happens-before theirs
        // (Release -> Relaxed is caught by `loom_spinlock`'s models).
        self.locked.store(false, Ordering::Release);
    }

    /// For the kernel (and the loom models of the spin loop): spins until the lock is ours, without a guard and
    /// without touching the interrupt state. Release it with
    /// [`unlock_raw`](Self::unlock_raw).
    #[track_caller]
    pub fn lock_raw(&self) {
        // Under loom the spin must yield, or the model never ends.
        #[cfg(loom)]
        self.acquire(loom::hint::spin_loop);
        #[cfg(not(loom))]
        self.acquire(core::hint::spin_loop);
        self.report_acquired(core::panic::Location::caller(), false);
    }

    /// For the kernel (and the loom models of the spin loop): takes the lock if it is free, without a guard; returns
    /// whether it did.
    #[track_caller]
    pub fn try_lock_raw(&self) -> bool {
        // Acquire: as in `acquire`, it pairs with the Release store in
        // `release` by the previous holder (Acquire -> Relaxed is caught
        // by `loom_spinlock::try_lock_sees_the_holder`).
        let got = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if got {
            self.report_acquired(core::panic::Location::caller(), true);
        }
        got
    }

    /// For the kernel (and the loom models of the spin loop): releases a lock taken with [`lock_raw`](Self::lock_raw)
    /// or [`try_lock_raw`](Self::try_lock_raw).
    ///
    /// # Safety
    /// The lock must be held, and the caller must be its holder: it took the
    /// lock itself, or the holder handed it over (the scheduler's run-queue
    /// lock passes from the thread switched away from to the thread switched
    /// to). Nothing the lock protects may be touched after this call until
    /// the lock is taken again. Releasing someone else's lock lets two
    /// holders into the critical section at once.
    pub unsafe fn unlock_raw(&self) {
        self.report_released();
        self.release();
    }

    /// For the kernel (and the loom models of the spin loop): whether somebody holds the lock (a racy snapshot, for
    /// assertions and diagnostics).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl Default for RawSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

/// Proof that a [`RawSpinLock`] is held; dropping it unlocks, then restores
/// the interrupt state saved by [`RawSpinLock::lock`].
///
/// Not `Send`: the interrupt state it restores is the CPU's that locked,
/// so the guard must be dropped there (on another CPU it would switch that
/// CPU's interrupts on, or leave the locking CPU's off for good). Moving
/// one to another thread does not compile, even on a platform whose saved
/// interrupt state could move:
///
/// ```compile_fail,E0277
/// # struct Solo;
/// # impl pagesync::Platform for Solo {
/// #     type Thread = ();
/// #     type IrqState = bool;
/// #     fn current() {}
/// #     fn prepare_to_sleep() {}
/// #     fn sleep() {}
/// #     fn set_running() {}
/// #     fn wake(_: &()) {}
/// #     fn cancel_pending() -> bool { false }
/// #     fn irq_save() -> bool { false }
/// #     fn irq_restore(_: bool) {}
/// #     fn cpu_relax() {}
/// # }
/// fn needs_send<T: Send>(_: T) {}
/// let l = pagesync::sync::RawSpinLock::new();
/// needs_send(l.lock::<Solo>());
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct SpinGuard<'a, P: Platform> {
    #[cfg(not(loom))]
    lock: &'a RawSpinLock,
    #[cfg(loom)]
    _lock: &'a RawSpinLock,
    #[cfg(loom)]
    guard: Option<loom::sync::MutexGuard<'a, ()>>,
    irq: Option<P::IrqState>,
    _platform: PhantomData<fn() -> P>,
    /// Makes the guard neither `Send` nor `Sync` (type docs).
    _this_cpu: PhantomData<*const ()>,
}

impl<P: Platform> Drop for SpinGuard<'_, P> {
    fn drop(&mut self) {
        // The guard holds the lock: `release` (its Release store pairs with
        // the next holder's Acquire) before the interrupt state comes back.
        #[cfg(not(loom))]
        {
            self.lock.report_released();
            self.lock.release();
        }
        #[cfg(loom)]
        drop(self.guard.take());
        if let Some(irq) = self.irq.take() {
            P::irq_restore(irq);
        }
    }
}
