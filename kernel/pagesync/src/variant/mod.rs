//! Protocol variants: the knobs a [`crate::PageWaitTable`] is built with.
//!
//! Mental model: one [`Config`] value selects which page-lock protocol
//! runs ([`Protocol`]), and optionally one deliberately broken mutation
//! ([`Bug`]). The kernel fills it from its boot parameters (the parsing
//! lives with the parameter table, not here); tests build it directly.
//! [`Config::default`] is the correct, current protocol.
//!
//! Where each variant lives:
//! * each page-lock protocol: one file in this folder, which implements
//!   `LockProtocol`, registered by one line of `protocols!` below.
//!   Everything else follows from that line: `protocol=`'s accepted
//!   values (the kernel's parameter table takes [`Protocol::NAMES`]), the
//!   README's protocol table (generated, and checked by a host test), the
//!   loom models that run over [`Protocol::ALL`]
//!   (`tests/loom_protocols.rs`: a correct protocol must pass them all, a
//!   known-bad one must fail one), the in-kernel torture that runs every
//!   correct protocol (`pagelock.torture_protocols`), and the benchmarks
//!   and comparisons (`cargo xtask compare -- protocol=A -- protocol=B`).
//!   The 5.9+ algorithm itself is `crate::page_lock` (Linux 6.7+ alone);
//!   [`linux_5_9`] registers it;
//! * each pin scheme (`gup=`): one file in this folder, which implements
//!   `PinProtocol`, registered by one line of `pin_schemes!`; `gup=`'s
//!   values, the README's table of schemes and the GUP benchmark (which
//!   runs every scheme) follow from it;
//! * each known-bad [`Bug`]: the function of the same name in [`bugs`],
//!   called from the one spot of the correct code it mutates. A bug is
//!   never on by default.

pub mod bugs;

use core::fmt;

use crate::page::Page;
use crate::page_lock::Behavior;
use crate::platform::Platform;
use crate::refcount::RefError;
use crate::wait_table::PageWaitTable;
use crate::waitqueue::Interrupted;

/// A page-lock protocol: how a waiter waits for a page bit, and how the
/// lock is released. One file per protocol, registered in `protocols!`.
pub(crate) trait LockProtocol {
    /// One line: what the protocol is, where it comes from. No `|` (it
    /// goes into a Markdown table).
    const SUMMARY: &'static str;
    /// Whether the protocol is known to be wrong. A known-bad protocol is
    /// announced by the kernel, never the default, and the checks must
    /// catch it (`tests/loom_protocols.rs`).
    const KNOWN_BAD: bool = false;
    /// Whether `LockProtocol::unlock` replaces the 5.9+ unlock (one XOR
    /// that reads `PG_WAITERS`, then a walk). If not, the unlock fast path
    /// never looks at the protocol.
    const OWN_UNLOCK: bool = false;

    /// `folio_wait_bit_common`: wait for `bit` of `page` as `behavior`
    /// says (take it, see it clear, or drop the reference `free` frees).
    /// By default the 5.9+ loop of `crate::page_lock`.
    fn wait<P: Platform>(
        table: &PageWaitTable<P>,
        page: &Page,
        bit: u32,
        behavior: Behavior,
        killable: bool,
        free: Option<impl FnOnce(&Page)>,
    ) -> Result<(), Interrupted> {
        table.wait_bit_handoff(page, bit, behavior, killable, free)
    }

    /// `folio_unlock` of a locked page, when `LockProtocol::OWN_UNLOCK`.
    fn unlock<P: Platform>(table: &PageWaitTable<P>, page: &Page) {
        let _ = (table, page);
        unreachable!("this protocol keeps the 5.9+ unlock");
    }
}

