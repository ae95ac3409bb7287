//! The crash-consistency check of `sync` (`pagecache.crash_consistency`),
//! as the kernel and the host agree on it.
//!
//! Mental model: writers write whole versions ([`crate::torture`]) of the
//! pages of one file on the virtio disk through the page cache, while one
//! syncer calls `sync` again and again. Before sync `k` starts, the
//! syncer notes, per page, the generation of the last write that had
//! returned (what sync `k` must make durable: that version or a newer
//! complete one); once sync `k` returns, it prints those generations
//! ([`Line::Covered`]) and writes a *record* block whose version names `k`
//! ([`RECORD_FILE`], index `k`). The disk sits behind QEMU's `blklogwrites`
//! driver, which logs every write and flush in dm-log-writes format, in
//! the order the device completed them.
//!
//! The record places "sync `k` had returned" in the log: its write comes
//! after everything sync `k` did, its flush included. The host replays the
//! log onto the starting image (zeros) and checks crash states: at a point
//! `P` of the log, the durable state is every write before the last flush
//! before `P` (writes after it may or may not have reached the medium, so
//! the check also applies random subsets of them), and every sync whose
//! record is before `P` must be covered by it: each page holds its covered
//! version or a newer complete one, never an older or torn one. Without
//! the flush (`bug=sync-no-flush`) nothing becomes durable and the check
//! fails at the first record.

use core::fmt;

use crate::marker::SYNC;

/// The check's file system starts here on the disk: a header block, one
/// file of [`FILE_PAGES`] pages; the record blocks follow it.
pub const FIRST_BLOCK: u64 = 3328;
/// Pages of the check's one file.
pub const FILE_PAGES: u64 = 64;
/// The first of the [`RECORDS`] record blocks (record `k` goes to block
/// `RECORD_BLOCK + k % RECORDS`).
pub const RECORD_BLOCK: u64 = FIRST_BLOCK + 1 + FILE_PAGES;
/// Record blocks.
pub const RECORDS: u64 = 64;
/// The `file` field of a record's version (no file of the check has it).
pub const RECORD_FILE: u64 = u64::MAX;

// After both tortures' regions, inside a 16 MiB image (4096 blocks).
const _: () =
    assert!(FIRST_BLOCK >= crate::disk::TORTURE_DMA_FIRST_BLOCK + crate::disk::TORTURE_BLOCKS);
const _: () = assert!(RECORD_BLOCK + RECORDS <= (16 << 20) / crate::disk::BLOCK_SIZE as u64);

/// The disk block of page `index` of the check's file.
pub const fn page_block(index: u64) -> u64 {
    FIRST_BLOCK + 1 + index
}

/// A console line of the check (a KTAP diagnostic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `# SYNC begin run=R pages=N`: the check starts, its versions carry
    /// run `R`, it writes pages `0..N` of its file.
    Begin { run: u64, pages: u64 },
    /// `# SYNC covered k=K gens=G0,G1,...`: sync `K` returned; page `i`
    /// must hold generation `Gi` or newer (0: nothing required yet).
    Covered { k: u64, gens: &'a str },
    /// `# SYNC end syncs=N`: the check wrote `N` syncs' records.
    End { syncs: u64 },
}

impl Line<'_> {
    /// The generations of a [`Line::Covered`] line.
    pub fn gens(gens: &str) -> impl Iterator<Item = Option<u64>> + '_ {
        gens.split(',').map(|g| g.parse().ok())
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Line::Begin { run, pages } => write!(f, "{SYNC}begin run={run:#x} pages={pages}"),
            Line::Covered { k, gens } => write!(f, "{SYNC}covered k={k} gens={gens}"),
            Line::End { syncs } => write!(f, "{SYNC}end syncs={syncs}"),
        }
    }
}

fn field<'a>(rest: &'a str, key: &str) -> Option<&'a str> {
    rest.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn num(rest: &str, key: &str) -> Option<u64> {
    let v = field(rest, key)?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl<'a> Line<'a> {
    /// Reads a line printed by `Display` (indentation allowed); `None` for
    /// anything else.
    pub fn parse(line: &'a str) -> Option<Line<'a>> {
        let rest = line.trim().strip_prefix(SYNC)?;
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(match kind {
            "begin" => Line::Begin {
                run: num(rest, "run")?,
                pages: num(rest, "pages")?,
            },
            "covered" => Line::Covered {
                k: num(rest, "k")?,
                gens: field(rest, "gens")?,
            },
            "end" => Line::End {
                syncs: num(rest, "syncs")?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::ToString};

    #[test]
    fn lines_round_trip() {
        for l in [
            Line::Begin {
                run: 0xabc,
                pages: 32,
            },
            Line::Covered {
                k: 3,
                gens: "0,4,17",
            },
            Line::End { syncs: 30 },
        ] {
            let s = l.to_string();
            assert_eq!(Line::parse(&format!("    {s}")), Some(l));
        }
        let gens: std::vec::Vec<_> = Line::gens("0,4,17").collect();
        assert_eq!(gens, [Some(0), Some(4), Some(17)]);
    }
}
