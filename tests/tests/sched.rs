//! The scheduler suite on 4 and 8 CPUs (with 8 vCPUs on a 2-core host, most
//! vCPUs wait for a host core at any time: a good test of lost wake-ups).

use tests::{Boot, check};

fn sched(n: u32) {
    let (out, v) = Boot::new(&format!("sched{n}"))
        .smp(n)
        .mem("512M")
        .params(&["filter=sched"])
        .timeout(400)
        .run();
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
