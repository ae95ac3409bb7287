//! [`AddressSpace`]: page tables, regions, and their lock.
//!
//! # The space lock
//!
//! One spin lock per space ([`PtLock`]) guards its regions and its page
//! tables (Linux's `mmap_lock` and page-table lock in one). It is held only
//! for short, non-sleeping work: looking up a region, reading or changing
//! entries, and the TLB shoot-down that must follow a change before the
//! lock is released. It is taken with interrupts **enabled** and preemption
//! disabled: a shoot-down waits for IPIs, and a CPU spinning on this lock
//! must still take them (an `IrqMutex` would deadlock two CPUs here). So it
//! is never taken from interrupt context or with interrupts off (checked in
//! debug builds).
//!
//! Anything that may sleep runs with the lock dropped: reading a file page
//! in (`MapSource::read_page`), locking a page and `page_mkwrite`, and the
//! `mapped`/`unmapped` calls into the page cache (which take its own locks:
//! the order is page lock, then page-cache locks, then the space lock). The
//! fault path re-checks what it saw once it has the lock again
//! (`super::fault`).
//!
//! # References
//!
//! A present leaf entry holds one reference on its frame (the `Frame` it
//! was installed from, given up with `into_raw`) and counts one in the
//! page's `mapcount`. Clearing an entry drops the mapcount at once, under
//! the lock, but the reference only after the shoot-down: until then
//! another CPU may still reach the frame through a stale TLB entry, so it
//! must not be freed.
//!
//! # Orderings
//!
//! Every software access to a leaf entry happens under the space lock,
//! whose Acquire (lock) and Release (unlock) order them, so loads and RMWs
//! that only need to be atomic against the MMU (whose Accessed and Dirty
//! updates are locked RMWs) are Relaxed. The exceptions are the RMWs that
//! take a translation away (clear: `swap`; write-protect: `fetch_and`):
//! SeqCst, a full barrier, before the shoot-down loads the CPU set; they
//! pair with the locked RMW that sets a CPU's bit before that CPU loads the
//! root (`sched::space`). Counters and the test knob are Relaxed: nothing
//! is ordered by them.

use alloc::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    vec::Vec,
};
use core::{
    any::Any,
    cell::UnsafeCell,
    marker::PhantomData,
    sync::atomic::{AtomicU8, AtomicU64, Ordering},
};

use super::{
    USER_BASE, USER_END, VmError,
    mapping::{MapSource, Mapping},
    pte::{self, ACCESSED, DIRTY, PRESENT, TableFrames, WRITABLE},
    tlb::{self, Flush, KnownBad},
};
use crate::{
    mm::{Frame, PAGE_SIZE, Pfn, frame_array},
    sched::{self, SpaceRef, ThreadSpace},
    sync::RawSpinLock,
};

const PAGE: u64 = PAGE_SIZE as u64;

/// Access rights of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prot {
    /// Reads only; a write is a fatal fault.
    ReadOnly,
    /// Reads and writes (a file region is then a shared writable mapping).
    ReadWrite,
}

/// What a region shows.
#[derive(Clone)]
pub(super) enum Backing {
    /// Zero-filled frames, allocated on first touch.
    Anon,
    /// Pages of a source; `mapping` says which page is at which address.
    File {
        source: Arc<dyn MapSource>,
        mapping: Mapping,
    },
}

/// A range of the space with one backing and one protection (a VMA).
#[derive(Clone)]
pub(super) struct Region {
    /// Unique per region (pieces of a split get new ids), so a fault that
    /// dropped the lock can tell whether its region is still there.
    pub id: u64,
    pub start: u64,
    pub end: u64,
    pub writable: bool,
    pub backing: Backing,
}

impl Region {
    /// The source page index shown at `va` (file regions).
    pub fn index_of(&self, va: u64) -> Option<u64> {
        match &self.backing {
            Backing::Anon => None,
            Backing::File { mapping, .. } => {
                Some(mapping.first_index + (va - mapping.start) / PAGE)
            }
        }
    }

    fn mapping_id(&self) -> Option<u64> {
        match &self.backing {
            Backing::Anon => None,
            Backing::File { mapping, .. } => Some(mapping.id),
        }
    }
}

/// A region as the tests and reports see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    /// `None` for anonymous memory, else the source page at `start`.
    pub file_index: Option<u64>,
}

