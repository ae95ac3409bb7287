//! The `vm` suite: address spaces with real page faults, real IPIs, and
//! exact accounting.
//!
//! Threads run in the spaces under test (`sched::spawn_in`), so every fault
//! counted here is a #PF the CPU raised and `vm::handle_page_fault`
//! resolved. The cases run on the boot CPU and put their threads on CPU 1
//! when there is one, so shoot-downs cross CPUs. Each case checks what can
//! go wrong; `tlb_shootdown_known_bad` runs the shoot-down check against the
//! known-bad variant that skips the IPIs and requires the check to fail.

pub mod bench;
pub mod source;

use alloc::{sync::Arc, vec, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagesync::flags::PG_DIRTY;

use self::source::{TestSource, Worker, pattern, read, run_in, write};
use crate::{
    kassert, kassert_eq,
    ktest::{Case, Ctx, Suite, TestError, TestResult},
};
use kernel::{
    arch::{
        handlers::{PageFault, PageFaultOutcome},
        paging,
    },
    mm::{Pfn, frame_array, page_alloc::free_frames, pcp},
    pagelock,
    vm::{
        AddressSpace, DirtyPage, KnownBad, Prot, RegionInfo, SpaceStats, Translation, USER_BASE,
        USER_END, VmError, handle_page_fault,
    },
};

const PAGE: u64 = 4096;

/// The CPU the cases' threads run on: 1 if there is one (so shoot-downs
/// cross CPUs), else 0.
fn far_cpu() -> usize {
    usize::from(kernel::smp::online_cpus() > 1)
}

fn space() -> Arc<AddressSpace> {
    AddressSpace::new().expect("a frame for the root")
}

fn refcount(pfn: Pfn) -> u32 {
    frame_array::page(pfn).expect("RAM").ref_count()
}

fn mapcount(pfn: Pfn) -> i32 {
    frame_array::page(pfn).expect("RAM").mapcount()
}

/// A thread in the space writes 16 anonymous pages, then reads them back:
/// 16 real faults, none on the second pass; each page mapped once, writable
/// and dirty, its frame held by the entry alone.
fn anon_demand_paging(_: &Ctx) -> TestResult {
    const VA: u64 = 0x4000_0000;
    const N: u64 = 16;
    let s = space();
    s.map_anon(VA, N * PAGE, Prot::ReadWrite).expect("map anon");
    kassert_eq!(s.stats().hw_faults, 0);
    let ok = run_in(&s, far_cpu(), || {
        for i in 0..N {
            write(VA + i * PAGE + 8 * i, pattern(i));
        }
        (0..N).all(|i| read(VA + i * PAGE + 8 * i) == pattern(i))
    });
    kassert!(ok, "a page lost its value");
    let st: SpaceStats = s.stats();
    kassert_eq!(st.hw_faults, N);
    kassert_eq!(st.anon_pages, N);
    kassert_eq!(st.spurious, 0);
    let again = run_in(&s, far_cpu(), || {
        (0..N).fold(0u64, |a, i| {
            a ^ read(VA + i * PAGE + 8 * i).rotate_left(i as u32)
        })
    });
    kassert_eq!(
        again,
        (0..N).fold(0u64, |a, i| a ^ pattern(i).rotate_left(i as u32))
    );
    kassert_eq!(s.stats().hw_faults, N);
    for i in 0..N {
        let t = s.translate(VA + i * PAGE);
        kassert!(t.is_some(), "page {} not mapped", i);
        let t: Translation = t.unwrap();
        kassert!(t.writable && t.dirty && t.accessed, "page {}: {:?}", i, t);
        kassert_eq!(refcount(t.pfn), 1);
        kassert_eq!(mapcount(t.pfn), 1);
    }
    kassert!(s.translate(VA + N * PAGE).is_none());
    kassert_eq!(s.cpu_set(), 0);
    Ok(())
}

/// `fault_in` returns the frame the thread sees, both ways: a page the
/// thread wrote, and a page `fault_in` faulted in and wrote through the
/// kernel's alias, which the thread then reads without faulting.
fn fault_in_same_frame(_: &Ctx) -> TestResult {
    const VA: u64 = 0x10_0000_0000;
    const RO: u64 = 0x20_0000_0000;
    let s = space();
    s.map_anon(VA, 4 * PAGE, Prot::ReadWrite).unwrap();
    s.map_anon(RO, PAGE, Prot::ReadOnly).unwrap();
    run_in(&s, far_cpu(), || write(VA + 16, 0xfeed));
    let f = s.fault_in(VA + 20, false).expect("fault_in a mapped page");
    let t = s.translate(VA).expect("mapped");
    kassert_eq!(f.pfn(), t.pfn);
    // SAFETY: `f` holds a reference; the physical map covers it.
    kassert_eq!(
        unsafe { f.virt().cast::<u64>().add(2).read_volatile() },
        0xfeed
    );
    kassert_eq!(refcount(t.pfn), 2);
    kassert_eq!(mapcount(t.pfn), 1);
    kassert_eq!(s.stats().soft_faults, 0);

    let g = s
        .fault_in(VA + 3 * PAGE, true)
        .expect("fault_in an untouched page");
    kassert_eq!(s.stats().soft_faults, 1);
    let t3 = s.translate(VA + 3 * PAGE).expect("faulted in");
    kassert_eq!(g.pfn(), t3.pfn);
    kassert!(t3.dirty, "a write fault_in marks the entry dirty");
    // SAFETY: as above.
    unsafe { g.virt().cast::<u64>().write_volatile(0xabcd) };
    let faults = s.stats().hw_faults;
    let seen = run_in(&s, far_cpu(), || read(VA + 3 * PAGE));
    kassert_eq!(seen, 0xabcd);
    kassert_eq!(s.stats().hw_faults, faults);

    kassert_eq!(
        s.fault_in(VA + 8 * PAGE, false).map(|_| ()),
        Err(VmError::NoRegion {
            addr: VA + 8 * PAGE
        })
    );
    kassert_eq!(
        s.fault_in(RO, true).map(|_| ()),
        Err(VmError::WriteToReadOnly {
            addr: RO,
            start: RO,
            end: RO + PAGE
        })
    );
    kassert!(s.translate(RO).is_none(), "a refused write mapped nothing");
    drop(f);
    kassert_eq!(refcount(t.pfn), 1);
    Ok(())
}

/// A shared writable file region: reads map the source's pages read-only
/// with no `page_mkwrite`; a write faults, `page_mkwrite` runs with the page
/// locked and dirties it, and the entry becomes writable and (by the MMU)
/// dirty. A read-only file region maps read-only.
fn file_faults(_: &Ctx) -> TestResult {
    const VA: u64 = 0x30_0000_0000;
    const RO: u64 = 0x31_0000_0000;
    let src = TestSource::new(8);
    let s = space();
    let m = s
        .map_file(VA, 4 * PAGE, Prot::ReadWrite, src.clone(), 2)
        .expect("map file");
    kassert_eq!(src.mappings.lock().as_slice(), core::slice::from_ref(&m));
    kassert_eq!(
        (m.start(), m.end(), m.first_index(), m.pages()),
        (VA, VA + 4 * PAGE, 2, 4)
    );
    kassert_eq!(
        (
            m.address_of(1),
            m.address_of(2),
            m.address_of(5),
            m.address_of(6)
        ),
        (None, Some(VA), Some(VA + 3 * PAGE), None)
    );
    let words = run_in(&s, far_cpu(), || {
        (0..4).map(|i| read(VA + i * PAGE)).collect::<Vec<_>>()
    });
    kassert_eq!(words, (2..6).map(pattern).collect::<Vec<_>>());
    let st = s.stats();
    kassert_eq!(st.hw_faults, 4);
    kassert_eq!(st.file_pages, 4);
    kassert_eq!(st.mkwrites, 0);
    kassert!(src.mkwrites.lock().is_empty());
    for i in 0..4 {
        let t = s.translate(VA + i * PAGE).expect("mapped");
        kassert_eq!(t.pfn, src.frame(2 + i).pfn());
        kassert!(!t.writable && !t.dirty, "read fault mapped {:?}", t);
        kassert_eq!(refcount(t.pfn), 2);
        kassert_eq!(mapcount(t.pfn), 1);
        kassert!(!src.frame(2 + i).flags().test(PG_DIRTY));
    }
    // Write to a page mapped read-only: the write-notify fault.
    run_in(&s, far_cpu(), || {
        write(VA + PAGE + 8, 0x1111);
        write(VA + PAGE + 16, 0x2222);
    });
    kassert_eq!(s.stats().hw_faults, 5);
    kassert_eq!(src.mkwrites.lock().as_slice(), &[3]);
    kassert!(
        src.mkwrite_saw_lock.load(Ordering::Relaxed),
        "page_mkwrite ran on an unlocked page"
    );
    kassert!(src.frame(3).flags().test(PG_DIRTY));
    kassert!(!src.frame(2).flags().test(PG_DIRTY) && !src.frame(4).flags().test(PG_DIRTY));
    let t = s.translate(VA + PAGE).unwrap();
    kassert!(t.writable && t.dirty, "after the write: {:?}", t);
    // SAFETY: the source's frame, through the physical map.
    kassert_eq!(
        unsafe { src.frame(3).virt().cast::<u64>().add(1).read_volatile() },
        0x1111
    );
    // A second page: its own write-notify fault and page_mkwrite.
    run_in(&s, far_cpu(), || write(VA + 3 * PAGE, 7));
    kassert_eq!(s.stats().hw_faults, 6);
    kassert_eq!(src.mkwrites.lock().as_slice(), &[3, 5]);
    kassert_eq!(s.stats().mkwrites, 2);
    kassert_eq!(src.word(5), 7);
    let _ = s
        .map_file(RO, 2 * PAGE, Prot::ReadOnly, src.clone(), 6)
        .unwrap();
    let ro = run_in(&s, far_cpu(), || read(RO + PAGE));
    kassert_eq!(ro, pattern(7));
    let t = s.translate(RO + PAGE).unwrap();
    kassert!(!t.writable && !t.dirty);
    kassert_eq!(src.mappings.lock().len(), 2);
    drop(s);
    kassert!(src.mappings.lock().is_empty(), "dropping the space unmaps");
    kassert_eq!(src.unmaps.load(Ordering::Relaxed), 2);
    for i in 0..8 {
        kassert_eq!(refcount(src.frame(i).pfn()), 1);
        kassert_eq!(mapcount(src.frame(i).pfn()), 0);
    }
    Ok(())
}

/// A write fault on an empty entry of a shared writable file region goes
/// through `page_mkwrite` before the page is mapped (writable). The source
/// first answers `Retry` (its page was replaced): the fault starts over
/// and asks again, within the same hardware fault.
fn file_write_fault_on_empty_entry(_: &Ctx) -> TestResult {
    const VA: u64 = 0x38_0000_0000;
    let src = TestSource::new(2);
    let s = space();
    s.map_file(VA, 2 * PAGE, Prot::ReadWrite, src.clone(), 0)
        .unwrap();
    src.retry_next_get.store(true, Ordering::Relaxed);
    run_in(&s, far_cpu(), || write(VA + PAGE, 0x77));
    kassert_eq!(src.gets.load(Ordering::Relaxed), 2);
    kassert_eq!(s.stats().hw_faults, 1);
    kassert_eq!(s.stats().mkwrites, 1);
    kassert_eq!(src.mkwrites.lock().as_slice(), &[1]);
    kassert!(src.mkwrite_saw_lock.load(Ordering::Relaxed));
    kassert!(src.frame(1).flags().test(PG_DIRTY));
    let t = s.translate(VA + PAGE).unwrap();
    kassert!(t.writable && t.dirty);
    kassert_eq!(src.word(1), 0x77);
    Ok(())
}

/// Every bad range is refused with its own error, and nothing changes: no
/// region, no page table, no `mapped` call.
fn bad_ranges(_: &Ctx) -> TestResult {
    const R: u64 = 0x100_0000;
    let s = space();
    s.map_anon(R, 4 * PAGE, Prot::ReadWrite).unwrap();
    let before = s.regions();
    let src = TestSource::new(2);
    let anon = |start, len| s.map_anon(start, len, Prot::ReadWrite);
    kassert_eq!(
        anon(0x200_0000, 0),
        Err(VmError::Empty { start: 0x200_0000 })
    );
    kassert_eq!(
        anon(0x200_0010, PAGE),
        Err(VmError::Misaligned {
            start: 0x200_0010,
            len: PAGE
        })
    );
    kassert_eq!(
        anon(0x200_0000, 100),
        Err(VmError::Misaligned {
            start: 0x200_0000,
            len: 100
        })
    );
    kassert_eq!(
        anon(0xffff_ffff_ffff_f000, 2 * PAGE),
        Err(VmError::Wraps {
            start: 0xffff_ffff_ffff_f000,
            len: 2 * PAGE
        })
    );
    kassert_eq!(
        anon(0, PAGE),
        Err(VmError::NotUserRange {
            start: 0,
            end: PAGE
        })
    );
    kassert_eq!(
        anon(USER_END - PAGE, 2 * PAGE),
        Err(VmError::NotUserRange {
            start: USER_END - PAGE,
            end: USER_END + PAGE
        })
    );
    kassert_eq!(
        anon(paging::UPPER_HALF, PAGE),
        Err(VmError::NotUserRange {
            start: paging::UPPER_HALF,
            end: paging::UPPER_HALF + PAGE
        })
    );
    let overlap = |start: u64, end: u64| {
        Err(VmError::Overlap {
            start,
            end,
            existing_start: R,
            existing_end: R + 4 * PAGE,
        })
    };
    for (start, pages) in [
        (R - PAGE, 2),     // over the start
        (R + 3 * PAGE, 2), // over the end
        (R - PAGE, 6),     // around
        (R + PAGE, 1),     // inside
        (R, 4),            // the same
    ] {
        kassert_eq!(
            anon(start, pages * PAGE),
            overlap(start, start + pages * PAGE)
        );
    }
    kassert_eq!(
        s.map_file(R + PAGE, PAGE, Prot::ReadOnly, src.clone(), 0)
            .map(|_| ()),
        overlap(R + PAGE, R + 2 * PAGE)
    );
    kassert_eq!(
        s.map_file(0x300_0000, 2 * PAGE, Prot::ReadOnly, src.clone(), u64::MAX)
            .map(|_| ()),
        Err(VmError::IndexOverflow {
            first_index: u64::MAX,
            pages: 2
        })
    );
    kassert!(
        src.mappings.lock().is_empty(),
        "a refused map reached the source"
    );
    kassert_eq!(src.unmaps.load(Ordering::Relaxed), 0);
    kassert_eq!(
        s.unmap(R + 1, PAGE),
        Err(VmError::Misaligned {
            start: R + 1,
            len: PAGE
        })
    );
    kassert_eq!(
        s.unmap(paging::UPPER_HALF, PAGE),
        Err(VmError::NotUserRange {
            start: paging::UPPER_HALF,
            end: paging::UPPER_HALF + PAGE
        })
    );
    kassert_eq!(
        s.unmap(USER_BASE - PAGE, 2 * PAGE),
        Err(VmError::NotUserRange {
            start: USER_BASE - PAGE,
            end: USER_BASE + PAGE
        })
    );
    kassert_eq!(s.regions(), before);
    kassert_eq!(
        before,
        vec![RegionInfo {
            start: R,
            end: R + 4 * PAGE,
            prot: Prot::ReadWrite,
            file_index: None
        }]
    );
    kassert_eq!(s.stats().table_frames, 0);
    kassert!(s.translate(R).is_none());
    kassert_eq!(
        s.fault_in(0x200_0000, false).map(|_| ()),
        Err(VmError::NoRegion { addr: 0x200_0000 })
    );
    kassert_eq!(s.stats().table_frames, 0);
    Ok(())
}

/// The MMU sets the Dirty bit: a read maps the page clean, a later write
/// (no fault: the page is already writable) makes it dirty, and the sync
/// walk finds exactly that page.
fn hardware_dirty_bit(_: &Ctx) -> TestResult {
    const VA: u64 = 0x40_0000_0000;
    let s = space();
    s.map_anon(VA, 4 * PAGE, Prot::ReadWrite).unwrap();
    let w = Worker::start(&s, far_cpu());
    w.read(VA + PAGE);
    w.read(VA + 2 * PAGE);
    let t = s.translate(VA + PAGE).unwrap();
    kassert!(
        t.writable && t.accessed && !t.dirty,
        "after a read: {:?}",
        t
    );
    kassert_eq!(s.stats().hw_faults, 2);
    w.write(VA + PAGE, 5);
    kassert_eq!(s.stats().hw_faults, 2);
    kassert!(
        s.translate(VA + PAGE).unwrap().dirty,
        "the write set no Dirty bit"
    );
    kassert!(!s.translate(VA + 2 * PAGE).unwrap().dirty);
    w.stop();
    let dirty: Vec<DirtyPage> = s.dirty_pages(VA, 4 * PAGE).unwrap();
    kassert_eq!(dirty.len(), 1);
    kassert_eq!(dirty[0].va, VA + PAGE);
    kassert_eq!(dirty[0].frame.pfn(), t.pfn);
    Ok(())
}

/// Two threads on one CPU, each in its own space, share an address: the
/// context switch loads each one's CR3, so each keeps seeing its own page
/// across hundreds of switches; each space's CPU set names the CPU only
/// while a thread of it runs there.
fn context_switch_loads_cr3(_: &Ctx) -> TestResult {
    const VA: u64 = 0x50_0000_0000;
    let cpu = far_cpu();
    let (a, b) = (space(), space());
    a.map_anon(VA, PAGE, Prot::ReadWrite).unwrap();
    b.map_anon(VA, PAGE, Prot::ReadWrite).unwrap();
    let bad = Arc::new(AtomicU64::new(0));
    let in_set = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (tag, s) in [(0xaaaa, &a), (0xbbbb, &b)] {
        let (bad, in_set, s2) = (bad.clone(), in_set.clone(), s.clone());
        threads.push(
            kernel::sched::spawn_in("vm-cr3", Some(cpu), Some(s.thread_space()), move || {
                write(VA, tag);
                for _ in 0..300 {
                    kernel::sched::yield_now();
                    if read(VA) != tag {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    if s2.cpu_set() == 1 << cpu {
                        in_set.fetch_add(1, Ordering::Relaxed);
                    }
                    if paging::current_root() != s2.root_phys() {
                        bad.fetch_add(1 << 32, Ordering::Relaxed);
                    }
                }
            })
            .unwrap(),
        );
    }
    for t in threads {
        kernel::sched::join(&t);
    }
    kassert_eq!(bad.load(Ordering::Relaxed), 0);
    kassert_eq!(in_set.load(Ordering::Relaxed), 600);
    kassert_eq!((a.cpu_set(), b.cpu_set()), (0, 0));
    kassert_eq!(paging::current_root(), paging::kernel_root());
    kassert_eq!(a.stats().hw_faults + b.stats().hw_faults, 2);
    Ok(())
}

/// What a thread on another CPU saw in the shoot-down scenario.
struct ShootdownSeen {
    faults_before: u64,
    faults_after: u64,
    last_fault: u64,
    value: u64,
    ipis: u64,
}

impl core::fmt::Debug for ShootdownSeen {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(
            f,
            "faults {} -> {}, last fault at {:#x}, value read {:#x}, shoot-down IPIs {}",
            self.faults_before, self.faults_after, self.last_fault, self.value, self.ipis
        )
    }
}

const TLB_VA: u64 = 0x60_0000_0000;
const TLB_PATTERN: u64 = 0x0dd_ba11;

/// A thread on CPU 1 writes a page and reads it a thousand times (its TLB
/// holds the translation), then spins; CPU 0 discards the page (clears the
/// entry, shoots down, frees the frame) and lets the thread read again.
fn shootdown_scenario(bad: Option<KnownBad>) -> ShootdownSeen {
    let s = space();
    s.set_known_bad(bad);
    s.map_anon(TLB_VA, PAGE, Prot::ReadWrite).unwrap();
    let warm = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let (w2, g2, s2) = (warm.clone(), go.clone(), s.clone());
    let out = Arc::new(kernel::sync::IrqMutex::new(None));
    let o = out.clone();
    let t = kernel::sched::spawn_in("vm-tlb", Some(1), Some(s.thread_space()), move || {
        write(TLB_VA, TLB_PATTERN);
        let mut sum = 0u64;
        for _ in 0..1000 {
            sum = sum.wrapping_add(read(TLB_VA));
        }
        core::hint::black_box(sum);
        let faults_before = s2.stats().hw_faults;
        // Release pairs with the Acquire spin on CPU 0.
        w2.store(true, Ordering::Release);
        // Spin, in the space, on this CPU: no switch, no CR3 reload.
        while !g2.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        let value = read(TLB_VA);
        let st = s2.stats();
        *o.lock() = Some((faults_before, st.hw_faults, st.last_fault_addr, value));
    })
    .expect("spawn on CPU 1");
    while !warm.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let dropped = s.discard(TLB_VA, PAGE).expect("discard");
    assert_eq!(dropped, 1, "the page was mapped");
    let ipis = s.stats().shootdown_ipis;
    // Release pairs with the thread's Acquire spin.
    go.store(true, Ordering::Release);
    kernel::sched::join(&t);
    let (faults_before, faults_after, last_fault, value) =
        out.lock().take().expect("the thread's observation");
    ShootdownSeen {
        faults_before,
        faults_after,
        last_fault,
        value,
        ipis,
    }
}

/// The check: after the discard, the thread's next access must fault at
/// that address (its stale translation is gone) and find a fresh zeroed
/// page, not the old data in the freed frame.
fn check_shootdown(seen: &ShootdownSeen) -> Result<(), &'static str> {
    if seen.faults_after != seen.faults_before + 1 || seen.last_fault != TLB_VA {
        return Err("the access after the unmap did not fault: a stale TLB entry survived");
    }
    if seen.value != 0 {
        return Err("the access after the unmap read the old page");
    }
    Ok(())
}

