//! The parser: a parameter string to a [`Parsed`] or a [`ParamError`].

use core::fmt::{self, Write};

use super::{DefaultValue, Key, Value, render::Scope};
use crate::{PARAMS_MAX_LEN, marker};

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
            DefaultValue::Is(d) => Some(d),
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
