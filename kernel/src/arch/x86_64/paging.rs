//! The few page-table edits the architecture code needs on top of the
//! bootloader's tables: reaching physical memory through its offset mapping,
//! making MMIO pages uncached, and unmapping stack guard pages.
//!
//! The kernel's own mappings live in the upper half (top-level slots
//! 256..512) of the boot page table, the *kernel root*. Address spaces
//! (`crate::vm`) get their own top-level table whose upper half copies the
//! kernel root's entries, so the edits here always walk the kernel root,
//! never whatever CR3 the calling thread runs on, and a top-level entry of
//! the upper half may only be created before the first address space copies
//! them ([`freeze_kernel_top_level`]).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::{
    VirtAddr,
    instructions::tlb,
    registers::control::Cr3,
    structures::paging::{PageTable, PageTableFlags as F},
};

/// Where the bootloader mapped all physical memory.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);
/// Physical address of the boot top-level table (the kernel root).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Set once address spaces may have copied the upper-half top-level
/// entries: from then on no new one may appear.
static TOP_LEVEL_FROZEN: AtomicBool = AtomicBool::new(false);

/// The first address of the upper half: top-level slots 256..512.
pub const UPPER_HALF: u64 = 0xffff_8000_0000_0000;

/// Boot CPU, before any other CPU runs: records the physical-map offset and
/// the boot page table (the CR3 the bootloader handed over, which the APs
/// load too).
pub fn init(phys_offset: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    KERNEL_ROOT.store(Cr3::read().0.start_address().as_u64(), Ordering::Relaxed);
}

/// Physical address of the kernel root: the top-level table every CPU runs
/// on when its thread has no address space of its own.
pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Relaxed)
}

/// From now on the upper-half top-level entries of the kernel root are
/// fixed: [`map_4k`] panics rather than add one that existing copies would
/// lack. Called before the first address space copies them.
pub fn freeze_kernel_top_level() {
    TOP_LEVEL_FROZEN.store(true, Ordering::Relaxed);
}

/// The physical address currently in CR3 (flags stripped).
pub fn current_root() -> u64 {
    Cr3::read().0.start_address().as_u64()
}

/// Loads `root` (a top-level table's physical address) into CR3, which also
/// flushes every non-global TLB entry of this CPU.
///
/// # Safety
///
/// `root` is a top-level table that maps the kernel's upper half as the
/// kernel root does (so the code, stack and data in use stay mapped), and
/// stays allocated while it is loaded.
pub unsafe fn load_root(root: u64) {
    let frame =
        x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(root));
    // SAFETY: per the caller's contract the new table maps everything the
    // kernel is using; Cr3Flags empty (no PCID, write-back caching).
    unsafe { Cr3::write(frame, x86_64::registers::control::Cr3Flags::empty()) };
}

/// Flushes this CPU's TLB entry for the page containing `virt`.
pub fn flush_local(virt: u64) {
    tlb::flush(VirtAddr::new(virt));
}

/// Flushes every non-global TLB entry of this CPU (reloads CR3).
pub fn flush_local_all() {
    tlb::flush_all();
}

pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// The kernel virtual address of physical address `phys`.
pub fn phys_to_virt(phys: u64) -> u64 {
    phys + phys_offset()
}

/// Walks the kernel root to the entry mapping `virt` and applies `f`
/// to it (the leaf: a 1 GiB, 2 MiB or 4 KiB entry). Returns false if `virt`
/// is not mapped.
fn with_leaf(
    virt: u64,
    f: impl FnOnce(&mut x86_64::structures::paging::page_table::PageTableEntry),
) -> bool {
    let va = VirtAddr::new(virt);
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    let mut table_phys = kernel_root();
    for (level, idx) in indices.iter().enumerate() {
        // SAFETY: page tables live in RAM, which the offset mapping covers;
        // the kernel is the only writer of its page tables, and callers run
        // before other CPUs could walk or change the same entries.
        let table = unsafe { &mut *(phys_to_virt(table_phys) as *mut PageTable) };
        let entry = &mut table[*idx];
        if !entry.flags().contains(F::PRESENT) {
            return false;
        }
        if level == 3 || entry.flags().contains(F::HUGE_PAGE) {
            f(entry);
            tlb::flush(va);
            return true;
        }
        table_phys = entry.addr().as_u64();
    }
    false
}

