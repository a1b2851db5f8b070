/* The EL0 task: write then read back the victim page a few times, then svc #0
 * ("survived"). svc #1 reports a read-back mismatch. Position independent. */
    .section .user_text, "ax"
    .global el0_task
el0_task:
    adrp    x19, victim_page
    add     x19, x19, :lo12:victim_page
    mov     x20, #8                     // iterations, 512 bytes apart
1:  add     x2, x20, #0x5a
    str     x2, [x19]
    ldr     x3, [x19]
    cmp     x2, x3
    b.ne    2f
    add     x19, x19, #512
    subs    x20, x20, #1
    b.ne    1b
    svc     #0
    b       .
2:  svc     #1
    b       .
