/* VBAR_EL1 vector table: 16 slots of 0x80 bytes, 2 KiB aligned. Every slot saves
 * all GPRs, SP_EL0, ELR_EL1 and SPSR_EL1 in a struct trap_frame on SP_EL1 and calls
 * exc_dispatch(frame, slot_offset); the handler may edit the frame (ELR, SPSR, x[]),
 * which is written back before ERET. */
#define FRAME_SIZE 272                  /* 31 GPRs + sp_el0 + elr + spsr = 34 * 8 */

    .macro ventry off
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x1, #\off
    b       vec_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global vectors
vectors:
    ventry 0x000        // current EL, SP_EL0: sync
    ventry 0x080        //                     irq
    ventry 0x100        //                     fiq
    ventry 0x180        //                     serror
    ventry 0x200        // current EL, SP_ELx: sync
    ventry 0x280        //                     irq
    ventry 0x300        //                     fiq
    ventry 0x380        //                     serror
    ventry 0x400        // lower EL, AArch64:  sync
    ventry 0x480        //                     irq
    ventry 0x500        //                     fiq
    ventry 0x580        //                     serror
    ventry 0x600        // lower EL, AArch32:  sync
    ventry 0x680        //                     irq
    ventry 0x700        //                     fiq
    ventry 0x780        //                     serror

vec_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #256]
    mov     x0, sp
    bl      exc_dispatch
    ldp     x2, x3, [sp, #256]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el0, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #FRAME_SIZE
    eret

/* void enter_el0(u64 entry, u64 sp, u64 spsr)
 * Saves the callee-saved registers on SP_EL1 and ERETs to EL0. SP_EL1 keeps this
 * value while EL0 runs, so exceptions from EL0 push their frame below it. A handler
 * that sets ELR = el0_return and SPSR = EL1h (0x3c5) makes enter_el0 return. */
    .text
    .global enter_el0
    .global el0_return
enter_el0:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    msr     sp_el0, x1
    msr     elr_el1, x0
    msr     spsr_el1, x2
    isb
    eret
el0_return:
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
