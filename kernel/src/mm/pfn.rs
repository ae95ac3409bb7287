//! [`Pfn`]: a physical frame number, used only where physical and
//! virtual addresses convert (the frame array, the buddy arithmetic, page
//! tables). Everything else holds frames through `super::Frame`.

use core::fmt;

use super::PAGE_SHIFT;

/// A physical frame number (physical address >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The frame holding physical address `phys`.
    pub const fn from_phys(phys: u64) -> Pfn {
        Pfn(phys >> PAGE_SHIFT)
    }

    /// The physical address of the frame's first byte.
    pub const fn phys(self) -> u64 {
        self.0 << PAGE_SHIFT
    }

    /// The frame `n` frames further on.
    pub const fn add(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }
}

impl fmt::LowerHex for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