fn tlb_shootdown(_: &Ctx) -> TestResult {
    if kernel::smp::online_cpus() < 2 {
        return Err(TestError::Skip("needs two CPUs"));
    }
    let seen = shootdown_scenario(None);
    kernel::println!("    # correct shoot-down: {seen:?}");
    kassert_eq!(check_shootdown(&seen), Ok(()));
    kassert_eq!(seen.ipis, 1);
    Ok(())
}

/// The same scenario with the known-bad shoot-down that skips the IPIs: the
/// thread reads through its stale entry without faulting, and the check
/// above must say so. (If this case passes, the check can fail.)
fn tlb_shootdown_known_bad(_: &Ctx) -> TestResult {
    if kernel::smp::online_cpus() < 2 {
        return Err(TestError::Skip("needs two CPUs"));
    }
    // The stale entry must survive in the other vCPU's TLB until it reads
    // again; QEMU's software TLB sometimes drops it on its own (seen about
    // once in ten runs), and then there is nothing to catch. A few
    // attempts, as the host's known-bad boots get (`tests::until_caught`).
    const ATTEMPTS: usize = 5;
    let mut attempt = 0;
    let (seen, verdict) = loop {
        attempt += 1;
        let seen = shootdown_scenario(Some(KnownBad::SkipRemoteFlush));
        let verdict = check_shootdown(&seen);
        kernel::println!("    # known-bad shoot-down (no IPI), attempt {attempt}: {seen:?}");
        kernel::println!("    # the check on it: {verdict:?}");
        if verdict.is_err() || attempt == ATTEMPTS {
            break (seen, verdict);
        }
    };
    kassert!(
        verdict.is_err(),
        "the shoot-down check missed a stale TLB entry in {ATTEMPTS} attempts"
    );
    kassert_eq!(seen.ipis, 0);
    kassert_eq!(seen.value, TLB_PATTERN);
    Ok(())
}

