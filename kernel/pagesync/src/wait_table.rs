//! The hashed page wait table and the waker side of page waits.
//!
//! Mental model: a `Page` has no wait queue of its own (that would cost 16+
//! bytes in every 64-byte descriptor). Instead all sleepers on any bit of
//! any page share `2^bits` global [`WaitQueueHead`]s, one per cache line,
//! chosen by hashing the page's address. Each entry remembers its (page,
//! bit), and the wake function skips entries of other pages that collide
//! in the same queue. `PG_WAITERS` in the page's flags says "somebody may be
//! queued for this page", so unlockers only visit the table when it is set.
//!
//! [`PageWaitTable::wake_page_bit`] is Linux's `folio_wake_bit`: walk the
//! queue with the key (page, bit), then clear `PG_WAITERS` only if the
//! queue is empty or the walk met no entry of this page. Entries of
//! colliding pages do not count; entries of this page waiting on another
//! bit do (they keep `PG_WAITERS` set, possibly stale, which is harmless:
//! the next waker clears it).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::pin::pin;
use core::ptr;

use crate::flags::PG_WAITERS;
use crate::page::Page;
use crate::platform::Platform;
use crate::race::RacePoint;
use crate::sync::Ordering;
use crate::variant::{Config, bugs};
use crate::waitqueue::{LockedQueue, WQ_FLAG_BOOKMARK, WaitEntry, WaitKind, WaitQueueHead};

/// What a page waiter's entry waits for: one bit of one page (Linux
/// `wait_page_queue`'s folio and bit). The page is named by address only;
/// the table never dereferences an entry's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBit {
    pub(crate) page: *const Page,
    pub(crate) bit: u32,
}

impl PageBit {
    pub(crate) fn new(page: &Page, bit: u32) -> Self {
        Self {
            page: ptr::from_ref(page),
            bit,
        }
    }
}

impl Default for PageBit {
    /// No page: the key of bookmarks, which walks skip.
    fn default() -> Self {
        Self {
            page: ptr::null(),
            bit: 0,
        }
    }
}

/// The walk key of a page wake-up (`wait_page_key`).
#[derive(Debug)]
pub struct WaitPageKey {
    /// The page being woken; live for the whole walk (the waker holds a
    /// reference).
    pub(crate) page: *const Page,
    pub(crate) bit: u32,
    /// Set when the walk meets any entry of `page` (any bit).
    pub(crate) page_match: bool,
    /// The waker holds `bit` for the first exclusive waiter the walk
    /// meets: a hand-off decided inside the walk whatever the waiter asked
    /// for (a protocol whose unlock keeps the lock bit set while it walks,
    /// `crate::variant::hugh_rfc`). The wake functions then do not test the
    /// bit (it is set: it is the one being handed), and the first exclusive
    /// entry takes it without a test-and-set and clears this. Still set
    /// after the walk: nobody took it, and the waker must clear the bit.
    pub(crate) handing: bool,
}

impl WaitPageKey {
    /// The key of a walk that wakes (`page`, `bit`); `handing` as the
    /// field says.
    pub(crate) fn new(page: &Page, bit: u32, handing: bool) -> Self {
        Self {
            page: ptr::from_ref(page),
            bit,
            page_match: false,
            handing,
        }
    }
}

/// The kind of the table's queues: entries carry a [`PageBit`], walks a
/// [`WaitPageKey`]. A page queue therefore has none of the keyless
/// wake/wait API of plain queues: it is woken only through
/// [`PageWaitTable::wake_page_bit`].
#[derive(Debug)]
pub struct PageKind;

impl WaitKind for PageKind {
    type EntryKey = PageBit;
    type WalkKey = WaitPageKey;
}

pub use crate::variant::{DEFAULT_TABLE_BITS, MAX_TABLE_BITS};
/// Linux's `GOLDEN_RATIO_64` for `hash_64`.
pub const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// `hash_ptr(addr, bits)` on 64-bit: the top `bits` bits of
/// `addr * GOLDEN_RATIO_64`. `bits == 0` selects the single queue 0.
pub const fn hash_page_addr(addr: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        ((addr as u64).wrapping_mul(GOLDEN_RATIO_64) >> (64 - bits)) as usize
    }
}

