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

use common::{DEADLOCK, PREEMPTIONS, World, expect_failure_with, model, models, spawn_with};
use pagesync::{Config, Protocol, PutOutcome, WriteResult};

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
            .map(|me| spawn_with(&w, move |w| w.locked_section(0, me)))
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
    shared_waiter_and_racing_locker(cfg, 2);
}

/// The body of `shared_waiter_then_racing_locker` and
/// `bookmarked_walk_with_racing_locker`.
fn shared_waiter_and_racing_locker(cfg: Config, bound: usize) {
    model(bound, move || {
        let w = World::new(cfg, 1);
        w.table.lock_page(w.page(0));
        let shared = spawn_with(&w, |w| w.table.wait_on_page_locked(w.page(0)));
        w.wait_queued(0, 1);
        let locker = spawn_with(&w, |w| {
            w.arrive();
            w.locked_section(0, 1);
        });
        w.table.unlock_page(w.page(0));
        shared.join().unwrap();
        locker.join().unwrap();
        assert_eq!(w.counter(), 1);
        w.assert_quiescent();
    });
}

/// `common::models::killable_and_plain_lockers`, bound 2.
fn killable_and_plain_lockers(cfg: Config) {
    models::killable_and_plain_lockers(cfg, 2);
}

/// `common::models::async_waiter_races_unlock`, an async locker.
fn async_locker_races_unlock(cfg: Config) {
    models::async_waiter_races_unlock(cfg, true);
}

/// `common::models::async_waiter_races_unlock`, a shared async waiter.
fn async_shared_races_unlock(cfg: Config) {
    models::async_waiter_races_unlock(cfg, false);
}

/// `common::models::async_locker_with_sleeper_and_writeback_waiter`.
fn async_sleeper_and_writeback_waiter(cfg: Config) {
    models::async_locker_with_sleeper_and_writeback_waiter(cfg);
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
        let wb = spawn_with(&w, |w| w.table.wait_on_page_writeback(w.page(0)));
        w.wait_queued(0, 1);
        let locker = spawn_with(&w, |w| {
            w.arrive();
            w.locked_section(0, 1);
        });
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
        let locker = spawn_with(&w, |w| w.locked_section(0, 1));
        let shared = spawn_with(&w, |w| w.table.wait_on_page_locked(w.page(0)));
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
    shared_waiter_and_racing_locker(
        Config {
            bookmarks: true,
            bookmark_batch: 1,
            ..cfg
        },
        2,
    );
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
