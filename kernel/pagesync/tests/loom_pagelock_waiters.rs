//! Wait-table models: colliding pages in a one-queue table, PG_WAITERS
//! bookkeeping, shared waiters on writeback, bookmarked walks, and the
//! generic wait queue.
#![cfg(loom)]

mod common;

use common::{PREEMPTIONS, World, model};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pagesync::flags::{PG_DIRTY, PG_ERROR, PG_LOCKED, PG_WAITERS, PG_WRITEBACK};
use pagesync::loom_platform::LoomPlatform;
use pagesync::{Config, PutOutcome, WaitQueueHead, WriteResult};

fn one_queue(cfg: Config) -> Config {
    Config {
        table_bits: 0,
        ..cfg
    }
}

/// Pages 0 and 1 share the only queue. Main holds both locks; thread 1
/// waits for page 0, thread 2 for page 1. Unlocking page 0 must wake only
/// page 0's waiter and must leave page 1's PG_WAITERS set while page 1's
/// waiter sleeps (the table checks that on every wake under loom).
fn colliding_lockers(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(one_queue(cfg), 2);
        w.table.lock_page(w.page(0));
        w.table.lock_page(w.page(1));
        let hs: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|i| {
                let w = w.clone();
                thread::spawn(move || w.locked_section(i, i as u64 + 1))
            })
            .collect();
        w.table.unlock_page(w.page(0));
        w.table.assert_waiters_invariant(w.page(1));
        w.table.unlock_page(w.page(1));
        for h in hs {
            h.join().unwrap();
        }
        w.assert_quiescent();
    });
}

#[test]
fn colliding_pages_one_queue() {
    colliding_lockers(Config::default());
}

#[test]
fn colliding_pages_one_queue_strict_fifo() {
    colliding_lockers(Config {
        unfairness: 0,
        ..Config::default()
    });
}

#[test]
fn colliding_pages_one_queue_pre_5_9() {
    colliding_lockers(Config {
        handoff: false,
        ..Config::default()
    });
}

/// Two shared waiters of page 0's writeback (plus, in a one-queue table, a
/// lock waiter of colliding page 1). Ending writeback must wake both, and
/// each must then see PG_WRITEBACK clear.
fn writeback_waiters(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(one_queue(cfg), 2);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        t.unlock_page(w.page(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    w.table.wait_on_page_writeback(w.page(0));
                    assert!(!w.page(0).flags().test(PG_WRITEBACK));
                })
            })
            .collect();
        assert_eq!(
            t.end_page_writeback(w.page(0), WriteResult::Written),
            PutOutcome::StillReferenced
        );
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(w.page(0).ref_count(), 1);
        w.assert_quiescent();
    });
}

#[test]
fn shared_writeback_waiters() {
    writeback_waiters(Config::default());
}

#[test]
fn shared_writeback_waiters_pre_5_9() {
    writeback_waiters(Config {
        handoff: false,
        ..Config::default()
    });
}

/// A writeback waiter and a lock waiter of the same page share one
/// PG_WAITERS bit: ending writeback must not clear it while the lock waiter
/// sleeps (entries of the same page on another bit count).
#[test]
fn same_page_other_bit_keeps_waiters() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        let wb = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_writeback(w.page(0)))
        };
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        assert_eq!(
            t.end_page_writeback(w.page(0), WriteResult::Written),
            PutOutcome::StillReferenced
        );
        t.assert_waiters_invariant(w.page(0));
        t.unlock_page(w.page(0));
        wb.join().unwrap();
        locker.join().unwrap();
        w.assert_quiescent();
    });
}

/// Bookmarked walks (Linux 4.14–6.6) with one entry per chunk, so the
/// waker drops and retakes the queue lock between every two entries.
#[test]
fn bookmarked_walk_wakes_everyone() {
    let cfg = Config {
        bookmarks: true,
        bookmark_batch: 1,
        ..Config::default()
    };
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    w.table.wait_on_page_locked(w.page(0));
                })
            })
            .collect();
        w.table.unlock_page(w.page(0));
        for h in hs {
            h.join().unwrap();
        }
        assert!(!w.page(0).flags().test(PG_LOCKED));
        w.assert_quiescent();
    });
}

