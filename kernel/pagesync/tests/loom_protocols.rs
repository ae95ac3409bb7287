//! Every registered page-lock protocol (`pagesync::Protocol::ALL`) through
//! the same models: a correct protocol must pass every one, and a
//! known-bad protocol must fail at least one (in a child process). A
//! protocol added to the registry (`kernel/pagesync/src/variant/`) is
//! checked here with no other edit.
//!
//! The models put every kind of waiter the lock bit has on one queue,
//! each racing the release it waits for where that is the point: sleeping
//! exclusive lockers, killable lockers that are cancelled, shared waiters,
//! async (callback) lockers and shared async waiters, writeback waiters of
//! the same page, the end of a read (an unlock by another path), and a
//! wake walk that drops the queue lock between entries (`bookmarks=on`).
#![cfg(loom)]

mod common;

use common::{DEADLOCK, PREEMPTIONS, World, expect_failure_with, model};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use pagesync::loom_platform::spawn_cancellable;
use pagesync::{AsyncWake, Config, Protocol, PutOutcome, WriteResult};

/// The environment variable that names the known-bad protocol the child
/// runs (`every_model_of_the_named_protocol`).
const CHILD_PROTOCOL: &str = "PAGESYNC_LOOM_PROTOCOL";

fn cfg(p: Protocol) -> Config {
    Config {
        protocol: p,
        ..Config::default()
    }
}

/// Runs `m` for every correct registered protocol.
fn each_correct(m: fn(Config)) {
    for p in Protocol::ALL {
        if !p.is_known_bad() {
            eprintln!("protocol {p}");
            m(cfg(p));
        }
    }
}

/// Two threads lock, check ownership, unlock page 0.
fn two_lockers(cfg: Config) {
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

/// Main holds the lock; a shared waiter is queued; a locker arrives while
/// main unlocks. The locker's registration races the unlock's walk, and
/// the shared waiter keeps `PG_WAITERS` set from before (so a clear of the
/// lock bit that comes after the walk's queue unlock sees no change).
fn shared_waiter_then_racing_locker(cfg: Config) {
    // Bound 2: three threads; 3 takes two minutes for two protocols.
    model(2, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let shared = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_locked(w.page(0)))
        };
        w.wait_queued(0, 1);
        let locker = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.locked_section(0, 1);
            })
        };
        w.table.unlock_page(w.page(0));
        shared.join().unwrap();
        locker.join().unwrap();
        assert_eq!(w.counter(), 1);
        w.assert_quiescent();
    });
}

/// Main holds the lock; a killable locker (1) and a plain locker (2)
/// queue; main cancels 1 and unlocks. Whatever 1 returns, 2 must get the
/// lock.
fn killable_and_plain_lockers(cfg: Config) {
    model(2, move || {
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

/// An async waiter's registration races the release it waits for, on
/// another thread, with no other waiter to mask a lost wake-up: the
/// callback has run by the time the unlock returns, or the waiter got the
/// lock (or saw it free) at once.
fn async_races_unlock(cfg: Config, exclusive: bool) {
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
            "async waiter: queued and never run (lost wake-up), or run twice (now={now}, ran={ran})"
        );
        if exclusive {
            w.table.unlock_page(w.page(0));
        }
        w.assert_quiescent();
    });
}

fn async_locker_races_unlock(cfg: Config) {
    async_races_unlock(cfg, true);
}

fn async_shared_races_unlock(cfg: Config) {
    async_races_unlock(cfg, false);
}

/// One colliding queue (`bits=0`): main holds page 0's lock and keeps page
/// 1 under writeback; a sleeping locker of page 0, a writeback waiter of
/// page 1 and an async locker of page 0 (served by main) all wait; main
/// unlocks page 0 and ends page 1's writeback. Both lockers get the lock
/// one at a time, nobody is left asleep.
fn async_sleeper_and_writeback_waiter(cfg: Config) {
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
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        let wb = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_writeback(w.page(1)))
        };
        let handed = Arc::new(AtomicUsize::new(0));
        let h = handed.clone();
        let now = t.lock_page_async(
            w.page(0),
            Box::new(move |why, held| {
                assert_eq!(why, AsyncWake::Locked);
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

/// One page, two bits: main locks it and starts writeback; a writeback
/// waiter and a locker of the same page wait (the locker races main's
/// unlock); main unlocks, then ends writeback. The unlock's walk meets the
/// writeback waiter's entry (same page, other bit) and must leave it, and
/// `PG_WAITERS`, for the end of writeback.
fn writeback_and_lock_waiters_on_one_page(cfg: Config) {
    // Bound 1: three threads and two walks; 2 takes half a minute per
    // protocol.
    model(1, move || {
        let w = World::new(cfg, 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        let wb = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_writeback(w.page(0)))
        };
        w.wait_queued(0, 1);
        let locker = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.locked_section(0, 1);
            })
        };
        t.unlock_page(w.page(0));
        assert_eq!(
            t.end_page_writeback(w.page(0), WriteResult::Written),
            PutOutcome::StillReferenced
        );
        wb.join().unwrap();
        locker.join().unwrap();
        assert_eq!(w.counter(), 1);
        w.assert_quiescent();
    });
}