/// One queue per cache line, so CPUs working on different queues do not
/// bounce each other's lock line.
#[repr(C, align(64))]
struct Bucket<P: Platform>(WaitQueueHead<P, PageKind>);

/// The global table of page wait queues, plus the protocol [`Config`].
/// The page-lock API lives in `crate::page_lock` as methods on this type.
pub struct PageWaitTable<P: Platform> {
    buckets: Box<[Bucket<P>]>,
    pub(crate) cfg: Config,
    /// Whether `unlock_page` is not the 5.9+ one: the configured protocol
    /// has its own, or a known-bad mutation replaces it (the unlock fast
    /// path's one look at the configuration).
    pub(crate) own_unlock: bool,
    /// This table's tag (1..=0xffff), written into the flags of the pages
    /// its waiters wait on ([`crate::flags::TABLE_SHIFT`]).
    tag: u16,
    /// How long hand-offs left the lock idle (`crate::stats`).
    pub(crate) handoffs: crate::stats::HandoffStats,
}

/// Tags handed to tables so far. Not part of the protocol (each table
/// reads its own tag only), so a plain core atomic even under loom.
static TABLES_MADE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

impl<P: Platform> PageWaitTable<P> {
    /// A table of `2^cfg.table_bits` empty queues.
    ///
    /// # Panics
    ///
    /// If `cfg.table_bits > MAX_TABLE_BITS`.
    pub fn new(cfg: Config) -> Self {
        assert!(
            cfg.table_bits <= MAX_TABLE_BITS,
            "page wait table too large"
        );
        let buckets: Vec<Bucket<P>> = (0..1usize << cfg.table_bits)
            .map(|_| Bucket(WaitQueueHead::new()))
            .collect();
        // Relaxed: a unique number is all that is needed. Tags repeat
        // after 65535 tables; two tables sharing a page would then go
        // unnoticed only if their tags also collide.
        let n = TABLES_MADE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        Self {
            buckets: buckets.into_boxed_slice(),
            own_unlock: cfg.protocol.own_unlock() || cfg.bug.is_some_and(|b| b.mutates_unlock()),
            cfg,
            tag: (n % 0xffff) as u16 + 1,
            handoffs: crate::stats::HandoffStats::new(),
        }
    }

    /// Sets `PG_WAITERS` on `page` for a waiter about to queue (the queue
    /// lock held), claiming the page for this table.
    ///
    /// # Panics
    ///
    /// If the page's waiters use another table: two tables over one page
    /// lose wake-ups (a walk in one finds none of the other's entries and
    /// clears `PG_WAITERS` under them), so the second is refused.
    #[track_caller]
    pub(crate) fn claim_waiters(&self, page: &Page) {
        if let Err(other) = page.flags.set_waiters(self.tag) {
            panic!(
                "page {:#x} is waited on through two page wait tables (tags {other} and {}): \
                 a walk in one would clear PG_waiters under the other's waiters",
                page.addr(),
                self.tag
            );
        }
    }

    /// Sets `PG_WAITERS` on `page` with nobody queued: the state a waiter
    /// that was woken or gave up may leave behind (allowed: the next walk
    /// finds nobody and clears it). For tests and rescues that need the
    /// next clear of a bit to take the slow path and walk.
    pub fn mark_waiters_stale(&self, page: &Page) {
        let _locked = self.queue(page).lock();
        self.claim_waiters(page);
    }

    /// Refuses a bit a waiter cannot wait for: only the bits below
    /// `PG_WAITERS` are cleared by a waking clear (`clear_bit_and_wake`,
    /// the unlock and end-of-writeback XORs); a wait for any other bit, or
    /// a number past the word, would never be woken.
    #[track_caller]
    pub(crate) fn check_wait_bit(bit: u32) {
        assert!(
            bit < PG_WAITERS,
            "wait on page bit {bit}: only bits below PG_waiters (7) are woken when they clear"
        );
    }

