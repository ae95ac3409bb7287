//! Benchmarks `vm_fault` and `vm_shootdown` (`cargo xtask bench --filter
//! 'vm_*'`).
//!
//! `vm_fault`: a thread in a space (on CPU 1 if there is one) times each
//! access that takes a real page fault, with `rdtsc` around the one
//! instruction, and then the same accesses once mapped (the baseline, which
//! includes the `rdtsc` pair): anonymous write faults (zeroed frame), file
//! read faults (the source's page, mapped read-only), and write-notify
//! faults on those pages (page lock + `page_mkwrite` + making the entry
//! writable); and, from the boot CPU, `fault_in` (GUP's software fault) of
//! fresh anonymous pages.
//!
//! `vm_shootdown`: the cost of making one page's translation go away, in
//! the same run: a local `invlpg`, then a shoot-down (`vm::tlb::shootdown`:
//! IPI, remote `invlpg`, wait for the acknowledgement) to one remote CPU
//! and to every other CPU. Each remote CPU runs a thread in an address
//! space (so it is in the space's CPU set, as when it holds the
//! translation) that halts with interrupts on between interrupts: a
//! spinning thread would keep its vCPU busy on the host, and with more
//! vCPUs than host cores the IPI would then wait for the host scheduler
//! (milliseconds, measured), not for the guest.
//!
//! Both repeat in `bench_rounds=` rounds, the kinds (and shoot-down
//! targets) interleaved within each round. A fault count that does not
//! match the accesses fails the run.
//!
//! Output, per round (format: `contract::bench`):
//! ```text
//! BENCH vm_fault anon pages=256 round=0 fault_p50:ns=.. fault_p99:ns=.. fault_mean:ns=.. mapped_p50:ns=.. vs_mapped:ratio=..
//! BENCH vm_shootdown remote=1 shots=200 round=0 p50:ns=.. p99:ns=.. vs_local:ratio=..
//! ```

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::source::{TestSource, read, run_in, write};
use contract::bench::Unit;

use crate::bench::{self, Bench, Hist, Record, percentile, rdtsc, rounds};
use kernel::{
    arch::{paging, time::cycles_to_ns},
    params::Params,
    println,
    vm::{
        AddressSpace, Prot,
        tlb::{self, Flush},
    },
};

const PAGE: u64 = 4096;
/// Pages faulted per kind per round.
const PAGES: u64 = 256;
/// Shoot-downs timed per configuration per round.
const SHOTS: usize = 200;
const BASE: u64 = 0x4000_0000;

pub static BENCHES: &[Bench] = &[
    Bench {
        name: "vm_fault",
        run: vm_fault,
    },
    Bench {
        name: "vm_shootdown",
        run: vm_shootdown,
    },
];

fn report(kind: &str, round: u32, mut faults: Vec<u64>, mut mapped: Vec<u64>) {
    let mean = faults.iter().sum::<u64>() / faults.len().max(1) as u64;
    let p50 = percentile(&mut faults, 50);
    let p99 = percentile(&mut faults, 99);
    let base = percentile(&mut mapped, 50);
    let mut h = Hist::new();
    for &c in &faults {
        h.record(cycles_to_ns(c));
    }
    let rec = Record::new("vm_fault", kind)
        .label("pages", faults.len())
        .round(round)
        .metric("fault_p50", Unit::Ns, cycles_to_ns(p50) as f64)
        .metric("fault_p99", Unit::Ns, cycles_to_ns(p99) as f64)
        .metric("fault_mean", Unit::Ns, cycles_to_ns(mean) as f64)
        .metric("mapped_p50", Unit::Ns, cycles_to_ns(base) as f64)
        .metric("vs_mapped", Unit::Ratio, p50 as f64 / base.max(1) as f64);
    rec.emit_hist("fault", Unit::Ns, &h);
    rec.emit();
}

/// Times `access(va)` for every page of `[BASE, BASE + PAGES pages)`.
fn time_pages(access: impl Fn(u64)) -> Vec<u64> {
    (0..PAGES)
        .map(|i| {
            let va = BASE + i * PAGE;
            let t0 = rdtsc();
            access(va);
            rdtsc() - t0
        })
        .collect()
}

fn new_space() -> Arc<AddressSpace> {
    AddressSpace::new().expect("a root")
}

/// Fails the benchmark unless `got == want`; returns whether it held.
fn counted(what: &str, got: u64, want: u64) -> bool {
    if got != want {
        bench::fail(
            "vm_fault",
            format_args!("{what}: {got} counted, {want} expected"),
        );
    }
    got == want
}

