//! Misuses of the safe wait-queue API are refused before they touch a list
//! (the compile-time half, page queues that cannot be woken as plain ones,
//! is a `compile_fail` doc test on `PageWaitTable::queue`).
#![cfg(not(loom))]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;

use pagesync::waitqueue::autoremove_wake_function;
use pagesync::{Platform, WaitEntry, WaitQueueHead};

/// A single-threaded platform: nothing here ever sleeps.
struct Solo;

impl Platform for Solo {
    type Thread = ();
    type IrqState = ();
    fn current() {}
    fn prepare_to_sleep() {}
    fn sleep() {
        unreachable!("nothing sleeps in these tests")
    }
    fn set_running() {}
    fn wake(_: &()) {}
    fn cancel_pending() -> bool {
        false
    }
    fn irq_save() {}
    fn irq_restore(_: ()) {}
    fn cpu_relax() {}
}

/// `q2.finish_wait(e)` for an entry queued on `q1` panics with a message
/// naming both queues, and leaves `q1`'s list and length as they were.
#[test]
fn finish_wait_on_the_wrong_queue_is_refused() {
    let q1 = WaitQueueHead::<Solo>::new();
    let q2 = WaitQueueHead::<Solo>::new();
    let entry = pin!(WaitEntry::<Solo>::new(autoremove_wake_function, ()));
    let entry = entry.as_ref();
    // SAFETY: finish_wait on q1 runs below, before the entry drops.
    unsafe { q1.prepare_to_wait(entry) };
    assert_eq!(q1.lock().len(), 1);
    let err = catch_unwind(AssertUnwindSafe(|| q2.finish_wait(entry)))
        .expect_err("finish_wait on the wrong queue must panic");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        msg.contains("finish_wait") && msg.contains("belongs to queue"),
        "unexpected panic message: {msg}"
    );
    assert_eq!(q1.lock().len(), 1, "q1's entry was touched");
    assert_eq!(q2.lock().len(), 0, "q2's length was touched");
    q1.finish_wait(entry);
    assert_eq!(q1.lock().len(), 0);
}

/// Preparing to wait on a second queue while still queued on the first is
/// refused the same way.
#[test]
fn prepare_on_a_second_queue_is_refused() {
    let q1 = WaitQueueHead::<Solo>::new();
    let q2 = WaitQueueHead::<Solo>::new();
    let entry = pin!(WaitEntry::<Solo>::new(autoremove_wake_function, ()));
    let entry = entry.as_ref();
    // SAFETY: finish_wait on q1 runs below, before the entry drops.
    unsafe { q1.prepare_to_wait(entry) };
    // SAFETY: refused before anything is linked (what we check).
    let r = catch_unwind(AssertUnwindSafe(|| unsafe { q2.prepare_to_wait(entry) }));
    assert!(r.is_err());
    assert_eq!((q1.lock().len(), q2.lock().len()), (1, 0));
    q1.finish_wait(entry);
    // Once finished, the entry may wait on another queue.
    // SAFETY: finish_wait on q2 runs right after.
    unsafe { q2.prepare_to_wait(entry) };
    q2.finish_wait(entry);
    assert_eq!((q1.lock().len(), q2.lock().len()), (0, 0));
}

// ---- The page lock's safe API refuses what would break it ----------------

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pagesync::flags::{PG_DIRTY, PG_LOCKED, PG_WAITERS};
use pagesync::{AsyncWake, Config, Page, PageWaitTable, PutOutcome};

type Table = PageWaitTable<Solo>;

/// A page with one reference (the caller's), as the kernel hands them out.
fn held_page() -> Page {
    let p = Page::new();
    p.init_ref().unwrap();
    p
}

/// Runs `f`, which must panic with a message containing `needle`.
fn panics_with(needle: &str, f: impl FnOnce()) {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("must panic");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        msg.contains(needle),
        "panic message {msg:?} lacks {needle:?}"
    );
}

/// `unlock_page` is an XOR: on an unlocked page it would take the lock for
/// nobody. It is refused in every build (a plain check, not a debug
/// assertion: `cargo test --release -p pagesync --test misuse` passes
/// too), and the page stays unlocked.
#[test]
fn unlock_of_an_unlocked_page_is_refused() {
    let t = Table::new(Config::default());
    let p = held_page();
    panics_with("is not locked", || t.unlock_page(&p));
    assert!(
        !p.flags().test(PG_LOCKED),
        "the refused unlock took the lock"
    );
    t.lock_page(&p);
    t.unlock_page(&p);
    assert!(!p.flags().test(PG_LOCKED));
}

