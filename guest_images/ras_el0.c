/* ras_el0: a poisoned page touched from EL0.
 * MMU on, "VICTIM pa=..." + "READY", ~5 ms sleep (the host poisons the page), then an
 * EL0 task writes/reads the victim page. The SEA from EL0 is handled like Linux:
 * GHES source 0 -> memory-error CPER -> check the page frame -> ack -> "SIGBUS".
 * Exit: 0 task killed as expected, 1 task survived (page not poisoned), 2 CPER/ACPI
 * inconsistent (bad block, wrong PA, ack failed), 3 unexpected exception. */
#include "guest.h"

#define SLEEP_MS 5

u8 victim_page[4096] __attribute__((section(".user_data"), aligned(4096)));
static u8 user_stack[4096] __attribute__((section(".user_data"), aligned(16)));
extern char el0_task[];               /* ras_el0_user.S */
static struct ghes_source *sea_src;

static void on_sea_el0(struct trap_frame *f, u32 esr)
{
    u64 victim = (u64)victim_page;
    struct cper_result r;
    printf("SEA from EL0 ESR=0x%08x EC=0x%x DFSC=0x%x FnV=%d ELR=0x%lx\n", esr, ESR_EC(esr),
           ESR_DFSC(esr), !!(esr & ESR_FNV), f->elr);
    ghes_read(sea_src, &r);
    int ok = r.valid && r.have_mem_pa && (r.mem_pa >> 12) == (victim >> 12);
    if (!r.valid || !r.have_mem_pa)
        printf("CPER source=%u: no memory-error section\n", sea_src->id);
    else if (!ok)
        printf("CPER source=%u: pa=0x%lx is not the victim page 0x%lx\n", sea_src->id, r.mem_pa,
               victim);
    else
        printf("CPER source=%u section=memory pa=0x%lx\n", sea_src->id, r.mem_pa);
    ghes_ack(sea_src, &r);
    if (!r.acked || r.block_status_after != 0) {
        printf("ACK source=%u failed\n", sea_src->id);
        ok = 0;
    }
    if (!ok)
        system_off(2);
    printf("EL0 task killed: SIGBUS BUS_MCEERR_AR at pa=0x%lx\n", r.mem_pa);
    system_off(0);
}

void exc_dispatch(struct trap_frame *f, u64 vec)
{
    u32 esr = (u32)read_sysreg(esr_el1);
    if (VEC_IS_IRQ(vec)) {                 /* a stale timer interrupt: ack and ignore */
        u32 iar = gic_ack();
        if ((iar & 0x3ff) < 1020)
            gic_eoi(iar);
        return;
    }
    if (vec == VEC_LOW64_SYNC && ESR_EC(esr) == EC_DABT_LOW && ESR_DFSC(esr) == DFSC_SEA)
        on_sea_el0(f, esr);
    if (vec == VEC_LOW64_SYNC && ESR_EC(esr) == EC_SVC64) {
        if ((esr & 0xffff) == 0) {
            printf("EL0 task survived: page was not poisoned\n");
            system_off(1);
        }
        printf("EL0 task: victim page read back wrong data\n");
        system_off(2);
    }
    if (vec == VEC_CUR_SPX_SYNC && ESR_EC(esr) == EC_DABT_CUR && ESR_DFSC(esr) == DFSC_SEA) {
        struct cper_result r;
        printf("SEA from EL1 ESR=0x%08x ELR=0x%lx: not expected here\n", esr, f->elr);
        ghes_process(sea_src, &r);
        system_off(EXIT_UNEXPECTED);
    }
    exc_unexpected(f, vec);
}

int main(u64 rsdp)
{
    printf("ras_el0: poisoned page touched from EL0\n");
    if (!acpi_init(rsdp) || !(sea_src = ghes_by_notify(HEST_NOTIFY_SEA))) {
        printf("FAIL: no GHES source with SEA notification\n");
        return 2;
    }
    mmu_enable();
    printf("MMU on: user text 0x%lx-0x%lx user data 0x%lx-0x%lx\n", (u64)__user_text_start,
           (u64)__user_text_end, (u64)__user_data_start, (u64)__user_data_end);
    gic_init();
    gic_enable_irq(INTID_VTIMER, 0);       /* wakes WFI; PSTATE.I stays masked */
    printf("VICTIM pa=0x%lx\n", (u64)victim_page);
    printf("READY\n");
    delay_ms_wfi(SLEEP_MS);
    printf("EL0 task start entry=0x%lx\n", (u64)el0_task);
    enter_el0((u64)el0_task, (u64)user_stack + sizeof(user_stack), 0 /* EL0t, DAIF clear */);
    printf("EL0 task returned to EL1\n");  /* not reached: every EL0 exit powers off */
    return 2;
}
