//! Resolving faults: the hardware page-fault handler and the software
//! fault-in that GUP uses, both through one routine, [`AddressSpace::fault`].
//!
//! What a fault at `va` does, by what it finds under the space lock:
//!
//! | region         | entry                     | access | action                                  |
//! |----------------|---------------------------|--------|-----------------------------------------|
//! | none           | -                         | any    | `NoRegion`                              |
//! | read-only      | -                         | write  | `WriteToReadOnly` (fatal for hardware)  |
//! | any            | present, allows access    | any    | nothing (spurious, or raced and lost)   |
//! | anonymous      | empty                     | any    | zeroed frame, writable iff the region is|
//! | file           | empty                     | read   | `read_page`, mapped read-only           |
//! | file, writable | empty                     | write  | `read_page`, lock, `page_mkwrite`, writable |
//! | file, writable | present, read-only        | write  | lock, `page_mkwrite`, make writable     |
//!
//! A file page is mapped read-only on a read even in a writable region, so
//! that the first write faults and goes through `page_mkwrite` (Linux's
//! write-notify for shared mappings with `page_mkwrite`).
//!
//! # Dropping the lock, and the re-check
//!
//! Getting a page may sleep (the source reads it in; the page lock waits),
//! and the space lock is a spin lock, so the fault takes a snapshot of the
//! region under the lock, drops the lock, gets the page, and takes the lock
//! again. Meanwhile anything may have happened: the region unmapped or
//! split, another thread's fault installed the page, a `discard` or a
//! `clean` changed the entry. So before installing, the fault re-checks,
//! under the lock, that (1) the region containing `va` is still the one it
//! snapshotted (same region id: unmap and split give new ids), and (2) the
//! entry is still what it decided on (empty, or present read-only mapping
//! the same frame). If either check fails it drops what it got and starts
//! over from the top, which then finds the new state (Linux re-checks the
//! PTE with `pte_same` after `lock_page_or_retry` the same way).
//!
//! The page lock is held from `page_mkwrite` until the entry is writable,
//! and writeback holds it from `Mapping::clean` until it clears the page's
//! dirty flag, so the two cannot interleave (mapping.rs).
//!
//! # The reference GUP gets
//!
//! [`AddressSpace::fault_in`] ends, like every fault, by finding the entry
//! present under the lock; there it takes its reference on the frame,
//! before the lock is dropped. An unmap needs the lock to clear the entry,
//! so the frame cannot be unmapped and freed between the look-up and the
//! reference (GUP's `follow_page` under the PTE lock).

use core::sync::atomic::Ordering;

use super::{
    AddressSpace, USER_END, VmError,
    pte::{self, DIRTY, PRESENT, WRITABLE},
    space::{Backing, Region},
};
use crate::{
    arch::handlers::{PageFault, PageFaultOutcome},
    mm::{AllocFlags, Frame, PAGE_SIZE, alloc_pages},
    pagelock, sched,
};

const PAGE: u64 = PAGE_SIZE as u64;

/// What to do after looking under the lock.
enum Step {
    /// The entry allows the access.
    Done(Option<Frame>),
    /// Empty entry: get a page for `region`, then install it.
    Fill(Region),
    /// Present read-only file page, write access: `page_mkwrite`, then
    /// make it writable.
    Mkwrite {
        region_id: u64,
        frame: Frame,
        source: alloc::sync::Arc<dyn super::MapSource>,
        index: u64,
    },
}

/// Who asked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// The page-fault handler: no reference wanted.
    Hardware,
    /// `fault_in`: return the page with a reference.
    Software,
}

impl AddressSpace {
    /// The software fault-in for GUP: the page mapped at `va` (any address
    /// in it), faulted in exactly as a hardware fault of that kind would
    /// (including `page_mkwrite` for a write to a shared file page), with a
    /// reference taken while the space lock is held (module docs). For a
    /// write the entry's Dirty bit is set, since the caller will write the
    /// page through another mapping than this entry. May sleep.
    pub fn fault_in(&self, va: u64, write: bool) -> Result<Frame, VmError> {
        self.fault(va, write, Caller::Software)
            .map(|f| f.expect("a software fault returns the page"))
    }

