//! The spin loop of `RawSpinLock`'s raw entry points (`lock_raw`,
//! `try_lock_raw`, `unlock_raw`), which the kernel's own locks use (the
//! guarded `lock` is a loom mutex in the other models): mutual exclusion
//! and the visibility of the previous holder's writes, with a loom cell
//! written under the lock.
#![cfg(loom)]

mod common;

use common::{PREEMPTIONS, assert_both_outcomes, model, outcome, reset_outcomes};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use pagesync::sync::RawSpinLock;

struct Shared {
    lock: RawSpinLock,
    data: UnsafeCell<u64>,
}

// SAFETY: `data` is only touched with `lock` held; loom checks exactly
// that (a cell access not ordered by the lock is a causality violation).
unsafe impl Sync for Shared {}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        lock: RawSpinLock::new(),
        data: UnsafeCell::new(0),
    })
}

/// Two threads spin for the lock and increment a cell under it: both
/// increments land, and loom finds no unordered access to the cell.
#[test]
fn raw_lock_mutual_exclusion() {
    model(PREEMPTIONS, || {
        let s = shared();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    s.lock.lock_raw();
                    // SAFETY: under the lock.
                    s.data.with_mut(|d| unsafe { *d += 1 });
                    // SAFETY: we took it above.
                    unsafe { s.lock.unlock_raw() };
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // SAFETY: every other thread has been joined.
        assert_eq!(s.data.with(|d| unsafe { *d }), 2);
        assert!(!s.lock.is_locked());
    });
}

/// The holder writes and unlocks; a `try_lock_raw` that gets the lock sees
/// the write. Both outcomes of the race are asserted reached.
#[test]
fn try_lock_sees_the_holder() {
    reset_outcomes();
    model(PREEMPTIONS, || {
        let s = shared();
        s.lock.lock_raw();
        let h = {
            let s = s.clone();
            thread::spawn(move || {
                let got = s.lock.try_lock_raw();
                if got {
                    // SAFETY: under the lock.
                    assert_eq!(s.data.with(|d| unsafe { *d }), 1);
                    // SAFETY: we took it above.
                    unsafe { s.lock.unlock_raw() };
                }
                got
            })
        };
        // SAFETY: under the lock.
        s.data.with_mut(|d| unsafe { *d = 1 });
        // SAFETY: we took it above.
        unsafe { s.lock.unlock_raw() };
        let got = h.join().unwrap();
        outcome(got);
    });
    assert_both_outcomes("try_lock_sees_the_holder", "try_lock_raw won", "lost");
}
