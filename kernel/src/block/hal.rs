//! virtio-drivers' `Hal` on this kernel: DMA memory from the frame
//! allocator, buffers shared by their physical-map address, device
//! registers mapped uncached.
//!
//! Mental model: x86 DMA is cache coherent and QEMU's devices see guest
//! physical addresses, so sharing a buffer with a device is only a matter
//! of telling it the buffer's physical address. The kernel reaches all RAM
//! through the bootloader's physical map (`virt = phys + offset`, one
//! linear range), so a buffer inside that map *is* physically contiguous
//! and its physical address is one subtraction away. Everything the block
//! driver hands the device lives there: request frames, virtqueue rings
//! (from [`KernelHal::dma_alloc`]), and the heap (request headers and
//! virtio-drivers' indirect descriptor lists), whose blocks come from the
//! same allocator.
//!
//! A buffer outside the physical map (the kernel image's statics, a thread
//! stack in its own virtual area) has no such address; it is **refused**:
//! `share` panics naming the address. It is not bounced, because no caller
//! in this kernel passes one: a refusal is a driver bug to fix, not a case
//! to serve slowly. `unshare` therefore has nothing to copy back.

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::{
    arch::paging,
    mm::{AllocFlags, Frame, PAGE_SIZE, Pfn, alloc_pages, frame_array},
};

/// The block drivers' `Hal` (module docs).
pub struct KernelHal;

/// The physical address of physical-map address `virt`, if `len` bytes
/// from there are RAM the frame array describes.
pub fn phys_of(virt: usize, len: usize) -> Option<u64> {
    let offset = paging::phys_offset() as usize;
    let phys = virt.checked_sub(offset)? as u64;
    let last = phys.checked_add(len.max(1) as u64 - 1)?;
    // Every frame in between is RAM if the first and last are, except
    // across a hole between two RAM ranges; check each frame (buffers are
    // at most a few pages).
    let mut f = Pfn::from_phys(phys);
    while f.phys() <= last {
        frame_array::page(f)?;
        f = f.add(1);
    }
    Some(phys)
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned
// frames (their reference is given up to the allocation and taken back in
// `dma_dealloc`); `mmio_phys_to_virt` maps only non-RAM physical ranges,
// uncached, through the physical map; `share` returns the true physical
// address of memory that stays mapped and allocated for as long as the
// driver keeps the buffer (the driver's contract), and refuses anything
// else.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let order = pages.max(1).next_power_of_two().trailing_zeros();
        match alloc_pages(order, AllocFlags::ZERO) {
            Some(frame) => {
                let virt = NonNull::new(frame.virt()).expect("physical map at 0");
                // The reference goes with the allocation; `dma_dealloc`
                // takes it back.
                let pfn = frame.into_raw();
                (pfn.phys(), virt)
            }
            // virtio-drivers turns a 0 physical address into DmaError.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // SAFETY: `paddr` came from `dma_alloc` (the caller's contract),
        // which gave up exactly this reference with `into_raw`.
        drop(unsafe { Frame::from_raw(Pfn::from_phys(paddr)) });
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let virt = paging::phys_to_virt(paddr);
        let mut page = paddr & !(PAGE_SIZE as u64 - 1);
        while page < paddr + size as u64 {
            assert!(
                frame_array::page(Pfn::from_phys(page)).is_none(),
                "virtio: BAR region {paddr:#x}+{size:#x} overlaps RAM"
            );
            // Device registers must not be cached: same treatment as the
            // local and I/O APIC windows (the leaf may be a 2 MiB page of
            // the physical map, which then holds only MMIO, no RAM).
            assert!(
                paging::set_uncached(paging::phys_to_virt(page)),
                "virtio: BAR region {paddr:#x} is not in the physical map"
            );
            page += PAGE_SIZE as u64;
        }
        NonNull::new(virt as *mut u8).expect("physical map at 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let virt = buffer.as_ptr() as *mut u8 as usize;
        match phys_of(virt, buffer.len()) {
            Some(p) => p,
            None => panic!(
                "virtio: refusing to share buffer {virt:#x}+{:#x}: not RAM in the physical map (no bounce buffers; see block::hal)",
                buffer.len()
            ),
        }
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Shared in place, coherent: nothing to copy back or release.
    }
}
