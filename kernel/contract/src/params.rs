//! The kernel parameters: one table, one parser.
//!
//! Mental model: the host hands the kernel one string of `key=value` words
//! separated by whitespace (at most [`crate::PARAMS_MAX_LEN`] bytes, in the
//! fw_cfg file [`crate::FW_CFG_NAME`]). Every key is a row of [`TABLE`],
//! indexed by [`Key`]: its [`Kind`] (the values it accepts), its default,
//! one line of help, and optionally its *scope*, the globs of the test cases
//! that read it. [`parse`] turns the string into a [`Parsed`] that answers
//! [`Parsed::get`] with the given value or else the default, or into a
//! [`ParamError`] that names the offending key so its help can be shown.
//!
//! Both sides run the same parser: the kernel at boot (a bad string stops
//! the run with [`crate::ExitCode::BadParams`]), and the host before it
//! builds or boots anything (`cargo xtask run` reports a typo at once). The
//! README's parameter table is generated from [`TABLE`] ([`MarkdownTable`]).
//!
//! "A parameter is never silently without effect": a value that does not
//! parse is an error, and a key with a scope that is given explicitly while
//! no selected test case reads it is reported by the kernel with a
//! [`NoEffect`] note (see [`Parsed::without_effect`]).
//!
//! Every boolean key accepts the same words ([`BOOL_TRUE`], [`BOOL_FALSE`])
//! and is printed as `on`/`off`. Integers are decimal or `0x` hexadecimal.

use core::fmt::{self, Write};

use crate::{PARAMS_MAX_LEN, marker};

/// Words read as `on` by every boolean key.
pub const BOOL_TRUE: [&str; 4] = ["on", "1", "true", "yes"];
/// Words read as `off` by every boolean key.
pub const BOOL_FALSE: [&str; 4] = ["off", "0", "false", "no"];

/// What values a key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A boolean: one of [`BOOL_TRUE`] or [`BOOL_FALSE`].
    Bool,
    /// An unsigned integer in `min..=max`, decimal or `0x` hexadecimal.
    UInt {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// One of these names.
    Choice(&'static [&'static str]),
    /// A comma-separated list of non-empty globs (see [`crate::glob`]).
    Globs,
}

/// A parsed value. Text borrows from the parameter string; choice names
/// are the table's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Of a [`Kind::Bool`] key.
    Bool(bool),
    /// Of a [`Kind::UInt`] key.
    UInt(u64),
    /// Of a [`Kind::Choice`] key: the chosen name, from the table.
    Choice(&'static str),
    /// Of a [`Kind::Globs`] key: the list as given.
    Globs(&'a str),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Value::Bool(b) => f.write_str(if b { "on" } else { "off" }),
            Value::UInt(v) => write!(f, "{v}"),
            Value::Choice(s) | Value::Globs(s) => f.write_str(s),
        }
    }
}

