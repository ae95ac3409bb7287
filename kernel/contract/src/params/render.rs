//! The table for people: one key's help, the whole table as text and as
//! Markdown (the README's).

use core::fmt::{self, Write};

use super::{DefaultValue, Key, TABLE};

/// A key's one-line help (see [`Key::help`]).
#[derive(Clone, Copy, Debug)]
pub struct Help(pub Key);

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = self.0.spec();
        write!(f, "{}={} ", s.key.name(), s.kind.syntax())?;
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
pub(super) struct Scope(pub(super) &'static [&'static str]);

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
            write!(f, "| `{}` | `", s.key.name())?;
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

/// The registered page-lock protocols (`protocol=`, from
/// [`pagesync::Protocol`]) and pin schemes (`gup=`, from
/// [`pagesync::PinScheme`]) as two Markdown tables (the README's).
pub struct ProtocolTable;

impl fmt::Display for ProtocolTable {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "| `protocol=` | known-bad | what it is |")?;
        writeln!(f, "|---|---|---|")?;
        for (i, p) in pagesync::Protocol::ALL.into_iter().enumerate() {
            write!(f, "| `{}`", p.name())?;
            if i == 0 {
                f.write_str(" (default)")?;
            }
            f.write_str(if p.is_known_bad() {
                " | yes | "
            } else {
                " | no | "
            })?;
            write!(PipeEscape(f), "{}", p.summary())?;
            writeln!(f, " |")?;
        }
        writeln!(f)?;
        writeln!(f, "| `gup=` | what it is |")?;
        writeln!(f, "|---|---|")?;
        for (i, s) in pagesync::PinScheme::ALL.into_iter().enumerate() {
            write!(f, "| `{}`", s.name())?;
            if i == 0 {
                f.write_str(" (default)")?;
            }
            f.write_str(" | ")?;
            write!(PipeEscape(f), "{}", s.summary())?;
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
