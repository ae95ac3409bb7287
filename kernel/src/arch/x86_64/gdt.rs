//! Per-CPU GDT and TSS. Each CPU needs its own TSS (the busy bit, and its own
//! IST stacks); the IDT is shared.
//!
//! IST stacks give the handlers for faults that mean "the current stack can
//! no longer be trusted" a known-good stack: a double fault (typically a
//! kernel stack overflow into the guard page), NMI (may arrive anywhere,
//! including mid-switch) and machine check.

use core::{cell::UnsafeCell, ptr::addr_of};

use x86_64::{
    VirtAddr,
    instructions::{
        segmentation::{CS, DS, ES, SS, Segment},
        tables::load_tss,
    },
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector},
        tss::TaskStateSegment,
    },
};

pub const DOUBLE_FAULT_IST: u16 = 0;
pub const NMI_IST: u16 = 1;
pub const MACHINE_CHECK_IST: u16 = 2;
const IST_COUNT: usize = 3;
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// Memory for one CPU's IST stacks. The CPU writes it behind the compiler's
/// back, hence the `UnsafeCell` (keeps it out of read-only sections).
#[repr(C, align(16))]
pub struct IstStacks(UnsafeCell<[[u8; IST_STACK_SIZE]; IST_COUNT]>);

// SAFETY: Rust code never reads or writes the stacks; only the CPU does, when
// it switches to them on an exception.
unsafe impl Sync for IstStacks {}

impl IstStacks {
    pub const fn new() -> Self {
        IstStacks(UnsafeCell::new([[0; IST_STACK_SIZE]; IST_COUNT]))
    }
}

/// One CPU's descriptor tables. Must live forever once loaded (`'static`).
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

impl CpuTables {
    pub const fn new() -> Self {
        CpuTables {
            gdt: GlobalDescriptorTable::new(),
            tss: TaskStateSegment::new(),
        }
    }

    /// Fills in the TSS's IST pointers from `stacks` and loads GDT, segment
    /// registers and TSS on the calling CPU.
    pub fn load(&'static mut self, stacks: &'static IstStacks) {
        let base = VirtAddr::from_ptr(stacks.0.get());
        // Indexing, not iter_mut: the TSS is a packed struct, so no
        // reference into its array may be taken.
        #[allow(clippy::needless_range_loop)]
        for i in 0..IST_COUNT {
            // Stacks grow down: the IST entry is the end of stack `i`.
            self.tss.interrupt_stack_table[i] = base + ((i + 1) * IST_STACK_SIZE) as u64;
        }
        let code = self.gdt.append(Descriptor::kernel_code_segment());
        let data = self.gdt.append(Descriptor::kernel_data_segment());
        // SAFETY: `self` is 'static, so the TSS outlives the GDT entry that
        // points at it.
        let tss_sel: SegmentSelector = self
            .gdt
            .append(Descriptor::tss_segment(unsafe { &*addr_of!(self.tss) }));
        let gdt: &'static GlobalDescriptorTable = &self.gdt;
        gdt.load();
        // SAFETY: the selectors come from the GDT just loaded: a 64-bit code
        // segment, a data segment and an available TSS.
        unsafe {
            CS::set_reg(code);
            SS::set_reg(data);
            DS::set_reg(data);
            ES::set_reg(data);
            load_tss(tss_sel);
        }
    }
}
