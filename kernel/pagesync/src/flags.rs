//! The page flags word and its atomic bit operations.
//!
//! Mental model: a page's state bits live in one 64-bit word that many CPUs
//! change at once with locked read-modify-writes. The low byte is special:
//! it holds the bits people sleep on (`PG_LOCKED`, `PG_WRITEBACK`) *and*
//! `PG_WAITERS` as bit 7, the byte's sign bit. So one locked instruction can
//! clear the bit being waited on and report, through the CPU sign flag,
//! whether anybody may be waiting ([`PageFlags::xor_unlock_is_negative_byte`]).
//!
//! Why that needs no barrier: every RMW on one word is totally ordered
//! (coherence). A waiter sets `PG_WAITERS` with an RMW and then reads the
//! word; an unlocker clears `PG_LOCKED` with an RMW that returns the old
//! byte. Whichever RMW comes second sees the first: either the unlocker sees
//! `PG_WAITERS` and wakes, or the waiter's later read sees the lock free.
//! This is why `PG_WAITERS` must share the word (here, the byte) with the
//! bits that are waited on.
//!
//! Orderings, as in Linux `Documentation/atomic_bitops.txt`:
//! * [`PageFlags::test`]: a plain (Relaxed) load.
//! * [`PageFlags::set`] / [`PageFlags::clear`]: atomic, unordered (Relaxed).
//!   On x86 they are `lock or`/`lock and`, full barriers in practice; the
//!   protocol never relies on that.
//! * [`PageFlags::test_and_set`] / [`PageFlags::test_and_clear`]: AcqRel,
//!   also when the bit does not change. That is *not* Linux's "fully
//!   ordered" (an `smp_mb()` on each side): an AcqRel RMW orders earlier
//!   accesses before its store and later accesses after its load, but not
//!   its own store before a later load of another location (the
//!   store-buffering shape). Where the protocol needs that, it says so with
//!   an explicit `fence(SeqCst)` (`crate::pin`'s F1 and F2); the known-bad
//!   `gup-wmb-only` is what relying on the RMW alone looks like.
//! * [`PageFlags::test_and_set_bit_lock`]: Acquire when it takes the bit.
//! * [`PageFlags::clear_bit_unlock`] and the `xor_unlock` family: Release.
//!
//! Every operation on a visible page's word is followed by a race point
//! ([`crate::race`]: `FlagsRead`, `FlagsRmw`, `FlagsStore`), so that the
//! kernel's jitter can stretch the window after any access, whoever wrote
//! the code around it. The unshared accessors ([`PageFlags::store_unshared`],
//! [`PageFlags::order`]) have none: nobody can race with them.

use crate::race::{RacePoint, hit};
use crate::sync::{AtomicU64, Ordering};

/// Bit number of the page lock. Must be in the low byte (see module docs).
pub const PG_LOCKED: u32 = 0;
/// Bit number of "I/O from this page to storage is in flight". In the low
/// byte (Linux 6.7+) so ending writeback can use the unlock sign-bit trick.
pub const PG_WRITEBACK: u32 = 1;
/// Recently accessed (LRU aging).
pub const PG_REFERENCED: u32 = 2;
/// Contents are valid.
pub const PG_UPTODATE: u32 = 3;
/// Contents differ from storage.
pub const PG_DIRTY: u32 = 4;
/// On an LRU list.
pub const PG_LRU: u32 = 5;
/// First page of a compound page. Bit 6 so that writing an order (< 64)
/// into the low byte of the first tail page also clears it.
pub const PG_HEAD: u32 = 6;
/// Somebody may sleep in the page wait table on a bit of this page. Must be
/// bit 7, the sign bit of the low byte. May be set with nobody waiting
/// (harmless); must never be clear while a waiter for this page is queued.
pub const PG_WAITERS: u32 = 7;
/// On the active LRU list.
pub const PG_ACTIVE: u32 = 8;
/// Refaulted soon after eviction.
pub const PG_WORKINGSET: u32 = 9;
/// An I/O error occurred on this page.
pub const PG_ERROR: u32 = 10;
/// Never freed or swapped (kernel image, firmware tables, MMIO holes).
pub const PG_RESERVED: u32 = 11;
/// `Page::private` holds filesystem data.
pub const PG_PRIVATE: u32 = 12;
/// Rotate to the LRU tail when writeback ends.
pub const PG_RECLAIM: u32 = 13;
/// The head of a free block in the buddy allocator (Linux's `PG_buddy`
/// page type), its order in the page's private word. Set and cleared only
/// under the allocator's lock, on pages with count 0.
pub const PG_BUDDY: u32 = 14;
/// Read-ahead mark: the first reader to reach this page starts the next
/// read-ahead window (Linux's `PG_readahead`, which aliases
/// `PG_reclaim`; a bit of its own here). See `crate::readahead`.
pub const PG_READAHEAD: u32 = 15;
/// First bit free for later users; bits up to 31 are free. Bits 32..48
/// hold the tag of the page wait table whose queues this page's waiters
/// use ([`TABLE_SHIFT`]). Of the top 16 (zone/node/section numbers in
/// Linux), bits 56..60 hold the allocation order of a block's head page
/// ([`PageFlags::order`]).
pub const PG_FIRST_FREE: u32 = 16;

