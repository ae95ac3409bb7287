//! The writeback torture verified from the host (issues 10 and 11): the
//! kernel runs `pagecache.torture_disk` (writers, flushers, injected write
//! errors, stable pages) and `gup.torture_dma` (the same, plus DMA engines
//! writing whole versions into pinned pages) on a disk image of this
//! test's own, printing a manifest of what each page's block must hold;
//! after QEMU exits, the host reads the image file and checks every block
//! against it: no torn page, no older or newer version, nothing missing
//! (`tests::torture`).
//!
//! The check must be able to fail, so each known-bad variant it exists
//! for is run too, and the host check (not only the kernel's own) must
//! catch it:
//! * `bug=no-stable-wait`: writers change pages while the device writes
//!   them, so blocks end up newer than the manifest (or torn);
//! * `bug=write-pinned-in-place`: writeback hands the device the pinned
//!   page itself instead of a bounce copy, and the DMA engines change it
//!   under the device: the pinned pages' blocks are newer or torn, while
//!   the other pages (whose writers keep the stable-page rule) are intact.
//!
//! Short settings by default (the kernel's: 2 s, 64 pages); longer runs
//! through the environment, e.g.
//! `PCS_TORTURE="torture_ms=60000 torture_pages=512" cargo test -p tests --test torture_disk`.

use std::{fs, path::PathBuf, time::Duration};

use boot::{Disk, disk::Filter, qemu::Outcome};
use tests::{
    check,
    torture::{Manifest, Verdict, check_image, manifests},
};

/// 16 MiB: both tortures' regions fit (`contract::disk::TORTURE_*`).
const IMAGE_BYTES: u64 = 16 << 20;

/// A fresh image of its own for this boot (removed once checked).
fn image(name: &str) -> PathBuf {
    let dir = boot::target_dir().join("test-disks");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}-{}.img", std::process::id()));
    let _ = fs::remove_file(&p);
    p
}

/// Boots the tortures selected by `filter` with `extra` parameters on a
/// fresh image, then checks the image against every manifest printed.
fn boot_and_check(
    name: &str,
    filter: &str,
    extra: &[&str],
) -> (Outcome, bool, Vec<(Manifest, Verdict)>) {
    boot_and_check_behind(name, filter, extra, None)
}

/// [`boot_and_check`] with a QEMU block driver in front of the image.
fn boot_and_check_behind(
    name: &str,
    filter: &str,
    extra: &[&str],
    disk_filter: Option<Filter>,
) -> (Outcome, bool, Vec<(Manifest, Verdict)>) {
    let disk = image(name);
    // `PCS_TORTURE`: more kernel parameters (longer runs), and time for
    // them on top of the tests' deadline.
    let more: Vec<String> = std::env::var("PCS_TORTURE")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let ms: u64 = more
        .iter()
        .find_map(|w| w.strip_prefix("torture_ms=")?.parse().ok())
        .unwrap_or(0);
    let mut run = tests::boot(name).disk(Disk::at(&disk, IMAGE_BYTES));
    if let Some(f) = disk_filter {
        run = run.disk_filter(f);
    }
    let (out, v) = run
        .params([format!("filter={filter}")])
        .params(extra)
        .params(&more)
        .timeout(Duration::from_secs(240 + 3 * ms / 1000))
        .run()
        .expect("QEMU run");
    let bytes = fs::read(&disk).expect("the disk image");
    assert_eq!(bytes.len() as u64, IMAGE_BYTES);
    let checked: Vec<(Manifest, Verdict)> = manifests(&out.lines)
        .into_iter()
        .map(|m| {
            let v = check_image(&bytes, &m);
            println!("host check of {} (run {:#x}): {v}", m.case, m.run);
            (m, v)
        })
        .collect();
    fs::remove_file(&disk).unwrap();
    (out, v.passed, checked)
}

/// The manifest of `case` and its check.
fn of<'a>(
    checked: &'a [(Manifest, Verdict)],
    case: &str,
    out: &Outcome,
) -> &'a (Manifest, Verdict) {
    let found: Vec<_> = checked.iter().filter(|(m, _)| m.case == case).collect();
    check(
        found.len() == 1,
        &format!("expected one manifest of {case}, found {}", found.len()),
        out,
    );
    found[0]
}

