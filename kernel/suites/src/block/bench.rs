//! Benchmark `blk_io`: 4 KiB read and write latency (p50, p99) and
//! throughput at queue depth 1 and 16, on the RAM device and on virtio-blk,
//! with virtio's figures as ratios of the RAM device's from the same round
//! (`bench_rounds=` rounds; in each, the two devices alternate which goes
//! first). A request that fails fails the run.
//!
//! One submitter (the boot CPU's main thread) keeps `depth` requests
//! outstanding: it submits whenever fewer are in flight and otherwise
//! spins. A request's latency runs from just before `submit` to the start
//! of its completion (in the device's interrupt context), both read with
//! `rdtsc`; throughput is requests over the wall time of the whole batch.
//! Blocks cycle through the first [`SPAN`] of the device. Under TCG the
//! figures are slow and noisy; they are reported, never judged. Run with
//! `cargo xtask bench --filter blk_io`.
//!
//! Output, per round (format: `contract::bench`):
//! ```text
//! BENCH blk_io ram op=read qd=1 round=0 p50:ns=.. p99:ns=.. iops:per_s=.. mib_s:mib_per_s=..
//! BENCH blk_io virtio op=read qd=1 round=0 ... vs_ram_p50:ratio=.. vs_ram_iops:ratio=..
//! ```

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use contract::bench::Unit;

use crate::bench::{self, Bench, Record, percentile, rdtsc, rounds};
use kernel::{
    arch::time::cycles_to_ns,
    block::{self, BlockDevice, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    params::Params,
    println,
    sync::IrqMutex,
};

/// Requests per configuration per round.
pub const REQUESTS: usize = 500;
/// Blocks the benchmark cycles through.
pub const SPAN: u64 = 1024;
const BLOCK_BYTES: u64 = block::BLOCK_SIZE as u64;

pub static BENCHES: &[Bench] = &[Bench {
    name: "blk_io",
    run: blk_io,
}];

/// One configuration's figures.
#[derive(Clone, Copy, Default)]
struct Figures {
    p50_ns: u64,
    p99_ns: u64,
    iops: u64,
    /// MiB/s times 100.
    mib_s_x100: u64,
}

struct Shared {
    in_flight: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    latencies: IrqMutex<Vec<u64>>,
}

/// One batch; `Err(failed requests)` if any failed.
fn run(dev: &'static dyn BlockDevice, op: Op, depth: u64) -> Result<Figures, u64> {
    let frames: Vec<Frame> = (0..depth)
        .map(|_| alloc_pages(0, AllocFlags::ZERO).expect("a frame"))
        .collect();
    let span = SPAN.min(dev.blocks());
    let s = Arc::new(Shared {
        in_flight: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies: IrqMutex::new(Vec::with_capacity(REQUESTS)),
    });
    let t0 = rdtsc();
    for i in 0..REQUESTS {
        // Acquire pairs with the Release decrement in the completion.
        while s.in_flight.load(Ordering::Acquire) >= depth {
            core::hint::spin_loop();
        }
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        let sc = s.clone();
        let start = rdtsc();
        dev.submit(Request {
            op,
            block: i as u64 % span,
            // Frames are reused in turn; at depth `depth` the one reused
            // has completed (a read into it may race a later read, which
            // a benchmark does not mind).
            frames: frames[i % depth as usize].clone().into(),
            done: alloc::boxed::Box::new(move |r| {
                let lat = rdtsc() - start;
                sc.latencies.lock().push(lat);
                if r.is_err() {
                    sc.failed.fetch_add(1, Ordering::Relaxed);
                }
                sc.done.fetch_add(1, Ordering::Release);
                // Release pairs with the submitter's Acquire.
                sc.in_flight.fetch_sub(1, Ordering::Release);
            }),
        });
    }
    while s.done.load(Ordering::Acquire) < REQUESTS as u64 {
        core::hint::spin_loop();
    }
    let total = cycles_to_ns(rdtsc() - t0).max(1);
    let failed = s.failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(failed);
    }
    let mut lat: Vec<u64> = s
        .latencies
        .lock()
        .iter()
        .map(|&c| cycles_to_ns(c))
        .collect();
    let iops = REQUESTS as u64 * 1_000_000_000 / total;
    Ok(Figures {
        p50_ns: percentile(&mut lat, 50),
        p99_ns: percentile(&mut lat, 99),
        iops,
        mib_s_x100: (iops * BLOCK_BYTES * 100) >> 20,
    })
}

fn blk_io(_: &Params) {
    const NAME: &str = "blk_io";
    let ram = block::ram_disk().map(|d| d as &'static dyn BlockDevice);
    let virtio = block::virtio_blk()
        .ok()
        .map(|d| d as &'static dyn BlockDevice);
    if ram.is_none() {
        println!("# {NAME}: no RAM device (ramdisk=0): no baseline, no ratios");
    }
    if let Err(why) = block::virtio_blk() {
        println!("# {NAME}: no virtio-blk device: {why}");
    }
    for round in 0..rounds() {
        for op in [Op::Read, Op::Write] {
            for depth in [1, 16] {
                let opn = if op == Op::Read { "read" } else { "write" };
                let mut got: [Option<Figures>; 2] = [None, None];
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let Some(dev) = [ram, virtio][i] else {
                        continue;
                    };
                    match run(dev, op, depth) {
                        Ok(f) => got[i] = Some(f),
                        Err(n) => {
                            bench::fail(
                                NAME,
                                format_args!(
                                    "{}: {n} of {REQUESTS} {opn} requests at queue depth {depth} failed (round {round})",
                                    dev.name()
                                ),
                            );
                            return;
                        }
                    }
                }
                for (i, f) in got.iter().enumerate() {
                    let Some(f) = f else { continue };
                    let mut rec = Record::new(NAME, ["ram", "virtio"][i])
                        .label("op", opn)
                        .label("qd", depth)
                        .round(round)
                        .metric("p50", Unit::Ns, f.p50_ns as f64)
                        .metric("p99", Unit::Ns, f.p99_ns as f64)
                        .metric("iops", Unit::PerS, f.iops as f64)
                        .metric("mib_s", Unit::MibPerS, f.mib_s_x100 as f64 / 100.0);
                    if let (1, Some(r)) = (i, got[0]) {
                        rec = rec
                            .metric("vs_ram_p50", Unit::Ratio, ratio(f.p50_ns, r.p50_ns))
                            .metric("vs_ram_p99", Unit::Ratio, ratio(f.p99_ns, r.p99_ns))
                            .metric("vs_ram_iops", Unit::Ratio, ratio(f.iops, r.iops));
                    }
                    rec.emit();
                }
            }
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}
