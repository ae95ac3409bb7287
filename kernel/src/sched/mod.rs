//! Kernel threads and the per-CPU scheduler.
//!
//! Mental model: every CPU has a run queue (a FIFO of runnable threads,
//! round-robin) behind a spin lock taken with interrupts off, an idle thread
//! (the CPU's boot context on APs), and a current thread. A thread belongs
//! to one CPU at a time (`Thread::cpu`), whose run queue lock protects all
//! its scheduling state. A thread spawned onto a named CPU stays there
//! (pinned); any other may move, but only while it is neither running nor
//! queued elsewhere: at its wake-up, to an idle CPU if its own is busy
//! ([`wake`]), or when an idle CPU pulls it from a busy CPU's queue
//! (`balance`, both locks held). So a thread is only ever switched in by
//! the CPU that owns it, and it may resume on another CPU than the one it
//! left (`finish_switch` releases the lock of the CPU it resumes on).
//!
//! Wake-up preemption: a woken thread that has run at least
//! [`WAKEUP_GRANULARITY_NS`] less than a busy CPU's current thread goes to
//! the head of that queue and an IPI switches to it at once, instead of at
//! the next tick ([`wake`]).
//!
//! Sleeping and waking follow Linux's order, which makes lost wake-ups
//! impossible (the contract is in `pagesync::platform`):
//!
//! ```text
//! sleeper                                 waker
//! state = SLEEPING   (SeqCst: full fence) cond = true
//! if cond { state = RUNNING; done }       wake(t): lock rq(t.cpu)
//! schedule(): lock rq                       if t.state == SLEEPING:
//!   if state == SLEEPING: dequeue             t.state = RUNNABLE
//!   else keep running                         enqueue unless t is current
//! ```
//!
//! Either the waker's `wake` finds SLEEPING (and makes the thread runnable,
//! whether or not it has switched away yet: both sides decide under the same
//! run queue lock), or the sleeper's condition check sees the waker's store
//! (the SeqCst store of SLEEPING is a full barrier on x86, `xchg`, and pairs
//! with the waker's ordering of `cond = true` before its locked RMW on the
//! run queue lock and its load of `state`).
//!
//! Preemption: the local APIC tick calls [`tick`]; if this CPU's preempt
//! count is zero and another thread is runnable, it switches. A preempted
//! thread is always put back on the queue whatever its state, so a thread
//! preempted between `state = SLEEPING` and its own `schedule()` is not
//! lost; `on_rq` keeps a concurrent wake from queueing it twice.

pub mod jitter;
pub mod platform;
pub mod space;
pub mod stack;
mod switch;
pub mod thread;
pub mod timer;
pub mod watchdog;

