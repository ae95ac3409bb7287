//! The `mm` suite: the frame array describes RAM, the allocator accounts for
//! every frame (also with all CPUs at once), free blocks coalesce back, each
//! broken rule is caught, and the heap works.
//!
//! Exact accounting needs quiet: the cases run on the boot CPU while the
//! other CPUs idle, and drain the per-CPU caches before each count.

pub mod bench;

use alloc::{boxed::Box, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use pagesync::{
    Page,
    flags::{PG_LOCKED, PG_REFERENCED, PG_RESERVED},
    refcount::{REFCOUNT_WRAP_MARGIN, RefError},
};

use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestResult},
};
use kernel::mm::{
    AllocFlags, Frame, FreeError, LOW_LIMIT, MAX_ORDER, PAGE_SIZE, Pfn, alloc_pages, buddy,
    frame_array::{self, page, pfn_of},
    heap,
    page_alloc::free_frames,
    pcp, try_free_raw,
};

/// Free frames and free blocks per order, with all caches drained.
fn snapshot() -> (u64, [u64; buddy::NR_ORDERS]) {
    pcp::drain_all();
    (free_frames(), buddy::blocks_per_order())
}

use contract::rng::Rng;

fn descriptor_layout(_: &Ctx) -> TestResult {
    kassert_eq!(core::mem::size_of::<Page>(), 64);
    kassert_eq!(core::mem::align_of::<Page>(), 64);
    let st = frame_array::stats();
    kassert!(
        st.described * 4096 >= st.ram_bytes - 4096 * 16,
        "described {} frames for {} bytes",
        st.described,
        st.ram_bytes
    );
    let mut checked = 0;
    for (start, end) in frame_array::sections() {
        let (start, end) = (start.0, end.0);
        for pfn in [start, start + 1, (start + end) / 2, end - 1].map(Pfn) {
            let p = page(pfn);
            kassert!(p.is_some(), "no descriptor for pfn {:#x}", pfn);
            kassert_eq!(pfn_of(p.unwrap()), pfn);
            kassert_eq!(frame_array::pfn_of_virt(frame_array::virt(pfn)), pfn);
            checked += 1;
        }
        kassert!(page(Pfn(end)).is_none() || end % (1 << frame_array::SECTION_SHIFT) == 0);
    }
    kassert!(checked >= 4);
    kassert!(page(Pfn(st.end_pfn + (1 << 20))).is_none());
    Ok(())
}

fn reserved_frames(_: &Ctx) -> TestResult {
    let st = frame_array::stats();
    for pfn in 0..LOW_LIMIT / PAGE_SIZE as u64 {
        if let Some(p) = page(Pfn(pfn)) {
            kassert!(
                p.flags().test(PG_RESERVED),
                "low frame {:#x} not reserved",
                pfn
            );
        }
    }
    for pfn in st.array_phys / 4096..(st.array_phys + st.array_bytes) / 4096 {
        kassert!(
            page(Pfn(pfn)).unwrap().flags().test(PG_RESERVED),
            "array frame {:#x} not reserved",
            pfn
        );
    }
    Ok(())
}

/// The raw free path's input: a block whose reference no handle holds any
/// more (what the kernel's address-only owners, page tables and DMA
/// buffers, keep with `Frame::into_raw`, which is the kernel's alone).
fn give_up(f: Frame) -> Pfn {
    let pfn = f.pfn();
    core::mem::forget(f);
    pfn
}

