//! The kernel's one handle for "a frame": [`Frame`], and [`Pfn`] for the
//! physical side.
//!
//! Mental model: a [`Frame`] is one counted reference on the head page of
//! a block of `2^order` physical frames (Linux's `struct folio *` plus the
//! `folio_get` it stands for). Cloning takes another reference
//! (`folio_get`), dropping gives one back (`folio_put`), and the last drop
//! returns the block to the allocator, after the checks of
//! [`super::page_alloc`]. The allocator hands out the first reference
//! ([`super::alloc_pages`]); the page lock, the page cache and GUP take and
//! pass Frames, never frame numbers.
//!
//! The descriptor is borrowed *from the handle*: [`Frame::page`] (and
//! `Deref`) give a `&Page` that cannot outlive the `Frame`, so safe code
//! cannot lock, or look at, a page after giving up its reference (the
//! frame may have been freed and reused by then).
//!
//! A [`Pfn`] appears only where physical and virtual addresses convert:
//! building the frame array, the buddy arithmetic, page tables. Turning a
//! `Pfn` back into a `Frame` takes a reference the checked way
//! ([`Frame::try_get_pfn`], Linux's `get_page_unless_zero`).

use core::{fmt, ops::Deref, ptr::NonNull};

use pagesync::{Page, RefError};

use super::{AllocFlags, MAX_ORDER, PAGE_SIZE, Pfn, frame_array, page_alloc};

/// One reference on the head page of an allocated block (module docs).
#[must_use = "dropping a Frame drops its reference (the last one frees the block)"]
pub struct Frame {
    /// A descriptor of the frame array, which lives for the rest of the
    /// run; the reference we hold keeps the frame allocated.
    page: NonNull<Page>,
}

// SAFETY: a Frame is a counted reference to a descriptor of the 'static
// frame array; every operation on it is an atomic of the descriptor, so
// handles may move between CPUs and threads and be shared.
unsafe impl Send for Frame {}
// SAFETY: as above: `&Frame` only reaches the descriptor's atomics.
unsafe impl Sync for Frame {}

impl Frame {
    /// Wraps a reference the caller owns.
    ///
    /// # Safety
    ///
    /// `page` is a frame-array descriptor and the caller owns one of its
    /// references, which the Frame now carries.
    unsafe fn adopt(page: &'static Page) -> Frame {
        Frame {
            page: NonNull::from(page),
        }
    }

    /// The head page's descriptor, for as long as we hold the reference.
    pub fn page(&self) -> &Page {
        // SAFETY: frame-array descriptors live for the rest of the run.
        unsafe { self.page.as_ref() }
    }