/// Where the wait-table tag sits in the flags word: set with `PG_WAITERS`
/// by the first waiter of an allocated page, so that a second table over
/// the same page is refused (its walk would clear `PG_WAITERS` under the
/// first table's waiters). Cleared with the rest of the word when the
/// frame is freed.
pub const TABLE_SHIFT: u32 = 32;
/// The wait-table tag's bits in the flags word.
pub const TABLE_MASK: u64 = 0xffff << TABLE_SHIFT;

/// Where the block order sits in the flags word.
pub const ORDER_SHIFT: u32 = 56;
/// The order's bits in the flags word.
pub const ORDER_MASK: u64 = 0xf << ORDER_SHIFT;

/// Flag names, bit 0 first, for reports ([`FlagNames`]).
pub const FLAG_NAMES: [&str; PG_FIRST_FREE as usize] = [
    "locked",
    "writeback",
    "referenced",
    "uptodate",
    "dirty",
    "lru",
    "head",
    "waiters",
    "active",
    "workingset",
    "error",
    "reserved",
    "private",
    "reclaim",
    "buddy",
    "readahead",
];

/// A flags word shown by name, e.g. `0x801(locked|reserved)`, with the
/// block order when it is not 0.
#[derive(Debug, Clone, Copy)]
pub struct FlagNames(pub u64);

impl core::fmt::Display for FlagNames {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "{:#x}(", self.0)?;
        let mut sep = "";
        for (bit, name) in FLAG_NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        let order = (self.0 & ORDER_MASK) >> ORDER_SHIFT;
        if order != 0 {
            write!(f, "{sep}order={order}")?;
        }
        write!(f, ")")
    }
}

/// The mask for one bit number.
pub const fn mask(bit: u32) -> u64 {
    1 << bit
}

// The sign-bit trick needs these placements (Linux checks the same at build
// time in `folio_unlock`).
const _: () = assert!(PG_WAITERS == 7);
const _: () = assert!(PG_LOCKED < 7 && PG_WRITEBACK < 7);
const _: () = assert!(mask(PG_FIRST_FREE) < 1 << TABLE_SHIFT && ORDER_SHIFT >= 48);
const _: () = assert!(TABLE_MASK & ORDER_MASK == 0 && TABLE_MASK >> TABLE_SHIFT == 0xffff);

/// Refuses a bit that safe code outside this crate must not flip: numbers
/// past the word (a shift would wrap), and [`PG_WAITERS`], which only the
/// wait paths may set (under their queue lock) and only a wake walk may
/// clear; a stray set or clear loses wake-ups or strands waiters. For a
/// constant bit (every caller in the kernel) the check folds away.
#[inline(always)]
#[track_caller]
fn check_public(bit: u32) {
    assert!(
        bit < 64 && bit != PG_WAITERS,
        "page flag bit {bit}: not a bit safe code may change (PG_waiters belongs to the wait paths; bits are 0..64)"
    );
}

/// The atomic flags word of a [`crate::Page`].
#[derive(Debug)]
#[repr(transparent)]
pub struct PageFlags {
    word: AtomicU64,
}