impl Kind {
    /// Parses `raw` as a value of this kind; `None` if it is not one.
    pub fn parse<'a>(&self, raw: &'a str) -> Option<Value<'a>> {
        match *self {
            Kind::Bool => {
                if BOOL_TRUE.contains(&raw) {
                    Some(Value::Bool(true))
                } else if BOOL_FALSE.contains(&raw) {
                    Some(Value::Bool(false))
                } else {
                    None
                }
            }
            Kind::UInt { min, max } => {
                let v = parse_u64(raw)?;
                (min..=max).contains(&v).then_some(Value::UInt(v))
            }
            Kind::Choice(names) => names.iter().find(|n| **n == raw).map(|n| Value::Choice(n)),
            Kind::Globs => {
                (!raw.is_empty() && !raw.split(',').any(str::is_empty)).then_some(Value::Globs(raw))
            }
        }
    }

    /// The accepted values in a few characters: `on|off`, `10..=1000`,
    /// `test|bench|idle`, `GLOB[,GLOB...]`.
    pub fn syntax(&self) -> impl fmt::Display + '_ {
        struct S<'k>(&'k Kind);
        impl fmt::Display for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                match *self.0 {
                    Kind::Bool => f.write_str("on|off"),
                    Kind::UInt {
                        min: 0,
                        max: u64::MAX,
                    } => f.write_str("N"),
                    Kind::UInt { min, max } => write!(f, "{min}..={max}"),
                    Kind::Choice(names) => {
                        for (i, n) in names.iter().enumerate() {
                            if i > 0 {
                                f.write_char('|')?;
                            }
                            f.write_str(n)?;
                        }
                        Ok(())
                    }
                    Kind::Globs => f.write_str("GLOB[,GLOB...]"),
                }
            }
        }
        S(self)
    }

    /// What a value must look like, as a phrase for error messages.
    pub fn expected(&self) -> impl fmt::Display + '_ {
        struct E<'k>(&'k Kind);
        impl fmt::Display for E<'_> {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                match *self.0 {
                    Kind::Bool => {
                        f.write_str("on or off (also accepted:")?;
                        for (t, n) in BOOL_TRUE.iter().zip(BOOL_FALSE).skip(1) {
                            write!(f, " {t}/{n}")?;
                        }
                        f.write_char(')')
                    }
                    Kind::UInt {
                        min: 0,
                        max: u64::MAX,
                    } => f.write_str("a 64-bit unsigned integer (decimal or 0x hex)"),
                    Kind::UInt { min, max } => {
                        write!(f, "an integer in {min}..={max} (decimal or 0x hex)")
                    }
                    Kind::Choice(names) => {
                        f.write_str("one of ")?;
                        for (i, n) in names.iter().enumerate() {
                            if i > 0 {
                                f.write_str(", ")?;
                            }
                            f.write_str(n)?;
                        }
                        Ok(())
                    }
                    Kind::Globs => f.write_str("comma-separated non-empty globs"),
                }
            }
        }
        E(self)
    }
}

/// A decimal or `0x` hexadecimal `u64`: digits only (no sign, no spaces).
fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

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
const TORTURE_SCOPE: &[&str] = &["pagelock.torture*", "pagecache.torture*", "gup.torture_dma"];

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

/// Edit distance between two short ASCII words, ignoring case: insertions,
/// deletions, substitutions and swaps of neighbours each cost 1 (optimal
/// string alignment). `None` for words longer than 64 bytes.
fn edit_distance(a: &[u8], b: &[u8]) -> Option<usize> {
    const N: usize = 65;
    if a.len() >= N || b.len() >= N {
        return None;
    }
    let eq = |x: u8, y: u8| x.eq_ignore_ascii_case(&y);
    let (mut before, mut prev, mut cur) = ([0usize; N], [0usize; N], [0usize; N]);
    for (j, p) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *p = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(!eq(a[i - 1], b[j - 1]));
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && eq(a[i - 1], b[j - 2]) && eq(a[i - 2], b[j - 1]) {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        before = prev;
        prev = cur;
    }
    Some(prev[b.len()])
}

/// A key's one-line help (see [`Key::help`]).
#[derive(Clone, Copy, Debug)]
pub struct Help(pub Key);

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = self.0.spec();
        write!(f, "{}={} ", s.name, s.kind.syntax())?;
        match s.default {
            DefaultValue::Is(v) => write!(f, "(default {v})")?,
            DefaultValue::Unset(what) => write!(f, "(default: {what})")?,
        }
        write!(f, ": {}", s.help)?;
        if let Some(scope) = s.scope {
            write!(f, " [read only by {}]", Scope(scope))?;
        }
        Ok(())
    }
}

/// A scope's globs, comma-separated.
struct Scope(&'static [&'static str]);

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(g)?;
        }
        Ok(())
    }
}

/// One parameter as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Given<'a> {
    raw: &'a str,
    value: Value<'a>,
}

/// A parsed parameter string: for each key, its value if it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    given: [Option<Given<'a>>; Key::COUNT],
}

