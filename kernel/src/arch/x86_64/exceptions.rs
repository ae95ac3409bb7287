//! The IDT: every CPU exception ends in a report and a failure exit, except
//! a page fault that the registered page-fault handler resolves (demand
//! paging of address spaces, `crate::vm`).
//!
//! Nothing else here tries to recover: an exception in this kernel is a bug
//! (or a deliberate crash test). The report names the exception, its vector, error
//! code, RIP (and CR2 for page faults), the CPU, and the test case that was
//! running, then QEMU exits with `ExitCode::Exception`. The report goes to
//! the fatal path registered in [`handlers`] (the kernel's panic path), or
//! to a minimal one of its own if a fault comes before that. Double faults,
//! NMIs and machine checks run on IST stacks so that even a stack overflow
//! is reported instead of escalating to a triple fault.

use spin::LazyLock;
use x86_64::{
    registers::control::Cr2,
    structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode},
};

use super::{
    apic,
    gdt::{DOUBLE_FAULT_IST, MACHINE_CHECK_IST, NMI_IST},
    handlers, interrupts,
};

static IDT: LazyLock<InterruptDescriptorTable> = LazyLock::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    idt.divide_error.set_handler_fn(divide_error);
    idt.debug.set_handler_fn(debug);
    idt.breakpoint.set_handler_fn(breakpoint);
    idt.overflow.set_handler_fn(overflow);
    idt.bound_range_exceeded
        .set_handler_fn(bound_range_exceeded);
    idt.invalid_opcode.set_handler_fn(invalid_opcode);
    idt.device_not_available
        .set_handler_fn(device_not_available);
    idt.invalid_tss.set_handler_fn(invalid_tss);
    idt.segment_not_present.set_handler_fn(segment_not_present);
    idt.stack_segment_fault.set_handler_fn(stack_segment_fault);
    idt.general_protection_fault
        .set_handler_fn(general_protection_fault);
    idt.page_fault.set_handler_fn(page_fault);
    idt.x87_floating_point.set_handler_fn(x87_floating_point);
    idt.alignment_check.set_handler_fn(alignment_check);
    idt.simd_floating_point.set_handler_fn(simd_floating_point);
    idt.virtualization.set_handler_fn(virtualization);
    idt.cp_protection_exception.set_handler_fn(cp_protection);
    idt.hv_injection_exception.set_handler_fn(hv_injection);
    idt.vmm_communication_exception
        .set_handler_fn(vmm_communication);
    idt.security_exception.set_handler_fn(security_exception);
    for v in 0x20..0x30 {
        idt[v].set_handler_fn(interrupts::legacy_pic);
    }
    idt[apic::TIMER_VECTOR].set_handler_fn(interrupts::timer);
    idt[apic::CALL_VECTOR].set_handler_fn(interrupts::call_function);
    idt[apic::RESCHEDULE_VECTOR].set_handler_fn(interrupts::reschedule);
    idt[apic::PING_VECTOR].set_handler_fn(interrupts::ping);
    idt[apic::ERROR_VECTOR].set_handler_fn(interrupts::apic_error);
    const _: () = assert!(handlers::DEVICE_LINES == 4, "one IDT entry per line below");
    idt[apic::DEVICE_VECTOR_BASE].set_handler_fn(interrupts::device::<0>);
    idt[apic::DEVICE_VECTOR_BASE + 1].set_handler_fn(interrupts::device::<1>);
    idt[apic::DEVICE_VECTOR_BASE + 2].set_handler_fn(interrupts::device::<2>);
    idt[apic::DEVICE_VECTOR_BASE + 3].set_handler_fn(interrupts::device::<3>);
    idt[apic::SPURIOUS_VECTOR].set_handler_fn(interrupts::spurious);
    // SAFETY: each IST index names a stack that `gdt::CpuTables::load` set
    // up in every CPU's TSS before interrupts can arrive.
    unsafe {
        idt.double_fault
            .set_handler_fn(double_fault)
            .set_stack_index(DOUBLE_FAULT_IST);
        idt.non_maskable_interrupt
            .set_handler_fn(nmi)
            .set_stack_index(NMI_IST);
        idt.machine_check
            .set_handler_fn(machine_check)
            .set_stack_index(MACHINE_CHECK_IST);
    }
    idt
});

/// Loads the shared IDT on the calling CPU.
pub fn init() {
    IDT.load();
}

/// Everything known about a fatal exception.
struct Fault<'a> {
    name: &'static str,
    vector: u8,
    error_code: Option<u64>,
    frame: &'a InterruptStackFrame,
    cr2: Option<u64>,
    /// Why the page-fault handler refused the fault, and its region.
    note: Option<(&'static str, Option<(u64, u64)>)>,
}

#[cold]
fn fatal(f: Fault) -> ! {
    handlers::fatal(format_args!(
        "EXCEPTION: {} (vector {}) error_code={} RIP={:#x} CS={:#x} RFLAGS={:#x} RSP={:#x}{}{}",
        f.name,
        f.vector,
        OptHex(f.error_code),
        f.frame.instruction_pointer.as_u64(),
        f.frame.code_segment.0,
        f.frame.cpu_flags.bits(),
        f.frame.stack_pointer.as_u64(),
        CrTwo(f.cr2),
        Note(f.note)
    ))
}

