//! The block devices from the host: data written to the virtio disk in one
//! boot is in the image file afterwards and is read back by a second boot
//! of the same image; a boot without a disk runs, says so, and skips the
//! cases that need it.

use std::{fs, path::PathBuf};

use boot::{
    Disk,
    contract::disk::{BLOCK_SIZE, PERSIST_BLOCKS, pattern_word},
};
use tests::{boot, check};

/// A persistent image of its own for this test (the default disk is fresh
/// in every run's directory, so it could not carry data between boots).
fn image(name: &str) -> PathBuf {
    let dir = boot::target_dir().join("test-disks");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}-{}.img", std::process::id()));
    let _ = fs::remove_file(&p);
    p
}

fn persist_boot(name: &str, disk: &PathBuf, mode: &str, seed: u64) -> (boot::qemu::Outcome, bool) {
    let (out, v) = boot(name)
        .disk(Disk::at(disk, 16 << 20))
        .params([
            "filter=block.persist".to_string(),
            format!("blk_persist={mode}"),
            format!("seed={seed}"),
        ])
        .run()
        .expect("QEMU run");
    (out, v.passed)
}

#[test]
fn data_persists_across_boots() {
    let disk = image("persist");
    let seed = 0x5eed_0000 + u64::from(std::process::id());
    let (out, passed) = persist_boot("persist-write", &disk, "write", seed);
    check(passed, "the writing boot must pass", &out);
    check(
        out.contains(&format!(
            "blk_persist=write: {PERSIST_BLOCKS} blocks written with seed {seed}"
        )),
        "the writing boot did not write",
        &out,
    );

    // The emulated device really wrote the file: check it from the host.
    let bytes = fs::read(&disk).unwrap();
    assert_eq!(bytes.len(), 16 << 20);
    for b in 0..PERSIST_BLOCKS {
        for w in 0..(BLOCK_SIZE / 8) as u64 {
            let at = b as usize * BLOCK_SIZE + w as usize * 8;
            let got = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            assert_eq!(
                got,
                pattern_word(seed, b, w),
                "image {}: block {b} word {w}",
                disk.display()
            );
        }
    }
    // Nothing past the pattern was touched.
    let end = PERSIST_BLOCKS as usize * BLOCK_SIZE;
    assert!(
        bytes[end..].iter().all(|&x| x == 0),
        "bytes past the pattern changed"
    );

    let (out, passed) = persist_boot("persist-check", &disk, "check", seed);
    check(passed, "the checking boot must pass", &out);
    check(
        out.contains(&format!(
            "blk_persist=check: {PERSIST_BLOCKS} blocks checked with seed {seed}"
        )),
        "the checking boot did not check",
        &out,
    );

    // The check can fail: another seed's pattern is not on the disk.
    let (out, passed) = persist_boot("persist-wrong-seed", &disk, "check", seed + 1);
    check(
        !passed,
        "checking for another seed's pattern must fail",
        &out,
    );
    check(
        out.contains("block 0 word 0: disk holds"),
        "the mismatch was not reported",
        &out,
    );
    fs::remove_file(&disk).unwrap();
}

fn pagecache_boot(
    name: &str,
    disk: &PathBuf,
    mode: &str,
    seed: u64,
) -> (boot::qemu::Outcome, bool) {
    let (out, v) = boot(name)
        .disk(Disk::at(disk, 16 << 20))
        .params([
            "filter=pagecache.persist".to_string(),
            format!("blk_persist={mode}"),
            format!("seed={seed}"),
        ])
        .run()
        .expect("QEMU run");
    (out, v.passed)
}

/// Data written through the page cache and synced in one boot is on the
/// image (checked from the host, at the blocks the layout says) and reads
/// back through the cache in the next boot.
#[test]
fn page_cache_data_persists_across_boots() {
    use boot::contract::disk::{
        PAGECACHE_FILE_PAGES, PAGECACHE_FIRST_BLOCK, PAGECACHE_PERSIST_PAGES,
    };
    let disk = image("pc-persist");
    let seed = 0x9ca0_0000 + u64::from(std::process::id());
    let (out, passed) = pagecache_boot("pc-persist-write", &disk, "write", seed);
    check(passed, "the writing boot must pass", &out);
    check(
        out.contains(&format!(
            "pagecache persist=write: {PAGECACHE_PERSIST_PAGES} pages written and synced"
        )),
        "the writing boot did not write",
        &out,
    );
    let bytes = fs::read(&disk).unwrap();
    let header = PAGECACHE_FIRST_BLOCK as usize * BLOCK_SIZE;
    assert_eq!(
        &bytes[header..header + 8],
        b"PCSFS\0\0\x01",
        "no file system header"
    );
    for p in 0..PAGECACHE_PERSIST_PAGES {
        let block = PAGECACHE_FIRST_BLOCK + 1 + PAGECACHE_FILE_PAGES + p;
        for w in 0..(BLOCK_SIZE / 8) as u64 {
            let at = block as usize * BLOCK_SIZE + w as usize * 8;
            let got = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            assert_eq!(got, pattern_word(seed, 1000 + p, w), "page {p} word {w}");
        }
    }
    let (out, passed) = pagecache_boot("pc-persist-check", &disk, "check", seed);
    check(passed, "the checking boot must pass", &out);
    check(
        out.contains(&format!(
            "pagecache persist=check: {PAGECACHE_PERSIST_PAGES} pages read back"
        )),
        "the checking boot did not read back",
        &out,
    );
    let (out, passed) = pagecache_boot("pc-persist-wrong-seed", &disk, "check", seed + 1);
    check(
        !passed,
        "reading back another seed's pattern must fail",
        &out,
    );
    fs::remove_file(&disk).unwrap();
}

#[test]
fn boot_without_a_disk() {
    let (out, v) = boot("no-disk")
        .disk(Disk::None)
        .params(["filter=block"])
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("a boot without a disk must pass: {:?}", v.reasons),
        &out,
    );
    check(
        out.contains("virtio-blk: none: no virtio-blk PCI function"),
        "the missing device was not reported",
        &out,
    );
    check(
        out.contains("ok 2 round_trip_virtio # SKIP no virtio-blk PCI function"),
        "virtio cases must skip, naming why",
        &out,
    );
    check(
        out.contains("ok 1 round_trip_ram") && !out.contains("ok 1 round_trip_ram # SKIP"),
        "the RAM device must still be tested",
        &out,
    );
}
