//! The page descriptor ("struct page"): one 64-byte slot per physical frame.
//!
//! Mental model: the kernel keeps an array of [`Page`]s, one per 4 KiB
//! frame, and finds a frame's slot by arithmetic (`base + pfn`). Every field
//! is atomic because any CPU may look at any page at any time: the flags
//! word carries the lock and I/O state ([`crate::flags`]), the reference
//! count says whether the frame is in use ([`crate::refcount`]), the mapping
//! and index words will name the file offset when the page cache arrives,
//! and the two link words plus the private word carry the buddy allocator's
//! free-list links and block order while the page is free.
//!
//! Every word is accessed with Relaxed ordering unless a method says
//! otherwise; the orderings that matter live in the flag and refcount
//! operations.

use crate::flags::PageFlags;
use crate::sync::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize};

/// One frame's descriptor. 64 bytes, one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Page {
    /// Flag bits, see [`crate::flags`].
    pub flags: PageFlags,
    /// References; 0 means the frame is free. Use the methods in
    /// [`crate::refcount`].
    pub(crate) refcount: AtomicU32,
    /// Number of page-table entries mapping the frame (0 = unmapped; Linux
    /// stores this minus one).
    pub(crate) mapcount: AtomicI32,
    /// The owning address space or object (page cache), 0 if none.
    pub mapping: AtomicUsize,
    /// Offset in pages within `mapping`.
    pub index: AtomicU64,
    /// Buddy/LRU list link: next slot address, 0 if none.
    pub list_next: AtomicUsize,
    /// Buddy/LRU list link: previous slot address, 0 if none.
    pub list_prev: AtomicUsize,
    /// Block order while free in the buddy allocator; owner data while used.
    pub private: AtomicU64,
    /// Debug word for lock checkers: the id of the thread that claims to
    /// hold `PG_LOCKED`, 0 if none. The protocol never touches it; torture
    /// tests claim it with a CAS right after locking (locktorture-style).
    pub lock_owner: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Page>() == 64);
#[cfg(not(loom))]
const _: () = assert!(core::mem::align_of::<Page>() == 64);

macro_rules! empty_page {
    () => {
        Page {
            flags: PageFlags::new(),
            refcount: AtomicU32::new(0),
            mapcount: AtomicI32::new(0),
            mapping: AtomicUsize::new(0),
            index: AtomicU64::new(0),
            list_next: AtomicUsize::new(0),
            list_prev: AtomicUsize::new(0),
            private: AtomicU64::new(0),
            lock_owner: AtomicU64::new(0),
        }
    };
}

impl Page {
    /// A free page: all flags clear, reference count 0. `const`, so the
    /// kernel can write `static PAGES: [Page; N] = [const { Page::new() }; N];`.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        empty_page!()
    }

    /// A free page (loom atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        empty_page!()
    }

    /// The address used as this page's identity in the wait table.
    pub fn addr(&self) -> usize {
        core::ptr::from_ref(self) as usize
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    static PAGES: [Page; 4] = [const { Page::new() }; 4];

    #[test]
    fn static_array_is_64_byte_strided() {
        assert_eq!(PAGES[1].addr() - PAGES[0].addr(), 64);
        assert_eq!(PAGES[0].addr() % 64, 0);
        assert_eq!(PAGES[3].ref_count(), 0);
    }
}
