//! Page lock models: mutual exclusion, hand-off under exhausted
//! unfairness (also reached with the default unfairness, racing a
//! killable cancellation), the killable window, the drop waiter, and the
//! data-visibility promise of every lock wait and of every unlock form
//! (`visibility_*`).
#![cfg(loom)]

mod common;

use common::{
    CAUSALITY, DEADLOCK, PREEMPTIONS, World, assert_both_outcomes, assert_both_paths,
    expect_failure, long_model, model, models, outcome, reset_outcomes, reset_paths, waited,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pagesync::flags::{PG_LOCKED, PG_WAITERS};
use pagesync::loom_platform::spawn_cancellable;
use pagesync::{Bug, Config, Protocol};

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
        protocol: Protocol::Linux58,
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

/// `common::models::killable_and_plain_lockers` (main holds the lock; a
/// killable locker and a plain one queue; main cancels the killable one
/// and unlocks: the plain one must get the lock).
fn killable_window(cfg: Config) {
    models::killable_and_plain_lockers(cfg, PREEMPTIONS);
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
        protocol: Protocol::Linux58,
        ..Config::default()
    });
}

#[test]
#[ignore = "known-bad model, run in a child by killable_window_pre_5_9_has_it"]
fn killable_window_pre_5_9_inner() {
    killable_window(Config {
        protocol: Protocol::Linux58,
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

// The data-visibility promise of the lock waits: what the holder wrote
// before it released the lock is visible to a waiter when its wait
// returns, on the fast path (the lock already free, no sleep) and on the
// slow path (queued, woken, perhaps handed the lock). The holder writes
// `World::data` (a loom cell) before unlocking; the waiter reads it after
// its wait; loom reports a causality violation if the wait did not order
// the two. Each waiter holds a page reference across its wait, and starts
// with an RMW (`World::arrive`, for tokio-rs/loom#392).

/// Main holds page 0 and spawns one waiter running `wait` (which returns
/// whether the caller now holds the lock); main publishes 1 and unlocks.
fn lock_visibility(cfg: Config, what: &'static str, wait: fn(&World) -> bool) {
    reset_paths();
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let h = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                let locked = waited(|| wait(&w));
                assert_eq!(w.observe(), 1, "{what}: the holder's write is not visible");
                if locked {
                    w.enter(0, 1);
                    w.leave(0, 1);
                    w.table.unlock_page(w.page(0));
                }
                let _ = w.page(0).put_page();
            })
        };
        w.publish(1);
        w.table.unlock_page(w.page(0));
        h.join().unwrap();
        w.assert_quiescent();
    });
    assert_both_paths(what);
}

#[test]
fn visibility_lock_page() {
    lock_visibility(Config::default(), "lock_page", |w| {
        w.table.lock_page(w.page(0));
        true
    });
}

#[test]
fn visibility_lock_page_killable() {
    lock_visibility(Config::default(), "lock_page_killable", |w| {
        w.table.lock_page_killable(w.page(0)).unwrap();
        true
    });
}

/// unfairness=0: every contended acquisition is a hand-off, taken by the
/// waker for the waiter.
#[test]
fn visibility_lock_page_handoff() {
    let cfg = Config {
        unfairness: 0,
        ..Config::default()
    };
    lock_visibility(cfg, "lock_page (hand-off)", |w| {
        w.table.lock_page(w.page(0));
        true
    });
}

#[test]
fn visibility_wait_on_page_locked() {
    lock_visibility(Config::default(), "wait_on_page_locked", |w| {
        w.table.wait_on_page_locked(w.page(0));
        false
    });
}

#[test]
fn visibility_wait_on_page_locked_killable() {
    lock_visibility(Config::default(), "wait_on_page_locked_killable", |w| {
        w.table.wait_on_page_locked_killable(w.page(0)).unwrap();
        false
    });
}

