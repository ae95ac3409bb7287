//! A QEMU crash is reported as what it is and the boot is retried once.
//!
//! QEMU 7.2 segfaulted once in about 200 boots on this project's machines
//! (host kernel log: `qemu-system-x86 ... segfault at a0`). Such a death
//! is not a verdict on the kernel: the runner reports the signal, QEMU's
//! version and the last console lines, and boots once more. This test
//! puts a stand-in `qemu-system-x86_64` first on `PATH` (its own test
//! binary, so no other test sees it): the first boot it starts is killed
//! with SIGSEGV after a few seconds, later ones run the real QEMU.

use std::{fs, os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use boot::qemu::{Exit, QEMU};
use tests::{boot, check};

#[test]
fn a_qemu_crash_is_no_verdict_and_the_boot_runs_again() {
    let real = which(QEMU).expect("QEMU on PATH");
    let dir = std::env::temp_dir().join(format!("pcs-fake-qemu-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mark = dir.join("crashed-once");
    let script = dir.join(QEMU);
    // The first real boot (not `--version`) dies of SIGSEGV, as QEMU did.
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$*\" in *--version*) exec {real} \"$@\";; esac\n\
             if [ -e {mark} ]; then exec {real} \"$@\"; fi\n\
             touch {mark}\n\
             {real} \"$@\" &\n\
             sleep 4\n\
             kill -9 $!\n\
             kill -SEGV $$\n",
            real = real.display(),
            mark = mark.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    // SAFETY (of the environment change): this test binary runs this one
    // test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PATH", format!("{}:{path}", dir.display())) };
    let (out, v) = boot("qemu-crash")
        .params(["filter=boot,ktest"])
        .timeout(Duration::from_secs(120))
        .run()
        .expect("QEMU run");
    let _ = fs::remove_dir_all(&dir);
    check(
        mark.exists() || out.retried_after.is_some(),
        "the stand-in never crashed",
        &out,
    );
    let first = out.retried_after.clone().unwrap_or_default();
    check(
        first.contains("signal 11 (SIGSEGV)") && first.contains("QEMU emulator version"),
        &format!("the first boot's crash must be named with QEMU's version: {first:?}"),
        &out,
    );
    check(
        out.exit == Exit::SUCCESS && v.passed,
        "the second boot runs the real QEMU and passes",
        &out,
    );
    check(
        v.notes.iter().any(|n| n.contains("booted twice")),
        "the verdict's notes must say the boot ran twice",
        &out,
    );
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(cmd))
        .find(|p| p.exists())
}
