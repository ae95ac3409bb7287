//! The first seed's symptom, on demand: "mm: silence soft lockups from
//! unlock_page" (Michal Hocko, July 2020), after Tim Chen's 3700-entry
//! page wait queues (2017) whose one walk kept a CPU busy for 0.8 s with
//! interrupts off.
//!
//! Mental model: `walk_waiters=` threads sleep in `wait_on_page_locked` on
//! 4 locked pages of the *boot's* page wait table, so `bits=`, `bookmarks=`
//! and `bookmark_batch=` decide what happens. With `bits=0` all of them
//! collide in one queue, and unlocking page 0 walks every entry (waking a
//! quarter, skipping the colliding rest):
//!
//! * `bookmarks=off` (Linux 6.7+, and before 4.14): one walk under the
//!   queue lock with interrupts off. When it lasts longer than the lockup
//!   threshold (`lockup_ms=`), the neighbour CPU sees no tick and sends an
//!   NMI (hard lockup), and the first tick after the walk finds that this
//!   CPU did not switch threads while the woken waiters queued behind it
//!   (soft lockup). Both reports carry the backtrace of the walk.
//! * `bookmarks=on` (4.14-6.6): the walk drops the lock every
//!   `bookmark_batch` entries with interrupts back on, so the tick can
//!   preempt the waker between chunks: no report.
//!
//! The case fails when the watchdog reported a lockup during the walk, so
//! `tests/tests/lockup.rs` expects it to fail with `bits=0 bookmarks=off`
//! and a small threshold, and to pass with `bookmarks=on` under the same
//! load. With the defaults (256 queues, a 5 s threshold) it passes.

use core::sync::atomic::Ordering;

use super::herd::{self, Probe};
use crate::{
    kassert, kassert_eq,
    ktest::{Ctx, TestResult},
};
use kernel::{pagelock::table, println, sched::watchdog};

const MS: u64 = 1_000_000;

/// See the module documentation.
pub fn walk_lockup(ctx: &Ctx) -> TestResult {
    let p = ctx.params;
    let max = herd::max_waiters();
    let n = (p.walk_waiters as usize).min(max);
    if n < p.walk_waiters as usize {
        println!(
            "    # pagelock-walk: walk_waiters={} exceeds what free memory holds; {n} waiters",
            p.walk_waiters
        );
    }
    let t = table();
    let cfg = *t.config();
    let limit_ms = watchdog::LOCKUP_LIMIT_NS.load(Ordering::Relaxed) / MS;
    let r = herd::wake_walk(t, n, 4, Probe::None, Some(limit_ms * MS));
    let (soft, hard) = (r.soft_lockups, r.hard_lockups);
    println!(
        "    # pagelock-walk: {} waiters on 4 pages, {} queue(s) (bits={}), bookmarks={} (batch {}): unlock_page of page 0 walked {} queued entries and woke {}; the first woken waiter of this CPU ran {} us after the unlock began, and the longest stretch this CPU went without a switch while threads waited was {} us (one counting pass over the queue takes {} us); lockup threshold {} ms, hz={}: {} soft and {} hard lockup report(s)",
        n,
        1u32 << cfg.table_bits,
        cfg.table_bits,
        if cfg.bookmarks { "on" } else { "off" },
        cfg.bookmark_batch,
        r.queued,
        r.woken_by_walk,
        r.cpu_held_ns.map_or(-1, |ns| (ns / 1000) as i64),
        r.longest_stall_ns / 1000,
        r.scan_ns / 1000,
        limit_ms,
        p.hz,
        soft,
        hard
    );
    kassert!(r.error.is_none(), "herd: {:?}", r.error);
    kassert_eq!(r.unfinished, 0);
    kassert!(
        soft == 0 && hard == 0,
        "the wake walk of one unlock_page tripped the lockup watchdog ({soft} soft, {hard} hard; the reports above name the walk)"
    );
    Ok(())
}
