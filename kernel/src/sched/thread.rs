//! Kernel threads: identity, state, stack, and what they wait on.

use alloc::{boxed::Box, string::String, sync::Arc};
use core::{
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering},
};

use super::{KernelPlatform, space::SpaceRef, stack::Stack};

pub type WaitQueue = pagesync::waitqueue::WaitQueueHead<KernelPlatform>;

/// On a CPU, or chosen to be.
pub const RUNNING: u8 = 0;
/// Woken or preempted: on a run queue (or about to check and run on).
pub const RUNNABLE: u8 = 1;
/// Asked to sleep (`prepare_to_sleep`); off the run queue once it schedules.
pub const SLEEPING: u8 = 2;
/// Finished; never runs again.
pub const DEAD: u8 = 3;

pub type ThreadRef = Arc<Thread>;

pub struct Thread {
    pub id: u64,
    pub name: String,
    /// The CPU whose run queue owns this thread ([`Thread::cpu`]). It
    /// changes only while the thread is neither running nor being switched
    /// (`super::wake`'s placement, `super::balance`), under that run
    /// queue's lock; a reader locks `rq(cpu)` and checks it again.
    cpu: core::sync::atomic::AtomicUsize,
    /// Spawned onto a CPU by name: it never leaves it (affinity).
    pub pinned: bool,
    /// One of RUNNING, RUNNABLE, SLEEPING, DEAD. Written under the owning
    /// run queue's lock, except `prepare_to_sleep`/`set_running` by the
    /// thread itself (see `KernelPlatform`).
    pub state: AtomicU8,
    /// Queued on its run queue (protected by the run queue lock).
    pub(super) on_rq: UnsafeCell<bool>,
    /// Saved stack pointer while switched out (run queue lock).
    pub(super) rsp: UnsafeCell<u64>,
    pub(super) stack: UnsafeCell<Option<Stack>>,
    pub(super) entry: UnsafeCell<Option<Box<dyn FnOnce() + Send>>>,
    /// The address space it runs in (`None`: the kernel root). Written only
    /// by the thread itself with interrupts off ([`super::set_space`]), or
    /// before it is published (spawn); read by its CPU's scheduler with
    /// interrupts off (`super::space`).
    pub(super) space: UnsafeCell<Option<SpaceRef>>,
    /// A pending cancellation: killable waits give up (Linux fatal signal).
    pub cancel: AtomicBool,
    pub exited: AtomicBool,
    pub join_wq: WaitQueue,
    /// `time::now_ns()` when it last began a sleep that the hung-task
    /// watchdog watches; 0 when not in such a sleep.
    pub sleep_since: AtomicU64,
    /// What it waits on (a `&'static str`), for hung-task reports.
    pub wait_desc: AtomicPtr<&'static str>,
    pub hung_reported: AtomicBool,
    /// Sleeping as an idle worker waits for work (Linux `TASK_IDLE`): a
    /// long sleep here is normal, and the hung-task watchdog skips it.
    pub idle_wait: AtomicBool,
    /// Times it was switched in.
    pub switches: AtomicU64,
    /// Nanoseconds it has run, up to its last switch-out (written by its
    /// CPU's scheduler under the run queue lock; read by wakers under the
    /// same lock: `super::wake`'s preemption rule).
    pub runtime_ns: AtomicU64,
}

// SAFETY: the UnsafeCell fields are only touched under the owning run
// queue's lock (on_rq, rsp, stack), by the thread itself before it first
// runs and at its entry (entry), or by the thread itself and its CPU's
// scheduler with interrupts off (space), as documented on each field.
unsafe impl Sync for Thread {}
// SAFETY: as above; the boxed entry closure is Send.
unsafe impl Send for Thread {}

impl Thread {
    pub fn new(
        id: u64,
        name: String,
        cpu: usize,
        pinned: bool,
        stack: Option<Stack>,
        entry: Option<Box<dyn FnOnce() + Send>>,
    ) -> Thread {
        Thread {
            id,
            name,
            cpu: core::sync::atomic::AtomicUsize::new(cpu),
            pinned,
            state: AtomicU8::new(RUNNABLE),
            on_rq: UnsafeCell::new(false),
            rsp: UnsafeCell::new(0),
            stack: UnsafeCell::new(stack),
            entry: UnsafeCell::new(entry),
            space: UnsafeCell::new(None),
            cancel: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            join_wq: WaitQueue::new(),
            sleep_since: AtomicU64::new(0),
            wait_desc: AtomicPtr::new(core::ptr::null_mut()),
            hung_reported: AtomicBool::new(false),
            idle_wait: AtomicBool::new(false),
            switches: AtomicU64::new(0),
            runtime_ns: AtomicU64::new(0),
        }
    }

    /// The CPU whose run queue owns the thread now (see the field).
    pub fn cpu(&self) -> usize {
        // Acquire pairs with the Release store of a move: the new CPU's
        // queue is the one to lock.
        self.cpu.load(Ordering::Acquire)
    }

    /// Moves the thread to `cpu`'s run queue. The caller holds the current
    /// run queue's lock and the thread is neither running nor queued there.
    pub(super) fn set_cpu(&self, cpu: usize) {
        // Release: pairs with the Acquire in `cpu`.
        self.cpu.store(cpu, Ordering::Release);
    }

    pub fn wait_desc(&self) -> &'static str {
        let p = self.wait_desc.load(Ordering::Relaxed);
        if p.is_null() {
            "an unnamed wait"
        } else {
            // SAFETY: only ever set from a `&'static &'static str` (set_wait_desc).
            unsafe { *p }
        }
    }
}

/// Records what thread `t` is about to wait on.
pub fn set_wait_desc(t: &Thread, desc: &'static &'static str) {
    t.wait_desc.store(
        desc as *const &'static str as *mut &'static str,
        Ordering::Relaxed,
    );
}