/// What the lock guards.
pub(super) struct Inner {
    /// Non-overlapping regions by start address.
    pub regions: BTreeMap<u64, Region>,
}

impl Inner {
    /// The region containing `va`.
    pub fn find(&self, va: u64) -> Option<&Region> {
        self.regions
            .range(..=va)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| va < r.end)
    }

    /// Refuses `[start, end)` if it overlaps a region. The region with the
    /// largest start below `end` is the one to check: if any region
    /// overlaps, so does it (regions are sorted and disjoint).
    fn check_free(&self, start: u64, end: u64) -> Result<(), VmError> {
        match self.regions.range(..end).next_back() {
            Some((_, r)) if r.end > start => Err(VmError::Overlap {
                start,
                end,
                existing_start: r.start,
                existing_end: r.end,
            }),
            _ => Ok(()),
        }
    }
}

/// The space lock (module docs): a spin lock taken with interrupts on and
/// preemption off.
pub(super) struct PtLock<T> {
    lock: RawSpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached through a guard, which exists only while
// `lock` is held, or through `&mut PtLock`.
unsafe impl<T: Send> Sync for PtLock<T> {}

pub(super) struct PtGuard<'a, T> {
    lock: &'a PtLock<T>,
    /// Preemption is off on this CPU: the guard must stay here.
    _not_send: PhantomData<*const ()>,
}

impl<T> PtLock<T> {
    /// Its lock class is where this is called (`crate::lockdep`).
    #[track_caller]
    const fn new(data: T) -> Self {
        PtLock {
            lock: RawSpinLock::new(),
            data: UnsafeCell::new(data),
        }
    }

    #[track_caller]
    pub fn lock(&self) -> PtGuard<'_, T> {
        debug_assert!(
            x86_64::instructions::interrupts::are_enabled(),
            "the space lock is taken with interrupts enabled (shoot-down IPIs must get through)"
        );
        sched::preempt_disable();
        // Acquire pairs with the Release of the previous holder's unlock.
        self.lock.lock_raw();
        PtGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T> core::ops::Deref for PtGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> core::ops::DerefMut for PtGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for PtGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: we took the lock in `PtLock::lock`; Release pairs with
        // the next holder's Acquire.
        unsafe { self.lock.lock.unlock_raw() };
        sched::preempt_enable();
    }
}

/// Counters of one space (Relaxed: statistics).
#[derive(Default)]
pub(super) struct Stats {
    pub hw_faults: AtomicU64,
    pub last_fault_addr: AtomicU64,
    pub anon_pages: AtomicU64,
    pub file_pages: AtomicU64,
    pub mkwrites: AtomicU64,
    pub soft_faults: AtomicU64,
    pub spurious: AtomicU64,
    pub shootdown_ipis: AtomicU64,
}

/// A snapshot of a space's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceStats {
    /// Hardware page faults taken in the space (handled or not).
    pub hw_faults: u64,
    /// Address of the last hardware page fault.
    pub last_fault_addr: u64,
    /// Zero-filled pages mapped.
    pub anon_pages: u64,
    /// File pages mapped.
    pub file_pages: u64,
    /// Read-only entries made writable after `page_mkwrite`.
    pub mkwrites: u64,
    /// `fault_in` calls that had to fault the page in.
    pub soft_faults: u64,
    /// Hardware faults that found the entry already as needed.
    pub spurious: u64,
    /// Remote CPUs sent a shoot-down IPI (summed over shoot-downs).
    pub shootdown_ipis: u64,
    /// Page-table frames the space holds now (not counting the root).
    pub table_frames: u64,
}

/// Where an address is mapped and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub pfn: Pfn,
    pub writable: bool,
    /// The MMU's Dirty bit: written since mapped or last cleaned.
    pub dirty: bool,
    pub accessed: bool,
}

/// A page whose entry is dirty, with a reference (see
/// [`AddressSpace::dirty_pages`]).
#[derive(Debug)]
pub struct DirtyPage {
    pub va: u64,
    pub frame: Frame,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The end of `[start, start + len)` if it is a non-empty, page-aligned
/// range inside the user range.
pub(super) fn user_range(start: u64, len: u64) -> Result<u64, VmError> {
    if len == 0 {
        return Err(VmError::Empty { start });
    }
    if !start.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
        return Err(VmError::Misaligned { start, len });
    }
    let end = start
        .checked_add(len)
        .ok_or(VmError::Wraps { start, len })?;
    if start < USER_BASE || end > USER_END {
        return Err(VmError::NotUserRange { start, end });
    }
    Ok(end)
}

