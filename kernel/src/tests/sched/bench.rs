//! Scheduler benchmarks: context-switch cost and cross-CPU wake-up latency,
//! with the target CPU idle (IPI path) and busy (woken thread waits for the
//! next tick).

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagesync::waitqueue::WaitQueueHead;

use super::join_timeout;
use crate::sched::{KernelPlatform, spawn, yield_now};
use crate::{
    arch::x86_64::time,
    bench::{Bench, percentile},
    params::Params,
    println,
    smp::online_cpus,
};

fn context_switch(_: &Params) {
    const N: u64 = 20_000;
    let start = Arc::new(AtomicU64::new(0));
    let mk = |start: Arc<AtomicU64>| {
        spawn("yielder", Some(0), move || {
            start
                .compare_exchange(0, time::rdtsc(), Ordering::AcqRel, Ordering::Relaxed)
                .ok();
            for _ in 0..N {
                yield_now();
            }
        })
        .expect("spawn")
    };
    let a = mk(start.clone());
    let b = mk(start.clone());
    let ok = join_timeout(&a, 60_000) && join_timeout(&b, 60_000);
    let cycles = time::rdtsc() - start.load(Ordering::Relaxed);
    if ok {
        let per = cycles / (2 * N);
        crate::bench_result!(
            "context_switch cpu0 switches={} cycles_per_switch={per} ns_per_switch={}",
            2 * N,
            time::cycles_to_ns(per)
        );
    }
}

fn wake_latency(busy: bool) {
    if online_cpus() < 2 {
        println!("# wake_latency needs two CPUs");
        return;
    }
    const ROUNDS: usize = 300;
    struct S {
        wq: WaitQueueHead<KernelPlatform>,
        seq: AtomicU64,
        sent: AtomicU64,
        lat: spin::Mutex<Vec<u64>>,
        stop: AtomicBool,
    }
    let s = Arc::new(S {
        wq: WaitQueueHead::new(),
        seq: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        lat: spin::Mutex::new(Vec::new()),
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
            for r in 1..=ROUNDS as u64 {
                s.wq.wait_event(|| s.seq.load(Ordering::Acquire) >= r);
                let d = time::rdtsc() - s.sent.load(Ordering::Acquire);
                s.lat.lock().push(d);
            }
        })
        .expect("spawn")
    };
    for r in 1..=ROUNDS as u64 {
        crate::sched::timer::sleep_ns(2_000_000);
        s.sent.store(time::rdtsc(), Ordering::Release);
        s.seq.store(r, Ordering::Release);
        s.wq.wake_up_all();
    }
    let ok = join_timeout(&waiter, 60_000);
    s.stop.store(true, Ordering::Release);
    if let Some(h) = hog {
        join_timeout(&h, 10_000);
    }
    let mut v = s.lat.lock().clone();
    if ok {
        let (med, p99) = (percentile(&mut v, 50), percentile(&mut v, 99));
        crate::bench_result!(
            "wake_latency cpu0->cpu1 target={} rounds={ROUNDS} median_ns={} p99_ns={} median_cycles={med}",
            if busy { "busy" } else { "idle" },
            time::cycles_to_ns(med),
            time::cycles_to_ns(p99)
        );
    }
}

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "context_switch",
        run: context_switch,
    },
    Bench {
        name: "wake_latency_idle",
        run: |_| wake_latency(false),
    },
    Bench {
        name: "wake_latency_busy",
        run: |_| wake_latency(true),
    },
];
