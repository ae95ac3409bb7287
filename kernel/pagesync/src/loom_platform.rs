//! A [`Platform`] for loom models (built only with `--cfg loom`).
//!
//! Mental model: loom threads stand in for kernel threads. Each has a
//! [`Parker`]: a wake-up token behind a loom mutex and condition variable
//! (park/unpark semantics). `wake` sets the token; `sleep` waits for it and
//! consumes it. A wake before the sleep leaves the token, so the next sleep
//! returns at once, which is exactly the no-lost-wake-up contract of
//! [`Platform`]. If every thread is blocked, loom reports a deadlock: that
//! is how a lost wake-up shows up.
//!
//! Why not `loom::thread::park`/`unpark`: loom 0.7's `unpark` also makes
//! runnable a thread that is blocked on a loom mutex (our queue lock under
//! loom), which then trips loom's "expected to be able to acquire lock"
//! assertion. The condition-variable parker never touches threads blocked
//! elsewhere. A thread spawned with [`spawn_cancellable`] has a
//! cancel flag, set from outside with [`Canceller::cancel`], standing in for
//! a fatal signal.

use core::cell::RefCell;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread::JoinHandle;

use crate::platform::Platform;

/// The loom platform.
#[derive(Debug)]
pub struct LoomPlatform;

/// A thread's wake-up token.
#[derive(Debug, Default)]
pub struct Parker {
    token: Mutex<bool>,
    cv: Condvar,
}

impl Parker {
    fn park(&self) {
        let mut token = self.token.lock().unwrap();
        while !*token {
            token = self.cv.wait(token).unwrap();
        }
        *token = false;
    }

    fn unpark(&self) {
        // The mutex orders the waker's earlier stores before the sleeper's
        // return from `park` (Release on unlock, Acquire on lock).
        *self.token.lock().unwrap() = true;
        self.cv.notify_one();
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

    fn prepare_to_sleep() {}

    fn sleep() {
        current_parker().park();
    }

    fn set_running() {}

    fn wake(thread: &LoomThread) {
        thread.unpark();
    }

    fn cancel_pending() -> bool {
        // Acquire pairs with the Release store in `Canceller::cancel`.
        CANCEL.with(|c| {
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
        // Release pairs with the Acquire in `cancel_pending`.
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
