//! QEMU's own view of the guest, over QMP: every vCPU's registers and its
//! frame-pointer chain, for a kernel that went silent.
//!
//! Mental model: the kernel's watchdogs speak only while some CPU still
//! takes timer ticks; a kernel whose CPUs all spin with interrupts off (or
//! all wait for the console lock) says nothing at all. QEMU still knows
//! where each vCPU is. The runner starts QEMU with a QMP socket
//! ([`socket_path`]); when the console has been silent too long it asks,
//! through QMP's `human-monitor-command`, for `info registers -a` (every
//! vCPU's registers) and reads each vCPU's stack with `x /2gx` (saved
//! frame pointer, return address), as the kernel's own backtraces do. The
//! result is written as console lines in the kernel's backtrace format, so
//! the one symbolizer ([`crate::symbolize`]) names the functions.
//!
//! The kernel half of every address space is shared, so reading a stack
//! through the monitor's default CPU (`x` translates with that CPU's page
//! tables) works for every vCPU's kernel stack.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use contract::marker::{BACKTRACE, BacktraceFrame};
use serde_json::Value;

/// Frames followed per vCPU.
const MAX_FRAMES: u32 = 24;

/// Where a run's QMP socket lives: a short path under the system's
/// temporary directory (a Unix socket path must fit in 108 bytes; the
/// run directory may be deeper than that).
pub fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pcs-qmp-{}-{tag}.sock", std::process::id()))
}

/// One vCPU as QEMU saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcpu {
    pub index: usize,
    pub rip: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub rflags: u64,
    /// Halted (`hlt`), waiting for an interrupt.
    pub halted: bool,
    /// Return addresses of the frame chain from `rbp`, innermost first.
    pub callers: Vec<u64>,
}

impl Vcpu {
    pub fn interrupts_on(&self) -> bool {
        self.rflags & (1 << 9) != 0
    }

    /// The vCPU as console lines: a heading, then a backtrace in the
    /// kernel's format (frame 0 is RIP).
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "[host] cpu{}: RIP={:#x} RSP={:#x} RBP={:#x} RFLAGS={:#x} (interrupts {}){}",
            self.index,
            self.rip,
            self.rsp,
            self.rbp,
            self.rflags,
            if self.interrupts_on() { "on" } else { "off" },
            if self.halted { ", halted" } else { "" }
        )];
        v.push(BACKTRACE.to_string());
        let frames = std::iter::once(self.rip).chain(self.callers.iter().copied());
        for (depth, addr) in frames.enumerate() {
            v.push(
                BacktraceFrame {
                    depth: depth as u32,
                    addr,
                }
                .to_string(),
            );
        }
        v
    }
}

/// A QMP connection, capabilities negotiated.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> io::Result<Qmp> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut q = Qmp {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        // The greeting, then capabilities negotiation.
        q.read_reply(true)?;
        q.execute(&serde_json::json!({ "execute": "qmp_capabilities" }))?;
        Ok(q)
    }

    /// Reads lines until a reply (skipping asynchronous events).
    fn read_reply(&mut self, greeting: bool) -> io::Result<Value> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::other("QMP: connection closed"));
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| io::Error::other(format!("QMP: bad reply {line:?}: {e}")))?;
            if greeting && v.get("QMP").is_some() {
                return Ok(v);
            }
            if let Some(e) = v.get("error") {
                return Err(io::Error::other(format!("QMP error: {e}")));
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
        }
    }

    fn execute(&mut self, cmd: &Value) -> io::Result<Value> {
        writeln!(self.writer, "{cmd}")?;
        self.read_reply(false)
    }

    /// A human monitor command's text output.
    fn hmp(&mut self, line: &str) -> io::Result<String> {
        let r = self.execute(&serde_json::json!({
            "execute": "human-monitor-command",
            "arguments": { "command-line": line }
        }))?;
        Ok(r.as_str().unwrap_or_default().to_string())
    }
}