/// `Mapping::clean` as writeback uses it, against a thread on another CPU
/// whose TLB holds the writable entry: it write-protects (the next write
/// faults and goes through `page_mkwrite` again), shoots down, and reports
/// the Dirty bit exactly: true once per round of writes, false when
/// nothing was written.
fn clean_write_protects(_: &Ctx) -> TestResult {
    const VA: u64 = 0x70_0000_0000;
    let src = TestSource::new(2);
    let s = space();
    let m = s
        .map_file(VA, 2 * PAGE, Prot::ReadWrite, src.clone(), 0)
        .unwrap();
    let page = src.frame(1);
    // Writeback of index 1, as the page cache will do it.
    let writeback = || {
        pagelock::lock_page(page);
        let dirty = m.clean(1);
        if dirty {
            pagelock::table().set_page_dirty(page);
        }
        let was = pagelock::table().clear_page_dirty_for_io(page);
        pagelock::unlock_page(page);
        (dirty, was)
    };
    let w = Worker::start(&s, far_cpu());
    w.write(VA + PAGE, 1);
    w.write(VA + PAGE, 2);
    kassert_eq!(src.mkwrites.lock().as_slice(), &[1]);
    kassert_eq!(m.dirty_indices(), vec![1]);
    kassert!(m.is_mapped(1) && !m.is_mapped(0));
    kassert_eq!(writeback(), (true, true));
    let t = s.translate(VA + PAGE).unwrap();
    kassert!(!t.writable && !t.dirty, "after clean: {:?}", t);
    kassert!(m.dirty_indices().is_empty());
    kassert_eq!(m.clean(1), false);
    kassert_eq!(m.clean(0), false);
    let faults = s.stats().hw_faults;
    w.write(VA + PAGE, 3);
    kassert_eq!(s.stats().hw_faults, faults + 1);
    kassert_eq!(src.mkwrites.lock().as_slice(), &[1, 1]);
    kassert!(page.flags().test(PG_DIRTY), "page_mkwrite dirtied it again");
    kassert_eq!(writeback(), (true, true));
    kassert_eq!(w.read(VA + PAGE), 3);
    kassert_eq!(m.clean(1), false);
    w.write(VA + PAGE, 4);
    w.write(VA + PAGE, 5);
    kassert_eq!(s.stats().hw_faults, faults + 2);
    kassert_eq!(m.clean(1), true);
    kassert_eq!(m.clean(1), false);
    kassert_eq!(src.word(1), 5);
    if far_cpu() == 1 {
        kassert!(
            s.stats().shootdown_ipis >= 3,
            "clean sent no IPI: {:?}",
            s.stats()
        );
    }
    w.stop();
    Ok(())
}

