//! The second seed's race as a litmus test: `pagesync`'s own pinner and
//! start of writeback, on real `struct page`s of the frame array.
//!
//! ```text
//! C PIN+<scheme>[+<bug>]
//! { page: refcount=1, flags=0 }
//! P0 (pinner)                       P1 (flusher)
//! r0 = try_pin_page(page)           lock_page(page)
//!   (1: pinned, it saw no           r0 = start_page_writeback(page)
//!    writeback)                            .maybe_pinned
//!                                   unlock_page(page)
//! exists (0:r0=1 /\ 1:r0=0)         (both blind: a pin writeback missed)
//! ```
//!
//! The correct schemes (`gup=lock`, `gup=barrier`) must never show the
//! outcome. Of the known-bad variants, two can show on x86:
//! `gup-plain-stores` (both sides' writes are plain stores with no fence:
//! the store buffer, as in `SB+plain`) and `gup-check-outside-lock` (the
//! lock scheme's pinner tests `PG_writeback` before it takes the lock: an
//! interleaving bug, no reordering needed). `gup-no-fence` and
//! `gup-wmb-only` cannot: their only missing ordering follows a `lock`
//! RMW, a full barrier on x86 and under TCG (see `SB+lockxadd`); loom
//! catches them.
//!
//! Slot `s` is one frame's page; the run's reset ends the writeback that
//! P1 started and drops the pin P0 took.

use alloc::vec::Vec;

use pagesync::WriteResult;

use super::harness::Litmus;
use kernel::{
    mm::{AllocFlags, Frame, alloc_pages},
    pagelock::Table,
};

pub struct Pin {
    table: &'static Table,
    pages: Vec<Frame>,
}

impl Pin {
    /// `size` fresh pages (one reference each, ours) under the protocol of
    /// `table`. None without memory.
    pub fn new(table: &'static Table, size: usize) -> Option<Pin> {
        let pages = (0..size)
            .map(|_| alloc_pages(0, AllocFlags::NONE))
            .collect::<Option<Vec<Frame>>>()?;
        Some(Pin { table, pages })
    }
}

impl Litmus for Pin {
    fn p0(&self, s: usize) -> u8 {
        let pinned = self
            .table
            .try_pin_page(&self.pages[s])
            .expect("a page we hold a reference on pins");
        u8::from(pinned)
    }

    fn p1(&self, s: usize) -> u8 {
        let page = &self.pages[s];
        self.table.lock_page(page);
        let saw = self.table.start_page_writeback(page).maybe_pinned;
        self.table.unlock_page(page);
        u8::from(saw)
    }

    fn touch0(&self, s: usize) {
        self.pages[s].flags().test(pagesync::flags::PG_WRITEBACK);
    }

    fn touch1(&self, s: usize) {
        self.pages[s].ref_count();
    }

    fn reset(&self, s: usize, pinned: u8, _: u8) {
        let page = &self.pages[s];
        // P1 always starts writeback (the page is never under writeback at
        // the start of a trial); nobody waits on it.
        let _ = self.table.end_page_writeback(page, WriteResult::Written);
        if pinned == 1 {
            // Never the last reference: `self.pages` holds one.
            let _ = self.table.unpin_page(page);
        }
    }
}