    fn page_static(&self) -> &'static Page {
        // SAFETY: as in `page`; 'static only inside this module and the
        // allocator, which never let it escape the reference it stands for.
        unsafe { self.page.as_ref() }
    }

    /// The head frame's number.
    pub fn pfn(&self) -> Pfn {
        frame_array::pfn_of(self.page())
    }

    /// Physical address of the first byte.
    pub fn phys(&self) -> u64 {
        self.pfn().phys()
    }

    /// Kernel virtual address of the first byte.
    pub fn virt(&self) -> *mut u8 {
        frame_array::virt(self.pfn())
    }

    /// log2 of the number of frames in the block (recorded in the head
    /// page's flags by the allocator).
    pub fn order(&self) -> u32 {
        self.page().flags().order()
    }

    /// Size of the block in bytes.
    pub fn bytes(&self) -> usize {
        PAGE_SIZE << self.order()
    }

    /// Another reference (`folio_get`), refused near the overflow limit.
    pub fn try_clone(&self) -> Result<Frame, RefError> {
        self.page().get_page()?;
        // SAFETY: we just took the reference the new handle carries.
        Ok(unsafe { Frame::adopt(self.page_static()) })
    }

    /// A reference on the block whose head frame is `pfn`, if it is
    /// allocated (`get_page_unless_zero`): refused with
    /// [`RefError::Unused`] on a free frame or one that is not RAM, and
    /// near the GUP overflow limit (2^31) with [`RefError::Overflow`].
    pub fn try_get_pfn(pfn: Pfn) -> Result<Frame, RefError> {
        let page = frame_array::page(pfn).ok_or(RefError::Unused)?;
        page.try_get()?;
        // SAFETY: we just took the reference the handle carries.
        Ok(unsafe { Frame::adopt(page) })
    }

    /// Hands the reference to `f` as a bare page, with the function that
    /// frees the block should `f` drop the last reference. For waits that
    /// give up the caller's reference while queued
    /// (`put_and_wait_on_page_locked`): `f` must drop the reference
    /// exactly once and call the function if that was the last.
    pub fn put_via<R>(self, f: impl FnOnce(&Page, fn(&Page)) -> R) -> R {
        let page = self.page_static();
        core::mem::forget(self);
        f(page, page_alloc::free_last_reference)
    }

    /// Adopts the page reference an async waiter held
    /// (`pagesync::PageRef`, handed to its callback) as a Frame.
    ///
    /// # Panics
    ///
    /// If the page is not a descriptor of the frame array (the kernel only
    /// ever queues waiters on those).
    pub fn from_page_ref(r: pagesync::PageRef) -> Frame {
        let p = r.into_raw();
        // SAFETY: the PageRef held a reference, now ours; a descriptor
        // outlives every reference.
        let page = unsafe { p.as_ref() };
        let desc = frame_array::page(frame_array::pfn_of(page))
            .filter(|d| core::ptr::eq(*d, page))
            .expect("Frame::from_page_ref: not a frame-array descriptor");
        // SAFETY: `desc` is the frame-array descriptor, and we own the
        // reference the PageRef carried.
        unsafe { Frame::adopt(desc) }
    }

    /// Gives up the handle without dropping its reference: the block stays
    /// allocated until [`Frame::from_raw`] takes the reference back (or
    /// for ever: heap blocks, stacks, page tables).
    ///
    /// The kernel's alone (`pub(crate)`), not `mm`'s alone as Asterinas
    /// keeps its own: the owners that can store only a physical address, a
    /// page-table entry (`vm`), a virtio DMA buffer (`block::hal`), a
    /// kernel stack (`sched::stack`), live outside `mm`. The suites and any
    /// code outside the kernel hold frames only as `Frame`s.
    pub(crate) fn into_raw(self) -> Pfn {
        let pfn = self.pfn();
        core::mem::forget(self);
        pfn
    }

    /// Takes back a reference given up by [`Frame::into_raw`].
    ///
    /// # Safety
    ///
    /// `pfn` came from `into_raw`, and that reference was not taken back
    /// before.
    pub(crate) unsafe fn from_raw(pfn: Pfn) -> Frame {
        let page = frame_array::page(pfn).expect("Frame::from_raw: not a frame of RAM");
        // SAFETY: the caller gives us the reference `into_raw` kept.
        unsafe { Frame::adopt(page) }
    }
}

/// Frees the block whose last reference a put outside any [`Frame`] just
/// dropped: the temporary reference that `pagesync`'s end of writeback
/// takes and puts (Linux's `folio_end_writeback` ends in `folio_put`,
/// which frees the folio when a truncation let go of it meanwhile). The
/// block goes back through the allocator's checks, as a Frame's last drop.
///
/// # Safety
///
/// `page` is a frame-array descriptor, and the caller's own put took its
/// count to 0 (`PutOutcome::LastReference`), once: nobody else frees it.
pub unsafe fn free_after_last_put(page: &Page) {
    page_alloc::free_last_reference(page);
}

/// Allocates 2^order contiguous, naturally aligned frames, or None when no
/// block that large is free. The Frame carries the block's first
/// reference.
pub fn alloc_pages(order: u32, how: AllocFlags) -> Option<Frame> {
    if order > MAX_ORDER {
        return None;
    }
    let head = page_alloc::alloc_block(order)?;
    // SAFETY: `alloc_block` gave the head its first reference, which the
    // Frame carries.
    let frame = unsafe { Frame::adopt(head) };
    if how.zero {
        // SAFETY: the block is ours (just allocated) and mapped in the
        // physical map for its whole length.
        unsafe { core::ptr::write_bytes(frame.virt(), 0, frame.bytes()) };
    }
    Some(frame)
}

impl Clone for Frame {
    /// Another reference; a count at the overflow limit is a kernel bug
    /// (reported with the descriptor, as Linux's `VM_BUG_ON_PAGE`).
    fn clone(&self) -> Frame {
        self.try_clone()
            .unwrap_or_else(|e| page_alloc::bad_page(self.pfn(), format_args!("get_page: {e:?}")))
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        page_alloc::put_frame(self.page_static());
    }
}

impl Deref for Frame {
    type Target = Page;

    fn deref(&self) -> &Page {
        self.page()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Frame({})", page_alloc::Dump(self.pfn()))
    }
}
