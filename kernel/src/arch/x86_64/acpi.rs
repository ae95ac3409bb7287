//! CPU discovery from ACPI's MADT, through the `acpi` crate.
//!
//! We need the local APIC address and the list of *enabled* processors
//! (QEMU lists `maxcpus` slots, the absent ones with the enabled bit clear;
//! an "online capable" CPU is not started either). APIC ids need not be
//! contiguous. I/O APICs and interrupt source overrides are recorded for
//! the boot report and handed to `ioapic`, which routes device interrupts.
//!
//! All ACPI tables are reachable through the bootloader's physical-memory
//! mapping, so "mapping" a region is an address computation.

use core::ptr::NonNull;

use acpi::{
    AcpiTables, Handler, PciAddress, PhysicalMapping,
    sdt::madt::{Madt, MadtEntry},
};
use x86_64::instructions::port::Port;

use super::{paging, pci, time};
use crate::config::MAX_CPUS;

#[derive(Clone, Copy)]
struct PhysMap;

impl Handler for PhysMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = paging::phys_to_virt(physical_address as u64) as *mut T;
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(virt).expect("physical map at 0"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }
    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    // The memory, port and PCI accessors below serve AML, which we do not
    // interpret; they are implemented plainly rather than left to panic.
    fn read_u8(&self, a: usize) -> u8 {
        // SAFETY: the acpi crate passes physical addresses of ACPI regions.
        unsafe { (paging::phys_to_virt(a as u64) as *const u8).read_volatile() }
    }
    fn read_u16(&self, a: usize) -> u16 {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *const u16).read_volatile() }
    }
    fn read_u32(&self, a: usize) -> u32 {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *const u32).read_volatile() }
    }
    fn read_u64(&self, a: usize) -> u64 {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *const u64).read_volatile() }
    }
    fn write_u8(&self, a: usize, v: u8) {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *mut u8).write_volatile(v) }
    }
    fn write_u16(&self, a: usize, v: u16) {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *mut u16).write_volatile(v) }
    }
    fn write_u32(&self, a: usize, v: u32) {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *mut u32).write_volatile(v) }
    }
    fn write_u64(&self, a: usize, v: u64) {
        // SAFETY: as above.
        unsafe { (paging::phys_to_virt(a as u64) as *mut u64).write_volatile(v) }
    }
    fn read_io_u8(&self, p: u16) -> u8 {
        // SAFETY: port I/O requested by ACPI.
        unsafe { Port::new(p).read() }
    }
    fn read_io_u16(&self, p: u16) -> u16 {
        // SAFETY: as above.
        unsafe { Port::new(p).read() }
    }
    fn read_io_u32(&self, p: u16) -> u32 {
        // SAFETY: as above.
        unsafe { Port::new(p).read() }
    }
    fn write_io_u8(&self, p: u16, v: u8) {
        // SAFETY: as above.
        unsafe { Port::new(p).write(v) }
    }
    fn write_io_u16(&self, p: u16, v: u16) {
        // SAFETY: as above.
        unsafe { Port::new(p).write(v) }
    }
    fn write_io_u32(&self, p: u16, v: u32) {
        // SAFETY: as above.
        unsafe { Port::new(p).write(v) }
    }
    fn read_pci_u8(&self, a: PciAddress, off: u16) -> u8 {
        (pci_read(a, off & !3) >> ((off & 3) * 8)) as u8
    }
    fn read_pci_u16(&self, a: PciAddress, off: u16) -> u16 {
        (pci_read(a, off & !3) >> ((off & 2) * 8)) as u16
    }
    fn read_pci_u32(&self, a: PciAddress, off: u16) -> u32 {
        pci_read(a, off)
    }
    fn write_pci_u8(&self, a: PciAddress, off: u16, v: u8) {
        let shift = (off & 3) * 8;
        let old = pci_read(a, off & !3) & !(0xff << shift);
        pci_write(a, off & !3, old | (v as u32) << shift)
    }
    fn write_pci_u16(&self, a: PciAddress, off: u16, v: u16) {
        let shift = (off & 2) * 8;
        let old = pci_read(a, off & !3) & !(0xffff << shift);
        pci_write(a, off & !3, old | (v as u32) << shift)
    }
    fn write_pci_u32(&self, a: PciAddress, off: u16, v: u32) {
        pci_write(a, off, v)
    }
    fn nanos_since_boot(&self) -> u64 {
        time::now_ns()
    }
    fn stall(&self, us: u64) {
        time::delay_us(us)
    }
    fn sleep(&self, ms: u64) {
        time::delay_us(ms * 1000)
    }
}

