//! The context switch: save the callee-saved registers and RFLAGS on the
//! old thread's stack, store its stack pointer, load the new one, restore.
//!
//! RFLAGS travels with the thread, so each thread resumes with the interrupt
//! flag it had when it switched away (always clear: `schedule` switches with
//! interrupts off) and restores its own earlier state afterwards.

use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .global pcs_switch_to
    // rdi = &mut prev.rsp, rsi = next.rsp
pcs_switch_to:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushfq
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popfq
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    .global pcs_thread_start
    // First code of a new thread: the initial frame made by `initial_frame`
    // "returns" here with interrupts off.
pcs_thread_start:
    xorl %ebp, %ebp
    call {entry}
    ud2
"#,
    entry = sym super::thread_entry,
    options(att_syntax)
);

unsafe extern "C" {
    fn pcs_switch_to(prev_rsp: *mut u64, next_rsp: u64);
    fn pcs_thread_start();
}

/// Switches from the current thread (whose stack pointer is saved in
/// `*prev_rsp`) to the thread whose saved stack pointer is `next_rsp`.
///
/// # Safety
/// Interrupts must be off; `next_rsp` must be a stack saved by this function
/// or built by [`initial_frame`], not in use by any CPU.
pub unsafe fn switch_to(prev_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: per the function's contract.
    unsafe { pcs_switch_to(prev_rsp, next_rsp) }
}

/// Builds the first frame of a new thread at the top of its stack and
/// returns the stack pointer to switch to.
///
/// # Safety
/// `top` must be the 16-byte-aligned end of a writable stack of at least
/// one page that nothing else uses.
pub unsafe fn initial_frame(top: u64) -> u64 {
    // Layout popped by pcs_switch_to: rflags, r15, r14, r13, r12, rbx, rbp,
    // then the return address. One padding word keeps the entry's stack
    // 16-byte aligned minus 8, as after a call.
    let words: [u64; 9] = [
        0x2,
        0,
        0,
        0,
        0,
        0,
        0,
        pcs_thread_start as *const () as u64,
        0,
    ];
    let sp = top - (words.len() as u64) * 8;
    // SAFETY: the caller guarantees [top - 72, top) is ours and writable.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp as *mut u64, words.len()) };
    sp
}