/// `PG_WAITERS` belongs to the wait paths: every public mutator refuses
/// it, and bit numbers past the word, leaving the word as it was.
#[test]
fn public_bit_operations_refuse_pg_waiters_and_wrapping_bits() {
    let p = held_page();
    let f = p.flags();
    f.set(PG_DIRTY);
    let before = f.load(std::sync::atomic::Ordering::Relaxed);
    for bit in [PG_WAITERS, 64, 71, u32::MAX] {
        panics_with("not a bit safe code may change", || f.set(bit));
        panics_with("not a bit safe code may change", || f.clear(bit));
        panics_with("not a bit safe code may change", || {
            f.test_and_set(bit);
        });
        panics_with("not a bit safe code may change", || {
            f.test_and_clear(bit);
        });
        panics_with("not a bit safe code may change", || {
            f.test_and_set_bit_lock(bit);
        });
        panics_with("not a bit safe code may change", || f.clear_bit_unlock(bit));
        panics_with("not a bit safe code may change", || f.set_release(bit));
    }
    panics_with("must not flip PG_WAITERS", || {
        f.xor_unlock_is_negative_byte(0x80 | 1);
    });
    panics_with("must not flip PG_WAITERS", || {
        f.xor_unlock_is_negative_byte_cas(0x80);
    });
    assert_eq!(f.load(std::sync::atomic::Ordering::Relaxed), before);
}

/// Only bits below `PG_WAITERS` are woken when they clear: a wait on any
/// other bit (or a number that would wrap a shift) is refused before it
/// queues anything.
#[test]
fn waits_on_bits_nobody_wakes_are_refused() {
    let t = Table::new(Config::default());
    let p = held_page();
    for bit in [PG_WAITERS, 8, 63, 64, 200] {
        panics_with("only bits below PG_waiters", || t.wait_on_page_bit(&p, bit));
        panics_with("only bits below PG_waiters", || {
            let _ = t.wait_on_page_bit_killable(&p, bit);
        });
    }
    assert!(!p.flags().test(PG_WAITERS));
    assert_eq!(t.queued_entries(), 0);
}

/// Two tables over one page: the second's waiter is refused, and so is
/// the second's wake walk (it would clear `PG_WAITERS` under the first
/// table's waiter).
#[test]
fn two_tables_over_one_page_are_refused() {
    let a = Table::new(Config::default());
    let b = Table::new(Config::default());
    let p = held_page();
    a.lock_page(&p);
    // An async locker queues on table A without sleeping.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let now = a.lock_page_async(
        &p,
        Box::new(move |why, held| {
            assert_eq!(why, AsyncWake::Locked);
            assert_eq!(held.put(), PutOutcome::StillReferenced);
            r.fetch_add(1, Ordering::Relaxed);
        }),
    );
    assert!(!now);
    assert_eq!(a.queued_entries(), 1);
    panics_with("two page wait tables", || {
        b.lock_page_async(&p, Box::new(|_, held| drop(held)));
    });
    assert_eq!(b.queued_entries(), 0, "the refused waiter was queued");
    panics_with("another page wait table", || b.unlock_page(&p));
    // Table A's own unlock still hands the lock to its waiter.
    p.flags().set(PG_LOCKED);
    a.unlock_page(&p);
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(p.flags().test(PG_LOCKED), "the async locker owns the lock");
    a.unlock_page(&p);
    assert_eq!(a.queued_entries(), 0);
}

/// A queued async waiter holds a reference on its page (a free page's
/// stale entry would otherwise take the lock of the page's next user),
/// and hands it to its callback; a page with no reference is refused.
#[test]
fn an_async_waiter_holds_a_page_reference() {
    let t = Table::new(Config::default());
    let p = held_page();
    t.lock_page(&p);
    let now = t.lock_page_async(
        &p,
        Box::new(|why, held| {
            assert_eq!(why, AsyncWake::Locked);
            assert_eq!(held.page().ref_count(), 2, "caller's + the waiter's");
            assert_eq!(held.put(), PutOutcome::StillReferenced);
        }),
    );
    assert!(!now);
    assert_eq!(p.ref_count(), 2, "the queued waiter holds a reference");
    t.unlock_page(&p);
    assert_eq!(p.ref_count(), 1, "the callback gave it back");
    t.unlock_page(&p);
    // The same for a shared async waiter.
    t.lock_page(&p);
    assert!(!t.wait_on_page_locked_async(&p, Box::new(|_, held| drop(held))));
    assert_eq!(p.ref_count(), 2);
    t.unlock_page(&p);
    assert_eq!(p.ref_count(), 1);
    let free = Page::new();
    panics_with("has no reference", || {
        t.lock_page_async(&free, Box::new(|_, held| drop(held)));
    });
    panics_with("has no reference", || {
        t.wait_on_page_locked_async(&free, Box::new(|_, held| drop(held)));
    });
    assert!(!free.flags().test(PG_LOCKED));
}
