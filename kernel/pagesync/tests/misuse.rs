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
