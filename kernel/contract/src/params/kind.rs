//! The kinds of values a key accepts, and their syntax.

use core::fmt::{self, Write};

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
