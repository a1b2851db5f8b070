/* ras_ref: the reference RAS guest.
 * HEST walk, vectors, GIC + 10 ms virtual-timer tick + GED interrupt, "READY", then a
 * checksum workload with WFI for 300 ticks. SEAs (source 0) and GED hardware-error
 * events (source 1) are processed like Linux ghes.c and acknowledged.
 * Exit: 0 ok, 1 no usable HEST sources, 2 an ack did not stick, 3 unexpected
 * exception, 4 SEA storm, 5 workload checksum mismatch. */
#include "guest.h"

#define TICK_MS      10
#define RUN_TICKS    300
#define STORM_LIMIT  32           /* SEAs at one ELR within one tick */
#define WORK_WORDS   1024

static struct ghes_source *sea_src, *gpio_src;
static volatile u32 ticks, sea_count, gpio_count, invalid_count, ack_failures;
static u64 tick_period, next_deadline;
/* Own pages, not zeroed at boot: a host test may poison it (-> SEA storm -> exit 4). */
u64 work[WORK_WORDS] __attribute__((section(".noinit"), aligned(4096)));
static u64 storm_elr, storm_tick, storm_n;

static u64 checksum(void)
{
    volatile u64 *w = work;
    u64 sum = 0;
    for (int i = 0; i < WORK_WORDS; i++)
        sum = ((sum << 7) | (sum >> 57)) ^ (w[i] + i);
    return sum;
}

static void handle_source(struct ghes_source *src)
{
    struct cper_result r;
    if (!src) {
        printf("CPER invalid: no GHES source for this notification in HEST\n");
        invalid_count++;
        ack_failures++;
        return;
    }
    ghes_process(src, &r);
    if (!r.valid)
        invalid_count++;
    if (!r.acked || r.block_status_after != 0) {
        printf("ACK source=%u failed: read_ack=0x%lx block_status=0x%x\n", src->id, r.read_ack,
               r.block_status_after);
        ack_failures++;
    }
}

static void on_sea(struct trap_frame *f, u32 esr)
{
    int fnv = !!(esr & ESR_FNV);
    if (fnv)
        printf("SEA ESR=0x%08x EC=0x%x DFSC=0x%x FnV=%d ELR=0x%lx\n", esr, ESR_EC(esr),
               ESR_DFSC(esr), fnv, f->elr);
    else
        printf("SEA ESR=0x%08x EC=0x%x DFSC=0x%x FnV=%d ELR=0x%lx FAR=0x%lx\n", esr, ESR_EC(esr),
               ESR_DFSC(esr), fnv, f->elr, read_sysreg(far_el1));
    /* A poisoned page under the workload would re-fault at the same ELR forever. */
    if (f->elr == storm_elr && ticks == storm_tick) {
        if (++storm_n >= STORM_LIMIT) {
            printf("SEA storm: %lu SEAs at ELR=0x%lx without progress\n", storm_n, f->elr);
            system_off(4);
        }
    } else {
        storm_elr = f->elr;
        storm_tick = ticks;
        storm_n = 1;
    }
    sea_count++;
    handle_source(sea_src);
}

static void on_irq(void)
{
    for (int n = 0; n < 16; n++) {
        u32 iar = gic_ack();
        u32 id = iar & 0x3ff;
        if (id >= 1020)
            return;
        if (id == INTID_VTIMER) {
            u64 now = timer_now();
            next_deadline += tick_period;
            if (next_deadline <= now)
                next_deadline = now + tick_period;
            timer_arm_at(next_deadline);
            ticks++;
        } else if (id == INTID_GED) {
            u32 ev = mmio_read32(GED_BASE);       /* read-to-clear ESEL */
            if (ev & GED_EVT_HW_ERROR) {
                printf("GED event=0x%x intid=%u: hardware error\n", ev, id);
                gpio_count++;
                handle_source(gpio_src);
            } else {
                printf("GED event=0x%x intid=%u: ignored\n", ev, id);
            }
        } else {
            printf("IRQ unexpected intid=%u\n", id);
        }
        gic_eoi(iar);
    }
}

void exc_dispatch(struct trap_frame *f, u64 vec)
{
    if (vec == VEC_CUR_SPX_IRQ) {
        on_irq();
        return;
    }
    if (vec == VEC_CUR_SPX_SYNC) {
        u32 esr = (u32)read_sysreg(esr_el1);
        u32 ec = ESR_EC(esr);
        if ((ec == EC_DABT_CUR || ec == EC_DABT_LOW) && ESR_DFSC(esr) == DFSC_SEA) {
            on_sea(f, esr);
            return;
        }
    }
    exc_unexpected(f, vec);
}

int main(u64 rsdp)
{
    int status = 0;
    printf("ras_ref: armras reference RAS guest (GHESv2 SEA + GPIO)\n");
    printf("PSCI version=0x%lx CurrentEL=%lu rsdp=0x%lx\n", psci_call(PSCI_VERSION, 0, 0, 0),
           (read_sysreg(currentel) >> 2) & 3, rsdp);
    if (!acpi_init(rsdp)) {
        printf("FAIL: no usable GHES error source\n");
        return 1;
    }
    sea_src = ghes_by_notify(HEST_NOTIFY_SEA);
    gpio_src = ghes_by_notify(HEST_NOTIFY_GPIO);
    if (!sea_src || !gpio_src) {
        printf("HEST: missing %s source\n", sea_src ? "GPIO" : "SEA");
        status = 1;
    }

    for (int i = 0; i < WORK_WORDS; i++)
        work[i] = (u64)i * 0x9E3779B97F4A7C15UL;
    u64 expect = checksum();

    gic_init();
    gic_enable_irq(INTID_VTIMER, 0);
    gic_enable_irq(INTID_GED, 1);
    tick_period = timer_freq() / 1000 * TICK_MS;
    next_deadline = timer_now() + tick_period;
    timer_arm_at(next_deadline);
    printf("READY\n");
    irq_enable();

    u32 bad_sums = 0;
    while (ticks < RUN_TICKS) {
        if (checksum() != expect)
            bad_sums++;
        wfi();
    }
    irq_disable();
    timer_stop();

    printf("DONE sea=%u gpio=%u ticks=%u invalid=%u\n", sea_count, gpio_count, ticks,
           invalid_count);
    if (ack_failures)
        status = 2;
    if (bad_sums) {
        printf("workload checksum mismatches=%u\n", bad_sums);
        status = 5;
    }
    printf("POWEROFF status=%d\n", status);
    return status;
}
