//! The `smp` suite: every CPU is up, takes IPIs and timer ticks, and agrees
//! on the time.

pub mod bench;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
};
use kernel::smp::{call_on_cpu_timeout, online_cpus, present_cpus, run_on_all_cpus};
use kernel::{
    arch::{apic, percpu, smp as arch_smp, time},
    config::MAX_CPUS,
    println,
};

const SECOND: u64 = 1_000_000_000;

/// Every CPU the firmware lists is online.
fn all_cpus_online(_: &Ctx) -> TestResult {
    kassert_eq!(online_cpus(), present_cpus());
    Ok(())
}

/// Each CPU increments its own counter once, on itself; its slot's APIC id
/// is its own.
fn per_cpu_counters(_: &Ctx) -> TestResult {
    let n = online_cpus();
    let before: [u64; MAX_CPUS] =
        core::array::from_fn(|i| percpu::cpu(i).test_counter.load(Ordering::Relaxed));
    let wrong_apic = AtomicU64::new(0);
    run_on_all_cpus(&|cpu| {
        let g = percpu::CpuGuard::new();
        let me = percpu::this_cpu(&g);
        me.test_counter.fetch_add(1, Ordering::Relaxed);
        if me.index() != cpu || me.apic_id.load(Ordering::Relaxed) != apic::id() {
            wrong_apic.fetch_add(1, Ordering::Relaxed);
        }
    });
    for (i, &b) in before.iter().enumerate().take(n) {
        kassert_eq!(percpu::cpu(i).test_counter.load(Ordering::Relaxed), b + 1);
    }
    kassert_eq!(wrong_apic.load(Ordering::Relaxed), 0);
    Ok(())
}

/// A call to a set of CPUs runs on exactly that set.
fn call_cpu_set(_: &Ctx) -> TestResult {
    let n = online_cpus();
    let set: u64 = (0..n).filter(|i| i % 2 == 1).fold(0, |m, i| m | 1 << i);
    let ran = AtomicU64::new(0);
    kernel::smp::run_on_cpus(set, &|cpu| {
        ran.fetch_or(1 << cpu, Ordering::Relaxed);
    });
    kassert_eq!(ran.load(Ordering::Relaxed), set);
    Ok(())
}

/// A function-call IPI reaches each CPU, runs there, and returns.
fn call_each_cpu(_: &Ctx) -> TestResult {
    for target in 0..online_cpus() {
        let ran_on = AtomicU64::new(u64::MAX);
        let r = call_on_cpu_timeout(
            target,
            &|cpu| {
                ran_on.store(
                    percpu::cpu_index() as u64 * 1000 + cpu as u64,
                    Ordering::Relaxed,
                )
            },
            5 * SECOND,
        );
        kassert!(r.is_ok(), "call to cpu{target} timed out");
        kassert_eq!(ran_on.load(Ordering::Relaxed), target as u64 * 1001);
    }
    Ok(())
}

/// Bounces `rounds` IPIs between CPU `a` (the caller) and CPU `b`, each
/// round waiting for the answer. Returns the round-trip TSC cycles, or the
/// round at which an IPI was lost (no answer within a second).
pub fn ping_pong(b: usize, rounds: usize, mut each: impl FnMut(u64)) -> Result<(), usize> {
    let a = percpu::cpu_index();
    let (ca, cb) = (percpu::cpu(a), percpu::cpu(b));
    let (base_a, base_b) = (
        ca.pings.load(Ordering::Acquire),
        cb.pings.load(Ordering::Acquire),
    );
    cb.pong_to.store(a, Ordering::Relaxed);
    let mut result = Ok(());
    for r in 1..=rounds as u64 {
        let t0 = time::rdtsc();
        arch_smp::send_ipi(b, apic::PING_VECTOR);
        let deadline = time::now_ns() + SECOND;
        // Acquire pairs with the Release increment in the ping handler.
        while ca.pings.load(Ordering::Acquire) < base_a + r {
            if time::now_ns() > deadline {
                result = Err(r as usize);
                break;
            }
            core::hint::spin_loop();
        }
        if result.is_err() {
            break;
        }
        each(time::rdtsc() - t0);
    }
    cb.pong_to.store(usize::MAX, Ordering::Relaxed);
    if result.is_ok() && cb.pings.load(Ordering::Acquire) != base_b + rounds as u64 {
        return Err(rounds);
    }
    result
}

/// Many IPI round trips between CPU 0 and every other CPU; none is lost.
fn ipi_ping_pong(_: &Ctx) -> TestResult {
    if online_cpus() < 2 {
        return Err(TestError::Skip("needs two CPUs"));
    }
    kassert!(
        x86_64::instructions::interrupts::are_enabled(),
        "interrupts off on the test CPU"
    );
    for b in 1..online_cpus() {
        let rounds = if b == 1 { 5000 } else { 200 };
        let r = ping_pong(b, rounds, |_| {});
        kassert!(
            r.is_ok(),
            "cpu0 <-> cpu{b}: IPI lost in round {}",
            r.unwrap_err()
        );
    }
    Ok(())
}

