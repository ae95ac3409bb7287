//! The I/O APIC: routing device interrupt lines to a vector on one CPU.
//!
//! Mental model: a device asserts an interrupt *line*; the I/O APIC has one
//! input pin per global system interrupt (GSI) and a 64-bit *redirection
//! entry* per pin saying what to do when the pin is active: which vector to
//! send, to which local APIC, edge or level triggered, active high or low,
//! and whether the pin is masked. The ACPI MADT lists each I/O APIC with
//! its register window and the first GSI it carries, plus *interrupt source
//! overrides*: ISA IRQ n arrives on GSI g with such a polarity and trigger
//! mode.
//!
//! The registers are reached indirectly: write a register index to
//! IOREGSEL (offset 0x00), then read or write IOWIN (offset 0x10). The pair
//! is one transaction, so every access holds [`LOCK`]. The window is
//! memory-mapped device memory, mapped uncached like the local APIC's.
//!
//! Level-triggered lines (PCI INTx) follow a handshake: when the pin goes
//! active the I/O APIC sends the vector and sets the entry's *remote IRR*
//! bit; it sends nothing more for that pin until the local APIC's EOI for
//! that vector comes back (the EOI broadcast of a level-triggered vector)
//! and clears remote IRR. If the line is still active then, the interrupt
//! is sent again. A handler must therefore quiet the device (acknowledge
//! it) *before* its EOI, or it is called again at once.
//!
//! PCI lines on QEMU's `pc` machine: the firmware writes the ISA IRQ that
//! each PIIX PIRQ link is routed to into the function's interrupt line
//! register, and QEMU wires ISA IRQ n to I/O APIC pin n. The PIIX turns
//! the active-low INTx wire into an active-high ISA line, and QEMU's MADT
//! says so: an override for each PCI link IRQ (5, 9, 10, 11) with the same
//! GSI and flags 0xd, active high, level triggered. [`pci_route`] honours
//! the override; a line without one is taken as PCI defines INTx, level
//! triggered and active low.
//!
//! What was checked empirically (QEMU 7.2, TCG, `-M pc`; the virtio-blk
//! disk on IRQ 11): programmed as the override says, every interrupt finds
//! its entry's remote IRR set before our EOI (the I/O APIC treats the line
//! as level triggered and waits for the EOI) and clear afterwards, and no
//! interrupt finds the device idle (`block.interrupt_routing`). Inverting
//! the polarity bit changed nothing: QEMU's emulated I/O APIC ignores it
//! (the device model already drives the pin active high), so TCG cannot
//! tell a wrong polarity; KVM's in-kernel I/O APIC does honour it, which
//! is one more reason to follow the MADT rather than a guess. Programming
//! the line edge-triggered also happened to work, because the ISR read
//! lowers the line at once and each new completion raises a fresh edge;
//! level is still what the MADT says and what cannot lose an interrupt.

use core::{
    fmt,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};

use volatile::VolatilePtr;

use super::{
    acpi::{IrqOverride, MAX_IOAPICS, MAX_OVERRIDES, Platform},
    paging,
};
use crate::sync::IrqMutex;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Register 1: version in bits 7:0, index of the last redirection entry
/// in bits 23:16.
const REG_VERSION: u32 = 0x01;
/// Register 0x10 + 2n: low half of redirection entry n; 0x11 + 2n: high.
const REG_REDIRECTION: u32 = 0x10;

/// Redirection entry bits (low half; the destination APIC id is in bits
/// 63:56).
pub mod rte {
    /// Bit 13: the pin is active low.
    pub const ACTIVE_LOW: u64 = 1 << 13;
    /// Bit 14: a level-triggered interrupt was accepted and its EOI has
    /// not come back yet.
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Bit 15: level triggered (0 = edge).
    pub const LEVEL: u64 = 1 << 15;
    /// Bit 16: masked.
    pub const MASKED: u64 = 1 << 16;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    ActiveHigh,
    ActiveLow,
}

