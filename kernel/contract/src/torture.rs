//! The host-verified writeback torture: the pages its writers write, the
//! manifest the kernel prints at the end, and the check of a disk block
//! against it, written once for the kernel (which writes the pages and
//! checks its own disk) and the host (which reads the image file).
//!
//! Mental model: every page of the torture is a *version* of itself: a
//! 64-byte header (which run, file and page it is, its generation, who
//! wrote it, a checksum) and a body derived from the header's fields. A
//! version is written whole, by a CPU writer through the page cache or by
//! a DMA engine into a pinned page. The checksum covers everything but
//! itself, so a block that mixes two versions (a *torn* write: the device
//! took the page while a writer was changing it) does not match its own
//! checksum, whichever half the header came from.
//!
//! ```text
//! word 0      MAGIC
//! word 1      run        (one boot's torture; stale blocks of other runs do not match)
//! word 2      file
//! word 3      index      (page of the file)
//! word 4      generation (1, 2, ... per page)
//! word 5      writer     (CPU writer k, or DMA_WRITER + engine e)
//! word 6      checksum   (of words 0..=5 and 7..512)
//! word 7      0
//! words 8..   body_word(run, file, index, generation, writer, word)
//! ```
//!
//! The manifest lists, per page, the version that the kernel's *last*
//! write of the page carried (captured under the page lock when that
//! writeback started; see `kernel/suites/src/pagecache/disk_torture.rs`).
//! Each line starts with [`crate::marker::MANIFEST`]:
//!
//! ```text
//! # MANIFEST begin case=gup.torture_dma run=0x1f.. first_block=2688 files=4 file_pages=128 pages=64 pinned=8
//! # MANIFEST page file=0 index=3 gen=17 sum=0x0123456789abcdef
//! # MANIFEST end pages=64 retries=2
//! ```
//!
//! [`check_block`] then says what a disk block holds compared with its
//! manifest entry: the same version, or a torn, missing, foreign, older
//! (a lost update) or newer (written after the manifest's version, which
//! with stable pages cannot happen) one.

use core::fmt;

use crate::{disk::BLOCK_SIZE, marker::MANIFEST};

/// Word 0 of every torture page.
pub const MAGIC: u64 = u64::from_le_bytes(*b"PCSTORT\x01");
/// Writer ids from here on are DMA engines (`DMA_WRITER + e`).
pub const DMA_WRITER: u64 = 1 << 32;
/// Bytes of the header; the body follows.
pub const HEADER_BYTES: usize = 64;
const WORDS: usize = BLOCK_SIZE / 8;
const SUM_WORD: usize = 6;
const BODY_WORD: usize = HEADER_BYTES / 8;

/// A page's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub run: u64,
    pub file: u64,
    pub index: u64,
    pub generation: u64,
    pub writer: u64,
    /// As stored (word 6); [`checksum`] recomputes it.
    pub checksum: u64,
}

/// Body word `word` (8..512) of a version: a splitmix64 finaliser over the
/// header's fields, so that bodies of different versions differ in every
/// word with overwhelming probability.
pub fn body_word(run: u64, file: u64, index: u64, generation: u64, writer: u64, word: u64) -> u64 {
    let mut z = run
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(file.wrapping_mul(0xd6e8_feb8_6659_fd93))
        .wrapping_add(index.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(generation.wrapping_mul(0x94d0_49bb_1331_11eb))
        .wrapping_add(writer.wrapping_mul(0xa076_1d64_78bd_642f))
        .wrapping_add(word.wrapping_mul(0xe703_7ed1_a0b4_28db));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn word(page: &[u8], w: usize) -> u64 {
    u64::from_le_bytes(page[8 * w..8 * w + 8].try_into().expect("8 bytes"))
}

/// The checksum of a page (its first [`BLOCK_SIZE`] bytes): every 64-bit
/// word but the checksum word, folded with a multiply-rotate mix.
///
/// # Panics
///
/// If `page` is shorter than a block.
pub fn checksum(page: &[u8]) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for w in (0..WORDS).filter(|&w| w != SUM_WORD) {
        h = (h ^ word(page, w))
            .wrapping_mul(0xff51_afd7_ed55_8ccd)
            .rotate_left(29)
            ^ w as u64;
    }
    h
}

/// Writes the version (`run`, `file`, `index`, `generation`, `writer`)
/// into `page`: header, body, checksum. Returns its checksum.
pub fn fill(
    page: &mut [u8; BLOCK_SIZE],
    run: u64,
    file: u64,
    index: u64,
    generation: u64,
    writer: u64,
) -> u64 {
    let head = [MAGIC, run, file, index, generation, writer, 0, 0];
    for (w, chunk) in page.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        let v = if w < BODY_WORD {
            head[w]
        } else {
            body_word(run, file, index, generation, writer, w as u64)
        };
        *chunk = v.to_le_bytes();
    }
    let sum = checksum(page);
    page[8 * SUM_WORD..8 * SUM_WORD + 8].copy_from_slice(&sum.to_le_bytes());
    sum
}