/// The timer interrupt arrives on every CPU.
fn timer_ticks_everywhere(_: &Ctx) -> TestResult {
    let n = online_cpus();
    let before: [u64; MAX_CPUS] =
        core::array::from_fn(|i| percpu::cpu(i).ticks.load(Ordering::Relaxed));
    time::delay_us(300_000);
    for (i, &b) in before.iter().enumerate().take(n) {
        let got = percpu::cpu(i).ticks.load(Ordering::Relaxed) - b;
        println!("    # cpu{i}: {got} ticks in 300 ms");
        kassert!(got >= 1, "cpu{i} took no timer tick in 300 ms");
    }
    Ok(())
}

/// The clock never goes backwards on a CPU, and across CPUs it respects
/// causality: a time read after seeing another CPU's earlier reading is not
/// smaller. That bounds the clocks' disagreement by the message round trip,
/// which is reported.
fn clock_monotonic_and_agrees(_: &Ctx) -> TestResult {
    let backwards = AtomicU64::new(0);
    run_on_all_cpus(&|_| {
        let mut last = time::now_ns();
        for _ in 0..20_000 {
            let t = time::now_ns();
            if t < last {
                backwards.fetch_add(1, Ordering::Relaxed);
            }
            last = t;
        }
    });
    kassert_eq!(backwards.load(Ordering::Relaxed), 0);
    let mut max_rtt = 0;
    for b in 1..online_cpus() {
        for _ in 0..50 {
            let sent = AtomicU64::new(0);
            let seen = AtomicU64::new(0);
            let t0 = time::now_ns();
            sent.store(t0, Ordering::Relaxed);
            // The call's Release/Acquire hand-over orders `sent` before the
            // remote read, and the remote read before our `t3`.
            let r = call_on_cpu_timeout(
                b,
                &|_| seen.store(time::now_ns(), Ordering::Relaxed),
                5 * SECOND,
            );
            kassert!(r.is_ok(), "call to cpu{b} timed out");
            let t3 = time::now_ns();
            let t1 = seen.load(Ordering::Relaxed);
            kassert!(
                t1 >= t0,
                "cpu{b} read {t1} after cpu0 read {t0}: clocks disagree"
            );
            kassert!(
                t3 >= t1,
                "cpu0 read {t3} after cpu{b} read {t1}: clocks disagree"
            );
            max_rtt = max_rtt.max(t3 - t0);
        }
    }
    println!("    # clocks agree within the largest round trip: {max_rtt} ns");
    Ok(())
}

/// The kernel's lock (`kernel::sync::IrqMutex`): a failed `try_lock`
/// leaves the holder's lock held (it once dropped a guard it built for the
/// failed try, releasing the holder's lock), and every CPU incrementing a
/// plain counter under it loses no increment.
fn irq_mutex_excludes(_: &Ctx) -> TestResult {
    use kernel::sync::IrqMutex;
    static M: IrqMutex<u64> = IrqMutex::new(0);
    {
        let held = M.lock();
        kassert!(M.try_lock().is_none());
        kassert!(
            M.is_locked(),
            "a failed try_lock released the holder's lock"
        );
        drop(held);
    }
    kassert!(!M.is_locked());
    kassert!(M.try_lock().is_some());
    const PER_CPU: u64 = 20_000;
    let before = *M.lock();
    run_on_all_cpus(&|_| {
        for _ in 0..PER_CPU {
            // A read-modify-write through the guard: not atomic, so a
            // second holder would lose increments.
            let mut g = M.lock();
            let v = *g;
            *g = core::hint::black_box(v) + 1;
        }
    });
    kassert_eq!(*M.lock() - before, PER_CPU * online_cpus() as u64);
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "smp",
    cases: &[
        Case {
            name: "irq_mutex_excludes",
            run: irq_mutex_excludes,
        },
        Case {
            name: "all_cpus_online",
            run: all_cpus_online,
        },
        Case {
            name: "per_cpu_counters",
            run: per_cpu_counters,
        },
        Case {
            name: "call_each_cpu",
            run: call_each_cpu,
        },
        Case {
            name: "call_cpu_set",
            run: call_cpu_set,
        },
        Case {
            name: "ipi_ping_pong",
            run: ipi_ping_pong,
        },
        Case {
            name: "timer_ticks_everywhere",
            run: timer_ticks_everywhere,
        },
        Case {
            name: "clock_monotonic_and_agrees",
            run: clock_monotonic_and_agrees,
        },
    ],
    ..Suite::DEFAULTS
};
