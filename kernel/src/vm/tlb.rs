//! TLB shoot-down: after a present entry of a space was cleared or
//! write-protected, no CPU may keep using the old translation. The caller
//! changed the entries (with locked RMWs), then calls [`shootdown`], which
//! flushes the addresses on every CPU in the space's CPU set and waits for
//! all of them; only then may the caller free the frames that were mapped
//! (or report a page clean).
//!
//! Why the set is enough (the pairing with `sched::space::switch_mm`): we
//! read it after our PTE RMW, a full barrier; a CPU entering the space sets
//! its bit with a locked RMW before it loads the root. Either we see its
//! bit (and IPI it), or its page walks see our new entry. A CPU whose bit
//! is clear switched its CR3 away after the entry was last used, which
//! flushed it.
//!
//! The IPIs go through `crate::smp::run_on_cpus`, which waits until every
//! target ran the flush (its Release `done` store pairs with the waiter's
//! Acquire). The caller holds the space lock with interrupts enabled: a CPU
//! spinning on that lock still takes the IPI, and a waiting caller serves
//! its own mailbox, so two shoot-downs aimed at each other finish.
//!
//! [`KnownBad::SkipRemoteFlush`] is the known-bad variant the `vm` suite
//! runs to show its shoot-down check can fail: only this CPU flushes, and
//! the others keep their stale entries, through which they still reach
//! the (freed) frame.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{paging, percpu};

/// Above this many pages, flush the whole TLB instead of page by page
/// (Linux's `tlb_single_page_flush_ceiling` is 33).
pub const FULL_FLUSH_PAGES: usize = 32;

/// What to flush.
#[derive(Clone, Copy, Debug)]
pub enum Flush<'a> {
    /// These pages (start addresses); more than [`FULL_FLUSH_PAGES`] flush
    /// every non-global entry instead.
    Pages(&'a [u64]),
}

impl Flush<'_> {
    /// On the calling CPU.
    pub fn run_here(&self) {
        match *self {
            Flush::Pages(pages) if pages.len() <= FULL_FLUSH_PAGES => {
                pages.iter().for_each(|&va| paging::flush_local(va))
            }
            Flush::Pages(_) => paging::flush_local_all(),
        }
    }
}

/// A deliberately broken shoot-down (a test knob; never the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownBad {
    /// Flush only on the calling CPU: other CPUs keep stale entries.
    SkipRemoteFlush,
}

/// Who was flushed, for statistics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shot {
    /// The calling CPU flushed (it is in the set).
    pub local: bool,
    /// CPUs sent an IPI (bit i = CPU i).
    pub remote: u64,
}

/// Flushes `flush` on every CPU in `cpus` and waits for them. Call after
/// changing the entries and before freeing their frames, with preemption
/// disabled (the space lock) so "this CPU" stays this CPU, and interrupts
/// enabled.
pub fn shootdown(cpus: &AtomicU64, flush: Flush, bad: Option<KnownBad>) -> Shot {
    debug_assert!(x86_64::instructions::interrupts::are_enabled());
    let me = percpu::cpu_index();
    // SeqCst load after the caller's PTE RMWs (full barriers): pairs with
    // the locked RMW that sets a CPU's bit before it loads the root (module
    // docs).
    let set = cpus.load(Ordering::SeqCst);
    let mut shot = Shot::default();
    if set & (1 << me) != 0 {
        flush.run_here();
        shot.local = true;
    }
    let online = crate::smp::online_cpus();
    let all = if online >= 64 {
        u64::MAX
    } else {
        (1u64 << online) - 1
    };
    let others = set & !(1 << me) & all;
    if others != 0 && bad != Some(KnownBad::SkipRemoteFlush) {
        crate::smp::run_on_cpus(others, &|_| flush.run_here());
        shot.remote = others;
    }
    shot
}