/// `unmap` of the middle of a file region splits it, drops exactly the
/// pages in the hole (references and mapcounts back), keeps the Mapping
/// working for the pieces, and tells the source only when the last piece
/// is gone; unmapping anonymous memory frees its frames.
fn unmap_splits_and_releases(_: &Ctx) -> TestResult {
    const F: u64 = 0x80_0000_0000;
    const A: u64 = 0x90_0000_0000;
    let src = TestSource::new(8);
    let s = space();
    let m = s
        .map_file(F, 8 * PAGE, Prot::ReadWrite, src.clone(), 0)
        .unwrap();
    s.map_anon(A, 8 * PAGE, Prot::ReadWrite).unwrap();
    run_in(&s, far_cpu(), || {
        for i in 0..8 {
            read(F + i * PAGE);
            write(A + i * PAGE, i);
        }
    });
    let anon: Vec<Pfn> = (0..8)
        .map(|i| s.translate(A + i * PAGE).unwrap().pfn)
        .collect();
    s.unmap(F + 2 * PAGE, 3 * PAGE).unwrap();
    kassert_eq!(
        s.regions()
            .iter()
            .filter(|r| r.file_index.is_some())
            .map(|r| (r.start, r.end, r.file_index))
            .collect::<Vec<_>>(),
        vec![
            (F, F + 2 * PAGE, Some(0)),
            (F + 5 * PAGE, F + 8 * PAGE, Some(5))
        ]
    );
    for i in 0..8 {
        let mapped = !(2..5).contains(&i);
        kassert_eq!(s.translate(F + i * PAGE).is_some(), mapped);
        kassert_eq!(m.is_mapped(i), mapped);
        kassert_eq!(refcount(src.frame(i).pfn()), if mapped { 2 } else { 1 });
        kassert_eq!(mapcount(src.frame(i).pfn()), i32::from(mapped));
    }
    kassert_eq!(src.mappings.lock().len(), 1);
    kassert_eq!(
        s.fault_in(F + 3 * PAGE, false).map(|_| ()),
        Err(VmError::NoRegion { addr: F + 3 * PAGE })
    );
    // The Mapping still reaches the right piece.
    run_in(&s, far_cpu(), || write(F + 6 * PAGE, 66));
    kassert_eq!(m.dirty_indices(), vec![6]);
    kassert_eq!(m.clean(6), true);
    kassert_eq!(src.word(6), 66);

    s.unmap(A, 8 * PAGE).unwrap();
    for pfn in anon {
        kassert_eq!(refcount(pfn), 0);
        kassert_eq!(mapcount(pfn), 0);
    }
    // One call over both pieces and the hole between them.
    s.unmap(F, 8 * PAGE).unwrap();
    kassert!(s.regions().is_empty());
    kassert!(src.mappings.lock().is_empty());
    kassert_eq!(src.unmaps.load(Ordering::Relaxed), 1);
    for i in 0..8 {
        kassert_eq!(refcount(src.frame(i).pfn()), 1);
        kassert_eq!(mapcount(src.frame(i).pfn()), 0);
    }
    Ok(())
}

