//! Named race points: where the platform may stretch the protocol's race
//! windows.
//!
//! Mental model: a bug in this protocol is almost always a window a few
//! instructions wide, between two accesses to shared words, in which
//! another CPU's step breaks an assumption. Real hardware (or QEMU) hits
//! such a window once in millions of tries. A race point is a call,
//! between two such steps, to [`crate::Platform::race_point`]: the kernel's test
//! builds delay there a few to a few thousand cycles, at random, now and
//! then (`jitter=` and `jitter_rate=` boot parameters), so every window,
//! including the windows of bugs nobody planted, opens wide often enough
//! for the torture to see what goes wrong. Under loom the hook does nothing
//! (loom already explores every interleaving) and the non-generic points
//! below are compiled out.
//!
//! Two kinds of points:
//! * **Every access to a page's shared words**: after each read, atomic
//!   read-modify-write or store of a page's flags word ([`crate::flags`]),
//!   and after each change of its reference count ([`crate::refcount`]).
//!   These are not placed by hand: whatever code touches the words, right
//!   or wrong, gets a point after each touch. A read-then-store written
//!   where one RMW was needed, a test outside the lock that should be
//!   under it, a clear before a walk that needs a reference: each has a
//!   point inside its window without anybody having thought of it. They
//!   sit in code that is not generic over the platform, so they reach it
//!   through the hook installed with [`install`] ([`hit`]).
//! * **Protocol steps between other accesses**: around the queue lock, the
//!   wake-up and the unlink ([`RacePoint`]'s `Wait*` and `Wake*` points),
//!   called as `P::race_point` from the generic code.
//!
//! A point may be reached with interrupts off and the queue lock held, and
//! from interrupt context (the end of writeback): the hook must only delay,
//! never sleep or take locks.

/// A named race point (module docs). The names are reported with the
/// kernel's jitter statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RacePoint {
    /// After a read of a page's flags word (`test`, `test_acquire`,
    /// `load`).
    FlagsRead,
    /// After an atomic read-modify-write of a page's flags word (`set`,
    /// `clear`, the test-and-set family, `clear_bit_unlock`, the unlock
    /// XOR).
    FlagsRmw,
    /// After a plain store of a visible page's flags word (only known-bad
    /// code does that).
    FlagsStore,
    /// After a read of a page's reference count.
    RefRead,
    /// After a change of a page's reference count (get, put, pin, unpin,
    /// freeze, unfreeze).
    RefRmw,
    /// A waiter has reset its entry and is about to take the queue lock to
    /// set `PG_WAITERS`, try the bit and queue.
    WaitBeforeQueueLock,
    /// A waiter's try under the queue lock failed; it is about to link its
    /// entry.
    WaitBeforeQueue,
    /// A waiter dropped the queue lock after queueing, before it prepares
    /// to sleep.
    WaitQueued,
    /// A waiter prepared to sleep, before it reads its entry's flags.
    WaitBeforeCheck,
    /// A waiter woken without a hand-off, before it races for the bit.
    WokenBeforeRace,
    /// A waiter leaving its wait, before `finish_wait` looks at its entry.
    WaitBeforeFinish,
    /// A waker saw `PG_WAITERS` and is about to take the queue lock to walk.
    WakeBeforeWalk,
    /// A waker published `WOKEN` (and `DONE`) on an entry, before it wakes
    /// the entry's thread.
    WakeChosen,
    /// A waker woke an entry's thread, before it unlinks the entry (its
    /// last touch of the sleeper's stack).
    WakeBeforeUnlink,
    /// A walk is over, before the waker decides whether to clear
    /// `PG_WAITERS`.
    WakeBeforeWaitersClear,
    /// A page-cache lookup returned (the index's lock dropped, a page or
    /// nothing in hand), before the caller acts on what it found. Placed
    /// by the kernel's page cache, not by this crate.
    CacheLookup,
    /// A page cache's index changed (a page inserted or removed, a dirty
    /// mark set or cleared) and its lock was dropped. Placed by the
    /// kernel's page cache.
    CacheUpdate,
}

