//! Turns the kernel's frame-pointer backtrace (the lines after
//! `contract::marker::BACKTRACE`, each a `contract::marker::BacktraceFrame`)
//! into function names, on the host, from the unstripped kernel ELF and the
//! toolchain's `llvm-nm` (`llvm-tools` component).
//!
//! The kernel is position-independent; the bootloader prints where it put
//! it (`virtual_address_offset: 0x...`), which is subtracted first.

use std::{path::Path, process::Command};

use contract::marker::{BACKTRACE, BacktraceFrame};

/// The bootloader's (not the kernel's) log line naming the load offset.
const LOAD_OFFSET: &str = "virtual_address_offset: 0x";

/// The function containing each address of the first backtrace, as `  N:
/// addr  name+off` lines; empty when there is no backtrace or no symbol
/// table.
pub fn backtrace(lines: &[String], elf: &Path) -> Vec<String> {
    backtraces(lines, elf)
        .into_iter()
        .next()
        .map_or(Vec::new(), |b| b.frames)
}

/// One symbolized backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backtrace {
    /// The report it belongs to: the last line before it that is not part
    /// of a backtrace (a panic's `# pcs: crashed in ...`, a watchdog's
    /// lockup report).
    pub heading: String,
    /// `  N: addr  name+off`, innermost first.
    pub frames: Vec<String>,
}

impl Backtrace {
    /// Whether a frame is in a function whose name contains `name`.
    pub fn names(&self, name: &str) -> bool {
        self.frames.iter().any(|f| f.contains(name))
    }
}

/// Every backtrace in `lines` (panics, exceptions, lockup reports), in
/// order, symbolized; empty when there is none or no symbol table.
pub fn backtraces(lines: &[String], elf: &Path) -> Vec<Backtrace> {
    let mut raw: Vec<(String, Vec<u64>)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.contains(BACKTRACE) {
            continue;
        }
        let addrs: Vec<u64> = lines[i + 1..]
            .iter()
            .map_while(|l| BacktraceFrame::parse(l).map(|f| f.addr))
            .collect();
        let heading = lines[..i]
            .iter()
            .rev()
            .find(|l| {
                BacktraceFrame::parse(l).is_none() && !l.contains(BACKTRACE) && !l.trim().is_empty()
            })
            .map_or(String::new(), |l| l.trim().to_string());
        if !addrs.is_empty() {
            raw.push((heading, addrs));
        }
    }
    if raw.is_empty() {
        return Vec::new();
    }
    let offset = lines
        .iter()
        .find_map(|l| l.split(LOAD_OFFSET).nth(1))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let symbols = symbols(elf);
    if symbols.is_empty() {
        return Vec::new();
    }
    raw.into_iter()
        .map(|(heading, addrs)| Backtrace {
            heading,
            frames: addrs
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let rel = a.wrapping_sub(offset);
                    let idx = symbols.partition_point(|(s, _)| *s <= rel);
                    match idx.checked_sub(1).map(|j| &symbols[j]) {
                        Some((start, name)) => {
                            format!("  {i:2}: {a:#x}  {name}+{:#x}", rel - start)
                        }
                        None => format!("  {i:2}: {a:#x}  ?"),
                    }
                })
                .collect(),
        })
        .collect()
}

/// Text symbols of `elf`, sorted by address.
fn symbols(elf: &Path) -> Vec<(u64, String)> {
    let Some(nm) = crate::toolchain::llvm_tool("llvm-nm") else {
        return Vec::new();
    };
    let Ok(out) = Command::new(nm)
        .args(["--defined-only", "--demangle", "-n"])
        .arg(elf)
        .output()
    else {
        return Vec::new();
    };
    let mut v: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?;
            let name = it.next()?.to_string();
            matches!(kind, "t" | "T").then_some((addr, name))
        })
        .collect();
    v.sort_by_key(|(a, _)| *a);
    v
}