/// Whether `virt` is mapped (by a page of any size).
pub fn is_mapped(virt: u64) -> bool {
    with_leaf(virt, |_| {})
}

/// Makes the page (of whatever size) mapping `virt` uncached (PCD|PWT), as
/// memory-mapped device registers must be.
pub fn set_uncached(virt: u64) -> bool {
    with_leaf(virt, |e| {
        let flags = e.flags() | F::NO_CACHE | F::WRITE_THROUGH;
        let addr = e.addr();
        e.set_addr(addr, flags);
    })
}

/// Unmaps the 4 KiB page at `virt` so that touching it faults: a stack guard.
/// Returns false if the page is not mapped with 4 KiB granularity.
pub fn unmap_guard_page(virt: u64) -> bool {
    let mut ok = false;
    with_leaf(virt, |e| {
        if !e.flags().contains(F::HUGE_PAGE) {
            let addr = e.addr();
            e.set_addr(addr, e.flags() - F::PRESENT);
            ok = true;
        }
    });
    ok
}

#[derive(Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate page table.
    OutOfFrames,
    /// Something is already mapped there (or a huge page covers it).
    AlreadyMapped,
}

/// Maps the 4 KiB page at `virt` (upper half) to `phys` (writable,
/// no-execute) in the kernel root, creating intermediate tables with frames
/// from `alloc_frame` (physical addresses of zeroed frames). The caller
/// serialises calls that may touch the same tables. No TLB flush is needed:
/// the page was not present.
///
/// # Panics
///
/// If `virt` is in the lower half, or a new top-level entry is needed after
/// [`freeze_kernel_top_level`].
pub fn map_4k(
    virt: u64,
    phys: u64,
    alloc_frame: &mut dyn FnMut() -> Option<u64>,
) -> Result<(), MapError> {
    assert!(
        virt >= UPPER_HALF,
        "map_4k: {virt:#x} is not a kernel address"
    );
    let va = VirtAddr::new(virt);
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    let mut table_phys = kernel_root();
    for (level, idx) in indices.iter().enumerate() {
        // SAFETY: as in `with_leaf`; the caller serialises writers.
        let table = unsafe { &mut *(phys_to_virt(table_phys) as *mut PageTable) };
        let entry = &mut table[*idx];
        if level == 3 {
            if entry.flags().contains(F::PRESENT) {
                return Err(MapError::AlreadyMapped);
            }
            entry.set_addr(
                x86_64::PhysAddr::new(phys),
                F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
            );
            return Ok(());
        }
        if !entry.flags().contains(F::PRESENT) {
            assert!(
                level != 0 || !TOP_LEVEL_FROZEN.load(Ordering::Relaxed),
                "map_4k: {virt:#x} needs a new top-level entry, but address spaces already copied them"
            );
            let frame = alloc_frame().ok_or(MapError::OutOfFrames)?;
            entry.set_addr(x86_64::PhysAddr::new(frame), F::PRESENT | F::WRITABLE);
        } else if entry.flags().contains(F::HUGE_PAGE) {
            return Err(MapError::AlreadyMapped);
        }
        table_phys = entry.addr().as_u64();
    }
    unreachable!()
}

/// The first top-level (PML4) slot in the upper half that nothing maps, as
/// the base of a kernel virtual area. Boot CPU, before APs start mapping.
pub fn free_upper_half_slot() -> Option<u64> {
    let table_phys = kernel_root();
    // SAFETY: reading the live PML4 through the offset mapping.
    let table = unsafe { &*(phys_to_virt(table_phys) as *const PageTable) };
    (256..511)
        .find(|&i| !table[i].flags().contains(F::PRESENT))
        .map(|i| 0xffff_0000_0000_0000 | ((i as u64) << 39))
}
