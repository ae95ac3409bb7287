//! Device and IPI interrupt handlers (the vectors in `apic`), and the legacy
//! PIC, which we mask so that only the local APICs deliver interrupts.

use core::sync::atomic::Ordering;

use x86_64::{instructions::port::Port, structures::idt::InterruptStackFrame};

use super::{apic, handlers, percpu};

/// Remaps the 8259 PICs away from the exception vectors (to 0x20..0x30) and
/// masks every line; a spurious PIC interrupt then lands on a harmless
/// vector instead of looking like a double fault.
pub fn disable_legacy_pic() {
    // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the two 8259s of every PC; this
    // is the standard ICW1..ICW4 initialisation followed by a full mask.
    unsafe {
        let (mut c1, mut d1, mut c2, mut d2) = (
            Port::<u8>::new(0x20),
            Port::<u8>::new(0x21),
            Port::<u8>::new(0xa0),
            Port::<u8>::new(0xa1),
        );
        c1.write(0x11);
        c2.write(0x11);
        d1.write(0x20);
        d2.write(0x28);
        d1.write(4);
        d2.write(2);
        d1.write(1);
        d2.write(1);
        d1.write(0xff);
        d2.write(0xff);
    }
}

pub extern "x86-interrupt" fn timer(frame: InterruptStackFrame) {
    let cpu = percpu::cpu_index();
    percpu::cpu(cpu).ticks.fetch_add(1, Ordering::Relaxed);
    apic::eoi();
    // May switch threads: EOI first, so this CPU takes ticks meanwhile.
    handlers::tick(cpu, frame.instruction_pointer.as_u64());
}

/// Device interrupt line `LINE` (vector `DEVICE_VECTOR_BASE + LINE`).
///
/// The handler runs first and the EOI comes after it: for a
/// level-triggered line the EOI is what lets the I/O APIC deliver the line
/// again, so the device must have been acknowledged by then (see
/// `ioapic`). The CPU's in-interrupt depth is raised around the handler so
/// that code it calls can tell it runs in device-interrupt context
/// ([`percpu::in_device_irq`]). Interrupts stay off throughout (interrupt
/// gate), and the handler never switches threads.
pub extern "x86-interrupt" fn device<const LINE: usize>(_frame: InterruptStackFrame) {
    let cpu = percpu::cpu(percpu::cpu_index());
    cpu.device_irqs.fetch_add(1, Ordering::Relaxed);
    // Relaxed: only this CPU reads its own depth, with interrupts off.
    cpu.irq_depth.fetch_add(1, Ordering::Relaxed);
    handlers::device_irq(LINE);
    cpu.irq_depth.fetch_sub(1, Ordering::Relaxed);
    apic::eoi();
}

pub extern "x86-interrupt" fn call_function(_frame: InterruptStackFrame) {
    apic::eoi();
    handlers::call_function();
}

pub extern "x86-interrupt" fn reschedule(frame: InterruptStackFrame) {
    apic::eoi();
    handlers::reschedule(percpu::cpu_index(), frame.instruction_pointer.as_u64());
}

pub extern "x86-interrupt" fn ping(_frame: InterruptStackFrame) {
    let g = percpu::CpuGuard::new();
    let me = percpu::this_cpu(&g);
    // Release pairs with the Acquire load of the waiting CPU: it sees the
    // count only after everything before this IPI's delivery.
    me.pings.fetch_add(1, Ordering::Release);
    let to = me.pong_to.load(Ordering::Relaxed);
    apic::eoi();
    if to != usize::MAX {
        // A fixed IPI to CPU `to`, addressed by its APIC id.
        let id = percpu::cpu(to).apic_id.load(Ordering::Relaxed);
        apic::send_ipi(id, apic::icr::FIXED | apic::PING_VECTOR as u32);
    }
}

pub extern "x86-interrupt" fn apic_error(_frame: InterruptStackFrame) {
    let esr = apic::error_status();
    apic::eoi();
    log::error!("local APIC error, ESR={esr:#x}");
}

pub extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {
    // No EOI for the spurious vector (SDM 10.9).
}

/// Legacy PIC vectors, should one still arrive despite the mask.
pub extern "x86-interrupt" fn legacy_pic(_frame: InterruptStackFrame) {}