use alloc::{boxed::Box, collections::VecDeque, string::String, sync::Arc, vec::Vec};
use core::{
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

pub use platform::KernelPlatform;
pub use space::{SpaceRef, ThreadSpace, current_space, set_space};
pub use thread::{DEAD, RUNNABLE, RUNNING, SLEEPING, Thread, ThreadRef};

use crate::{
    arch::{apic, percpu, smp as arch_smp, time},
    config::MAX_CPUS,
    sync::{IrqMutex, RawSpinLock},
};

struct RqInner {
    queue: VecDeque<ThreadRef>,
    /// The first `preempting` queued threads were queued by preempting
    /// wake-ups: a new one goes behind them, so threads woken in one walk
    /// run in the order they were woken (a lock handed off first runs
    /// first), ahead of the threads that were already waiting.
    preempting: usize,
    current: Option<ThreadRef>,
    idle: Option<ThreadRef>,
    /// A thread that exited on this CPU, reaped by the next one after the
    /// switch (it cannot free its own stack while running on it).
    dead: Option<ThreadRef>,
    /// Timed sleepers: (deadline ns, thread).
    timers: Vec<(u64, ThreadRef)>,
}

pub struct RunQueue {
    /// The run-queue lock. Every user disables interrupts first (a
    /// `CpuGuard`), because the tick takes it on this CPU. Used through the
    /// raw entry points: `schedule_inner` holds it across the context switch
    /// and the thread switched to releases it in `finish_switch`.
    lock: RawSpinLock,
    inner: UnsafeCell<RqInner>,
    /// Threads queued (mirror of queue.len(), readable without the lock;
    /// written through `set_queued`).
    pub nr_queued: AtomicUsize,
    /// `time::now_ns()` when the queue last stopped being empty: the
    /// soft-lockup check counts a stall with waiters from here, not from a
    /// switch long before anybody waited.
    pub queued_since_ns: AtomicU64,
    /// Nesting depth of preempt_disable; the tick switches only at zero.
    pub preempt_count: AtomicU32,
    /// Context switches on this CPU.
    pub switches: AtomicU64,
    /// `time::now_ns()` of the last switch (soft-lockup watchdog).
    pub last_switch_ns: AtomicU64,
    /// Set once the scheduler runs on this CPU.
    pub active: AtomicBool,
    /// `time::now_ns()` when the current thread was switched in (its
    /// running slice; `Thread::runtime_ns` gets the slice at switch-out).
    /// Written under the lock at each switch.
    pub slice_start_ns: AtomicU64,
    /// A switch was asked for while preemption was off here: taken at the
    /// `preempt_enable` that turns it back on.
    pub need_resched: AtomicBool,
    /// Wake-ups that preempted this CPU's current thread.
    pub wake_preemptions: AtomicU64,
    /// A preempting wake-up's reschedule IPI is on its way here: later
    /// wake-ups queue behind it without sending another (as Linux's
    /// `resched_curr` does nothing when `TIF_NEED_RESCHED` is already set).
    /// A walk that wakes thousands of threads with interrupts off sends one.
    pub resched_ipi_pending: AtomicBool,
    /// The idle thread is current (written under the lock at each switch;
    /// read without it by wakers choosing a CPU: a hint).
    pub idle_now: AtomicBool,
    /// Threads moved here: placed by a wake-up, or pulled by `balance`.
    pub migrations_in: AtomicU64,
}

// SAFETY: `inner` is only accessed with `lock` held (and interrupts off).
unsafe impl Sync for RunQueue {}

impl RunQueue {
    /// Publishes the queue's length for the lock-free readers (the caller
    /// holds this queue's lock, so it is the only writer), stamping when
    /// the queue stops being empty (`queued_since_ns`).
    fn set_queued(&self, len: usize) {
        if len > 0 && self.nr_queued.load(Ordering::Relaxed) == 0 {
            self.queued_since_ns
                .store(time::now_ns(), Ordering::Relaxed);
        }
        self.nr_queued.store(len, Ordering::Relaxed);
    }

    const fn new() -> RunQueue {
        RunQueue {
            lock: RawSpinLock::new(),
            inner: UnsafeCell::new(RqInner {
                queue: VecDeque::new(),
                preempting: 0,
                current: None,
                idle: None,
                dead: None,
                timers: Vec::new(),
            }),
            nr_queued: AtomicUsize::new(0),
            queued_since_ns: AtomicU64::new(0),
            preempt_count: AtomicU32::new(0),
            switches: AtomicU64::new(0),
            last_switch_ns: AtomicU64::new(0),
            active: AtomicBool::new(false),
            slice_start_ns: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            wake_preemptions: AtomicU64::new(0),
            resched_ipi_pending: AtomicBool::new(false),
            idle_now: AtomicBool::new(false),
            migrations_in: AtomicU64::new(0),
        }
    }

    /// Runs `f` with the lock held. Interrupts must be off.
    fn with<R>(&self, f: impl FnOnce(&mut RqInner) -> R) -> R {
        debug_assert!(!x86_64::instructions::interrupts::are_enabled());
        // The lock's Acquire pairs with the Release of the previous
        // holder's unlock.
        self.lock.lock_raw();
        // SAFETY: we hold the lock.
        let r = f(unsafe { &mut *self.inner.get() });
        // SAFETY: we took the lock above and `f` cannot switch threads (it
        // runs with interrupts off and does not call `schedule`).
        unsafe { self.lock.unlock_raw() };
        r
    }
}

static RQS: [RunQueue; MAX_CPUS] = [const { RunQueue::new() }; MAX_CPUS];

pub fn rq(cpu: usize) -> &'static RunQueue {
    &RQS[cpu]
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Every live thread, for the watchdog and diagnostics.
pub(crate) static THREADS: IrqMutex<Vec<ThreadRef>> = IrqMutex::new(Vec::new());
/// Live spawned threads (not yet reaped).
pub static NR_THREADS: AtomicUsize = AtomicUsize::new(0);
/// Most spawned threads alive at once.
pub static MAX_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The running thread.
pub fn current() -> ThreadRef {
    let g = percpu::CpuGuard::new();
    let p = percpu::this_cpu(&g).current_thread.load(Ordering::Relaxed) as *const Thread;
    assert!(
        !p.is_null(),
        "scheduler not running on cpu{}",
        percpu::cpu_index()
    );
    // SAFETY: current_thread points into the Arc held by this CPU's
    // `RqInner::current`, which stays alive while the thread runs; we add a
    // reference before anything can drop it.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Makes the calling CPU's boot context a thread (the idle thread on APs,
/// "main" on the boot CPU) and activates its run queue.
fn init_cpu(name: &str) -> ThreadRef {
    let g = percpu::CpuGuard::new();
    let cpu = percpu::cpu_index();
    let t = Arc::new(Thread::new(
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
        String::from(name),
        cpu,
        true,
        None,
        None,
    ));
    t.state.store(RUNNING, Ordering::Relaxed);
    percpu::this_cpu(&g)
        .current_thread
        .store(Arc::as_ptr(&t) as *mut (), Ordering::Relaxed);
    let r = rq(cpu);
    r.with(|inner| inner.current = Some(t.clone()));
    // An AP's boot context is its idle thread.
    r.idle_now.store(cpu != 0, Ordering::Relaxed);
    r.last_switch_ns.store(time::now_ns(), Ordering::Relaxed);
    r.slice_start_ns.store(time::now_ns(), Ordering::Relaxed);
    r.active.store(true, Ordering::Release);
    drop(g);
    t
}

/// Boot CPU: prepares the scheduler on every CPU. The boot context becomes
/// the thread "main"; each AP's boot context becomes its idle thread.
pub fn init() {
    stack::init();
    init_cpu("main");
    let idle = new_thread("idle/0", 0, true, None, Box::new(|| idle_loop()))
        .expect("no memory for the idle thread");
    {
        let _g = percpu::CpuGuard::new();
        rq(0).with(|inner| inner.idle = Some(idle));
    }
    crate::smp::run_on_all_cpus(&|cpu| {
        if cpu != 0 {
            let t = init_cpu(&alloc::format!("idle/{cpu}"));
            let _g = percpu::CpuGuard::new();
            rq(cpu).with(|inner| inner.idle = Some(t));
        }
    });
}

fn new_thread(
    name: &str,
    cpu: usize,
    pinned: bool,
    space: Option<SpaceRef>,
    f: Box<dyn FnOnce() + Send>,
) -> Option<ThreadRef> {
    let stack = stack::alloc()?;
    // SAFETY: a freshly allocated (or recycled, unused) stack.
    let sp = unsafe { switch::initial_frame(stack.top) };
    let t = Arc::new(Thread::new(
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
        String::from(name),
        cpu,
        pinned,
        Some(stack),
        Some(f),
    ));
    // SAFETY: nobody else sees `t` yet.
    unsafe {
        *t.rsp.get() = sp;
        *t.space.get() = space;
    }
    Some(t)
}

/// Why a spawn failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SpawnError {
    NoSuchCpu(usize),
    OutOfMemory,
}

/// Round-robin CPU choice for `spawn` without a CPU.
static NEXT_CPU: AtomicUsize = AtomicUsize::new(0);

/// Starts `f` in a new thread on `cpu`, which it never leaves (affinity),
/// or, with `None`, on the next CPU round-robin, from which the scheduler
/// may move it (`wake`'s placement, `balance`).
pub fn spawn(
    name: &str,
    cpu: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<ThreadRef, SpawnError> {
    spawn_in(name, cpu, None, f)
}

/// Starts `f` in a new thread on `cpu` (or the next CPU round-robin) that
/// runs in `space` (`None`: the kernel root only), as [`spawn`].
pub fn spawn_in(
    name: &str,
    cpu: Option<usize>,
    space: Option<SpaceRef>,
    f: impl FnOnce() + Send + 'static,
) -> Result<ThreadRef, SpawnError> {
    let n = crate::smp::online_cpus();
    let pinned_cpu = cpu;
    let cpu = cpu.unwrap_or_else(|| NEXT_CPU.fetch_add(1, Ordering::Relaxed) % n);
    if cpu >= n || !rq(cpu).active.load(Ordering::Acquire) {
        return Err(SpawnError::NoSuchCpu(cpu));
    }
    let pinned = pinned_cpu.is_some();
    let t = new_thread(name, cpu, pinned, space, Box::new(f)).ok_or(SpawnError::OutOfMemory)?;
    THREADS.lock().push(t.clone());
    let live = NR_THREADS.fetch_add(1, Ordering::Relaxed) + 1;
    MAX_THREADS.fetch_max(live, Ordering::Relaxed);
    let _g = percpu::CpuGuard::new();
    let r = rq(cpu);
    let idle = r.with(|inner| {
        // SAFETY: run queue lock held.
        unsafe { *t.on_rq.get() = true };
        inner.queue.push_back(t.clone());
        r.set_queued(inner.queue.len());
        is_idle(inner)
    });
    kick(cpu, idle);
    Ok(t)
}

fn is_idle(inner: &RqInner) -> bool {
    match (&inner.current, &inner.idle) {
        (Some(c), Some(i)) => Arc::ptr_eq(c, i),
        _ => false,
    }
}

/// Tells `cpu` to look at its run queue if it idles there.
fn kick(cpu: usize, idle: bool) {
    if idle && cpu != percpu::cpu_index() {
        arch_smp::send_ipi(cpu, apic::RESCHEDULE_VECTOR);
    }
}

/// How much less a woken thread must have run than the current one to
/// preempt it (Linux's `sysctl_sched_wakeup_granularity`, 1 ms): two
/// threads waking each other take turns no faster than this.
pub const WAKEUP_GRANULARITY_NS: u64 = 1_000_000;

/// The wake-up preemption rule (in the spirit of CFS's
/// `check_preempt_wakeup`, with run time in place of vruntime): a woken
/// thread preempts a busy CPU's current thread if it has run at least
/// [`WAKEUP_GRANULARITY_NS`] less, counting the current thread's running
/// slice. A thread that mostly sleeps (a lock waiter, a latency probe)
/// preempts a CPU hog at once; two hogs do not thrash. Run queue lock
/// held.
fn wake_preempts(r: &RunQueue, inner: &RqInner, woken: &Thread, now: u64) -> bool {
    let Some(cur) = inner.current.as_ref() else {
        return false;
    };
    if is_idle(inner) {
        return false;
    }
    let slice = now.saturating_sub(r.slice_start_ns.load(Ordering::Relaxed));
    let cur_rt = cur.runtime_ns.load(Ordering::Relaxed) + slice;
    woken.runtime_ns.load(Ordering::Relaxed) + WAKEUP_GRANULARITY_NS < cur_rt
}

/// An idle CPU other than `not`, if one is seen idle with nothing queued
/// (a lock-free snapshot: a hint for placement), this CPU first.
fn idle_cpu(not: usize) -> Option<usize> {
    let n = crate::smp::online_cpus();
    let me = percpu::cpu_index();
    (0..n).map(|i| (me + i) % n).find(|&c| {
        c != not
            && rq(c).active.load(Ordering::Acquire)
            && rq(c).idle_now.load(Ordering::Relaxed)
            && rq(c).nr_queued.load(Ordering::Relaxed) == 0
    })
}

/// What `wake` does once the run queue lock is dropped.
enum AfterWake {
    /// Nothing (not sleeping, already queued, or still current).
    Nothing,
    /// Queued at the tail: IPI the CPU if it idles.
    Kick(bool),
    /// Queued at the head of a busy CPU: IPI it to switch now.
    Preempt,
    /// Moved to this idle CPU: queue it there.
    Move(usize),
}

/// Makes a sleeping `t` runnable; returns whether it was sleeping. Callable
/// from any CPU and from interrupt handlers.
///
/// Placement (Linux's `select_idle_sibling`, much reduced): a thread that
/// is not pinned, whose CPU is busy, goes to an idle CPU if one is seen.
/// Otherwise: if its CPU idles, an IPI wakes it; if it is busy and `t`
/// should run before its current thread ([`wake_preempts`]), `t` goes to
/// the head of the queue (behind threads queued there the same way) and a
/// reschedule IPI (to itself, if this is the CPU; one per batch of such
/// wake-ups) makes the switch on that interrupt's return path, not at the
/// next tick; where interrupts or preemption are off, it waits for them to
/// come back on ([`preempt_enable`]).
pub fn wake(t: &ThreadRef) -> bool {
    let _g = percpu::CpuGuard::new();
    let now = time::now_ns();
    loop {
        let cpu = t.cpu();
        let r = rq(cpu);
        let (woke, then) = r.with(|inner| {
            if t.cpu() != cpu {
                // Moved between our read and the lock: look again.
                return (None, AfterWake::Nothing);
            }
            if t.state.load(Ordering::Relaxed) != SLEEPING {
                return (Some(false), AfterWake::Nothing);
            }
            t.state.store(RUNNABLE, Ordering::Release);
            // SAFETY: run queue lock held.
            let queued = unsafe { &mut *t.on_rq.get() };
            let is_current = inner.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, t));
            if *queued || is_current {
                return (Some(true), AfterWake::Nothing);
            }
            // Neither current nor queued, under this lock: it is fully
            // switched out (the lock is held across a switch until the
            // next thread runs), so it may move.
            if !t.pinned
                && !is_idle(inner)
                && let Some(c) = idle_cpu(cpu)
            {
                t.set_cpu(c);
                return (Some(true), AfterWake::Move(c));
            }
            *queued = true;
            let preempt = wake_preempts(r, inner, t, now);
            if preempt {
                inner.queue.insert(inner.preempting, t.clone());
                inner.preempting += 1;
            } else {
                inner.queue.push_back(t.clone());
            }
            r.set_queued(inner.queue.len());
            let then = if preempt {
                AfterWake::Preempt
            } else {
                AfterWake::Kick(is_idle(inner))
            };
            (Some(true), then)
        });
        let Some(woke) = woke else { continue };
        match then {
            AfterWake::Nothing => {}
            AfterWake::Kick(idle) => kick(cpu, idle),
            AfterWake::Preempt => {
                r.wake_preemptions.fetch_add(1, Ordering::Relaxed);
                // AcqRel pairs with the swap in `reschedule_ipi`: if that
                // swap already cleared the flag, ours sends a new IPI; if
                // ours finds it set, the handler's swap comes later and
                // then sees our queueing (done under the run queue lock
                // before this release).
                if !r.resched_ipi_pending.swap(true, Ordering::AcqRel) {
                    arch_smp::send_ipi(cpu, apic::RESCHEDULE_VECTOR);
                }
            }
            AfterWake::Move(c) => {
                let to = rq(c);
                let idle = to.with(|inner| {
                    // SAFETY: `t` belongs to `c`'s queue now; lock held.
                    unsafe { *t.on_rq.get() = true };
                    inner.queue.push_back(t.clone());
                    to.set_queued(inner.queue.len());
                    is_idle(inner)
                });
                to.migrations_in.fetch_add(1, Ordering::Relaxed);
                kick(c, idle);
            }
        }
        return woke;
    }
}

