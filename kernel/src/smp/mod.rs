//! Running code on other CPUs: function-call IPIs.
//!
//! `call_on_cpu(k, f)` runs `f(k)` on CPU `k` and waits for it to finish;
//! `run_on_all_cpus(f)` runs `f(i)` on every online CPU at once (the caller's
//! CPU included) and waits for all. Requests live on the caller's stack,
//! which is sound because the caller does not return before the target has
//! signalled `done` and never touches the request afterwards.
//!
//! Protocol for one request (`PerCpu::call` of the target is the mailbox):
//! 1. caller: CAS mailbox null -> &req (AcqRel; the Release half publishes
//!    the request's contents to the target's Acquire swap in step 3);
//! 2. caller: send the CALL IPI;
//! 3. target (in the IPI handler, or polling while it waits on a call of its
//!    own): swap mailbox -> null (Acquire), run `f`, store `done` (Release);
//! 4. caller: wait for `done` (Acquire, pairs with step 3's Release, so the
//!    caller sees everything `f` wrote).
//!
//! A caller that waits keeps draining its own mailbox, so two CPUs calling
//! each other at the same time cannot deadlock, whatever their interrupt
//! state.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{
    arch::{percpu, smp as arch_smp, time},
    config::MAX_CPUS,
};

struct CallRequest<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    done: AtomicBool,
}

/// CPUs running now (they come up at boot and never go away).
pub fn online_cpus() -> usize {
    arch_smp::online()
}

/// Enabled CPUs the firmware lists (some may have failed to start).
pub fn present_cpus() -> usize {
    arch_smp::present()
}

/// Per CPU: running a function call's body in the call IPI's handler.
static IN_CALL: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Whether `cpu` is running the body of a function call in its IPI handler
/// (interrupts off). The hard-lockup watchdog leaves such a CPU alone: an
/// all-CPU call runs its CPUs in lockstep, so a vCPU the host does not run
/// for seconds holds every other one in the call with interrupts off
/// (Linux's `stop_machine` touches the NMI watchdog in its loop for the
/// same reason). A call that never ends still ends the run: the caller
/// never returns, and the host diagnoses a silent kernel. Relaxed: a
/// watchdog that sees the flag late only reports or skips one check.
pub fn in_call(cpu: usize) -> bool {
    IN_CALL[cpu].load(Ordering::Relaxed)
}

/// Runs a request waiting in this CPU's mailbox, if any.
pub fn handle_call_ipi() {
    let me = percpu::cpu_index();
    let p = percpu::cpu(me)
        .call
        .swap(core::ptr::null_mut(), Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: a non-null mailbox holds a `CallRequest` published by a caller
    // that waits (without returning) until we set `done` below.
    let req = unsafe { &*(p as *const CallRequest) };
    // Interrupts are off for the call: see `in_call`.
    IN_CALL[me].store(true, Ordering::Relaxed);
    (req.f)(me);
    IN_CALL[me].store(false, Ordering::Relaxed);
    // Release pairs with the caller's Acquire wait; after this store the
    // request may be gone, so it is the last access.
    req.done.store(true, Ordering::Release);
}

#[derive(Debug, PartialEq, Eq)]
pub struct CallTimeout {
    pub cpu: usize,
}

fn post(cpu: usize, req: &CallRequest, deadline: u64) -> Result<(), CallTimeout> {
    let slot = &percpu::cpu(cpu).call;
    let p = req as *const CallRequest as *mut ();
    while slot
        .compare_exchange(
            core::ptr::null_mut(),
            p,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        handle_call_ipi();
        if time::now_ns() > deadline {
            return Err(CallTimeout { cpu });
        }
        core::hint::spin_loop();
    }
    arch_smp::send_call_ipi(cpu);
    Ok(())
}

fn wait(cpu: usize, req: &CallRequest, deadline: u64) -> Result<(), CallTimeout> {
    while !req.done.load(Ordering::Acquire) {
        handle_call_ipi();
        if time::now_ns() > deadline {
            // The target may still take the request later: retract it if it
            // is still in the mailbox; otherwise wait for it for good, since
            // the target holds a reference into our stack.
            let slot = &percpu::cpu(cpu).call;
            let p = req as *const CallRequest as *mut ();
            if slot
                .compare_exchange(
                    p,
                    core::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Err(CallTimeout { cpu });
            }
            while !req.done.load(Ordering::Acquire) {
                handle_call_ipi();
                core::hint::spin_loop();
            }
            return Err(CallTimeout { cpu });
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Runs `f(cpu)` on CPU `cpu` and waits, giving up after `timeout_ns`.
pub fn call_on_cpu_timeout(
    cpu: usize,
    f: &(dyn Fn(usize) + Sync),
    timeout_ns: u64,
) -> Result<(), CallTimeout> {
    assert!(cpu < online_cpus(), "call_on_cpu: CPU {cpu} is not online");
    if cpu == percpu::cpu_index() {
        f(cpu);
        return Ok(());
    }
    let deadline = time::now_ns() + timeout_ns;
    let req = CallRequest {
        f,
        done: AtomicBool::new(false),
    };
    post(cpu, &req, deadline)?;
    wait(cpu, &req, deadline)
}

/// Runs `f(cpu)` on CPU `cpu` and waits for it.
pub fn call_on_cpu(cpu: usize, f: &(dyn Fn(usize) + Sync)) {
    call_on_cpu_timeout(cpu, f, u64::MAX / 2).expect("call_on_cpu without deadline timed out");
}

/// Runs `f(i)` on every online CPU `i` in parallel (including the caller's)
/// and returns when all have finished.
pub fn run_on_all_cpus(f: &(dyn Fn(usize) + Sync)) {
    run_on_cpus(u64::MAX, f)
}

/// Runs `f(i)` in parallel on every online CPU `i` whose bit is set in
/// `set` (bit `i` = CPU `i`), the caller's CPU included if selected, and
/// returns when all have finished.
pub fn run_on_cpus(set: u64, f: &(dyn Fn(usize) + Sync)) {
    const _: () = assert!(MAX_CPUS <= 64, "CPU sets are u64 bit masks");
    let n = online_cpus();
    let me = percpu::cpu_index();
    let reqs: [CallRequest; MAX_CPUS] = core::array::from_fn(|_| CallRequest {
        f,
        done: AtomicBool::new(false),
    });
    let forever = u64::MAX / 2;
    let selected = |cpu: usize| set & (1 << cpu) != 0;
    for (cpu, req) in reqs.iter().enumerate().take(n) {
        if cpu != me && selected(cpu) {
            post(cpu, req, forever).expect("no deadline");
        }
    }
    if selected(me) {
        // Like the others' bodies in their IPI handlers (`in_call`).
        IN_CALL[me].store(true, Ordering::Relaxed);
        f(me);
        IN_CALL[me].store(false, Ordering::Relaxed);
    }
    for (cpu, req) in reqs.iter().enumerate().take(n) {
        if cpu != me && selected(cpu) {
            wait(cpu, req, forever).expect("no deadline");
        }
    }
}
