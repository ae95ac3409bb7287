//! The frame array: one 64-byte [`Page`] descriptor per 4 KiB frame of RAM.
//!
//! # Layout: sparse sections
//!
//! Physical memory is cut into fixed *sections* of 2^15 frames (128 MiB,
//! Linux x86_64's `SECTION_SIZE_BITS` = 27). A section that holds no RAM
//! costs one 12-byte [`Section`] entry and no descriptors, so the PCI hole
//! below 4 GiB (and anything above the last RAM) is free. A section with
//! RAM gets descriptors for the span from its lowest to its highest RAM
//! frame, each end rounded out to a multiple of 64 frames; frames inside
//! that span that are not usable RAM (small firmware holes, the legacy area
//! below 1 MiB) get descriptors marked `PG_RESERVED`.
//!
//! All sections' descriptor runs are packed one after the other in a single
//! block carved from usable RAM at boot, followed by the section table and
//! a reverse table. Conversions, all O(1):
//! * pfn -> descriptor: section `pfn >> 15`, then `pages[first + pfn - start]`;
//! * descriptor -> pfn: its index `i` in the packed array, plus the bias
//!   `rbias[i / 64]` (every run starts and ends on a 64-descriptor boundary,
//!   so each 4 KiB of descriptors belongs to one section);
//! * pfn <-> physical address: shift by 12;
//! * physical <-> virtual: the bootloader maps all physical memory at
//!   `phys_offset`.
//!
//! The array is written once by the boot CPU before any other CPU runs and
//! published through a `spin::Once`; afterwards only the descriptors' own
//! atomics change.

use bootloader_api::{
    BootInfo,
    info::{MemoryRegion, MemoryRegionKind},
};
use pagesync::Page;

use super::{LOW_LIMIT, PAGE_SHIFT, PAGE_SIZE, pfn::Pfn};

/// log2 of the frames per section.
pub const SECTION_SHIFT: u32 = 15;
/// Descriptors per 4 KiB of array; runs are aligned to this.
const GROUP: u64 = (PAGE_SIZE / core::mem::size_of::<Page>()) as u64;

/// One section's run of descriptors: frames `start..end` (empty when equal)
/// are described by `pages[first..first + end - start]`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Section {
    start: u32,
    end: u32,
    first: u32,
}

/// The published array; see the module docs.
pub struct FrameArray {
    pages: &'static [Page],
    sections: &'static [Section],
    /// pfn minus packed index, per group of [`GROUP`] descriptors.
    rbias: &'static [u32],
    phys_offset: u64,
}

static ARRAY: spin::Once<FrameArray> = spin::Once::new();

/// What [`init`] found, for the boot report and the tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Bytes of RAM in the memory map (usable, bootloader, ACPI).
    pub ram_bytes: u64,
    /// Descriptors in the array (RAM frames plus in-section holes).
    pub described: u64,
    /// Sections holding RAM.
    pub sections: u64,
    /// Bytes carved for descriptors and tables.
    pub array_bytes: u64,
    /// Physical address of the carved block.
    pub array_phys: u64,
    /// Usable frames left for the allocator ([`UsableFrames`]).
    pub usable_frames: u64,
    /// Highest RAM frame number plus one.
    pub end_pfn: u64,
}

static STATS: spin::Once<Stats> = spin::Once::new();

fn array() -> &'static FrameArray {
    ARRAY.get().expect("mm: frame array used before mm::init")
}

/// The boot statistics.
pub fn stats() -> Stats {
    STATS.get().copied().unwrap_or_default()
}

/// The descriptor of frame `pfn`, or None if the frame is not described.
///
/// The descriptor, not the frame: nothing here keeps the frame allocated.
/// Code outside the allocator holds frames through [`super::Frame`].
#[inline]
pub fn page(pfn: Pfn) -> Option<&'static Page> {
    let Pfn(pfn) = pfn;
    let a = array();
    let s = a.sections.get((pfn >> SECTION_SHIFT) as usize)?;
    if pfn < u64::from(s.start) || pfn >= u64::from(s.end) {
        return None;
    }
    a.pages
        .get(s.first as usize + (pfn - u64::from(s.start)) as usize)
}

/// The frame number a descriptor of the array describes.
///
/// Panics if `page` is not in the array (a descriptor is only ever reached
/// through [`page`], so that is a bug).
#[inline]
pub fn pfn_of(page: &Page) -> Pfn {
    descriptor(page).1
}

/// The array's own reference to a descriptor met as a plain `&Page` (one
/// handed back by `pagesync`), with its frame number: both found in one
/// step, for the free path.
///
/// Panics if `page` is not in the array, as [`pfn_of`].
#[inline]
pub fn descriptor(page: &Page) -> (&'static Page, Pfn) {
    let a = array();
    let base = a.pages.as_ptr() as usize;
    let off = (page as *const Page as usize).wrapping_sub(base);
    let idx = off / core::mem::size_of::<Page>();
    assert!(
        idx < a.pages.len(),
        "mm: {:#x} is not a frame descriptor",
        page as *const Page as usize
    );
    (
        &a.pages[idx],
        Pfn(idx as u64 + u64::from(a.rbias[idx / GROUP as usize])),
    )
}

