//! The table: one row per key.

use core::fmt;

use pagesync::Config;

use super::{
    BUG_CHOICES, Crash, GUP_CHOICES, Help, Kind, LogLevel, Mode, PROTOCOL_CHOICES, Persist, Value,
    suggest::edit_distance,
};

/// The protocol's defaults (`pagesync::Config::DEFAULT`), which the table's
/// `bits=`, `protocol=`, `unfairness=`, `bookmarks=`, `bookmark_batch=`,
/// `killable_fix=` and `gup=` rows take as their own.
const PROTOCOL: Config = Config::DEFAULT;

/// A key's value when it is not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value (of the key's kind; it prints as it would be given).
    Is(Value<'static>),
    /// No value: the reader does what the text says (e.g. "every case").
    Unset(&'static str),
}

/// One row of the parameter table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The row's index.
    pub key: Key,
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
    ($($variant:ident = $name:literal,)*) => {
        /// A parameter key: an index into [`TABLE`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Key {
            $(#[doc = concat!("`", $name, "=`")] $variant,)*
        }

        impl Key {
            /// Every key, in table order.
            pub const ALL: [Key; [$(Key::$variant),*].len()] = [$(Key::$variant),*];
            /// The number of keys.
            pub const COUNT: usize = Key::ALL.len();

            /// The key as written in the parameter string.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Key::$variant => $name,)*
                }
            }
        }
    };
}

keys! {
    Mode = "mode",
    Filter = "filter",
    Seed = "seed",
    Loglevel = "loglevel",
    Fail = "fail",
    Crash = "crash",
    Hz = "hz",
    Pcp = "pcp",
    ApSkip = "ap_skip",
    Bits = "bits",
    Protocol = "protocol",
    Unfairness = "unfairness",
    Bookmarks = "bookmarks",
    BookmarkBatch = "bookmark_batch",
    KillableFix = "killable_fix",
    Gup = "gup",
    Bug = "bug",
    Jitter = "jitter",
    JitterRate = "jitter_rate",
    TortureThreads = "torture_threads",
    TorturePages = "torture_pages",
    TortureMs = "torture_ms",
    GupRounds = "gup_rounds",
    LitmusTrials = "litmus_trials",
    Ramdisk = "ramdisk",
    BlkPersist = "blk_persist",
    Readahead = "readahead",
    LockupMs = "lockup_ms",
    WalkWaiters = "walk_waiters",
    BenchRounds = "bench_rounds",
}

/// The test cases that read the torture knobs: the page-lock tortures,
/// the page-cache tortures (RAM device, and the host-verified one on the
/// virtio disk) and the host-verified one with DMA into pinned pages.
pub(super) const TORTURE_SCOPE: &[&str] =
    &["pagelock.torture*", "pagecache.torture*", "gup.torture_dma"];