/// With stable pages and bounce copies, the image holds exactly the
/// manifests' versions, for both tortures in one boot; the final pass had
/// failed writes to retry.
#[test]
fn disk_holds_exactly_the_manifest() {
    let (out, passed, checked) = boot_and_check(
        "torture-disk",
        "pagecache.torture_disk,gup.torture_dma",
        &[],
    );
    check(passed, "both tortures must pass in the kernel", &out);
    for case in ["pagecache.torture_disk", "gup.torture_dma"] {
        let (m, v) = of(&checked, case, &out);
        check(
            v.clean(),
            &format!("{case}: the image does not hold the manifest: {v}"),
            &out,
        );
        check(
            m.pages > 0 && v.checked as u64 == m.pages,
            &format!("{case}: {} pages, {} checked", m.pages, v.checked),
            &out,
        );
        check(
            m.retries.is_some_and(|r| r >= 2),
            &format!("{case}: the final pass retried no failed write"),
            &out,
        );
    }
    check(
        of(&checked, "gup.torture_dma", &out).0.pinned > 0,
        "the DMA torture pinned no page",
        &out,
    );
}

/// Without stable-page waits, writers change pages under the device: the
/// host finds blocks that are not the manifest's version (newer, or torn).
#[test]
fn no_stable_wait_is_caught_on_the_disk() {
    let (out, passed, checked) = boot_and_check(
        "torture-disk-no-stable-wait",
        "pagecache.torture_disk",
        &["bug=no-stable-wait"],
    );
    check(!passed, "the kernel's own checks must fail too", &out);
    let (_, v) = of(&checked, "pagecache.torture_disk", &out);
    check(
        v.manifest_problems.is_empty(),
        &format!("the manifest itself must be whole: {v}"),
        &out,
    );
    check(
        !v.clean()
            && v.bad()
                == v.findings.get("newer").map_or(0, |n| n.0)
                    + v.findings.get("torn").map_or(0, |n| n.0),
        &format!("the host check must find newer or torn blocks, and only those: {v}"),
        &out,
    );
}

/// Writing maybe-pinned pages in place lets the DMA engines change them
/// under the device: the host finds the pinned pages' blocks newer or
/// torn, and every other block intact.
#[test]
fn writing_pinned_pages_in_place_is_caught_on_the_disk() {
    let (out, passed, checked) = boot_and_check(
        "torture-dma-in-place",
        "gup.torture_dma",
        &["bug=write-pinned-in-place"],
    );
    check(!passed, "the kernel's own checks must fail too", &out);
    let (m, v) = of(&checked, "gup.torture_dma", &out);
    check(
        m.pinned > 0 && v.manifest_problems.is_empty(),
        &format!("the manifest must be whole, with pinned pages: {v}"),
        &out,
    );
    check(
        v.bad() > 0,
        &format!("the host check must find damaged pinned pages: {v}"),
        &out,
    );
    check(
        v.unpinned_bad() == 0,
        &format!("only pinned pages may be damaged: {v}"),
        &out,
    );
}

/// Device errors from outside the kernel: QEMU's `blkdebug` driver, with
/// the rules of `tests/blkdebug/torture-eio.conf`, fails the first write
/// that reaches each of ten pages' blocks with `EIO` (QEMU may have merged
/// neighbouring requests into that write, which then all fail), and the
/// guest's virtio-blk sees an I/O error from the device. The torture's writeback keeps
/// each such page dirty (with `PG_error`), `sync` reports the error, the
/// page is written again, and the image still holds the manifest exactly.
#[test]
fn device_errors_from_blkdebug_are_retried() {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("blkdebug/torture-eio.conf");
    let (out, passed, checked) = boot_and_check_behind(
        "torture-disk-blkdebug",
        "pagecache.torture_disk",
        &[],
        Some(Filter::Debug { rules }),
    );
    check(passed, "the torture must pass in the kernel", &out);
    let (_, v) = of(&checked, "pagecache.torture_disk", &out);
    check(
        v.clean(),
        &format!("the image does not hold the manifest: {v}"),
        &out,
    );
    // "N failed device writes (M armed)": the kernel armed M of its own;
    // the rest came from the device.
    let line = out
        .lines
        .iter()
        .find(|l| l.contains("failed device writes ("))
        .cloned()
        .unwrap_or_default();
    let num = |after: &str| -> Option<u64> {
        let (before, _) = line.split_once(after)?;
        before.split_whitespace().last()?.parse().ok()
    };
    let failed = num(" failed device writes (").unwrap_or(0);
    let armed = line
        .split_once("failed device writes (")
        .and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    // QEMU merges adjacent virtio requests, and a failed merged write
    // fails every request in it: how many the guest sees failing varies.
    check(
        failed > armed,
        &format!("the device must have failed writes of its own: {line}"),
        &out,
    );
    check(
        out.contains("virtio-blk: Write of block") && out.contains("device error (status 1)"),
        "the device's errors must be the virtio status IOERR",
        &out,
    );
}