/// The kernel's virtual address of frame `pfn` (in the physical map).
#[inline]
pub fn virt(pfn: Pfn) -> *mut u8 {
    (array().phys_offset + pfn.phys()) as *mut u8
}

/// The frame holding kernel virtual address `v` of the physical map.
#[inline]
pub fn pfn_of_virt(v: *const u8) -> Pfn {
    Pfn((v as u64 - array().phys_offset) >> PAGE_SHIFT)
}

/// The described frame ranges `start..end`, one per section with RAM.
pub fn sections() -> impl Iterator<Item = (Pfn, Pfn)> {
    array()
        .sections
        .iter()
        .filter(|s| s.end > s.start)
        .map(|s| (Pfn(u64::from(s.start)), Pfn(u64::from(s.end))))
}

/// Is this region kind RAM (to be described), rather than device space?
fn is_ram(kind: MemoryRegionKind) -> bool {
    match kind {
        MemoryRegionKind::Usable | MemoryRegionKind::Bootloader => true,
        // E820: 3 = ACPI reclaimable, 4 = ACPI NVS.
        MemoryRegionKind::UnknownBios(t) => matches!(t, 3 | 4),
        // UEFI: loader/boot/runtime code and data, ACPI tables and NVS.
        MemoryRegionKind::UnknownUefi(t) => matches!(t, 1..=6 | 9 | 10),
        _ => false,
    }
}

const fn pfn_down(addr: u64) -> u64 {
    addr >> PAGE_SHIFT
}

const fn pfn_up(addr: u64) -> u64 {
    addr.div_ceil(PAGE_SIZE as u64)
}

/// Calls `f(lo, hi)` for the parts of frames `lo..hi` outside every range
/// in `excluded`.
fn subtract(lo: u64, hi: u64, excluded: &[(u64, u64)], f: &mut impl FnMut(u64, u64)) {
    if lo >= hi {
        return;
    }
    match excluded.iter().position(|&(a, b)| a < hi && lo < b) {
        None => f(lo, hi),
        Some(i) => {
            let (a, b) = excluded[i];
            let rest = &excluded[i + 1..];
            subtract(lo, a.min(hi), rest, f);
            subtract(b.max(lo), hi, rest, f);
        }
    }
}

/// The RAM span of section `s`, rounded out to [`GROUP`], or None.
fn section_span(regions: &[MemoryRegion], s: u64) -> Option<(u64, u64)> {
    let (base, limit) = (s << SECTION_SHIFT, (s + 1) << SECTION_SHIFT);
    let mut span: Option<(u64, u64)> = None;
    for r in regions.iter().filter(|r| is_ram(r.kind)) {
        let (lo, hi) = (pfn_down(r.start).max(base), pfn_up(r.end).min(limit));
        if lo < hi {
            span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    span.map(|(lo, hi)| (lo / GROUP * GROUP, hi.div_ceil(GROUP) * GROUP))
}

/// The frames [`init`] leaves for the page allocator: usable RAM from 1 MiB
/// up, except the array itself, the kernel file and the ramdisk. Their
/// descriptors are still marked reserved; whoever takes a range makes them
/// free frames.
pub struct UsableFrames<'a> {
    regions: &'a [MemoryRegion],
    /// Frame ranges carved out of the usable regions, sorted.
    excluded: [(u64, u64); 3],
}

impl UsableFrames<'_> {
    /// Calls `f(lo, hi)` for each run `lo..hi` of usable frames, in the
    /// memory map's order; the runs do not overlap.
    pub fn for_each(&self, mut f: impl FnMut(Pfn, Pfn)) {
        for r in self
            .regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
        {
            let lo = pfn_up(r.start).max(pfn_up(LOW_LIMIT));
            subtract(lo, pfn_down(r.end), &self.excluded, &mut |a, b| {
                f(Pfn(a), Pfn(b))
            });
        }
    }
}

