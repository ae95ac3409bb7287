//! The `gup` suite: `pin_user_pages`/`get_user_pages` on real address
//! spaces (counts restored exactly, every bad input refused with nothing
//! left pinned), the pin/writeback race rounds of the second seed on every
//! pair of CPUs for both schemes (`race.rs`), DMA into pinned file pages
//! while they are written back (`dma.rs`), and the host-verified torture
//! with DMA engines writing whole versions into pinned pages
//! (`crate::pagecache::disk_torture`).
//!
//! Every case is followed by the accounting check
//! (`crate::accounting`): no page anywhere may be left maybe-pinned,
//! and every frame must be back.

pub mod bench;
pub mod dma;
pub mod race;

use alloc::{sync::Arc, vec::Vec};

use pagesync::{Config, PinScheme, refcount::GUP_PIN_COUNTING_BIAS};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
    pagecache::fresh_cache,
};
use kernel::{
    gup::{GupError, GupFlags, get_user_pages, pin_user_pages},
    mm::{Frame, PAGE_SIZE},
    pagelock::{config, leak_table},
    println,
    vm::{AddressSpace, Prot},
};

/// Where the cases map their regions.
const VA: u64 = 0x50_0000_0000;
const PAGE: u64 = PAGE_SIZE as u64;

const W: GupFlags = GupFlags {
    write: true,
    longterm: false,
};

/// The reference counts of the pages at `va..va + n pages`, through plain
/// references (each taken and dropped, so the counts read are the others').
fn counts(space: &AddressSpace, va: u64, n: u64) -> Vec<u32> {
    let frames = get_user_pages(space, va, n as usize, GupFlags::default()).expect("mapped");
    frames.iter().map(|f: &Frame| f.ref_count() - 1).collect()
}

/// Pinning adds the bias to every page and marks it maybe-pinned; dropping
/// the pins restores every count exactly; plain GUP references do not
/// look pinned.
fn pin_and_unpin_restore_counts(_: &Ctx) -> TestResult {
    let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
    kassert!(space.map_anon(VA, 8 * PAGE, Prot::ReadWrite).is_ok());
    let refs = get_user_pages(&space, VA, 8, W);
    kassert!(refs.is_ok(), "{:?}", refs.as_ref().err());
    let refs = refs.unwrap();
    kassert!(refs.iter().all(|f| !f.maybe_dma_pinned()));
    let before = counts(&space, VA, 8);
    let p = pin_user_pages(&space, VA, 8, W);
    kassert!(p.is_ok(), "{:?}", p.as_ref().err());
    let p = p.unwrap();
    kassert_eq!(p.len(), 8);
    kassert!(!p.is_empty());
    for (i, f) in p.frames().iter().enumerate() {
        kassert!(kernel::gup::page_maybe_dma_pinned(f));
        kassert!(
            core::ptr::eq(&**f, &*refs[i]),
            "page {} is not the mapped one",
            i
        );
        kassert_eq!(f.ref_count(), before[i] + 1 + GUP_PIN_COUNTING_BIAS);
    }
    drop(p);
    kassert_eq!(counts(&space, VA, 8), before);
    kassert!(refs.iter().all(|f| !f.maybe_dma_pinned()));
    Ok(())
}

/// Every bad call is refused with its error and leaves every count as it
/// was, also when the failure comes after some pages were pinned.
fn errors_leave_nothing_pinned(_: &Ctx) -> TestResult {
    let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
    // Pages 0..4 read-write, a hole at 4, pages 5..6 read-only.
    kassert!(space.map_anon(VA, 4 * PAGE, Prot::ReadWrite).is_ok());
    kassert!(
        space
            .map_anon(VA + 5 * PAGE, 2 * PAGE, Prot::ReadOnly)
            .is_ok()
    );
    let before = counts(&space, VA, 4);
    let cases: [(u64, usize, GupFlags, GupError); 7] = [
        (VA, 0, W, GupError::Empty),
        (VA + 8, 1, W, GupError::Misaligned { start: VA + 8 }),
        (
            u64::MAX & !(PAGE - 1),
            2,
            W,
            GupError::Wraps {
                start: u64::MAX & !(PAGE - 1),
                count: 2,
            },
        ),
        (
            0xffff_8000_0000_0000,
            1,
            W,
            GupError::NotUserRange {
                start: 0xffff_8000_0000_0000,
                end: 0xffff_8000_0000_1000,
            },
        ),
        (
            VA,
            6,
            W,
            GupError::NotMapped {
                addr: VA + 4 * PAGE,
            },
        ),
        (
            VA + 5 * PAGE,
            2,
            W,
            GupError::ReadOnly {
                addr: VA + 5 * PAGE,
            },
        ),
        (
            VA,
            kernel::gup::MAX_PAGES + 1,
            W,
            GupError::TooMany {
                count: kernel::gup::MAX_PAGES + 1,
            },
        ),
    ];
    for (start, count, flags, want) in cases {
        let got = pin_user_pages(&space, start, count, flags).err();
        kassert_eq!(got, Some(want));
        kassert_eq!(counts(&space, VA, 4), before);
    }
    // A read pin of the read-only pages is fine.
    kassert!(pin_user_pages(&space, VA + 5 * PAGE, 2, GupFlags::default()).is_ok());
    // A count that would pass 2^31 on the third page: the first two pins
    // are released too.
    {
        let third = get_user_pages(&space, VA + 2 * PAGE, 1, W)
            .unwrap()
            .remove(0);
        let saved = third.ref_count();
        let high = (1u32 << 31) - GUP_PIN_COUNTING_BIAS / 2;
        // SAFETY: a test page of this space only; nothing else takes or
        // drops references on it until the count is put back below.
        unsafe { third.set_ref_count_unshared(high) };
        let got = pin_user_pages(&space, VA, 4, W).err();
        // SAFETY: as above.
        unsafe { third.set_ref_count_unshared(saved) };
        kassert_eq!(
            got,
            Some(GupError::Overflow {
                addr: VA + 2 * PAGE
            })
        );
    }
    kassert_eq!(counts(&space, VA, 4), before);
    // Long-term write pins of a file mapping are refused; read ones are not.
    let c = fresh_cache(1)?;
    let file = c.file(0).unwrap().clone();
    let fva = VA + 64 * PAGE;
    kassert!(
        space
            .map_file(
                fva,
                2 * PAGE,
                Prot::ReadWrite,
                file as Arc<dyn kernel::vm::MapSource>,
                0
            )
            .is_ok()
    );
    let longterm = GupFlags {
        write: true,
        longterm: true,
    };
    kassert_eq!(
        pin_user_pages(&space, fva, 2, longterm).err(),
        Some(GupError::LongtermFileWrite { addr: fva })
    );
    kassert!(
        pin_user_pages(
            &space,
            fva,
            2,
            GupFlags {
                write: false,
                longterm: true
            }
        )
        .is_ok()
    );
    kassert!(space.unmap(fva, 2 * PAGE).is_ok());
    Ok(())
}

