/* PSCI over SMCCC HVC #0. SYSTEM_OFF takes the exit status in x1 (armras extension). */
#include "guest.h"

u64 psci_call(u64 fn, u64 a1, u64 a2, u64 a3)
{
    register u64 x0 __asm__("x0") = fn;
    register u64 x1 __asm__("x1") = a1;
    register u64 x2 __asm__("x2") = a2;
    register u64 x3 __asm__("x3") = a3;
    __asm__ volatile("hvc #0"
                     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3)
                     :
                     : "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
                       "x14", "x15", "x16", "x17", "memory");
    return x0;
}

void system_off(u64 status)
{
    psci_call(PSCI_SYSTEM_OFF, status, 0, 0);
    /* Not reached on a conforming host. The WFIs come first so that a host which
     * retires a few more instructions after the HVC does not see stray output. */
    for (int i = 0; i < 4; i++)
        wfi();
    uart_puts("PSCI SYSTEM_OFF returned\n");
    for (;;)
        wfi();
}