struct Note(Option<(&'static str, Option<(u64, u64)>)>);
impl core::fmt::Display for Note {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.0 {
            Some((why, Some((start, end)))) => {
                write!(f, ": {why} (region [{start:#x}, {end:#x}))")
            }
            Some((why, None)) => write!(f, ": {why}"),
            None => Ok(()),
        }
    }
}

struct OptHex(Option<u64>);
impl core::fmt::Display for OptHex {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.0 {
            Some(c) => write!(f, "{c:#x}"),
            None => f.write_str("none"),
        }
    }
}
struct CrTwo(Option<u64>);
impl core::fmt::Display for CrTwo {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.0 {
            Some(a) => write!(f, " CR2={a:#x}"),
            None => Ok(()),
        }
    }
}

macro_rules! no_error_code {
    ($($fn:ident, $name:literal, $vector:literal;)*) => {$(
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame) {
            fatal(Fault { name: $name, vector: $vector, error_code: None, frame: &frame, cr2: None, note: None })
        }
    )*};
}

macro_rules! with_error_code {
    ($($fn:ident, $name:literal, $vector:literal;)*) => {$(
        extern "x86-interrupt" fn $fn(frame: InterruptStackFrame, code: u64) {
            fatal(Fault { name: $name, vector: $vector, error_code: Some(code), frame: &frame, cr2: None, note: None })
        }
    )*};
}

no_error_code! {
    divide_error, "divide error (#DE)", 0;
    debug, "debug (#DB)", 1;
    breakpoint, "breakpoint (#BP)", 3;
    overflow, "overflow (#OF)", 4;
    bound_range_exceeded, "bound range exceeded (#BR)", 5;
    invalid_opcode, "invalid opcode (#UD)", 6;
    device_not_available, "device not available (#NM)", 7;
    x87_floating_point, "x87 floating point (#MF)", 16;
    simd_floating_point, "SIMD floating point (#XM)", 19;
    virtualization, "virtualization (#VE)", 20;
    hv_injection, "hypervisor injection (#HV)", 28;
}

with_error_code! {
    invalid_tss, "invalid TSS (#TS)", 10;
    segment_not_present, "segment not present (#NP)", 11;
    stack_segment_fault, "stack-segment fault (#SS)", 12;
    general_protection_fault, "general protection fault (#GP)", 13;
    alignment_check, "alignment check (#AC)", 17;
    cp_protection, "control protection (#CP)", 21;
    vmm_communication, "VMM communication (#VC)", 29;
    security_exception, "security exception (#SX)", 30;
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    fatal(Fault {
        name: "double fault (#DF; kernel stack overflow?)",
        vector: 8,
        error_code: Some(code),
        frame: &frame,
        cr2: None,
        note: None,
    })
}

/// NMIs are how a dying CPU stops the others (`smp::nmi_all_others`):
/// once the registered fatal path says a fatal error is being reported, an
/// NMI parks this CPU for good. An NMI the registered NMI handler claims
/// (the watchdog's lockup probe) returns; any other is unexpected and fatal.
extern "x86-interrupt" fn nmi(frame: InterruptStackFrame) {
    if handlers::dying() {
        super::halt_forever();
    }
    let interrupts_on = frame
        .cpu_flags
        .contains(x86_64::registers::rflags::RFlags::INTERRUPT_FLAG);
    if handlers::nmi(frame.instruction_pointer.as_u64(), interrupts_on) {
        return;
    }
    fatal(Fault {
        name: "non-maskable interrupt",
        vector: 2,
        error_code: None,
        frame: &frame,
        cr2: None,
        note: None,
    })
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    fatal(Fault {
        name: "machine check (#MC)",
        vector: 18,
        error_code: None,
        frame: &frame,
        cr2: None,
        note: None,
    })
}

/// Offers the fault to the registered handler (`handlers::page_fault`),
/// which may enable interrupts and sleep (the gate cleared IF; the handler
/// is told whether the faulting context had it set) and must return with
/// interrupts disabled again. A fault it refuses is fatal, with its reason.
extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    // CR2 first: a nested fault (in the handler) would overwrite it.
    let cr2 = Cr2::read_raw();
    let fault = handlers::PageFault {
        addr: cr2,
        code: code.bits(),
        interrupts_were_enabled: frame
            .cpu_flags
            .contains(x86_64::registers::rflags::RFlags::INTERRUPT_FLAG),
    };
    let note = match handlers::page_fault(&fault) {
        handlers::PageFaultOutcome::Handled => {
            debug_assert!(!x86_64::instructions::interrupts::are_enabled());
            return;
        }
        handlers::PageFaultOutcome::Fatal { why, region } => Some((why, region)),
    };
    fatal(Fault {
        name: "page fault (#PF)",
        vector: 14,
        error_code: Some(code.bits()),
        frame: &frame,
        cr2: Some(cr2),
        note,
    })
}