/// An address space: its own page tables under a root whose upper half is
/// the kernel's, and the regions of its lower half. Always held in an
/// `Arc` ([`AddressSpace::new`]); threads run in it through
/// `crate::sched::spawn_in` / `set_space` (with [`AddressSpace::thread_space`]).
pub struct AddressSpace {
    /// Ourselves, for the [`Mapping`]s we hand out.
    me: Weak<AddressSpace>,
    /// Physical address of the root table (fixed for the space's life).
    root: u64,
    /// CPUs that may hold translations (`sched::space` keeps it).
    cpus: AtomicU64,
    pub(super) inner: PtLock<Inner>,
    /// Page-table frames below the root.
    table_frames: AtomicU64,
    pub(super) stats: Stats,
    /// 0, or 1 + a [`KnownBad`] shoot-down variant (test knob).
    known_bad: AtomicU8,
}

impl AddressSpace {
    /// An empty space: a fresh root sharing the kernel's upper half.
    pub fn new() -> Result<Arc<AddressSpace>, VmError> {
        let root = pte::new_root().ok_or(VmError::OutOfMemory)?;
        Ok(Arc::new_cyclic(|me| AddressSpace {
            me: me.clone(),
            root,
            cpus: AtomicU64::new(0),
            inner: PtLock::new(Inner {
                regions: BTreeMap::new(),
            }),
            table_frames: AtomicU64::new(0),
            stats: Stats::default(),
            known_bad: AtomicU8::new(0),
        }))
    }

    /// This space as the scheduler's handle, to run threads in it.
    pub fn thread_space(self: &Arc<Self>) -> SpaceRef {
        self.clone()
    }

    /// Physical address of the root table.
    pub fn root_phys(&self) -> u64 {
        self.root
    }

    /// CPUs that may hold translations of the space now (bit i = CPU i).
    pub fn cpu_set(&self) -> u64 {
        // Relaxed: a snapshot for reports and tests.
        self.cpus.load(Ordering::Relaxed)
    }

    /// Maps `[start, start + len)` to zero-filled memory, allocated page by
    /// page on first touch.
    pub fn map_anon(&self, start: u64, len: u64, prot: Prot) -> Result<(), VmError> {
        self.map(start, len, prot, None).map(|_| ())
    }

    /// Maps `[start, start + len)` to pages `first_index..` of `source`,
    /// shared: writes reach the source's pages (through `page_mkwrite`).
    /// Returns the handle the source was given with `mapped`.
    pub fn map_file(
        &self,
        start: u64,
        len: u64,
        prot: Prot,
        source: Arc<dyn MapSource>,
        first_index: u64,
    ) -> Result<Mapping, VmError> {
        self.map(start, len, prot, Some((source, first_index)))
            .map(|m| m.expect("a file region has a mapping"))
    }

    fn map(
        &self,
        start: u64,
        len: u64,
        prot: Prot,
        file: Option<(Arc<dyn MapSource>, u64)>,
    ) -> Result<Option<Mapping>, VmError> {
        let end = user_range(start, len)?;
        let pages = len / PAGE;
        if let Some((_, first_index)) = &file
            && first_index.checked_add(pages - 1).is_none()
        {
            return Err(VmError::IndexOverflow {
                first_index: *first_index,
                pages,
            });
        }
        // Check first, so that a refused range never reaches `mapped`.
        self.inner.lock().check_free(start, end)?;
        let id = next_id();
        let backing = match file {
            None => Backing::Anon,
            Some((source, first_index)) => {
                let mapping = Mapping {
                    space: self.me.clone(),
                    id,
                    start,
                    end,
                    first_index,
                };
                // Before the region is visible: the source must know every
                // mapping that can hold its pages (mapping.rs docs).
                source.mapped(mapping.clone());
                Backing::File { source, mapping }
            }
        };
        let region = Region {
            id,
            start,
            end,
            writable: prot == Prot::ReadWrite,
            backing,
        };
        let inserted = {
            let mut g = self.inner.lock();
            // Re-check: another map may have taken the range meanwhile.
            g.check_free(start, end)
                .map(|()| g.regions.insert(start, region.clone()))
        };
        match (inserted, region.backing) {
            (Ok(_), Backing::File { mapping, .. }) => Ok(Some(mapping)),
            (Ok(_), Backing::Anon) => Ok(None),
            (Err(e), Backing::File { source, mapping }) => {
                source.unmapped(&mapping);
                Err(e)
            }
            (Err(e), Backing::Anon) => Err(e),
        }
    }

