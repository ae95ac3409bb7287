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
//!
//! Where each part lives: the kinds of values and their syntax
//! ([`kind`]), the table of keys ([`table`]), the parser and what it
//! returns ([`parse`]), the "did you mean" hints ([`suggest`]), and the
//! table printed for people ([`render`]).

mod choices;
mod kind;
mod parse;
mod render;
mod suggest;
mod table;
#[cfg(test)]
mod tests;

pub use choices::{
    BUG_CHOICES, Crash, GUP_CHOICES, LogLevel, Mode, PROTOCOL_CHOICES, Persist, bug, pin_scheme,
    protocol,
};
pub use kind::{BOOL_FALSE, BOOL_TRUE, Kind, Value};
pub use parse::{NoEffect, ParamError, Parsed, Why, parse, parse_bytes};
pub use render::{Help, MarkdownTable, ProtocolTable, TextTable};
pub use table::{DefaultValue, Key, Spec, TABLE};
