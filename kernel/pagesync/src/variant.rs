//! Protocol variants: the knobs a [`crate::PageWaitTable`] is built with.
//!
//! Mental model: one [`Config`] value selects which historical version of
//! the Linux protocol runs, and optionally one deliberately broken
//! mutation ([`Bug`]). The kernel fills it from boot parameters
//! ([`Config::set`]); tests build it directly. [`Config::default`] is the
//! correct, current protocol; a [`Bug`] is never on by default, and each one
//! is implemented as a small branch at the exact spot it mutates (search
//! for `Bug::` in `page_lock.rs` and `wait_table.rs`).

use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

/// Linux's `WAITQUEUE_WALK_BREAK_CNT`.
pub const DEFAULT_BOOKMARK_BATCH: u32 = 64;

/// How the page wait table behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// log2 of the number of hashed wait queues (0 = one queue). Default 8.
    pub table_bits: u32,
    /// true: the 5.9+ algorithm, where the wake function can hand the lock
    /// bit over to the waiter it wakes. false: the pre-5.9 loop (wake, then
    /// the woken waiter races for the bit outside the queue lock and
    /// re-queues at the tail if it loses).
    pub handoff: bool,
    /// How many times an exclusive waiter lets others steal the lock before
    /// it asks for a hand-off (`page_lock_unfairness`, default 5; 0 = strict
    /// FIFO hand-off). Only with `handoff`.
    pub unfairness: u32,
    /// Break long wake walks every `bookmark_batch` entries, dropping the
    /// queue lock in between (Linux 4.14–6.6).
    pub bookmarks: bool,
    /// Entries per walk chunk when `bookmarks` is on.
    pub bookmark_batch: u32,
    /// Fix the killable window: a killable exclusive waiter that was woken
    /// without a hand-off but leaves with [`crate::Interrupted`] passes the
    /// wake-up on. false = Linux-faithful (the window exists).
    pub killable_fix: bool,
    /// A known-bad mutation to run instead of the correct code.
    pub bug: Option<Bug>,
}

impl Config {
    /// The correct, current protocol (hand-off, unfairness 5, no
    /// bookmarks, killable fix on, 256 queues).
    pub const DEFAULT: Self = Self {
        table_bits: crate::wait_table::DEFAULT_TABLE_BITS,
        handoff: true,
        unfairness: 5,
        bookmarks: false,
        bookmark_batch: DEFAULT_BOOKMARK_BATCH,
        killable_fix: true,
        bug: None,
    };

    /// Linux 6.7+ as written (the killable window included).
    pub const LINUX_6_7: Self = Self {
        killable_fix: false,
        ..Self::DEFAULT
    };

    /// Linux 4.14–5.8: wake-then-race with bookmarks.
    pub const LINUX_5_8: Self = Self {
        handoff: false,
        bookmarks: true,
        killable_fix: false,
        ..Self::DEFAULT
    };

    /// Whether this configuration runs a known-bad mutation.
    pub fn is_known_bad(&self) -> bool {
        self.bug.is_some()
    }

