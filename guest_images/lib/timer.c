/* EL1 virtual timer (CNTV_*), PPI 27. */
#include "guest.h"

u64 timer_freq(void)
{
    u64 f = read_sysreg(cntfrq_el0) & 0xffffffffUL;
    return f ? f : 62500000UL;          /* contract: 62.5 MHz */
}

u64 timer_now(void)
{
    isb();
    return read_sysreg(cntvct_el0);
}

void timer_arm_at(u64 cval)
{
    write_sysreg(cntv_cval_el0, cval);
    write_sysreg(cntv_ctl_el0, 1);      /* ENABLE=1, IMASK=0 */
    isb();
}

void timer_stop(void)
{
    write_sysreg(cntv_ctl_el0, 0);
    isb();
}

/* Sleeps with WFI until the counter passes the deadline. Works with PSTATE.I masked
 * (a pending interrupt still wakes WFI) and degrades to polling if WFI returns early. */
void delay_ms_wfi(u64 ms)
{
    u64 deadline = timer_now() + ms * (timer_freq() / 1000);
    timer_arm_at(deadline);
    while (timer_now() < deadline)
        wfi();
    timer_stop();
}
