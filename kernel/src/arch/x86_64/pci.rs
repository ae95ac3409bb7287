//! PCI configuration space through the legacy port mechanism (#1), and
//! enumeration of the buses behind the host bridge.
//!
//! Mental model: every PCI function has 256 bytes of configuration space
//! (vendor/device ids, class, BARs, capabilities, the interrupt line).
//! QEMU's `pc` machine (i440FX) has no memory-mapped ECAM window, so the
//! space is reached through two I/O ports: write the address of a 32-bit
//! register (enable bit, bus, device, function, offset) to `0xcf8`, then
//! read or write the register at `0xcfc`. The two accesses form one
//! transaction, so every access takes [`CONFIG_LOCK`]: without it a CPU
//! could read the register another CPU selected.
//!
//! [`PortCam`] implements virtio-drivers' `ConfigurationAccess` on top of
//! these ports, so its `PciRoot` enumerates buses and its `PciTransport`
//! finds a virtio device's capabilities. [`enumerate`] walks bus 0 and,
//! through every PCI-to-PCI bridge, the buses behind it.

use alloc::vec::Vec;
use core::fmt;

use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, HeaderType, PciRoot,
};
use x86_64::instructions::port::Port;

use crate::sync::IrqMutex;

/// The address port of configuration mechanism #1.
const CONFIG_ADDRESS: u16 = 0xcf8;
/// The data port: the selected 32-bit register.
const CONFIG_DATA: u16 = 0xcfc;

/// Offset of the command (low half) and status (high half) registers.
pub const COMMAND: u8 = 0x04;
/// Offset of the word holding the interrupt line (byte 0) and pin (byte 1).
pub const INTERRUPT: u8 = 0x3c;
/// Command register: the function may not assert INTx.
pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
/// Command register: decode I/O BARs, memory BARs, and master the bus
/// (DMA).
pub const COMMAND_IO: u32 = 1 << 0;
pub const COMMAND_MEMORY: u32 = 1 << 1;
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// Serialises the address-then-data pair of every configuration access.
static CONFIG_LOCK: IrqMutex<()> = IrqMutex::new(());

fn address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    0x8000_0000
        | (bus as u32) << 16
        | ((device as u32) & 0x1f) << 11
        | ((function as u32) & 0x7) << 8
        | (offset as u32 & 0xfc)
}

/// Reads the 32-bit configuration register at `offset` (rounded down to a
/// multiple of 4) of bus/device/function.
pub fn read(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: ports 0xcf8/0xcfc are configuration mechanism #1, present on
    // every PC chipset QEMU emulates; reading a register has no side
    // effect on the functions we use, and the lock keeps the pair whole.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address(bus, device, function, offset));
        Port::<u32>::new(CONFIG_DATA).read()
    }
}

/// Writes the 32-bit configuration register at `offset` (rounded down to a
/// multiple of 4).
pub fn write(bus: u8, device: u8, function: u8, offset: u8, value: u32) {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: as in `read`; the callers write registers whose meaning they
    // know (command register, BARs through virtio-drivers).
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address(bus, device, function, offset));
        Port::<u32>::new(CONFIG_DATA).write(value)
    }
}

/// Configuration mechanism #1 as virtio-drivers' configuration access.
/// Zero-sized: the ports and the lock are global.
#[derive(Debug, Clone, Copy)]
pub struct PortCam;

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, register_offset: u8) -> u32 {
        read(df.bus, df.device, df.function, register_offset)
    }

    fn write_word(&mut self, df: DeviceFunction, register_offset: u8, data: u32) {
        write(df.bus, df.device, df.function, register_offset, data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        // Every access takes CONFIG_LOCK, so clones cannot tear each
        // other's transactions; what they write is the callers' business.
        PortCam
    }
}

/// The PCI root complex as virtio-drivers sees it.
pub fn root() -> PciRoot<PortCam> {
    PciRoot::new(PortCam)
}

/// One function found by [`enumerate`].
#[derive(Debug, Clone)]
pub struct Function {
    pub at: DeviceFunction,
    pub info: DeviceFunctionInfo,
    /// Interrupt line register: the ISA IRQ the firmware routed INTx to
    /// (0xff: none).
    pub irq_line: u8,
    /// Interrupt pin register: 1..=4 for INTA..INTD, 0 if none.
    pub irq_pin: u8,
}

/// Every function on bus 0 and on the buses behind PCI-to-PCI bridges, in
/// bus, device, function order of discovery.
pub fn enumerate() -> Vec<Function> {
    let root = root();
    let mut found = Vec::new();
    let mut buses = alloc::vec![0u8];
    let mut seen = [false; 256];
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[bus as usize], true) {
            continue;
        }
        for (at, info) in root.enumerate_bus(bus) {
            let int = read(at.bus, at.device, at.function, INTERRUPT);
            if info.header_type == HeaderType::PciPciBridge {
                // Byte 1 of register 0x18: the bridge's secondary bus.
                let secondary = (read(at.bus, at.device, at.function, 0x18) >> 8) as u8;
                if secondary != 0 {
                    buses.push(secondary);
                }
            }
            found.push(Function {
                at,
                info,
                irq_line: int as u8,
                irq_pin: (int >> 8) as u8,
            });
        }
    }
    found
}

/// A few words for a class code, for the boot log.
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x01, 0x00) => "SCSI storage",
        (0x01, 0x01) => "IDE controller",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "NVMe controller",
        (0x01, _) => "mass storage",
        (0x02, _) => "network",
        (0x03, _) => "display",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI-to-PCI bridge",
        (0x06, 0x80) => "bridge (other)",
        (0x06, _) => "bridge",
        (0x0c, 0x03) => "USB controller",
        (0x0c, _) => "serial bus",
        (0xff, _) => "unassigned class",
        _ => "other",
    }
}

impl fmt::Display for Function {
    /// `00:03.0 1af4:1001 class 01.00.00 (SCSI storage) INTA# -> IRQ 11`
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let i = &self.info;
        write!(
            f,
            "{:02x}:{:02x}.{} {:04x}:{:04x} class {:02x}.{:02x}.{:02x} ({})",
            self.at.bus,
            self.at.device,
            self.at.function,
            i.vendor_id,
            i.device_id,
            i.class,
            i.subclass,
            i.prog_if,
            class_name(i.class, i.subclass)
        )?;
        if (1..=4).contains(&self.irq_pin) {
            write!(f, " INT{}#", (b'A' + self.irq_pin - 1) as char)?;
            if self.irq_line != 0xff {
                write!(f, " -> IRQ {}", self.irq_line)?;
            }
        }
        Ok(())
    }
}
