//! Asynchronous (callback) page waiters on one colliding queue with
//! sleeping exclusive waiters and shared writeback waiters, with hand-off:
//! no lost wake-up, no hand-off lost to a callback, one owner at a time.
#![cfg(loom)]

mod common;

use common::{DEADLOCK, PREEMPTIONS, World, expect_failure, model, models, spawn_with};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use pagesync::{AsyncWake, Bug, Config};

/// `common::models::async_locker_with_sleeper_and_writeback_waiter`: an
/// async locker, a sleeping locker and a writeback waiter of a colliding
/// page on one queue.
fn mixed(cfg: Config) {
    models::async_locker_with_sleeper_and_writeback_waiter(cfg);
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
        let unlocker = spawn_with(&w, |w| w.table.unlock_page(w.page(0)));
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

/// `common::models::async_waiter_races_unlock`: the async registration
/// races the release it waits for, with no other waiter to mask it.
fn async_registration_races_unlock(cfg: Config, exclusive: bool) {
    models::async_waiter_races_unlock(cfg, exclusive);
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
