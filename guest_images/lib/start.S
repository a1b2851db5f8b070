/* Entry: EL1h, MMU/caches off, DAIF masked, x0 = RSDP physical address. */
    .section .text.boot, "ax"
    .global _start
_start:
    msr     daifset, #0xf
    mov     x19, x0                     // keep the RSDP across the setup
    msr     spsel, #1                   // EL1h: SP = SP_EL1
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, vectors
    add     x1, x1, :lo12:vectors
    msr     vbar_el1, x1
    isb
    adrp    x1, __bss_start             // zero .bss (16-byte aligned by the linker script)
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:  /* .user_data (EL0 pages) and .noinit are deliberately not touched: a test may
     * poison them before boot, and the first access must come from the code under
     * test, not from here. The loader zeroes them (PT_LOAD p_memsz). */
    mov     x0, x19
    bl      main                        // int main(u64 rsdp)
    mov     x1, x0                      // main's return value is the exit status
    mov     x0, #0x0008
    movk    x0, #0x8400, lsl #16        // PSCI SYSTEM_OFF
    hvc     #0
3:  wfi
    b       3b