/// Configuration space of `a` through the port mechanism (`pci`); ACPI's
/// segment is always 0 on the machines we run on.
fn pci_read(a: PciAddress, off: u16) -> u32 {
    pci::read(a.bus(), a.device(), a.function(), off as u8)
}
fn pci_write(a: PciAddress, off: u16, v: u32) {
    pci::write(a.bus(), a.device(), a.function(), off as u8, v)
}

/// What the MADT told us.
pub struct Platform {
    pub lapic_phys: u64,
    /// APIC ids of the enabled processors, boot CPU included, in MADT order.
    pub apic_ids: [u32; MAX_CPUS],
    pub ncpus: usize,
    /// Enabled processors beyond MAX_CPUS, which we do not start.
    pub dropped: usize,
    pub disabled_slots: usize,
    /// The I/O APICs, in MADT order (at most [`MAX_IOAPICS`]).
    pub ioapic_list: [Option<IoApicEntry>; MAX_IOAPICS],
    pub ioapics: usize,
    /// ISA interrupt source overrides (at most [`MAX_OVERRIDES`]).
    pub override_list: [Option<IrqOverride>; MAX_OVERRIDES],
    pub overrides: usize,
}

/// I/O APICs we keep track of (QEMU has one).
pub const MAX_IOAPICS: usize = 8;
/// Interrupt source overrides we keep (one per ISA IRQ at most).
pub const MAX_OVERRIDES: usize = 16;

/// One I/O APIC of the MADT.
#[derive(Clone, Copy, Debug)]
pub struct IoApicEntry {
    pub id: u8,
    /// Physical address of its register window.
    pub phys: u64,
    /// The first global system interrupt (GSI) its pins carry.
    pub gsi_base: u32,
}

/// An interrupt source override: ISA IRQ `isa_irq` arrives as `gsi`, with
/// the MPS INTI `flags` (bits 1:0 polarity, 3:2 trigger mode; 0 in a field
/// means "as the bus says").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// Parses the MADT reached from the RSDP at physical `rsdp`.
pub fn discover(rsdp: u64) -> Result<Platform, &'static str> {
    // SAFETY: the bootloader reports the RSDP's physical address, and all
    // physical memory is mapped (see PhysMap).
    let tables =
        unsafe { AcpiTables::from_rsdp(PhysMap, rsdp as usize) }.map_err(|_| "bad RSDP/RSDT")?;
    let madt = tables.find_table::<Madt>().ok_or("no MADT")?;
    let madt = madt.get();
    let mut p = Platform {
        lapic_phys: madt.local_apic_address as u64,
        apic_ids: [0; MAX_CPUS],
        ncpus: 0,
        dropped: 0,
        disabled_slots: 0,
        ioapic_list: [None; MAX_IOAPICS],
        ioapics: 0,
        override_list: [None; MAX_OVERRIDES],
        overrides: 0,
    };
    let add = |p: &mut Platform, id: u32, flags: u32| {
        if flags & 1 == 0 {
            p.disabled_slots += 1;
        } else if p.ncpus < MAX_CPUS {
            p.apic_ids[p.ncpus] = id;
            p.ncpus += 1;
        } else {
            p.dropped += 1;
        }
    };
    for e in madt.entries() {
        match e {
            MadtEntry::LocalApic(l) => add(&mut p, l.apic_id as u32, { l.flags }),
            MadtEntry::LocalX2Apic(l) => add(&mut p, { l.x2apic_id }, { l.flags }),
            MadtEntry::IoApic(a) => {
                if p.ioapics < MAX_IOAPICS {
                    p.ioapic_list[p.ioapics] = Some(IoApicEntry {
                        id: a.io_apic_id,
                        phys: { a.io_apic_address } as u64,
                        gsi_base: { a.global_system_interrupt_base },
                    });
                }
                p.ioapics += 1;
            }
            MadtEntry::InterruptSourceOverride(o) => {
                // Bus 0 is ISA, the only bus overrides are defined for.
                if o.bus == 0 && p.overrides < MAX_OVERRIDES {
                    p.override_list[p.overrides] = Some(IrqOverride {
                        isa_irq: o.irq,
                        gsi: { o.global_system_interrupt },
                        flags: { o.flags },
                    });
                }
                p.overrides += 1;
            }
            MadtEntry::LocalApicAddressOverride(o) => p.lapic_phys = o.local_apic_address,
            _ => {}
        }
    }
    if p.ncpus == 0 {
        return Err("MADT lists no enabled processor");
    }
    Ok(p)
}
