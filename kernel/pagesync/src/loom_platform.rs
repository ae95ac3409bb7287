//! A [`Platform`] for loom models (built only with `--cfg loom`).
//!
//! Mental model: loom threads stand in for kernel threads. Each has a
//! [`Parker`] that behaves like the kernel scheduler's thread state
//! (`kernel/src/sched`): [`Platform::prepare_to_sleep`] marks the thread
//! "sleeping" (Linux `set_current_state`), [`Platform::wake`] makes a
//! sleeping thread runnable and does nothing to a running one, and
//! [`Platform::sleep`] blocks only while the thread is still marked
//! sleeping. So, as in the kernel, **a wake-up counts only for a thread
//! that has prepared to sleep**: one that arrives earlier is lost, and a
//! protocol that relies on it hangs here as it would in the kernel. If
//! every thread is blocked, loom reports a deadlock: that is how a lost
//! wake-up shows up.
//!
//! The state is an atomic flag with the kernel's orderings, no stronger:
//! `prepare_to_sleep` stores it and then has a full barrier, `wake` has a
//! full barrier and then a Release compare-exchange (so "mark sleeping,
//! then test the condition" against "publish the condition, then test the
//! state" cannot both miss, as the kernel's full barriers in
//! `prepare_to_sleep` and `wake` provide: the contract in
//! [`crate::platform`]); a sleeper that really blocked returns from
//! `sleep` after an Acquire load of the flag its waker cleared (the
//! kernel's run-queue lock hand-off); and `set_running` is a Relaxed store
//! that synchronizes with nobody, as the kernel's is. A waiter that sees
//! its wake-up without blocking is therefore ordered after its waker only
//! by the protocol's own accesses, never by the platform. A mutex and a
//! condition variable serve only to block; they carry no state.
//!
//! Why not `loom::thread::park`/`unpark`: loom 0.7's `unpark` also makes
//! runnable a thread that is blocked on a loom mutex (our queue lock under
//! loom), which then trips loom's "expected to be able to acquire lock"
//! assertion; and its token is sticky, unlike the kernel's thread state.
//! A thread spawned with [`spawn_cancellable`] has a cancel flag, set from
//! outside with [`Canceller::cancel`], standing in for a fatal signal.
//!
//! [`times_blocked`] counts the times the calling model thread really
//! blocked, so a test can tell a wait's fast path (no sleep) from its slow
//! path and check that its model reached both.

use core::cell::RefCell;

use loom::sync::atomic::{AtomicBool, Ordering, fence};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread::JoinHandle;

use crate::platform::Platform;

/// The loom platform.
#[derive(Debug)]
pub struct LoomPlatform;

/// A thread's scheduler state, as in the kernel: `sleeping` is the
/// kernel's `SLEEPING` (set by `prepare_to_sleep`), `false` is running or
/// runnable.
#[derive(Debug, Default)]
pub struct Parker {
    sleeping: AtomicBool,
    /// Only for blocking in `park` (with `cv`); guards no data.
    lock: Mutex<()>,
    cv: Condvar,
    /// Times this thread blocked. A plain std atomic, invisible to loom:
    /// bookkeeping for the tests, not part of the model.
    blocked: std::sync::atomic::AtomicU64,
}

/// How many times the calling model thread has blocked in
/// [`Platform::sleep`] (not counting calls that returned at once).
pub fn times_blocked() -> u64 {
    current_parker()
        .blocked
        .load(std::sync::atomic::Ordering::Relaxed)
}

impl Parker {
    fn prepare(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        // The kernel's SeqCst store of SLEEPING (`xchg`, a full barrier):
        // pairs with the fence in `unpark`. Either the waker's
        // compare-exchange sees us sleeping or our later test of the wait
        // condition sees what the waker published before waking.
        fence(Ordering::SeqCst);
    }

