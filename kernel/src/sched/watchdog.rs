//! Watchdogs, scaled down from Linux's for a test kernel:
//!
//! - **Hung task**: a thread in a watched sleep (any wait-queue or page
//!   wait; not a timed sleep) for longer than `HUNG_LIMIT_NS` is reported
//!   once per sleep with its name, id and what it waits on. A lost wake-up
//!   shows up here. CPU 0's tick scans every thread twice a second.
//! - **Soft lockup**: a CPU that has not switched threads for
//!   `LOCKUP_LIMIT_NS` while its thread holds off preemption, or while other
//!   threads wait for it, is reported with the CPU, the running thread and
//!   the interrupted RIP (its own tick samples it; a stretch with
//!   interrupts off is therefore seen at the first tick after it, as
//!   Linux's watchdog sees it, or at the reschedule IPI that ends it when a
//!   wake-up made during the stretch preempts: that IPI is taken the
//!   moment interrupts come back on, before the tick, and Linux's check
//!   would still see the stretch, because its touch comes from the
//!   watchdog's own thread, not from any switch).
//! - **Hard lockup**: a CPU that takes no timer tick for `LOCKUP_LIMIT_NS`
//!   (interrupts disabled) is found by its neighbour CPU (i+1 checks i),
//!   which sends it an NMI; the NMI handler reports the CPU and its RIP.
//!
//! - **Starved, not locked up**: under TCG a vCPU is a host thread, and a
//!   loaded host may not run it for seconds. The hard-lockup watchdog does
//!   not report that as a lockup: a probe that finds the victim's interrupts
//!   *on* (it took no tick because it did not run, not because it masked
//!   them) is reported as a `watchdog: ... starved` note at info level and
//!   counted in [`STARVED`]. A CPU running a function call's body in its
//!   IPI handler (`crate::smp::in_call`) is not probed at all: an all-CPU
//!   call holds every CPU with interrupts off until the slowest vCPU is
//!   done.
//!
//! Both lockup reports end with the interrupted code's frame-pointer
//! backtrace (`contract::marker::BACKTRACE` and its frame lines), which the
//! host symbolizes, so a report names the function that kept the CPU
//! (`cargo xtask run -- filter=pagelock.walk_lockup bits=0 ...` shows an
//! unlock's wake walk). `LOCKUP_LIMIT_NS` comes from `lockup_ms=`.
//!
//! Each report increments a counter; stress tests fail when one moves.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use contract::marker::{BACKTRACE, BacktraceFrame};

use super::{THREADS, Thread, rq};
use crate::{
    arch::{frames, percpu, smp as arch_smp, time},
    config::MAX_CPUS,
};

pub static HUNG_LIMIT_NS: AtomicU64 = AtomicU64::new(10_000_000_000);
pub static LOCKUP_LIMIT_NS: AtomicU64 = AtomicU64::new(5_000_000_000);

pub static HUNG_REPORTS: AtomicU64 = AtomicU64::new(0);
pub static SOFT_LOCKUPS: AtomicU64 = AtomicU64::new(0);
pub static HARD_LOCKUPS: AtomicU64 = AtomicU64::new(0);
/// Stretches that looked like a lockup but were a vCPU the host did not
/// run (module docs).
pub static STARVED: AtomicU64 = AtomicU64::new(0);

