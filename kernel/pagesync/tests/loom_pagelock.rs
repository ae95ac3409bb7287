//! Page lock models: mutual exclusion, hand-off under exhausted
//! unfairness, and the killable window.
#![cfg(loom)]

mod common;

use common::{DEADLOCK, PREEMPTIONS, World, expect_failure, model};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pagesync::loom_platform::spawn_cancellable;
use pagesync::{Bug, Config};

/// Two threads lock, check ownership, unlock page 0.
pub fn two_lockers(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        let hs: Vec<_> = (1..=2)
            .map(|me| {
                let w = w.clone();
                thread::spawn(move || w.locked_section(0, me))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(w.counter(), 2);
        w.assert_quiescent();
    });
}

/// The main thread holds the lock while two lockers queue behind it.
pub fn held_with_two_waiters(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let hs: Vec<_> = (1..=2)
            .map(|me| {
                let w = w.clone();
                thread::spawn(move || w.locked_section(0, me))
            })
            .collect();
        w.table.assert_waiters_invariant(w.page(0));
        w.table.unlock_page(w.page(0));
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(w.counter(), 2);
        w.assert_quiescent();
    });
}

#[test]
fn mutual_exclusion_two_lockers() {
    two_lockers(Config::default());
}

#[test]
fn mutual_exclusion_held_with_two_waiters() {
    held_with_two_waiters(Config::default());
}

#[test]
fn mutual_exclusion_strict_fifo() {
    held_with_two_waiters(Config {
        unfairness: 0,
        ..Config::default()
    });
}

#[test]
fn mutual_exclusion_pre_5_9_loop() {
    two_lockers(Config {
        handoff: false,
        ..Config::default()
    });
}

/// Main holds the lock, waits until thread 1 is queued, unlocks, then
/// tries to take the lock back at once. With a hand-off the waiter owns the
/// lock by the time `unlock_page` returns, so main's trylock can succeed
/// only after thread 1 has had its turn.
fn steal_after_unlock(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        let had_turn = Arc::new(AtomicBool::new(false));
        w.table.lock_page(w.page(0));
        let h = {
            let (w, had_turn) = (w.clone(), had_turn.clone());
            thread::spawn(move || {
                w.table.lock_page(w.page(0));
                had_turn.store(true, Ordering::Relaxed);
                w.enter(0, 1);
                w.leave(0, 1);
                w.table.unlock_page(w.page(0));
            })
        };
        w.wait_queued(0, 1);
        w.table.unlock_page(w.page(0));
        if w.table.trylock_page(w.page(0)) {
            // Thread 1's store happens-before its unlock (Release), which
            // happens-before our successful trylock (Acquire).
            assert!(
                had_turn.load(Ordering::Relaxed),
                "lock stolen from a queued hand-off waiter"
            );
            w.enter(0, 9);
            w.leave(0, 9);
            w.table.unlock_page(w.page(0));
        }
        h.join().unwrap();
        w.assert_quiescent();
    });
}

#[test]
fn handoff_when_unfairness_exhausted() {
    steal_after_unlock(Config {
        unfairness: 0,
        ..Config::default()
    });
}

#[test]
#[ignore = "known-bad model, run in a child by unfair_lock_can_be_stolen"]
fn unfair_steal_inner() {
    steal_after_unlock(Config {
        unfairness: 5,
        ..Config::default()
    });
}

/// Teeth for the hand-off test: with unfairness left, a woken waiter has
/// no hand-off and the unlocker can steal the lock first.
#[test]
fn unfair_lock_can_be_stolen() {
    expect_failure(
        "unfair_steal_inner",
        &["lock stolen from a queued hand-off waiter"],
    );
}

/// Main holds the lock; a killable locker (1) and a plain locker (2) queue
/// in that order; main cancels 1 and unlocks. Whatever 1 returns, 2 must
/// get the lock.
fn killable_window(cfg: Config) {
    model(PREEMPTIONS, move || {
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
        let h2 = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 2))
        };
        w.wait_queued(0, 2);
        cancel1.cancel();
        w.table.unlock_page(w.page(0));
        h1.join().unwrap();
        h2.join().unwrap();
        w.assert_quiescent();
    });
}

#[test]
fn killable_window_fixed() {
    killable_window(Config::default());
}

#[test]
#[ignore = "known-bad model, run in a child by killable_window_linux_has_it"]
fn killable_window_linux_inner() {
    killable_window(Config::LINUX_6_7);
}

/// Linux 6.7 as written: the cancelled waiter swallows the only wake-up.
#[test]
fn killable_window_linux_has_it() {
    expect_failure("killable_window_linux_inner", &[DEADLOCK]);
}

/// The pre-5.9 loop with the killable fix (the default config): the
/// cancelled waiter passes on the wake-up it swallowed.
#[test]
fn killable_window_pre_5_9_fixed() {
    killable_window(Config {
        handoff: false,
        ..Config::default()
    });
}

#[test]
#[ignore = "known-bad model, run in a child by killable_window_pre_5_9_has_it"]
fn killable_window_pre_5_9_inner() {
    killable_window(Config {
        handoff: false,
        killable_fix: false,
        ..Config::default()
    });
}

/// Oleg Nesterov's 2020 missed wake-up in the pre-5.9 loop as Linux 5.8
/// wrote it (no killable fix).
#[test]
fn killable_window_pre_5_9_has_it() {
    expect_failure("killable_window_pre_5_9_inner", &[DEADLOCK]);
}

// Known-bad variants against these same models.

#[test]
#[ignore = "known-bad model"]
fn bug_tas_outside_lock_inner() {
    two_lockers(Config {
        bug: Some(Bug::TasOutsideLock),
        ..Config::default()
    });
}

#[test]
fn bug_tas_outside_lock_is_caught() {
    expect_failure("bug_tas_outside_lock_inner", &[DEADLOCK]);
}

#[test]
#[ignore = "known-bad model"]
fn bug_clear_after_wake_inner() {
    two_lockers(Config {
        bug: Some(Bug::ClearAfterWake),
        ..Config::default()
    });
}

#[test]
fn bug_clear_after_wake_is_caught() {
    expect_failure("bug_clear_after_wake_inner", &[DEADLOCK]);
}

#[test]
#[ignore = "known-bad model"]
fn bug_non_atomic_flags_inner() {
    two_lockers(Config {
        bug: Some(Bug::NonAtomicFlags),
        ..Config::default()
    });
}

#[test]
fn bug_non_atomic_flags_is_caught() {
    expect_failure("bug_non_atomic_flags_inner", &[DEADLOCK]);
}

#[test]
#[ignore = "known-bad model"]
fn bug_clear_waiters_early_inner() {
    held_with_two_waiters(Config {
        bug: Some(Bug::ClearWaitersEarly),
        ..Config::default()
    });
}

#[test]
fn bug_clear_waiters_early_is_caught() {
    expect_failure(
        "bug_clear_waiters_early_inner",
        &[DEADLOCK, "PG_waiters clear while"],
    );
}
