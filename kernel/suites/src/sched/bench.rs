//! Scheduler benchmarks: context-switch cost, and cross-CPU wake-up latency
//! with the target CPU idle (IPI path) and busy (the woken thread waits for
//! the next tick), the two interleaved round by round.

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use contract::bench::Unit;
use pagesync::waitqueue::WaitQueueHead;

use super::join_timeout;
use crate::bench::{self, Bench, Hist, Record, percentile, rounds};
use kernel::sched::{KernelPlatform, spawn, yield_now};
use kernel::{arch::time, params::Params, println, smp::online_cpus};

/// Yields per thread per round of `context_switch`.
pub const YIELDS: u64 = 5_000;
/// Wake-ups per variant per round of `wake_latency`.
pub const WAKEUPS: usize = 60;

fn context_switch(_: &Params) {
    const NAME: &str = "context_switch";
    for round in 0..rounds() {
        let start = Arc::new(AtomicU64::new(0));
        let mk = |start: Arc<AtomicU64>| {
            spawn("yielder", Some(0), move || {
                start
                    .compare_exchange(0, time::rdtsc(), Ordering::AcqRel, Ordering::Relaxed)
                    .ok();
                for _ in 0..YIELDS {
                    yield_now();
                }
            })
            .expect("spawn")
        };
        let a = mk(start.clone());
        let b = mk(start.clone());
        let ok = join_timeout(&a, 60_000) && join_timeout(&b, 60_000);
        let cycles = time::rdtsc() - start.load(Ordering::Relaxed);
        if !ok {
            bench::fail(
                NAME,
                format_args!("round {round}: the yielding threads did not finish in 60 s"),
            );
            return;
        }
        let per = cycles / (2 * YIELDS);
        Record::new(NAME, "cpu0")
            .label("switches", 2 * YIELDS)
            .round(round)
            .metric("per_switch", Unit::Ns, time::cycles_to_ns(per) as f64)
            .emit();
    }
}

/// One round of one variant: [`WAKEUPS`] latencies in ns, or `None` if the
/// woken thread did not finish.
fn wake_latency_round(busy: bool) -> Option<Vec<u64>> {
    struct S {
        wq: WaitQueueHead<KernelPlatform>,
        seq: AtomicU64,
        sent: AtomicU64,
        lat: kernel::sync::IrqMutex<Vec<u64>>,
        stop: AtomicBool,
    }
    let s = Arc::new(S {
        wq: WaitQueueHead::new(),
        seq: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        lat: kernel::sync::IrqMutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let hog = busy.then(|| {
        let s = s.clone();
        spawn("hog", Some(1), move || {
            while !s.stop.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        })
        .expect("spawn")
    });
    let waiter = {
        let s = s.clone();
        spawn("wakee", Some(1), move || {
            for r in 1..=WAKEUPS as u64 {
                s.wq.wait_event(|| s.seq.load(Ordering::Acquire) >= r);
                let d = time::rdtsc() - s.sent.load(Ordering::Acquire);
                s.lat.lock().push(time::cycles_to_ns(d));
            }
        })
        .expect("spawn")
    };
    for r in 1..=WAKEUPS as u64 {
        kernel::sched::timer::sleep_ns(2_000_000);
        s.sent.store(time::rdtsc(), Ordering::Release);
        s.seq.store(r, Ordering::Release);
        s.wq.wake_up_all();
    }
    let ok = join_timeout(&waiter, 60_000);
    s.stop.store(true, Ordering::Release);
    if let Some(h) = hog {
        join_timeout(&h, 10_000);
    }
    let v = s.lat.lock().clone();
    ok.then_some(v)
}

fn wake_latency(_: &Params) {
    const NAME: &str = "wake_latency";
    if online_cpus() < 2 {
        println!("# {NAME} needs two CPUs; skipped");
        return;
    }
    for round in 0..rounds() {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for busy in order {
            let variant = if busy { "busy" } else { "idle" };
            let Some(mut v) = wake_latency_round(busy) else {
                bench::fail(
                    NAME,
                    format_args!(
                        "{variant}, round {round}: the woken thread did not finish in 60 s (lost wake-up?)"
                    ),
                );
                return;
            };
            let mut h = Hist::new();
            for &ns in &v {
                h.record(ns);
            }
            let rec = Record::new(NAME, variant)
                .label("path", "cpu0->cpu1")
                .round(round)
                .metric("p50", Unit::Ns, percentile(&mut v, 50) as f64)
                .metric("p99", Unit::Ns, percentile(&mut v, 99) as f64);
            rec.emit_hist("latency", Unit::Ns, &h);
            rec.emit();
        }
    }
}

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "context_switch",
        run: context_switch,
    },
    Bench {
        name: "wake_latency",
        run: wake_latency,
    },
];