static LAST_SCAN: AtomicU64 = AtomicU64::new(0);
/// Per CPU: tick count last seen by the neighbour, and when it changed.
static SEEN_TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SEEN_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Set by the neighbour before it sends the NMI (Release), checked by the
/// NMI handler (Acquire) and cleared by it.
static NMI_REQUESTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Soft lockup already reported for the current stretch.
static SOFT_REPORTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: the longest stretch without a switch while threads waited (or
/// preemption was off) seen by a tick since [`reset_longest_stall`].
static LONGEST_STALL_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Starts a new measurement of [`longest_stall_ns`].
pub fn reset_longest_stall() {
    for l in &LONGEST_STALL_NS {
        l.store(0, Ordering::Relaxed);
    }
}

/// The longest stretch `cpu` went without switching threads while others
/// waited for it (or with preemption off), as its ticks saw it, since
/// [`reset_longest_stall`]: what the soft-lockup check compares with the
/// threshold.
pub fn longest_stall_ns(cpu: usize) -> u64 {
    LONGEST_STALL_NS[cpu].load(Ordering::Relaxed)
}

/// Sets the lockup threshold (`lockup_ms=`). Call at boot.
pub fn set_lockup_limit_ms(ms: u64) {
    LOCKUP_LIMIT_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
}

/// Prints the interrupted code's backtrace after a lockup report: frame 0
/// is `rip`, the rest its callers (see `arch::frames`), each line
/// through `print`.
fn interrupted_backtrace(rip: u64, print: impl Fn(core::fmt::Arguments)) {
    print(format_args!("{BACKTRACE}\n"));
    print(format_args!(
        "{}\n",
        BacktraceFrame {
            depth: 0,
            addr: rip
        }
    ));
    if let Some(rbp) = frames::interrupted_rbp(rip) {
        // SAFETY: `rbp` is the interrupted code's frame pointer, saved by
        // the interrupt entry on a live stack; the walk is bounded.
        unsafe {
            frames::walk(rbp, |depth, addr| {
                print(format_args!(
                    "{}\n",
                    BacktraceFrame {
                        depth: depth + 1,
                        addr
                    }
                ))
            })
        };
    }
}

/// The name of the thread running on this CPU (interrupt context).
fn running_thread_name<R>(f: impl FnOnce(&str) -> R) -> R {
    let g = percpu::CpuGuard::new();
    let p = percpu::this_cpu(&g).current_thread.load(Ordering::Relaxed) as *const Thread;
    if p.is_null() {
        return f("?");
    }
    // SAFETY: the running thread's Arc is held by its run queue while it
    // runs, and it was interrupted on this CPU, so it is still running.
    f(unsafe { &(*p).name })
}

/// The soft-lockup check of the stretch since `cpu`'s last switch, from
/// its tick or from the reschedule IPI that is about to end the stretch;
/// `rip` is the interrupted instruction.
pub fn check_stall(cpu: usize, rip: u64, now: u64) {
    let limit = LOCKUP_LIMIT_NS.load(Ordering::Relaxed);
    let r = rq(cpu);
    let preempt_off = r.preempt_count.load(Ordering::Relaxed) > 0;
    let waiters = r.nr_queued.load(Ordering::Relaxed) > 0;
    // A stall is a stretch without a switch while something wanted one.
    // With preemption off, from the last switch (when preemption went off
    // is not recorded). With only waiters, from when the first of them
    // queued: a thread that ran alone for seconds, then had a thread
    // queued behind it, has not stalled anybody yet (that was reported as
    // a soft lockup at the reschedule IPI of the very spawn that ended
    // the solo run: `sched.waiter_after_a_long_solo_run`).
    let mut from = r.last_switch_ns.load(Ordering::Relaxed);
    if !preempt_off && waiters {
        from = from.max(r.queued_since_ns.load(Ordering::Relaxed));
    }
    let since = now.saturating_sub(from);
    let stuck = preempt_off || waiters;
    if stuck {
        LONGEST_STALL_NS[cpu].fetch_max(since, Ordering::Relaxed);
    }
    if since > limit && stuck {
        if !SOFT_REPORTED[cpu].swap(true, Ordering::Relaxed) {
            SOFT_LOCKUPS.fetch_add(1, Ordering::Relaxed);
            running_thread_name(|name| {
                log::error!(
                    "watchdog: soft lockup on cpu{cpu}: no switch for {} ms (limit {} ms) while thread '{name}' ran with {} thread(s) waiting and preempt count {}, RIP={rip:#x}",
                    since / 1_000_000,
                    limit / 1_000_000,
                    r.nr_queued.load(Ordering::Relaxed),
                    r.preempt_count.load(Ordering::Relaxed)
                )
            });
            interrupted_backtrace(rip, |a| crate::print!("{a}"));
        }
    } else {
        SOFT_REPORTED[cpu].store(false, Ordering::Relaxed);
    }
}

/// From the tick on `cpu`; `rip` is the interrupted instruction.
pub fn tick(cpu: usize, rip: u64) {
    let now = time::now_ns();
    let limit = LOCKUP_LIMIT_NS.load(Ordering::Relaxed);
    check_stall(cpu, rip, now);

    // Hard lockup: check the previous CPU in the ring.
    let n = crate::smp::online_cpus();
    if n > 1 {
        let victim = (cpu + n - 1) % n;
        let ticks = percpu::cpu(victim).ticks.load(Ordering::Relaxed);
        if ticks != SEEN_TICKS[victim].swap(ticks, Ordering::Relaxed)
            || SEEN_AT[victim].load(Ordering::Relaxed) == 0
            || crate::smp::in_call(victim)
        {
            SEEN_AT[victim].store(now, Ordering::Relaxed);
        } else if now - SEEN_AT[victim].load(Ordering::Relaxed) > limit
            && !NMI_REQUESTED[victim].swap(true, Ordering::AcqRel)
        {
            SEEN_AT[victim].store(now, Ordering::Relaxed);
            arch_smp::send_nmi(victim);
        }
    }

    if cpu == 0 && now - LAST_SCAN.load(Ordering::Relaxed) > 500_000_000 {
        LAST_SCAN.store(now, Ordering::Relaxed);
        scan_hung(now);
    }
}

/// From the NMI handler: whether the NMI was a lockup probe (and reported).
/// `interrupts_on`: the interrupted code had interrupts enabled, so this
/// CPU took no tick because it did not run, not because it masked them.
pub fn nmi(rip: u64, interrupts_on: bool) -> bool {
    let cpu = percpu::cpu_index();
    if !NMI_REQUESTED[cpu].load(Ordering::Acquire) {
        return false;
    }
    if interrupts_on {
        STARVED.fetch_add(1, Ordering::Relaxed);
        running_thread_name(|name| {
            crate::console::emergency_print(format_args!(
                "[INFO  cpu{cpu}] watchdog: cpu{cpu} starved: no timer tick for over {} ms although its interrupts were on (thread '{name}', RIP={rip:#x}): the host did not run this vCPU; not a lockup\n",
                LOCKUP_LIMIT_NS.load(Ordering::Relaxed) / 1_000_000
            ))
        });
        NMI_REQUESTED[cpu].store(false, Ordering::Release);
        return true;
    }
    HARD_LOCKUPS.fetch_add(1, Ordering::Relaxed);
    running_thread_name(|name| {
        crate::console::emergency_print(format_args!(
            "[ERROR cpu{cpu}] watchdog: hard lockup on cpu{cpu}: no timer tick for over {} ms (interrupts off?) in thread '{name}', RIP={rip:#x}\n",
            LOCKUP_LIMIT_NS.load(Ordering::Relaxed) / 1_000_000
        ))
    });
    interrupted_backtrace(rip, crate::console::emergency_print);
    NMI_REQUESTED[cpu].store(false, Ordering::Release);
    true
}

fn scan_hung(now: u64) {
    let limit = HUNG_LIMIT_NS.load(Ordering::Relaxed);
    // The tick may interrupt a holder on this CPU: never wait for the lock.
    let Some(list) = THREADS.try_lock() else {
        return;
    };
    for t in list.iter() {
        let since = t.sleep_since.load(Ordering::Relaxed);
        if since != 0
            && !t.idle_wait.load(Ordering::Relaxed)
            && now.saturating_sub(since) > limit
            && !t.hung_reported.swap(true, Ordering::Relaxed)
        {
            HUNG_REPORTS.fetch_add(1, Ordering::Relaxed);
            log::error!(
                "watchdog: hung task: thread '{}' (tid {}, cpu{}) blocked for {} ms on {}",
                t.name,
                t.id,
                t.cpu(),
                (now - since) / 1_000_000,
                t.wait_desc()
            );
        }
    }
}