    /// `munmap`: removes `[start, start + len)` from every region it
    /// touches (splitting regions it cuts), frees the pages that were
    /// mapped there after shooting their translations down, and tells a
    /// source when the last piece of one of its mappings is gone. Parts of
    /// the range that no region covers are fine (as in Linux).
    pub fn unmap(&self, start: u64, len: u64) -> Result<(), VmError> {
        let end = user_range(start, len)?;
        let mut gone = Vec::new();
        let released = {
            let mut g = self.inner.lock();
            let hit: Vec<u64> = g
                .regions
                .range(..end)
                .rev()
                .take_while(|(_, r)| r.end > start)
                .map(|(&k, _)| k)
                .collect();
            for k in hit {
                let r = g.regions.remove(&k).expect("region just found");
                if r.start < start {
                    let mut left = r.clone();
                    left.id = next_id();
                    left.end = start;
                    g.regions.insert(left.start, left);
                }
                if r.end > end {
                    let mut right = r.clone();
                    right.id = next_id();
                    right.start = end;
                    g.regions.insert(right.start, right);
                }
                if let (Some(id), Backing::File { source, mapping }) = (r.mapping_id(), r.backing)
                    && !g.regions.values().any(|x| x.mapping_id() == Some(id))
                {
                    gone.push((source, mapping));
                }
            }
            self.zap_locked(start, end)
        };
        release(released);
        // After the entries and TLBs no longer hold the pages (mapping.rs).
        for (source, mapping) in gone {
            source.unmapped(&mapping);
        }
        Ok(())
    }

    /// `MADV_DONTNEED`: drops the pages mapped in `[start, start + len)`
    /// but keeps the regions, so the next access faults a page in again
    /// (zero-filled for anonymous memory). Returns the pages dropped.
    pub fn discard(&self, start: u64, len: u64) -> Result<usize, VmError> {
        let end = user_range(start, len)?;
        let released = self.zap_locked_fresh(start, end);
        let n = released.len();
        release(released);
        Ok(n)
    }

    fn zap_locked_fresh(&self, start: u64, end: u64) -> Vec<Pfn> {
        let _g = self.inner.lock();
        self.zap_locked(start, end)
    }

    /// Clears every present entry in `[start, end)` (the space lock held),
    /// drops the mapcounts, shoots the translations down, and returns the
    /// frames whose references the caller drops (with [`release`]).
    fn zap_locked(&self, start: u64, end: u64) -> Vec<Pfn> {
        let mut vas = Vec::new();
        let mut pfns = Vec::new();
        // SAFETY: the caller holds the lock; our root is live.
        unsafe {
            pte::for_each_leaf(self.root, start, end, &mut |va, e| {
                if e.load(Ordering::Relaxed) & PRESENT == 0 {
                    return;
                }
                // SeqCst swap (`xchg`, a full barrier): collects any Dirty
                // bit the MMU sets up to this instant, and orders the clear
                // before the shoot-down's load of the CPU set (tlb.rs).
                let old = e.swap(0, Ordering::SeqCst);
                let pfn = pte::pfn_of(old);
                unmap_count(pfn);
                vas.push(va);
                pfns.push(pfn);
            })
        };
        if !vas.is_empty() {
            self.shoot(Flush::Pages(&vas));
        }
        pfns
    }

    /// Shoot-down of this space's translations (tlb.rs), honouring the
    /// known-bad knob.
    pub(super) fn shoot(&self, flush: Flush) {
        let shot = tlb::shootdown(&self.cpus, flush, self.known_bad());
        self.stats
            .shootdown_ipis
            .fetch_add(u64::from(shot.remote.count_ones()), Ordering::Relaxed);
    }

    fn known_bad(&self) -> Option<KnownBad> {
        match self.known_bad.load(Ordering::Relaxed) {
            0 => None,
            _ => Some(KnownBad::SkipRemoteFlush),
        }
    }

