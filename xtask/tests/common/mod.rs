//! Running the real `xtask` binary from the integration tests.

#![allow(dead_code)]

use std::{
    fs,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Runs the real `xtask` binary with stdout and stderr piped (not a
/// terminal); returns its output, how long it took and its process id
/// (which names any QEMU run directory it creates).
pub fn xtask(args: &[&str]) -> (Output, Duration, u32) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for xtask");
    (out, start.elapsed(), pid)
}

/// Run directories created by process `pid` (`<name>-<secs>-<nanos>-<pid>`)
/// in the last two minutes: process ids are reused, and `target/runs`
/// keeps the directories of every earlier run (one of an old process with
/// the same id once failed a test here).
pub fn run_dirs_of(pid: u32) -> Vec<String> {
    let suffix = format!("-{pid}");
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(120);
    let secs = |name: &str| -> Option<u64> {
        let mut parts = name.rsplitn(4, '-');
        let (_pid, _nanos) = (parts.next()?, parts.next()?);
        parts.next()?.parse().ok()
    };
    fs::read_dir(boot::target_dir().join("runs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(&suffix) && secs(n).is_none_or(|s| s >= recent))
                .collect()
        })
        .unwrap_or_default()
}