    /// How long this table's hand-offs left the lock idle, so far
    /// (`crate::stats`; counts per bucket, and the largest).
    pub fn handoff_idle(&self) -> ([u64; crate::stats::NUM_BUCKETS], u64) {
        self.handoffs.snapshot()
    }

    /// The configuration the table was built with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Which queue `page` hashes to.
    pub fn bucket_index(&self, page: &Page) -> usize {
        hash_page_addr(page.addr(), self.cfg.table_bits)
    }

    /// The queue `page`'s waiters sleep on (`folio_waitqueue`). Callers
    /// outside the crate can only lock it (to measure lock hold times) and
    /// look at it. It is not a plain queue: waking it without a page key
    /// does not compile (E0599, no such method) ...
    ///
    /// ```compile_fail,E0599
    /// fn misuse<P: pagesync::Platform>(t: &pagesync::PageWaitTable<P>, p: &pagesync::Page) {
    ///     t.queue(p).wake_up_all();
    /// }
    /// ```
    ///
    /// ... while the same call on a plain queue does:
    ///
    /// ```
    /// fn fine<P: pagesync::Platform>(q: &pagesync::WaitQueueHead<P>) {
    ///     q.wake_up_all();
    /// }
    /// ```
    pub fn queue(&self, page: &Page) -> &WaitQueueHead<P, PageKind> {
        &self.buckets[self.bucket_index(page)].0
    }

    /// How many entries for `page` (any bit) are queued now. Takes the
    /// queue lock; for tests and watchdogs.
    pub fn waiters_queued(&self, page: &Page) -> usize {
        let q = self.queue(page).lock();
        count_page_entries(&q, page)
    }

    /// How many entries are queued on the whole table now (every queue
    /// locked in turn, so a snapshot): 0 when nobody waits on any page. For
    /// the accounting after a test case: a waiter left queued is a waiter
    /// that will never be woken, or an entry on a stack that is gone.
    pub fn queued_entries(&self) -> usize {
        self.buckets.iter().map(|b| b.0.lock().len()).sum()
    }

    /// Panics if an entry for `page` is queued while `PG_WAITERS` is clear
    /// (the state that turns into a hang at the next unlock). Takes the
    /// queue lock, which orders it against every legitimate change of the
    /// bit.
    pub fn assert_waiters_invariant(&self, page: &Page) {
        let q = self.queue(page).lock();
        check_waiters_invariant(&q, page);
    }

    /// `folio_wake_bit`: wake waiters of (`page`, `bit`) and clear
    /// `PG_WAITERS` if none of this page's entries remain. Called by
    /// unlockers whose RMW saw `PG_WAITERS`. The caller holds a reference
    /// on the page (checked in test builds): a walk on a page nobody holds
    /// may run after the page was freed and reused by somebody else.
    #[cold]
    #[inline(never)]
    pub fn wake_page_bit(&self, page: &Page, bit: u32) {
        drop(self.walk_page_bit(page, &mut WaitPageKey::new(page, bit, false)));
    }

