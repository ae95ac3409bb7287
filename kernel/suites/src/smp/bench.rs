//! SMP benchmarks: IPI round-trip latency and AP bring-up time.
//!
//! * `ipi_round_trip`: cpu0 sends a ping IPI to cpu1, which answers with
//!   one; [`PINGS`] round trips per round, `bench_rounds=` rounds. A ping
//!   that is never answered (a lost IPI) fails the run.
//! * `ap_bringup`: how long each application processor took to come up
//!   at boot (INIT, SIPI, to running Rust). Bring-up happens once per boot,
//!   so this one has no rounds: each CPU is one sample.

use contract::bench::Unit;

use super::ping_pong;
use crate::bench::{self, Bench, Hist, Record, percentile, rounds};
use kernel::smp::online_cpus;
use kernel::{
    arch::{smp as arch_smp, time},
    params::Params,
    println,
};

/// Round trips per round.
pub const PINGS: usize = 4_000;

fn ipi_round_trip(_: &Params) {
    const NAME: &str = "ipi_round_trip";
    if online_cpus() < 2 {
        println!("# {NAME} needs two CPUs; skipped");
        return;
    }
    let mut v = alloc::vec![0u64; PINGS];
    for round in 0..rounds() {
        let mut i = 0;
        if let Err(r) = ping_pong(1, PINGS, |c| {
            v[i] = time::cycles_to_ns(c);
            i += 1;
        }) {
            bench::fail(
                NAME,
                format_args!(
                    "IPI lost in round {round}, ping {r} of {PINGS} (no answer within 1 s)"
                ),
            );
            return;
        }
        let mut h = Hist::new();
        for &ns in &v {
            h.record(ns);
        }
        let rec = Record::new(NAME, "cpu0<->cpu1")
            .round(round)
            .metric("p50", Unit::Ns, percentile(&mut v, 50) as f64)
            .metric("p99", Unit::Ns, percentile(&mut v, 99) as f64)
            .metric("max", Unit::Ns, percentile(&mut v, 100) as f64);
        rec.emit_hist("round_trip", Unit::Ns, &h);
        rec.emit();
    }
}

fn ap_bringup(_: &Params) {
    let n = online_cpus();
    for i in 1..n {
        Record::new("ap_bringup", "ap")
            .label("cpu", i)
            .metric("bringup", Unit::Us, arch_smp::bringup_ns(i) as f64 / 1000.0)
            .emit();
    }
    if n > 1 {
        println!("# ap_bringup: includes the SDM's 10 ms INIT delay; once per boot, so no rounds");
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
