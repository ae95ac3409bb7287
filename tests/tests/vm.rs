//! Address spaces (`kernel/src/vm/`): a write to a read-only region ends the
//! run with a clear exception report naming the region (it is never
//! retried for ever), and the `vm` suite also passes on one CPU, where
//! every shoot-down is local and the cross-CPU cases are skipped.

use boot::qemu::Exit;
use tests::{boot, check};

#[test]
fn readonly_write_is_a_reported_fatal_fault() {
    let (out, v) = boot("vm-readonly-write")
        .params(["crash=vm-readonly-write"])
        .run()
        .expect("QEMU run");
    check(!v.passed, "the write must fail the run", &out);
    check(
        out.exit == Exit::EXCEPTION,
        "exit must be the exception status (not a timeout: no retry loop)",
        &out,
    );
    check(
        out.contains("EXCEPTION: page fault (#PF)")
            && out.contains("CR2=0xdead0008")
            && out.contains(": write to a read-only region (region [0xdead0000, 0xdead1000))"),
        "the report must name the fault, the address and the region",
        &out,
    );
    check(
        out.contains("# reading the read-only page: 0"),
        "the read before the write must have been resolved (zero page)",
        &out,
    );
    check(
        v.report.crashed_in.as_deref() == Some("boot.deliberate_crash"),
        "crashed case not named",
        &out,
    );
}

#[test]
fn vm_suite_on_one_cpu() {
    let (out, v) = boot("vm-1cpu")
        .smp(1)
        .params(["filter=vm"])
        .run()
        .expect("QEMU run");
    check(
        v.passed,
        &format!("the vm suite must pass on one CPU: {:?}", v.reasons),
        &out,
    );
    let c = v.report.counts();
    check(
        c.passed >= 11 && c.skipped == 2,
        "expected every case but the two cross-CPU shoot-down cases to pass",
        &out,
    );
}