/// The header of `page` (at least [`HEADER_BYTES`] long), or `None` if it
/// carries no [`MAGIC`] (never written by a torture: zeros, or other data).
pub fn header(page: &[u8]) -> Option<Header> {
    (word(page, 0) == MAGIC).then(|| Header {
        run: word(page, 1),
        file: word(page, 2),
        index: word(page, 3),
        generation: word(page, 4),
        writer: word(page, 5),
        checksum: word(page, SUM_WORD),
    })
}

/// One page of the manifest: the version its last write carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub file: u64,
    pub index: u64,
    pub generation: u64,
    pub checksum: u64,
}

/// What a disk block holds compared with its manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Exactly the manifest's version.
    Same,
    /// No torture page at all (zeros or other data): the write is missing.
    Missing,
    /// A page whose checksum does not match its contents: torn.
    Torn { generation: u64, want: u64 },
    /// A whole page of another run, file or page.
    Foreign { run: u64, file: u64, index: u64 },
    /// An older generation than the manifest's: a lost update.
    Older { generation: u64, want: u64 },
    /// A newer generation than the manifest's: written after the version
    /// the kernel said was last.
    Newer { generation: u64, want: u64 },
    /// The manifest's generation, but not its checksum (another version
    /// with the same generation number: the manifest is wrong).
    Differs { checksum: u64, want: u64 },
}

impl Finding {
    /// A short name, for counts.
    pub const fn name(&self) -> &'static str {
        match self {
            Finding::Same => "same",
            Finding::Missing => "missing",
            Finding::Torn { .. } => "torn",
            Finding::Foreign { .. } => "foreign",
            Finding::Older { .. } => "older",
            Finding::Newer { .. } => "newer",
            Finding::Differs { .. } => "differs",
        }
    }
}

/// Checks a disk block (at least [`BLOCK_SIZE`] bytes) against the
/// manifest's entry for it, in run `run`.
pub fn check_block(block: &[u8], want: &Entry, run: u64) -> Finding {
    let Some(h) = header(block) else {
        return Finding::Missing;
    };
    if checksum(block) != h.checksum {
        return Finding::Torn {
            generation: h.generation,
            want: want.generation,
        };
    }
    if h.run != run || h.file != want.file || h.index != want.index {
        return Finding::Foreign {
            run: h.run,
            file: h.file,
            index: h.index,
        };
    }
    match h.generation.cmp(&want.generation) {
        core::cmp::Ordering::Less => Finding::Older {
            generation: h.generation,
            want: want.generation,
        },
        core::cmp::Ordering::Greater => Finding::Newer {
            generation: h.generation,
            want: want.generation,
        },
        core::cmp::Ordering::Equal if h.checksum != want.checksum => Finding::Differs {
            checksum: h.checksum,
            want: want.checksum,
        },
        core::cmp::Ordering::Equal => Finding::Same,
    }
}

/// One manifest line (module docs). The kernel prints it with `Display`;
/// the host reads it back with [`Line::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Opens the manifest of one torture run.
    Begin {
        /// `suite.case`.
        case: &'a str,
        run: u64,
        /// Where its file system starts on the disk, and its shape.
        first_block: u64,
        files: u64,
        file_pages: u64,
        /// Entries that follow.
        pages: u64,
        /// Pages 0..pinned of file 0 were pinned for DMA (0: none).
        pinned: u64,
    },
    Page(Entry),
    /// Closes it; `retries`: final writes that failed and were retried.
    End {
        pages: u64,
        retries: u64,
    },
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Line::Begin {
                case,
                run,
                first_block,
                files,
                file_pages,
                pages,
                pinned,
            } => write!(
                f,
                "{MANIFEST}begin case={case} run={run:#x} first_block={first_block} files={files} file_pages={file_pages} pages={pages} pinned={pinned}"
            ),
            Line::Page(e) => write!(
                f,
                "{MANIFEST}page file={} index={} gen={} sum={:#018x}",
                e.file, e.index, e.generation, e.checksum
            ),
            Line::End { pages, retries } => {
                write!(f, "{MANIFEST}end pages={pages} retries={retries}")
            }
        }
    }
}