/// Every vCPU's registers and frame chain, from the QEMU listening on
/// `socket`. The guest keeps running meanwhile (it is stuck anyway); a
/// frame that cannot be read ends that vCPU's chain.
pub fn dump_vcpus(socket: &Path) -> io::Result<Vec<Vcpu>> {
    let mut q = Qmp::connect(socket)?;
    let regs = q.hmp("info registers -a")?;
    let mut cpus = parse_registers(&regs);
    for c in &mut cpus {
        let mut rbp = c.rbp;
        while c.callers.len() < MAX_FRAMES as usize && plausible_frame(rbp) {
            let out = q.hmp(&format!("x /2gx {rbp:#x}"))?;
            let Some((next, ret)) = parse_two_words(&out) else {
                break;
            };
            if ret == 0 {
                break;
            }
            c.callers.push(ret);
            if next <= rbp {
                break;
            }
            rbp = next;
        }
    }
    Ok(cpus)
}

/// A frame pointer worth following: in the kernel (upper) half, aligned.
fn plausible_frame(rbp: u64) -> bool {
    rbp >= 0xffff_8000_0000_0000 && rbp.is_multiple_of(8)
}

/// `info registers -a` output: one `CPU#N` block per vCPU.
pub fn parse_registers(text: &str) -> Vec<Vcpu> {
    let mut out = Vec::new();
    for block in text.split("CPU#").skip(1) {
        let index = block
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(out.len());
        let reg = |name: &str| -> u64 {
            block
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or(0)
        };
        out.push(Vcpu {
            index,
            rip: reg("RIP"),
            rbp: reg("RBP"),
            rsp: reg("RSP"),
            rflags: reg("RFL"),
            halted: reg("HLT") == 1,
            callers: Vec::new(),
        });
    }
    out
}

/// The two words of an `x /2gx ADDR` line: `ADDR: 0x... 0x...`.
fn parse_two_words(text: &str) -> Option<(u64, u64)> {
    let (_, rest) = text.lines().next()?.split_once(':')?;
    let mut words = rest
        .split_whitespace()
        .filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
    Some((words.next()?, words.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of QEMU 7.2's `info registers -a` (two vCPUs, abridged).
    const REGS: &str = "CPU#0\r\n\
        RAX=0000000000000000 RBX=0000000000000001 RCX=0000000000000000 RDX=0000000000000000\r\n\
        RSI=0000000000000000 RDI=0000000000000000 RBP=ffff800000321f40 RSP=ffff800000321f00\r\n\
        RIP=ffff8000000d97ab RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n\
        \r\n\
        CPU#1\r\n\
        RAX=0000000000000000 RBX=0000000000000001 RCX=0000000000000000 RDX=0000000000000000\r\n\
        RSI=0000000000000000 RDI=0000000000000000 RBP=0000000000000000 RSP=ffff800000421f00\r\n\
        RIP=ffff8000000e0000 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n";

    #[test]
    fn registers_of_every_vcpu_are_read() {
        let v = parse_registers(REGS);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].index, v[0].rip), (0, 0xffff_8000_000d_97ab));
        assert_eq!(v[0].rbp, 0xffff_8000_0032_1f40);
        assert!(!v[0].interrupts_on() && !v[0].halted);
        assert!(v[1].interrupts_on() && v[1].halted);
        let lines = v[0].lines();
        assert!(lines[0].contains("cpu0") && lines[0].contains("interrupts off"));
        assert_eq!(lines[1], BACKTRACE);
        assert_eq!(
            BacktraceFrame::parse(&lines[2]).map(|f| f.addr),
            Some(0xffff_8000_000d_97ab)
        );
    }

    #[test]
    fn a_memory_dump_line_gives_two_words() {
        let out = "ffff800000321f40: 0xffff800000321f80 0xffff8000000f9dcf\r\n";
        assert_eq!(
            parse_two_words(out),
            Some((0xffff_8000_0032_1f80, 0xffff_8000_000f_9dcf))
        );
    }
}
