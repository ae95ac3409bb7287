//! Address spaces: page tables of their own, regions (VMAs) of anonymous or
//! file-backed memory, demand paging through real page faults, TLB
//! shoot-downs, and the handles writeback and GUP use.
//!
//! # Mental model
//!
//! An [`AddressSpace`] is a root page table whose upper half (top-level
//! slots 256..512) copies the kernel's, so kernel code, stacks, heap and the
//! physical map stay mapped whatever space a CPU runs in, and whose lower
//! half `[USER_BASE, USER_END)` holds [regions](AddressSpace::map_anon):
//! page-aligned, disjoint ranges, each anonymous (zero-filled on first
//! touch) or showing pages of a [`MapSource`] (the page cache), read-only or
//! writable. Nothing is mapped up front: a thread running in the space
//! (`crate::sched::spawn_in` / `set_space`; the context switch loads CR3)
//! touches an address, the CPU raises a page fault, and
//! [`handle_page_fault`], registered at boot, installs the page
//! ([`fault`] has the table of cases). GUP does the same in software with
//! [`AddressSpace::fault_in`], which returns the page with a reference.
//!
//! Taking pages away ([`AddressSpace::unmap`], [`AddressSpace::discard`],
//! dropping the space) and taking write permission away
//! ([`Mapping::clean`], writeback's `folio_mkclean`) change entries first,
//! then shoot the old translations down on every CPU that may hold them
//! ([`tlb`]) and wait, and only then free frames or report a page clean.
//!
//! # Files
//!
//! * [`space`]: the space, its regions, its lock, unmap, clean, teardown;
//! * [`fault`]: the fault paths (hardware and `fault_in`);
//! * [`mapping`]: [`MapSource`] and [`Mapping`], the page cache's side;
//! * [`pte`]: the page tables (the `x86_64` crate's `OffsetPageTable` to
//!   build them, atomic RMWs on leaf entries);
//! * [`tlb`]: shoot-downs, and the known-bad variant that skips the IPIs;
//! * `error`: [`VmError`].
//!
//! # Why `kernel/src/vm/` and not `mm/vm/`
//!
//! The frame allocator (`mm`) sits below the scheduler and `smp`: threads'
//! stacks come from it. Address spaces sit above all three: they run
//! threads (`sched`), shoot TLBs down with IPIs (`smp`), allocate frames and
//! take page locks. Inside `mm` they would make `mm` depend on `sched` and
//! `smp`, and those on `mm`: a cycle. As its own layer, `vm` keeps the
//! dependencies pointing one way; the scheduler knows a space only as a
//! `sched::ThreadSpace` (a root and a CPU set), and the architecture code
//! only calls the page-fault handler registered at boot.

mod error;
pub mod fault;
pub mod mapping;
pub mod pte;
pub mod space;
pub mod tlb;

pub use error::VmError;
pub use fault::handle_page_fault;
pub use mapping::{MapSource, Mapping};
pub use space::{AddressSpace, DirtyPage, Prot, RegionInfo, SpaceStats, Translation};
pub use tlb::KnownBad;

use crate::arch::paging;

/// The lowest address a region may start at: the first 64 KiB stay
/// unmapped so null-pointer accesses fault (Linux's `mmap_min_addr`).
pub const USER_BASE: u64 = 0x1_0000;
/// The end of the lower canonical half: regions lie below it.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Boot CPU, after the scheduler started (so thread stacks have their
/// top-level entry) and before the first space: checks that everything the
/// kernel uses lies in the upper half, which every space shares, and
/// freezes the kernel's top-level entries (`paging::freeze_kernel_top_level`).
pub fn init() {
    let code = init as *const () as u64;
    let mut stack_probe = 0u8;
    let stack = core::ptr::addr_of_mut!(stack_probe) as u64;
    let heap = alloc::boxed::Box::new(0u8);
    let heap_addr = &*heap as *const u8 as u64;
    for (what, addr) in [
        ("kernel code", code),
        ("boot stack", stack),
        ("heap", heap_addr),
        ("physical map", paging::phys_offset()),
    ] {
        assert!(
            addr >= paging::UPPER_HALF,
            "vm: the {what} is at {addr:#x}, in the lower half that address spaces do not share"
        );
    }
    paging::freeze_kernel_top_level();
    log::info!(
        "vm: user range [{USER_BASE:#x}, {USER_END:#x}); kernel root {:#x} (upper half shared by every space)",
        paging::kernel_root()
    );
}
