//! Benchmark `blk_io`: 4 KiB read and write latency (p50, p99) and
//! throughput at queue depth 1 and 16, on the RAM device and on virtio-blk,
//! with virtio's figures as ratios of the RAM device's from the same run.
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
//! Output:
//! ```text
//! BENCH blk_io ram/read/qd1 n=2000 p50_ns=.. p99_ns=.. iops=.. mib_s=..
//! BENCH blk_io ratio/read/qd1 virtio_over_ram_p50=.. virtio_over_ram_p99=.. virtio_over_ram_iops=..
//! ```

use alloc::{sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{
    arch::x86_64::time::cycles_to_ns,
    bench::{Bench, percentile, rdtsc},
    bench_result,
    block::{self, BlockDevice, Op, Request},
    mm::{AllocFlags, Frame, alloc_pages},
    params::Params,
    println,
    sync::IrqMutex,
};

/// Requests per configuration.
pub const REQUESTS: usize = 2000;
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

fn run(dev: &'static dyn BlockDevice, op: Op, depth: u64) -> Option<Figures> {
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
            frame: frames[i % depth as usize].clone(),
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
    if s.failed.load(Ordering::Relaxed) > 0 {
        println!(
            "# blk_io: {} {} requests failed",
            dev.name(),
            s.failed.load(Ordering::Relaxed)
        );
        return None;
    }
    let mut lat: Vec<u64> = s
        .latencies
        .lock()
        .iter()
        .map(|&c| cycles_to_ns(c))
        .collect();
    let iops = REQUESTS as u64 * 1_000_000_000 / total;
    Some(Figures {
        p50_ns: percentile(&mut lat, 50),
        p99_ns: percentile(&mut lat, 99),
        iops,
        mib_s_x100: (iops * BLOCK_BYTES * 100) >> 20,
    })
}

/// `a / b` with two decimals, as text.
struct Ratio(u64, u64);
impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let x = self.0 * 100 / self.1.max(1);
        write!(f, "{}.{:02}", x / 100, x % 100)
    }
}

fn blk_io(_: &Params) {
    let ram = block::ram_disk().map(|d| d as &'static dyn BlockDevice);
    let virtio = block::virtio_blk()
        .ok()
        .map(|d| d as &'static dyn BlockDevice);
    if ram.is_none() {
        println!("# blk_io: no RAM device (ramdisk=0): no baseline, no ratios");
    }
    if let Err(why) = block::virtio_blk() {
        println!("# blk_io: no virtio-blk device: {why}");
    }
    for op in [Op::Read, Op::Write] {
        for depth in [1, 16] {
            let opn = if op == Op::Read { "read" } else { "write" };
            let mut got: [Option<Figures>; 2] = [None, None];
            for (i, dev) in [ram, virtio].into_iter().enumerate() {
                let Some(dev) = dev else { continue };
                let Some(f) = run(dev, op, depth) else {
                    continue;
                };
                let name = if i == 0 { "ram" } else { "virtio" };
                bench_result!(
                    "blk_io {name}/{opn}/qd{depth} n={REQUESTS} p50_ns={} p99_ns={} iops={} mib_s={}",
                    f.p50_ns,
                    f.p99_ns,
                    f.iops,
                    Ratio(f.mib_s_x100, 100)
                );
                got[i] = Some(f);
            }
            if let [Some(r), Some(v)] = got {
                bench_result!(
                    "blk_io ratio/{opn}/qd{depth} virtio_over_ram_p50={} virtio_over_ram_p99={} virtio_over_ram_iops={}",
                    Ratio(v.p50_ns, r.p50_ns),
                    Ratio(v.p99_ns, r.p99_ns),
                    Ratio(v.iops, r.iops)
                );
            }
        }
    }
}
