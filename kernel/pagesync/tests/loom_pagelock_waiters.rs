//! Wait-table models: colliding pages in a one-queue table, PG_WAITERS
//! bookkeeping, bookmarked walks, and the generic wait queue. (The
//! writeback waits are in `loom_pagecache.rs`.)
#![cfg(loom)]

mod common;

use common::{PREEMPTIONS, World, model};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use pagesync::flags::{PG_LOCKED, PG_WAITERS};
use pagesync::loom_platform::LoomPlatform;
use pagesync::{Config, Protocol, PutOutcome, WaitQueueHead, WriteResult};

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
        protocol: Protocol::Linux58,
        ..Config::default()
    });
}

/// A writeback waiter and a lock waiter of the same page share one
/// PG_WAITERS bit: ending writeback must not clear it while the lock waiter
/// sleeps (entries of the same page on another bit count). The lock waiter
/// is queued first (main holds the lock, so it must queue); the writeback
/// waiter races the end of writeback.
#[test]
fn same_page_other_bit_keeps_waiters() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let t = &w.table;
        t.lock_page(w.page(0));
        let _ = t.start_page_writeback(w.page(0));
        let locker = {
            let w = w.clone();
            thread::spawn(move || w.locked_section(0, 1))
        };
        w.wait_queued(0, 1);
        let wb = {
            let w = w.clone();
            thread::spawn(move || w.table.wait_on_page_writeback(w.page(0)))
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
