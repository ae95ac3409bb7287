//! The tests room: every in-kernel test suite, torture and benchmark, one
//! folder per subsystem, and the one registry of them.
//!
//! Mental model: the subsystems (`arch`, `mm`, `sched`, `smp`, `pagelock`)
//! know nothing of their tests; each folder here imports the subsystem it
//! checks, and [`SUITES`] and [`BENCHES`] list them in run order. `main`
//! hands the lists to the frameworks (`crate::ktest`, `crate::bench`), which
//! import no test and no subsystem. They are compiled into every kernel
//! image (the README's commands select them with `filter=`).
//!
//! * [`boot`]: descriptor tables, the deliberate failure and crashes;
//! * [`ktest`], [`params`]: the frameworks' own rules;
//! * [`smp`], [`mm`], [`sched`]: each subsystem's suite and benchmarks;
//! * [`pagelock`]: the page-lock suite, its torture (`torture.rs`), the
//!   thundering-herd walk (`herd.rs`) and benchmarks;
//! * [`block`]: both block devices (round trips, interrupt context,
//!   errors, stable pages, routing, persistence) and their benchmark;
//! * [`pagecache`]: the page cache on the RAM device (reads, writes,
//!   writeback, sync, errors, stable pages, bad input) and its torture, and
//!   the host-verified torture on the virtio disk (`torture_disk`, whose
//!   manifest the host checks against the image file);
//! * [`gup`]: pinning, its errors, the pin/writeback race rounds of the
//!   second seed, DMA into pinned pages and the host-verified DMA torture
//!   (`torture_dma`), each case followed by the accounting check (no pin
//!   left, every frame back);
//! * [`litmus`]: a klitmus7-style litmus runner: store buffering as the
//!   canary that the CPUs run in parallel and reorder, then the pin/writeback
//!   race itself;
//! * [`vm`]: address spaces (real page faults, TLB shoot-downs, the known-bad
//!   shoot-down caught), a test `MapSource`, and the fault and shoot-down
//!   benchmarks.

pub mod accounting;
pub mod block;
pub mod boot;
pub mod gup;
pub mod ktest;
pub mod litmus;
pub mod mm;
pub mod pagecache;
pub mod pagelock;
pub mod params;
pub mod rendezvous;
pub mod sched;
pub mod smp;
pub mod vm;

use crate::{bench::Bench, ktest::Suite};

/// Every suite, in run order.
pub static SUITES: &[&Suite] = &[
    &boot::SUITE,
    &ktest::SUITE,
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
