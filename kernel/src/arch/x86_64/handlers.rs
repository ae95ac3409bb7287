//! What interrupt and exception entry calls: handlers registered at boot.
//!
//! Mental model: the architecture code is the bottom of the kernel. It
//! knows that a timer tick, a function-call IPI or an NMI arrived, not what
//! the scheduler or the panic path make of it, so it names neither. Each
//! subsystem above registers its handler here once, on the boot CPU, and
//! the entry code in `interrupts` and `exceptions` calls whatever is
//! registered:
//!
//! | event                        | registered with            | until then                   |
//! |------------------------------|----------------------------|------------------------------|
//! | local APIC tick              | [`register_tick`]          | ignored (nothing to preempt) |
//! | reschedule IPI               | [`register_reschedule`]    | ignored (nothing to run)     |
//! | function-call IPI            | [`register_call_function`] | fatal: its sender would wait forever |
//! | NMI not from a dying CPU     | [`register_nmi`]           | fatal (unexpected NMI)       |
//! | device interrupt line `n`    | [`register_device_irq`]    | fatal (see below)            |
//! | page fault (#PF)             | [`register_page_fault`]    | fatal (the exception report) |
//! | CPU exception, fatal NMI     | [`register_fatal`]         | a minimal report on COM1, then exit with `ExitCode::Exception` |
//!
//! # Publication
//!
//! Each slot is an atomic function pointer, null until registered. A
//! handler is registered with a Release store and read with an Acquire
//! load, so a CPU that sees the pointer also sees everything the boot CPU
//! did before registering (on x86 both are plain moves). All handlers are
//! registered by `kernel_main` before interrupts are enabled and before
//! `smp::init` starts the first AP: the boot CPU's own interrupts follow
//! the registration in program order, and each AP learns its slot from its
//! `APIC_TO_INDEX` entry, which the boot CPU stores (Release) after the
//! registration and the AP loads (Acquire) first thing in `smp::ap_main`,
//! before it can take any interrupt. So every CPU finds every handler;
//! the defaults above only matter if that boot order is ever broken, and
//! then they fail loudly or do nothing, never hang.
//!
//! Device interrupt lines are the exception to "registered before the APs
//! start": a driver registers its line when it initialises, after SMP
//! bring-up, and only then programs the source (an I/O APIC redirection
//! entry, or the IPIs it sends itself) to raise the line's vector. The
//! Release store of the registration comes before that programming in
//! program order, the interrupt cannot arrive before the programming, and
//! the CPU taking it loads the slot with Acquire. An *unregistered* device
//! line is fatal rather than ignored: only the kernel programs sources, and
//! only after registering, so an unregistered line is a boot-order bug; and
//! a level-triggered line that nobody acknowledges at its device would be
//! delivered again after every EOI, an interrupt storm that hangs the CPU
//! without a word. A report is better than both.