/// From the idle loop (interrupts off): pull one queued, unpinned thread
/// from a CPU that is busy with others waiting, onto this idle CPU. Takes
/// both run queue locks in CPU order (the lock-order check allows two run
/// queues only in ascending address order, which is CPU order). Returns
/// whether it pulled one.
fn balance(me: usize) -> bool {
    let n = crate::smp::online_cpus();
    let Some(from) = (1..n).map(|i| (me + i) % n).find(|&c| {
        rq(c).active.load(Ordering::Acquire)
            && !rq(c).idle_now.load(Ordering::Relaxed)
            && rq(c).nr_queued.load(Ordering::Relaxed) > 0
    }) else {
        return false;
    };
    let (a, b) = (rq(me.min(from)), rq(me.max(from)));
    a.lock.lock_raw();
    b.lock.lock_raw();
    // SAFETY: both locks held.
    let (mine, theirs) = unsafe { (&mut *rq(me).inner.get(), &mut *rq(from).inner.get()) };
    let pulled = if !rq(from).idle_now.load(Ordering::Relaxed) && mine.queue.is_empty() {
        // From the tail: the thread that would wait longest there. A
        // queued thread is switched out (or never ran): it may move.
        theirs.queue.iter().rposition(|t| !t.pinned).and_then(|i| {
            if i < theirs.preempting {
                theirs.preempting -= 1;
            }
            theirs.queue.remove(i)
        })
    } else {
        None
    };
    if let Some(t) = &pulled {
        t.set_cpu(me);
        mine.queue.push_back(t.clone());
        rq(me).set_queued(mine.queue.len());
        rq(from).set_queued(theirs.queue.len());
        rq(me).migrations_in.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: taken above, released in reverse order.
    unsafe {
        b.lock.unlock_raw();
        a.lock.unlock_raw();
    }
    pulled.is_some()
}

/// Preempt-disable nesting on this CPU.
pub fn preempt_disable() {
    let g = percpu::CpuGuard::new();
    rq(percpu::this_cpu(&g).index())
        .preempt_count
        .fetch_add(1, Ordering::Relaxed);
}

/// Ends a preempt-disabled region; the outermost one takes a switch that a
/// wake-up asked for meanwhile (`need_resched`), if interrupts are on (a
/// caller with interrupts off may hold a spin lock: the switch then waits
/// for the next interrupt).
pub fn preempt_enable() {
    let g = percpu::CpuGuard::new();
    let cpu = percpu::this_cpu(&g).index();
    let r = rq(cpu);
    let was = r.preempt_count.fetch_sub(1, Ordering::Relaxed);
    drop(g);
    if was == 1
        && r.need_resched.load(Ordering::Relaxed)
        && x86_64::instructions::interrupts::are_enabled()
    {
        r.need_resched.store(false, Ordering::Relaxed);
        preempt_check(cpu);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The thread chose to (yield, sleep, exit): a SLEEPING/DEAD thread
    /// leaves the queue.
    Voluntary,
    /// The tick or an IPI took the CPU: the thread goes back on the queue
    /// whatever its state.
    Preempt,
}

/// Gives up the CPU voluntarily; a SLEEPING caller stays off the queue
/// until woken.
pub fn schedule() {
    schedule_inner(Why::Voluntary)
}

/// Lets other runnable threads on this CPU run first.
pub fn yield_now() {
    schedule_inner(Why::Voluntary)
}

fn schedule_inner(why: Why) {
    let g = percpu::CpuGuard::new();
    let cpu = percpu::this_cpu(&g).index();
    let r = rq(cpu);
    // The lock's Acquire pairs with the Release of the previous holder's
    // unlock, which may be another thread resuming on this CPU after a
    // switch (`finish_switch`).
    r.lock.lock_raw();
    // SAFETY: lock held; released after the switch by whichever thread runs
    // next on this CPU (`finish_switch`), or below if we do not switch.
    let inner = unsafe { &mut *r.inner.get() };
    let prev = inner.current.clone().expect("no current thread");
    let prev_is_idle = is_idle(inner);
    let state = prev.state.load(Ordering::Relaxed);
    if !prev_is_idle {
        // SAFETY: lock held.
        let queued = unsafe { &mut *prev.on_rq.get() };
        let requeue = match (why, state) {
            (_, DEAD) => false,
            (Why::Preempt, _) => true,
            (Why::Voluntary, SLEEPING) => false,
            (Why::Voluntary, _) => true,
        };
        if requeue && !*queued {
            *queued = true;
            inner.queue.push_back(prev.clone());
        }
        if state == RUNNING {
            prev.state.store(RUNNABLE, Ordering::Relaxed);
        }
    }
    let next = match inner.queue.pop_front() {
        Some(t) => {
            inner.preempting = inner.preempting.saturating_sub(1);
            // SAFETY: lock held.
            unsafe { *t.on_rq.get() = false };
            t
        }
        None => inner.idle.clone().unwrap_or_else(|| prev.clone()),
    };
    r.set_queued(inner.queue.len());
    if Arc::ptr_eq(&next, &prev) {
        if state != SLEEPING && state != DEAD {
            prev.state.store(RUNNING, Ordering::Relaxed);
        }
        // SAFETY: we took the lock above and did not switch.
        unsafe { r.lock.unlock_raw() };
        drop(g);
        return;
    }
    // A woken (RUNNABLE) thread becomes RUNNING; a thread preempted while
    // SLEEPING keeps that state so its own schedule() still sees it.
    let _ = next
        .state
        .compare_exchange(RUNNABLE, RUNNING, Ordering::Relaxed, Ordering::Relaxed);
    next.switches.fetch_add(1, Ordering::Relaxed);
    if state == DEAD {
        inner.dead = Some(prev.clone());
    }
    inner.current = Some(next.clone());
    r.idle_now.store(
        inner.idle.as_ref().is_some_and(|i| Arc::ptr_eq(i, &next)),
        Ordering::Relaxed,
    );
    percpu::this_cpu(&g)
        .current_thread
        .store(Arc::as_ptr(&next) as *mut (), Ordering::Relaxed);
    r.switches.fetch_add(1, Ordering::Relaxed);
    let now = time::now_ns();
    r.last_switch_ns.store(now, Ordering::Relaxed);
    // The slice `prev` ran goes to its run time (lock held: wakers read
    // both under it).
    // Loads and stores, not read-modify-writes (a locked instruction each,
    // on the path `context_switch` times): both words are written only
    // here, under this run queue's lock, and `prev` runs nowhere else.
    let slice = now.saturating_sub(r.slice_start_ns.load(Ordering::Relaxed));
    r.slice_start_ns.store(now, Ordering::Relaxed);
    prev.runtime_ns.store(
        prev.runtime_ns.load(Ordering::Relaxed) + slice,
        Ordering::Relaxed,
    );
    // SAFETY: interrupts are off; `prev` is the current thread, whose space
    // CR3 holds (`space` module invariant), and neither thread writes its
    // `space` now (prev is us, here; next is switched out). `next` keeps
    // its space alive while it runs.
    unsafe {
        space::switch_mm(
            cpu,
            (*prev.space.get()).as_deref(),
            (*next.space.get()).as_deref(),
        )
    };
    let prev_rsp = prev.rsp.get();
    // SAFETY: lock held, so nobody else reads next.rsp.
    let next_rsp = unsafe { *next.rsp.get() };
    drop(prev);
    drop(next);
    // SAFETY: interrupts are off (g); next_rsp was saved by switch_to (on
    // whichever CPU it last ran: that save happened-before through that
    // CPU's run queue lock and the lock of whoever moved it) or built by
    // initial_frame, and `next` runs on no other CPU (it was queued here,
    // and a thread moves only while neither running nor queued elsewhere,
    // under its run queue's lock). `prev` stays alive: the thread list, a
    // waiter entry, a timer or `inner.dead` holds a reference, and the
    // idle/main threads are held by the run queue.
    unsafe { switch::switch_to(prev_rsp, next_rsp) };
    // We run again, maybe on another CPU (we may have been moved while
    // switched out): the lock to release is the one of the CPU that
    // switched to us, this one.
    finish_switch(percpu::cpu_index());
    drop(g);
}

/// First thing after a switch, on the thread switched to: release the run
/// queue lock taken by the thread we switched from, and reap a dead one.
fn finish_switch(cpu: usize) {
    let r = rq(cpu);
    // SAFETY: the lock is held (taken by the previous thread in
    // schedule_inner before it switched to us).
    let dead = unsafe { (*r.inner.get()).dead.take() };
    // SAFETY: that thread handed the lock over to us with the switch, and
    // nothing here touches the run queue after this line. The Release pairs
    // with the Acquire of the next holder.
    unsafe { r.lock.unlock_raw() };
    if let Some(d) = dead {
        reap(d);
    }
}

fn reap(t: ThreadRef) {
    // SAFETY: `t` is dead and switched out; only the reaper touches its
    // stack now.
    if let Some(s) = unsafe { (*t.stack.get()).take() } {
        stack::free(s);
    }
    let mut list = THREADS.lock();
    if let Some(i) = list.iter().position(|x| Arc::ptr_eq(x, &t)) {
        list.swap_remove(i);
        NR_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Rust entry of every new thread (called by `pcs_thread_start`).
extern "C" fn thread_entry() -> ! {
    finish_switch(percpu::cpu_index());
    x86_64::instructions::interrupts::enable();
    let me = current();
    // SAFETY: only the thread itself takes its entry, once, at start.
    let f = unsafe { (*me.entry.get()).take() }.expect("thread started twice");
    drop(me);
    f();
    exit()
}

/// Ends the calling thread and wakes its joiners. It leaves its address
/// space first, while it can still take locks and sleep: that may drop the
/// last reference and tear the space down.
pub fn exit() -> ! {
    drop(set_space(None));
    let me = current();
    // Release pairs with the Acquire in `join`.
    me.exited.store(true, Ordering::Release);
    me.join_wq.wake_up_all();
    let g = percpu::CpuGuard::new();
    me.state.store(DEAD, Ordering::Release);
    drop(me);
    schedule();
    drop(g);
    unreachable!("a dead thread was scheduled")
}

/// Runs `f` (a wait for work) with the calling thread marked as an idle
/// worker: the hung-task watchdog does not report its sleeps (Linux
/// `TASK_IDLE`). For worker threads' waits on their queues only.
pub fn idle_wait<R>(f: impl FnOnce() -> R) -> R {
    let me = current();
    me.idle_wait.store(true, Ordering::Relaxed);
    let r = f();
    me.idle_wait.store(false, Ordering::Relaxed);
    r
}

/// Asks `t` to give up its killable waits (Linux: a fatal signal) and
/// wakes it, so a killable wait in progress sees the request.
pub fn cancel(t: &ThreadRef) {
    // SeqCst, as every canceller here: pairs with the sleeper's load in
    // `KernelPlatform::cancel_pending` after its prepare-to-sleep.
    t.cancel.store(true, Ordering::SeqCst);
    wake(t);
}

/// The id the next spawned thread will get: threads with an id at least
/// this are younger than the call (a test case's own threads).
pub fn next_thread_id() -> u64 {
    NEXT_ID.load(Ordering::Relaxed)
}

/// Live threads (not yet exited) with an id of at least `id`.
pub fn live_threads_since(id: u64) -> Vec<ThreadRef> {
    THREADS
        .lock()
        .iter()
        .filter(|t| t.id >= id && !t.exited.load(Ordering::Acquire))
        .cloned()
        .collect()
}

/// Waits for `t` to exit.
pub fn join(t: &Thread) {
    // Acquire pairs with the Release store of `exited` in `exit`: what the
    // thread did is visible after join.
    t.join_wq.wait_event(|| t.exited.load(Ordering::Acquire));
}

/// Called from the timer interrupt on every tick; `rip` was interrupted.
pub fn tick(cpu: usize, rip: u64) {
    let r = rq(cpu);
    if !r.active.load(Ordering::Acquire) {
        return;
    }
    timer::expire(cpu);
    watchdog::tick(cpu, rip);
    preempt_check(cpu);
}

/// The reschedule IPI (a wake-up queued a thread here that should run now,
/// or this idle CPU has work); `rip` was interrupted. The stretch that ends
/// with this switch is checked as a tick would check it: an interrupts-off
/// stretch (a wake walk) that queued threads here is over the moment its
/// interrupts come back on, before the next tick could see it.
pub fn reschedule_ipi(cpu: usize, rip: u64) {
    let r = rq(cpu);
    // AcqRel pairs with the wakers' swap in `wake`: a waker that saw the
    // flag set and sent nothing queued its thread before its swap, so
    // `preempt_check` below sees it.
    r.resched_ipi_pending.swap(false, Ordering::AcqRel);
    if r.active.load(Ordering::Acquire) {
        watchdog::check_stall(cpu, rip, time::now_ns());
    }
    preempt_check(cpu);
}

/// From an interrupt handler (or `preempt_enable`): switch if allowed and
/// someone waits; with preemption off, remember to switch when it comes
/// back on.
pub fn preempt_check(cpu: usize) {
    let r = rq(cpu);
    if !r.active.load(Ordering::Acquire) || r.nr_queued.load(Ordering::Relaxed) == 0 {
        return;
    }
    if r.preempt_count.load(Ordering::Relaxed) == 0 {
        schedule_inner(Why::Preempt);
    } else {
        r.need_resched.store(true, Ordering::Relaxed);
    }
}

/// The idle loop: run queued threads, else halt until an interrupt. The
/// queue check and `sti; hlt` happen with interrupts off, so a wake-up IPI
/// arriving between them is taken right at the `hlt`.
pub fn idle_loop() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        let cpu = percpu::cpu_index();
        if !rq(cpu).active.load(Ordering::Acquire) {
            // An AP whose scheduler is not running yet (it is entered from
            // the AP's boot context, which becomes its idle thread).
            x86_64::instructions::interrupts::enable_and_hlt();
            continue;
        }
        if rq(cpu).nr_queued.load(Ordering::Relaxed) > 0 || balance(cpu) {
            x86_64::instructions::interrupts::enable();
            schedule();
        } else {
            rq(cpu)
                .last_switch_ns
                .store(time::now_ns(), Ordering::Relaxed);
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}
