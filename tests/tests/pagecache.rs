//! The page cache's checks can fail: each known-bad writeback variant
//! (`bug=<name>`, see `kernel/pagesync/src/variant/bugs.rs`) makes the case
//! built to catch it fail, in its own way.

use boot::qemu::Exit;
use tests::check;

/// `no-stable-wait`: writers change pages the device is writing; the
/// devices' stable-page check counts it and the torture fails.
#[test]
fn no_stable_wait_is_caught() {
    let (out, v) = tests::boot("pc-no-stable-wait")
        .params(["filter=pagecache.torture", "bug=no-stable-wait"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "bug=no-stable-wait must fail the torture", &out);
    check(
        out.contains("pages changed while the device was writing them (stable pages broken)"),
        "the failure must be the stable-page check",
        &out,
    );
}

/// `end-writeback-no-ref` (Linux before 073861ed77b6): the end of
/// writeback walks a page that a truncation freed in between; the waker's
/// reference check stops the kernel. The variant has no window widening:
/// the truncation fits between the clear and the walk only when the
/// jitter at the race point after the clear draws a long delay (one in 16
/// delays, up to 262144 cycles) while the truncating vCPU runs. Quiet
/// host, `jitter_rate=4`: caught within 2000 rounds under each of seeds 1
/// to 4. On a loaded CI host one boot of 2000 rounds with the default rate
/// missed it, so this test delays at every race point (`jitter_rate=1`,
/// the jitter's own knob, not the variant's) and gives the race up to
/// three boots with different seeds; every boot must either pass or fail
/// with the reference check, and one must fail.
#[test]
fn end_writeback_without_reference_is_caught() {
    let (out, v) = tests::until_caught("end-writeback-no-ref", |run| run);
    check(
        out.contains("pagelock: jitter on"),
        "the case must run with jitter on (the variant has no window widening)",
        &out,
    );
    check(!v.passed, "bug=end-writeback-no-ref must fail", &out);
    check(out.exit == Exit::PANIC, "exit must be Panic", &out);
    check(
        out.contains("wake_page_bit: page 0x") && out.contains("has no reference"),
        "the failure must be the waker's reference check",
        &out,
    );
}

/// `sync-no-flush`: `sync` returns without flushing the device's write
/// cache; after a power cut (the RAM device's model of one) the synced
/// round is gone. `pagecache.sync_is_durable` must say so.
#[test]
fn sync_without_flush_is_caught() {
    let (out, v) = tests::boot("pc-sync-no-flush")
        .params(["filter=pagecache.sync_is_durable", "bug=sync-no-flush"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "bug=sync-no-flush must fail", &out);
    check(
        out.contains("pages are not what sync made durable")
            && out.contains("the synced round 1 was lost"),
        "the failure must be the synced data lost at the power cut",
        &out,
    );
}
