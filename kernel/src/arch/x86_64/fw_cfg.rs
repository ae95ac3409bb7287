//! Reading a named file from QEMU's fw_cfg device over its I/O ports
//! (docs/specs/fw_cfg.rst in QEMU): selector at 0x510 (16-bit), data at 0x511
//! (8-bit, auto-incrementing). The host passes the kernel's parameter string
//! as the fw_cfg file `contract::FW_CFG_NAME`.
//!
//! Written by hand because it is 40 lines of port I/O; no maintained no_std
//! crate offers just the port-based reader.

use x86_64::instructions::port::Port;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: 0x510 is the fw_cfg selector on QEMU's pc machine; selecting
    // an item has no side effect beyond resetting the data offset.
    unsafe { Port::<u16>::new(SELECTOR).write(key) }
}

fn read_bytes(buf: &mut [u8]) {
    let mut port = Port::<u8>::new(DATA);
    for b in buf {
        // SAFETY: reading fw_cfg's data port only advances the item offset.
        *b = unsafe { port.read() };
    }
}

/// Whether a fw_cfg device answers (its signature reads "QEMU").
fn present() -> bool {
    select(KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Copies the fw_cfg file `name` into `buf`, returning its length, or `None`
/// if there is no fw_cfg device or no such file. A file longer than `buf` is
/// reported as `Err(len)` so the caller can say so instead of truncating.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<Result<usize, usize>> {
    if !present() {
        return None;
    }
    select(KEY_FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    for _ in 0..u32::from_be_bytes(count) {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes(entry[0..4].try_into().unwrap()) as usize;
        let key = u16::from_be_bytes(entry[4..6].try_into().unwrap());
        let raw_name = &entry[8..];
        let len = raw_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw_name.len());
        if &raw_name[..len] == name.as_bytes() {
            if size > buf.len() {
                return Some(Err(size));
            }
            select(key);
            read_bytes(&mut buf[..size]);
            return Some(Ok(size));
        }
    }
    None
}
