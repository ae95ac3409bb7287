//! There is one copy of the host-kernel contract: no source file outside
//! `kernel/contract` spells a console marker the host parses, the fw_cfg
//! file name, a QEMU exit status, or its own exit-code table. (Comments may
//! mention them; code must use the contract's constants.)

use std::{fs, path::Path};

use boot::contract::{self, ExitCode, marker};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(file:line, line)` for the code (not comment) lines of the workspace's
/// Rust sources outside the contract crate.
fn code_lines(dirs: &[&str]) -> Vec<(String, String)> {
    let root = boot::workspace_root();
    let mut files = Vec::new();
    for d in dirs {
        rust_files(&root.join(d), &mut files);
    }
    let mut v = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        if rel.starts_with("kernel/contract/") {
            continue;
        }
        for (i, l) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            if !l.trim_start().starts_with("//") {
                v.push((format!("{rel}:{}", i + 1), l.to_string()));
            }
        }
    }
    v
}

const ALL_SOURCES: [&str; 4] = ["boot", "xtask", "tests", "kernel"];

const HOST_SOURCES: [&str; 3] = ["boot", "xtask", "tests"];

#[test]
fn markers_and_fw_cfg_name_are_written_once() {
    // KTAP_VERSION is also the KTAP format's own header, which the generic
    // KTAP parser (boot/src/ktap.rs) and its fixtures spell out.
    let needles: Vec<&str> = marker::ALL
        .iter()
        .copied()
        .filter(|m| *m != marker::KTAP_VERSION)
        .chain([contract::FW_CFG_NAME])
        .collect();
    let mut copies = Vec::new();
    for (at, line) in code_lines(&ALL_SOURCES) {
        for n in &needles {
            if line.contains(n) {
                copies.push(format!("{at}: {n:?}: {}", line.trim()));
            }
        }
    }
    assert!(
        copies.is_empty(),
        "use the contract's constants instead of these copies:\n{}",
        copies.join("\n")
    );
}

#[test]
fn exit_statuses_are_decoded_once() {
    let statuses: Vec<String> = ExitCode::ALL
        .iter()
        .map(|c| c.qemu_status().to_string())
        .collect();
    let mut copies = Vec::new();
    for (at, line) in code_lines(&HOST_SOURCES) {
        let tokens = line.split(|c: char| !c.is_ascii_alphanumeric());
        for t in tokens {
            if statuses.iter().any(|s| s == t) {
                copies.push(format!("{at}: {}", line.trim()));
            }
        }
    }
    // Built at run time, so this file does not match itself.
    let definitions = [
        format!("enum {}", "ExitCode"),
        format!("isa-debug-exit,iobase={}", "0x"),
    ];
    for (at, line) in code_lines(&ALL_SOURCES) {
        if definitions.iter().any(|d| line.contains(d.as_str())) {
            copies.push(format!("{at}: {}", line.trim()));
        }
    }
    assert!(
        copies.is_empty(),
        "exit statuses must come from contract::exit:\n{}",
        copies.join("\n")
    );
}