    /// Test knob: run this space's shoot-downs as the known-bad variant
    /// `bad` (`None`: correct). Announced on the console.
    pub fn set_known_bad(&self, bad: Option<KnownBad>) {
        if let Some(b) = bad {
            crate::println!("vm: RUNNING KNOWN-BAD VARIANT {b:?} in one address space");
        }
        self.known_bad
            .store(u8::from(bad.is_some()), Ordering::Relaxed);
    }

    /// The entry mapping `va` through mapping `id`, and its value, with the
    /// lock held.
    fn mapped_entry<'g>(
        &self,
        g: &'g PtGuard<'_, Inner>,
        id: u64,
        va: u64,
    ) -> Option<&'g AtomicU64> {
        g.find(va).filter(|r| r.mapping_id() == Some(id))?;
        // SAFETY: lock held (the guard outlives the reference).
        let e = unsafe { pte::leaf(self.root, va) }?;
        (e.load(Ordering::Relaxed) & PRESENT != 0).then_some(e)
    }

    /// `Mapping::clean`: write-protect, shoot down, report Dirty.
    pub(super) fn clean_page(&self, id: u64, va: u64) -> bool {
        let g = self.inner.lock();
        let Some(e) = self.mapped_entry(&g, id, va) else {
            return false;
        };
        // SeqCst RMW: takes the write permission and the Dirty bit in one
        // step, so a Dirty bit the MMU sets concurrently is either in `old`
        // or is never set (the MMU re-walks and faults on a read-only
        // entry); a full barrier before the shoot-down reads the CPU set.
        let old = e.fetch_and(!(WRITABLE | DIRTY), Ordering::SeqCst);
        if old & WRITABLE != 0 {
            // No write through a stale writable entry after we return.
            self.shoot(Flush::Pages(&[va]));
        }
        drop(g);
        old & DIRTY != 0
    }

    /// The entry value mapping `va` through mapping `id`, if present.
    pub(super) fn mapped_by(&self, id: u64, va: u64) -> Option<u64> {
        let g = self.inner.lock();
        self.mapped_entry(&g, id, va)
            .map(|e| e.load(Ordering::Relaxed))
    }

    /// Addresses in `[start, end)` mapped through mapping `id` whose entry
    /// is dirty.
    pub(super) fn dirty_in(&self, id: u64, start: u64, end: u64) -> Vec<u64> {
        let g = self.inner.lock();
        let mut out = Vec::new();
        for r in g.regions.values() {
            if r.mapping_id() != Some(id) || r.end <= start || r.start >= end {
                continue;
            }
            // SAFETY: lock held.
            unsafe {
                pte::for_each_leaf(
                    self.root,
                    r.start.max(start),
                    r.end.min(end),
                    &mut |va, e| {
                        let v = e.load(Ordering::Relaxed);
                        if v & (PRESENT | DIRTY) == PRESENT | DIRTY {
                            out.push(va);
                        }
                    },
                )
            };
        }
        out
    }

    /// The pages in `[start, start + len)` whose entries are dirty, each
    /// with a reference taken under the lock (a sync walk over anonymous or
    /// file memory). Nothing is cleaned.
    pub fn dirty_pages(&self, start: u64, len: u64) -> Result<Vec<DirtyPage>, VmError> {
        let end = user_range(start, len)?;
        let g = self.inner.lock();
        let mut out = Vec::new();
        let mut err = None;
        // SAFETY: lock held.
        unsafe {
            pte::for_each_leaf(self.root, start, end, &mut |va, e| {
                let v = e.load(Ordering::Relaxed);
                if v & (PRESENT | DIRTY) != PRESENT | DIRTY || err.is_some() {
                    return;
                }
                match Frame::try_get_pfn(pte::pfn_of(v)) {
                    Ok(frame) => out.push(DirtyPage { va, frame }),
                    Err(_) => err = Some(VmError::RefOverflow),
                }
            })
        };
        drop(g);
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// How `va` is mapped now, if it is (a snapshot).
    pub fn translate(&self, va: u64) -> Option<Translation> {
        if !(USER_BASE..USER_END).contains(&va) {
            return None;
        }
        let _g = self.inner.lock();
        // SAFETY: lock held.
        let v = unsafe { pte::leaf(self.root, va & !(PAGE - 1)) }?.load(Ordering::Relaxed);
        (v & PRESENT != 0).then(|| Translation {
            pfn: pte::pfn_of(v),
            writable: v & WRITABLE != 0,
            dirty: v & DIRTY != 0,
            accessed: v & ACCESSED != 0,
        })
    }

    /// The regions, in address order.
    pub fn regions(&self) -> Vec<RegionInfo> {
        self.inner
            .lock()
            .regions
            .values()
            .map(|r| RegionInfo {
                start: r.start,
                end: r.end,
                prot: if r.writable {
                    Prot::ReadWrite
                } else {
                    Prot::ReadOnly
                },
                file_index: r.index_of(r.start),
            })
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> SpaceStats {
        let s = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SpaceStats {
            hw_faults: l(&s.hw_faults),
            last_fault_addr: l(&s.last_fault_addr),
            anon_pages: l(&s.anon_pages),
            file_pages: l(&s.file_pages),
            mkwrites: l(&s.mkwrites),
            soft_faults: l(&s.soft_faults),
            spurious: l(&s.spurious),
            shootdown_ipis: l(&s.shootdown_ipis),
            table_frames: l(&self.table_frames),
        }
    }

    /// The allocator for page tables below our root.
    pub(super) fn table_frames(&self) -> TableFrames<'_> {
        TableFrames {
            count: &self.table_frames,
        }
    }

    pub(super) fn root(&self) -> u64 {
        self.root
    }
}

