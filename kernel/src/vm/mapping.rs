//! File-backed regions: [`MapSource`], what the page cache implements, and
//! [`Mapping`], the handle it keeps to find and clean the page-table
//! entries that map its pages (Linux's `i_mmap` and `folio_mkclean`).
//!
//! Mental model: `map_file` makes a region of a space show pages
//! `first_index..` of a source. The source is told of the new [`Mapping`]
//! ([`MapSource::mapped`]) *before* the region can fault anything in, and
//! that it is gone ([`MapSource::unmapped`]) only *after* its last page
//! left the page tables (and the TLBs). So whenever a page of the source
//! is mapped somewhere, the source holds a Mapping through which
//! [`Mapping::clean`] reaches that entry. Splitting a region (a partial
//! unmap) keeps the Mapping: it still covers every piece, at the same
//! offsets.
//!
//! Writes to a shared file mapping are tracked as in Linux: a page is
//! first mapped read-only; the first write faults, the VM locks the page
//! and calls [`MapSource::page_mkwrite`] (which waits for a stable page and
//! marks it dirty), makes the entry writable, and only then unlocks the
//! page. Writeback takes the page lock, then [`Mapping::clean`]s every
//! mapping of the page (write-protect, shoot down, collect the MMU's dirty
//! bit) before it clears the page's dirty flag. With the page lock held
//! across both, a page is never writable in a page table while it is
//! clean in the page cache, and the next write after a clean faults and
//! dirties it again.

use alloc::{sync::Weak, vec::Vec};

use super::{AddressSpace, VmError};
use crate::mm::{Frame, PAGE_SIZE};

/// A file (or anything with pages) that regions can map: the page cache.
///
/// Locking rules for implementors: the VM calls `read_page` and
/// `page_mkwrite` without holding any spin lock (they may sleep), and
/// `mapped`/`unmapped` without the space lock; `unmapped` may also be
/// called when the last reference to a space is dropped, which can happen
/// inside [`Mapping::clean`] (the clean held the last reference). So do not
/// hold a lock that `mapped`/`unmapped` take while calling `clean`: take a
/// snapshot of the Mappings (they are cheap clones) and clean outside the
/// lock. `unmapped` must not sleep.
pub trait MapSource: Send + Sync {
    /// The up-to-date page at `index`, with a reference for the caller
    /// (reads it in if needed; may sleep). It must be a single frame.
    fn read_page(&self, index: u64) -> Result<Frame, VmError>;
    /// The page is about to become writable through a shared mapping.
    /// Called **with the page locked by the VM**, which keeps it locked
    /// until the page-table entry is writable (Linux's `page_mkwrite`
    /// returning `VM_FAULT_LOCKED`): wait for a stable page (writeback to
    /// end), mark the page dirty; do not unlock it. Returning
    /// [`VmError::Retry`] (the page was truncated or replaced) makes the
    /// fault start over; any other error fails it.
    fn page_mkwrite(&self, index: u64, page: &Frame) -> Result<(), VmError>;
    /// A space now maps (or may fault in) pages of this source through `m`.
    fn mapped(&self, m: Mapping);
    /// The space no longer maps any page through `m` (compare with `==`).
    fn unmapped(&self, m: &Mapping);
}

/// One `map_file` of a source into a space: a weak reference to the space,
/// the range and the index of its first page. Cheap to clone; equal handles
/// name the same mapping.
#[derive(Clone)]
pub struct Mapping {
    pub(super) space: Weak<AddressSpace>,
    /// Unique per `map_file`; the regions it made carry it.
    pub(super) id: u64,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) first_index: u64,
}

impl PartialEq for Mapping {
    fn eq(&self, other: &Mapping) -> bool {
        self.id == other.id && Weak::ptr_eq(&self.space, &other.space)
    }
}
impl Eq for Mapping {}

impl core::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(
            f,
            "Mapping#{}[{:#x}, {:#x}) from index {}",
            self.id, self.start, self.end, self.first_index
        )
    }
}

impl Mapping {
    /// First mapped address.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// End of the mapped range (exclusive).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The source page mapped at [`Mapping::start`].
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Pages in the range.
    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE as u64
    }

    /// Where page `index` of the source is mapped, if this mapping covers
    /// it (`linear_page_index` backwards).
    pub fn address_of(&self, index: u64) -> Option<u64> {
        let off = index.checked_sub(self.first_index)?;
        (off < self.pages()).then(|| self.start + off * PAGE_SIZE as u64)
    }

    /// `folio_mkclean` for one mapping: if page `index` is mapped here,
    /// write-protect its entry, shoot the old translation down on every CPU
    /// that may hold it, and return whether the entry was dirty (the MMU's
    /// Dirty bit, cleared with the write permission). Returns only after the
    /// shoot-down, so no write through the old entry can follow. False if
    /// the page is not mapped here (or the space is gone). The caller holds
    /// the page lock (writeback); see [`MapSource`] for what it must not
    /// hold.
    pub fn clean(&self, index: u64) -> bool {
        let (Some(va), Some(space)) = (self.address_of(index), self.space.upgrade()) else {
            return false;
        };
        space.clean_page(self.id, va)
    }

    /// Whether page `index` is mapped here now (a snapshot).
    pub fn is_mapped(&self, index: u64) -> bool {
        let (Some(va), Some(space)) = (self.address_of(index), self.space.upgrade()) else {
            return false;
        };
        space.mapped_by(self.id, va).is_some()
    }

    /// The pages of this mapping whose entries are dirty now (written since
    /// they were last cleaned), in index order, without cleaning them: a
    /// sync walk (`msync`) finds with it what to write back.
    pub fn dirty_indices(&self) -> Vec<u64> {
        let Some(space) = self.space.upgrade() else {
            return Vec::new();
        };
        space
            .dirty_in(self.id, self.start, self.end)
            .into_iter()
            .map(|va| self.first_index + (va - self.start) / PAGE_SIZE as u64)
            .collect()
    }
}
