//! Starting the application processors (APs).
//!
//! The boot CPU (BSP) finds the enabled processors in the MADT, copies the
//! trampoline below 1 MiB, and starts each AP in turn with the INIT-SIPI-SIPI
//! sequence of the Intel SDM (vol. 3, 10.4.4): INIT, 10 ms, SIPI, 200 us, and
//! a second SIPI only if the AP has not yet shown up. An AP that is not
//! online within [`AP_DEADLINE_MS`] is reported by APIC id and skipped.
//!
//! An AP enters [`ap_main`] on its own 64 KiB stack (with an unmapped guard
//! page below it), takes a per-CPU slot, loads its GDT/TSS/IDT, enables its
//! local APIC and timer, marks itself online, and idles with interrupts on,
//! running whatever function-call IPIs bring it (`crate::smp`).

use core::{
    cell::UnsafeCell,
    sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering},
};

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};

use super::{
    acpi, apic, exceptions, interrupts, ioapic, paging, percpu, time,
    trampoline::{self, Trampoline},
};
use crate::config::MAX_CPUS;

const AP_STACK_SIZE: usize = 64 * 1024;
/// How long the BSP waits for one AP. Generous: under TCG with more vCPUs
/// than host cores, a vCPU thread may wait for a host core.
pub const AP_DEADLINE_MS: u64 = 2_000;

#[repr(C, align(4096))]
struct ApStack(UnsafeCell<[u8; AP_STACK_SIZE + 4096]>);
// SAFETY: each stack is used by exactly one AP (found by APIC id), and by
// nothing else; the BSP only computes addresses.
unsafe impl Sync for ApStack {}
static AP_STACKS: [ApStack; MAX_CPUS] =
    [const { ApStack(UnsafeCell::new([0; AP_STACK_SIZE + 4096])) }; MAX_CPUS];

/// CPU index + 1 for each xAPIC id; 0 = not a CPU we start.
static APIC_TO_INDEX: [AtomicU16; 256] = [const { AtomicU16::new(0) }; 256];
/// CPUs that are online (incremented by each AP, Release; read Acquire).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Enabled processors the MADT lists.
static PRESENT: AtomicUsize = AtomicUsize::new(1);
static TICK_HZ: AtomicU64 = AtomicU64::new(100);
/// Nanoseconds from INIT to "online" per CPU index (0 for the BSP and for
/// CPUs that did not come up), for the benchmarks.
static BRINGUP_NS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

pub fn bringup_ns(index: usize) -> u64 {
    BRINGUP_NS[index].load(Ordering::Relaxed)
}

pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

pub fn present() -> usize {
    PRESENT.load(Ordering::Relaxed)
}

/// What bring-up measured, for the boot log and the benchmarks.
pub struct BringUp {
    pub present: usize,
    pub online: usize,
    /// Nanoseconds from INIT to "online" for each started AP (index = CPU).
    pub ap_ns: [u64; MAX_CPUS],
}

/// The first 4-page run of usable RAM below 1 MiB, above the real-mode IVT
/// and BIOS data area, and page aligned (the SIPI vector is a page number).
fn find_trampoline_base(regions: &MemoryRegions) -> Option<u64> {
    let need = trampoline::PAGES * 4096;
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable && r.start < 0x10_0000)
        .find_map(|r| {
            let start = r.start.max(0x1000).next_multiple_of(4096);
            let end = r.end.min(0x10_0000);
            (start + need <= end).then_some(start)
        })
}

