//! The table: one row per key.

use core::fmt;

use super::{Help, Kind, suggest::edit_distance};

/// A key's value when it is not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, written as it would be given (it parses under the key's
    /// kind, and prints back the same).
    Is(&'static str),
    /// No value: the reader does what the text says (e.g. "every case").
    Unset(&'static str),
}

/// One row of the parameter table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The row's index.
    pub key: Key,
    /// The key as written in the parameter string.
    pub name: &'static str,
    /// The values it accepts.
    pub kind: Kind,
    /// Its value when not given.
    pub default: DefaultValue,
    /// One line: what it does. No `|` and no newline (it goes into a
    /// Markdown table).
    pub help: &'static str,
    /// Globs (`suite.case`, [`crate::glob`] syntax) of the only test cases
    /// that read this key; `None` if the kernel reads it in any case.
    pub scope: Option<&'static [&'static str]>,
}

macro_rules! keys {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// A parameter key: an index into [`TABLE`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Key {
            $($(#[$doc])* $variant,)*
        }

        impl Key {
            /// Every key, in table order.
            pub const ALL: [Key; [$(Key::$variant),*].len()] = [$(Key::$variant),*];
            /// The number of keys.
            pub const COUNT: usize = Key::ALL.len();
        }
    };
}

keys! {
    /// `mode=`
    Mode,
    /// `filter=`
    Filter,
    /// `seed=`
    Seed,
    /// `loglevel=`
    Loglevel,
    /// `fail=`
    Fail,
    /// `crash=`
    Crash,
    /// `hz=`
    Hz,
    /// `pcp=`
    Pcp,
    /// `ap_skip=`
    ApSkip,
    /// `bits=`
    Bits,
    /// `handoff=`
    Handoff,
    /// `unfairness=`
    Unfairness,
    /// `bookmarks=`
    Bookmarks,
    /// `bookmark_batch=`
    BookmarkBatch,
    /// `killable_fix=`
    KillableFix,
    /// `gup=`
    Gup,
    /// `bug=`
    Bug,
    /// `jitter=`
    Jitter,
    /// `jitter_rate=`
    JitterRate,
    /// `torture_threads=`
    TortureThreads,
    /// `torture_pages=`
    TorturePages,
    /// `torture_ms=`
    TortureMs,
    /// `gup_rounds=`
    GupRounds,
    /// `litmus_trials=`
    LitmusTrials,
    /// `ramdisk=`
    Ramdisk,
    /// `blk_persist=`
    BlkPersist,
    /// `lockup_ms=`
    LockupMs,
    /// `walk_waiters=`
    WalkWaiters,
    /// `bench_rounds=`
    BenchRounds,
}

/// The test cases that read the torture knobs: the page-lock tortures,
/// the page-cache tortures (RAM device, and the host-verified one on the
/// virtio disk) and the host-verified one with DMA into pinned pages.
pub(super) const TORTURE_SCOPE: &[&str] = &["pagelock.torture*", "pagecache.torture*", "gup.torture_dma"];

