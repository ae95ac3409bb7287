//! A two-thread rendezvous for tests that run two threads in rounds (the
//! GUP race rounds, the GUP lockstep benchmark, the litmus harness).
//!
//! Generation `g` is complete when both threads have arrived `g` times.
//! The first to arrive spins briefly (the partner is usually a few hundred
//! cycles away), then sleeps: with more vCPUs than host cores the partner
//! may be off its core for a whole host time slice, and spinning would
//! only keep it off longer.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::sched::thread::WaitQueue;

/// Spins before the first arrival sleeps.
const SPINS: u32 = 2_000;

pub struct Rendezvous {
    arrived: AtomicU64,
    wq: WaitQueue,
}

impl Rendezvous {
    pub fn new() -> Rendezvous {
        Rendezvous {
            arrived: AtomicU64::new(0),
            wq: WaitQueue::new(),
        }
    }

    /// Arrives for generation `g` (1, 2, ...) and returns when the other
    /// thread has arrived for it too. What each side did before arriving is
    /// visible to the other after it returns.
    pub fn meet(&self, g: u64) {
        // AcqRel pairs with the other side's Acquire loads below (and with
        // its AcqRel RMW when it arrives second).
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == 2 * g {
            // Second to arrive: wake the first. The queue lock orders our
            // count before its re-check under the same lock.
            self.wq.wake_up_all();
            return;
        }
        for _ in 0..SPINS {
            if self.arrived.load(Ordering::Acquire) >= 2 * g {
                return;
            }
            core::hint::spin_loop();
        }
        self.wq
            .wait_event(|| self.arrived.load(Ordering::Acquire) >= 2 * g);
    }

    /// Arrivals so far, both threads together (for diagnostics of a stuck
    /// pair).
    pub fn arrivals(&self) -> u64 {
        self.arrived.load(Ordering::Acquire)
    }
}

impl Default for Rendezvous {
    fn default() -> Self {
        Rendezvous::new()
    }
}
