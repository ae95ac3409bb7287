//! Asynchronous (callback) page waiters on one colliding queue with
//! sleeping exclusive waiters and shared writeback waiters, with hand-off:
//! no lost wake-up, no hand-off lost to a callback, one owner at a time.
#![cfg(loom)]

mod common;

use common::{DEADLOCK, PREEMPTIONS, World, expect_failure, model};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use pagesync::{AsyncWake, Bug, Config, WriteResult};

fn one_queue(cfg: Config) -> Config {
    Config {
        table_bits: 0,
        ..cfg
    }
}

/// Main holds page 0's lock. Thread 1 locks page 0 (sleeping). Main queues
/// an async locker of page 0 whose "worker" (main, after the callback) does
/// a locked section and unlocks; thread 2 waits for the end of writeback of
/// page 1, which collides in the one queue. Main unlocks page 0, ends page
/// 1's writeback, and serves the async waiter's work when its callback has
/// run. Both lockers get the lock, one at a time; nobody is left asleep.
fn mixed(cfg: Config) {
    // Four threads' worth of operations (two of them in main): bound 2
    // keeps the model to about a minute on the 2-core machine.
    model(2, move || {
        let w = World::new(one_queue(cfg), 2);
        let t = &w.table;
        t.lock_page(w.page(0));
        t.lock_page(w.page(1));
        let _ = t.start_page_writeback(w.page(1));
        t.unlock_page(w.page(1));
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        let wb = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_writeback(w.page(1)))
        };
        // 0: not run; 1: ran and owns the lock.
        let handed = Arc::new(AtomicUsize::new(0));
        let h = handed.clone();
        let now = t.lock_page_async(
            w.page(0),
            Box::new(move |why, held| {
                assert_eq!(why, AsyncWake::Locked);
                // The page stays referenced by the world.
                let _ = held.put();
                // Release pairs with the worker's Acquire below.
                h.store(1, Ordering::Release);
            }),
        );
        assert!(!now, "the lock is held: the async locker must queue");
        t.unlock_page(w.page(0));
        assert_eq!(
            t.end_page_writeback(w.page(1), WriteResult::Written),
            pagesync::PutOutcome::StillReferenced
        );
        // The worker: waits for the callback, then runs the async locker's
        // critical section and unlocks.
        while handed.load(Ordering::Acquire) == 0 {
            thread::yield_now();
        }
        w.enter(0, 2);
        w.leave(0, 2);
        t.unlock_page(w.page(0));
        locker.join().unwrap();
        wb.join().unwrap();
        assert_eq!(w.counter(), 2);
        w.assert_quiescent();
    });
}

#[test]
fn async_locker_with_sleepers_and_writeback_waiters() {
    mixed(Config::default());
}

#[test]
fn async_locker_strict_fifo() {
    mixed(Config {
        unfairness: 0,
        ..Config::default()
    });
}

/// A shared async waiter of the lock bit is run by the unlock.
#[test]
fn async_shared_waiter_runs_on_unlock() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.table.lock_page(w.page(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let now = w.table.wait_on_page_locked_async(
            w.page(0),
            Box::new(move |why, held| {
                assert_eq!(why, AsyncWake::Woken);
                let _ = held.put();
                r.fetch_add(1, Ordering::Release);
            }),
        );
        assert!(!now);
        let unlocker = {
            let w = w.clone();
            thread::spawn(move || w.table.unlock_page(w.page(0)))
        };
        unlocker.join().unwrap();
        assert_eq!(ran.load(Ordering::Acquire), 1);
        w.assert_quiescent();
    });
}

#[test]
#[ignore = "known-bad model, run in a child by async_with_tas_outside_lock_is_caught"]
fn async_tas_outside_lock_inner() {
    mixed(Config {
        bug: Some(Bug::TasOutsideLock),
        ..Config::default()
    });
}

/// The sleeping locker's known-bad try outside the queue lock loses a
/// wake-up in the mixed queue too (the model has teeth).
#[test]
fn async_with_tas_outside_lock_is_caught() {
    expect_failure("async_tas_outside_lock_inner", &[DEADLOCK]);
}

/// The async registration races the release it waits for: main holds page
/// 0's lock; thread U unlocks it while main queues an async waiter
/// (`exclusive`: `lock_page_async`; else `wait_on_page_locked_async`).
/// No other waiter is queued, so nothing else sets PG_WAITERS or wakes the
/// queue to mask a lost wake-up. Once both are done, the waiter either got
/// the lock (or saw it free) at once, or its callback has run in U's
/// unlock: the callback runs in the waker's context, before `unlock_page`
/// returns.
fn async_registration_races_unlock(cfg: Config, exclusive: bool) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let unlocker = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.table.unlock_page(w.page(0));
            })
        };
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let callback: pagesync::AsyncCallback = Box::new(move |why, held| {
            let _ = why;
            let _ = held.put();
            // Release pairs with the Acquire load after the join.
            r.fetch_add(1, Ordering::Release);
        });
        let now = if exclusive {
            w.table.lock_page_async(w.page(0), callback)
        } else {
            w.table.wait_on_page_locked_async(w.page(0), callback)
        };
        unlocker.join().unwrap();
        let ran = ran.load(Ordering::Acquire);
        assert!(
            now != (ran == 1),
            "async {} waiter: queued, and the unlock did not run its callback (lost wake-up), or ran it twice (now={now}, ran={ran})",
            if exclusive { "exclusive" } else { "shared" }
        );
        if exclusive {
            // The waiter owns the lock now, either way: release it.
            w.table.unlock_page(w.page(0));
        }
        w.assert_quiescent();
    });
}

#[test]
fn async_locker_races_the_unlock() {
    async_registration_races_unlock(Config::default(), true);
}

#[test]
fn async_shared_waiter_races_the_unlock() {
    async_registration_races_unlock(Config::default(), false);
}

#[test]
#[ignore = "known-bad model, run in a child by async_racing_clear_after_wake_is_caught"]
fn async_racing_clear_after_wake_inner() {
    async_registration_races_unlock(
        Config {
            bug: Some(Bug::ClearAfterWake),
            ..Config::default()
        },
        true,
    );
}

/// Teeth: an unlock that wakes before it clears the bit (the seed's
/// rejected order) loses the async waiter that registers in between.
#[test]
fn async_racing_clear_after_wake_is_caught() {
    expect_failure("async_racing_clear_after_wake_inner", &["lost wake-up"]);
}