/// Registers the page-lock protocols: one line per file of this folder,
/// `module::{Type = "name", ...}`, where each `Type` implements
/// `LockProtocol`. Declares the modules and makes [`Protocol`].
macro_rules! protocols {
    ($($module:ident :: { $($ty:ident = $name:literal),+ $(,)? },)*) => {
        $(pub mod $module;)*

        /// A registered page-lock protocol (`protocol=`); see
        /// [`Protocol::summary`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Protocol {
            $($(#[doc = concat!("`", $name, "`: `", stringify!($module), "::", stringify!($ty), "`.")] $ty,)+)*
        }

        impl Protocol {
            /// Every protocol, in registration order.
            pub const ALL: [Protocol; [$($(Protocol::$ty,)+)*].len()] = [$($(Protocol::$ty,)+)*];
            /// Every protocol's name, in registration order.
            pub const NAMES: [&'static str; Protocol::ALL.len()] = [$($($name,)+)*];

            /// The name used in boot parameters, reports and test names.
            pub const fn name(self) -> &'static str {
                match self {
                    $($(Protocol::$ty => $name,)+)*
                }
            }

            /// One line: what it is.
            pub const fn summary(self) -> &'static str {
                match self {
                    $($(Protocol::$ty => <$module::$ty as LockProtocol>::SUMMARY,)+)*
                }
            }

            /// Whether it is known to be wrong (module docs).
            pub const fn is_known_bad(self) -> bool {
                match self {
                    $($(Protocol::$ty => <$module::$ty as LockProtocol>::KNOWN_BAD,)+)*
                }
            }

            /// Whether it replaces the 5.9+ unlock.
            pub(crate) const fn own_unlock(self) -> bool {
                match self {
                    $($(Protocol::$ty => <$module::$ty as LockProtocol>::OWN_UNLOCK,)+)*
                }
            }

            /// The protocol called `name`.
            pub fn from_name(name: &str) -> Option<Protocol> {
                Self::ALL.into_iter().find(|p| p.name() == name)
            }

            /// `LockProtocol::wait` of this protocol.
            #[inline]
            pub(crate) fn wait<P: Platform>(
                self,
                table: &PageWaitTable<P>,
                page: &Page,
                bit: u32,
                behavior: Behavior,
                killable: bool,
                free: Option<impl FnOnce(&Page)>,
            ) -> Result<(), Interrupted> {
                match self {
                    $($(Protocol::$ty => <$module::$ty as LockProtocol>::wait(table, page, bit, behavior, killable, free),)+)*
                }
            }

            /// `LockProtocol::unlock` of this protocol.
            #[inline]
            pub(crate) fn unlock<P: Platform>(self, table: &PageWaitTable<P>, page: &Page) {
                match self {
                    $($(Protocol::$ty => <$module::$ty as LockProtocol>::unlock(table, page),)+)*
                }
            }
        }
    };
}

// The registry: one line per protocol file. The first is the default.
protocols! {
    linux_5_9::{Linux59 = "linux-5.9"},
    legacy::{Linux58 = "linux-5.8"},
    hugh_rfc::{HughRfc = "hugh-rfc", HughRfcLateClear = "hugh-rfc-late-clear"},
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Linux's `PAGE_WAIT_TABLE_BITS`.
pub const DEFAULT_TABLE_BITS: u32 = 8;
/// Largest accepted `table_bits` (65536 queues, 4 MiB).
pub const MAX_TABLE_BITS: u32 = 16;

/// Linux's `WAITQUEUE_WALK_BREAK_CNT`.
pub const DEFAULT_BOOKMARK_BATCH: u32 = 64;

/// How the page wait table behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// log2 of the number of hashed wait queues (0 = one queue). Default 8.
    pub table_bits: u32,
    /// Which page-lock protocol runs ([`Protocol`]); default
    /// [`Protocol::Linux59`], the 5.9+ algorithm, where the wake function
    /// can hand the lock bit over to the waiter it wakes.
    pub protocol: Protocol,
    /// How many times an exclusive waiter lets others steal the lock before
    /// it asks for a hand-off (`page_lock_unfairness`, default 5; 0 = strict
    /// FIFO hand-off). Read by the protocols that steal (`linux-5.9`).
    pub unfairness: u32,
    /// Break long wake walks every `bookmark_batch` entries, dropping the
    /// queue lock in between (Linux 4.14–6.6).
    pub bookmarks: bool,
    /// Entries per walk chunk when `bookmarks` is on.
    pub bookmark_batch: u32,
    /// Fix the killable window: a killable exclusive waiter that was woken
    /// without a hand-off but leaves with [`crate::Interrupted`] passes the
    /// wake-up on. Applies to both loops: the 5.9+ one (`crate::page_lock`)
    /// and the pre-5.9 one ([`legacy`], where the same window is Oleg
    /// Nesterov's 2020 missed wake-up). false = Linux-faithful (the window
    /// exists).
    pub killable_fix: bool,
    /// How GUP pins and writeback see each other (`crate::pin`).
    pub gup: PinScheme,
    /// A known-bad mutation to run instead of the correct code.
    pub bug: Option<Bug>,
}

