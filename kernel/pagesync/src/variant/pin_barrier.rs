//! The barrier scheme (Jérôme Glisse, the second seed), `gup=barrier`: the
//! pinner adds the bias, issues a full barrier (F1), then tests
//! `PG_WRITEBACK`; if set it removes the bias, waits and retries.
//! Writeback test-and-sets `PG_WRITEBACK`, issues a full barrier (F2),
//! then reads the pin state. The pinner never takes a lock. Why F1 and F2
//! must be full barriers, and why the seed's `smp_wmb()` is not enough:
//! `crate::pin`.
//!
//! The known-bad mutations of this scheme are here, beside the code they
//! mutate: [`Bug::GupNoFence`] (no F1), [`Bug::GupWmbOnly`] (the seed's
//! write barrier as F2), [`Bug::GupPlainStores`] (plain stores, no fences:
//! the one of the three x86 can show).

use crate::flags::PG_WRITEBACK;
use crate::page::Page;
use crate::platform::Platform;
use crate::refcount::{GUP_PIN_COUNTING_BIAS, RefError};
use crate::sync::{Ordering, fence};
use crate::variant::{Bug, PinProtocol};
use crate::wait_table::PageWaitTable;

/// The barrier scheme (module docs).
pub struct Barrier;

impl PinProtocol for Barrier {
    const SUMMARY: &'static str = "the pinner adds the pin bias, a full barrier, then tests PG_writeback; writeback sets PG_writeback, a full barrier, then reads the pin count (Jérôme Glisse, with F2 a full barrier where the seed had smp_wmb); never contends";

    fn try_pin<P: Platform>(table: &PageWaitTable<P>, page: &Page) -> Result<bool, RefError> {
        let bug = table.cfg.bug;
        if bug == Some(Bug::GupPlainStores) {
            // BUG(GupPlainStores): the bias added with a plain load and
            // store, no fence. On x86 the store can wait in the store
            // buffer while the flags load below runs (the one reordering
            // x86 allows); with writeback's plain store of the bit doing the
            // same, both sides read old values. Unlike a missing fence after
            // an atomic RMW (a `lock` instruction, itself a full barrier on
            // x86), this is visible on x86 and under TCG.
            let c = page.refcount.load(Ordering::Relaxed);
            if c == 0 {
                return Err(RefError::Unused);
            }
            page.refcount
                .store(c + GUP_PIN_COUNTING_BIAS, Ordering::Relaxed);
        } else {
            page.pin()?;
        }
        // F1: pairs with F2 in `after_writeback_set` (`crate::pin`): our
        // bias is visible to writeback's count load, or its bit to our
        // flags load below.
        if !matches!(bug, Some(Bug::GupNoFence | Bug::GupPlainStores)) {
            fence(Ordering::SeqCst);
        }
        // Acquire pairs with the Release RMW that ended the last writeback
        // (`end_page_writeback`): a pinner that finds writeback over sees
        // what the completion wrote before it, as a pinner that waited for
        // it does (through the wait). F1 orders our bias before this load,
        // not the completion's writes before our later accesses; without
        // the Acquire the fast path would promise less than the slow one
        // (`visibility_pin_schemes` in `tests/loom_gup.rs`).
        if !page.flags.test_acquire(PG_WRITEBACK) {
            return Ok(true);
        }
        // Back off: remove the bias (never the last reference: the caller
        // holds one).
        let _ = page.unpin();
        Ok(false)
    }

    fn after_writeback_set<P: Platform>(table: &PageWaitTable<P>, _: &Page) {
        match table.cfg.bug {
            // BUG(GupPlainStores): no fence at all (see the pinner).
            Some(Bug::GupPlainStores) => {}
            // BUG(GupWmbOnly): the seed's `smp_wmb()`. It orders the bit's
            // store before later stores only; the count load after this may
            // still read the count from before a concurrent pin while that
            // pinner reads the flags from before our set. Known-bad only: no
            // correct model runs this fence.
            Some(Bug::GupWmbOnly) => fence(Ordering::Release),
            // F2: pairs with F1 in the pinner.
            _ => fence(Ordering::SeqCst),
        }
    }
}