/// Builds and publishes the array, and reports the frames left usable
/// (still reserved: `mm::init` gives them to the buddy allocator). Runs
/// once, on the boot CPU, before SMP.
pub fn init(boot: &BootInfo, phys_offset: u64) -> (Stats, UsableFrames<'_>) {
    let regions: &[MemoryRegion] = &boot.memory_regions;
    for r in regions {
        log::debug!("mm: region {:#014x}..{:#014x} {:?}", r.start, r.end, r.kind);
    }
    let mut st = Stats::default();
    for r in regions.iter().filter(|r| is_ram(r.kind)) {
        st.ram_bytes += r.end - r.start;
        st.end_pfn = st.end_pfn.max(pfn_up(r.end));
    }
    assert!(
        st.end_pfn <= u64::from(u32::MAX),
        "mm: RAM above 16 TiB is not supported"
    );
    let nsections = st.end_pfn.div_ceil(1 << SECTION_SHIFT);
    for s in 0..nsections {
        if let Some((lo, hi)) = section_span(regions, s) {
            st.described += hi - lo;
            st.sections += 1;
        }
    }

    // Sizes of the three parts of the carved block, each 8-byte aligned (the
    // descriptors come first, at the page-aligned base).
    let pages_bytes = st.described * core::mem::size_of::<Page>() as u64;
    let rbias_bytes = (st.described / GROUP * 4).next_multiple_of(8);
    let sections_bytes = nsections * core::mem::size_of::<Section>() as u64;
    st.array_bytes =
        (pages_bytes + rbias_bytes + sections_bytes).next_multiple_of(PAGE_SIZE as u64);

    // Frames no one may take: the kernel's ELF file and the ramdisk, in case
    // the memory map calls them usable.
    let kernel = (
        pfn_down(boot.kernel_addr),
        pfn_up(boot.kernel_addr + boot.kernel_len),
    );
    let ramdisk = boot
        .ramdisk_addr
        .into_option()
        .map_or((0, 0), |a| (pfn_down(a), pfn_up(a + boot.ramdisk_len)));
    let array_frames = st.array_bytes >> PAGE_SHIFT;
    // Carve from the largest usable region above 1 MiB clear of both.
    let carve = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| (pfn_up(r.start).max(pfn_up(LOW_LIMIT)), pfn_down(r.end)))
        .filter(|&(lo, hi)| hi > lo && hi - lo >= array_frames)
        .filter(|&(lo, hi)| [kernel, ramdisk].iter().all(|&(a, b)| b <= lo || hi <= a))
        .max_by_key(|&(lo, hi)| hi - lo)
        .expect("mm: no usable region can hold the frame array");
    st.array_phys = Pfn(carve.0).phys();

    // SAFETY: frames carve.0 .. carve.0 + array_frames are usable RAM that
    // nothing else uses (the memory map says so, and we checked they hold
    // neither the kernel file nor the ramdisk); the bootloader maps all RAM
    // at phys_offset; we are the only CPU. From here they belong to the
    // array for good (marked reserved below).
    let base = (phys_offset + st.array_phys) as *mut u8;
    let pages_ptr = base.cast::<Page>();
    let rbias_ptr = base.wrapping_add(pages_bytes as usize).cast::<u32>();
    let sections_ptr = base
        .wrapping_add((pages_bytes + rbias_bytes) as usize)
        .cast::<Section>();
    let mut first = 0u64;
    for s in 0..nsections {
        let span = section_span(regions, s);
        let sec = match span {
            Some((lo, hi)) => Section {
                start: lo as u32,
                end: hi as u32,
                first: first as u32,
            },
            None => Section::default(),
        };
        let (lo, hi) = span.unwrap_or((0, 0));
        for i in 0..hi - lo {
            // SAFETY: index first + i < described, inside the carved block
            // (see above); Page is 64-aligned and the block 4 KiB-aligned.
            unsafe {
                pages_ptr
                    .add((first + i) as usize)
                    .write(Page::new_reserved())
            };
        }
        for g in (first..first + (hi - lo)).step_by(GROUP as usize) {
            // SAFETY: g / GROUP < described / GROUP, the rbias length.
            unsafe {
                rbias_ptr
                    .add((g / GROUP) as usize)
                    .write((lo - first) as u32)
            };
        }
        // SAFETY: s < nsections, the section table's length.
        unsafe { sections_ptr.add(s as usize).write(sec) };
        first += hi - lo;
    }
    // SAFETY: all three tables were fully initialised above and are never
    // written again except through the descriptors' atomics.
    let fa = unsafe {
        FrameArray {
            pages: core::slice::from_raw_parts(pages_ptr, st.described as usize),
            sections: core::slice::from_raw_parts(sections_ptr, nsections as usize),
            rbias: core::slice::from_raw_parts(rbias_ptr, (st.described / GROUP) as usize),
            phys_offset,
        }
    };
    ARRAY.call_once(|| fa);

    // Every usable frame is for the allocator, except the ones below 1 MiB,
    // the array itself, the kernel file and the ramdisk.
    let array_range = (carve.0, carve.0 + array_frames);
    let mut excluded = [array_range, kernel, ramdisk];
    excluded.sort_unstable();
    let usable = UsableFrames { regions, excluded };
    usable.for_each(|a, b| st.usable_frames += b.0 - a.0);
    STATS.call_once(|| st);
    (st, usable)
}