/// The end of a read unlocks by another path (one XOR that also sets
/// `PG_UPTODATE`, and a walk of its own) while a locker and a shared
/// waiter wait; the locker then unlocks with the protocol's unlock.
fn end_of_read_with_locker_and_shared_waiter(cfg: Config) {
    // Bound 1, as above.
    model(1, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        let shared = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_locked(w.page(0)))
        };
        w.wait_queued(0, 1);
        w.table.end_page_read(w.page(0), true);
        locker.join().unwrap();
        shared.join().unwrap();
        assert_eq!(w.counter(), 1);
        w.assert_quiescent();
    });
}

/// A wake walk that drops the queue lock after every entry
/// (`bookmarks=on`, batch 1): a shared waiter queued, a locker racing the
/// unlock, so it may queue while the walk is between entries (at the tail,
/// behind the walk's bookmark).
fn bookmarked_walk_with_racing_locker(cfg: Config) {
    model(2, move || {
        let w = World::new(
            Config {
                bookmarks: true,
                bookmark_batch: 1,
                ..cfg
            },
            1,
        );
        w.table.lock_page(w.page(0));
        let shared = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_locked(w.page(0)))
        };
        w.wait_queued(0, 1);
        let locker = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.locked_section(0, 1);
            })
        };
        w.table.unlock_page(w.page(0));
        shared.join().unwrap();
        locker.join().unwrap();
        assert_eq!(w.counter(), 1);
        w.assert_quiescent();
    });
}

/// Every model, by name, in the order the known-bad child runs them.
const MODELS: [(&str, fn(Config)); 9] = [
    ("two_lockers", two_lockers),
    (
        "shared_waiter_then_racing_locker",
        shared_waiter_then_racing_locker,
    ),
    ("killable_and_plain_lockers", killable_and_plain_lockers),
    ("async_locker_races_unlock", async_locker_races_unlock),
    ("async_shared_races_unlock", async_shared_races_unlock),
    (
        "async_sleeper_and_writeback_waiter",
        async_sleeper_and_writeback_waiter,
    ),
    (
        "writeback_and_lock_waiters_on_one_page",
        writeback_and_lock_waiters_on_one_page,
    ),
    (
        "end_of_read_with_locker_and_shared_waiter",
        end_of_read_with_locker_and_shared_waiter,
    ),
    (
        "bookmarked_walk_with_racing_locker",
        bookmarked_walk_with_racing_locker,
    ),
];

#[test]
fn every_protocol_two_lockers() {
    each_correct(two_lockers);
}

#[test]
fn every_protocol_shared_waiter_then_racing_locker() {
    each_correct(shared_waiter_then_racing_locker);
}

#[test]
fn every_protocol_killable_and_plain_lockers() {
    each_correct(killable_and_plain_lockers);
}

#[test]
fn every_protocol_async_locker_races_unlock() {
    each_correct(async_locker_races_unlock);
}

#[test]
fn every_protocol_async_shared_races_unlock() {
    each_correct(async_shared_races_unlock);
}

#[test]
fn every_protocol_async_sleeper_and_writeback_waiter() {
    each_correct(async_sleeper_and_writeback_waiter);
}

#[test]
fn every_protocol_writeback_and_lock_waiters_on_one_page() {
    each_correct(writeback_and_lock_waiters_on_one_page);
}

#[test]
fn every_protocol_end_of_read_with_locker_and_shared_waiter() {
    each_correct(end_of_read_with_locker_and_shared_waiter);
}

#[test]
fn every_protocol_bookmarked_walk_with_racing_locker() {
    each_correct(bookmarked_walk_with_racing_locker);
}

/// The child of `known_bad_protocols_are_caught`: every model, for the
/// protocol named in the environment, stopping at the first that fails.
#[test]
#[ignore = "known-bad model, run in a child by known_bad_protocols_are_caught"]
fn every_model_of_the_named_protocol() {
    let name = std::env::var(CHILD_PROTOCOL).expect("the parent names the protocol");
    let p = Protocol::from_name(&name).expect("a registered protocol");
    for (model_name, m) in MODELS {
        eprintln!("protocol {p}: model {model_name}");
        m(cfg(p));
    }
}

/// Every known-bad registered protocol fails one of the models above (a
/// lost wake-up, which loom reports as a deadlock, or a failed assertion
/// of the models: two owners, a callback never run).
#[test]
fn known_bad_protocols_are_caught() {
    for p in Protocol::ALL.into_iter().filter(|p| p.is_known_bad()) {
        expect_failure_with(
            "every_model_of_the_named_protocol",
            &[(CHILD_PROTOCOL, p.name())],
            &[DEADLOCK, "panicked"],
        );
    }
}