impl PageFlags {
    /// All flags clear.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self::with(0)
    }

    /// All flags clear.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self::with(0)
    }

    #[cfg(not(loom))]
    pub(crate) const fn with(word: u64) -> Self {
        Self {
            word: AtomicU64::new(word),
        }
    }

    #[cfg(loom)]
    pub(crate) fn with(word: u64) -> Self {
        Self {
            word: AtomicU64::new(word),
        }
    }

    /// The whole word with the given ordering.
    pub fn load(&self, order: Ordering) -> u64 {
        let v = self.word.load(order);
        hit(RacePoint::FlagsRead);
        v
    }

    /// Overwrites the whole word (Linux's non-atomic `__folio_set_locked`
    /// and friends, used before a folio becomes visible).
    ///
    /// # Safety
    ///
    /// Nobody else may access the page: a free page (count 0) the caller
    /// is handing out or taking back, or a page not yet published. On a
    /// visible page the store erases concurrently set bits, `PG_WAITERS`
    /// included (the `__ClearPageDirty` hang).
    pub unsafe fn store_unshared(&self, value: u64) {
        self.word.store(value, Ordering::Relaxed);
    }

    /// The allocation order recorded in a block's head page (bits 56..60;
    /// written with [`PageFlags::store_unshared`] by the allocator).
    pub fn order(&self) -> u32 {
        ((self.word.load(Ordering::Relaxed) & ORDER_MASK) >> ORDER_SHIFT) as u32
    }

    /// A plain Release store of the whole word. Exists only for the
    /// `NonAtomicFlags` known-bad variant: on a visible page it erases
    /// concurrently set bits.
    pub(crate) fn store_release_racy(&self, value: u64) {
        // Known-bad only: the unlock store of `non-atomic-flags` and the
        // writeback store of `gup-plain-stores`; no correct model runs it.
        self.word.store(value, Ordering::Release);
        hit(RacePoint::FlagsStore);
    }

    /// `test_bit`: a plain load, no ordering.
    pub fn test(&self, bit: u32) -> bool {
        let v = self.word.load(Ordering::Relaxed);
        hit(RacePoint::FlagsRead);
        v & mask(bit) != 0
    }

    /// Like [`PageFlags::test`] but Acquire: when it sees a bit cleared by a
    /// Release operation, the clearer's earlier writes are visible.
    pub fn test_acquire(&self, bit: u32) -> bool {
        let v = self.word.load(Ordering::Acquire);
        hit(RacePoint::FlagsRead);
        v & mask(bit) != 0
    }

    /// `set_bit`: atomic, unordered.
    ///
    /// # Panics
    ///
    /// On `PG_WAITERS` or a bit number past the word (every mutator here;
    /// the wait paths set and clear `PG_WAITERS` through this crate's own
    /// entry points).
    #[track_caller]
    pub fn set(&self, bit: u32) {
        check_public(bit);
        self.word.fetch_or(mask(bit), Ordering::Relaxed);
        hit(RacePoint::FlagsRmw);
    }

    /// `set_bit` after `smp_wmb()` (Linux's `folio_mark_uptodate`): atomic,
    /// Release: a reader that sees the bit with an Acquire test also sees
    /// everything written before it.
    #[track_caller]
    pub fn set_release(&self, bit: u32) {
        check_public(bit);
        // Release pairs with the Acquire `test_acquire` of a lockless
        // reader (`loom_pagecache::visibility_write_then_uptodate`
        // catches Release -> Relaxed).
        self.word.fetch_or(mask(bit), Ordering::Release);
        hit(RacePoint::FlagsRmw);
    }

    /// `clear_bit`: atomic, unordered.
    #[track_caller]
    pub fn clear(&self, bit: u32) {
        check_public(bit);
        self.word.fetch_and(!mask(bit), Ordering::Relaxed);
        hit(RacePoint::FlagsRmw);
    }

    /// `test_and_set_bit`: returns the old bit; AcqRel (module docs: not a
    /// full barrier).
    #[track_caller]
    pub fn test_and_set(&self, bit: u32) -> bool {
        check_public(bit);
        // AcqRel: the Acquire and Release halves of Linux's fully ordered
        // test_and_set_bit, without its store->load ordering. Both halves
        // are load-bearing (`cargo xtask orderings`). Acquire: a waiter
        // that takes a lock bit by this RMW pairs with the previous
        // owner's Release unlock (AcqRel -> Release is caught by
        // `handoff_with_default_unfairness_races_a_cancel`). Release: a
        // caller without the page lock publishes data by setting the bit,
        // as `set_page_dirty` from a DMA-style dirtier of a pinned page
        // (`kernel/suites/src/gup/dma.rs`) does for the Acquire half of the
        // `clear_page_dirty_for_io` that finds it (AcqRel -> Acquire is
        // caught by `loom_pagecache::visibility_lockless_dirtier`).
        let old = self.word.fetch_or(mask(bit), Ordering::AcqRel);
        hit(RacePoint::FlagsRmw);
        old & mask(bit) != 0
    }

    /// `test_and_clear_bit`: returns the old bit; AcqRel (module docs: not
    /// a full barrier).
    #[track_caller]
    pub fn test_and_clear(&self, bit: u32) -> bool {
        check_public(bit);
        // AcqRel (Linux's test_and_clear_bit is fully ordered; see the
        // module docs for what AcqRel leaves out). The one
        // caller is `clear_page_dirty_for_io`. Acquire: pairs with the
        // Release half of a lockless dirtier's `test_and_set` (see there),
        // so writeback reads the data the dirtier wrote before setting
        // PG_dirty (AcqRel -> Release is caught by
        // `loom_pagecache::visibility_lockless_dirtier`). Redundant: the
        // Release half (AcqRel -> Acquire passes every model). What
        // writeback did before the clear (cleaning the mappings, under the
        // page lock) is read only by dirtiers that take the page lock
        // (a write fault's `page_mkwrite`), whose lock acquisition orders
        // them after it; a lockless dirtier reads none of it.
        let old = self.word.fetch_and(!mask(bit), Ordering::AcqRel);
        hit(RacePoint::FlagsRmw);
        old & mask(bit) != 0
    }

    /// `test_and_set_bit_lock`: returns the old bit. Acquire pairs with the
    /// Release in [`PageFlags::clear_bit_unlock`] or the `xor_unlock` family
    /// of the previous holder, so its critical section happens-before ours.
    #[inline]
    #[track_caller]
    pub fn test_and_set_bit_lock(&self, bit: u32) -> bool {
        check_public(bit);
        let old = self.word.fetch_or(mask(bit), Ordering::Acquire);
        hit(RacePoint::FlagsRmw);
        old & mask(bit) != 0
    }

    /// `clear_bit_unlock`: Release pairs with the Acquire of the next
    /// [`PageFlags::test_and_set_bit_lock`]. Does not report waiters; use
    /// [`PageFlags::xor_unlock_is_negative_byte`] when somebody may sleep.
    #[track_caller]
    pub fn clear_bit_unlock(&self, bit: u32) {
        check_public(bit);
        // pagesync's own unlocks use the `xor_unlock` form (which reports
        // waiters); the known-bad `clear-after-wake` and the kernel's mm
        // case call this. Release -> Relaxed is caught by
        // `loom_pagelock::visibility_unlock_form_clear_bit_unlock`.
        self.word.fetch_and(!mask(bit), Ordering::Release);
        hit(RacePoint::FlagsRmw);
    }

    /// Flips `mask` in the low byte with Release ordering and returns
    /// whether bit 7 ([`PG_WAITERS`]) is set afterwards, in one atomic RMW.
    ///
    /// Use it only to clear bits known to be set (the lock on unlock,
    /// writeback at its end); `mask` must not include bit 7. On x86_64 this
    /// is Linux's `lock xorb` + sign flag; elsewhere, and under loom, it is
    /// [`PageFlags::xor_unlock_is_negative_byte_fetch_xor`]. The Release
    /// pairs with the Acquire of the next locker's test-and-set; the read of
    /// PG_WAITERS relies on coherence only (module docs).
    ///
    /// # Panics
    ///
    /// If `mask` includes bit 7 (for the kernel's constant masks the check
    /// folds away).
    #[inline]
    #[track_caller]
    pub fn xor_unlock_is_negative_byte(&self, mask: u8) -> bool {
        assert!(mask & 0x80 == 0, "xor_unlock must not flip PG_WAITERS");
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        {
            self.xor_unlock_is_negative_byte_asm(mask)
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        {
            self.xor_unlock_is_negative_byte_fetch_xor(mask)
        }
    }

    /// The x86 form: `lock xor` on the low byte, then `sets` reads the sign
    /// flag, which after the XOR is bit 7 of the new byte. Bit 7 is not in
    /// `mask`, so old and new bit 7 are equal, the same answer as the
    /// `fetch_xor` form. `lock xor` is a full barrier (stronger than
    /// Release); the asm also acts as a compiler barrier.
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    #[inline]
    #[track_caller]
    pub fn xor_unlock_is_negative_byte_asm(&self, mask: u8) -> bool {
        assert!(mask & 0x80 == 0, "xor_unlock must not flip PG_WAITERS");
        let negative: u8;
        // SAFETY: the pointer is the first (lowest, x86 is little-endian)
        // byte of an `AtomicU64` we borrow, so it is valid and aligned for a
        // one-byte access for the duration of the asm. All other accesses to
        // the word are atomic, and a locked byte RMW is atomic with respect
        // to them on x86 (this mixed-size access is outside the Rust memory
        // model but defined by the hardware; the asm is opaque to the
        // compiler). The asm only writes that byte, `negative` and flags.
        unsafe {
            core::arch::asm!(
                "lock xor byte ptr [{word}], {mask}",
                "sets {negative}",
                word = in(reg) self.word.as_ptr().cast::<u8>(),
                mask = in(reg_byte) mask,
                negative = out(reg_byte) negative,
                options(nostack),
            );
        }
        hit(RacePoint::FlagsRmw);
        negative != 0
    }

    /// The portable form (Linux's generic one): `fetch_xor(Release)` on the
    /// whole word and test bit 7 of the old value. Bit 7 is not flipped, so
    /// old bit 7 = new bit 7 = the sign flag the asm form reads.
    #[inline]
    #[track_caller]
    pub fn xor_unlock_is_negative_byte_fetch_xor(&self, mask: u8) -> bool {
        assert!(mask & 0x80 == 0, "xor_unlock must not flip PG_WAITERS");
        let old = self.word.fetch_xor(u64::from(mask), Ordering::Release);
        hit(RacePoint::FlagsRmw);
        old & (1 << PG_WAITERS) != 0
    }

    /// A compare-exchange loop computing the same thing (powerpc-style
    /// LL/SC shape), kept so the kernel can benchmark the three forms.
    #[inline]
    #[track_caller]
    pub fn xor_unlock_is_negative_byte_cas(&self, mask: u8) -> bool {
        assert!(mask & 0x80 == 0, "xor_unlock must not flip PG_WAITERS");
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            // Release on success pairs like the other forms; a failed CAS
            // publishes nothing. Only the kernel's benchmark and unit case
            // call this form; Release -> Relaxed is caught by
            // `loom_pagelock::visibility_unlock_form_cas`.
            match self.word.compare_exchange_weak(
                old,
                old ^ u64::from(mask),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    hit(RacePoint::FlagsRmw);
                    return old & (1 << PG_WAITERS) != 0;
                }
                Err(now) => old = now,
            }
        }
    }
}

