//! The page cache's worker thread: runs the work that asynchronous page
//! waiters' callbacks hand on (io_uring's task work in Linux).
//!
//! Mental model: a callback of `pagesync`'s async waiters runs in a
//! waker's context (an unlocker, or a device interrupt ending a read) with
//! a queue lock held: it may not sleep or touch the page wait table. It
//! puts a job on this queue ([`queue`], callable from any context) and the
//! worker thread runs the job in thread context, where it may lock,
//! unlock, read and sleep.

use alloc::{boxed::Box, collections::VecDeque};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{
    sched::{self, ThreadRef, thread::WaitQueue},
    sync::IrqMutex,
};

/// A job for the worker.
pub type Job = Box<dyn FnOnce() + Send>;

static JOBS: IrqMutex<VecDeque<Job>> = IrqMutex::new(VecDeque::new());
static WQ: WaitQueue = WaitQueue::new();
static WORKER: spin::Once<ThreadRef> = spin::Once::new();
/// Jobs run so far.
pub static RUN: AtomicU64 = AtomicU64::new(0);

/// Starts the worker (boot, once, after the scheduler).
pub fn start() {
    WORKER.call_once(|| {
        sched::spawn("pagecache-worker", None, || {
            loop {
                sched::idle_wait(|| WQ.wait_event(|| !JOBS.lock().is_empty()));
                // Take one job at a time: the lock is not held while it runs.
                let job = JOBS.lock().pop_front();
                if let Some(job) = job {
                    job();
                    RUN.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .expect("spawn the page-cache worker")
    });
}

/// Queues `job` for the worker. Any context, interrupts included; the
/// worker must have been started.
pub fn queue(job: Job) {
    assert!(WORKER.get().is_some(), "pagecache worker not started");
    JOBS.lock().push_back(job);
    // The push happens-before the waiter's re-check: the wait queue's lock
    // orders them (`wait_event`'s contract).
    WQ.wake_up_all();
}