    /// Resolves a fault at `va` (module docs). Interrupts enabled, no spin
    /// lock held; may sleep.
    pub(super) fn fault(
        &self,
        va: u64,
        write: bool,
        caller: Caller,
    ) -> Result<Option<Frame>, VmError> {
        let addr = va;
        if !(super::USER_BASE..USER_END).contains(&va) {
            return Err(VmError::NoRegion { addr });
        }
        let va = va & !(PAGE - 1);
        let want_ref = caller == Caller::Software;
        let mut faulted = false;
        loop {
            let step = {
                let g = self.inner.lock();
                let r = g.find(va).ok_or(VmError::NoRegion { addr })?;
                if write && !r.writable {
                    return Err(VmError::WriteToReadOnly {
                        addr,
                        start: r.start,
                        end: r.end,
                    });
                }
                // SAFETY: lock held.
                let entry = unsafe { pte::leaf(self.root(), va) };
                let cur = entry.map_or(0, |e| e.load(Ordering::Relaxed));
                if cur & PRESENT != 0 && (!write || cur & WRITABLE != 0) {
                    let frame = if want_ref {
                        let f = Frame::try_get_pfn(pte::pfn_of(cur))
                            .map_err(|_| VmError::RefOverflow)?;
                        if write {
                            // The caller writes through the kernel's alias:
                            // record it as the MMU would for a store here.
                            // Relaxed: the space lock orders it (space.rs).
                            entry.expect("present").fetch_or(DIRTY, Ordering::Relaxed);
                        }
                        Some(f)
                    } else {
                        if !faulted {
                            self.stats.spurious.fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    };
                    Step::Done(frame)
                } else if cur & PRESENT != 0 {
                    // A write to a present read-only entry of a writable
                    // region: only file pages are mapped that way.
                    match &r.backing {
                        Backing::File { source, .. } => Step::Mkwrite {
                            region_id: r.id,
                            frame: Frame::try_get_pfn(pte::pfn_of(cur))
                                .map_err(|_| VmError::RefOverflow)?,
                            source: source.clone(),
                            index: r.index_of(va).expect("file region"),
                        },
                        Backing::Anon => {
                            // Never made: anonymous pages of a writable
                            // region are mapped writable. Upgrade anyway;
                            // adding a permission needs no flush. Relaxed:
                            // the space lock orders it (space.rs).
                            entry
                                .expect("present")
                                .fetch_or(WRITABLE, Ordering::Relaxed);
                            continue;
                        }
                    }
                } else {
                    Step::Fill(r.clone())
                }
            };
            if want_ref && !faulted && !matches!(step, Step::Done(_)) {
                self.stats.soft_faults.fetch_add(1, Ordering::Relaxed);
            }
            faulted = true;
            match step {
                Step::Done(frame) => return Ok(frame),
                Step::Mkwrite {
                    region_id,
                    frame,
                    source,
                    index,
                } => {
                    pagelock::lock_page(&frame);
                    if let Err(e) = source.page_mkwrite(index, &frame) {
                        pagelock::unlock_page(&frame);
                        match e {
                            VmError::Retry => continue,
                            e => return Err(e),
                        }
                    }
                    let upgraded = {
                        let g = self.inner.lock();
                        // The re-check (module docs): same region, entry
                        // still present, read-only, and mapping our frame.
                        let same = g.find(va).is_some_and(|r| r.id == region_id);
                        // SAFETY: lock held.
                        match unsafe { pte::leaf(self.root(), va) } {
                            Some(e) if same => {
                                let v = e.load(Ordering::Relaxed);
                                let ok = v & (PRESENT | WRITABLE) == PRESENT
                                    && pte::pfn_of(v) == frame.pfn();
                                if ok {
                                    // Adding a permission: a CPU with the
                                    // stale read-only entry takes one
                                    // spurious fault, so no flush.
                                    // Relaxed: the space lock orders it
                                    // (space.rs).
                                    e.fetch_or(WRITABLE, Ordering::Relaxed);
                                }
                                ok
                            }
                            _ => false,
                        }
                    };
                    // Only now: writeback must not clean between the
                    // `page_mkwrite` and the writable entry.
                    pagelock::unlock_page(&frame);
                    drop(frame);
                    if upgraded {
                        self.stats.mkwrites.fetch_add(1, Ordering::Relaxed);
                        if !want_ref {
                            return Ok(None);
                        }
                    }
                    // Lost a race, or the caller wants its reference: look
                    // again.
                }
                Step::Fill(region) => {
                    if self.fill(va, write, &region)? && !want_ref {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Gets the page for the empty entry at `va` of `region` (lock not
    /// held), installs it after the re-check, and says whether it did.
    fn fill(&self, va: u64, write: bool, region: &Region) -> Result<bool, VmError> {
        let (frame, writable, source) = match &region.backing {
            Backing::Anon => (
                alloc_pages(0, AllocFlags::ZERO).ok_or(VmError::OutOfMemory)?,
                region.writable,
                None,
            ),
            Backing::File { source, .. } => {
                let index = region.index_of(va).expect("file region");
                let frame = match source.read_page(index) {
                    Ok(f) => f,
                    Err(VmError::Retry) => return Ok(false),
                    Err(e) => return Err(e),
                };
                if frame.order() != 0 {
                    return Err(VmError::NotOneFrame {
                        order: frame.order(),
                    });
                }
                (frame, write, Some((source, index)))
            }
        };
        let locked = write && source.is_some();
        if let Some((source, index)) = source
            && write
        {
            pagelock::lock_page(&frame);
            if let Err(e) = source.page_mkwrite(index, &frame) {
                pagelock::unlock_page(&frame);
                return match e {
                    VmError::Retry => Ok(false),
                    e => Err(e),
                };
            }
        }
        let installed = {
            let g = self.inner.lock();
            // The re-check (module docs): same region, entry still empty.
            let same = g.find(va).is_some_and(|r| r.id == region.id);
            // SAFETY: lock held.
            let empty = unsafe { pte::leaf(self.root(), va) }
                .is_none_or(|e| e.load(Ordering::Relaxed) == 0);
            if same && empty {
                // The entry's own reference.
                let for_entry = frame.clone();
                // SAFETY: lock held; the entry is empty (checked).
                let r = unsafe {
                    pte::install(
                        self.root(),
                        va,
                        for_entry.pfn(),
                        writable,
                        &mut self.table_frames(),
                    )
                };
                match r {
                    Ok(()) => {
                        for_entry.map_inc();
                        let _ = for_entry.into_raw();
                        Ok(true)
                    }
                    Err(e) => Err(e),
                }
            } else {
                Ok(false)
            }
        };
        if locked {
            pagelock::unlock_page(&frame);
        }
        if installed == Ok(true) {
            let counter = match region.backing {
                Backing::Anon => &self.stats.anon_pages,
                Backing::File { .. } => {
                    if write {
                        self.stats.mkwrites.fetch_add(1, Ordering::Relaxed);
                    }
                    &self.stats.file_pages
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        installed
    }
}

/// The page-fault handler registered at boot (`arch::handlers`):
/// resolves a fault of a thread running in an address space at a user
/// address, or says why not (then the fault is fatal, reported with that
/// reason: a write to a read-only region is reported, never retried).
///
/// Entered with interrupts off (an interrupt gate); enables them while it
/// resolves the fault if the faulting context had them on, since that may
/// sleep, and returns with them off. A fault with interrupts off cannot be
/// resolved (it could not sleep), and is fatal.
pub fn handle_page_fault(f: &PageFault) -> PageFaultOutcome {
    let fatal = |why| PageFaultOutcome::Fatal { why, region: None };
    if f.addr >= USER_END {
        return fatal("not a user address");
    }
    let Some(space_ref) = sched::current_space() else {
        return fatal("the thread runs in no address space");
    };
    let Some(space) = space_ref.as_any().downcast_ref::<AddressSpace>() else {
        return fatal("the thread's address space is not a vm::AddressSpace");
    };
    space.stats.hw_faults.fetch_add(1, Ordering::Relaxed);
    space.stats.last_fault_addr.store(f.addr, Ordering::Relaxed);
    if f.code & PageFault::RESERVED != 0 {
        return fatal("reserved bit set in a page-table entry");
    }
    if f.code & PageFault::FETCH != 0 {
        return fatal("instruction fetch from a user page (mapped no-execute)");
    }
    if !f.interrupts_were_enabled {
        return fatal("page fault with interrupts disabled (it could not sleep)");
    }
    x86_64::instructions::interrupts::enable();
    let r = space.fault(f.addr, f.code & PageFault::WRITE != 0, Caller::Hardware);
    x86_64::instructions::interrupts::disable();
    drop(space_ref);
    match r {
        Ok(_) => PageFaultOutcome::Handled,
        Err(e) => PageFaultOutcome::Fatal {
            why: e.why(),
            region: e.region(),
        },
    }
}
