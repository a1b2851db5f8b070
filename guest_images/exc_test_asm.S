/* Exception triggers for exc_test. Labels mark the instructions whose addresses the
 * test expects in ELR_EL1. */
    .text
    .global trig_brk, brk_insn
trig_brk:
brk_insn:
    brk     #0x7                        // EC 0x3C, ISS 0x7; ELR = this insn
    ret

    .global trig_undef, undef_insn
trig_undef:
undef_insn:
    .word   0x00000000                  // UDF #0: EC 0x00, IL=1; ELR = this insn
    ret

    .global trig_svc1, svc1_next
trig_svc1:
    svc     #1                          // EC 0x15, ISS 0x1; ELR = next insn
svc1_next:
    ret

    .global trig_el1_load, el1_load_insn
trig_el1_load:                          // x0 = VA
el1_load_insn:
    ldr     x0, [x0]                    // data abort, EC 0x25, WnR=0
    ret

/* EL0 program: svc #0x42 with Z and C set, a store to the L3 hole, then svc #0xff
 * to return to EL1. */
    .section .user_text, "ax"
    .global el0_prog, el0_svc_next, el0_store_insn
el0_prog:
    mov     x0, #1
    cmp     x0, #1                      // NZCV = 0b0110 (Z, C)
    svc     #0x42
el0_svc_next:
    mov     x0, #0xf010                 // L3_HOLE_VA + 0x10
    movk    x0, #0x401f, lsl #16
    mov     x1, #0x5a
el0_store_insn:
    str     x1, [x0]                    // data abort, EC 0x24, WnR=1, level 3
    svc     #0xff
    b       .
