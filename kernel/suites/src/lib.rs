//! The pcs kernel's in-kernel test suites, tortures, litmus tests and
//! benchmarks, one folder (or file) per subsystem, the one registry of
//! them, and the two frameworks that run them: [`ktest`] (KTAP test cases)
//! and [`bench`] (benchmark rounds and records).
//!
//! Mental model: the kernel (`kernel`) knows nothing of its tests; each
//! module here imports the subsystem it checks, and [`SUITES`] and
//! [`BENCHES`] list them in run order. The image (`kernel/image`) calls
//! [`run_tests`] or [`run_benches`] after the kernel has booted. The
//! frameworks import no suite and no subsystem beyond the console and the
//! parameters: they are handed the lists.
//!
//! * [`boot`]: descriptor tables, the deliberate failure and crashes;
//! * [`selftest`] (the `ktest` suite), [`params`]: the frameworks' own
//!   rules;
//! * [`smp`], [`mm`], [`sched`]: each subsystem's suite and benchmarks;
//! * [`pagelock`]: the page-lock suite, its torture (`torture.rs`), the
//!   thundering-herd walk (`herd.rs`) and benchmarks;
//! * [`block`]: both block devices (round trips, interrupt context,
//!   errors, stable pages, multi-block requests, flushes, the write cache,
//!   routing, persistence) and their benchmark;
//! * [`pagecache`]: the page cache on the RAM device (reads, writes,
//!   writeback, sync and its durability, errors, stable pages, bad input)
//!   and its tortures, the host-verified torture on the virtio disk
//!   (`torture_disk`, whose manifest the host checks against the image
//!   file) and the crash-consistency check (`crash_consistency`, whose
//!   write log the host replays);
//! * [`gup`]: pinning, its errors, the pin/writeback race rounds of the
//!   second seed, DMA into pinned pages and the host-verified DMA torture
//!   (`torture_dma`);
//! * [`litmus`]: a klitmus7-style litmus runner: store buffering as the
//!   canary that the CPUs run in parallel and reorder, then the pin/writeback
//!   race itself;
//! * [`vm`]: address spaces (real page faults, TLB shoot-downs, the known-bad
//!   shoot-down caught), a test `MapSource`, and the fault and shoot-down
//!   benchmarks;
//! * [`accounting`]: the check after every case of the `mm`, `vm`,
//!   `pagelock`, `block`, `pagecache` and `gup` suites (nothing lost or left
//!   behind), and after a failed case the check that it left nothing
//!   running.

#![no_std]

extern crate alloc;

pub mod bench;
pub mod ktest;

pub mod accounting;
pub mod block;
pub mod boot;
pub mod gup;
pub mod litmus;
pub mod mm;
pub mod pagecache;
pub mod pagelock;
pub mod params;
pub mod rendezvous;
pub mod sched;
pub mod selftest;
pub mod smp;
pub mod vm;

use crate::{bench::Bench, ktest::Suite};

/// Every suite, in run order.
pub static SUITES: &[&Suite] = &[
    &boot::SUITE,
    &selftest::SUITE,
    &params::SUITE,
    &smp::SUITE,
    &mm::SUITE,
    &sched::SUITE,
    &pagelock::SUITE,
    &block::SUITE,
    &pagecache::SUITE,
    &gup::SUITE,
    &litmus::SUITE,
    &vm::SUITE,
];

/// Every benchmark group, in run order.
pub static BENCHES: &[&[Bench]] = &[
    smp::bench::BENCHES,
    mm::bench::BENCHES,
    sched::bench::BENCHES,
    pagelock::bench::BENCHES,
    block::bench::BENCHES,
    pagecache::bench::BENCHES,
    vm::bench::BENCHES,
    gup::bench::BENCHES,
];

/// `mode=test`: every selected suite, KTAP on the console, each case of an
/// accounted suite followed by the accounting check. Returns whether every
/// case passed.
pub fn run_tests(params: &kernel::params::Params) -> bool {
    ktest::note_params_without_effect(SUITES, params);
    kernel::console::set_observer(ktest::observe_log);
    kernel::panic::set_case_namer(ktest::current);
    ktest::run_all::<accounting::Accounted>(SUITES, params)
}

/// What the lock-order check saw (debug builds): the classes and edges,
/// each edge with its first sites at `log=debug`.
pub(crate) fn report_lock_order() {
    use kernel::lockdep;
    if !lockdep::enabled() {
        return;
    }
    let mut edges = 0;
    lockdep::for_each_edge(|a, b, sa, sb| {
        edges += 1;
        log::debug!("lockdep: {a} -> {b} (held from {sa}, taken at {sb})");
    });
    log::info!(
        "lockdep: {} lock classes, {edges} order edges, no inversion",
        lockdep::classes()
    );
}

/// `mode=bench`: every selected benchmark. Returns whether none reported a
/// correctness failure.
pub fn run_benches(params: &kernel::params::Params) -> bool {
    ktest::note_params_without_effect(SUITES, params);
    bench::run_all(BENCHES, params)
}
