//! The page tables of one address space: building them with the `x86_64`
//! crate's mapper, and reading and changing leaf entries atomically.
//!
//! Mental model: four levels of 512-entry tables under a top-level table
//! (the root, in CR3 while a thread of the space runs). The upper half of
//! the root (slots 256..512) holds copies of the kernel root's entries, so
//! they point at the kernel's own lower-level tables, which are never ours
//! to touch or free. The lower half is the space's: its tables come from
//! [`crate::mm::alloc_pages`] and are freed when the space is dropped.
//!
//! Who touches a leaf entry (PTE):
//! * software, always under the space lock: installing a page in an empty
//!   entry ([`install`], through `OffsetPageTable::map_to_with_table_flags`,
//!   a plain store), and changing a present entry with an atomic RMW
//!   (clear with `swap`, write-protect with `fetch_and`);
//! * the MMU of any CPU running in the space, at any time: page walks read
//!   entries, and a write through a writable entry sets its Dirty bit (and
//!   any access its Accessed bit) with a locked RMW of its own.
//!
//! So a present entry is only ever changed by RMWs: a plain store could
//! lose a Dirty bit the MMU sets between our read and our write, and with
//! it a write (Linux uses `ptep_get_and_clear` for the same reason). The
//! MMU never writes a non-present entry, so the plain store that installs
//! one races with nothing. Entries are viewed as `AtomicU64` (same size and
//! alignment as the `u64` the crate's `PageTableEntry` wraps).
//!
//! Intermediate tables are only ever added, under the space lock, while
//! the space lives: freeing one would need a flush of the CPUs' paging
//! structure caches as well, so they stay until the space is dropped, when
//! no CPU has it loaded.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::{
    PhysAddr, VirtAddr,
    structures::paging::{
        FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page as VirtPage, PageTable,
        PageTableFlags as F, PhysFrame, Size4KiB,
        mapper::{CleanUp, MapToError},
    },
};

use super::{USER_END, VmError};
use crate::{
    arch::paging,
    mm::{AllocFlags, Frame, Pfn, alloc_pages},
};

/// Entry bit: the entry maps something.
pub const PRESENT: u64 = F::PRESENT.bits();
/// Entry bit: writes allowed.
pub const WRITABLE: u64 = F::WRITABLE.bits();
/// Entry bit: set by the MMU on any access.
pub const ACCESSED: u64 = F::ACCESSED.bits();
/// Entry bit: set by the MMU on a write.
pub const DIRTY: u64 = F::DIRTY.bits();
/// Entry bit: a large page (never in our lower half).
const HUGE: u64 = F::HUGE_PAGE.bits();
/// The physical-address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The frame a leaf entry maps.
pub fn pfn_of(entry: u64) -> Pfn {
    Pfn::from_phys(entry & ADDR_MASK)
}

/// The 512 entries of the table at physical address `phys`.
///
/// # Safety
///
/// `phys` is a page table of a live space (or the kernel root), which stays
/// allocated for `'a`.
unsafe fn entries<'a>(phys: u64) -> &'a [AtomicU64; 512] {
    // SAFETY: page tables are RAM, mapped by the physical map; the caller
    // keeps the table alive; `AtomicU64` has the layout of the `u64`
    // entries, and every access to them is atomic (module docs).
    unsafe { &*(paging::phys_to_virt(phys) as *const [AtomicU64; 512]) }
}

/// Page-table frames for the crate's mapper: zeroed frames from the
/// allocator whose reference the table keeps (`Frame::into_raw`), counted.
pub struct TableFrames<'a> {
    pub count: &'a AtomicU64,
}

// SAFETY: every frame returned is a fresh, zeroed frame that nothing else
// uses (its only reference is given up to the page table).
unsafe impl FrameAllocator<Size4KiB> for TableFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = alloc_pages(0, AllocFlags::ZERO)?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(PhysFrame::containing_address(PhysAddr::new(
            frame.into_raw().phys(),
        )))
    }
}

impl FrameDeallocator<Size4KiB> for TableFrames<'_> {
    /// # Safety
    ///
    /// `frame` is a table [`TableFrames::allocate_frame`] made that no
    /// entry references any more (the trait's contract).
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the caller (the crate's clean-up) frees only tables that
        // `allocate_frame` made, whose reference `into_raw` kept, once.
        drop(unsafe { Frame::from_raw(Pfn::from_phys(frame.start_address().as_u64())) });
    }
}

/// A new root: a zeroed table whose upper half copies the kernel root's
/// entries. Its frame's reference is kept until [`free_root`].
pub fn new_root() -> Option<u64> {
    let frame = alloc_pages(0, AllocFlags::ZERO)?;
    let phys = frame.into_raw().phys();
    // SAFETY: `phys` is our fresh table, the kernel root lives for ever.
    let (ours, kernel) = unsafe { (entries(phys), entries(paging::kernel_root())) };
    for i in 256..512 {
        // Relaxed: nobody else sees our table yet, and the kernel's upper
        // top-level entries no longer change (`freeze_kernel_top_level`).
        ours[i].store(kernel[i].load(Ordering::Relaxed), Ordering::Relaxed);
    }
    Some(phys)
}