#[test]
fn visibility_wait_on_page_locked_pre_5_9() {
    let cfg = Config {
        protocol: Protocol::Linux58,
        ..Config::default()
    };
    lock_visibility(cfg, "wait_on_page_locked (pre-5.9 loop)", |w| {
        w.table.wait_on_page_locked(w.page(0));
        false
    });
}

/// The drop waiter gives up its own reference (taken in the harness) while
/// it waits and touches the page no more; what it reads afterwards lives
/// elsewhere (`World::data`), and the unlock's writes must be visible.
#[test]
fn visibility_put_and_wait_on_page_locked() {
    lock_visibility(Config::default(), "put_and_wait_on_page_locked", |w| {
        // Our reference is dropped in there; take the one the harness
        // drops at the end.
        w.page(0).get_page().unwrap();
        w.table
            .put_and_wait_on_page_locked(w.page(0), false, |_| {
                panic!("the page cache's reference remains")
            })
            .unwrap();
        false
    });
}

#[test]
#[ignore = "known-bad model, run in a child by visibility_wait_on_page_locked_relaxed_is_caught"]
fn visibility_wait_on_page_locked_relaxed_inner() {
    let cfg = Config {
        bug: Some(Bug::SharedWaitRelaxed),
        ..Config::default()
    };
    lock_visibility(cfg, "wait_on_page_locked (relaxed)", |w| {
        w.table.wait_on_page_locked(w.page(0));
        false
    });
}

/// Teeth: a shared waiter that tests the lock bit Relaxed returns on the
/// fast path without seeing the holder's write.
#[test]
fn visibility_wait_on_page_locked_relaxed_is_caught() {
    expect_failure(
        "visibility_wait_on_page_locked_relaxed_inner",
        &[CAUSALITY, "the holder's write is not visible"],
    );
}

/// Contended: main holds the lock while a shared waiter and then a lock
/// waiter queue (in that order: the shared waiter is woken by the walk
/// that hands the lock on); each sees main's write when its wait returns.
#[test]
fn visibility_shared_and_exclusive_waiters() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.table.lock_page(w.page(0));
        let shared = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                w.table.wait_on_page_locked(w.page(0));
                assert_eq!(
                    w.observe(),
                    1,
                    "wait_on_page_locked: the holder's write is not visible"
                );
                let _ = w.page(0).put_page();
            })
        };
        w.wait_queued(0, 1);
        let locker = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                w.table.lock_page(w.page(0));
                assert_eq!(
                    w.observe(),
                    1,
                    "lock_page: the holder's write is not visible"
                );
                w.table.unlock_page(w.page(0));
                let _ = w.page(0).put_page();
            })
        };
        w.wait_queued(0, 2);
        w.publish(1);
        w.table.unlock_page(w.page(0));
        shared.join().unwrap();
        locker.join().unwrap();
        w.assert_quiescent();
    });
}

/// The drop waiter must never take the one exclusive wake-up a lock
/// waiter needs (Linux queues drop waiters non-exclusive). Main holds the
/// lock; a drop waiter queues, then a lock waiter behind it (the order in
/// which a drop waiter counted as exclusive would end the walk before the
/// lock waiter); main unlocks. The lock waiter gets the lock and the drop
/// waiter returns.
#[test]
fn put_and_wait_leaves_the_exclusive_wakeup() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.table.lock_page(w.page(0));
        let dropper = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                w.table
                    .put_and_wait_on_page_locked(w.page(0), false, |_| {
                        panic!("the page cache's reference remains")
                    })
                    .unwrap();
            })
        };
        w.wait_queued(0, 1);
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        w.wait_queued(0, 2);
        w.table.unlock_page(w.page(0));
        dropper.join().unwrap();
        locker.join().unwrap();
        assert_eq!(w.page(0).ref_count(), 1);
        w.assert_quiescent();
    });
}

