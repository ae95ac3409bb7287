//! SMP: every CPU comes up and passes the `smp` suite for several CPU
//! counts, and a panic on an application processor ends the run cleanly.

use boot::{
    contract::marker::{BACKTRACE, FATAL},
    qemu::Exit,
};
use tests::{boot, check};

fn all_online(n: u32) {
    let (out, v) = boot(&format!("smp{n}"))
        .smp(n)
        .params(["filter=smp"])
        .run()
        .expect("QEMU run");
    check(v.passed, &format!("-smp {n}: {:?}", v.reasons), &out);
    check(
        out.contains(&format!("cpus online: {n}/{n}")),
        "not every CPU came online",
        &out,
    );
    check(
        v.report.counts().passed >= 6 || n == 1,
        "smp suite did not run",
        &out,
    );
}

#[test]
fn smp_1() {
    all_online(1);
}

#[test]
fn smp_2() {
    all_online(2);
}

#[test]
fn smp_4() {
    all_online(4);
}

#[test]
fn smp_8() {
    all_online(8);
}

#[test]
fn panic_on_application_processor_is_reported() {
    let (out, v) = boot("appanic")
        .smp(3)
        .params(["crash=appanic"])
        .run()
        .expect("QEMU run");
    check(
        out.exit == Exit::PANIC,
        "an AP panic must end in the panic exit",
        &out,
    );
    check(
        out.contains(&format!("{FATAL} on cpu2: PANIC")),
        "the failing CPU must be named",
        &out,
    );
    check(
        out.contains("deliberate panic on cpu2"),
        "panic message missing",
        &out,
    );
    check(out.contains(BACKTRACE), "backtrace missing", &out);
    check(!v.passed, "must fail", &out);
}

#[test]
fn cpu_that_does_not_start_is_reported_and_boot_continues() {
    let (out, v) = boot("apskip")
        .smp(3)
        .params(["ap_skip=2", "filter=smp"])
        .run()
        .expect("QEMU run");
    check(
        out.contains("CPU with APIC id 2 did not come up"),
        "the missing CPU must be named",
        &out,
    );
    check(
        out.contains("cpus online: 2/3"),
        "boot must continue with the other CPUs",
        &out,
    );
    check(
        v.report
            .failures()
            .iter()
            .any(|(p, _)| p == "smp.all_cpus_online"),
        "smp.all_cpus_online must fail when a CPU is missing",
        &out,
    );
    check(
        v.report.counts().passed >= 5,
        "the other smp cases still run on 2 CPUs",
        &out,
    );
}