fn race_case(ctx: &Ctx, gup: PinScheme) -> TestResult {
    if kernel::smp::online_cpus() < 2 {
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

/// The host-verified torture with DMA engines writing into pinned pages
/// (`crate::pagecache::disk_torture`): with bounce copies the disk
/// holds exactly the manifest's versions (checked here by reading it back,
/// and by the host from the image file).
fn torture_dma(ctx: &Ctx) -> TestResult {
    use crate::pagecache::disk_torture;
    let o = disk_torture::Options::from_params(
        ctx.params,
        "gup.torture_dma",
        contract::disk::TORTURE_DMA_FIRST_BLOCK,
        true,
    );
    let r = disk_torture::run(&o)?;
    kassert!(r.ok(), "gup.torture_dma: {:?}", r.failures);
    kassert!(
        r.dma_writes > 0 && r.bounced > 0 && r.retries > 0,
        "no DMA write, no bounce copy, or no final write failed"
    );
    Ok(())
}

/// The accounting check can fail: a pin still held and a frame still
/// held are each reported (and nothing is once they are given back).
fn accounting_catches_leaks(_: &Ctx) -> TestResult {
    use crate::accounting::Snapshot;
    let space = AddressSpace::new().map_err(|_| TestError::Fail)?;
    kassert!(space.map_anon(VA, PAGE, Prot::ReadWrite).is_ok());
    // Fault the page in first: its frame is not a leak.
    drop(get_user_pages(&space, VA, 1, W).map_err(|_| TestError::Fail)?);
    let before = Snapshot::take();
    kassert!(before.problems(&before).is_empty());
    let pin = pin_user_pages(&space, VA, 1, W).map_err(|_| TestError::Fail)?;
    let found = before.problems(&Snapshot::take());
    println!("    # with a pin held: {found:?}");
    kassert!(
        found.len() == 1 && found[0].contains("1 pages are still maybe-pinned"),
        "a held pin was not reported: {:?}",
        found
    );
    drop(pin);
    let frame = kernel::mm::alloc_pages(0, kernel::mm::AllocFlags::NONE).ok_or(TestError::Fail)?;
    let found = before.problems(&Snapshot::take());
    println!("    # with a frame held: {found:?}");
    kassert!(
        found.len() == 1 && found[0].contains("1 frames lost"),
        "a held frame was not reported: {:?}",
        found
    );
    drop(frame);
    let found = before.problems(&Snapshot::take());
    kassert!(found.is_empty(), "after giving both back: {:?}", found);
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "gup",
    cases: &[
        Case {
            name: "pin_and_unpin_restore_counts",
            run: pin_and_unpin_restore_counts,
        },
        Case {
            name: "errors_leave_nothing_pinned",
            run: errors_leave_nothing_pinned,
        },
        Case {
            name: "dma_during_writeback",
            run: dma::dma_during_writeback,
        },
        Case {
            name: "race_lock_scheme",
            run: race_lock_scheme,
        },
        Case {
            name: "race_barrier_scheme",
            run: race_barrier_scheme,
        },
        Case {
            name: "accounting_catches_leaks",
            run: accounting_catches_leaks,
        },
        Case {
            name: "torture_dma",
            run: torture_dma,
        },
    ],
    accounted: true,
    ..Suite::DEFAULTS
};