/// Where a device line arrives and how to program it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub gsi: u32,
    pub trigger: Trigger,
    pub polarity: Polarity,
    /// The MADT override this came from, if any.
    pub from_override: Option<IrqOverride>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "GSI {} {}, {}",
            self.gsi,
            match self.trigger {
                Trigger::Edge => "edge",
                Trigger::Level => "level",
            },
            match self.polarity {
                Polarity::ActiveHigh => "active high",
                Polarity::ActiveLow => "active low",
            }
        )?;
        match self.from_override {
            Some(o) => write!(
                f,
                " (MADT override IRQ{} -> GSI {} flags {:#x})",
                o.isa_irq, o.gsi, o.flags
            ),
            None => f.write_str(" (no MADT override: PCI default)"),
        }
    }
}

/// Why an interrupt could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No I/O APIC carries this GSI.
    NoSuchGsi(u32),
    /// [`init`] found no I/O APIC.
    NoIoApic,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RouteError::NoSuchGsi(g) => write!(f, "no I/O APIC carries GSI {g}"),
            RouteError::NoIoApic => f.write_str("no I/O APIC (MADT lists none)"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct IoApic {
    id: u8,
    /// Virtual address of the register window (physical map, uncached).
    base: u64,
    gsi_base: u32,
    pins: u32,
}

/// What [`init`] found. Written once by the boot CPU before any device is
/// routed; read under [`LOCK`] or after it.
struct State {
    ioapics: [Option<IoApic>; MAX_IOAPICS],
    overrides: [Option<IrqOverride>; MAX_OVERRIDES],
}

/// The I/O APICs and overrides, and the lock that serialises every
/// IOREGSEL/IOWIN pair.
static LOCK: IrqMutex<State> = IrqMutex::new(State {
    ioapics: [None; MAX_IOAPICS],
    overrides: [None; MAX_OVERRIDES],
});
/// I/O APICs found (for reports).
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn reg(base: u64, offset: u64) -> VolatilePtr<'static, u32> {
    // SAFETY: `base` is an I/O APIC register window mapped (uncached) by
    // `init`; IOREGSEL and IOWIN are 32-bit registers inside it.
    unsafe { VolatilePtr::new(NonNull::new((base + offset) as *mut u32).expect("mapped")) }
}

impl IoApic {
    /// Caller holds LOCK.
    fn read(&self, index: u32) -> u32 {
        reg(self.base, IOREGSEL).write(index);
        reg(self.base, IOWIN).read()
    }

    /// Caller holds LOCK.
    fn write(&self, index: u32, value: u32) {
        reg(self.base, IOREGSEL).write(index);
        reg(self.base, IOWIN).write(value);
    }

    fn read_rte(&self, pin: u32) -> u64 {
        let lo = self.read(REG_REDIRECTION + 2 * pin) as u64;
        let hi = self.read(REG_REDIRECTION + 2 * pin + 1) as u64;
        hi << 32 | lo
    }

    /// Writes entry `pin`. Caller holds LOCK. The high half (destination)
    /// goes first and the low half (with the mask bit) last, so an entry
    /// is never unmasked with a half-written destination.
    fn write_rte(&self, pin: u32, value: u64) {
        self.write(
            REG_REDIRECTION + 2 * pin,
            (value as u32) | rte::MASKED as u32,
        );
        self.write(REG_REDIRECTION + 2 * pin + 1, (value >> 32) as u32);
        self.write(REG_REDIRECTION + 2 * pin, value as u32);
    }
}