/// Allocates every free frame (linking them through their own memory, so
/// the test needs no heap), checks a per-frame pattern, frees them all:
/// the free count and the per-order free blocks return exactly.
fn alloc_all_free_all(_: &Ctx) -> TestResult {
    let (free0, blocks0) = snapshot();
    let mut head: u64 = u64::MAX;
    let mut n = 0u64;
    while let Some(p) = alloc_pages(0, AllocFlags::NONE) {
        let Pfn(pfn) = give_up(p);
        let words = frame_array::virt(Pfn(pfn)).cast::<u64>();
        // SAFETY: the frame is ours and mapped; 512 words per frame.
        unsafe {
            words.write(head);
            words.add(1).write(pfn ^ 0x5a5a_5a5a_5a5a_5a5a);
            words.add(511).write(!pfn);
        }
        head = pfn;
        n += 1;
    }
    kassert_eq!(n, free0);
    kassert_eq!(free_frames(), 0);
    let mut bad = 0u64;
    while head != u64::MAX {
        let words = frame_array::virt(Pfn(head)).cast::<u64>();
        // SAFETY: every frame on the chain is ours and was written above.
        let (next, a, b) = unsafe { (words.read(), words.add(1).read(), words.add(511).read()) };
        if a != head ^ 0x5a5a_5a5a_5a5a_5a5a || b != !head {
            bad += 1;
        }
        kassert_eq!(try_free_raw(Pfn(head), 0), Ok(()));
        head = next;
    }
    kassert_eq!(bad, 0);
    let (free1, blocks1) = snapshot();
    kassert_eq!(free1, free0);
    kassert_eq!(blocks1, blocks0);
    kernel::println!(
        "    # {} frames ({} MiB) allocated, checked and freed",
        n,
        (n * 4096) >> 20
    );
    Ok(())
}