impl PageFlags {
    /// A compare-exchange of the whole word, for a protocol whose unlock is
    /// a compare-exchange loop (`crate::variant`): `Ok(current)` if the
    /// word was `current` and is now `new`, else `Err(actual)`. `success`
    /// orders a successful exchange (the caller says what it pairs with);
    /// a failed one is Relaxed and publishes nothing.
    #[inline]
    pub(crate) fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
    ) -> Result<u64, u64> {
        let r = self
            .word
            .compare_exchange(current, new, success, Ordering::Relaxed);
        hit(if r.is_ok() {
            RacePoint::FlagsRmw
        } else {
            RacePoint::FlagsRead
        });
        r
    }

    /// Sets `PG_WAITERS` and claims the page for the wait table tagged
    /// `tag` (the caller holds that table's queue lock for the page), in
    /// one RMW; or, if another table's tag is on the page, changes nothing
    /// and returns that tag. A compare-exchange loop where `set` was one
    /// `lock or`: this is the slow path of a wait, which is about to sleep.
    /// Relaxed, as `set_bit`: the waiter's next access to the word (its
    /// try of the bit) is ordered after this RMW by coherence, which is
    /// all the no-lost-wake-up argument needs (module docs).
    pub(crate) fn set_waiters(&self, tag: u16) -> Result<(), u16> {
        let tag_bits = u64::from(tag) << TABLE_SHIFT;
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            let owner = ((old & TABLE_MASK) >> TABLE_SHIFT) as u16;
            if owner != 0 && owner != tag {
                hit(RacePoint::FlagsRead);
                return Err(owner);
            }
            match self.word.compare_exchange(
                old,
                old | mask(PG_WAITERS) | tag_bits,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    hit(RacePoint::FlagsRmw);
                    return Ok(());
                }
                Err(now) => old = now,
            }
        }
    }

    /// Clears `PG_WAITERS` (a wake walk that found no waiter of the page
    /// left, under the queue lock). The table tag stays: the page's later
    /// waiters must use the same table.
    pub(crate) fn clear_waiters(&self) {
        self.word.fetch_and(!mask(PG_WAITERS), Ordering::Relaxed);
        hit(RacePoint::FlagsRmw);
    }

    /// The tag of the wait table the page's waiters use, 0 if none yet.
    pub fn table_tag(&self) -> u16 {
        ((self.word.load(Ordering::Relaxed) & TABLE_MASK) >> TABLE_SHIFT) as u16
    }
}