/// Pages spread over three top-level slots, anonymous and file-backed,
/// touched by a thread; dropping the space returns every frame (pages and
/// page tables) to the allocator: the free count is exact.
fn drop_returns_every_frame(_: &Ctx) -> TestResult {
    let src = TestSource::new(4);
    let bases = [USER_BASE, 0x80_0000_0000, 0x7fff_0000_0000];
    let round = |src: &Arc<TestSource>| {
        let s = space();
        for &b in &bases {
            s.map_anon(b, 64 * PAGE, Prot::ReadWrite).unwrap();
        }
        s.map_file(0x1000_0000, 4 * PAGE, Prot::ReadWrite, src.clone(), 0)
            .unwrap();
        run_in(&s, far_cpu(), move || {
            for &b in &bases {
                for i in 0..64 {
                    write(b + i * PAGE, i);
                }
            }
            for i in 0..4 {
                write(0x1000_0000 + i * PAGE + 8, i);
            }
        });
        let st = s.stats();
        drop(s);
        st
    };
    // A first round grows the heap and the stack cache to what a round
    // needs, so the second one is measured alone.
    round(&src);
    pcp::drain_all();
    let free0 = free_frames();
    let st = round(&src);
    pcp::drain_all();
    let free1 = free_frames();
    kernel::println!(
        "    # round: {} faults, {} page-table frames; free frames {} -> {}",
        st.hw_faults,
        st.table_frames,
        free0,
        free1
    );
    kassert_eq!(st.anon_pages, 3 * 64);
    // Three top-level slots: a table at each of levels 3, 2 and 1 for
    // each; the file region (at 256 MiB) shares the first slot's level-3
    // and level-2 tables and adds one level-1 table.
    kassert_eq!(st.table_frames, 3 * 3 + 1);
    kassert_eq!(free1, free0);
    kassert!(src.mappings.lock().is_empty());
    for i in 0..4 {
        kassert_eq!(refcount(src.frame(i).pfn()), 1);
        kassert_eq!(mapcount(src.frame(i).pfn()), 0);
    }
    Ok(())
}

