//! The data pattern of the disk persistence check (`blk_persist=`): the
//! kernel writes it to the first [`PERSIST_BLOCKS`] blocks of the virtio
//! disk in one boot and checks it in a later boot of the same image; the
//! host checks the image file itself in between.

/// Bytes in a block of the kernel's block layer.
pub const BLOCK_SIZE: usize = 4096;
/// Blocks the persistence check writes (block 0 upwards).
pub const PERSIST_BLOCKS: u64 = 64;

/// The page-cache persistence check (`pagecache.persist`) keeps its file
/// system on the disk's blocks from here on: a header block, then files of
/// [`PAGECACHE_FILE_PAGES`] pages. It writes, through the cache, page `p`
/// of file 1 as block `PAGECACHE_FIRST_BLOCK + 1 + PAGECACHE_FILE_PAGES + p`
/// of the disk, with the words of `pattern_word(seed, 1000 + p, word)`.
pub const PAGECACHE_FIRST_BLOCK: u64 = 1024;
/// Pages per file of the page-cache persistence check's file system.
pub const PAGECACHE_FILE_PAGES: u64 = 64;
/// Files of that file system.
pub const PAGECACHE_FILES: u64 = 2;
/// Pages of file 1 the check writes.
pub const PAGECACHE_PERSIST_PAGES: u64 = 8;

/// The host-verified writeback torture (`pagecache.torture_disk`, see
/// [`crate::torture`]) keeps its file system on the disk's blocks from here
/// on: a header block, then [`TORTURE_FILES`] files of
/// [`TORTURE_FILE_PAGES`] pages, [`TORTURE_BLOCKS`] blocks in all. Page
/// `index` of file `file` is block [`torture_block`]`(first, file, index)`.
pub const TORTURE_FIRST_BLOCK: u64 = 2048;
/// The same for the DMA variant (`gup.torture_dma`), so that both can run
/// in one boot and be checked from one image.
pub const TORTURE_DMA_FIRST_BLOCK: u64 = 2688;
/// Files of a torture's file system.
pub const TORTURE_FILES: u64 = 4;
/// Pages per file of a torture's file system.
pub const TORTURE_FILE_PAGES: u64 = 128;
/// Blocks of a torture's file system (header included): both fit in a
/// 16 MiB image (4096 blocks).
pub const TORTURE_BLOCKS: u64 = 1 + TORTURE_FILES * TORTURE_FILE_PAGES;
/// Most pages a torture uses (every page of every file).
pub const TORTURE_MAX_PAGES: u64 = TORTURE_FILES * TORTURE_FILE_PAGES;

// The regions do not overlap, and both fit a 16 MiB image (4096 blocks).
const _: () = assert!(
    PAGECACHE_FIRST_BLOCK + 1 + PAGECACHE_FILES * PAGECACHE_FILE_PAGES <= TORTURE_FIRST_BLOCK
);
const _: () = assert!(TORTURE_FIRST_BLOCK + TORTURE_BLOCKS <= TORTURE_DMA_FIRST_BLOCK);
const _: () = assert!(TORTURE_DMA_FIRST_BLOCK + TORTURE_BLOCKS <= (16 << 20) / BLOCK_SIZE as u64);
const _: () = assert!(
    torture_block(
        TORTURE_FIRST_BLOCK,
        TORTURE_FILE_PAGES,
        TORTURE_FILES - 1,
        TORTURE_FILE_PAGES - 1
    ) == TORTURE_FIRST_BLOCK + TORTURE_BLOCKS - 1
);

/// The disk block of page `index` of file `file` in a file system that
/// starts at block `first` with files of `file_pages` pages (the kernel's
/// `pagecache::Layout`: a header block, then the files one after another).
pub const fn torture_block(first: u64, file_pages: u64, file: u64, index: u64) -> u64 {
    first + 1 + file * file_pages + index
}

/// 64-bit word `word` (0..512) of block `block` under `seed`, stored
/// little-endian at byte `8 * word` of the block: distinct for every seed,
/// block and word (a splitmix64 finaliser over their combination), so a
/// block written to the wrong place or from the wrong run does not match.
pub fn pattern_word(seed: u64, block: u64, word: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(block.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(word.wrapping_mul(0x94d0_49bb_1331_11eb))
        .wrapping_add(0x2545_f491_4f6c_dd1d);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_differ_across_seed_block_and_word() {
        let a = pattern_word(1, 0, 0);
        assert_ne!(a, pattern_word(2, 0, 0));
        assert_ne!(a, pattern_word(1, 1, 0));
        assert_ne!(a, pattern_word(1, 0, 1));
        assert_eq!(a, pattern_word(1, 0, 0));
    }
}
