//! GUP pinning versus the start of writeback (the second seed): per race
//! between one pinner and one `start_page_writeback`, it never happens
//! that the pinner saw no writeback and writeback saw no pin. Both schemes
//! keep it; each barrier-less variant is caught.
#![cfg(loom)]

mod common;

use common::{PREEMPTIONS, World, assert_both_paths, expect_failure, model, reset_paths, waited};
use loom::thread;
use pagesync::{Bug, Config, PinScheme, WriteResult};

/// One race: the pinner makes one attempt while writeback starts; the
/// writeback ends only after the attempt, so a pin taken after the end
/// (which writeback could not have seen, legitimately) is not counted.
fn race(cfg: Config) {
    model(PREEMPTIONS, move || {
        let w = World::new(cfg, 1);
        let pinner = {
            let w = w.clone();
            thread::spawn(move || w.table.try_pin_page(w.page(0)).unwrap())
        };
        w.table.lock_page(w.page(0));
        let saw_pin = w.table.start_page_writeback(w.page(0)).maybe_pinned;
        w.table.unlock_page(w.page(0));
        let pinned_unseen_writeback = pinner.join().unwrap();
        assert!(
            !(pinned_unseen_writeback && !saw_pin),
            "the pinner saw no writeback and writeback saw no pin"
        );
        let _ = w.table.end_page_writeback(w.page(0), WriteResult::Written);
        if pinned_unseen_writeback {
            let _ = w.table.unpin_page(w.page(0));
        }
        assert_eq!(w.page(0).ref_count(), 1);
    });
}

fn scheme(gup: PinScheme, bug: Option<Bug>) -> Config {
    Config {
        gup,
        bug,
        ..Config::default()
    }
}

/// Every registered pin scheme (`kernel/pagesync/src/variant/`, the lock
/// and barrier schemes and any added later) keeps the invariant.
#[test]
fn pin_schemes_keep_the_invariant() {
    for gup in PinScheme::ALL {
        eprintln!("scheme {}", gup.name());
        race(scheme(gup, None));
    }
}

#[test]
#[ignore = "known-bad model, run in a child by barrier_without_the_pinners_fence_is_caught"]
fn gup_no_fence_inner() {
    race(scheme(PinScheme::Barrier, Some(Bug::GupNoFence)));
}

#[test]
fn barrier_without_the_pinners_fence_is_caught() {
    expect_failure(
        "gup_no_fence_inner",
        &["the pinner saw no writeback and writeback saw no pin"],
    );
}

#[test]
#[ignore = "known-bad model, run in a child by the_seeds_write_barrier_is_caught"]
fn gup_wmb_only_inner() {
    race(scheme(PinScheme::Barrier, Some(Bug::GupWmbOnly)));
}

/// The seed's `smp_wmb()` between setting PG_writeback and reading the pin
/// state does not order the read.
#[test]
fn the_seeds_write_barrier_is_caught() {
    expect_failure(
        "gup_wmb_only_inner",
        &["the pinner saw no writeback and writeback saw no pin"],
    );
}

/// A pinner that finds the page under writeback waits for it to end and
/// then pins; the pin and unpin leave the count exactly as it was.
#[test]
fn pin_waits_for_writeback_then_pins() {
    for gup in PinScheme::ALL {
        model(PREEMPTIONS, move || {
            let w = World::new(scheme(gup, None), 1);
            w.table.lock_page(w.page(0));
            let _ = w.table.start_page_writeback(w.page(0));
            w.table.unlock_page(w.page(0));
            let pinner = {
                let w = w.clone();
                thread::spawn(move || w.table.pin_page(w.page(0)).unwrap())
            };
            let _ = w.table.end_page_writeback(w.page(0), WriteResult::Written);
            pinner.join().unwrap();
            assert!(w.page(0).maybe_dma_pinned());
            let _ = w.table.unpin_page(w.page(0));
            assert_eq!(w.page(0).ref_count(), 1);
            w.assert_quiescent();
        });
    }
}

#[test]
#[ignore = "known-bad model, run in a child by plain_stores_are_caught"]
fn gup_plain_stores_inner() {
    race(scheme(PinScheme::Barrier, Some(Bug::GupPlainStores)));
}

#[test]
fn plain_stores_are_caught() {
    expect_failure(
        "gup_plain_stores_inner",
        &["the pinner saw no writeback and writeback saw no pin"],
    );
}

#[test]
#[ignore = "known-bad model, run in a child by checking_outside_the_lock_is_caught"]
fn gup_check_outside_lock_inner() {
    race(scheme(PinScheme::Lock, Some(Bug::GupCheckOutsideLock)));
}

#[test]
fn checking_outside_the_lock_is_caught() {
    expect_failure(
        "gup_check_outside_lock_inner",
        &["the pinner saw no writeback and writeback saw no pin"],
    );
}

/// The data-visibility promise of a pin that finds writeback in flight:
/// what the completion wrote before it ended writeback (`World::data`,
/// standing for the I/O result, or the device's last look at the frame) is
/// visible to the pinner once `pin_page` returns, whether it waited
/// (slow path) or found writeback already over (fast path). The pinner
/// holds a page reference, and starts with an RMW (`World::arrive`, for
/// tokio-rs/loom#392).
fn pin_visibility(gup: PinScheme) {
    reset_paths();
    model(PREEMPTIONS, move || {
        let w = World::new(scheme(gup, None), 1);
        w.table.lock_page(w.page(0));
        let _ = w.table.start_page_writeback(w.page(0));
        w.table.unlock_page(w.page(0));
        let pinner = {
            let w = w.clone();
            thread::spawn(move || {
                w.arrive();
                w.page(0).get_page().unwrap();
                waited(|| w.table.pin_page(w.page(0)).unwrap());
                assert_eq!(
                    w.observe(),
                    1,
                    "pin_page: the completion's write is not visible"
                );
                let _ = w.table.unpin_page(w.page(0));
                let _ = w.page(0).put_page();
            })
        };
        w.publish(1);
        let _ = w.table.end_page_writeback(w.page(0), WriteResult::Written);
        pinner.join().unwrap();
        assert_eq!(w.page(0).ref_count(), 1);
        w.assert_quiescent();
    });
    assert_both_paths(gup.name());
}

/// Every registered pin scheme's `pin_page` makes the completion's write
/// visible.
#[test]
fn visibility_pin_schemes() {
    for gup in PinScheme::ALL {
        eprintln!("scheme {}", gup.name());
        pin_visibility(gup);
    }
}
