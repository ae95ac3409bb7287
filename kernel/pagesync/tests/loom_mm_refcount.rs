//! Reference-count models (the memory manager's side of `struct page`):
//! what the orderings of `crate::refcount` promise about data. The last
//! put sees every holder's accesses (the `Arc` pattern); an allocator
//! that hands a freed frame out again sees what was done before the free;
//! a freezer sees the holders' accesses, and a getter after the unfreeze
//! sees the freezer's.
#![cfg(loom)]

mod common;

use common::{PREEMPTIONS, World, model};
use loom::thread;
use pagesync::{Config, PutOutcome};

/// Two holders each write their own word of the page, then put; whoever
/// drops the last reference "frees" the page: it reads the other's word.
/// Loom reports a causality violation unless the puts' Release and the
/// last put's Acquire fence order the write before the read.
#[test]
fn visibility_last_put() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.page(0).get_page().unwrap();
        let other = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                // SAFETY: counter 0 is this thread's until its put.
                w.counters[0].with_mut(|c| unsafe { *c = 1 });
                let out = w.page(0).put_page().unwrap();
                if out == PutOutcome::LastReference {
                    assert_eq!(
                        w.observe(),
                        2,
                        "last put: the other holder's write is not visible"
                    );
                }
                out
            })
        };
        w.publish(2);
        let mine = w.page(0).put_page().unwrap();
        if mine == PutOutcome::LastReference {
            // SAFETY: loom checks that the other holder's write
            // happens-before this read.
            let theirs = w.counters[0].with(|c| unsafe { *c });
            assert_eq!(
                theirs, 1,
                "last put: the other holder's write is not visible"
            );
        }
        let theirs = other.join().unwrap();
        assert_ne!(mine, theirs, "exactly one put is the last");
    });
}

/// A holder writes the page and drops the last reference (the frame is
/// free); the allocator hands it out again (`init_ref`, 0 -> 1) on another
/// CPU and reads it: the free's Release pairs with `init_ref`'s Acquire.
#[test]
fn visibility_free_then_reuse() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        let holder = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.publish(1);
                assert_eq!(w.page(0).put_page(), Ok(PutOutcome::LastReference));
            })
        };
        while w.page(0).init_ref().is_err() {
            loom::thread::yield_now();
        }
        assert_eq!(
            w.observe(),
            1,
            "init_ref: the last holder's write is not visible"
        );
        holder.join().unwrap();
    });
}

/// Migration-style freeze: a holder writes and puts; the freezer waits for
/// the count to be 1 (its own) and freezes it (Acquire: it sees the
/// holder's write), rewrites the page and unfreezes (Release); a
/// speculative getter (`try_get`, Acquire) that succeeds afterwards sees
/// the rewrite.
#[test]
fn visibility_freeze_unfreeze() {
    model(PREEMPTIONS, || {
        let w = World::new(Config::default(), 1);
        w.page(0).get_page().unwrap();
        let holder = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.publish(1);
                assert_eq!(w.page(0).put_page(), Ok(PutOutcome::StillReferenced));
            })
        };
        while !w.page(0).ref_freeze(1) {
            loom::thread::yield_now();
        }
        assert_eq!(
            w.observe(),
            1,
            "ref_freeze: the holder's write is not visible"
        );
        holder.join().unwrap();
        let getter = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                if w.page(0).try_get().is_ok() {
                    assert_eq!(
                        w.observe(),
                        2,
                        "try_get: the freezer's write is not visible"
                    );
                    let _ = w.page(0).put_page();
                }
            })
        };
        w.publish(2);
        w.page(0).ref_unfreeze(1);
        getter.join().unwrap();
    });
}