#[test]
fn bookmarked_walk_lockers() {
    let cfg = Config {
        bookmarks: true,
        bookmark_batch: 1,
        ..Config::LINUX_5_8
    };
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let hs: Vec<_> = (1..=2)
            .map(|me| {
                let w = w.clone();
                thread::spawn(move || w.locked_section(0, me))
            })
            .collect();
        w.table.unlock_page(w.page(0));
        for h in hs {
            h.join().unwrap();
        }
        w.assert_quiescent();
        // PG_WAITERS may be left set (stale); that is allowed.
        let _ = w.page(0).flags().test(PG_WAITERS);
    });
}

/// The generic queue: `wait_event` with the condition published before
/// `wake_up_all` never sleeps through the wake-up.
#[test]
fn generic_wait_event() {
    model(PREEMPTIONS, || {
        let q = Arc::new(WaitQueueHead::<LoomPlatform>::new());
        let flag = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (q, flag) = (q.clone(), flag.clone());
                thread::spawn(move || q.wait_event(|| flag.load(Ordering::Acquire)))
            })
            .collect();
        flag.store(true, Ordering::Release);
        q.wake_up_all();
        for h in hs {
            h.join().unwrap();
        }
        assert!(!q.has_waiters_hint());
    });
}

/// The reuse race of Linux 073861ed77b6. Page 0 has a stale PG_WAITERS
/// (allowed: it may outlive its waiters) and one reference, held by a
/// truncation that waits for writeback to end and then drops it. The end
/// of writeback must hold a reference across its walk: otherwise the
/// truncation's put frees the page and the walk runs on a freed page
/// (caught by the waker's "I hold a reference" check).
fn writeback_reuse_race(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        t.unlock_page(w.page(0));
        w.page(0).flags().set(PG_WAITERS);
        let irq = {
            let w = w.clone();
            thread::spawn(move || {
                let _ = w.table.end_page_writeback(w.page(0), WriteResult::Written);
            })
        };
        // Truncation: wait for writeback to end, then drop the page cache's
        // reference, the last one unless the end of writeback still holds
        // its own. The first test is `folio_wait_writeback`'s own check
        // before it sleeps, written out so that loom reaches the schedule
        // where it comes between the clear and the walk (a truncation that
        // sleeps is woken by the walk itself, after the walk's check).
        if w.page(0).flags().test_acquire(PG_WRITEBACK) {
            t.wait_on_page_writeback(w.page(0));
        }
        let _ = w.page(0).put_page();
        irq.join().unwrap();
        assert_eq!(w.page(0).ref_count(), 0);
    });
}

#[test]
fn end_writeback_holds_a_reference() {
    writeback_reuse_race(Config::default());
}

#[test]
#[ignore = "known-bad model, run in a child by end_writeback_without_reference_is_caught"]
fn end_writeback_no_ref_inner() {
    writeback_reuse_race(Config {
        bug: Some(pagesync::Bug::EndWritebackNoRef),
        ..Config::default()
    });
}

#[test]
fn end_writeback_without_reference_is_caught() {
    common::expect_failure("end_writeback_no_ref_inner", &["has no reference"]);
}

/// A failed write keeps the page dirty, sets PG_ERROR, and still wakes the
/// writeback waiters, who see both flags once they see writeback over.
#[test]
fn failed_write_redirties_and_wakes() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        t.set_page_dirty(w.page(0));
        assert!(t.clear_page_dirty_for_io(w.page(0)));
        let _ = t.start_page_writeback(w.page(0));
        t.unlock_page(w.page(0));
        let waiter = {
            let w = w.clone();
            thread::spawn(move || {
                w.table.wait_on_page_writeback(w.page(0));
                let f = w.page(0).flags();
                assert!(f.test(PG_DIRTY) && f.test(PG_ERROR));
            })
        };
        assert_eq!(
            t.end_page_writeback(w.page(0), WriteResult::Failed),
            PutOutcome::StillReferenced
        );
        waiter.join().unwrap();
        w.assert_quiescent();
    });
}
