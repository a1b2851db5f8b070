/* Faulting accesses for hostile.c. Labels mark the instructions whose addresses the
 * guest expects in ELR_EL1 (Arm ARM: the preferred return address of a synchronous
 * external abort is the faulting instruction). */
    .text

/* void hostile_store(u64 pa, u64 value): a store the bus rejects (read-only flash). */
    .global hostile_store, hostile_store_insn
hostile_store:
hostile_store_insn:
    str     x1, [x0]                    // data abort, EC 0x25, DFSC 0x10; ELR = this insn
    ret

/* u64 hostile_load(u64 pa): a load from nothing (an unassigned physical address).
 * x0 is preloaded with a marker so that a load that "succeeds" is visible. */
    .global hostile_load, hostile_load_insn
hostile_load:
    mov     x1, x0
    mov     x0, #0x4c4c                 // "LL": what the caller sees if the load never ran
hostile_load_insn:
    ldr     x0, [x1]                    // data abort, EC 0x25, DFSC 0x10; ELR = this insn
    ret

/* void hostile_call(u64 target): calls a function pointer that points at a device.
 * The fetch aborts (instruction abort, EC 0x21, IFSC 0x10, ELR = target); the handler
 * returns to x30, which blr set to hostile_call_return. */
    .global hostile_call, hostile_call_return
hostile_call:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    blr     x0
hostile_call_return:
    ldp     x29, x30, [sp], #16
    ret

/* u64 hostile_hvc(u64 x0): one unserviced hypervisor call, hvc #0x7777. SMCCC: an
 * unknown function returns NOT_SUPPORTED (-1) in x0. */
    .global hostile_hvc
hostile_hvc:
    hvc     #0x7777
    ret
