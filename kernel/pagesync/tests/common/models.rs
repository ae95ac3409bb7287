//! Models that more than one test file runs: under another configuration
//! (`loom_pagelock.rs` and `loom_pagelock_async.rs` for their known-bad
//! configurations, `loom_protocols.rs` for every registered protocol).

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use pagesync::loom_platform::spawn_cancellable;
use pagesync::{AsyncWake, Config, PutOutcome, WriteResult};

use super::{PREEMPTIONS, World, model, spawn_with};

/// Main holds the lock; a killable locker (1) and a plain locker (2) queue
/// in that order; main cancels 1 and unlocks. Whatever 1 returns, 2 must
/// get the lock.
pub fn killable_and_plain_lockers(cfg: Config, bound: usize) {
    model(bound, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let (h1, cancel1) = {
            let w = w.clone();
            spawn_cancellable(move || {
                if w.table.lock_page_killable(w.page(0)).is_ok() {
                    w.enter(0, 1);
                    w.leave(0, 1);
                    w.table.unlock_page(w.page(0));
                }
            })
        };
        w.wait_queued(0, 1);
        let h2 = spawn_with(&w, |w| w.locked_section(0, 2));
        w.wait_queued(0, 2);
        cancel1.cancel();
        w.table.unlock_page(w.page(0));
        h1.join().unwrap();
        h2.join().unwrap();
        w.assert_quiescent();
    });
}

/// One colliding queue (`table_bits: 0`). Main holds page 0's lock and
/// keeps page 1 under writeback. Thread 1 locks page 0 (sleeping); thread
/// 2 waits for the end of page 1's writeback; main queues an async locker
/// of page 0 whose "worker" (main, after the callback) does a locked
/// section and unlocks. Main unlocks page 0, ends page 1's writeback, and
/// serves the async waiter's work once its callback has run. Both lockers
/// get the lock, one at a time; nobody is left asleep.
pub fn async_locker_with_sleeper_and_writeback_waiter(cfg: Config) {
    // Four threads' worth of operations (two of them in main): bound 2
    // keeps the model to about a minute on the 2-core machine.
    model(2, move || {
        let w = World::new(
            Config {
                table_bits: 0,
                ..cfg
            },
            2,
        );
        let t = &w.table;
        t.lock_page(w.page(0));
        t.lock_page(w.page(1));
        let _ = t.start_page_writeback(w.page(1));
        t.unlock_page(w.page(1));
        let locker = spawn_with(&w, |w| w.locked_section(0, 1));
        let wb = spawn_with(&w, |w| w.table.wait_on_page_writeback(w.page(1)));
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
            PutOutcome::StillReferenced
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

/// The async registration races the release it waits for: main holds page
/// 0's lock; thread U unlocks it while main queues an async waiter
/// (`exclusive`: `lock_page_async`; else `wait_on_page_locked_async`).
/// No other waiter is queued, so nothing else sets `PG_WAITERS` or wakes
/// the queue to mask a lost wake-up. Once both are done, the waiter either
/// got the lock (or saw it free) at once, or its callback has run in U's
/// unlock: the callback runs in the waker's context, before `unlock_page`
/// returns.
pub fn async_waiter_races_unlock(cfg: Config, exclusive: bool) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let unlocker = spawn_with(&w, |w| {
            w.arrive();
            w.table.unlock_page(w.page(0));
        });
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let callback: pagesync::AsyncCallback = Box::new(move |why, held| {
            assert_eq!(why == AsyncWake::Locked, exclusive);
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