/// Blocks of random orders, freed in random order, merge back into exactly
/// the blocks there were before.
fn coalescing(ctx: &Ctx) -> TestResult {
    const N: usize = 1500;
    let mut held: Vec<Option<Frame>> = Vec::with_capacity(N);
    let (free0, blocks0) = snapshot();
    let mut rng = Rng::new(ctx.params.seed);
    for _ in 0..N {
        // Mostly small blocks, a few up to MAX_ORDER; allocation may fail
        // at small memory sizes, which the test allows.
        let order = match rng.next() % 100 {
            0..=49 => 0,
            50..=84 => 1 + (rng.next() % 3) as u32,
            85..=97 => 4 + (rng.next() % 4) as u32,
            _ => 8 + (rng.next() % (MAX_ORDER as u64 - 7)) as u32,
        };
        held.push(alloc_pages(order, AllocFlags::NONE));
    }
    kassert!(held.iter().filter(|h| h.is_some()).count() > N / 4);
    for i in (1..N).rev() {
        held.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    for h in held.iter_mut() {
        drop(h.take());
    }
    let (free1, blocks1) = snapshot();
    kassert_eq!(free1, free0);
    kassert_eq!(blocks1, blocks0);
    Ok(())
}

fn zeroed_allocation(_: &Ctx) -> TestResult {
    let p = alloc_pages(2, AllocFlags::NONE).unwrap();
    kassert_eq!(p.phys(), p.pfn().0 << 12);
    kassert_eq!((p.order(), p.bytes()), (2, 4 * PAGE_SIZE));
    // SAFETY: the block is ours and mapped.
    unsafe { core::ptr::write_bytes(p.virt(), 0xa5, p.bytes()) };
    drop(p);
    for order in [0, 2, 5] {
        let z = alloc_pages(order, AllocFlags::ZERO).unwrap();
        // SAFETY: the block is ours, mapped, and initialised (zeroed).
        let bytes = unsafe { core::slice::from_raw_parts(z.virt(), z.bytes()) };
        kassert!(
            bytes.iter().all(|&b| b == 0),
            "order-{} zeroed block has non-zero bytes",
            order
        );
    }
    Ok(())
}

fn double_free_caught(_: &Ctx) -> TestResult {
    let pfn = give_up(alloc_pages(0, AllocFlags::NONE).unwrap());
    kassert_eq!(try_free_raw(pfn, 0), Ok(()));
    kassert_eq!(try_free_raw(pfn, 0), Err(FreeError::DoubleFree));
    kassert_eq!(page(pfn).unwrap().ref_count(), 0);
    // A tail frame of a live block is not a block of its own, and a block
    // is freed with the order it was allocated with.
    let pfn = give_up(alloc_pages(3, AllocFlags::NONE).unwrap());
    kassert_eq!(try_free_raw(pfn.add(2), 1), Err(FreeError::DoubleFree));
    kassert_eq!(
        try_free_raw(pfn, 2),
        Err(FreeError::WrongOrder { recorded: 3 })
    );
    kassert_eq!(page(pfn).unwrap().ref_count(), 1);
    kassert_eq!(try_free_raw(pfn, 3), Ok(()));
    Ok(())
}

/// Frame handles count references: clones add, drops remove, the raw free
/// refuses while others hold some, and the last drop frees the frame.
fn free_referenced_caught(_: &Ctx) -> TestResult {
    let f = alloc_pages(0, AllocFlags::NONE).unwrap();
    let g = f.clone();
    let h = f.try_clone();
    kassert!(h.is_ok());
    kassert_eq!(f.ref_count(), 3);
    drop(h);
    let pfn = f.pfn();
    kassert_eq!(
        try_free_raw(pfn, 0),
        Err(FreeError::Referenced { count: 2 })
    );
    kassert_eq!(g.ref_count(), 2);
    let again = Frame::try_get_pfn(pfn);
    kassert!(again.is_ok());
    kassert_eq!(g.ref_count(), 3);
    drop(again);
    drop(g);
    let before = free_frames();
    drop(f); // the last reference frees it
    kassert_eq!(free_frames(), before + 1);
    kassert_eq!(try_free_raw(pfn, 0), Err(FreeError::DoubleFree));
    kassert!(Frame::try_get_pfn(pfn).is_err());
    Ok(())
}

fn free_reserved_caught(_: &Ctx) -> TestResult {
    kassert_eq!(try_free_raw(Pfn(0x10), 0), Err(FreeError::Reserved));
    let st = frame_array::stats();
    kassert_eq!(
        try_free_raw(Pfn::from_phys(st.array_phys), 0),
        Err(FreeError::Reserved)
    );
    kassert_eq!(page(Pfn(0x10)).unwrap().ref_count(), 1);
    kassert_eq!(
        try_free_raw(Pfn(st.end_pfn + (1 << 20)), 0),
        Err(FreeError::NotDescribed)
    );
    Ok(())
}

fn refcount_overflow_caught(_: &Ctx) -> TestResult {
    let p = alloc_pages(0, AllocFlags::NONE).unwrap();
    let limit = u32::MAX - REFCOUNT_WRAP_MARGIN;
    // SAFETY: nobody else knows this frame.
    unsafe { p.set_ref_count_unshared(limit - 1) };
    let one_more = p.try_clone().map(give_up);
    kassert_eq!(one_more, Ok(p.pfn()));
    kassert_eq!(p.try_clone().err(), Some(RefError::Overflow));
    kassert_eq!(p.ref_count(), limit);
    // GUP-style gets stop at 2^31, long before.
    kassert_eq!(Frame::try_get_pfn(p.pfn()).err(), Some(RefError::Overflow));
    // SAFETY: as above; back to our one reference.
    unsafe { p.set_ref_count_unshared(1) };
    let pfn = p.pfn();
    drop(p);
    kassert_eq!(Frame::try_get_pfn(pfn).err(), Some(RefError::Unused));
    Ok(())
}

fn free_bad_state_caught(_: &Ctx) -> TestResult {
    let p = alloc_pages(0, AllocFlags::NONE).unwrap();
    kassert!(!p.flags().test_and_set_bit_lock(PG_LOCKED));
    kassert!(matches!(
        try_free_raw(p.pfn(), 0),
        Err(FreeError::BadFlags { .. })
    ));
    kassert_eq!(p.ref_count(), 1);
    p.flags().clear_bit_unlock(PG_LOCKED);
    p.map_inc();
    kassert_eq!(
        try_free_raw(p.pfn(), 0),
        Err(FreeError::Mapped { mapcount: 1 })
    );
    p.map_dec();
    let q = alloc_pages(1, AllocFlags::NONE).unwrap();
    kassert_eq!(try_free_raw(q.pfn().add(1), 1), Err(FreeError::Misaligned));
    // A flag left set on a freed frame is cleared by the free.
    p.flags().set(PG_REFERENCED);
    drop(p);
    drop(q);
    Ok(())
}

fn pcp_switch(ctx: &Ctx) -> TestResult {
    let (free0, _) = snapshot();
    let held: [_; 40] = core::array::from_fn(|_| alloc_pages(0, AllocFlags::NONE));
    drop(held);
    pcp::set_enabled(false);
    kassert_eq!(pcp::cached_frames(), 0);
    let p = alloc_pages(0, AllocFlags::NONE);
    kassert!(p.is_some());
    drop(p);
    kassert_eq!(pcp::cached_frames(), 0);
    kassert_eq!(free_frames(), free0);
    pcp::set_enabled(ctx.params.pcp);
    Ok(())
}

fn heap_smoke(_: &Ctx) -> TestResult {
    let b = Box::new([7u64; 64]);
    kassert_eq!(b.iter().sum::<u64>(), 7 * 64);
    let mut v: Vec<u64> = Vec::new();
    for i in 0..200_000u64 {
        v.push(i);
    }
    kassert_eq!(v.iter().sum::<u64>(), 200_000 * 199_999 / 2);
    let big: Vec<u8> = alloc::vec![0xcc; 3 << 20];
    kassert!(big.iter().all(|&x| x == 0xcc));
    let aligned = alloc::alloc::Layout::from_size_align(8192, 4096).unwrap();
    // SAFETY: a valid non-zero-size layout; freed with the same layout.
    let ptr = unsafe { alloc::alloc::alloc(aligned) };
    kassert!(!ptr.is_null() && (ptr as usize).is_multiple_of(4096));
    // SAFETY: allocated above with this layout.
    unsafe { alloc::alloc::dealloc(ptr, aligned) };
    let (bytes, grows) = heap::stats();
    kassert!(
        bytes >= 3 << 20 && grows >= 1,
        "heap has {} bytes from {} growths",
        bytes,
        grows
    );
    Ok(())
}

/// Operations each CPU performs in [`concurrent_alloc_free`].
const CONCURRENT_ROUNDS: u64 = 2000;

/// One CPU's share of the concurrent test: rounds of allocating a few
/// blocks (mostly single frames), stamping them with the CPU and round,
/// checking the stamps, and freeing them. Returns the stamp mismatches.
fn concurrent_body(cpu: usize, ops: &AtomicU64) -> u64 {
    let mut rng = Rng::new(cpu as u64 + 1);
    let mut bad = 0;
    for round in 0..CONCURRENT_ROUNDS {
        let mut held: [Option<Frame>; 8] = Default::default();
        for h in held.iter_mut() {
            let order = if rng.next().is_multiple_of(4) {
                (rng.next() % 4) as u32
            } else {
                0
            };
            *h = alloc_pages(order, AllocFlags::NONE);
            if let Some(p) = h {
                let stamp = ((cpu as u64) << 48) | (round << 8) | u64::from(p.order());
                // SAFETY: the block is ours and mapped.
                unsafe { p.virt().cast::<u64>().write_volatile(stamp) };
            }
        }
        for h in held.iter_mut() {
            if let Some(p) = h.take() {
                let stamp = ((cpu as u64) << 48) | (round << 8) | u64::from(p.order());
                // SAFETY: as above.
                if unsafe { p.virt().cast::<u64>().read_volatile() } != stamp {
                    bad += 1;
                }
                drop(p);
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    bad
}

fn concurrent_alloc_free(_: &Ctx) -> TestResult {
    let (free0, blocks0) = snapshot();
    let ops = AtomicU64::new(0);
    let bad = AtomicU64::new(0);
    let n = kernel::smp::online_cpus();
    kernel::smp::run_on_all_cpus(&|cpu| {
        bad.fetch_add(concurrent_body(cpu, &ops), Ordering::Relaxed);
    });
    kassert_eq!(bad.load(Ordering::Relaxed), 0);
    kassert_eq!(
        ops.load(Ordering::Relaxed),
        n as u64 * CONCURRENT_ROUNDS * 8
    );
    let (free1, blocks1) = snapshot();
    kassert_eq!(free1, free0);
    kassert_eq!(blocks1, blocks0);
    kernel::println!(
        "    # {} CPUs, {} alloc/free pairs",
        n,
        ops.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Rounds of the test-and-set race.
const TAS_ROUNDS: u64 = 2000;

/// State shared by the CPUs racing in [`test_and_set_one_winner`].
struct TasRace<'a> {
    page: &'a Page,
    /// The round the CPUs may play; advanced by CPU 0 (Release, pairs with
    /// the Acquire polls of the others, so they see the bit cleared).
    round: AtomicU64,
    /// CPUs done with the current round (AcqRel: CPU 0's Acquire read sees
    /// each player's win counted).
    arrived: AtomicU64,
    winners: AtomicU64,
    bad_rounds: AtomicU64,
}

/// One CPU's side: in each round, one `test_and_set` on the shared bit.
fn tas_body(cpu: usize, ncpus: u64, race: &TasRace) {
    for r in 0..TAS_ROUNDS {
        while race.round.load(Ordering::Acquire) != r {
            core::hint::spin_loop();
        }
        if !race.page.flags().test_and_set(PG_REFERENCED) {
            race.winners.fetch_add(1, Ordering::Relaxed);
        }
        race.arrived.fetch_add(1, Ordering::AcqRel);
        if cpu == 0 {
            while race.arrived.load(Ordering::Acquire) != ncpus * (r + 1) {
                core::hint::spin_loop();
            }
            if race.winners.swap(0, Ordering::Relaxed) != 1 {
                race.bad_rounds.fetch_add(1, Ordering::Relaxed);
            }
            race.page.flags().clear(PG_REFERENCED);
            race.round.store(r + 1, Ordering::Release);
        }
    }
}

fn test_and_set_one_winner(_: &Ctx) -> TestResult {
    let p = alloc_pages(0, AllocFlags::NONE).unwrap();
    let race = TasRace {
        page: p.page(),
        round: AtomicU64::new(0),
        arrived: AtomicU64::new(0),
        winners: AtomicU64::new(0),
        bad_rounds: AtomicU64::new(0),
    };
    let n = kernel::smp::online_cpus() as u64;
    kernel::smp::run_on_all_cpus(&|cpu| tas_body(cpu, n, &race));
    kassert_eq!(race.bad_rounds.load(Ordering::Relaxed), 0);
    kassert_eq!(race.round.load(Ordering::Relaxed), TAS_ROUNDS);
    kernel::println!("    # {} CPUs, {} rounds, one winner each", n, TAS_ROUNDS);
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "mm",
    cases: &[
        Case {
            name: "descriptor_layout",
            run: descriptor_layout,
        },
        Case {
            name: "reserved_frames",
            run: reserved_frames,
        },
        Case {
            name: "alloc_all_free_all",
            run: alloc_all_free_all,
        },
        Case {
            name: "coalescing",
            run: coalescing,
        },
        Case {
            name: "zeroed_allocation",
            run: zeroed_allocation,
        },
        Case {
            name: "double_free_caught",
            run: double_free_caught,
        },
        Case {
            name: "free_referenced_caught",
            run: free_referenced_caught,
        },
        Case {
            name: "free_reserved_caught",
            run: free_reserved_caught,
        },
        Case {
            name: "refcount_overflow_caught",
            run: refcount_overflow_caught,
        },
        Case {
            name: "free_bad_state_caught",
            run: free_bad_state_caught,
        },
        Case {
            name: "pcp_switch",
            run: pcp_switch,
        },
        Case {
            name: "heap_smoke",
            run: heap_smoke,
        },
        Case {
            name: "concurrent_alloc_free",
            run: concurrent_alloc_free,
        },
        Case {
            name: "test_and_set_one_winner",
            run: test_and_set_one_winner,
        },
    ],
    accounted: true,
    ..Suite::DEFAULTS
};

/// `crash=doublefree`: frees one frame twice through the public path, which
/// must panic with the descriptor dump.
pub fn deliberate_double_free() -> ! {
    let p = alloc_pages(0, AllocFlags::NONE).expect("a free frame");
    let pfn = p.pfn();
    let q = p.clone();
    // SAFETY: not safe at all: the count forgets `q`'s reference, so `p`'s
    // drop frees the block and `q`'s is the second free, meant to be
    // caught.
    unsafe { p.set_ref_count_unshared(1) };
    drop(p);
    drop(q);
    unreachable!("mm: double free of pfn {pfn:#x} was not caught");
}