    fn park(&self) {
        let mut guard = self.lock.lock().unwrap();
        // Acquire pairs with the Release compare-exchange in `unpark`: a
        // thread woken from a real sleep sees what its waker wrote before
        // the wake (the kernel's run-queue lock orders the wakee after its
        // waker). Redundant: every wait of pagesync orders its waiter
        // after the waker by its own accesses (the bit tested with
        // Acquire, the WOKEN flag, `finish_wait`'s careful unlink), so no
        // model relies on the platform for it; `cargo xtask orderings`
        // finds this and the Release below weakened passing every model.
        if self.sleeping.load(Ordering::Acquire) {
            self.blocked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Acquire: as above. Redundant: as above.
        while self.sleeping.load(Ordering::Acquire) {
            guard = self.cv.wait(guard).unwrap();
        }
    }

    fn set_running(&self) {
        // Relaxed, as the kernel's `set_running`: it orders nothing, so a
        // waiter that saw its wake-up without sleeping must be ordered
        // after its waker by the protocol's own accesses.
        self.sleeping.store(false, Ordering::Relaxed);
    }

    fn unpark(&self) {
        // Pairs with the fence in `prepare` (see there): the kernel's wake
        // takes the run-queue lock (a locked RMW, a full barrier) before
        // it reads the state.
        fence(Ordering::SeqCst);
        // Release pairs with the Acquire loads in `park`. Redundant: see
        // there.
        if self
            .sleeping
            .compare_exchange(true, false, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            // Taking the lock waits for a sleeper between its test and its
            // wait, so the notification cannot fall between them.
            let _guard = self.lock.lock().unwrap();
            self.cv.notify_one();
        }
    }
}

/// A loom thread as the protocol sees it.
pub type LoomThread = Arc<Parker>;

loom::thread_local! {
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = RefCell::new(None);
    static PARKER: RefCell<Option<LoomThread>> = RefCell::new(None);
}

fn current_parker() -> LoomThread {
    PARKER.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| Arc::new(Parker::default()))
            .clone()
    })
}

impl Platform for LoomPlatform {
    type Thread = LoomThread;
    type IrqState = ();

    fn current() -> LoomThread {
        current_parker()
    }

    fn prepare_to_sleep() {
        current_parker().prepare();
    }

    fn sleep() {
        current_parker().park();
    }

    fn set_running() {
        current_parker().set_running();
    }

    fn wake(thread: &LoomThread) {
        thread.unpark();
    }

    fn cancel_pending() -> bool {
        // Acquire pairs with the Release store in `Canceller::cancel`.
        // Redundant: the flag carries no other data (a waiter that sees it
        // only gives up its wait), so Relaxed would do; `cargo xtask
        // orderings` finds the weakening passing every model.
        CANCEL.with(|c| {
            // Redundant: see above (the orderings tool reads this line).
            c.borrow()
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Acquire))
        })
    }

    fn irq_save() {}

    fn irq_restore(_state: ()) {}

    fn cpu_relax() {
        loom::hint::spin_loop();
    }
}

/// Sends a "fatal signal" to a thread from [`spawn_cancellable`].
#[derive(Clone)]
pub struct Canceller {
    thread: LoomThread,
    flag: Arc<AtomicBool>,
}

impl Canceller {
    /// Sets the thread's cancel flag and wakes it (`send_sig` +
    /// `signal_wake_up`).
    pub fn cancel(&self) {
        // Release pairs with the Acquire in `cancel_pending`. Redundant: as
        // there, nothing is published with the flag.
        self.flag.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Spawns a loom thread whose [`Platform::cancel_pending`] reports the flag
/// set by the returned [`Canceller`].
pub fn spawn_cancellable<F, T>(f: F) -> (JoinHandle<T>, Canceller)
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let flag = Arc::new(AtomicBool::new(false));
    let parker = Arc::new(Parker::default());
    let (my_flag, my_parker) = (flag.clone(), parker.clone());
    let handle = loom::thread::spawn(move || {
        CANCEL.with(|c| *c.borrow_mut() = Some(my_flag));
        PARKER.with(|p| *p.borrow_mut() = Some(my_parker));
        f()
    });
    (
        handle,
        Canceller {
            thread: parker,
            flag,
        },
    )
}