fn vm_fault(_: &Params) {
    let cpu = usize::from(kernel::smp::online_cpus() > 1);
    for round in 0..rounds() {
        // Anonymous write faults.
        let s = new_space();
        s.map_anon(BASE, PAGES * PAGE, Prot::ReadWrite).unwrap();
        let (faults, mapped) = run_in(&s, cpu, || {
            let f = time_pages(|va| write(va, va));
            let m = time_pages(|va| write(va, va));
            (f, m)
        });
        if !counted("anonymous hardware faults", s.stats().hw_faults, PAGES) {
            return;
        }
        report("anon", round, faults, mapped);
        drop(s);

        // File read faults, then write-notify faults on the same pages.
        let src = TestSource::new(PAGES);
        let s = new_space();
        s.map_file(BASE, PAGES * PAGE, Prot::ReadWrite, src.clone(), 0)
            .unwrap();
        let (reads, notify, mapped) = run_in(&s, cpu, || {
            let r = time_pages(|va| {
                read(va);
            });
            let w = time_pages(|va| write(va + 8, va));
            let m = time_pages(|va| write(va + 8, va));
            (r, w, m)
        });
        if !counted("file hardware faults", s.stats().hw_faults, 2 * PAGES)
            || !counted("page_mkwrite calls", s.stats().mkwrites, PAGES)
        {
            return;
        }
        report("file_read", round, reads, mapped.clone());
        report("file_write_notify", round, notify, mapped);
        drop(s);

        // GUP's software fault-in of fresh anonymous pages, from this CPU.
        let s = new_space();
        s.map_anon(BASE, PAGES * PAGE, Prot::ReadWrite).unwrap();
        let soft = time_pages(|va| drop(s.fault_in(va, true).expect("fault_in")));
        let again = time_pages(|va| drop(s.fault_in(va, true).expect("fault_in")));
        report("fault_in_anon", round, soft, again);
    }
}

fn vm_shootdown(_: &Params) {
    let online = kernel::smp::online_cpus();
    if online < 2 {
        println!("# vm_shootdown needs two CPUs; skipped");
        return;
    }
    let va = BASE;
    // Remote CPUs, each running a thread in a space, halted between
    // interrupts (module docs).
    let s = new_space();
    let stop = Arc::new(AtomicBool::new(false));
    let parked: Vec<_> = (1..online)
        .map(|cpu| {
            let stop = stop.clone();
            kernel::sched::spawn_in("vm-parked", Some(cpu), Some(s.thread_space()), move || {
                // Acquire pairs with the Release store below.
                while !stop.load(Ordering::Acquire) {
                    x86_64::instructions::interrupts::enable_and_hlt();
                }
            })
            .expect("spawn a parked thread")
        })
        .collect();
    let all_remote = ((1u64 << online) - 1) & !1;
    while s.cpu_set() != all_remote {
        kernel::sched::yield_now();
    }
    let mut configs = alloc::vec![1];
    if online > 2 {
        configs.push(online - 1);
    }
    for round in 0..rounds() {
        let mut local: Vec<u64> = (0..SHOTS)
            .map(|_| {
                let t0 = rdtsc();
                paging::flush_local(va);
                rdtsc() - t0
            })
            .collect();
        let local_p50 = percentile(&mut local, 50);
        Record::new("vm_shootdown", "local_invlpg")
            .label("shots", SHOTS)
            .round(round)
            .metric("p50", Unit::Ns, cycles_to_ns(local_p50) as f64)
            .metric(
                "p99",
                Unit::Ns,
                cycles_to_ns(percentile(&mut local, 99)) as f64,
            )
            .emit();
        for &remote in &configs {
            let set = AtomicU64::new(((1u64 << (remote + 1)) - 1) & !1);
            let mut v: Vec<u64> = (0..SHOTS)
                .map(|_| {
                    // Preemption off for the call only: "this CPU" must not
                    // change under it (tlb::shootdown's contract).
                    kernel::sched::preempt_disable();
                    let t0 = rdtsc();
                    let shot = tlb::shootdown(&set, Flush::Pages(&[va]), None);
                    let t = rdtsc() - t0;
                    kernel::sched::preempt_enable();
                    debug_assert_eq!(shot.remote.count_ones() as usize, remote);
                    t
                })
                .collect();
            let p50 = percentile(&mut v, 50);
            Record::new("vm_shootdown", "shootdown")
                .label("remote", remote)
                .label("shots", SHOTS)
                .round(round)
                .metric("p50", Unit::Ns, cycles_to_ns(p50) as f64)
                .metric("p99", Unit::Ns, cycles_to_ns(percentile(&mut v, 99)) as f64)
                .metric(
                    "vs_local",
                    Unit::Ratio,
                    p50 as f64 / local_p50.max(1) as f64,
                )
                .emit();
        }
    }
    // Release pairs with the parked threads' Acquire; the next tick wakes
    // each of them to see it.
    stop.store(true, Ordering::Release);
    for t in parked {
        kernel::sched::join(&t);
    }
}