/// Every parameter, in the order of [`Key`].
pub static TABLE: [Spec; Key::COUNT] = [
    Spec {
        key: Key::Mode,
        name: "mode",
        kind: Kind::Choice(&["test", "bench", "idle"]),
        default: DefaultValue::Is("test"),
        help: "what the kernel runs: the KTAP test suites, the benchmarks, or nothing after the boot report",
        scope: None,
    },
    Spec {
        key: Key::Filter,
        name: "filter",
        kind: Kind::Globs,
        default: DefaultValue::Unset("everything"),
        help: "run only the suites or cases (`suite`, `suite.case`) or benchmarks that one of these globs matches (`*` is a wildcard)",
        scope: None,
    },
    Spec {
        key: Key::Seed,
        name: "seed",
        kind: Kind::UInt {
            min: 0,
            max: u64::MAX,
        },
        default: DefaultValue::Is("1"),
        help: "seed for the randomized tests and benchmarks",
        scope: None,
    },
    Spec {
        key: Key::Loglevel,
        name: "loglevel",
        kind: Kind::Choice(&["off", "error", "warn", "info", "debug", "trace"]),
        default: DefaultValue::Is("info"),
        help: "console verbosity",
        scope: None,
    },
    Spec {
        key: Key::Fail,
        name: "fail",
        kind: Kind::Bool,
        default: DefaultValue::Is("off"),
        help: "enable a deliberately failing test case, to see a failure reported",
        scope: Some(&["boot.deliberate_failure"]),
    },
    Spec {
        key: Key::Crash,
        name: "crash",
        kind: Kind::Choice(&[
            "none",
            "panic",
            "pagefault",
            "divide",
            "stackoverflow",
            "hang",
            "triplefault",
            "appanic",
            "doublefree",
            "writeback-unreferenced",
            "vm-readonly-write",
            "wedge",
            "all-cpus-stuck",
        ]),
        default: DefaultValue::Is("none"),
        help: "crash on purpose in this way, one per failure path the host must detect",
        scope: Some(&["boot.deliberate_crash"]),
    },
    Spec {
        key: Key::Hz,
        name: "hz",
        kind: Kind::UInt { min: 10, max: 1000 },
        default: DefaultValue::Is("100"),
        help: "local APIC timer tick rate on every CPU, in Hz",
        scope: None,
    },
    Spec {
        key: Key::Pcp,
        name: "pcp",
        kind: Kind::Bool,
        default: DefaultValue::Is("on"),
        help: "per-CPU caches of free single frames in the frame allocator",
        scope: None,
    },
    Spec {
        key: Key::ApSkip,
        name: "ap_skip",
        kind: Kind::UInt { min: 0, max: 255 },
        default: DefaultValue::Unset("start every CPU"),
        help: "fault injection: never start the CPU with this APIC id (it is reported and boot goes on)",
        scope: None,
    },
    Spec {
        key: Key::Bits,
        name: "bits",
        kind: Kind::UInt { min: 0, max: 16 },
        default: DefaultValue::Is("8"),
        help: "page wait table size: 2^bits hashed queues (0 = every page in one queue)",
        scope: None,
    },
    Spec {
        key: Key::Handoff,
        name: "handoff",
        kind: Kind::Bool,
        default: DefaultValue::Is("on"),
        help: "unlock hands the page lock to the queue head (off = the pre-5.9 wake-then-race loop)",
        scope: None,
    },
    Spec {
        key: Key::Unfairness,
        name: "unfairness",
        kind: Kind::UInt {
            min: 0,
            max: u32::MAX as u64,
        },
        default: DefaultValue::Is("5"),
        help: "lock steals an exclusive waiter tolerates before it asks for hand-off (0 = strict FIFO)",
        scope: None,
    },
    Spec {
        key: Key::Bookmarks,
        name: "bookmarks",
        kind: Kind::Bool,
        default: DefaultValue::Is("off"),
        help: "the 2017-2023 wake walk that drops the queue lock every bookmark_batch entries",
        scope: None,
    },
    Spec {
        key: Key::BookmarkBatch,
        name: "bookmark_batch",
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000,
        },
        default: DefaultValue::Is("64"),
        help: "entries per wake-walk chunk when bookmarks=on (Linux's WAITQUEUE_WALK_BREAK_CNT is 64)",
        scope: None,
    },
    Spec {
        key: Key::KillableFix,
        name: "killable_fix",
        kind: Kind::Bool,
        default: DefaultValue::Is("on"),
        help: "a woken killable waiter that gives up passes the wake-up on (off = Linux's window)",
        scope: None,
    },
    Spec {
        key: Key::Gup,
        name: "gup",
        kind: Kind::Choice(&["lock", "barrier"]),
        default: DefaultValue::Is("lock"),
        help: "how a GUP pin and the start of writeback see each other: the page lock, or a full barrier on each side",
        scope: None,
    },
    Spec {
        key: Key::Bug,
        name: "bug",
        kind: Kind::Choice(&[
            "none",
            "tas-outside-lock",
            "clear-after-wake",
            "clear-waiters-early",
            "non-atomic-flags",
            "end-writeback-no-ref",
            "no-stable-wait",
            "gup-no-fence",
            "gup-wmb-only",
            "gup-plain-stores",
            "gup-check-outside-lock",
            "write-pinned-in-place",
            "shared-wait-relaxed",
            "sync-no-flush",
        ]),
        default: DefaultValue::Is("none"),
        help: "run this known-bad protocol variant (announced loudly; never the default)",
        scope: None,
    },
    Spec {
        key: Key::Jitter,
        name: "jitter",
        kind: Kind::Bool,
        default: DefaultValue::Is("on"),
        help: "random delays at the page protocol's race points (after every access to a page's flags and reference count, and at the steps of waits and wake-ups), mostly 4 to 4096 TSC cycles and one in 16 up to 262144, seeded by seed=, to open narrow race windows; debug builds only (release builds compile the points out)",
        scope: None,
    },
    Spec {
        key: Key::JitterRate,
        name: "jitter_rate",
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000,
        },
        default: DefaultValue::Is("4"),
        help: "with jitter=on, delay at one race point in this many (1 = at every point)",
        scope: None,
    },
    Spec {
        key: Key::TortureThreads,
        name: "torture_threads",
        kind: Kind::UInt { min: 1, max: 64 },
        default: DefaultValue::Unset("each case's own"),
        help: "torture threads per CPU (page-lock lockers, page-cache writers; the DMA torture adds one DMA engine per CPU)",
        scope: Some(TORTURE_SCOPE),
    },
    Spec {
        key: Key::TorturePages,
        name: "torture_pages",
        kind: Kind::UInt { min: 1, max: 4096 },
        default: DefaultValue::Unset("each case's own"),
        help: "pages the torture threads contend for (the disk tortures use at most 512)",
        scope: Some(TORTURE_SCOPE),
    },
    Spec {
        key: Key::TortureMs,
        name: "torture_ms",
        kind: Kind::UInt {
            min: 100,
            max: 600_000,
        },
        default: DefaultValue::Unset("each case's own"),
        help: "length of a torture run, in milliseconds",
        scope: Some(TORTURE_SCOPE),
    },
    Spec {
        key: Key::GupRounds,
        name: "gup_rounds",
        kind: Kind::UInt {
            min: 1,
            max: 10_000_000,
        },
        default: DefaultValue::Is("5000"),
        help: "pin/writeback race rounds per pair of CPUs",
        scope: Some(&["gup.race*"]),
    },
    Spec {
        key: Key::LitmusTrials,
        name: "litmus_trials",
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000_000,
        },
        default: DefaultValue::Is("1000000"),
        help: "trials of each litmus test (klitmus7 style: store buffering as the canary, then the pin/writeback race; the two page-lock pin tests run a tenth and a thousandth of it)",
        scope: Some(&["litmus.*"]),
    },
    Spec {
        key: Key::Ramdisk,
        name: "ramdisk",
        kind: Kind::UInt { min: 0, max: 1024 },
        default: DefaultValue::Is("16"),
        help: "size of the RAM-backed block device in MiB, taken from the frame allocator at boot (0 = no RAM device)",
        scope: None,
    },
    Spec {
        key: Key::BlkPersist,
        name: "blk_persist",
        kind: Kind::Choice(&["off", "write", "check"]),
        default: DefaultValue::Is("off"),
        help: "persistence check on the virtio disk: write a pattern derived from seed= to its first blocks, or check that they hold it (a later boot of the same image)",
        scope: Some(&["block.persist", "pagecache.persist"]),
    },
    Spec {
        key: Key::LockupMs,
        name: "lockup_ms",
        kind: Kind::UInt {
            min: 1,
            max: 600_000,
        },
        default: DefaultValue::Is("5000"),
        help: "watchdog lockup threshold in ms: a CPU that has not switched threads this long while others wait for it (soft), or that took no timer tick this long (hard), is reported with a backtrace (Linux: 20 s and 10 s)",
        scope: None,
    },
    Spec {
        key: Key::WalkWaiters,
        name: "walk_waiters",
        kind: Kind::UInt {
            min: 1,
            max: 100_000,
        },
        default: DefaultValue::Is("1000"),
        help: "waiters queued on 4 pages before the one unlock whose wake walk `pagelock.walk_lockup` watches (bounded by free memory: 20 KiB each)",
        scope: Some(&["pagelock.walk_lockup"]),
    },
    Spec {
        key: Key::BenchRounds,
        name: "bench_rounds",
        kind: Kind::UInt { min: 1, max: 1000 },
        default: DefaultValue::Is("5"),
        help: "mode=bench: rounds each benchmark repeats its measurement in, its variants interleaved round by round",
        scope: None,
    },
];

// Row i of the table describes key i.
const _: () = {
    let mut i = 0;
    while i < Key::COUNT {
        assert!(TABLE[i].key as usize == i);
        i += 1;
    }
};

impl Key {
    /// This key's row of [`TABLE`].
    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    /// The key as written in the parameter string.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The key called `name`.
    pub fn from_name(name: &str) -> Option<Key> {
        TABLE.iter().find(|s| s.name == name).map(|s| s.key)
    }

    /// The key closest to a misspelt `name` (at most a few edits away,
    /// ignoring ASCII case), for "did you mean" hints.
    pub fn closest(name: &str) -> Option<Key> {
        let allowed = (name.len() / 3).clamp(1, 3);
        TABLE
            .iter()
            .filter_map(|s| Some((edit_distance(name.as_bytes(), s.name.as_bytes())?, s.key)))
            .filter(|&(d, _)| d <= allowed)
            .min_by_key(|&(d, _)| d)
            .map(|(_, k)| k)
    }

    /// One line of help: `name=syntax (default ...): help [read only by ...]`.
    pub fn help(self) -> Help {
        Help(self)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}