impl<'a> Parsed<'a> {
    /// The empty string: every key at its default.
    pub const EMPTY: Parsed<'static> = Parsed {
        given: [None; Key::COUNT],
    };

    /// The value of `key`: as given, else its default; `None` only for a
    /// key not given whose default is [`DefaultValue::Unset`].
    pub fn get(&self, key: Key) -> Option<Value<'a>> {
        if let Some(g) = self.given[key as usize] {
            return Some(g.value);
        }
        match key.spec().default {
            DefaultValue::Is(d) => Some(
                key.spec()
                    .kind
                    .parse(d)
                    .expect("every default parses under its key's kind (unit-tested)"),
            ),
            DefaultValue::Unset(_) => None,
        }
    }

    /// The value of `key` if it was given explicitly.
    pub fn given(&self, key: Key) -> Option<Value<'a>> {
        self.given[key as usize].map(|g| g.value)
    }

    /// The text of `key`'s value if it was given explicitly.
    pub fn raw(&self, key: Key) -> Option<&'a str> {
        self.given[key as usize].map(|g| g.raw)
    }

    /// The keys given explicitly with their text, in table order.
    pub fn explicit(&self) -> impl Iterator<Item = (Key, &'a str)> + '_ {
        Key::ALL.into_iter().filter_map(|k| Some((k, self.raw(k)?)))
    }

    /// A boolean key's value.
    ///
    /// # Panics
    ///
    /// If `key` is not a boolean with a default (a bug in the caller).
    pub fn flag(&self, key: Key) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => b,
            other => panic!("parameter {key} read as a boolean but is {other:?}"),
        }
    }

    /// An integer key's value (`None`: not given and no default).
    ///
    /// # Panics
    ///
    /// If `key` is not an integer key.
    pub fn uint(&self, key: Key) -> Option<u64> {
        match self.get(key) {
            Some(Value::UInt(v)) => Some(v),
            None => None,
            other => panic!("parameter {key} read as an integer but is {other:?}"),
        }
    }

    /// A choice key's chosen name.
    ///
    /// # Panics
    ///
    /// If `key` is not a choice with a default.
    pub fn choice(&self, key: Key) -> &'static str {
        match self.get(key) {
            Some(Value::Choice(c)) => c,
            other => panic!("parameter {key} read as a choice but is {other:?}"),
        }
    }

    /// A glob-list key's value (`None`: not given and no default).
    ///
    /// # Panics
    ///
    /// If `key` is not a glob-list key.
    pub fn globs(&self, key: Key) -> Option<&'a str> {
        match self.get(key) {
            Some(Value::Globs(g)) => Some(g),
            None => None,
            other => panic!("parameter {key} read as globs but is {other:?}"),
        }
    }

    /// Every key that has a value (given or default) as `key=value`,
    /// space-separated, in table order: the parameters this run uses.
    pub fn effective(&self) -> impl fmt::Display + '_ {
        struct E<'p, 'a>(&'p Parsed<'a>);
        impl fmt::Display for E<'_, '_> {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                let mut first = true;
                for k in Key::ALL {
                    if let Some(v) = self.0.get(k) {
                        if !first {
                            f.write_char(' ')?;
                        }
                        first = false;
                        write!(f, "{k}={v}")?;
                    }
                }
                Ok(())
            }
        }
        E(self)
    }

    /// The keys given explicitly whose scope no test case of this run
    /// reads, with their text. `reads(glob)` says whether some test case
    /// selected for this run matches a scope glob (always `false` when the
    /// run executes no test cases).
    pub fn without_effect<'s, F>(
        &'s self,
        mut reads: F,
    ) -> impl Iterator<Item = (Key, &'a str)> + 's
    where
        F: FnMut(&str) -> bool + 's,
    {
        self.explicit().filter(move |(k, _)| match k.spec().scope {
            Some(scope) => !scope.iter().any(|g| reads(g)),
            None => false,
        })
    }
}

/// Why a parameter has no effect in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The filter selected no case in the key's scope.
    NoSelectedCase,
    /// The run executes no test cases at all (the mode's name).
    NoTestCases(&'static str),
}

/// The note the kernel prints for a parameter without effect:
/// `# pcs: note: parameter torture_ms=120000 has no effect: it is read only
/// by pagelock.torture*, and no selected case matches`.
#[derive(Clone, Copy, Debug)]
pub struct NoEffect<'a> {
    /// The key given.
    pub key: Key,
    /// Its text as given.
    pub value: &'a str,
    /// Why it is unread.
    pub why: Why,
}

