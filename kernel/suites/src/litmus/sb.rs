//! Store buffering (SB), the shape of the pin/writeback race, in three
//! flavours:
//!
//! ```text
//! C SB+<flavour>
//! { x=0; y=0; }
//! P0(x, y)              P1(x, y)
//! WRITE_ONCE(*x, 1);    WRITE_ONCE(*y, 1);
//! <between>             <between>
//! r0 = READ_ONCE(*y);   r0 = READ_ONCE(*x);
//! exists (0:r0=0 /\ 1:r0=0)
//! ```
//!
//! Flavours:
//! * `SB+plain` (LKMM's `SB+poonceonces`): nothing between. x86-TSO allows
//!   the outcome (each store waits in its CPU's store buffer while the load
//!   reads the old value), and QEMU TCG on an x86 host shows it (its x86
//!   guest loads and stores are plain host loads and stores, no fences):
//!   the canary that this run can show reordering at all.
//! * `SB+fence` (`SB+fencembonceonces`): `fence(SeqCst)` between, the
//!   fence `pagesync::pin` puts on both sides of the barrier scheme (F1,
//!   F2). Forbidden everywhere. LLVM emits it on x86-64 as `lock or dword
//!   ptr [rsp], 0`, a locked RMW of the stack, which is a full barrier like
//!   `mfence` and cheaper.
//! * `SB+lockxadd`: the store is a Relaxed `fetch_add` (`lock inc`), with
//!   no fence after it. The Rust/C11 model (and LKMM, for an `atomic_add`
//!   without `smp_mb__after_atomic`) **allows** the outcome; x86 forbids
//!   it, because a `lock`-prefixed instruction drains the store buffer, and
//!   TCG on an x86 host emits a host `lock` instruction for it. This is why
//!   a missing fence after an atomic RMW (`gup-no-fence`, `gup-wmb-only`)
//!   cannot show on x86 or under TCG: only loom finds it
//!   (`kernel/pagesync/tests/loom_gup.rs`).
//!
//! Layout: `x` and `y` of a slot share one cache line, as `refcount` and
//! `flags` share a `struct page` in the pin/writeback race (x86-TSO lets
//! any two locations reorder, on one line or two). Before its barrier each
//! thread reads the line (litmus7's `-prefetch`), so both hold it shared
//! and each store waits in the store buffer for the other's copy to be
//! invalidated while the load after it reads the local copy.
//!
//! That layout and priming are the ones that showed the most reordering
//! here (QEMU 7.2 TCG on a 2-vCPU AMD EPYC KVM guest, `SB+plain`, 100,000
//! trials each; counts of the outcome): one line unprimed ~2,800, read
//! primed 24,000-30,000, write primed 700-1,900; two lines unprimed 0, read
//! primed 0, write primed 79-435 (and 0 in a million trials on a busier
//! host, with 14% of the trials overlapping so closely that both read 1).
//! A canary that a busy host can silence is no canary, so the suite runs
//! the one-line layout.
//!
//! The code of each side is one `#[inline(never)]` function so its machine
//! code can be checked; in the kernel ELF it is, for `SB+plain`:
//!
//! ```text
//! mov qword ptr [rdi], 1     ; Relaxed store: a plain mov
//! mov rax, qword ptr [rsi]   ; Relaxed load: a plain mov
//! ```
//!
//! `SB+fence` has `lock or dword ptr [rsp], 0` between them, and
//! `SB+lockxadd` stores with `lock inc qword ptr [rdi]` (checked with
//! `llvm-objdump -d` on `target/kernel/x86_64-unknown-none/*/kernel`, symbols
//! `...litmus2sb8sb_plain`, `8sb_fence`, `11sb_lockxadd`). QEMU's own
//! translation of `sb_plain` (`-d in_asm,out_asm`) is the host store, the
//! softmmu TLB check of the load's address, and the host load: no fence.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering, fence};

use super::harness::Litmus;

/// Which SB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Plain,
    Fence,
    LockXadd,
}

/// The test's name, as in the reports.
pub const fn name(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Plain => "SB+plain",
        Flavour::Fence => "SB+fence",
        Flavour::LockXadd => "SB+lockxadd",
    }
}

/// One slot: `x` and `y` in one cache line.
#[repr(C, align(64))]
#[derive(Default)]
struct Slot {
    x: AtomicU64,
    y: AtomicU64,
}

/// Every slot's `x` and `y`.
pub struct Sb {
    flavour: Flavour,
    slots: Vec<Slot>,
}

impl Sb {
    pub fn new(flavour: Flavour, size: usize) -> Sb {
        Sb {
            flavour,
            slots: (0..size).map(|_| Slot::default()).collect(),
        }
    }

    fn side(&self, mine: &AtomicU64, other: &AtomicU64) -> u8 {
        let r = match self.flavour {
            Flavour::Plain => sb_plain(mine, other),
            Flavour::Fence => sb_fence(mine, other),
            Flavour::LockXadd => sb_lockxadd(mine, other),
        };
        u8::from(r != 0)
    }
}

/// `SB+plain`, one side: store 1 to `mine`, load `other`. Relaxed atomics,
/// plain `mov`s on x86 (module docs); no ordering at all, on purpose.
#[inline(never)]
fn sb_plain(mine: &AtomicU64, other: &AtomicU64) -> u64 {
    mine.store(1, Ordering::Relaxed);
    other.load(Ordering::Relaxed)
}

/// `SB+fence`, one side. The SeqCst fence pairs with the other side's:
/// the two fences are totally ordered, and the side whose fence comes
/// second reads the other's store.
#[inline(never)]
fn sb_fence(mine: &AtomicU64, other: &AtomicU64) -> u64 {
    mine.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    other.load(Ordering::Relaxed)
}

/// `SB+lockxadd`, one side: the store is a Relaxed RMW, and nothing orders
/// it before the load in the language's model (module docs); only x86's
/// `lock` semantics do.
#[inline(never)]
fn sb_lockxadd(mine: &AtomicU64, other: &AtomicU64) -> u64 {
    mine.fetch_add(1, Ordering::Relaxed);
    other.load(Ordering::Relaxed)
}

impl Litmus for Sb {
    fn p0(&self, s: usize) -> u8 {
        let slot = &self.slots[s];
        self.side(&slot.x, &slot.y)
    }

    fn p1(&self, s: usize) -> u8 {
        let slot = &self.slots[s];
        self.side(&slot.y, &slot.x)
    }

    /// Reads the line (module docs); only the cache state matters.
    fn touch0(&self, s: usize) {
        core::hint::black_box(self.slots[s].y.load(Ordering::Relaxed));
    }

    fn touch1(&self, s: usize) {
        core::hint::black_box(self.slots[s].x.load(Ordering::Relaxed));
    }

    fn reset(&self, s: usize, _: u8, _: u8) {
        self.slots[s].x.store(0, Ordering::Relaxed);
        self.slots[s].y.store(0, Ordering::Relaxed);
    }
}
