//! The scheduler and CPU as seen by the protocol.
//!
//! Mental model: the protocol needs five things from its host: a handle on
//! "the current thread", a way to sleep that cannot miss a wake-up, a way to
//! wake a thread, a "has this thread been told to give up?" test (fatal
//! signal in Linux), and interrupt masking for the queue spin lock. The
//! kernel implements [`Platform`] with its scheduler and per-CPU data; loom
//! tests use `crate::loom_platform::LoomPlatform` (park/unpark).
//!
//! # The no-lost-wake-up contract
//!
//! A sleeper always runs this sequence (Linux `set_current_state` ... test
//! ... `schedule`):
//!
//! ```text
//! sleeper                              waker
//! P::prepare_to_sleep()                publish the condition
//! if condition { stop }                P::wake(&sleeper)
//! P::sleep()
//! ```
//!
//! The platform must guarantee that a [`Platform::wake`] of thread `t` that
//! happens after `t`'s [`Platform::prepare_to_sleep`] makes `t`'s next
//! [`Platform::sleep`] return (or never block). `prepare_to_sleep` must order
//! its state store before the sleeper's later condition load, and `wake`
//! must order the waker's earlier stores before it tests the sleeper's state
//! (Linux: `set_current_state` implies `smp_mb()`; `try_to_wake_up` issues
//! one). `sleep` may also return spuriously: every caller in this crate
//! loops and re-tests its condition. [`Platform::set_running`] ends the
//! sleep section; a wake arriving after it may be dropped or may make a
//! later `sleep` return early, both of which callers tolerate.
//!
//! A sixth, optional hook, [`Platform::race_point`], is called at the
//! protocol's named race points ([`crate::race`]); the kernel's test
//! builds delay there at random to open race windows, everybody else
//! leaves the default, which does nothing.

use crate::race::RacePoint;

/// Scheduler and CPU hooks the protocol runs on.
pub trait Platform: 'static {
    /// A handle that [`Platform::wake`] can use to wake a thread.
    type Thread: Clone + Send + Sync;
    /// Interrupt state saved by [`Platform::irq_save`].
    type IrqState;

    /// The calling thread.
    fn current() -> Self::Thread;
    /// Marks the calling thread as about to sleep (`set_current_state`).
    /// From here on a [`Platform::wake`] is remembered.
    fn prepare_to_sleep();
    /// Blocks unless woken since the last [`Platform::prepare_to_sleep`]
    /// (`schedule`). May return spuriously.
    fn sleep();
    /// Marks the calling thread running again (`__set_current_state(RUNNING)`).
    fn set_running();
    /// Wakes `thread` if it sleeps, or makes its next sleep return
    /// (`wake_up_process`). Callable with interrupts masked.
    fn wake(thread: &Self::Thread);
    /// Whether the calling thread has been told to abandon killable waits
    /// (`fatal_signal_pending`).
    fn cancel_pending() -> bool;
    /// Masks interrupts on this CPU and returns the previous state.
    fn irq_save() -> Self::IrqState;
    /// Restores the state returned by [`Platform::irq_save`].
    fn irq_restore(state: Self::IrqState);
    /// Called in busy-wait loops (`cpu_relax`, x86 `pause`).
    fn cpu_relax();
    /// Called at each named race point ([`crate::race`]). May run with
    /// interrupts masked, with the queue lock held and in interrupt
    /// context: it may delay, but must not sleep or take locks. The default
    /// does nothing.
    #[inline(always)]
    fn race_point(point: RacePoint) {
        let _ = point;
    }
    /// A monotonic clock in nanoseconds, for statistics only (the hand-off
    /// idle time, `crate::stats`); never used to decide anything. The
    /// default (0) turns the statistics off.
    #[inline(always)]
    fn now_ns() -> u64 {
        0
    }
}