use core::{
    fmt::{self, Write},
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

use super::{
    cpu_index,
    qemu::{ExitCode, exit},
    serial::Serial,
};

/// The tick handler: `(cpu, interrupted rip)`; may switch threads.
pub type TickHandler = fn(usize, u64);
/// The reschedule-IPI handler: `(cpu, interrupted rip)`; may switch
/// threads.
pub type RescheduleHandler = fn(usize, u64);
/// An AP's idle loop, entered from its boot context once registered.
pub type IdleHandler = fn() -> !;
/// The function-call IPI handler: runs this CPU's pending request.
pub type CallFunctionHandler = fn();
/// The NMI handler: `(interrupted rip, interrupted code had RFLAGS.IF
/// set)`; true if the NMI was expected and handled (a lockup probe), false
/// if it is unexplained (then fatal).
pub type NmiHandler = fn(u64, bool) -> bool;
/// The fatal path: reports an exception and ends the run.
pub type FatalHandler = fn(fmt::Arguments) -> !;
/// Whether some CPU is already on the fatal path (an NMI then parks this
/// CPU: it is how the dying CPU stops the others).
pub type DyingHandler = fn() -> bool;
/// A device interrupt line's handler: runs with interrupts off, before the
/// EOI (it must quiet its device first; see `ioapic`), and must not switch
/// threads.
pub type DeviceIrqHandler = fn();

/// Device interrupt lines: line `n` is vector `apic::DEVICE_VECTOR_BASE + n`.
pub const DEVICE_LINES: usize = 4;
/// The page-fault handler: resolves the fault (the instruction is retried
/// on return) or says why it cannot (then the fault is fatal, with that
/// reason in the report).
pub type PageFaultHandler = fn(&PageFault) -> PageFaultOutcome;

/// What the CPU reported for a page fault.
#[derive(Clone, Copy, Debug)]
pub struct PageFault {
    /// The faulting linear address (CR2).
    pub addr: u64,
    /// The error code's bits (x86 `PageFaultErrorCode`).
    pub code: u64,
    /// Whether the faulting context had interrupts enabled (RFLAGS.IF), so
    /// the handler may enable them and sleep.
    pub interrupts_were_enabled: bool,
}

impl PageFault {
    /// Error-code bit 1: the access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// Error-code bit 3: a reserved bit was set in a paging entry.
    pub const RESERVED: u64 = 1 << 3;
    /// Error-code bit 4: an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// A page-fault handler's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFaultOutcome {
    /// Resolved: return and retry the instruction.
    Handled,
    /// Not resolvable: the fault is fatal. `why` (and the region, if one
    /// is involved) go into the exception report.
    Fatal {
        why: &'static str,
        region: Option<(u64, u64)>,
    },
}

/// A function pointer of one of the handler types above.
///
/// # Safety
/// `from_raw` may only be given a pointer that `to_raw` made from a value
/// of the same type.
unsafe trait HandlerFn: Copy {
    fn to_raw(self) -> *mut ();
    /// # Safety
    /// `p` was returned by `to_raw` of this type.
    unsafe fn from_raw(p: *mut ()) -> Self;
}

macro_rules! handler_fn {
    ($($t:ty),*) => {$(
        // SAFETY: `from_raw` turns back into `$t` only what `to_raw` made
        // of a `$t`; function and data pointers have the same size here.
        unsafe impl HandlerFn for $t {
            fn to_raw(self) -> *mut () {
                self as *mut ()
            }
            unsafe fn from_raw(p: *mut ()) -> Self {
                // SAFETY: per the caller's contract, `p` is a `$t` that
                // `to_raw` cast to a data pointer.
                unsafe { core::mem::transmute::<*mut (), $t>(p) }
            }
        }
    )*};
}

// `RescheduleHandler` is the same fn type as `TickHandler`.
handler_fn!(
    TickHandler,
    CallFunctionHandler,
    NmiHandler,
    FatalHandler,
    DyingHandler,
    PageFaultHandler,
    IdleHandler
);
// `DeviceIrqHandler` is `fn()`, the same type as `CallFunctionHandler`,
// whose implementation above serves it.

/// One registered handler of type `F`, or none yet.
struct Slot<F> {
    ptr: AtomicPtr<()>,
    _type: core::marker::PhantomData<F>,
}

impl<F: HandlerFn> Slot<F> {
    const fn new() -> Self {
        Slot {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
            _type: core::marker::PhantomData,
        }
    }

    fn set(&self, f: F) {
        // Release pairs with the Acquire in `get` (see the module docs for
        // how the APs are covered).
        self.ptr.store(f.to_raw(), Ordering::Release);
    }

    fn get(&self) -> Option<F> {
        // Acquire pairs with the Release in `set`.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: only `set` stores into a `Slot<F>`, and only `to_raw` of
        // an `F`; a non-null value is therefore such a pointer.
        (!p.is_null()).then(|| unsafe { F::from_raw(p) })
    }
}

// SAFETY: the slot holds only an atomic pointer; `F` is a marker.
unsafe impl<F> Sync for Slot<F> {}

static TICK: Slot<TickHandler> = Slot::new();
static RESCHEDULE: Slot<RescheduleHandler> = Slot::new();
static CALL_FUNCTION: Slot<CallFunctionHandler> = Slot::new();
static NMI: Slot<NmiHandler> = Slot::new();
static FATAL: Slot<FatalHandler> = Slot::new();
static DYING: Slot<DyingHandler> = Slot::new();
static DEVICE: [Slot<DeviceIrqHandler>; DEVICE_LINES] = [const { Slot::new() }; DEVICE_LINES];
static PAGE_FAULT: Slot<PageFaultHandler> = Slot::new();
static IDLE: Slot<IdleHandler> = Slot::new();

/// Boot: the local APIC tick calls `f(cpu, rip)` after its EOI.
pub fn register_tick(f: TickHandler) {
    TICK.set(f);
}

/// Boot: the reschedule IPI calls `f(cpu, rip)` after its EOI (`rip` was
/// interrupted).
pub fn register_reschedule(f: RescheduleHandler) {
    RESCHEDULE.set(f);
}

/// Boot: an AP's boot context, halted between interrupts, runs `f` from the
/// first interrupt that finds it registered (the scheduler's idle loop,
/// which must cope with a CPU whose scheduler is not running yet).
pub fn register_idle(f: IdleHandler) {
    IDLE.set(f);
}

/// The registered idle loop, if any.
pub(super) fn idle() -> Option<IdleHandler> {
    IDLE.get()
}

/// Boot: the function-call IPI calls `f()` after its EOI.
pub fn register_call_function(f: CallFunctionHandler) {
    CALL_FUNCTION.set(f);
}

/// Boot: an NMI on a CPU that is not being stopped calls `f(rip, if)`; if it
/// returns false the NMI is reported as a fatal exception.
pub fn register_nmi(f: NmiHandler) {
    NMI.set(f);
}

/// Boot: a page fault calls `f`; [`PageFaultOutcome::Fatal`] ends in the
/// exception report as before.
pub fn register_page_fault(f: PageFaultHandler) {
    PAGE_FAULT.set(f);
}

/// Boot: CPU exceptions (and unexplained NMIs) end in `report`; an NMI
/// while `dying()` holds parks its CPU instead.
pub fn register_fatal(report: FatalHandler, dying: DyingHandler) {
    // `dying` first: once `report` can run, so can the NMI check it
    // relies on to stop the other CPUs.
    DYING.set(dying);
    FATAL.set(report);
}

/// A driver: device interrupt line `line` calls `f()` (interrupts off,
/// before the EOI). Register before programming anything that raises the
/// line (module docs).
///
/// # Panics
/// If `line >= DEVICE_LINES`.
pub fn register_device_irq(line: usize, f: DeviceIrqHandler) {
    DEVICE[line].set(f);
}

pub(super) fn device_irq(line: usize) {
    match DEVICE[line].get() {
        Some(f) => f(),
        // Nobody would acknowledge the device: see the module docs.
        None => fatal(format_args!(
            "device interrupt line {line} (vector {:#x}) on cpu{} before a handler was registered",
            super::apic::DEVICE_VECTOR_BASE as usize + line,
            cpu_index()
        )),
    }
}

pub(super) fn tick(cpu: usize, rip: u64) {
    // Unregistered: the scheduler does not run yet, so there is nothing to
    // account or preempt; the tick was already counted and acknowledged.
    if let Some(f) = TICK.get() {
        f(cpu, rip);
    }
}

pub(super) fn reschedule(cpu: usize, rip: u64) {
    // Unregistered: no run queue exists yet, so nothing can be waiting.
    if let Some(f) = RESCHEDULE.get() {
        f(cpu, rip);
    }
}

pub(super) fn call_function() {
    match CALL_FUNCTION.get() {
        Some(f) => f(),
        // Somebody posted a request that nothing here can run: its sender
        // would wait for ever. Say so and stop instead.
        None => fatal(format_args!(
            "function-call IPI on cpu{} before a handler was registered",
            cpu_index()
        )),
    }
}

/// Offers a page fault to the registered handler. Unregistered: fatal,
/// with no reason beyond the exception report.
pub(super) fn page_fault(fault: &PageFault) -> PageFaultOutcome {
    match PAGE_FAULT.get() {
        Some(f) => f(fault),
        None => PageFaultOutcome::Fatal {
            why: "no page-fault handler registered",
            region: None,
        },
    }
}

/// Whether the fatal path is running on some CPU.
pub(super) fn dying() -> bool {
    DYING.get().is_some_and(|f| f()) || EARLY_DYING.load(Ordering::Relaxed)
}

/// Offers an NMI to the registered handler; false if none took it.
pub(super) fn nmi(rip: u64, interrupts_on: bool) -> bool {
    NMI.get().is_some_and(|f| f(rip, interrupts_on))
}

/// Ends the run with `report`: through the registered fatal path, or the
/// minimal one below if none is registered yet.
pub(super) fn fatal(report: fmt::Arguments) -> ! {
    match FATAL.get() {
        Some(f) => f(report),
        None => early_fatal(report),
    }
}

/// Set by the first CPU on the early fatal path. Relaxed: it only decides
/// whether a second fault (or an NMI) skips to the exit; the exit itself
/// ends every CPU.
static EARLY_DYING: AtomicBool = AtomicBool::new(false);

/// The fatal path before the kernel's own is registered: a plain report on
/// COM1 in the shape the host runner reads (`# pcs: FATAL ...`, then
/// `# pcs: run aborted`), then QEMU's exit with the exception status. A
/// fault while reporting skips straight to the exit.
#[cold]
fn early_fatal(report: fmt::Arguments) -> ! {
    if EARLY_DYING.swap(true, Ordering::Relaxed) {
        exit(ExitCode::Exception);
    }
    let mut serial = Serial::uninit();
    serial.init();
    let _ = write!(
        serial,
        "\n{} on cpu{} (before the fatal handler was registered): {report}\n{}run aborted ({:?})\n",
        contract::marker::FATAL,
        cpu_index(),
        contract::marker::PCS,
        ExitCode::Exception
    );
    exit(ExitCode::Exception)
}
