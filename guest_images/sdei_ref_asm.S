/* sdei_ref's assembly: the entry point firmware dispatches every SDEI event to, and
 * the wait loop whose registers the dispatcher must hand back intact. */

#define SDEI_FN_HI                     0xc400      /* SMC64 SDEI calls: 0xC400_00xx */
#define SDEI_EVENT_COMPLETE            0x0025
#define SDEI_EVENT_COMPLETE_AND_RESUME 0x0026
#define UART_DR_HI                     0x0900      /* PL011 data register 0x0900_0000 */

/* x<n> = SDEI_PATTERN(n) = 0x5de1_00nn_c0de_00nn (sdei_ref.c), without a literal pool */
    .macro pattern n
    movz    x\n, #0x5de1, lsl #48
    movk    x\n, #\n, lsl #32
    movk    x\n, #0xc0de, lsl #16
    movk    x\n, #\n
    .endm

    .text
/* sdei_entry: firmware enters here at EL1h with DAIF masked, x0 = event number,
 * x1 = the argument given to EVENT_REGISTER, x2/x3 = the interrupted PC/PSTATE, and
 * SP = the interrupted SP_EL1. EVENT_COMPLETE gives back x0-x17, PC and PSTATE only,
 * so this code must hand back the rest itself: sdei_handler (C) keeps x19-x29 and SP,
 * x18 and x30 are saved here. sdei_handler returns 0 for EVENT_COMPLETE, or the
 * address to resume at with EVENT_COMPLETE_AND_RESUME (x1). */
    .balign 4
    .global sdei_entry
    .type sdei_entry, %function
sdei_entry:
    stp     x29, x30, [sp, #-32]!
    mov     x29, sp
    str     x18, [sp, #16]
    bl      sdei_handler
    ldr     x18, [sp, #16]
    ldp     x29, x30, [sp], #32
    mov     x1, x0
    movz    x0, #SDEI_FN_HI, lsl #16
    cbz     x1, 1f
    movk    x0, #SDEI_EVENT_COMPLETE_AND_RESUME
    hvc     #0
    b       2f
1:  movk    x0, #SDEI_EVENT_COMPLETE
    hvc     #0
2:  bl      sdei_complete_failed        // a successful COMPLETE does not return: x0 = error
3:  wfi
    b       3b
    .size sdei_entry, . - sdei_entry

/* u64 sdei_wait(volatile u32 *flag, u64 deadline, u64 regs[29])
 * Ends the console line the caller has started with a '\n' written straight to the
 * UART, so that a host trigger on that line fires while this loop runs (the event's
 * interrupted PC is then in [sdei_wait_loop, sdei_wait_end)). Waits with WFI until
 * *flag != 0 or CNTVCT_EL0 >= deadline (the caller arms the timer), with x0-x17 and
 * x19-x28 holding SDEI_PATTERN(n) throughout; x18 = flag, x29/x30 scratch. Stores
 * x0-x28 as they are afterwards in regs[] and returns 0 (flag set) or 1 (timeout). */
    .balign 4
    .global sdei_wait
    .global sdei_wait_loop
    .global sdei_wait_end
    .type sdei_wait, %function
sdei_wait:
    stp     x29, x30, [sp, #-112]!
    mov     x29, sp
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     x2, x1, [sp, #96]           // regs, deadline
    mov     x18, x0
    pattern 0
    pattern 1
    pattern 2
    pattern 3
    pattern 4
    pattern 5
    pattern 6
    pattern 7
    pattern 8
    pattern 9
    pattern 10
    pattern 11
    pattern 12
    pattern 13
    pattern 14
    pattern 15
    pattern 16
    pattern 17
    pattern 19
    pattern 20
    pattern 21
    pattern 22
    pattern 23
    pattern 24
    pattern 25
    pattern 26
    pattern 27
    pattern 28
    movz    x30, #UART_DR_HI, lsl #16
    mov     x29, #0x0a
sdei_wait_loop:
    str     w29, [x30]                  // '\n': the host sees the line now
    ldr     x30, [sp, #104]             // deadline
    b       2f
1:  wfi
2:  ldr     w29, [x18]                  // checked first: an event taken before WFI
    cbnz    w29, 3f                     // must not leave the loop asleep
    mrs     x29, cntvct_el0
    cmp     x29, x30
    b.lo    1b
sdei_wait_end:
    mov     x29, #1
    b       4f
3:  mov     x29, #0
4:  ldr     x30, [sp, #96]              // regs
    stp     x0, x1, [x30, #0]
    stp     x2, x3, [x30, #16]
    stp     x4, x5, [x30, #32]
    stp     x6, x7, [x30, #48]
    stp     x8, x9, [x30, #64]
    stp     x10, x11, [x30, #80]
    stp     x12, x13, [x30, #96]
    stp     x14, x15, [x30, #112]
    stp     x16, x17, [x30, #128]
    stp     x18, x19, [x30, #144]
    stp     x20, x21, [x30, #160]
    stp     x22, x23, [x30, #176]
    stp     x24, x25, [x30, #192]
    stp     x26, x27, [x30, #208]
    str     x28, [x30, #224]
    mov     x0, x29
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #112
    ret
    .size sdei_wait, . - sdei_wait
