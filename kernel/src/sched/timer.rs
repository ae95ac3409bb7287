//! Timed sleeps, driven by the local APIC tick: each CPU keeps its sleepers'
//! deadlines on its run queue; the tick wakes the expired ones. Resolution
//! is one tick (`hz=`, default 100 Hz, so 10 ms).

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pagesync::{
    platform::Platform,
    waitqueue::{WaitEntry, WaitQueueHead, autoremove_wake_function},
};

use super::{KernelPlatform, RUNNING, SLEEPING, ThreadRef, current, rq, schedule};
use crate::arch::{percpu, time};

/// Puts the calling thread's deadline on its CPU's timer list; returns
/// that CPU, which `del_timer` must be given (the thread may move to
/// another CPU while it sleeps; the timer stays where it was put).
fn add_timer(deadline: u64) -> usize {
    let me = current();
    let _g = percpu::CpuGuard::new();
    // The running thread does not move: its CPU is this one.
    let cpu = me.cpu();
    rq(cpu).with(|inner| inner.timers.push((deadline, me)));
    cpu
}

fn del_timer(cpu: usize) {
    let me = current();
    let _g = percpu::CpuGuard::new();
    rq(cpu).with(|inner| inner.timers.retain(|(_, t)| !Arc::ptr_eq(t, &me)));
}

/// Sleeps at least `ns` nanoseconds (rounded up to the next tick). Not a
/// watched sleep: the hung-task watchdog ignores it.
pub fn sleep_ns(ns: u64) {
    let deadline = time::now_ns() + ns;
    let timer_cpu = add_timer(deadline);
    let me = current();
    loop {
        // SeqCst: as in `KernelPlatform::prepare_to_sleep`; the deadline
        // check below cannot move before it.
        me.state.store(SLEEPING, Ordering::SeqCst);
        if time::now_ns() >= deadline {
            break;
        }
        schedule();
    }
    me.state.store(RUNNING, Ordering::Relaxed);
    drop(me);
    del_timer(timer_cpu);
}

/// Waits on `wq` until `cond()` or `timeout_ns` passes; returns whether the
/// condition became true.
pub fn wait_event_timeout(
    wq: &WaitQueueHead<KernelPlatform>,
    mut cond: impl FnMut() -> bool,
    timeout_ns: u64,
) -> bool {
    if cond() {
        return true;
    }
    let deadline = time::now_ns() + timeout_ns;
    let timer_cpu = add_timer(deadline);
    let entry = core::pin::pin!(WaitEntry::<KernelPlatform>::new(
        autoremove_wake_function,
        ()
    ));
    let entry = entry.as_ref();
    let ok = loop {
        // SAFETY: finish_wait below runs before `entry` goes out of scope
        // (no early return in between).
        unsafe { wq.prepare_to_wait(entry) };
        if cond() {
            break true;
        }
        if time::now_ns() >= deadline {
            break false;
        }
        KernelPlatform::sleep();
    };
    wq.finish_wait(entry);
    del_timer(timer_cpu);
    ok
}

/// Tick work on `cpu`: wake sleepers whose deadline passed (at most a batch
/// per tick; the rest go next tick).
pub fn expire(cpu: usize) {
    let now = time::now_ns();
    let mut due: [Option<ThreadRef>; 16] = Default::default();
    rq(cpu).with(|inner| {
        let (mut n, mut i) = (0, 0);
        while i < inner.timers.len() && n < due.len() {
            if inner.timers[i].0 <= now {
                due[n] = Some(inner.timers.swap_remove(i).1);
                n += 1;
            } else {
                i += 1;
            }
        }
    });
    for t in due.iter().flatten() {
        super::wake(t);
    }
}