impl RacePoint {
    /// Every point, in declaration order (`point as usize` indexes it).
    pub const ALL: [RacePoint; 17] = [
        RacePoint::FlagsRead,
        RacePoint::FlagsRmw,
        RacePoint::FlagsStore,
        RacePoint::RefRead,
        RacePoint::RefRmw,
        RacePoint::WaitBeforeQueueLock,
        RacePoint::WaitBeforeQueue,
        RacePoint::WaitQueued,
        RacePoint::WaitBeforeCheck,
        RacePoint::WokenBeforeRace,
        RacePoint::WaitBeforeFinish,
        RacePoint::WakeBeforeWalk,
        RacePoint::WakeChosen,
        RacePoint::WakeBeforeUnlink,
        RacePoint::WakeBeforeWaitersClear,
        RacePoint::CacheLookup,
        RacePoint::CacheUpdate,
    ];

    /// The point's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            RacePoint::FlagsRead => "flags-read",
            RacePoint::FlagsRmw => "flags-rmw",
            RacePoint::FlagsStore => "flags-store",
            RacePoint::RefRead => "ref-read",
            RacePoint::RefRmw => "ref-rmw",
            RacePoint::WaitBeforeQueueLock => "wait-before-queue-lock",
            RacePoint::WaitBeforeQueue => "wait-before-queue",
            RacePoint::WaitQueued => "wait-queued",
            RacePoint::WaitBeforeCheck => "wait-before-check",
            RacePoint::WokenBeforeRace => "woken-before-race",
            RacePoint::WaitBeforeFinish => "wait-before-finish",
            RacePoint::WakeBeforeWalk => "wake-before-walk",
            RacePoint::WakeChosen => "wake-chosen",
            RacePoint::WakeBeforeUnlink => "wake-before-unlink",
            RacePoint::WakeBeforeWaitersClear => "wake-before-waiters-clear",
            RacePoint::CacheLookup => "cache-lookup",
            RacePoint::CacheUpdate => "cache-update",
        }
    }
}

// `ALL` lists every point once, in order.
const _: () = {
    let mut i = 0;
    while i < RacePoint::ALL.len() {
        assert!(RacePoint::ALL[i] as usize == i);
        i += 1;
    }
};

/// The installed hook, as a `fn(RacePoint)` cast to a pointer (null: none).
/// Only debug builds outside loom have race points in non-generic code.
#[cfg(all(not(loom), debug_assertions))]
static HOOK: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Removes the hook installed by [`install`]: the non-generic race points
/// do nothing again (a load and a branch, no call). Returns whether a hook
/// was installed.
pub fn uninstall() -> bool {
    #[cfg(all(not(loom), debug_assertions))]
    {
        // Relaxed: see `install`.
        !HOOK
            .swap(core::ptr::null_mut(), core::sync::atomic::Ordering::Relaxed)
            .is_null()
    }
    #[cfg(not(all(not(loom), debug_assertions)))]
    false
}

/// Routes the non-generic race points (flags and reference-count
/// accesses) to `hook`, the platform's `Platform::race_point` (the kernel
/// passes `KernelPlatform::race_point` at boot when its jitter is on).
/// Without it, and in release builds and under loom, those points do
/// nothing.
pub fn install(hook: fn(RacePoint)) {
    #[cfg(all(not(loom), debug_assertions))]
    {
        // Relaxed: the pointer names code, which needs no publication; a
        // CPU that does not see it yet just skips a delay.
        HOOK.store(hook as *mut (), core::sync::atomic::Ordering::Relaxed);
    }
    #[cfg(not(all(not(loom), debug_assertions)))]
    let _ = hook;
}

/// A race point in code that is not generic over the platform: calls the
/// installed hook, if any (module docs).
#[inline(always)]
pub(crate) fn hit(point: RacePoint) {
    #[cfg(all(not(loom), debug_assertions))]
    {
        // Relaxed: see `install`.
        let hook = HOOK.load(core::sync::atomic::Ordering::Relaxed);
        if !hook.is_null() {
            // SAFETY: `install` is the only writer and stores only a
            // `fn(RacePoint)` cast to a pointer; function pointers and data
            // pointers have the same size on every target this crate
            // builds for.
            let hook = unsafe { core::mem::transmute::<*mut (), fn(RacePoint)>(hook) };
            hook(point);
        }
    }
    #[cfg(not(all(not(loom), debug_assertions)))]
    let _ = point;
}