    /// Sets one knob from a `key=value` boot parameter. Keys: `table_bits`,
    /// `handoff`, `unfairness`, `bookmarks`, `bookmark_batch`,
    /// `killable_fix`, `bug` (a [`Bug`] name or `none`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = || ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        };
        let num = |max: u32| {
            value
                .parse::<u32>()
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(bad)
        };
        let flag = || match value {
            "1" | "on" | "true" | "yes" => Ok(true),
            "0" | "off" | "false" | "no" => Ok(false),
            _ => Err(bad()),
        };
        match key {
            "table_bits" => self.table_bits = num(crate::wait_table::MAX_TABLE_BITS)?,
            "handoff" => self.handoff = flag()?,
            "unfairness" => self.unfairness = num(u32::MAX)?,
            "bookmarks" => self.bookmarks = flag()?,
            "bookmark_batch" => self.bookmark_batch = num(u32::MAX)?.max(1),
            "killable_fix" => self.killable_fix = flag()?,
            "bug" => {
                self.bug = match value {
                    "none" => None,
                    name => Some(name.parse().map_err(ConfigError::UnknownBug)?),
                }
            }
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A rejected [`Config::set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No such knob.
    UnknownKey(String),
    /// The value does not fit the knob.
    BadValue {
        /// The knob.
        key: String,
        /// What was given.
        value: String,
    },
    /// `bug=` named no known bug.
    UnknownBug(UnknownBug),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(k) => write!(f, "unknown pagesync parameter `{k}`"),
            Self::BadValue { key, value } => write!(f, "bad value `{value}` for `{key}`"),
            Self::UnknownBug(e) => e.fmt(f),
        }
    }
}

/// A known-bad protocol mutation, for proving that tests catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The exclusive waiter's test-and-set runs before it takes the queue
    /// lock, and it then queues without re-testing: the owner can unlock in
    /// between, see no PG_WAITERS, and wake nobody (lost wake-up).
    TasOutsideLock,
    /// `unlock_page` wakes first and clears PG_LOCKED afterwards, outside
    /// the queue lock, without re-reading PG_WAITERS (the ordering Linus
    /// rejected in the seed mail): the exclusive waiter is not woken because
    /// the bit is still set, and nobody wakes it after the clear.
    ClearAfterWake,
    /// The wake walk clears PG_WAITERS even though entries for the page
    /// remain, so the next unlock skips the wake-up.
    ClearWaitersEarly,
    /// `unlock_page` clears PG_LOCKED with a plain load + store instead of
    /// an atomic RMW, erasing a PG_WAITERS set in between (the
    /// `__ClearPageDirty` bug on THP split).
    NonAtomicFlags,
}

impl Bug {
    /// Every known-bad variant.
    pub const ALL: [Bug; 4] = [
        Bug::TasOutsideLock,
        Bug::ClearAfterWake,
        Bug::ClearWaitersEarly,
        Bug::NonAtomicFlags,
    ];

    /// The boot-parameter / test name.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::TasOutsideLock => "tas-outside-lock",
            Bug::ClearAfterWake => "clear-after-wake",
            Bug::ClearWaitersEarly => "clear-waiters-early",
            Bug::NonAtomicFlags => "non-atomic-flags",
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

/// [`Bug::from_str`] got a name it does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBug(pub String);

impl fmt::Display for UnknownBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown pagesync bug variant `{}` (known:", self.0)?;
        for bug in Bug::ALL {
            write!(f, " {bug}")?;
        }
        f.write_str(")")
    }
}

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn bug_names_round_trip() {
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
            assert!(bug.is_known_bad());
        }
        let err = "tas-inside-lock".parse::<Bug>().unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.contains("tas-inside-lock") && msg.contains("non-atomic-flags"),
            "{msg}"
        );
    }

    #[test]
    fn default_is_correct() {
        let c = Config::default();
        assert!(!c.is_known_bad());
        assert!(c.handoff && c.killable_fix && !c.bookmarks);
        assert_eq!((c.unfairness, c.table_bits), (5, 8));
    }

    #[test]
    fn boot_params() {
        let mut c = Config::default();
        c.set("unfairness", "0").unwrap();
        c.set("handoff", "off").unwrap();
        c.set("table_bits", "0").unwrap();
        c.set("bug", "clear-after-wake").unwrap();
        assert_eq!(c.bug, Some(Bug::ClearAfterWake));
        assert!(c.is_known_bad());
        c.set("bug", "none").unwrap();
        assert_eq!(
            c,
            Config {
                unfairness: 0,
                handoff: false,
                table_bits: 0,
                ..Config::DEFAULT
            }
        );
        assert!(matches!(
            c.set("bug", "nope"),
            Err(ConfigError::UnknownBug(_))
        ));
        assert!(matches!(
            c.set("colour", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            c.set("table_bits", "99"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            c.set("handoff", "maybe"),
            Err(ConfigError::BadValue { .. })
        ));
    }
}
