//! The on-disk layout ("pcsfs"): a header block, then fixed-size files.
//!
//! ```text
//! block 0                  header: magic, version, blocks per file, file count
//! blocks 1 ..= n           file 0
//! blocks n+1 ..= 2n        file 1
//! ...
//! ```
//!
//! A file is a range of blocks; page `i` of file `f` is block
//! `1 + f * n + i`. There is no allocation, no directory and no metadata
//! beyond the header: the point is the page cache above it, not a file
//! system. A device whose block 0 does not carry the magic is formatted
//! (header written; file contents are whatever the device holds, zeros
//! for a fresh image).

use crate::block::BLOCK_SIZE;

/// The header's first eight bytes.
pub const MAGIC: [u8; 8] = *b"PCSFS\0\0\x01";

/// Where the files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Blocks (pages) per file.
    pub file_blocks: u64,
    /// Number of files.
    pub files: u64,
}

/// Why a layout was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Not even one file fits (device blocks, blocks per file).
    TooSmall { blocks: u64, file_blocks: u64 },
    /// The header says something impossible for this device.
    BadHeader,
}

impl Layout {
    /// The layout for a device of `blocks` blocks with files of
    /// `file_blocks` blocks.
    pub fn new(blocks: u64, file_blocks: u64) -> Result<Layout, LayoutError> {
        let files = blocks
            .saturating_sub(1)
            .checked_div(file_blocks)
            .unwrap_or(0);
        if files == 0 {
            return Err(LayoutError::TooSmall {
                blocks,
                file_blocks,
            });
        }
        Ok(Layout { file_blocks, files })
    }

    /// The device block holding page `index` of file `file`.
    pub fn block(&self, file: u64, index: u64) -> u64 {
        debug_assert!(file < self.files && index < self.file_blocks);
        1 + file * self.file_blocks + index
    }

    /// The header block's contents.
    pub fn encode(&self, out: &mut [u8; BLOCK_SIZE]) {
        out.fill(0);
        out[..8].copy_from_slice(&MAGIC);
        out[8..16].copy_from_slice(&self.file_blocks.to_le_bytes());
        out[16..24].copy_from_slice(&self.files.to_le_bytes());
    }

    /// Reads a header: `None` if block 0 carries no magic (unformatted),
    /// an error if it does but describes more than `blocks` blocks.
    pub fn decode(buf: &[u8; BLOCK_SIZE], blocks: u64) -> Option<Result<Layout, LayoutError>> {
        if buf[..8] != MAGIC {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        let (file_blocks, files) = (word(8), word(16));
        let fits = file_blocks
            .checked_mul(files)
            .and_then(|n| n.checked_add(1))
            .is_some_and(|n| n <= blocks);
        Some(if file_blocks == 0 || files == 0 || !fits {
            Err(LayoutError::BadHeader)
        } else {
            Ok(Layout { file_blocks, files })
        })
    }
}