/// The page-fault handler's verdicts, called directly by a thread in a
/// space with the faults it refuses (a real one would end the run, which
/// `crash=vm-readonly-write` shows on the host): each is fatal with its
/// reason; a plain read fault is handled.
fn fault_verdicts(_: &Ctx) -> TestResult {
    const RO: u64 = 0xa0_0000_0000;
    const RW: u64 = 0xa1_0000_0000;
    let s = space();
    s.map_anon(RO, PAGE, Prot::ReadOnly).unwrap();
    s.map_anon(RW, PAGE, Prot::ReadWrite).unwrap();
    let ask = |addr, code, irqs| {
        let f = PageFault {
            addr,
            code,
            interrupts_were_enabled: irqs,
        };
        // The handler runs with interrupts off, as from the exception.
        x86_64::instructions::interrupts::without_interrupts(|| handle_page_fault(&f))
    };
    let fatal = |why, region| PageFaultOutcome::Fatal { why, region };
    // The boot thread runs in no space.
    kassert_eq!(
        ask(RW, 0, true),
        fatal("the thread runs in no address space", None)
    );
    let verdicts = run_in(&s, far_cpu(), move || {
        [
            ask(RO, PageFault::WRITE, true),
            ask(RO + PAGE, 0, true),
            ask(paging::UPPER_HALF + 0x1000, 0, true),
            ask(RW, 0, false),
            ask(RW, PageFault::FETCH, true),
            ask(RW, PageFault::RESERVED, true),
            ask(RW + 8, 0, true),
        ]
    });
    kassert_eq!(
        verdicts[0],
        fatal("write to a read-only region", Some((RO, RO + PAGE)))
    );
    kassert_eq!(verdicts[1], fatal("no region maps this address", None));
    kassert_eq!(verdicts[2], fatal("not a user address", None));
    kassert_eq!(
        verdicts[3],
        fatal(
            "page fault with interrupts disabled (it could not sleep)",
            None
        )
    );
    kassert_eq!(
        verdicts[4],
        fatal(
            "instruction fetch from a user page (mapped no-execute)",
            None
        )
    );
    kassert_eq!(
        verdicts[5],
        fatal("reserved bit set in a page-table entry", None)
    );
    kassert_eq!(verdicts[6], PageFaultOutcome::Handled);
    kassert!(s.translate(RW).is_some_and(|t| t.writable));
    kassert!(s.translate(RO).is_none());
    kassert_eq!(s.stats().hw_faults, 6);
    Ok(())
}

