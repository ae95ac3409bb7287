//! SMP benchmarks: IPI round-trip latency and AP bring-up time.

use super::ping_pong;
use crate::smp::online_cpus;
use crate::{
    arch::x86_64::{smp as arch_smp, time},
    bench::{Bench, percentile},
    params::Params,
    println,
};

fn ipi_round_trip(_: &Params) {
    if online_cpus() < 2 {
        println!("# ipi_round_trip needs two CPUs; skipped");
        return;
    }
    const ROUNDS: usize = 20_000;
    let mut v = [0u64; ROUNDS];
    let mut i = 0;
    if let Err(r) = ping_pong(1, ROUNDS, |c| {
        v[i] = c;
        i += 1;
    }) {
        println!("# ipi_round_trip: IPI lost in round {r}");
        return;
    }
    let med = percentile(&mut v, 50);
    let p99 = percentile(&mut v, 99);
    crate::bench_result!(
        "ipi_round_trip cpu0<->cpu1 rounds={ROUNDS} median_cycles={med} p99_cycles={p99} median_ns={} p99_ns={}",
        time::cycles_to_ns(med),
        time::cycles_to_ns(p99)
    );
}

fn ap_bringup(_: &Params) {
    let n = online_cpus();
    let mut total = 0;
    for i in 1..n {
        let ns = arch_smp::bringup_ns(i);
        total += ns;
        crate::bench_result!("ap_bringup cpu{i} ns={ns}");
    }
    if n > 1 {
        crate::bench_result!(
            "ap_bringup mean cpus={} ns={} (includes the SDM's 10 ms INIT delay)",
            n - 1,
            total / (n as u64 - 1)
        );
    }
}

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "ipi_round_trip",
        run: ipi_round_trip,
    },
    Bench {
        name: "ap_bringup",
        run: ap_bringup,
    },
];