/// The leaf entry for `va` under `root`, if every table above it exists.
///
/// # Safety
///
/// `root` is a live space's root and the caller holds its lock (or owns the
/// space), so no table on the path is freed while the reference is used.
pub unsafe fn leaf<'a>(root: u64, va: u64) -> Option<&'a AtomicU64> {
    debug_assert!(va < USER_END);
    let mut table = root;
    for shift in [39u32, 30, 21] {
        // SAFETY: `table` is one of the space's live tables (caller).
        let e = unsafe { entries(table) }[((va >> shift) & 511) as usize].load(Ordering::Relaxed);
        if e & PRESENT == 0 {
            return None;
        }
        assert!(e & HUGE == 0, "vm: a large page in a user range at {va:#x}");
        table = e & ADDR_MASK;
    }
    // SAFETY: as above.
    Some(&unsafe { entries(table) }[((va >> 12) & 511) as usize])
}

/// Calls `f(va, entry)` for every leaf entry slot in `[start, end)` (user
/// range, page aligned) whose tables exist, skipping missing subtrees.
///
/// # Safety
///
/// As for [`leaf`].
pub unsafe fn for_each_leaf(root: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, &AtomicU64)) {
    debug_assert!(end <= USER_END);
    // SAFETY: forwarded.
    unsafe { walk(root, 39, start, end, f) }
}

/// # Safety
///
/// As for [`leaf`]; `table` is a table of the level whose entries each span
/// `1 << shift` bytes.
unsafe fn walk(table: u64, shift: u32, start: u64, end: u64, f: &mut dyn FnMut(u64, &AtomicU64)) {
    // SAFETY: the caller's contract.
    let t = unsafe { entries(table) };
    let mut va = start;
    while va < end {
        let idx = ((va >> shift) & 511) as usize;
        let span_end = ((va >> shift) + 1) << shift;
        let sub_end = end.min(span_end);
        if shift == 12 {
            f(va, &t[idx]);
        } else {
            let e = t[idx].load(Ordering::Relaxed);
            if e & PRESENT != 0 {
                assert!(e & HUGE == 0, "vm: a large page in a user range at {va:#x}");
                // SAFETY: a present entry of a live table of ours.
                unsafe { walk(e & ADDR_MASK, shift - 9, va, sub_end, f) };
            }
        }
        va = sub_end;
    }
}

/// Maps `va` to `pfn` under `root` (the leaf must be empty), creating the
/// missing tables with the crate's mapper. No TLB flush: the entry was not
/// present, and x86 caches no translation for a non-present entry.
///
/// Before the store that publishes the entry, the caller's writes to the
/// frame (zeroing, reading it in) are ordered: x86 makes stores visible in
/// program order, and the compiler fence keeps the compiler from sinking
/// them (Linux's `smp_wmb` before `set_pte_at`).
///
/// # Safety
///
/// `root` is a live space's root and the caller holds its lock.
pub unsafe fn install(
    root: u64,
    va: u64,
    pfn: Pfn,
    writable: bool,
    tables: &mut TableFrames,
) -> Result<(), VmError> {
    // SAFETY: the root is ours and the space lock excludes every other
    // software access to these tables (the MMU only reads the lower levels
    // here, and never writes a non-present entry).
    let pml4 = unsafe { &mut *(paging::phys_to_virt(root) as *mut PageTable) };
    // SAFETY: the physical map covers all RAM at this offset.
    let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(paging::phys_offset())) };
    let mut flags = F::PRESENT | F::NO_EXECUTE;
    if writable {
        flags |= F::WRITABLE;
    }
    core::sync::atomic::compiler_fence(Ordering::Release);
    // SAFETY: the frame is one the caller holds a reference for (given to
    // the entry), and `va` is a user address: nothing of the kernel's.
    let r = unsafe {
        mapper.map_to_with_table_flags(
            VirtPage::<Size4KiB>::containing_address(VirtAddr::new(va)),
            PhysFrame::containing_address(PhysAddr::new(pfn.phys())),
            flags,
            F::PRESENT | F::WRITABLE,
            tables,
        )
    };
    match r {
        // Not present before: no TLB entry to flush (see above).
        Ok(flush) => {
            flush.ignore();
            Ok(())
        }
        Err(MapToError::FrameAllocationFailed) => Err(VmError::OutOfMemory),
        Err(e) => panic!("vm: mapping {va:#x}: {e:?} (the caller checked the entry was empty)"),
    }
}

/// Frees every lower-half table under `root`, then the root itself.
///
/// # Safety
///
/// Every leaf entry is clear, no CPU has `root` loaded or walks it (the
/// space is being dropped), and `root` came from [`new_root`].
pub unsafe fn free_tables(root: u64, tables: &mut TableFrames) {
    // SAFETY: the caller owns the tables now (no other reference).
    let pml4 = unsafe { &mut *(paging::phys_to_virt(root) as *mut PageTable) };
    // SAFETY: as above.
    let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(paging::phys_offset())) };
    let lower_half = VirtPage::range_inclusive(
        VirtPage::<Size4KiB>::containing_address(VirtAddr::new(0)),
        VirtPage::containing_address(VirtAddr::new(USER_END - 1)),
    );
    // SAFETY: every table in the lower half is ours alone (made by
    // `TableFrames`, used once, in this root only); the upper half, whose
    // tables are the kernel's, is outside the range.
    unsafe { mapper.clean_up_addr_range(lower_half, tables) };
    // SAFETY: as above: the root's lower half is now empty.
    let ours = unsafe { entries(root) };
    debug_assert!(ours[..256].iter().all(|e| e.load(Ordering::Relaxed) == 0));
    // SAFETY: `new_root` kept this reference with `into_raw`.
    drop(unsafe { Frame::from_raw(Pfn::from_phys(root)) });
}
