//! `get_user_pages` and `pin_user_pages`: references and DMA pins on the
//! pages behind a range of an address space.
//!
//! Mental model (Linux `mm/gup.c`, simplified to the slow path): for each
//! page of the range, find it through the space's page tables and fault it
//! in if absent ([`AddressSpace::fault_in`], which takes a reference while
//! the page-table lock is held, so the page cannot be unmapped and freed in
//! between), then
//! * `get_user_pages` keeps that reference (`FOLL_GET`);
//! * `pin_user_pages` also pins the page (`FOLL_PIN`): adds the pin bias
//!   (1024) to its count, ordered against a concurrent start of writeback
//!   by the boot's scheme (`gup=lock|barrier`, `pagesync::pin`), so that
//!   writeback always knows the page may be DMA-pinned; the page cache then
//!   writes such a page from a bounce copy (`crate::pagecache`).
//!
//! Errors, never partial effects: the whole range is checked first
//! (alignment, wrapping, the user half, the count); a page that cannot be
//! reached (unmapped, a write to a read-only region, a long-term write pin
//! on a file mapping, a count that would pass 2^31) fails the call, and
//! every page taken before it is released before the error returns.
//!
//! `FOLL_LONGTERM` write pins on file-backed mappings are refused, as Linux
//! does since 6.5 (`writable_file_mapping_allowed`): writeback would clean
//! and write-protect the page while the device keeps writing to it.

use alloc::vec::Vec;

use pagesync::{Page, RefError};

use crate::{
    mm::{Frame, PAGE_SIZE},
    pagelock::{Table, table},
    vm::{AddressSpace, USER_BASE, USER_END, VmError},
};

/// The most pages one call may ask for (4 GiB of 4 KiB pages).
pub const MAX_PAGES: usize = 1 << 20;

/// What the caller will do with the pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GupFlags {
    /// The caller (or its device) writes the pages (`FOLL_WRITE`).
    pub write: bool,
    /// The pin may last indefinitely (`FOLL_LONGTERM`, RDMA-style).
    pub longterm: bool,
}

/// Why a call failed. No page of the range stays referenced or pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GupError {
    /// `count` is 0.
    Empty,
    /// `count` is above [`MAX_PAGES`].
    TooMany { count: usize },
    /// `start` is not page aligned.
    Misaligned { start: u64 },
    /// `start + count` pages does not fit in 64 bits.
    Wraps { start: u64, count: usize },
    /// The range leaves the user half (a kernel address, the null guard).
    NotUserRange { start: u64, end: u64 },
    /// No region maps `addr`.
    NotMapped { addr: u64 },
    /// A write access to a read-only region.
    ReadOnly { addr: u64 },
    /// A long-term write pin on a file-backed mapping.
    LongtermFileWrite { addr: u64 },
    /// The page's reference count would pass the GUP limit (2^31).
    Overflow { addr: u64 },
    /// No memory to fault the page in.
    OutOfMemory { addr: u64 },
    /// The file behind the mapping could not read the page.
    Io { addr: u64 },
}

impl GupError {
    fn from_vm(e: VmError, addr: u64) -> GupError {
        match e {
            VmError::NoRegion { .. } => GupError::NotMapped { addr },
            VmError::WriteToReadOnly { .. } => GupError::ReadOnly { addr },
            VmError::OutOfMemory => GupError::OutOfMemory { addr },
            VmError::RefOverflow => GupError::Overflow { addr },
            VmError::NotUserRange { start, end } => GupError::NotUserRange { start, end },
            _ => GupError::Io { addr },
        }
    }
}

/// Checks the range as a whole; returns its end.
fn check_range(start: u64, count: usize) -> Result<u64, GupError> {
    if count == 0 {
        return Err(GupError::Empty);
    }
    if count > MAX_PAGES {
        return Err(GupError::TooMany { count });
    }
    if !start.is_multiple_of(PAGE_SIZE as u64) {
        return Err(GupError::Misaligned { start });
    }
    let end = (count as u64)
        .checked_mul(PAGE_SIZE as u64)
        .and_then(|len| start.checked_add(len))
        .ok_or(GupError::Wraps { start, count })?;
    if start < USER_BASE || end > USER_END {
        return Err(GupError::NotUserRange { start, end });
    }
    Ok(end)
}

/// References on the pages of a range (`get_user_pages`, `FOLL_GET`).
/// Dropping the frames drops the references.
pub fn get_user_pages(
    space: &AddressSpace,
    start: u64,
    count: usize,
    flags: GupFlags,
) -> Result<Vec<Frame>, GupError> {
    check_range(start, count)?;
    let mut frames = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let va = start + i * PAGE_SIZE as u64;
        // On error `frames` drops here: every reference taken goes back.
        frames.push(
            space
                .fault_in(va, flags.write)
                .map_err(|e| GupError::from_vm(e, va))?,
        );
    }
    Ok(frames)
}

/// Pages pinned for DMA by [`pin_user_pages`]. Dropping it unpins them
/// (`unpin_user_pages`) and drops their references.
#[must_use = "dropping the pins at once makes the pin pointless"]
pub struct Pinned {
    table: &'static Table,
    frames: Vec<Frame>,
}

impl Pinned {
    /// The pinned pages, in address order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// How many pages are pinned.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// No page is pinned.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for f in &self.frames {
            // Never the last reference: the frame itself holds one.
            if let Err(e) = self.table.unpin_page(f) {
                panic!("unpin_user_pages: page {:#x}: {e:?}", f.addr());
            }
        }
    }
}

/// `pin_user_pages`: pins every page of the range for DMA (module docs).
pub fn pin_user_pages(
    space: &AddressSpace,
    start: u64,
    count: usize,
    flags: GupFlags,
) -> Result<Pinned, GupError> {
    let end = check_range(start, count)?;
    if flags.longterm && flags.write {
        for r in space.regions() {
            if r.file_index.is_some() && r.start < end && start < r.end {
                return Err(GupError::LongtermFileWrite {
                    addr: r.start.max(start),
                });
            }
        }
    }
    let table = table();
    let mut pinned = Pinned {
        table,
        frames: Vec::with_capacity(count),
    };
    for i in 0..count as u64 {
        let va = start + i * PAGE_SIZE as u64;
        // On any error `pinned` drops: every pin taken so far is released.
        let frame = space
            .fault_in(va, flags.write)
            .map_err(|e| GupError::from_vm(e, va))?;
        match table.pin_page(&frame) {
            Ok(_) => pinned.frames.push(frame),
            Err(RefError::Overflow) => return Err(GupError::Overflow { addr: va }),
            Err(e) => panic!("pin_user_pages: a referenced page refused a pin: {e:?}"),
        }
    }
    Ok(pinned)
}

/// `page_maybe_dma_pinned`: the count is at least the pin bias (false
/// positives allowed, false negatives not).
pub fn page_maybe_dma_pinned(page: &Page) -> bool {
    page.maybe_dma_pinned()
}