/// With the default configuration (`unfairness=5`), a waiter asks for a
/// hand-off only after losing five races. Main holds the lock with a
/// killable waiter queued and steals the lock back right after each of
/// five unlocks (a schedule with no preemption at all); the waiter
/// re-queues after each lost race and the sixth time asks for the
/// hand-off. Main then cancels the waiter and unlocks: the hand-off (the
/// waker takes the bit for the waiter) races the cancellation. Whatever
/// wins, the waiter either owns the lock and sees main's write, or leaves
/// it free; nobody is left asleep or holding it. Schedules where the
/// waiter wins a race earlier end the stealing early.
///
/// One execution is long (six rounds of unlock, wake, steal, re-queue), so
/// the model runs with one preemption: the race at the end still gets
/// every interleaving of the cancel with the hand-off, since either side
/// may run first at each step without a preemption.
#[test]
fn handoff_with_default_unfairness_races_a_cancel() {
    long_model(1, 20_000, || {
        let w = World::new(Config::default(), 1);
        let done = Arc::new(AtomicBool::new(false));
        w.table.lock_page(w.page(0));
        let (h, cancel) = {
            let (w, done) = (w.clone(), done.clone());
            spawn_cancellable(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                let got = w.table.lock_page_killable(w.page(0)).is_ok();
                if got {
                    assert!(w.observe() >= 1, "the holder's write is not visible");
                    w.enter(0, 1);
                    w.leave(0, 1);
                    w.table.unlock_page(w.page(0));
                }
                let _ = w.page(0).put_page();
                done.store(true, Ordering::Release);
            })
        };
        w.wait_queued(0, 1);
        let mut held = true;
        for round in 1..=5 {
            w.publish(round);
            w.table.unlock_page(w.page(0));
            if !w.table.trylock_page(w.page(0)) {
                held = false;
                break;
            }
            // The waiter was woken without a hand-off; once it runs it
            // loses its race for the bit and sets PG_WAITERS to queue
            // again (the walk of our unlock cleared it). Polling the bit
            // costs loom one load per look, the queue a lock. Or it took
            // the lock while we were unlocking and is done.
            while !w.page(0).flags().test(PG_WAITERS) && !done.load(Ordering::Acquire) {
                loom::thread::yield_now();
            }
            if done.load(Ordering::Acquire) {
                break;
            }
        }
        if held {
            cancel.cancel();
            w.publish(6);
            w.table.unlock_page(w.page(0));
        }
        h.join().unwrap();
        w.assert_quiescent();
    });
}

/// The other two unlock forms of `PageFlags` (the lock and waiter paths
/// run the `fetch_xor` one under loom): the CAS loop the benchmarks
/// compare, and `clear_bit_unlock`. The holder writes, then unlocks with
/// `unlock`; a trylocker that gets the bit must see the write. Both
/// outcomes of the race (bit still held / bit taken after the unlock) are
/// asserted reached.
fn unlock_form_publishes(what: &'static str, unlock: fn(&pagesync::flags::PageFlags)) {
    reset_outcomes();
    model(PREEMPTIONS, move || {
        let w = World::new(Config::default(), 1);
        assert!(!w.page(0).flags().test_and_set_bit_lock(PG_LOCKED));
        let h = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                let got = !w.page(0).flags().test_and_set_bit_lock(PG_LOCKED);
                if got {
                    assert_eq!(w.observe(), 1, "{what}: the holder's write is not visible");
                    w.page(0).flags().clear_bit_unlock(PG_LOCKED);
                }
                got
            })
        };
        w.publish(1);
        unlock(w.page(0).flags());
        let got = h.join().unwrap();
        outcome(got);
    });
    assert_both_outcomes(what, "the trylock won", "lost");
}

#[test]
fn visibility_unlock_form_cas() {
    unlock_form_publishes("xor_unlock_is_negative_byte_cas", |f| {
        f.xor_unlock_is_negative_byte_cas(1 << PG_LOCKED);
    });
}

#[test]
fn visibility_unlock_form_clear_bit_unlock() {
    unlock_form_publishes("clear_bit_unlock", |f| f.clear_bit_unlock(PG_LOCKED));
}
