//! The application-processor trampoline: real mode -> protected mode ->
//! long mode -> the kernel.
//!
//! A CPU woken by a SIPI with vector `v` starts in 16-bit real mode at
//! `CS = v << 8, IP = 0`, so this code runs from a copy placed at a free,
//! page-aligned address `base` below 1 MiB. All addressing is relative to
//! `base`: the 16-bit part uses `DS = CS`; the 32- and 64-bit parts keep
//! `base` in a register. The only absolute values (the far-jump targets, the
//! GDT base, the page tables, the kernel entry and the per-APIC stack table)
//! are patched into the copy's data area by the boot CPU ([`Trampoline::install`]).
//! The Rust function the APs finally call is given to `install` too, so
//! this file does not name the bring-up code that uses it.
//!
//! The first page-table root must be loaded from 32-bit code, so it has to
//! lie below 4 GiB: the boot CPU builds a small PML4 in the pages right after
//! the trampoline. It identity-maps the low 2 MiB (executable: the
//! bootloader's physical-memory map is no-execute) and shares every other
//! top-level entry with the kernel's page table, so that the jump to the
//! kernel's 64-bit entry works; that entry then loads the kernel's real CR3.
//! EFER.NXE is set together with LME, because the kernel's tables use NX.
//!
//! Each AP finds its stack by its own APIC id (CPUID leaf 1), in a table of
//! 256 stack tops in the data area. So a CPU that wakes up late can never
//! run on another CPU's stack, whatever order CPUs start in.

