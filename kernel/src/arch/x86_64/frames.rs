//! Frame-pointer backtraces of *interrupted* code, for watchdog reports.
//!
//! Mental model: the kernel is built with frame pointers, so every frame
//! holds `[rbp] = caller's rbp` and `[rbp + 8] = return address`. An
//! `x86-interrupt` entry function has the same shape, except that the CPU
//! pushed the interrupted RIP where a return address would be, and its
//! saved rbp is the interrupted code's rbp. So a handler that knows the
//! interrupted RIP finds the interrupted frame chain by walking its *own*
//! chain up to the frame whose "return address" is that RIP
//! ([`interrupted_rbp`]), and then walks on from there ([`walk`]). This
//! works on the thread's stack (timer tick) and from an IST stack (NMI),
//! since the entry frame always sits on the handler's stack.
//!
//! Both walks only move upward and within [`MAX_SPAN`] of where they
//! started, so a corrupt chain ends them instead of faulting.

/// How far above its start a walk may go.
pub const MAX_SPAN: u64 = 1 << 20;
/// Deepest walk.
pub const MAX_DEPTH: u32 = 32;

/// Follows the chain from frame pointer `rbp`: calls `f(depth, return
/// address)` for each frame, innermost first.
///
/// # Safety
///
/// `rbp` is 0 or a frame pointer of a live frame on a mapped stack whose
/// chain ends (rbp 0 or a return address of 0) before any unmapped page
/// within [`MAX_SPAN`] above it (the thread entry zeroes rbp).
pub unsafe fn walk(mut rbp: u64, mut f: impl FnMut(u32, u64)) {
    let start = rbp;
    for depth in 0..MAX_DEPTH {
        if rbp == 0 || !rbp.is_multiple_of(8) || rbp < start || rbp - start > MAX_SPAN {
            break;
        }
        // SAFETY: rbp is 8-aligned, within MAX_SPAN above a live frame of
        // this stack (caller), which is mapped.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        f(depth, ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

/// The interrupted code's frame pointer, from inside an interrupt handler
/// that was handed the interrupted `rip` (module docs); `None` if no frame
/// of this handler's chain holds it.
#[inline(never)]
pub fn interrupted_rbp(rip: u64) -> Option<u64> {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    let mut found = None;
    let mut depth = 0;
    // SAFETY: our own rbp is a live frame of the handler's stack; the
    // handler's chain (this function, the handler, the entry frame) lies
    // above it on that stack.
    unsafe {
        walk(rbp, |_, ret| {
            if found.is_none() && depth < 16 && ret == rip {
                // The entry frame: its saved rbp is the interrupted one.
                // Found at `depth` frames above ours; read it below.
                found = Some(depth);
            }
            depth += 1;
        })
    };
    let target = found?;
    // Walk again to the found frame and read its saved rbp.
    let mut frame = rbp;
    for _ in 0..target {
        // SAFETY: the first walk passed through these frames.
        frame = unsafe { *(frame as *const u64) };
    }
    // SAFETY: as above: `frame` is the entry frame, on our stack.
    Some(unsafe { *(frame as *const u64) })
}
