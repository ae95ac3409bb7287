//! CPU discovery from ACPI's MADT, through the `acpi` crate.
//!
//! We need the local APIC address and the list of *enabled* processors
//! (QEMU lists `maxcpus` slots, the absent ones with the enabled bit clear;
//! an "online capable" CPU is not started either). APIC ids need not be
//! contiguous. I/O APICs and interrupt source overrides are recorded for the
//! boot report.
//!
//! All ACPI tables are reachable through the bootloader's physical-memory
//! mapping, so "mapping" a region is an address computation.

use core::ptr::NonNull;

use acpi::{
    AcpiTables, Handler, PciAddress, PhysicalMapping,
    sdt::madt::{Madt, MadtEntry},
};
use x86_64::instructions::port::Port;

use super::{paging, time};
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

/// PCI configuration mechanism #1 (ports 0xcf8/0xcfc).
fn pci_addr(a: PciAddress, off: u16) -> u32 {
    0x8000_0000
        | (a.bus() as u32) << 16
        | (a.device() as u32) << 11
        | (a.function() as u32) << 8
        | (off as u32 & 0xfc)
}
fn pci_read(a: PciAddress, off: u16) -> u32 {
    // SAFETY: config mechanism #1 is present on QEMU's pc machine.
    unsafe {
        Port::<u32>::new(0xcf8).write(pci_addr(a, off));
        Port::<u32>::new(0xcfc).read()
    }
}
fn pci_write(a: PciAddress, off: u16, v: u32) {
    // SAFETY: as in pci_read.
    unsafe {
        Port::<u32>::new(0xcf8).write(pci_addr(a, off));
        Port::<u32>::new(0xcfc).write(v)
    }
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
    pub ioapics: usize,
    pub overrides: usize,
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
        ioapics: 0,
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
            MadtEntry::IoApic(_) => p.ioapics += 1,
            MadtEntry::InterruptSourceOverride(_) => p.overrides += 1,
            MadtEntry::LocalApicAddressOverride(o) => p.lapic_phys = o.local_apic_address,
            _ => {}
        }
    }
    if p.ncpus == 0 {
        return Err("MADT lists no enabled processor");
    }
    Ok(p)
}
