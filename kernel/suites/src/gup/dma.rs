//! DMA into pinned pages while they are written back.
//!
//! Mental model: a file mapping's pages are pinned for write (as a driver
//! pins a user buffer); "DMA engine" threads on the other CPUs write into
//! the pinned pages through the kernel's mapping, as a device would, and
//! mark them dirty (a driver's `unpin_user_pages_dirty_lock`, done as it
//! goes); meanwhile this thread writes the file back over and over. The
//! pages may change at any moment, so writeback must not hand the device
//! the page itself: `start_page_writeback` reports them maybe pinned and
//! the page cache writes a bounce copy. The devices' stable-page check
//! (the data must not change between submission and the moment the device
//! takes it) is the detector: it stays silent with bounce copies and fires
//! with `bug=write-pinned-in-place`.

use alloc::{format, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{
    kassert, kassert_eq,
    ktest::{Ctx, TestError, TestResult},
    pagecache::fresh_cache,
    sched::join_timeout,
};
use kernel::{
    gup::{GupFlags, pin_user_pages},
    mm::{Frame, PAGE_SIZE},
    pagecache::File,
    println,
    sched::{self, timer},
    smp::online_cpus,
    vm::{AddressSpace, Prot},
};

const PAGES: u64 = 8;
const VA: u64 = 0x58_0000_0000;
const MS: u64 = 1_000_000;

/// One DMA engine: writes a new round into every word of each pinned page
/// in turn, then marks the page dirty.
fn engine(stop: &AtomicBool, writes: &AtomicU64, file: &File, frames: &[Frame], k: u64) {
    let mut round = 0u64;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        for (i, f) in frames.iter().enumerate() {
            let words = f.virt().cast::<u64>();
            for w in 0..PAGE_SIZE / 8 {
                // SAFETY: the frame is pinned and referenced by us, mapped
                // in the physical map, one page long; like a device's DMA,
                // the writes race with every other reader and writer of
                // the page, which is the point (volatile: each store
                // happens, in order).
                unsafe { words.add(w).write_volatile((k << 48) | round) };
            }
            file.mark_dirty(i as u64, f);
            writes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn dma_during_writeback(_: &Ctx) -> TestResult {
    let cpus = online_cpus();
    if cpus < 2 {
        return Err(TestError::Skip("needs -smp 2 or more"));
    }
    let c = fresh_cache(1)?;
    let file = c.file(0).unwrap().clone();
    let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
    let m = space.map_file(
        VA,
        PAGES * PAGE_SIZE as u64,
        Prot::ReadWrite,
        file.clone() as Arc<dyn kernel::vm::MapSource>,
        0,
    );
    kassert!(m.is_ok(), "map_file: {:?}", m.err());
    let write = GupFlags {
        write: true,
        longterm: false,
    };
    let pinned = pin_user_pages(&space, VA, PAGES as usize, write);
    kassert!(pinned.is_ok(), "pin: {:?}", pinned.as_ref().err());
    let pinned = pinned.unwrap();
    let violations0 = c.dev.stats().stable_violations;
    let bounced0 = file.stats().bounced;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let me = kernel::arch::cpu_index();
    let engines: Vec<_> = (0..cpus)
        .filter(|&cpu| cpu != me)
        .map(|cpu| {
            let (stop, writes, file) = (stop.clone(), writes.clone(), file.clone());
            let frames: Vec<Frame> = pinned.frames().to_vec();
            sched::spawn(&format!("dma{cpu}"), Some(cpu), move || {
                engine(&stop, &writes, &file, &frames, cpu as u64)
            })
            .expect("spawn")
        })
        .collect();
    let mut submitted = 0;
    let deadline = kernel::arch::time::now_ns() + 1_500 * MS;
    while kernel::arch::time::now_ns() < deadline {
        submitted += file.writeback();
        timer::sleep_ns(MS);
    }
    stop.store(true, Ordering::Release);
    for e in &engines {
        kassert!(join_timeout(e, 10_000), "{} did not stop", e.name);
    }
    drop(pinned);
    kassert_eq!(file.sync(), Ok(()));
    let violations = c.dev.stats().stable_violations - violations0;
    let bounced = file.stats().bounced - bounced0;
    println!(
        "    # {PAGES} pinned pages, {} DMA writes, {submitted} writebacks, {bounced} from bounce copies, {violations} stable-page violations",
        writes.load(Ordering::Relaxed)
    );
    kassert!(
        submitted > 0 && writes.load(Ordering::Relaxed) > 0,
        "no work done"
    );
    kassert!(
        violations == 0,
        "the device saw {} pinned pages change while writing them",
        violations
    );
    kassert!(
        bounced > 0,
        "no write of a pinned page went through a bounce copy"
    );
    kassert!(space.unmap(VA, PAGES * PAGE_SIZE as u64).is_ok());
    Ok(())
}