impl fmt::Display for NoEffect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}parameter {}={} has no effect: it is read only by ",
            marker::NOTE,
            self.key,
            self.value
        )?;
        match self.key.spec().scope {
            Some(scope) => write!(f, "{}", Scope(scope))?,
            None => f.write_str("(no scope)")?,
        }
        match self.why {
            Why::NoSelectedCase => f.write_str(", and no selected case matches"),
            Why::NoTestCases(mode) => write!(f, ", and mode={mode} runs no test cases"),
        }
    }
}

/// Why a parameter string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamError<'a> {
    /// Longer than [`PARAMS_MAX_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Not UTF-8 (only from [`parse_bytes`]).
    NotUtf8,
    /// A word without `=`.
    MissingEquals {
        /// The word.
        word: &'a str,
    },
    /// A key not in the table.
    UnknownKey {
        /// The key as given.
        key: &'a str,
        /// The known key it is closest to, if any is close.
        closest: Option<Key>,
    },
    /// A key given twice.
    Duplicate {
        /// The key.
        key: Key,
    },
    /// A value the key's kind does not accept.
    BadValue {
        /// The key.
        key: Key,
        /// The value as given.
        value: &'a str,
    },
}

impl ParamError<'_> {
    /// The key whose help explains the error, if there is one: the key of
    /// a bad or repeated value, the closest key to an unknown one, or a
    /// known key written without `=value`.
    pub fn key(&self) -> Option<Key> {
        match *self {
            ParamError::TooLong { .. } | ParamError::NotUtf8 => None,
            ParamError::MissingEquals { word } => Key::from_name(word),
            ParamError::UnknownKey { closest, .. } => closest,
            ParamError::Duplicate { key } | ParamError::BadValue { key, .. } => Some(key),
        }
    }
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            ParamError::TooLong { len } => write!(
                f,
                "parameter string is {len} bytes; the limit is {PARAMS_MAX_LEN}"
            ),
            ParamError::NotUtf8 => f.write_str("parameter string is not UTF-8"),
            ParamError::MissingEquals { word } => {
                write!(f, "'{word}' is not of the form key=value")
            }
            ParamError::UnknownKey { key, closest } => {
                write!(f, "unknown parameter '{key}'")?;
                match closest {
                    Some(c) => write!(f, "; did you mean '{c}'?"),
                    None => Ok(()),
                }
            }
            ParamError::Duplicate { key } => write!(f, "parameter '{key}' given twice"),
            ParamError::BadValue { key, value } => write!(
                f,
                "bad value '{value}' for '{key}': expected {}",
                key.spec().kind.expected()
            ),
        }
    }
}

/// Parses a parameter string: `key=value` words separated by ASCII
/// whitespace, each key at most once.
pub fn parse(s: &str) -> Result<Parsed<'_>, ParamError<'_>> {
    if s.len() > PARAMS_MAX_LEN {
        return Err(ParamError::TooLong { len: s.len() });
    }
    let mut p = Parsed::EMPTY;
    for word in s.split_ascii_whitespace() {
        let (name, raw) = word
            .split_once('=')
            .ok_or(ParamError::MissingEquals { word })?;
        let key = Key::from_name(name).ok_or(ParamError::UnknownKey {
            key: name,
            closest: Key::closest(name),
        })?;
        let slot = &mut p.given[key as usize];
        if slot.is_some() {
            return Err(ParamError::Duplicate { key });
        }
        let value = key
            .spec()
            .kind
            .parse(raw)
            .ok_or(ParamError::BadValue { key, value: raw })?;
        *slot = Some(Given { raw, value });
    }
    Ok(p)
}

/// [`parse`] for the raw bytes of the fw_cfg file.
pub fn parse_bytes(b: &[u8]) -> Result<Parsed<'_>, ParamError<'_>> {
    if b.len() > PARAMS_MAX_LEN {
        return Err(ParamError::TooLong { len: b.len() });
    }
    parse(core::str::from_utf8(b).map_err(|_| ParamError::NotUtf8)?)
}

