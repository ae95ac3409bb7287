//! The physical memory manager: one [`Page`] descriptor per 4 KiB frame of
//! RAM, a buddy allocator over them with per-CPU caches for single frames,
//! and the kernel heap on top.
//!
//! Mental model, bottom up:
//! * [`frame_array`]: the "struct page" database. Every frame of RAM has a
//!   64-byte `pagesync::Page`; frame number, descriptor, physical and
//!   virtual address convert into each other by arithmetic.
//! * [`buddy`]: free frames in power-of-two blocks of orders
//!   `0..=MAX_ORDER`, one lock, coalescing on free.
//! * [`pcp`]: a per-CPU stack of free single frames in front of the buddy
//!   lock, refilled and drained in batches.
//! * [`page_alloc`]: the public allocate/free API and its checks: every
//!   frame handed out or given back is checked, and a broken rule (double
//!   free, freeing a referenced or reserved frame, refcount overflow) is a
//!   typed [`FreeError`] that the unchecked entry points turn into a panic
//!   with a dump of the descriptor.
//! * [`heap`]: `talc` as the `#[global_allocator]`, growing by buddy blocks.
//!
//! Frame states (refcount, flags):
//! * free in the buddy: count 0, `PG_BUDDY` on the block's head, order in
//!   its private word;
//! * free in a per-CPU cache: count 0, no flags;
//! * allocated: count >= 1 on the head, held through [`Frame`]s, the block
//!   order in the head's flags (tail frames of a higher-order block keep
//!   count 0, as in Linux for non-compound pages);
//! * reserved (firmware, bootloader, kernel image, the frame array itself,
//!   everything below 1 MiB, holes inside a section): `PG_RESERVED`, count
//!   1, never freed.

pub mod buddy;
pub mod frame;
pub mod frame_array;
pub mod heap;
pub mod page_alloc;
pub mod pcp;
pub mod pfn;

use bootloader_api::BootInfo;
pub use frame::{Frame, alloc_pages, free_after_last_put};
pub use page_alloc::{AllocFlags, FreeError, try_free_raw};
pub use pagesync::Page;
pub use pfn::Pfn;

/// Bytes in a frame.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// The largest buddy order: blocks of up to 2^10 frames (4 MiB), as Linux's
/// `MAX_PAGE_ORDER`.
pub const MAX_ORDER: u32 = 10;
/// Frames below this physical address are never handed out: the real-mode
/// SMP trampoline, the BIOS data area and legacy ROM/VGA live there.
pub const LOW_LIMIT: u64 = 0x10_0000;

/// Builds the frame array from the boot memory map, hands every usable
/// frame it reports to the buddy allocator, and prints the boot report.
/// Call once, on the boot CPU, before any other CPU runs and before the
/// first heap allocation.
pub fn init(boot_info: &BootInfo, pcp_enabled: bool) {
    let phys_offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("physical memory mapping");
    let (stats, usable) = frame_array::init(boot_info, phys_offset);
    usable.for_each(buddy::add_free_range);
    pcp::set_enabled(pcp_enabled);
    let free = page_alloc::free_frames();
    log::info!(
        "mm: {} MiB RAM, {} frames described in {} sections, {} bytes per descriptor, array {} KiB = {}.{:03}% of RAM; {} frames ({} MiB) free",
        stats.ram_bytes >> 20,
        stats.described,
        stats.sections,
        core::mem::size_of::<Page>(),
        stats.array_bytes >> 10,
        stats.array_bytes * 100 / stats.ram_bytes.max(1),
        stats.array_bytes * 100_000 / stats.ram_bytes.max(1) % 1000,
        free,
        (free * PAGE_SIZE as u64) >> 20,
    );
}
