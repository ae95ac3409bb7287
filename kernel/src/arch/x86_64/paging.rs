//! The few page-table edits the architecture code needs on top of the
//! bootloader's tables: reaching physical memory through its offset mapping,
//! making MMIO pages uncached, and unmapping stack guard pages.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::{
    VirtAddr,
    instructions::tlb,
    registers::control::Cr3,
    structures::paging::{PageTable, PageTableFlags as F},
};

/// Where the bootloader mapped all physical memory.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

pub fn init(phys_offset: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
}

pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// The kernel virtual address of physical address `phys`.
pub fn phys_to_virt(phys: u64) -> u64 {
    phys + phys_offset()
}

/// Walks the current page table to the entry mapping `virt` and applies `f`
/// to it (the leaf: a 1 GiB, 2 MiB or 4 KiB entry). Returns false if `virt`
/// is not mapped.
fn with_leaf(
    virt: u64,
    f: impl FnOnce(&mut x86_64::structures::paging::page_table::PageTableEntry),
) -> bool {
    let va = VirtAddr::new(virt);
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    let (frame, _) = Cr3::read();
    let mut table_phys = frame.start_address().as_u64();
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

/// Maps the 4 KiB page at `virt` to `phys` (writable, no-execute), creating
/// intermediate tables with frames from `alloc_frame` (physical addresses of
/// zeroed frames). The caller serialises calls that may touch the same
/// tables. No TLB flush is needed: the page was not present.
pub fn map_4k(
    virt: u64,
    phys: u64,
    alloc_frame: &mut dyn FnMut() -> Option<u64>,
) -> Result<(), MapError> {
    let va = VirtAddr::new(virt);
    let indices = [va.p4_index(), va.p3_index(), va.p2_index(), va.p1_index()];
    let mut table_phys = Cr3::read().0.start_address().as_u64();
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
    let table_phys = Cr3::read().0.start_address().as_u64();
    // SAFETY: reading the live PML4 through the offset mapping.
    let table = unsafe { &*(phys_to_virt(table_phys) as *const PageTable) };
    (256..511)
        .find(|&i| !table[i].flags().contains(F::PRESENT))
        .map(|i| 0xffff_0000_0000_0000 | ((i as u64) << 39))
}
