//! Statistics the protocol keeps about itself: the idle time of a page-lock
//! hand-off, counted in log-linear buckets.
//!
//! A hand-off (`crate::page_lock`) gives the lock to a sleeping waiter:
//! from then until that waiter runs again, the lock is owned by a thread
//! that is not running. How long that lasts is set by the scheduler (the
//! wake-up's IPI, a busy CPU's next switch), not by the protocol, and it is
//! what the first seed's argument was about. The waker stamps the entry at
//! the hand-off (`Platform::now_ns`); the new owner, once it runs, counts
//! the difference in its table's [`HandoffStats`]. Plain core atomics,
//! even under loom: nothing synchronizes through them.
//!
//! The buckets are the benchmarks' (the contract re-exports them): values
//! below 8 exactly, then 8 buckets per power of two, so a bucket's lower
//! bound is within 12.5 % of any value in it.

use core::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: values within 1/8 (12.5 %) share one.
pub const SUB_BUCKETS: u64 = 8;
/// Number of histogram buckets: 0..8 exactly, then 8 per power of two up
/// to 2^64.
pub const NUM_BUCKETS: usize = 8 + 61 * 8;

/// The bucket of `v`: values below 8 have their own; above, each power of
/// two `[2^h, 2^(h+1))` is cut into 8 equal buckets.
pub const fn bucket_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let h = 63 - v.leading_zeros() as u64; // >= 3
    let sub = (v >> (h - 3)) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + (h - 3) * SUB_BUCKETS + sub) as usize
}

/// `[lo, hi)` of bucket `i` (`hi` saturates at `u64::MAX` for the last).
///
/// # Panics
///
/// If `i >= NUM_BUCKETS`.
pub const fn bucket_bounds(i: usize) -> (u64, u64) {
    assert!(i < NUM_BUCKETS, "no such histogram bucket");
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i, i + 1);
    }
    let h = (i - SUB_BUCKETS) / SUB_BUCKETS + 3;
    let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
    let lo = (SUB_BUCKETS + sub) << (h - 3);
    let width = 1u64 << (h - 3);
    (lo, lo.saturating_add(width))
}

/// Hand-off idle times of one wait table, in nanoseconds (module docs).
pub struct HandoffStats {
    counts: [AtomicU64; NUM_BUCKETS],
    max_ns: AtomicU64,
}

impl Default for HandoffStats {
    fn default() -> Self {
        Self::new()
    }
}

impl HandoffStats {
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; NUM_BUCKETS],
            max_ns: AtomicU64::new(0),
        }
    }

    /// Counts one hand-off that left the lock idle `ns` nanoseconds.
    pub fn record(&self, ns: u64) {
        // Relaxed: statistics, read after the fact.
        self.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The counts per bucket now, and the largest idle time seen.
    pub fn snapshot(&self) -> ([u64; NUM_BUCKETS], u64) {
        let mut c = [0; NUM_BUCKETS];
        for (d, s) in c.iter_mut().zip(&self.counts) {
            *d = s.load(Ordering::Relaxed);
        }
        (c, self.max_ns.load(Ordering::Relaxed))
    }
}