    /// The walk of [`Self::wake_page_bit`] with the caller's `key` (of
    /// `page`), returning with the queue still locked: a protocol can act
    /// on what the walk found (`key`) before any new waiter can queue
    /// (`crate::variant`).
    pub(crate) fn walk_page_bit<'a>(
        &'a self,
        page: &Page,
        key: &mut WaitPageKey,
    ) -> LockedQueue<'a, P, PageKind> {
        #[cfg(any(loom, debug_assertions))]
        assert_referenced(page);
        debug_assert!(ptr::eq(key.page, page));
        let q = self.queue(page);
        P::race_point(RacePoint::WakeBeforeWalk);
        let mut locked = q.lock();
        #[cfg(any(loom, debug_assertions))]
        check_waiters_invariant(&locked, page);
        if self.cfg.bookmarks {
            // Linux 4.14-6.6 `wake_up_page_bit`: walk in chunks, dropping
            // the lock (and re-enabling interrupts) in between so a
            // thousands-long walk does not trip the watchdog. Each chunk
            // may use one exclusive wake-up, as in Linux.
            let bookmark = pin!(WaitEntry::<P, PageKind>::bookmark());
            let bookmark = bookmark.as_ref();
            let batch = self.cfg.bookmark_batch.max(1) as usize;
            loop {
                // SAFETY: `bookmark` is resumed by the next call before the
                // loop can end, so it is unlinked when dropped.
                unsafe { locked.wake_up_locked_key(key, 1, Some(bookmark), batch) };
                if bookmark.flags().load(Ordering::Relaxed) & WQ_FLAG_BOOKMARK == 0 {
                    break;
                }
                drop(locked);
                P::cpu_relax();
                locked = q.lock();
            }
        } else {
            // SAFETY: no bookmark; the entries' wake functions are this
            // crate's page wake functions.
            unsafe { locked.wake_up_locked_key(key, 1, None, 0) };
        }
        P::race_point(RacePoint::WakeBeforeWaitersClear);
        // The walk visited every entry unless a wake function of *this*
        // page stopped it, and that set `page_match`; so `!page_match`
        // means no entry of this page is queued.
        if locked.is_empty() || !key.page_match || bugs::clear_waiters_early(self.cfg.bug) {
            // Under the queue lock: a waiter sets the bit under this same
            // lock before queueing, so it cannot slip in between our walk
            // and this clear. The page's waiters must be this table's:
            // another table's would be stranded by the clear.
            let owner = page.flags.table_tag();
            assert!(
                owner == 0 || owner == self.tag,
                "wake_page_bit: page {:#x} is waited on through another page wait table (tag {owner}, this one {})",
                page.addr(),
                self.tag
            );
            page.flags.clear_waiters();
        }
        #[cfg(any(loom, debug_assertions))]
        check_waiters_invariant(&locked, page);
        locked
    }
}

/// Panics if `page` has no reference (count 0): see `wake_page_bit`. The
/// check takes and drops a reference instead of loading the count, so that
/// under loom it is an RMW, which loom orders against a concurrent last put
/// (a plain load there is missed by loom 0.7's exploration, tokio-rs/loom
/// #392 and its relatives).
#[cfg(any(loom, debug_assertions))]
fn assert_referenced(page: &Page) {
    if page.get_page().is_err() {
        panic!(
            "wake_page_bit: page {:#x} has no reference: the waker must hold one, \
             or the page may be freed and reused under the walk",
            page.addr()
        );
    }
    // Not the last: the caller's reference (which we just saw) remains.
    let _ = page.put_page();
}

fn count_page_entries<P: Platform>(q: &LockedQueue<'_, P, PageKind>, page: &Page) -> usize {
    let mut n = 0;
    q.for_each(|e| {
        if ptr::eq(e.key().page, page) {
            n += 1;
        }
    });
    n
}

fn check_waiters_invariant<P: Platform>(q: &LockedQueue<'_, P, PageKind>, page: &Page) {
    let n = count_page_entries(q, page);
    assert!(
        n == 0 || page.flags.test(PG_WAITERS),
        "PG_waiters clear while {n} waiter(s) of page {:#x} are queued",
        page.addr()
    );
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_linux_constant_and_ranges() {
        assert_eq!(hash_page_addr(0x1234_5678, 0), 0);
        assert_eq!(hash_page_addr(1, 8), (GOLDEN_RATIO_64 >> 56) as usize);
        for bits in 1..=MAX_TABLE_BITS {
            for addr in [0usize, 64, 0xffff_8000_0000_0000, usize::MAX] {
                assert!(hash_page_addr(addr, bits) < 1 << bits);
            }
        }
    }

    /// 64-byte descriptors of 16384 consecutive frames (a 64 MiB machine's
    /// page array) spread over 256 queues within 25% of the mean.
    #[test]
    fn hash_spreads_a_page_array() {
        let base = 0xffff_8880_0100_0000usize;
        let frames = 16384;
        let mut counts = [0u32; 256];
        for i in 0..frames {
            counts[hash_page_addr(base + i * 64, 8)] += 1;
        }
        let mean = frames as u32 / 256;
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(
            min * 4 >= mean * 3 && max * 4 <= mean * 5,
            "min {min} max {max} mean {mean}"
        );
    }
}