/// A scheme for ordering a DMA pin against the start of writeback
/// (`crate::pin`: the invariant both sides keep). One file per scheme,
/// registered in `pin_schemes!`.
pub(crate) trait PinProtocol {
    /// One line: what the scheme is. No `|`.
    const SUMMARY: &'static str;

    /// One attempt of `pin_page` on a page the caller holds a reference
    /// on: `Ok(true)` if the page is now pinned (the pinner saw no
    /// writeback), `Ok(false)` if it found the page under writeback and
    /// holds no pin.
    fn try_pin<P: Platform>(table: &PageWaitTable<P>, page: &Page) -> Result<bool, RefError>;

    /// The writeback side, between setting `PG_WRITEBACK` and reading the
    /// pin state (`start_page_writeback`, the page lock held): whatever
    /// ordering the scheme needs there.
    fn after_writeback_set<P: Platform>(table: &PageWaitTable<P>, page: &Page);
}

/// Registers the pin schemes: one line per file of this folder,
/// `module::{Type = "name", ...}`, where each `Type` implements
/// `PinProtocol`. Declares the modules and makes [`PinScheme`].
macro_rules! pin_schemes {
    ($($module:ident :: { $($ty:ident = $name:literal),+ $(,)? },)*) => {
        $(pub mod $module;)*

        /// A registered pin scheme (`gup=`); see [`PinScheme::summary`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum PinScheme {
            $($(#[doc = concat!("`", $name, "`: `", stringify!($module), "::", stringify!($ty), "`.")] $ty,)+)*
        }

        impl PinScheme {
            /// Every scheme, in registration order.
            pub const ALL: [PinScheme; [$($(PinScheme::$ty,)+)*].len()] = [$($(PinScheme::$ty,)+)*];

            /// The name used in boot parameters and reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $($(PinScheme::$ty => $name,)+)*
                }
            }

            /// One line: what it is.
            pub const fn summary(self) -> &'static str {
                match self {
                    $($(PinScheme::$ty => <$module::$ty as PinProtocol>::SUMMARY,)+)*
                }
            }

            /// `PinProtocol::try_pin` of this scheme.
            #[inline]
            pub(crate) fn try_pin<P: Platform>(
                self,
                table: &PageWaitTable<P>,
                page: &Page,
            ) -> Result<bool, RefError> {
                match self {
                    $($(PinScheme::$ty => <$module::$ty as PinProtocol>::try_pin(table, page),)+)*
                }
            }

            /// `PinProtocol::after_writeback_set` of this scheme.
            #[inline]
            pub(crate) fn after_writeback_set<P: Platform>(self, table: &PageWaitTable<P>, page: &Page) {
                match self {
                    $($(PinScheme::$ty => <$module::$ty as PinProtocol>::after_writeback_set(table, page),)+)*
                }
            }
        }
    };
}

// The registry of pin schemes: one line per file. The first is the
// default.
pin_schemes! {
    pin_lock::{Lock = "lock"},
    pin_barrier::{Barrier = "barrier"},
}

impl Config {
    /// The correct, current protocol (hand-off, unfairness 5, no
    /// bookmarks, killable fix on, 256 queues).
    pub const DEFAULT: Self = Self {
        table_bits: DEFAULT_TABLE_BITS,
        protocol: Protocol::ALL[0],
        unfairness: 5,
        bookmarks: false,
        bookmark_batch: DEFAULT_BOOKMARK_BATCH,
        killable_fix: true,
        gup: PinScheme::ALL[0],
        bug: None,
    };