use core::{
    arch::global_asm,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The Rust entry `pcs_ap_entry64` calls, an `extern "C" fn(apic_id: u64) -> !`
/// set by [`Trampoline::install`]. Relaxed: the APs read it only after the
/// boot CPU's INIT/SIPI writes, which x86 orders after this store (as the
/// rest of the trampoline's data; see `smp::init`).
static AP_ENTRY: AtomicUsize = AtomicUsize::new(0);

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 4096
    .global pcs_ap_trampoline_start
    .global pcs_ap_trampoline_end
    .code16
pcs_ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    xorl %ebx, %ebx
    movw %ax, %bx
    shll $4, %ebx
    lgdtl (tr_gdtr - pcs_ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl *(tr_pm_ptr - pcs_ap_trampoline_start)

    .code32
tr_pm:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl (tr_low_cr3 - pcs_ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl *(tr_lm_ptr - pcs_ap_trampoline_start)(%ebx)

    .code64
tr_lm:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl %ebx, %r12d
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    movq %rbx, %rdi
    movq (tr_stacks - pcs_ap_trampoline_start)(%r12, %rbx, 8), %rsp
    movq (tr_kernel_cr3 - pcs_ap_trampoline_start)(%r12), %rsi
    movq (tr_entry - pcs_ap_trampoline_start)(%r12), %rax
    jmpq *%rax

    .balign 16
tr_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
    .quad 0x00AF9A000000FFFF
tr_gdtr:
    .word 31
    .long 0
    .balign 8
tr_pm_ptr:
    .long 0
    .word 0x08
    .balign 8
tr_lm_ptr:
    .long 0
    .word 0x18
    .balign 8
tr_low_cr3:
    .quad 0
tr_kernel_cr3:
    .quad 0
tr_entry:
    .quad 0
tr_stacks:
    .fill 256, 8, 0
pcs_ap_trampoline_end:

    .global pcs_tr_off_gdt, pcs_tr_off_gdtr, pcs_tr_off_pm_ptr, pcs_tr_off_pm
    .global pcs_tr_off_lm_ptr, pcs_tr_off_lm, pcs_tr_off_low_cr3
    .global pcs_tr_off_kernel_cr3, pcs_tr_off_entry, pcs_tr_off_stacks
    .balign 8
pcs_tr_off_gdt: .quad tr_gdt - pcs_ap_trampoline_start
pcs_tr_off_gdtr: .quad tr_gdtr - pcs_ap_trampoline_start
pcs_tr_off_pm_ptr: .quad tr_pm_ptr - pcs_ap_trampoline_start
pcs_tr_off_pm: .quad tr_pm - pcs_ap_trampoline_start
pcs_tr_off_lm_ptr: .quad tr_lm_ptr - pcs_ap_trampoline_start
pcs_tr_off_lm: .quad tr_lm - pcs_ap_trampoline_start
pcs_tr_off_low_cr3: .quad tr_low_cr3 - pcs_ap_trampoline_start
pcs_tr_off_kernel_cr3: .quad tr_kernel_cr3 - pcs_ap_trampoline_start
pcs_tr_off_entry: .quad tr_entry - pcs_ap_trampoline_start
pcs_tr_off_stacks: .quad tr_stacks - pcs_ap_trampoline_start

    .text
    .global pcs_ap_entry64
    // Entered from the trampoline in 64-bit mode on the AP's own stack:
    // rdi = APIC id, rsi = the kernel's CR3.
pcs_ap_entry64:
    movq %rsi, %cr3
    xorl %ebp, %ebp
    call *{ap_entry}(%rip)
    ud2
"#,
    ap_entry = sym AP_ENTRY,
    options(att_syntax)
);

unsafe extern "C" {
    static pcs_ap_trampoline_start: u8;
    static pcs_ap_trampoline_end: u8;
    static pcs_tr_off_gdt: u64;
    static pcs_tr_off_gdtr: u64;
    static pcs_tr_off_pm_ptr: u64;
    static pcs_tr_off_pm: u64;
    static pcs_tr_off_lm_ptr: u64;
    static pcs_tr_off_lm: u64;
    static pcs_tr_off_low_cr3: u64;
    static pcs_tr_off_kernel_cr3: u64;
    static pcs_tr_off_entry: u64;
    static pcs_tr_off_stacks: u64;
    fn pcs_ap_entry64();
}

/// Size of the copied code and data.
pub fn code_len() -> usize {
    // Both symbols are labels in the same section, defined above.
    (&raw const pcs_ap_trampoline_end) as usize - (&raw const pcs_ap_trampoline_start) as usize
}

/// Pages the trampoline needs: code/data, then PML4, PDPT, PD.
pub const PAGES: u64 = 4;

/// A trampoline copy at physical `base`, reachable at `virt` (the kernel's
/// physical-memory mapping of `base`).
pub struct Trampoline {
    pub base: u64,
    virt: *mut u8,
}

impl Trampoline {
    /// Copies the code to `base` and builds the low page tables; an AP
    /// started through it ends in `entry(apic_id)` on its own stack.
    ///
    /// # Safety
    /// `base .. base + PAGES * 4096` must be free RAM below 1 MiB that
    /// nothing else uses while APs start, mapped writable at `virt`.
    pub unsafe fn install(
        base: u64,
        virt: *mut u8,
        kernel_cr3: u64,
        entry: extern "C" fn(u64) -> !,
    ) -> Trampoline {
        assert!(
            base.is_multiple_of(4096) && base + PAGES * 4096 <= 0x10_0000,
            "trampoline at {base:#x}"
        );
        assert!(
            code_len() <= 4096,
            "trampoline code is {} bytes",
            code_len()
        );
        AP_ENTRY.store(entry as usize, Ordering::Relaxed);
        let t = Trampoline { base, virt };
        // SAFETY: the caller guarantees the region is ours; source and
        // destination do not overlap (the kernel image is above 1 MiB).
        unsafe {
            core::ptr::write_bytes(virt, 0, (PAGES * 4096) as usize);
            core::ptr::copy_nonoverlapping(&raw const pcs_ap_trampoline_start, virt, code_len());
        }
        // SAFETY: the offsets come from the assembler and lie within the
        // copied code (checked against code_len by `put`).
        unsafe {
            t.put32(pcs_tr_off_gdtr + 2, (base + pcs_tr_off_gdt) as u32);
            t.put32(pcs_tr_off_pm_ptr, (base + pcs_tr_off_pm) as u32);
            t.put32(pcs_tr_off_lm_ptr, (base + pcs_tr_off_lm) as u32);
            t.put64(pcs_tr_off_low_cr3, base + 4096);
            t.put64(pcs_tr_off_kernel_cr3, kernel_cr3);
            t.put64(
                pcs_tr_off_entry,
                pcs_ap_entry64 as *const () as usize as u64,
            );
        }
        // Low page tables: PML4 at +1 page, PDPT at +2, PD at +3.
        const P: u64 = 1; // present
        const W: u64 = 2; // writable
        const HUGE: u64 = 0x80;
        // SAFETY: the three pages after the code are part of our region.
        unsafe {
            let pml4 = virt.add(4096) as *mut u64;
            let pdpt = virt.add(2 * 4096) as *mut u64;
            let pd = virt.add(3 * 4096) as *mut u64;
            let kernel_pml4 =
                (crate::arch::x86_64::paging::phys_to_virt(kernel_cr3 & !0xfff)) as *const u64;
            for i in 1..512 {
                pml4.add(i)
                    .write_volatile(kernel_pml4.add(i).read_volatile());
            }
            pml4.write_volatile((base + 2 * 4096) | P | W);
            pdpt.write_volatile((base + 3 * 4096) | P | W);
            // 2 MiB identity page at 0, executable (NX clear).
            pd.write_volatile(P | W | HUGE);
        }
        t
    }

    /// Publishes the stack top for the CPU with `apic_id`.
    pub fn set_stack(&self, apic_id: u32, top: u64) {
        assert!(
            apic_id < 256,
            "APIC id {apic_id} does not fit the trampoline's stack table"
        );
        // SAFETY: the table holds 256 entries inside the copy.
        unsafe { self.put64(pcs_tr_off_stacks + 8 * apic_id as u64, top) }
    }

    /// SIPI vector: the page number of `base`.
    pub fn vector(&self) -> u8 {
        (self.base >> 12) as u8
    }

    unsafe fn put32(&self, off: u64, v: u32) {
        assert!(off as usize + 4 <= code_len());
        // SAFETY: in bounds (checked) of our copy; unaligned-safe write.
        unsafe { (self.virt.add(off as usize) as *mut u32).write_unaligned(v) }
    }

    unsafe fn put64(&self, off: u64, v: u64) {
        assert!(off as usize + 8 <= code_len());
        // SAFETY: as in put32.
        unsafe { (self.virt.add(off as usize) as *mut u64).write_unaligned(v) }
    }
}
