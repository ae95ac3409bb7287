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
//!
//! The fields are private to this crate: outsiders use the operations
//! (flag bit operations, reference counting, the page lock in
//! [`crate::PageWaitTable`]) and, for the words that belong to whoever owns
//! the frame's current use (the allocator's free-list links and order, the
//! page cache's mapping and index), the accessors below. No safe method can
//! overwrite the flags word as a whole.

use core::ptr::{self, NonNull};

use crate::flags::PageFlags;
#[cfg(not(loom))]
use crate::flags::{PG_RESERVED, mask};
use crate::sync::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// One frame's descriptor. 64 bytes, one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Page {
    /// Flag bits, see [`crate::flags`].
    pub(crate) flags: PageFlags,
    /// References; 0 means the frame is free. Use the methods in
    /// [`crate::refcount`].
    pub(crate) refcount: AtomicU32,
    /// Number of page-table entries mapping the frame (0 = unmapped; Linux
    /// stores this minus one).
    pub(crate) mapcount: AtomicI32,
    /// The owning address space or object (page cache), 0 if none.
    pub(crate) mapping: AtomicUsize,
    /// Offset in pages within `mapping`.
    pub(crate) index: AtomicU64,
    /// Free-list/LRU link: the next descriptor, null if none.
    pub(crate) list_next: AtomicPtr<Page>,
    /// Free-list/LRU link: the previous descriptor, null if none.
    pub(crate) list_prev: AtomicPtr<Page>,
    /// Block order while free in the buddy allocator; owner data while used.
    pub(crate) private: AtomicU64,
    /// Debug word for lock checkers: the id of the thread that claims to
    /// hold `PG_LOCKED`, 0 if none. The protocol never touches it; torture
    /// tests claim it with a CAS right after locking (locktorture-style).
    pub(crate) lock_owner: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<Page>() == 64);
#[cfg(not(loom))]
const _: () = assert!(core::mem::align_of::<Page>() == 64);

macro_rules! page_with {
    ($flags:expr, $refs:expr) => {
        Page {
            flags: PageFlags::with($flags),
            refcount: AtomicU32::new($refs),
            mapcount: AtomicI32::new(0),
            mapping: AtomicUsize::new(0),
            index: AtomicU64::new(0),
            list_next: AtomicPtr::new(ptr::null_mut()),
            list_prev: AtomicPtr::new(ptr::null_mut()),
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
        page_with!(0, 0)
    }

    /// A free page (loom atomics cannot be built in a `const fn`).
    #[cfg(loom)]
    pub fn new() -> Self {
        page_with!(0, 0)
    }

    /// A reserved frame (firmware, kernel image, holes): `PG_RESERVED`, one
    /// reference that is never dropped. How the kernel's frame array starts
    /// every descriptor before it frees the usable frames.
    #[cfg(not(loom))]
    pub const fn new_reserved() -> Self {
        page_with!(mask(PG_RESERVED), 1)
    }

    /// The address used as this page's identity in the wait table.
    pub fn addr(&self) -> usize {
        ptr::from_ref(self) as usize
    }

    /// The flags word and its bit operations.
    pub fn flags(&self) -> &PageFlags {
        &self.flags
    }

    /// The next descriptor on the owner's list (buddy free list, LRU).
    /// Relaxed: the list's lock orders it.
    pub fn link_next(&self) -> Option<NonNull<Page>> {
        NonNull::new(self.list_next.load(Ordering::Relaxed))
    }

    /// The previous descriptor on the owner's list. Relaxed, as
    /// [`Page::link_next`].
    pub fn link_prev(&self) -> Option<NonNull<Page>> {
        NonNull::new(self.list_prev.load(Ordering::Relaxed))
    }

    /// Sets the next link (the owner's list lock held).
    pub fn set_link_next(&self, next: Option<NonNull<Page>>) {
        self.list_next.store(
            next.map_or(ptr::null_mut(), NonNull::as_ptr),
            Ordering::Relaxed,
        );
    }

    /// Sets the previous link (the owner's list lock held).
    pub fn set_link_prev(&self, prev: Option<NonNull<Page>>) {
        self.list_prev.store(
            prev.map_or(ptr::null_mut(), NonNull::as_ptr),
            Ordering::Relaxed,
        );
    }

    /// The owner's private word (the buddy order of a free block).
    pub fn private(&self) -> u64 {
        self.private.load(Ordering::Relaxed)
    }

    /// Sets the owner's private word.
    pub fn set_private(&self, value: u64) {
        self.private.store(value, Ordering::Relaxed);
    }

    /// The object the page belongs to (page cache), 0 if none.
    pub fn mapping(&self) -> usize {
        self.mapping.load(Ordering::Relaxed)
    }

    /// The page's offset, in pages, within [`Page::mapping`].
    pub fn index(&self) -> u64 {
        self.index.load(Ordering::Relaxed)
    }

    /// Sets mapping and index. Only while the page is locked or not yet
    /// visible (Linux sets `folio->mapping` under the folio lock).
    pub fn set_mapping(&self, mapping: usize, index: u64) {
        self.mapping.store(mapping, Ordering::Relaxed);
        self.index.store(index, Ordering::Relaxed);
    }

    /// The lock checkers' owner word (see the field docs).
    pub fn lock_owner(&self) -> &AtomicU64 {
        &self.lock_owner
    }

    /// Resets every owner word (links, private, mapping, index, lock owner)
    /// of a page that is being freed (count 0, on no list yet).
    pub fn reset_owner_words(&self) {
        self.set_link_next(None);
        self.set_link_prev(None);
        self.set_private(0);
        self.set_mapping(0, 0);
        self.lock_owner.store(0, Ordering::Relaxed);
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