    /// Linux 6.7+ as written (the killable window included).
    pub const LINUX_6_7: Self = Self {
        killable_fix: false,
        ..Self::DEFAULT
    };

    /// Linux 4.14–5.8: wake-then-race with bookmarks.
    pub const LINUX_5_8: Self = Self {
        protocol: Protocol::Linux58,
        bookmarks: true,
        killable_fix: false,
        ..Self::DEFAULT
    };

    /// Whether this configuration runs a known-bad mutation or protocol.
    pub fn is_known_bad(&self) -> bool {
        self.bug.is_some() || self.protocol.is_known_bad()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A known-bad protocol mutation, for proving that tests catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The exclusive waiter's test-and-set runs before it takes the queue
    /// lock, and it then queues without re-testing: the owner can unlock in
    /// between, see no PG_WAITERS, and wake nobody (lost wake-up).
    /// The mutation: [`bugs::tas_outside_lock`].
    TasOutsideLock,
    /// `unlock_page` wakes first and clears PG_LOCKED afterwards, outside
    /// the queue lock, without re-reading PG_WAITERS (the ordering Linus
    /// rejected in the seed mail): the exclusive waiter is not woken because
    /// the bit is still set, and nobody wakes it after the clear.
    /// The mutation: `bugs::clear_after_wake`.
    ClearAfterWake,
    /// The wake walk clears PG_WAITERS even though entries for the page
    /// remain, so the next unlock skips the wake-up.
    /// The mutation: [`bugs::clear_waiters_early`].
    ClearWaitersEarly,
    /// `unlock_page` clears PG_LOCKED with a plain load + store instead of
    /// an atomic RMW, erasing a PG_WAITERS set in between (the
    /// `__ClearPageDirty` bug on THP split).
    /// The mutation: `bugs::non_atomic_flags`.
    NonAtomicFlags,
    /// `end_page_writeback` clears `PG_WRITEBACK` and wakes without holding
    /// a temporary reference (Linux before 073861ed77b6): a waiter that sees
    /// the bit clear may drop the last reference, and the page may be freed
    /// and reused before the walk, which then runs on somebody else's page.
    /// The mutation: [`bugs::end_writeback_takes_ref`].
    EndWritebackNoRef,
    /// `wait_for_stable_page` does not wait: a writer changes a page while
    /// the device is writing it out (no stable pages).
    /// The mutation: [`bugs::skip_stable_wait`].
    NoStableWait,
    /// The barrier scheme's pinner has no full barrier between adding the
    /// pin bias and testing `PG_WRITEBACK` (F1 in `crate::pin`): both sides
    /// can miss each other. The mutation: in [`pin_barrier`]'s pinner.
    GupNoFence,
    /// The barrier scheme's writeback side uses the seed's `smp_wmb()`
    /// (a Release fence) instead of a full barrier between setting
    /// `PG_WRITEBACK` and reading the pin state (F2 in `crate::pin`). The
    /// mutation: [`pin_barrier`]'s writeback side.
    GupWmbOnly,
    /// The barrier scheme done with plain stores and no fences on both
    /// sides: the pinner adds the pin bias, and writeback sets
    /// `PG_WRITEBACK`, each with a plain load and store, so each store can
    /// wait in a store buffer past the other side's load, even on x86. The
    /// mutations: in [`pin_barrier`]'s pinner and
    /// [`bugs::set_writeback_plain`].
    GupPlainStores,
    /// The lock scheme's pinner tests `PG_WRITEBACK` before it takes the
    /// page lock and pins under the lock without testing again: writeback
    /// can start in between, see no pin, and the page is pinned under it.
    /// The mutation: in [`pin_lock`]'s pinner.
    GupCheckOutsideLock,
    /// Writeback writes a page that may be DMA-pinned from the page itself
    /// instead of a bounce copy taken after writeback started: a device
    /// writing into the pinned page (DMA) changes the data while the disk
    /// is being written. The mutation: [`bugs::bounce_pinned_pages`]
    /// (asked by the kernel's page cache).
    WritePinnedInPlace,
    /// A shared waiter (`wait_on_page_locked`, `wait_on_page_bit`,
    /// `wait_on_page_writeback`, the drop waiter) tests the bit it waits on
    /// with a Relaxed load instead of an Acquire one: returning without
    /// sleeping, it may not see what the clearer wrote before clearing.
    /// Invisible on x86 (every load is Acquire there); loom's
    /// data-visibility models catch it. The mutation:
    /// [`bugs::shared_wait_relaxed`].
    SharedWaitRelaxed,
    /// `sync` (fsync) returns once its writes have completed without asking
    /// the device to flush its volatile write cache (no `REQ_PREFLUSH`): a
    /// power cut after it returns may lose what it promised was durable.
    /// The mutation: [`bugs::sync_flushes`] (asked by the kernel's page
    /// cache).
    SyncNoFlush,
    /// The reader that finds a page's read-ahead mark tests it and then
    /// clears it in a second step instead of one test-and-clear: two
    /// readers can both see it set, and both start the next window.
    /// The mutation: [`bugs::readahead_racy_clear`].
    ReadaheadRacyClear,
}

impl Bug {
    /// Every known-bad variant.
    pub const ALL: [Bug; 14] = [
        Bug::TasOutsideLock,
        Bug::ClearAfterWake,
        Bug::ClearWaitersEarly,
        Bug::NonAtomicFlags,
        Bug::EndWritebackNoRef,
        Bug::NoStableWait,
        Bug::GupNoFence,
        Bug::GupWmbOnly,
        Bug::GupPlainStores,
        Bug::GupCheckOutsideLock,
        Bug::WritePinnedInPlace,
        Bug::SharedWaitRelaxed,
        Bug::SyncNoFlush,
        Bug::ReadaheadRacyClear,
    ];