impl Default for PageFlags {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lock_bit_semantics() {
        let f = PageFlags::new();
        assert!(!f.test_and_set_bit_lock(PG_LOCKED));
        assert!(f.test_and_set_bit_lock(PG_LOCKED));
        assert!(f.test(PG_LOCKED));
        f.clear_bit_unlock(PG_LOCKED);
        assert!(!f.test(PG_LOCKED));
        assert_eq!(f.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn names_and_order() {
        let v = mask(PG_LOCKED) | mask(PG_BUDDY) | (3 << ORDER_SHIFT);
        assert_eq!(
            alloc::format!("{}", FlagNames(v)),
            "0x300000000004001(locked|buddy|order=3)"
        );
        let f = PageFlags::with(v);
        assert_eq!(f.order(), 3);
    }

    #[test]
    fn set_clear_test_and() {
        let f = PageFlags::new();
        f.set(PG_DIRTY);
        assert!(f.test(PG_DIRTY));
        assert!(f.test_and_clear(PG_DIRTY));
        assert!(!f.test_and_clear(PG_DIRTY));
        assert!(!f.test_and_set(PG_ERROR));
        assert!(f.test_and_set(PG_ERROR));
        f.clear(PG_ERROR);
        assert_eq!(f.load(Ordering::Relaxed), 0);
    }

    /// All three xor forms clear the masked bits, leave the others, and
    /// report PG_WAITERS, including bits above the low byte.
    #[test]
    fn xor_unlock_forms_agree() {
        type Form = fn(&PageFlags, u8) -> bool;
        let forms: [Form; 3] = [
            PageFlags::xor_unlock_is_negative_byte,
            PageFlags::xor_unlock_is_negative_byte_fetch_xor,
            PageFlags::xor_unlock_is_negative_byte_cas,
        ];
        for form in forms {
            for waiters in [false, true] {
                let f = PageFlags::new();
                let mut v = mask(PG_LOCKED) | mask(PG_DIRTY) | mask(PG_RECLAIM) | (1 << 63);
                if waiters {
                    v |= mask(PG_WAITERS);
                }
                // SAFETY: `f` is this test's alone.
                unsafe { f.store_unshared(v) };
                assert_eq!(form(&f, 1 << PG_LOCKED), waiters);
                assert_eq!(f.load(Ordering::Relaxed), v & !mask(PG_LOCKED));
                // folio_end_read: unlock and mark uptodate in one XOR.
                f.set(PG_LOCKED);
                let m = (1 << PG_LOCKED) | (1 << PG_UPTODATE);
                assert_eq!(form(&f, m), waiters);
                assert!(f.test(PG_UPTODATE) && !f.test(PG_LOCKED));
            }
        }
    }
}
