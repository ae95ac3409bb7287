//! The `gup` suite: the pin/writeback race rounds of the second seed on
//! every pair of CPUs, for both schemes (`race.rs`).

pub mod race;

use pagesync::{Config, PinScheme};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
    pagelock::{config, leak_table},
    println,
};

fn race_case(ctx: &Ctx, gup: PinScheme) -> TestResult {
    if crate::smp::online_cpus() < 2 {
        return Err(TestError::Skip("needs -smp 2 or more"));
    }
    let table = leak_table(Config { gup, ..config() });
    let r = race::run(table, ctx.params.gup_rounds, ctx.params.seed);
    println!(
        "    # gup-race gup={}: {} pairs x {} rounds in {} ms ({} switches): pinned without seeing writeback {}, writeback saw a pin {}, both blind {}",
        gup.name(),
        r.pairs,
        r.rounds,
        r.elapsed_ms,
        r.switches,
        r.pinned,
        r.saw_pin,
        r.violations
    );
    kassert_eq!(r.stuck, 0);
    kassert!(
        r.violations == 0,
        "{} rounds where the pinner saw no writeback and writeback saw no pin",
        r.violations
    );
    Ok(())
}

fn race_lock_scheme(ctx: &Ctx) -> TestResult {
    race_case(ctx, PinScheme::Lock)
}

fn race_barrier_scheme(ctx: &Ctx) -> TestResult {
    race_case(ctx, PinScheme::Barrier)
}

pub static SUITE: Suite = Suite {
    name: "gup",
    cases: &[
        Case {
            name: "race_lock_scheme",
            run: race_lock_scheme,
        },
        Case {
            name: "race_barrier_scheme",
            run: race_barrier_scheme,
        },
    ],
};
