//! Writeback models (the page cache's side of the protocol): shared
//! waiters on writeback, the reuse race of 073861ed77b6, a failed write,
//! and the data-visibility promise of the writeback wait and the end of a
//! read.
#![cfg(loom)]

mod common;

use common::{
    CAUSALITY, PREEMPTIONS, World, assert_both_outcomes, assert_both_paths, expect_failure, model,
    outcome, reset_outcomes, reset_paths, waited,
};
use loom::thread;
use pagesync::flags::{PG_DIRTY, PG_ERROR, PG_UPTODATE, PG_WRITEBACK};
use pagesync::{Bug, Config, Protocol, PutOutcome, WriteResult};

fn one_queue(cfg: Config) -> Config {
    Config {
        table_bits: 0,
        ..cfg
    }
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
        protocol: Protocol::Linux58,
        ..Config::default()
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
        w.table.mark_waiters_stale(w.page(0));
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

// The data-visibility promise of the writeback waits: what the completion
// wrote before it ended writeback (the I/O result; here `World::data`) is
// visible to a waiter when its wait returns, on the fast path (writeback
// already over) and the slow path (queued, woken by the end of writeback).
// Each waiter holds a page reference across its wait, and starts with an
// RMW (`World::arrive`, for tokio-rs/loom#392).

/// Writeback of page 0 is in flight; one waiter runs `wait`; the
/// completion publishes 1 and ends writeback.
fn writeback_visibility(cfg: Config, what: &'static str, wait: fn(&World)) {
    reset_paths();
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        t.unlock_page(w.page(0));
        let h = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                waited(|| wait(&w));
                assert_eq!(
                    w.observe(),
                    1,
                    "{what}: the completion's write is not visible"
                );
                let _ = w.page(0).put_page();
            })
        };
        w.publish(1);
        assert_eq!(
            t.end_page_writeback(w.page(0), WriteResult::Written),
            PutOutcome::StillReferenced
        );
        h.join().unwrap();
        w.assert_quiescent();
    });
    assert_both_paths(what);
}

#[test]
fn visibility_wait_on_page_writeback() {
    writeback_visibility(Config::default(), "wait_on_page_writeback", |w| {
        w.table.wait_on_page_writeback(w.page(0));
    });
}

#[test]
fn visibility_wait_on_page_writeback_killable() {
    writeback_visibility(Config::default(), "wait_on_page_writeback_killable", |w| {
        w.table.wait_on_page_writeback_killable(w.page(0)).unwrap();
    });
}

/// `wait_on_page_bit` itself (no outer loop): it returns once a wake-up of
/// the bit, or its own try under the queue lock, finds the bit clear.
#[test]
fn visibility_wait_on_page_bit() {
    writeback_visibility(Config::default(), "wait_on_page_bit", |w| {
        w.table.wait_on_page_bit(w.page(0), PG_WRITEBACK);
    });
}

#[test]
fn visibility_wait_on_page_writeback_pre_5_9() {
    let cfg = Config {
        protocol: Protocol::Linux58,
        ..Config::default()
    };
    writeback_visibility(cfg, "wait_on_page_writeback (pre-5.9 loop)", |w| {
        w.table.wait_on_page_writeback(w.page(0));
    });
}

#[test]
#[ignore = "known-bad model, run in a child by visibility_wait_on_page_writeback_relaxed_is_caught"]
fn visibility_wait_on_page_writeback_relaxed_inner() {
    let cfg = Config {
        bug: Some(Bug::SharedWaitRelaxed),
        ..Config::default()
    };
    writeback_visibility(cfg, "wait_on_page_writeback (relaxed)", |w| {
        w.table.wait_on_page_writeback(w.page(0));
    });
}

/// Teeth: a writeback waiter that tests the bit Relaxed returns without
/// seeing the completion's write.
#[test]
fn visibility_wait_on_page_writeback_relaxed_is_caught() {
    expect_failure(
        "visibility_wait_on_page_writeback_relaxed_inner",
        &[CAUSALITY, "the completion's write is not visible"],
    );
}

/// `end_page_read`: the page is locked while a read fills it; a reader
/// waiting in `wait_on_page_locked` sees the data and `PG_UPTODATE` when
/// its wait returns.
#[test]
fn visibility_end_page_read() {
    reset_paths();
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.table.lock_page(w.page(0));
        let reader = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                waited(|| w.table.wait_on_page_locked(w.page(0)));
                assert!(w.page(0).flags().test(PG_UPTODATE));
                assert_eq!(
                    w.observe(),
                    1,
                    "end_page_read: the read's data is not visible"
                );
                let _ = w.page(0).put_page();
            })
        };
        w.publish(1);
        w.table.end_page_read(w.page(0), true);
        reader.join().unwrap();
        w.assert_quiescent();
    });
    assert_both_paths("end_page_read");
}

/// A dirtier without the page lock (a DMA engine's completion marking a
/// pinned page dirty, as `kernel/suites/src/gup/dma.rs` does) writes the
/// page and then sets PG_dirty; writeback, under the page lock, clears
/// PG_dirty for I/O and then reads the page to write it out. When the
/// clear finds the dirtier's bit, the read must see the dirtier's data:
/// the Release half of `set_page_dirty`'s test-and-set pairs with the
/// Acquire half of `clear_page_dirty_for_io`'s test-and-clear (the page
/// lock orders nothing here, the dirtier never takes it). Both outcomes
/// of the race are asserted reached.
#[test]
fn visibility_lockless_dirtier() {
    reset_outcomes();
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let dirtier = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.publish(1);
                w.table.set_page_dirty(w.page(0));
            })
        };
        let t = &w.table;
        t.lock_page(w.page(0));
        let found = t.clear_page_dirty_for_io(w.page(0));
        if found {
            assert_eq!(
                w.observe(),
                1,
                "writeback found PG_dirty set but not the dirtier's data"
            );
        }
        t.unlock_page(w.page(0));
        dirtier.join().unwrap();
        // Missed by this writeback: the page stays dirty for the next one.
        assert!(found || w.page(0).flags().test(PG_DIRTY));
        outcome(found);
        w.assert_quiescent();
    });
    assert_both_outcomes(
        "visibility_lockless_dirtier",
        "clear found the bit",
        "clear missed it",
    );
}

/// The publication of a page written whole (`File::write` of a page that
/// was not up to date): the writer fills the page and then sets
/// `PG_UPTODATE` (`mark_page_uptodate`, Release); a lockless reader tests
/// the bit with Acquire and, if it is set, reads the page. The reader must
/// see the data, never the bit without it. Relaxed instead of Release is
/// caught (loom reports the read of the cell as racing the write). Both
/// outcomes (bit seen, bit not yet set) are asserted reached.
#[test]
fn visibility_write_then_uptodate() {
    reset_outcomes();
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let writer = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.publish(1);
                w.table.mark_page_uptodate(w.page(0));
            })
        };
        let seen = w.page(0).flags().test_acquire(PG_UPTODATE);
        if seen {
            assert_eq!(
                w.observe(),
                1,
                "a reader saw PG_uptodate but not the data it vouches for"
            );
        }
        writer.join().unwrap();
        outcome(seen);
        w.assert_quiescent();
    });
    assert_both_outcomes(
        "visibility_write_then_uptodate",
        "reader saw the bit",
        "reader came first",
    );
}