/// Brings up the boot CPU's APIC and timer, then every AP.
pub fn init(
    regions: &MemoryRegions,
    rsdp: Option<u64>,
    tick_hz: u64,
    skip: Option<u32>,
) -> BringUp {
    TICK_HZ.store(tick_hz, Ordering::Relaxed);
    interrupts::disable_legacy_pic();
    let platform = match rsdp.map(acpi::discover) {
        Some(Ok(p)) => p,
        Some(Err(e)) => panic!("ACPI: {e}"),
        None => panic!("ACPI: the bootloader found no RSDP"),
    };
    let mode = apic::init_global(platform.lapic_phys);
    apic::init_cpu();
    let bsp_id = apic::id();
    log::info!(
        "acpi: {} enabled CPUs ({} disabled slots{}), {} I/O APIC(s), {} overrides; local APIC {:#x} via {mode}",
        platform.ncpus,
        platform.disabled_slots,
        if platform.dropped > 0 {
            " ; more than MAX_CPUS, extra ignored"
        } else {
            ""
        },
        platform.ioapics,
        platform.overrides,
        platform.lapic_phys
    );
    ioapic::init(&platform);
    let timer_hz = apic::calibrate_timer();
    log::info!(
        "apic timer: {} Hz after divide-by-16; tick {} Hz",
        timer_hz,
        tick_hz
    );
    apic::start_tick(tick_hz);
    PRESENT.store(platform.ncpus, Ordering::Relaxed);
    APIC_TO_INDEX[bsp_id as usize & 0xff].store(1, Ordering::Relaxed);

    let mut result = BringUp {
        present: platform.ncpus,
        online: 1,
        ap_ns: [0; MAX_CPUS],
    };
    if platform.ncpus == 1 {
        return result;
    }
    let Some(base) = find_trampoline_base(regions) else {
        log::error!(
            "smp: no usable RAM below 1 MiB for the trampoline; running on the boot CPU only"
        );
        return result;
    };
    let cr3 = x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64();
    // SAFETY: `base` is usable RAM below 1 MiB per the boot memory map; the
    // frame allocator never hands out memory below 1 MiB, so it is ours.
    let tramp =
        unsafe { Trampoline::install(base, paging::phys_to_virt(base) as *mut u8, cr3, ap_main) };
    let mut next = 1;
    for &id in &platform.apic_ids[..platform.ncpus] {
        if id == bsp_id {
            continue;
        }
        if id >= 256 {
            log::error!(
                "smp: CPU with APIC id {id} needs x2APIC ids in the trampoline; not started"
            );
            continue;
        }
        let index = next;
        let stack = AP_STACKS[index].0.get() as u64;
        if !paging::unmap_guard_page(stack) {
            log::warn!("smp: could not unmap the guard page of CPU {index}'s stack");
        }
        tramp.set_stack(id, stack + 4096 + AP_STACK_SIZE as u64);
        percpu::cpu(index).apic_id.store(id, Ordering::Relaxed);
        // Release pairs with the AP's Acquire load in `ap_main`: the AP
        // then sees everything the boot CPU did before, among it the
        // interrupt handlers registered in `handlers` before `init`.
        APIC_TO_INDEX[id as usize].store(index as u16 + 1, Ordering::Release);
        // The stack table and the slot above must be visible before the AP
        // reads them: the IPI write is a serializing MMIO store after these
        // plain stores on x86 (stores are not reordered with other stores).
        let t0 = time::now_ns();
        if skip == Some(id) {
            log::warn!(
                "smp: ap_skip={id}: not sending INIT-SIPI-SIPI to APIC id {id} (fault injection)"
            );
        } else {
            apic::send_ipi(id, apic::icr::INIT | apic::icr::LEVEL_ASSERT);
            time::delay_us(10_000);
            apic::send_ipi(id, apic::icr::STARTUP | tramp.vector() as u32);
            time::delay_us(200);
            if !percpu::cpu(index).online.load(Ordering::Acquire) {
                apic::send_ipi(id, apic::icr::STARTUP | tramp.vector() as u32);
            }
        }
        let deadline = t0 + AP_DEADLINE_MS * 1_000_000;
        // Acquire pairs with the AP's Release store of `online`: once seen,
        // everything the AP set up is visible here.
        while !percpu::cpu(index).online.load(Ordering::Acquire) && time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        if percpu::cpu(index).online.load(Ordering::Acquire) {
            result.ap_ns[index] = time::now_ns() - t0;
            BRINGUP_NS[index].store(result.ap_ns[index], Ordering::Relaxed);
            next += 1;
        } else {
            log::error!(
                "smp: CPU with APIC id {id} did not come up within {AP_DEADLINE_MS} ms; continuing without it"
            );
            APIC_TO_INDEX[id as usize].store(0, Ordering::Relaxed);
        }
    }
    result.online = online();
    result
}

/// Rust entry of an AP, called by the trampoline's 64-bit stub on the AP's
/// own stack with its APIC id.
pub extern "C" fn ap_main(apic_id: u64) -> ! {
    // Acquire pairs with the boot CPU's Release store in `init`.
    let index = match APIC_TO_INDEX
        .get(apic_id as usize)
        .map(|i| i.load(Ordering::Acquire))
    {
        Some(i) if i > 0 => i as usize - 1,
        // Not a CPU we started (or given up on): park it.
        _ => super::halt_forever(),
    };
    // SAFETY: slot `index` belongs to this APIC id alone, and this is the
    // CPU's first and only initialisation.
    unsafe { percpu::init_cpu(index, apic_id as u32) };
    let slot = percpu::cpu(index);
    slot.boot_tsc.store(time::rdtsc(), Ordering::Relaxed);
    exceptions::init();
    apic::init_cpu();
    apic::start_tick(TICK_HZ.load(Ordering::Relaxed));
    ONLINE.fetch_add(1, Ordering::Release);
    // Release pairs with the BSP's Acquire load in `init`.
    slot.online.store(true, Ordering::Release);
    idle()
}

/// An AP's boot context: halt until an interrupt, until an idle loop is
/// registered (`handlers::register_idle`), then run that for ever.
pub fn idle() -> ! {
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
        if let Some(f) = super::handlers::idle() {
            f();
        }
    }
}

/// Sends an NMI to every other CPU (the panic path uses it to stop them).
pub fn nmi_all_others() {
    apic::send_ipi(0, apic::icr::NMI | apic::icr::ALL_EXCLUDING_SELF);
}

/// Sends an NMI to CPU `index` (lockup probes).
pub fn send_nmi(index: usize) {
    let id = percpu::cpu(index).apic_id.load(Ordering::Relaxed);
    apic::send_ipi(id, apic::icr::NMI);
}

/// Sends the function-call IPI to CPU `index`.
pub fn send_call_ipi(index: usize) {
    let id = percpu::cpu(index).apic_id.load(Ordering::Relaxed);
    apic::send_ipi(id, apic::icr::FIXED | apic::CALL_VECTOR as u32);
}

/// Sends a fixed IPI with `vector` to CPU `index`.
pub fn send_ipi(index: usize, vector: u8) {
    let id = percpu::cpu(index).apic_id.load(Ordering::Relaxed);
    apic::send_ipi(id, apic::icr::FIXED | vector as u32);
}