/// The whole table as text, one [`Help`] line per key (what `cargo xtask
/// params` prints, and the kernel when it cannot name the offending key).
pub struct TextTable;

impl fmt::Display for TextTable {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for k in Key::ALL {
            writeln!(f, "{}", k.help())?;
        }
        Ok(())
    }
}

/// The whole table as a GitHub-flavoured Markdown table (the README's).
pub struct MarkdownTable;

impl fmt::Display for MarkdownTable {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "| key | values | default | meaning |")?;
        writeln!(f, "|---|---|---|---|")?;
        for s in &TABLE {
            write!(f, "| `{}` | `", s.name)?;
            // A `|` inside a table cell, even in code, must be escaped.
            write!(PipeEscape(f), "{}", s.kind.syntax())?;
            f.write_str("` | ")?;
            match s.default {
                DefaultValue::Is(v) => write!(f, "`{v}`")?,
                DefaultValue::Unset(what) => write!(f, "unset: {what}")?,
            }
            write!(f, " | {}", s.help)?;
            if let Some(scope) = s.scope {
                f.write_str("; read only by ")?;
                for (i, g) in scope.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{g}`")?;
                }
            }
            writeln!(f, " |")?;
        }
        Ok(())
    }
}

/// Writes through, escaping `|` as `\|`.
struct PipeEscape<'f, 'g>(&'f mut fmt::Formatter<'g>);

impl Write for PipeEscape<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('|').enumerate() {
            if i > 0 {
                self.0.write_str("\\|")?;
            }
            self.0.write_str(part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::ToString, vec::Vec};

    #[test]
    fn table_is_well_formed() {
        for (i, s) in TABLE.iter().enumerate() {
            assert_eq!(s.key as usize, i);
            assert_eq!(Key::from_name(s.name), Some(s.key));
            assert!(
                !s.help.is_empty() && !s.help.contains(['|', '\n']),
                "{}",
                s.name
            );
            assert!(s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            if let Kind::UInt { min, max } = s.kind {
                assert!(min <= max, "{}", s.name);
            }
            if let Kind::Choice(names) = s.kind {
                assert!(!names.is_empty());
                for n in names {
                    assert!(!n.contains(['|', ',', '=', ' ']), "{n}");
                }
            }
        }
    }

    #[test]
    fn every_default_parses_under_its_own_kind_and_prints_back() {
        for s in &TABLE {
            match s.default {
                DefaultValue::Is(d) => {
                    let v = s.kind.parse(d).unwrap_or_else(|| panic!("{}={d}", s.name));
                    assert_eq!(
                        v.to_string(),
                        d,
                        "{}: default not in canonical form",
                        s.name
                    );
                    // It also parses as a given parameter.
                    let text = format!("{}={d}", s.name);
                    let p = parse(&text).unwrap();
                    assert_eq!(p.get(s.key), Some(v));
                    assert_eq!(Parsed::EMPTY.get(s.key), Some(v));
                }
                DefaultValue::Unset(what) => {
                    assert!(!what.is_empty());
                    assert_eq!(Parsed::EMPTY.get(s.key), None);
                }
            }
        }
    }

    #[test]
    fn the_kernels_keys_and_ranges() {
        // Carried over from the kernel's former table; ranges are the ones
        // pagesync enforces (MAX_TABLE_BITS = 16, DEFAULT_BOOKMARK_BATCH = 64).
        let names: Vec<&str> = TABLE.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "mode",
                "filter",
                "seed",
                "loglevel",
                "fail",
                "crash",
                "hz",
                "pcp",
                "ap_skip",
                "bits",
                "handoff",
                "unfairness",
                "bookmarks",
                "bookmark_batch",
                "killable_fix",
                "gup",
                "bug",
                "jitter",
                "jitter_rate",
                "torture_threads",
                "torture_pages",
                "torture_ms",
                "gup_rounds",
                "litmus_trials",
                "ramdisk",
                "blk_persist",
                "lockup_ms",
                "walk_waiters",
                "bench_rounds"
            ]
        );
        let range = |k: Key| match k.spec().kind {
            Kind::UInt { min, max } => (min, max),
            other => panic!("{other:?}"),
        };
        assert_eq!(range(Key::Bits), (0, 16));
        assert_eq!(range(Key::Hz), (10, 1000));
        assert_eq!(range(Key::Unfairness), (0, u32::MAX as u64));
        assert_eq!(range(Key::BookmarkBatch), (1, 1_000_000));
        assert_eq!(range(Key::TortureMs), (100, 600_000));
        let p = Parsed::EMPTY;
        assert_eq!(p.uint(Key::Bits), Some(8));
        assert_eq!(p.uint(Key::Unfairness), Some(5));
        assert_eq!(p.uint(Key::BookmarkBatch), Some(64));
        assert!(p.flag(Key::Handoff) && p.flag(Key::KillableFix) && !p.flag(Key::Bookmarks));
        assert_eq!(p.choice(Key::Bug), "none");
        assert_eq!(p.choice(Key::Mode), "test");
        assert_eq!(p.uint(Key::TortureMs), None);
        for k in [Key::TortureThreads, Key::TorturePages, Key::TortureMs] {
            assert_eq!(k.spec().scope, Some(TORTURE_SCOPE));
        }
    }

    #[test]
    fn parses_valid_strings() {
        let p = parse(
            "  mode=idle seed=0x10 filter=boot,params.* loglevel=debug\tfail=yes crash=panic\n",
        )
        .unwrap();
        assert_eq!(p.choice(Key::Mode), "idle");
        assert_eq!(p.uint(Key::Seed), Some(16));
        assert_eq!(p.globs(Key::Filter), Some("boot,params.*"));
        assert_eq!(p.choice(Key::Loglevel), "debug");
        assert!(p.flag(Key::Fail));
        assert_eq!(p.raw(Key::Fail), Some("yes"));
        assert_eq!(p.given(Key::Hz), None);
        assert_eq!(p.uint(Key::Hz), Some(100));
        let keys: Vec<Key> = p.explicit().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                Key::Mode,
                Key::Filter,
                Key::Seed,
                Key::Loglevel,
                Key::Fail,
                Key::Crash
            ]
        );
        assert_eq!(parse(""), Ok(Parsed::EMPTY));
        assert_eq!(parse("   \n "), Ok(Parsed::EMPTY));
        let p = parse(
            "seed=18446744073709551615 hz=10 bits=16 unfairness=4294967295 bug=clear-after-wake",
        )
        .unwrap();
        assert_eq!(p.uint(Key::Seed), Some(u64::MAX));
        assert_eq!(p.uint(Key::Unfairness), Some(u32::MAX as u64));
        assert_eq!(p.choice(Key::Bug), "clear-after-wake");
    }

    #[test]
    fn one_boolean_syntax_for_every_boolean_key() {
        let bools: Vec<Key> = Key::ALL
            .into_iter()
            .filter(|k| k.spec().kind == Kind::Bool)
            .collect();
        assert!(bools.len() >= 5, "{bools:?}");
        for k in bools {
            for (words, want) in [(BOOL_TRUE, true), (BOOL_FALSE, false)] {
                for w in words {
                    let text = format!("{k}={w}");
                    let p = parse(&text).unwrap();
                    assert_eq!(p.flag(k), want, "{text}");
                    assert_eq!(
                        p.get(k).unwrap().to_string(),
                        if want { "on" } else { "off" }
                    );
                }
            }
            for w in ["2", "On", "maybe", "", "y"] {
                let text = format!("{k}={w}");
                assert_eq!(
                    parse(&text),
                    Err(ParamError::BadValue { key: k, value: w }),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn integers() {
        fn hz(v: &str) -> Option<Value<'_>> {
            Kind::UInt { min: 10, max: 1000 }.parse(v)
        }
        assert_eq!(hz("10"), Some(Value::UInt(10)));
        assert_eq!(hz("1000"), Some(Value::UInt(1000)));
        assert_eq!(hz("0x3e8"), Some(Value::UInt(1000)));
        for bad in [
            "9", "1001", "", "+100", "-1", " 100", "1e2", "0x", "0xg", "100hz",
        ] {
            assert_eq!(hz(bad), None, "{bad}");
        }
        let any = Kind::UInt {
            min: 0,
            max: u64::MAX,
        };
        assert_eq!(any.parse("18446744073709551616"), None);
        assert_eq!(any.parse("0xffffffffffffffff"), Some(Value::UInt(u64::MAX)));
    }

    #[test]
    fn each_error_kind() {
        assert_eq!(
            parse("seed"),
            Err(ParamError::MissingEquals { word: "seed" })
        );
        assert_eq!(
            ParamError::MissingEquals { word: "seed" }.key(),
            Some(Key::Seed)
        );
        assert_eq!(
            parse("fial=1"),
            Err(ParamError::UnknownKey {
                key: "fial",
                closest: Some(Key::Fail)
            })
        );
        assert_eq!(
            parse("bogus=1"),
            Err(ParamError::UnknownKey {
                key: "bogus",
                closest: None
            })
        );
        assert_eq!(
            parse("fail=1 fail=0"),
            Err(ParamError::Duplicate { key: Key::Fail })
        );
        assert_eq!(
            parse("hz=5"),
            Err(ParamError::BadValue {
                key: Key::Hz,
                value: "5"
            })
        );
        assert_eq!(
            parse("mode=fast"),
            Err(ParamError::BadValue {
                key: Key::Mode,
                value: "fast"
            })
        );
        assert_eq!(
            parse("filter=a,,b"),
            Err(ParamError::BadValue {
                key: Key::Filter,
                value: "a,,b"
            })
        );
        assert_eq!(
            parse("filter="),
            Err(ParamError::BadValue {
                key: Key::Filter,
                value: ""
            })
        );
        assert_eq!(
            parse("bug=nope"),
            Err(ParamError::BadValue {
                key: Key::Bug,
                value: "nope"
            })
        );
        assert_eq!(
            parse("bits=17"),
            Err(ParamError::BadValue {
                key: Key::Bits,
                value: "17"
            })
        );
        assert_eq!(
            parse("bookmark_batch=0"),
            Err(ParamError::BadValue {
                key: Key::BookmarkBatch,
                value: "0"
            })
        );
        // The first error wins.
        assert_eq!(
            parse("hz=1 nope=2"),
            Err(ParamError::BadValue {
                key: Key::Hz,
                value: "1"
            })
        );
        let long = "seed=1 ".repeat(PARAMS_MAX_LEN / 7 + 1);
        assert_eq!(parse(&long), Err(ParamError::TooLong { len: long.len() }));
        assert_eq!(parse_bytes(b"seed=\xff"), Err(ParamError::NotUtf8));
        assert_eq!(parse_bytes(b"seed=2").unwrap().uint(Key::Seed), Some(2));
    }

    #[test]
    fn messages_name_the_key_and_what_it_takes() {
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            msg("seed=banana"),
            "bad value 'banana' for 'seed': expected a 64-bit unsigned integer (decimal or 0x hex)"
        );
        assert_eq!(
            msg("hz=5"),
            "bad value '5' for 'hz': expected an integer in 10..=1000 (decimal or 0x hex)"
        );
        assert_eq!(
            msg("pcp=maybe"),
            "bad value 'maybe' for 'pcp': expected on or off (also accepted: 1/0 true/false yes/no)"
        );
        assert_eq!(
            msg("mode=x"),
            "bad value 'x' for 'mode': expected one of test, bench, idle"
        );
        assert_eq!(
            msg("fial=1"),
            "unknown parameter 'fial'; did you mean 'fail'?"
        );
        assert_eq!(msg("bogus=1"), "unknown parameter 'bogus'");
        assert_eq!(msg("loglevel"), "'loglevel' is not of the form key=value");
        assert_eq!(msg("fail=1 fail=0"), "parameter 'fail' given twice");
        let help = Key::Hz.help().to_string();
        assert_eq!(
            help,
            "hz=10..=1000 (default 100): local APIC timer tick rate on every CPU, in Hz"
        );
        assert!(
            Key::TortureMs
                .help()
                .to_string()
                .ends_with("[read only by pagelock.torture*, pagecache.torture*, gup.torture_dma]")
        );
        assert!(
            Key::ApSkip
                .help()
                .to_string()
                .contains("(default: start every CPU)")
        );
    }

    #[test]
    fn closest_keys() {
        assert_eq!(Key::closest("fial"), Some(Key::Fail));
        assert_eq!(Key::closest("HZ"), Some(Key::Hz));
        assert_eq!(Key::closest("bookmark"), Some(Key::Bookmarks));
        assert_eq!(Key::closest("torture_m"), Some(Key::TortureMs));
        assert_eq!(Key::closest("sead"), Some(Key::Seed));
        assert_eq!(Key::closest("table_bits"), None);
        assert_eq!(Key::closest("x"), None);
        assert_eq!(Key::closest(&"y".repeat(100)), None);
        assert_eq!(edit_distance(b"fial", b"fail"), Some(1));
        assert_eq!(edit_distance(b"", b"abc"), Some(3));
        assert_eq!(edit_distance(b"kitten", b"sitting"), Some(3));
    }

    #[test]
    fn parameters_without_effect() {
        let p = parse("torture_ms=120000 seed=3 fail=1 crash=panic").unwrap();
        // Only pagelock.torture_killable selected: every scoped key unread.
        let reads = |g: &str| crate::glob::selects(g, "pagelock", "torture_killable");
        let unread: Vec<(Key, &str)> = p.without_effect(reads).collect();
        assert_eq!(unread, [(Key::Fail, "1"), (Key::Crash, "panic")]);
        let none: Vec<(Key, &str)> = p.without_effect(|_| false).collect();
        assert_eq!(none.len(), 3);
        let all: Vec<(Key, &str)> = p.without_effect(|_| true).collect();
        assert!(all.is_empty());
        let note = NoEffect {
            key: Key::TortureMs,
            value: "120000",
            why: Why::NoSelectedCase,
        };
        assert_eq!(
            note.to_string(),
            "# pcs: note: parameter torture_ms=120000 has no effect: it is read only by pagelock.torture*, pagecache.torture*, gup.torture_dma, and no selected case matches"
        );
        let note = NoEffect {
            why: Why::NoTestCases("bench"),
            ..note
        };
        assert!(
            note.to_string()
                .ends_with(", and mode=bench runs no test cases")
        );
    }

    #[test]
    fn effective_lists_values_in_use() {
        let p = parse("pcp=0 torture_ms=500").unwrap();
        let e = p.effective().to_string();
        assert!(
            e.starts_with("mode=test seed=1 loglevel=info fail=off crash=none hz=100 pcp=off "),
            "{e}"
        );
        assert!(
            e.ends_with(
                "bug=none jitter=on jitter_rate=4 torture_ms=500 gup_rounds=5000 litmus_trials=1000000 ramdisk=16 blk_persist=off lockup_ms=5000 walk_waiters=1000 bench_rounds=5"
            ),
            "{e}"
        );
        assert!(!e.contains("filter") && !e.contains("ap_skip"), "{e}");
    }

    #[test]
    fn tables() {
        let text = TextTable.to_string();
        assert_eq!(text.lines().count(), Key::COUNT);
        for k in Key::ALL {
            assert!(text.contains(k.spec().help));
        }
        let md = MarkdownTable.to_string();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), Key::COUNT + 2);
        assert!(lines.contains(&"| `pcp` | `on\\|off` | `on` | per-CPU caches of free single frames in the frame allocator |"));
        assert!(lines.contains(&"| `torture_ms` | `100..=600000` | unset: each case's own | length of a torture run, in milliseconds; read only by `pagelock.torture*`, `pagecache.torture*`, `gup.torture_dma` |"));
        for l in &lines[2..] {
            // Four columns: five unescaped pipes.
            assert_eq!(l.replace("\\|", "").matches('|').count(), 5, "{l}");
        }
    }
}