/// The value of `key=` among the space-separated words of `rest`.
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
    /// Reads a line printed by `Display` (surrounding whitespace allowed,
    /// as the kernel indents case diagnostics); `None` for anything else.
    pub fn parse(line: &'a str) -> Option<Line<'a>> {
        let rest = line.trim().strip_prefix(MANIFEST)?;
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(match kind {
            "begin" => Line::Begin {
                case: field(rest, "case")?,
                run: num(rest, "run")?,
                first_block: num(rest, "first_block")?,
                files: num(rest, "files")?,
                file_pages: num(rest, "file_pages")?,
                pages: num(rest, "pages")?,
                pinned: num(rest, "pinned")?,
            },
            "page" => Line::Page(Entry {
                file: num(rest, "file")?,
                index: num(rest, "index")?,
                generation: num(rest, "gen")?,
                checksum: num(rest, "sum")?,
            }),
            "end" => Line::End {
                pages: num(rest, "pages")?,
                retries: num(rest, "retries")?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn page(generation: u64) -> [u8; BLOCK_SIZE] {
        let mut p = [0u8; BLOCK_SIZE];
        fill(&mut p, 7, 1, 3, generation, 2);
        p
    }

    fn entry(generation: u64) -> Entry {
        Entry {
            file: 1,
            index: 3,
            generation,
            checksum: checksum(&page(generation)),
        }
    }

    #[test]
    fn every_kind_of_block_is_told_apart() {
        let (p5, e5) = (page(5), entry(5));
        assert_eq!(header(&p5).unwrap().checksum, checksum(&p5));
        assert_eq!(check_block(&p5, &e5, 7), Finding::Same);
        assert_eq!(check_block(&[0u8; BLOCK_SIZE], &e5, 7), Finding::Missing);
        assert_eq!(
            check_block(&page(4), &e5, 7),
            Finding::Older {
                generation: 4,
                want: 5
            }
        );
        assert_eq!(
            check_block(&page(6), &e5, 7),
            Finding::Newer {
                generation: 6,
                want: 5
            }
        );
        assert!(matches!(
            check_block(&p5, &e5, 8),
            Finding::Foreign { run: 7, .. }
        ));
        // Torn both ways: new header over an old body, old over new.
        let (p6, mut torn) = (page(6), page(5));
        torn[..HEADER_BYTES].copy_from_slice(&p6[..HEADER_BYTES]);
        assert_eq!(
            check_block(&torn, &e5, 7),
            Finding::Torn {
                generation: 6,
                want: 5
            }
        );
        let mut torn = page(6);
        torn[..2048].copy_from_slice(&p5[..2048]);
        assert!(matches!(check_block(&torn, &e5, 7), Finding::Torn { .. }));
        // Same generation, another version (another writer).
        let mut other = [0u8; BLOCK_SIZE];
        fill(&mut other, 7, 1, 3, 5, DMA_WRITER);
        assert!(matches!(
            check_block(&other, &e5, 7),
            Finding::Differs { .. }
        ));
    }

    #[test]
    fn lines_round_trip() {
        let lines = [
            Line::Begin {
                case: "pagecache.torture_disk",
                run: 0xdead_beef,
                first_block: 2048,
                files: 4,
                file_pages: 128,
                pages: 64,
                pinned: 8,
            },
            Line::Page(entry(9)),
            Line::End {
                pages: 64,
                retries: 2,
            },
        ];
        for l in lines {
            let s = l.to_string();
            assert!(s.starts_with(MANIFEST), "{s}");
            assert_eq!(Line::parse(&std::format!("    {s}\r")), Some(l), "{s}");
        }
        assert_eq!(
            lines[1].to_string(),
            std::format!(
                "# MANIFEST page file=1 index=3 gen=9 sum={:#018x}",
                entry(9).checksum
            )
        );
        assert_eq!(Line::parse("# MANIFEST page file=1 index=3 gen=9"), None);
        assert_eq!(Line::parse("# MANIFEST what"), None);
        assert_eq!(Line::parse("# pcs: end of run"), None);
    }
}
