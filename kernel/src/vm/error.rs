//! [`VmError`]: why an address-space operation was refused. A refused
//! operation changed nothing.

use core::fmt;

/// Why an address-space operation was refused. The space is as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    /// A zero-length range.
    Empty { start: u64 },
    /// `start + len` does not fit in 64 bits.
    Wraps { start: u64, len: u64 },
    /// The start or the length is not a multiple of the page size.
    Misaligned { start: u64, len: u64 },
    /// The range leaves the user range `[USER_BASE, USER_END)` (the null
    /// guard below it, the non-canonical hole and the kernel half above).
    NotUserRange { start: u64, end: u64 },
    /// The range overlaps the existing region `[existing_start, existing_end)`.
    Overlap {
        start: u64,
        end: u64,
        existing_start: u64,
        existing_end: u64,
    },
    /// A file region's page indices would pass `u64::MAX`.
    IndexOverflow { first_index: u64, pages: u64 },
    /// No region covers the address.
    NoRegion { addr: u64 },
    /// A write to a read-only region.
    WriteToReadOnly { addr: u64, start: u64, end: u64 },
    /// No frame for a page or a page table.
    OutOfMemory,
    /// The page's reference count is at the GUP limit (2^31): refused
    /// rather than wrapped (Linux 8fde12ca79af).
    RefOverflow,
    /// A map source handed out a block that is not a single frame.
    NotOneFrame { order: u32 },
    /// The map source could not provide the page (I/O error, or the index is
    /// past its end).
    Io { index: u64 },
    /// The map source's page went away while the fault was resolving it
    /// (truncated or replaced): fault again. Never returned to callers of
    /// the fault paths, which retry.
    Retry,
}

impl VmError {
    /// A short phrase for the exception report of a refused page fault.
    pub fn why(&self) -> &'static str {
        match self {
            VmError::NoRegion { .. } => "no region maps this address",
            VmError::WriteToReadOnly { .. } => "write to a read-only region",
            VmError::OutOfMemory => "out of memory resolving the fault",
            VmError::RefOverflow => "page reference count at its limit",
            VmError::NotOneFrame { .. } => "the map source returned a multi-frame block",
            VmError::Io { .. } => "the map source could not read the page",
            VmError::Retry => "the map source kept replacing the page",
            _ => "bad range",
        }
    }

    /// The region involved, if any, for the exception report.
    pub fn region(&self) -> Option<(u64, u64)> {
        match *self {
            VmError::WriteToReadOnly { start, end, .. } => Some((start, end)),
            _ => None,
        }
    }
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            VmError::Empty { start } => write!(f, "empty range at {start:#x}"),
            VmError::Wraps { start, len } => {
                write!(f, "range {start:#x} + {len:#x} wraps past 2^64")
            }
            VmError::Misaligned { start, len } => {
                write!(f, "range {start:#x} + {len:#x} is not page aligned")
            }
            VmError::NotUserRange { start, end } => write!(
                f,
                "range [{start:#x}, {end:#x}) is not inside the user range [{:#x}, {:#x})",
                super::USER_BASE,
                super::USER_END
            ),
            VmError::Overlap {
                start,
                end,
                existing_start,
                existing_end,
            } => write!(
                f,
                "range [{start:#x}, {end:#x}) overlaps region [{existing_start:#x}, {existing_end:#x})"
            ),
            VmError::IndexOverflow { first_index, pages } => write!(
                f,
                "file pages {first_index} + {pages} pass the largest page index"
            ),
            VmError::NoRegion { addr } => write!(f, "no region maps {addr:#x}"),
            VmError::WriteToReadOnly { addr, start, end } => write!(
                f,
                "write to {addr:#x} in read-only region [{start:#x}, {end:#x})"
            ),
            VmError::OutOfMemory => f.write_str("out of memory"),
            VmError::RefOverflow => f.write_str("page reference count at the GUP limit"),
            VmError::NotOneFrame { order } => write!(
                f,
                "the map source returned a block of order {order}, not one frame"
            ),
            VmError::Io { index } => write!(f, "the map source could not provide page {index}"),
            VmError::Retry => f.write_str("the page went away while being mapped"),
        }
    }
}