/// Every parameter, in the order of [`Key`].
pub static TABLE: [Spec; Key::COUNT] = [
    Spec {
        key: Key::Mode,
        kind: Kind::Choice(&Mode::NAMES),
        default: DefaultValue::Is(Value::Choice(Mode::Test.name())),
        help: "what the kernel runs: the KTAP test suites, the benchmarks, or nothing after the boot report",
        scope: None,
    },
    Spec {
        key: Key::Filter,
        kind: Kind::Globs,
        default: DefaultValue::Unset("everything"),
        help: "run only the suites or cases (`suite`, `suite.case`) or benchmarks that one of these globs matches (`*` is a wildcard)",
        scope: None,
    },
    Spec {
        key: Key::Seed,
        kind: Kind::UInt {
            min: 0,
            max: u64::MAX,
        },
        default: DefaultValue::Is(Value::UInt(1)),
        help: "seed for the randomized tests and benchmarks",
        scope: None,
    },
    Spec {
        key: Key::Loglevel,
        kind: Kind::Choice(&LogLevel::NAMES),
        default: DefaultValue::Is(Value::Choice(LogLevel::Info.name())),
        help: "console verbosity",
        scope: None,
    },
    Spec {
        key: Key::Fail,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(false)),
        help: "enable a deliberately failing test case, to see a failure reported",
        scope: Some(&["boot.deliberate_failure"]),
    },
    Spec {
        key: Key::Crash,
        kind: Kind::Choice(&Crash::NAMES),
        default: DefaultValue::Is(Value::Choice(Crash::None.name())),
        help: "crash on purpose in this way, one per failure path the host must detect",
        scope: Some(&["boot.deliberate_crash"]),
    },
    Spec {
        key: Key::Hz,
        kind: Kind::UInt { min: 10, max: 1000 },
        default: DefaultValue::Is(Value::UInt(100)),
        help: "local APIC timer tick rate on every CPU, in Hz",
        scope: None,
    },
    Spec {
        key: Key::Pcp,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(true)),
        help: "per-CPU caches of free single frames in the frame allocator",
        scope: None,
    },
    Spec {
        key: Key::ApSkip,
        kind: Kind::UInt { min: 0, max: 255 },
        default: DefaultValue::Unset("start every CPU"),
        help: "fault injection: never start the CPU with this APIC id (it is reported and boot goes on)",
        scope: None,
    },
    Spec {
        key: Key::Bits,
        kind: Kind::UInt {
            min: 0,
            max: pagesync::variant::MAX_TABLE_BITS as u64,
        },
        default: DefaultValue::Is(Value::UInt(PROTOCOL.table_bits as u64)),
        help: "page wait table size: 2^bits hashed queues (0 = every page in one queue)",
        scope: None,
    },
    Spec {
        key: Key::Protocol,
        kind: Kind::Choice(&PROTOCOL_CHOICES),
        default: DefaultValue::Is(Value::Choice(PROTOCOL.protocol.name())),
        help: "the page-lock protocol: how waiters wait and unlock wakes (one file each in kernel/pagesync/src/variant/; the README's protocol table)",
        scope: None,
    },
    Spec {
        key: Key::Unfairness,
        kind: Kind::UInt {
            min: 0,
            max: u32::MAX as u64,
        },
        default: DefaultValue::Is(Value::UInt(5)),
        help: "lock steals an exclusive waiter tolerates before it asks for hand-off (0 = strict FIFO)",
        scope: None,
    },
    Spec {
        key: Key::Bookmarks,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(PROTOCOL.bookmarks)),
        help: "the 2017-2023 wake walk that drops the queue lock every bookmark_batch entries",
        scope: None,
    },
    Spec {
        key: Key::BookmarkBatch,
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000,
        },
        default: DefaultValue::Is(Value::UInt(64)),
        help: "entries per wake-walk chunk when bookmarks=on (Linux's WAITQUEUE_WALK_BREAK_CNT is 64)",
        scope: None,
    },
    Spec {
        key: Key::KillableFix,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(PROTOCOL.killable_fix)),
        help: "a woken killable waiter that gives up passes the wake-up on (off = Linux's window)",
        scope: None,
    },
    Spec {
        key: Key::Gup,
        kind: Kind::Choice(&GUP_CHOICES),
        default: DefaultValue::Is(Value::Choice(PROTOCOL.gup.name())),
        help: "how a GUP pin and the start of writeback see each other: the page lock, or a full barrier on each side",
        scope: None,
    },
    Spec {
        key: Key::Bug,
        kind: Kind::Choice(&BUG_CHOICES),
        default: DefaultValue::Is(Value::Choice(BUG_CHOICES[0])),
        help: "run this known-bad protocol variant (announced loudly; never the default)",
        scope: None,
    },
    Spec {
        key: Key::Jitter,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(true)),
        help: "random delays at the page protocol's race points (after every access to a page's flags and reference count, and at the steps of waits and wake-ups), mostly 4 to 4096 TSC cycles and one in 16 up to 262144, seeded by seed=, to open narrow race windows; debug builds only (release builds compile the points out)",
        scope: None,
    },
    Spec {
        key: Key::JitterRate,
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000,
        },
        default: DefaultValue::Is(Value::UInt(4)),
        help: "with jitter=on, delay at one race point in this many (1 = at every point)",
        scope: None,
    },
    Spec {
        key: Key::TortureThreads,
        kind: Kind::UInt { min: 1, max: 64 },
        default: DefaultValue::Unset("each case's own"),
        help: "torture threads per CPU (page-lock lockers, page-cache writers; the DMA torture adds one DMA engine per CPU)",
        scope: Some(TORTURE_SCOPE),
    },
    Spec {
        key: Key::TorturePages,
        kind: Kind::UInt { min: 1, max: 4096 },
        default: DefaultValue::Unset("each case's own"),
        help: "pages the torture threads contend for (the disk tortures use at most 512)",
        scope: Some(TORTURE_SCOPE),
    },
    Spec {
        key: Key::TortureMs,
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
        kind: Kind::UInt {
            min: 1,
            max: 10_000_000,
        },
        default: DefaultValue::Is(Value::UInt(5000)),
        help: "pin/writeback race rounds per pair of CPUs",
        scope: Some(&["gup.race*"]),
    },
    Spec {
        key: Key::LitmusTrials,
        kind: Kind::UInt {
            min: 1,
            max: 1_000_000_000,
        },
        default: DefaultValue::Is(Value::UInt(1000000)),
        help: "trials of each litmus test (klitmus7 style: store buffering as the canary, then the pin/writeback race; the two page-lock pin tests run a tenth and a thousandth of it)",
        scope: Some(&["litmus.*"]),
    },
    Spec {
        key: Key::Ramdisk,
        kind: Kind::UInt { min: 0, max: 1024 },
        default: DefaultValue::Is(Value::UInt(16)),
        help: "size of the RAM-backed block device in MiB, taken from the frame allocator at boot (0 = no RAM device)",
        scope: None,
    },
    Spec {
        key: Key::BlkPersist,
        kind: Kind::Choice(&Persist::NAMES),
        default: DefaultValue::Is(Value::Choice(Persist::Off.name())),
        help: "persistence check on the virtio disk: write a pattern derived from seed= to its first blocks, or check that they hold it (a later boot of the same image)",
        scope: Some(&["block.persist", "pagecache.persist"]),
    },
    Spec {
        key: Key::Readahead,
        kind: Kind::Bool,
        default: DefaultValue::Is(Value::Bool(true)),
        help: "read-ahead in the page cache: a sequential miss reads a window of pages in one request, and the page carrying PG_readahead starts the next window (off = one read per missing page)",
        scope: None,
    },
    Spec {
        key: Key::LockupMs,
        kind: Kind::UInt {
            min: 1,
            max: 600_000,
        },
        default: DefaultValue::Is(Value::UInt(5000)),
        help: "watchdog lockup threshold in ms: a CPU that has not switched threads this long while others wait for it (soft), or that took no timer tick this long (hard), is reported with a backtrace (Linux: 20 s and 10 s)",
        scope: None,
    },
    Spec {
        key: Key::WalkWaiters,
        kind: Kind::UInt {
            min: 1,
            max: 100_000,
        },
        default: DefaultValue::Is(Value::UInt(1000)),
        help: "waiters queued on 4 pages before the one unlock whose wake walk `pagelock.walk_lockup` watches (bounded by free memory: 20 KiB each)",
        scope: Some(&["pagelock.walk_lockup"]),
    },
    Spec {
        key: Key::BenchRounds,
        kind: Kind::UInt { min: 1, max: 1000 },
        default: DefaultValue::Is(Value::UInt(5)),
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

    /// The key called `name`.
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The key closest to a misspelt `name` (at most a few edits away,
    /// ignoring ASCII case), for "did you mean" hints.
    pub fn closest(name: &str) -> Option<Key> {
        let allowed = (name.len() / 3).clamp(1, 3);
        TABLE
            .iter()
            .filter_map(|s| {
                Some((
                    edit_distance(name.as_bytes(), s.key.name().as_bytes())?,
                    s.key,
                ))
            })
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
