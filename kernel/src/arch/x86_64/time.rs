//! Time: the TSC calibrated against the PIT, a monotonic nanosecond clock,
//! and busy-wait delays.
//!
//! The PIT (8254) runs at a fixed 1 193 182 Hz on every PC, so timing its
//! channel 2 one-shot gives the TSC frequency. After that the TSC is the
//! clock: `now_ns()` scales cycles since boot. Whether the TSC is invariant
//! (constant rate, synchronized across CPUs) is read from CPUID and reported;
//! the SMP tests check that the clocks of all CPUs agree.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Busy-waits `ms` milliseconds on PIT channel 2 and returns the TSC cycles
/// that passed. Works before any interrupt is set up.
fn pit_wait_cycles(ms: u64) -> u64 {
    let count = PIT_HZ * ms / 1000;
    assert!(
        count > 0 && count <= 0xffff,
        "PIT one-shot of {ms} ms does not fit 16 bits"
    );
    let mut ctl = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x42/0x43/0x61 are the PIT and the PC speaker gate on
    // every PC; nothing else in the kernel uses channel 2.
    unsafe {
        let v = ctl.read();
        ctl.write((v & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lo/hi byte, mode 0, binary
        ch2.write(count as u8);
        ch2.write((count >> 8) as u8);
        let start = rdtsc();
        while ctl.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        rdtsc() - start
    }
}

/// Calibrates the TSC (boot CPU, once). Returns the frequency in Hz.
pub fn init() -> u64 {
    // Take the best of three 20 ms windows: a preempted vCPU thread can only
    // make a window longer.
    let cycles = (0..3).map(|_| pit_wait_cycles(20)).min().unwrap();
    let hz = cycles * 50;
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
    hz
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Whether CPUID reports an invariant TSC (leaf 0x8000_0007, EDX bit 8).
pub fn invariant_tsc() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Converts TSC cycles to nanoseconds.
pub fn cycles_to_ns(cycles: u64) -> u64 {
    let hz = tsc_hz().max(1);
    (cycles as u128 * 1_000_000_000 / hz as u128) as u64
}

/// Nanoseconds since calibration; monotonic on each CPU.
pub fn now_ns() -> u64 {
    cycles_to_ns(rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed)))
}

/// Busy-waits at least `us` microseconds.
pub fn delay_us(us: u64) {
    let end = rdtsc() + tsc_hz() / 1_000_000 * us;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