    /// The name used in boot parameters, reports and test names.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::TasOutsideLock => "tas-outside-lock",
            Bug::ClearAfterWake => "clear-after-wake",
            Bug::ClearWaitersEarly => "clear-waiters-early",
            Bug::NonAtomicFlags => "non-atomic-flags",
            Bug::EndWritebackNoRef => "end-writeback-no-ref",
            Bug::NoStableWait => "no-stable-wait",
            Bug::GupNoFence => "gup-no-fence",
            Bug::GupWmbOnly => "gup-wmb-only",
            Bug::GupPlainStores => "gup-plain-stores",
            Bug::GupCheckOutsideLock => "gup-check-outside-lock",
            Bug::WritePinnedInPlace => "write-pinned-in-place",
            Bug::SharedWaitRelaxed => "shared-wait-relaxed",
            Bug::SyncNoFlush => "sync-no-flush",
            Bug::ReadaheadRacyClear => "readahead-racy-clear",
        }
    }

    /// Always true: every [`Bug`] is a known-bad protocol.
    pub const fn is_known_bad(self) -> bool {
        true
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bug_names_are_distinct_and_known_bad() {
        for (i, a) in Bug::ALL.iter().enumerate() {
            assert!(a.is_known_bad());
            for b in &Bug::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn default_is_correct() {
        let c = Config::default();
        assert!(!c.is_known_bad());
        assert!(c.protocol == Protocol::Linux59 && c.killable_fix && !c.bookmarks);
        assert_eq!((c.unfairness, c.table_bits), (5, 8));
        assert!(Config::LINUX_5_8.protocol == Protocol::Linux58 && !Config::LINUX_6_7.killable_fix);
    }

    #[test]
    fn protocol_names_are_distinct_and_the_default_is_correct() {
        assert!(!Protocol::ALL[0].is_known_bad());
        for (i, a) in Protocol::ALL.iter().enumerate() {
            assert_eq!(Protocol::from_name(a.name()), Some(*a));
            assert_eq!(Protocol::NAMES[i], a.name());
            assert!(!a.summary().is_empty() && !a.summary().contains('|'));
            for b in &Protocol::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