/// Maps every I/O APIC of the MADT uncached, masks all its pins, and keeps
/// the interrupt source overrides. Boot CPU, once, before any device is
/// routed. Logs one line per I/O APIC and returns how many it set up.
pub fn init(p: &Platform) -> usize {
    let mut st = LOCK.lock();
    st.overrides = p.override_list;
    let mut n = 0;
    for e in p.ioapic_list.iter().flatten() {
        let base = paging::phys_to_virt(e.phys);
        if !paging::set_uncached(base) {
            log::error!(
                "ioapic: id {} at {:#x} is not in the physical map; ignored",
                e.id,
                e.phys
            );
            continue;
        }
        let mut a = IoApic {
            id: e.id,
            base,
            gsi_base: e.gsi_base,
            pins: 0,
        };
        a.pins = ((a.read(REG_VERSION) >> 16) & 0xff) + 1;
        for pin in 0..a.pins {
            // Masked, edge, vector 0: nothing is routed until a driver
            // asks. (The firmware leaves them masked too; we do not rely
            // on it.)
            a.write_rte(pin, rte::MASKED);
        }
        log::info!(
            "ioapic: id {} at {:#x}, GSIs {}..={}, every pin masked",
            a.id,
            e.phys,
            a.gsi_base,
            a.gsi_base + a.pins - 1
        );
        st.ioapics[n] = Some(a);
        n += 1;
    }
    for o in st.overrides.iter().flatten() {
        log::info!(
            "ioapic: MADT override: ISA IRQ {} -> GSI {}, flags {:#x}",
            o.isa_irq,
            o.gsi,
            o.flags
        );
    }
    COUNT.store(n, Ordering::Relaxed);
    n
}

/// Where PCI INTx routed to ISA IRQ `line` (the interrupt line register)
/// arrives, and how: the MADT override for that IRQ if there is one (its
/// "conforms to the bus" fields read as PCI's level, active low), else
/// GSI `line`, level, active low (PCI INTx).
pub fn pci_route(line: u8) -> Route {
    let ovr = LOCK
        .lock()
        .overrides
        .iter()
        .flatten()
        .find(|o| o.isa_irq == line)
        .copied();
    let (gsi, flags) = match ovr {
        Some(o) => (o.gsi, o.flags),
        None => (line as u32, 0),
    };
    let polarity = match flags & 0b11 {
        0b01 => Polarity::ActiveHigh,
        // 0b11 active low; 0b00 conforms to the bus (PCI: low).
        _ => Polarity::ActiveLow,
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b01 => Trigger::Edge,
        // 0b11 level; 0b00 conforms to the bus (PCI: level).
        _ => Trigger::Level,
    };
    Route {
        gsi,
        trigger,
        polarity,
        from_override: ovr,
    }
}

/// Runs `f` on the I/O APIC carrying `gsi` and its pin, under the lock.
fn with_pin<R>(gsi: u32, f: impl FnOnce(&IoApic, u32) -> R) -> Result<R, RouteError> {
    let st = LOCK.lock();
    if COUNT.load(Ordering::Relaxed) == 0 {
        return Err(RouteError::NoIoApic);
    }
    let a = st
        .ioapics
        .iter()
        .flatten()
        .find(|a| (a.gsi_base..a.gsi_base + a.pins).contains(&gsi))
        .ok_or(RouteError::NoSuchGsi(gsi))?;
    Ok(f(a, gsi - a.gsi_base))
}

/// Programs `route` to deliver `vector` (fixed delivery, physical
/// destination mode) to the local APIC `dest_apic_id`, and unmasks it. The
/// handler for `vector` must be ready: the line may fire at once.
pub fn program(route: &Route, vector: u8, dest_apic_id: u32) -> Result<(), RouteError> {
    let mut v = vector as u64 | (dest_apic_id as u64 & 0xff) << 56;
    if route.trigger == Trigger::Level {
        v |= rte::LEVEL;
    }
    if route.polarity == Polarity::ActiveLow {
        v |= rte::ACTIVE_LOW;
    }
    with_pin(route.gsi, |a, pin| a.write_rte(pin, v))
}

/// The redirection entry of `gsi` as the I/O APIC holds it now (remote
/// IRR and delivery status included), for checks and reports.
pub fn entry(gsi: u32) -> Result<u64, RouteError> {
    with_pin(gsi, |a, pin| a.read_rte(pin))
}