/// `crash=vm-readonly-write`: the boot thread moves into a space and writes
/// to a read-only region. The fault must be reported as fatal with the
/// region (not retried for ever); the host checks the report.
pub fn deliberate_readonly_write() -> TestResult {
    const RO: u64 = 0xdead_0000;
    let s = space();
    s.map_anon(RO, PAGE, Prot::ReadOnly).unwrap();
    let old = kernel::sched::set_space(Some(s.thread_space()));
    kernel::println!("    # reading the read-only page: {}", read(RO + 8));
    write(RO + 8, 1);
    drop(kernel::sched::set_space(old));
    kassert!(false, "a write to a read-only region returned");
    Ok(())
}

pub static SUITE: Suite = Suite {
    name: "vm",
    cases: &[
        Case {
            name: "anon_demand_paging",
            run: anon_demand_paging,
        },
        Case {
            name: "fault_in_same_frame",
            run: fault_in_same_frame,
        },
        Case {
            name: "file_faults",
            run: file_faults,
        },
        Case {
            name: "file_write_fault_on_empty_entry",
            run: file_write_fault_on_empty_entry,
        },
        Case {
            name: "bad_ranges",
            run: bad_ranges,
        },
        Case {
            name: "hardware_dirty_bit",
            run: hardware_dirty_bit,
        },
        Case {
            name: "context_switch_loads_cr3",
            run: context_switch_loads_cr3,
        },
        Case {
            name: "tlb_shootdown",
            run: tlb_shootdown,
        },
        Case {
            name: "tlb_shootdown_known_bad",
            run: tlb_shootdown_known_bad,
        },
        Case {
            name: "clean_write_protects",
            run: clean_write_protects,
        },
        Case {
            name: "unmap_splits_and_releases",
            run: unmap_splits_and_releases,
        },
        Case {
            name: "drop_returns_every_frame",
            run: drop_returns_every_frame,
        },
        Case {
            name: "fault_verdicts",
            run: fault_verdicts,
        },
    ],
    accounted: true,
    ..Suite::DEFAULTS
};
