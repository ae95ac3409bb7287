//! The local APIC: enabling it, end-of-interrupt, inter-processor
//! interrupts, and its timer.
//!
//! Two access modes: x2APIC through MSRs when CPUID offers it (KVM), xAPIC
//! through memory-mapped registers otherwise (QEMU 7.2's TCG has no x2APIC,
//! so the MMIO path is the one that runs here). The MMIO page is mapped
//! uncached and accessed with volatile reads and writes (`volatile` crate).

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicU8, AtomicU64, Ordering},
};

use volatile::VolatilePtr;
use x86_64::registers::model_specific::Msr;

use super::{paging, time};

/// Interrupt vectors owned by the APIC code.
pub const TIMER_VECTOR: u8 = 0xec;
pub const CALL_VECTOR: u8 = 0xf0;
pub const RESCHEDULE_VECTOR: u8 = 0xf1;
/// Test IPI: counted, and answered if the CPU is set up to (ping-pong).
pub const PING_VECTOR: u8 = 0xf2;
pub const ERROR_VECTOR: u8 = 0xfe;
/// Device interrupt lines (`handlers::DEVICE_LINES` of them) start here:
/// priority class 4, below the tick and the IPIs.
pub const DEVICE_VECTOR_BASE: u8 = 0x40;
pub const SPURIOUS_VECTOR: u8 = 0xff;

// Register offsets (xAPIC MMIO); the x2APIC MSR is 0x800 + offset / 16.
const ID: u32 = 0x20;
const EOI: u32 = 0xb0;
const SVR: u32 = 0xf0;
const ESR: u32 = 0x280;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT_TIMER: u32 = 0x320;
const LVT_LINT0: u32 = 0x350;
const LVT_LINT1: u32 = 0x360;
const LVT_ERROR: u32 = 0x370;
const TIMER_INIT: u32 = 0x380;
const TIMER_CURRENT: u32 = 0x390;
const TIMER_DIVIDE: u32 = 0x3e0;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
/// Virtual address of the xAPIC registers.
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks (after the divide-by-16) per second, from calibration.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Initial count programmed for the periodic tick.
static TICK_COUNT: AtomicU64 = AtomicU64::new(0);

/// ICR delivery modes and flags.
pub mod icr {
    pub const FIXED: u32 = 0 << 8;
    pub const NMI: u32 = 4 << 8;
    pub const INIT: u32 = 5 << 8;
    pub const STARTUP: u32 = 6 << 8;
    pub const LEVEL_ASSERT: u32 = 1 << 14;
    pub const DELIVERY_PENDING: u32 = 1 << 12;
    pub const ALL_EXCLUDING_SELF: u32 = 3 << 18;
}

/// Whether the local APIC can send IPIs yet.
pub fn ready() -> bool {
    MODE.load(Ordering::Relaxed) != MODE_NONE
}

fn has_x2apic() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

/// Chooses the access mode and maps the xAPIC page. Boot CPU, once.
pub fn init_global(phys_base: u64) -> &'static str {
    if has_x2apic() {
        MODE.store(MODE_X2APIC, Ordering::Relaxed);
        "x2APIC (MSR)"
    } else {
        let virt = paging::phys_to_virt(phys_base);
        assert!(
            paging::set_uncached(virt),
            "local APIC page {phys_base:#x} is not mapped"
        );
        BASE.store(virt, Ordering::Relaxed);
        MODE.store(MODE_XAPIC, Ordering::Relaxed);
        "xAPIC (MMIO, uncached)"
    }
}

fn reg(offset: u32) -> VolatilePtr<'static, u32> {
    let addr = BASE.load(Ordering::Relaxed) + offset as u64;
    // SAFETY: BASE maps the 4 KiB xAPIC register page (set in init_global)
    // and every offset used here is a 32-bit register inside it.
    unsafe { VolatilePtr::new(NonNull::new(addr as *mut u32).expect("xAPIC not mapped")) }
}

fn read(offset: u32) -> u32 {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: the MSR for a readable register exists in x2APIC mode.
        MODE_X2APIC => unsafe { Msr::new(0x800 + offset / 16).read() as u32 },
        _ => reg(offset).read(),
    }
}

fn write(offset: u32, value: u32) {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; writing APIC registers only affects
        // interrupt delivery, which is what the callers intend.
        MODE_X2APIC => unsafe { Msr::new(0x800 + offset / 16).write(value as u64) },
        _ => reg(offset).write(value),
    }
}

/// Enables the calling CPU's local APIC (x2APIC mode bit if chosen).
pub fn init_cpu() {
    let mut base_msr = Msr::new(0x1b);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the global
    // enable bit (11), and bit 10 for x2APIC, is the documented way in.
    unsafe {
        let mut v = base_msr.read() | (1 << 11);
        if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
            v |= 1 << 10;
        }
        base_msr.write(v);
    }
    write(SVR, 0x100 | SPURIOUS_VECTOR as u32); // software enable
    write(LVT_LINT0, 1 << 16); // masked
    write(LVT_LINT1, 4 << 8); // NMI
    write(LVT_ERROR, ERROR_VECTOR as u32);
    write(ESR, 0);
    write(ESR, 0);
    write(LVT_TIMER, 1 << 16); // masked until the tick starts
    eoi();
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => read(ID),
        _ => read(ID) >> 24,
    }
}

pub fn eoi() {
    write(EOI, 0);
}

/// Reads and clears the error status register.
pub fn error_status() -> u32 {
    write(ESR, 0);
    read(ESR)
}

/// Sends an IPI: `low` holds vector, delivery mode and shorthand;
/// `dest` is an APIC id (ignored with a shorthand).
pub fn send_ipi(dest: u32, low: u32) {
    match MODE.load(Ordering::Relaxed) {
        // SAFETY: the x2APIC ICR is one 64-bit MSR, destination in the high
        // half; writing it sends the IPI.
        MODE_X2APIC => unsafe { Msr::new(0x830).write(((dest as u64) << 32) | low as u64) },
        _ => {
            // The write to ICR_LOW sends, so the destination goes first.
            write(ICR_HIGH, dest << 24);
            write(ICR_LOW, low);
            while read(ICR_LOW) & icr::DELIVERY_PENDING != 0 {
                core::hint::spin_loop();
            }
        }
    }
}

/// Measures the APIC timer rate against the (calibrated) TSC. Boot CPU.
pub fn calibrate_timer() -> u64 {
    write(TIMER_DIVIDE, 0b0011); // divide by 16
    write(LVT_TIMER, 1 << 16); // masked, one-shot
    write(TIMER_INIT, u32::MAX);
    time::delay_us(10_000);
    let elapsed = u32::MAX - read(TIMER_CURRENT);
    write(TIMER_INIT, 0);
    let hz = elapsed as u64 * 100;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// Starts the periodic tick at `hz` on the calling CPU.
pub fn start_tick(hz: u64) {
    let count = (TIMER_HZ.load(Ordering::Relaxed) / hz).clamp(1, u32::MAX as u64);
    TICK_COUNT.store(count, Ordering::Relaxed);
    write(TIMER_DIVIDE, 0b0011);
    write(LVT_TIMER, (1 << 17) | TIMER_VECTOR as u32); // periodic
    write(TIMER_INIT, count as u32);
}
