//! The scheduler suite on 4 and 8 CPUs (with 8 vCPUs on a 2-core host, most
//! vCPUs wait for a host core at any time: a good test of lost wake-ups).

use std::time::Duration;

use tests::{boot, check};

fn sched(n: u32) {
    let (out, v) = boot(&format!("sched{n}"))
        .smp(n)
        .mem("512M")
        .params(["filter=sched"])
        .timeout(Duration::from_secs(400))
        .run()
        .expect("QEMU run");
    check(v.passed, &format!("-smp {n}: {:?}", v.reasons), &out);
    check(
        v.report.counts().passed >= 8,
        "sched suite did not run",
        &out,
    );
}

#[test]
fn sched_smp4() {
    sched(4);
}

#[test]
fn sched_smp8() {
    sched(8);
}