/// Counts one mapping fewer on `pfn`'s page; a negative count is a bug.
pub(super) fn unmap_count(pfn: Pfn) {
    let page = frame_array::page(pfn).expect("vm: a page-table entry maps a frame that is not RAM");
    if page.map_dec() < 0 {
        crate::mm::page_alloc::bad_page(pfn, "vm: mapcount below zero at unmap");
    }
}

/// Drops the references that cleared entries held (after their
/// shoot-down), freeing the frames nobody else holds.
pub(super) fn release(pfns: Vec<Pfn>) {
    for pfn in pfns {
        // SAFETY: each entry held the reference its `Frame` gave up with
        // `into_raw` when it was installed, and the entry is gone.
        drop(unsafe { Frame::from_raw(pfn) });
    }
}

impl ThreadSpace for AddressSpace {
    fn root(&self) -> u64 {
        self.root
    }

    fn cpus(&self) -> &AtomicU64 {
        &self.cpus
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for AddressSpace {
    /// Tears the space down: clears every entry, frees the pages and the
    /// page tables, then tells each source its mappings are gone. No CPU
    /// can have the space loaded (a CPU runs in a space only while its
    /// thread holds a reference), so no TLB holds its translations and no
    /// shoot-down is needed.
    fn drop(&mut self) {
        // Relaxed: a CPU clears its bit before it drops its reference
        // (`sched::exit`), and the last drop's Acquire fence (in `Arc`)
        // makes those clears visible here.
        assert_eq!(
            self.cpus.load(Ordering::Relaxed),
            0,
            "vm: an address space is dropped while CPUs still run in it"
        );
        let regions = core::mem::take(&mut self.inner.get_mut().regions);
        let mut pfns = Vec::new();
        // SAFETY: we own the space (`&mut self`), no CPU walks it.
        unsafe {
            pte::for_each_leaf(self.root, USER_BASE, USER_END, &mut |_, e| {
                // Relaxed: nothing else reads the tables any more.
                let old = e.swap(0, Ordering::Relaxed);
                if old & PRESENT != 0 {
                    unmap_count(pte::pfn_of(old));
                    pfns.push(pte::pfn_of(old));
                }
            })
        };
        release(pfns);
        let mut tables = TableFrames {
            count: &self.table_frames,
        };
        // SAFETY: every leaf is clear, nobody has the root loaded, and it
        // came from `new_root`.
        unsafe { pte::free_tables(self.root, &mut tables) };
        debug_assert_eq!(self.table_frames.load(Ordering::Relaxed), 0);
        let mut told: Vec<u64> = Vec::new();
        for r in regions.into_values() {
            if let Backing::File { source, mapping } = r.backing
                && !told.contains(&mapping.id)
            {
                told.push(mapping.id);
                source.unmapped(&mapping);
            }
        }
    }
}
