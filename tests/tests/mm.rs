//! The physical memory manager at several memory sizes: the frame array
//! describes all RAM, every free frame can be allocated and comes back, and
//! a double free through the public path ends the run with a dump.

use std::time::Duration;

use boot::qemu::Exit;
use tests::{boot, check};

/// Runs the `mm` suite with `-m mem` and returns the boot report line.
fn mm_suite(mem: &str, extra: &[&str]) -> String {
    let mut params = vec!["filter=mm.*"];
    params.extend_from_slice(extra);
    let (out, v) = boot(&format!("mm-{mem}"))
        .mem(mem)
        .params(&params)
        .timeout(Duration::from_secs(400))
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("mm suite must pass at -m {mem}: {:?}", v.reasons),
        &out,
    );
    check(
        v.report.counts().passed >= 14,
        "too few mm cases passed",
        &out,
    );
    let report = out
        .lines
        .iter()
        .find(|l| l.contains("mm: ") && l.contains("frames described"));
    check(report.is_some(), "boot report line missing", &out);
    let line = report.unwrap().clone();
    check(
        line.contains("64 bytes per descriptor"),
        "descriptor size missing from the report",
        &out,
    );
    check(
        out.contains("allocated, checked and freed"),
        "alloc_all_free_all did not report",
        &out,
    );
    line
}

/// The number after `key` in the report line, e.g. "786432 frames described".
fn number_before(line: &str, word: &str) -> u64 {
    let i = line.find(word).expect("word in line");
    line[..i]
        .split_whitespace()
        .last()
        .expect("a number")
        .parse()
        .expect("a number")
}

#[test]
fn mm_128m() {
    mm_suite("128M", &[]);
}

#[test]
fn mm_512m() {
    mm_suite("512M", &[]);
}

/// All 3 GiB sit below the PCI hole (QEMU's i440fx keeps up to 3.5 GiB low).
#[test]
fn mm_3g() {
    let line = mm_suite("3G", &[]);
    assert_eq!(number_before(&line, "frames described"), 3 << 18, "{line}");
}

/// 4 GiB: 3 GiB below the PCI hole, 1 GiB above 4 GiB. The hole costs no
/// descriptors: exactly 4 GiB of frames are described, in 32 sections.
#[test]
fn mm_4g_across_pci_hole() {
    let line = mm_suite("4G", &[]);
    assert_eq!(number_before(&line, "frames described"), 1 << 20, "{line}");
    assert_eq!(number_before(&line, "sections"), 32, "{line}");
}

/// The suite also passes with the per-CPU caches switched off.
#[test]
fn mm_without_pcp() {
    mm_suite("256M", &["pcp=0"]);
}

#[test]
fn double_free_panics_with_dump() {
    let (out, v) = boot("doublefree")
        .params(["crash=doublefree"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "a double free must fail the run", &out);
    check(out.exit == Exit::PANIC, "exit must be Panic", &out);
    check(
        out.contains("mm: bad page: double free (refcount already 0): pfn="),
        "double-free report missing",
        &out,
    );
    check(out.contains("count=0"), "descriptor dump missing", &out);
    check(
        v.report.crashed_in.as_deref() == Some("boot.deliberate_crash"),
        "crashed case not named",
        &out,
    );
}
