/* hostile: everything a hostile guest did to armras before it was fixed, in one run.
 * Each step prints "HOSTILE <step> ... -> OK|FAIL"; then "HOSTILE ok=<n> fail=<m>".
 *   long-line   102,400 bytes without a newline, then a newline (the host cuts console
 *               lines at 4 KiB for its triggers but must forward every byte)
 *   hvc-flood   20,000 x unserviced hvc #0x7777, each returning NOT_SUPPORTED (-1) in x0
 *   flash-store str to flash at 0x1000: synchronous external abort, ESR 0x96000050 (WnR, FAR valid),
 *               ELR = the str; the handler returns past it
 *   device-call blr to 0x09000000 (the UART): instruction abort, ESR 0x86000010,
 *               ELR = 0x09000000; the handler returns to x30
 *   far-timer   CNTP_CVAL_EL0 = ~0, CNTP_CTL_EL0 = 1 (a deadline 9,000 years away) for
 *               10 ms of guest time, then the timer is disabled again
 *   unassigned  ldr from 0x0a000000 (nothing there): ESR 0x96000010, ELR = the ldr
 * Exit: 0 every step OK, 1 some step failed, 3 an exception no step expected. */
#include "guest.h"

#define LONG_LINE_BYTES  (100 * 1024)
#define HVC_CALLS        20000
#define FLASH_PA         0x1000UL
#define DEVICE_PA        0x09000000UL    /* PL011: present, but not executable */
#define UNASSIGNED_PA    0x0a000000UL    /* between the devices and RAM: nothing */
#define NOT_SUPPORTED    (~0UL)          /* SMCCC: -1 */
/* Arm ARM D17.2.37: EC, IL=1, ISS with EA=0, FnV=1 (FAR not valid), DFSC/IFSC 0x10
 * (synchronous external abort, not on a table walk): what KVM injects from EL1. */
/* A bus error is reported as QEMU TCG does: FAR valid (FnV = 0), WnR for a store. */
#define ESR_DABT_SEA_EL1 0x96000010u     /* EC 0x25 data abort, same EL, DFSC 0x10 */
#define ESR_DABT_SEA_EL1_WRITE 0x96000050u /* the same for a store (WnR) */
#define ESR_IABT_SEA_EL1 0x86000010u     /* EC 0x21 instruction abort, same EL, IFSC 0x10 */
#define SPSR_MODE_DAIF   0x3dfu          /* SPSR_EL1.{D,A,I,F,M[4:0]} */
#define SPSR_EL1H_MASKED 0x3c5u          /* EL1h, every exception masked (as start.S left it) */

void hostile_store(u64 pa, u64 value);
u64 hostile_load(u64 pa);
void hostile_call(u64 target);
u64 hostile_hvc(u64 x0);
extern char hostile_store_insn[], hostile_load_insn[], hostile_call_return[];

/* What the handler saw: one record per expected exception. */
static volatile int expecting;           /* 1 while a step waits for its abort */
static volatile int taken;
static volatile u32 seen_esr;
static volatile u64 seen_elr, seen_spsr, seen_vec, seen_x30;
static int n_ok, n_fail;

void exc_dispatch(struct trap_frame *f, u64 vec)
{
    u32 esr = (u32)read_sysreg(esr_el1);
    u32 ec = ESR_EC(esr);
    if (!expecting || vec != VEC_CUR_SPX_SYNC || (ec != EC_DABT_CUR && ec != EC_IABT_CUR))
        exc_unexpected(f, vec);
    taken++;
    seen_esr = esr;
    seen_elr = f->elr;
    seen_spsr = f->spsr;
    seen_vec = vec;
    seen_x30 = f->x[30];
    if (taken > 1) {                     /* a second abort in one step: stop re-faulting */
        expecting = 0;
        printf("HOSTILE second exception ESR=0x%08x ELR=0x%lx in one step\n", esr, f->elr);
    }
    if (ec == EC_IABT_CUR)
        f->elr = f->x[30];               /* a call to a bad pointer: return to the caller */
    else
        f->elr += 4;                     /* data abort: skip the access */
}

static void verdict(const char *step, int ok)
{
    printf("HOSTILE %s -> %s\n", step, ok ? "OK" : "FAIL");
    if (ok)
        n_ok++;
    else
        n_fail++;
}

/* What the handler recorded for one step's abort, printed and compared: exactly one
 * exception, the current-EL SPx synchronous slot, the ESR and ELR the Arm ARM gives,
 * and SPSR = EL1h with DAIF masked (the state the step ran in). */
static int abort_ok(const char *step, u32 esr, u64 elr)
{
    printf("HOSTILE %s taken=%d vec=0x%03lx ESR=0x%08x ELR=0x%lx SPSR=0x%lx expect ESR=0x%08x ELR=0x%lx\n",
           step, taken, seen_vec, seen_esr, seen_elr, seen_spsr, esr, elr);
    return taken == 1 && seen_vec == VEC_CUR_SPX_SYNC && seen_esr == esr && seen_elr == elr &&
           ((u32)seen_spsr & SPSR_MODE_DAIF) == SPSR_EL1H_MASKED;
}

static void arm_handler(void)
{
    taken = 0;
    seen_esr = 0;
    seen_elr = seen_spsr = seen_vec = seen_x30 = 0;
    expecting = 1;
    dsb_sy();
}

static void long_line(void)
{
    printf("HOSTILE long-line bytes=%d\n", LONG_LINE_BYTES);
    /* Straight into the data register, no FR polling: as fast as a guest can push. */
    for (int i = 0; i < LONG_LINE_BYTES; i++)
        mmio_write32(UART_BASE, (u32)('0' + (i & 63)));
    mmio_write32(UART_BASE, '\n');
    verdict("long-line", 1);              /* what arrived is for the host to count */
}

static void hvc_flood(void)
{
    u32 wrong = 0;
    u64 first_wrong = 0;
    for (u64 i = 0; i < HVC_CALLS; i++) {
        u64 r = hostile_hvc(0xC7770000UL + i);
        if (r != NOT_SUPPORTED && wrong++ == 0)
            first_wrong = r;
    }
    printf("HOSTILE hvc-flood calls=%d not_supported=%u first_wrong=0x%lx\n", HVC_CALLS,
           HVC_CALLS - wrong, first_wrong);
    verdict("hvc-flood", wrong == 0);
}

static void flash_store(void)
{
    arm_handler();
    hostile_store(FLASH_PA, 0x5a5a5a5a5a5a5a5aUL);
    expecting = 0;
    verdict("flash-store", abort_ok("flash-store", ESR_DABT_SEA_EL1_WRITE, (u64)hostile_store_insn));
}

static void device_call(void)
{
    arm_handler();
    hostile_call(DEVICE_PA);
    expecting = 0;
    /* Reaching this line proves the handler's return to x30 (hostile_call_return) and
     * that hostile_call's frame survived the abort. */
    int ok = abort_ok("device-call", ESR_IABT_SEA_EL1, DEVICE_PA);
    if (seen_x30 != (u64)hostile_call_return)
        printf("HOSTILE device-call: x30=0x%lx at the abort, expected 0x%lx\n", seen_x30,
               (u64)hostile_call_return);
    verdict("device-call", ok && seen_x30 == (u64)hostile_call_return);
}

static void far_timer(void)
{
    write_sysreg(cntp_cval_el0, ~0UL);
    write_sysreg(cntp_ctl_el0, 1);        /* ENABLE=1, IMASK=0 */
    isb();
    u64 cval = read_sysreg(cntp_cval_el0);
    u64 ctl = read_sysreg(cntp_ctl_el0);  /* ISTATUS (bit 2) = 0: CVAL is not reached */
    /* Let the host's run loop plan its next stop around that deadline for a while. */
    u64 start = read_sysreg(cntpct_el0);
    u64 span = timer_freq() / 100;        /* 10 ms */
    u64 spins = 0;
    while (read_sysreg(cntpct_el0) - start < span)
        spins++;
    u64 ctl_later = read_sysreg(cntp_ctl_el0);
    write_sysreg(cntp_ctl_el0, 0);
    isb();
    u64 ctl_off = read_sysreg(cntp_ctl_el0);
    printf("HOSTILE far-timer cval=0x%lx ctl=0x%lx ctl_later=0x%lx ctl_off=0x%lx spins=%lu\n",
           cval, ctl, ctl_later, ctl_off, spins);
    /* With ENABLE=0, ISTATUS is UNKNOWN: only ENABLE and IMASK are compared then. */
    verdict("far-timer", cval == ~0UL && ctl == 1 && ctl_later == 1 && (ctl_off & 3) == 0);
}

static void unassigned_load(void)
{
    arm_handler();
    u64 v = hostile_load(UNASSIGNED_PA);
    expecting = 0;
    /* The aborted ldr must not have written its destination register. */
    if (v != 0x4c4c)
        printf("HOSTILE unassigned: the aborted load wrote x0=0x%lx\n", v);
    verdict("unassigned", abort_ok("unassigned", ESR_DABT_SEA_EL1, (u64)hostile_load_insn) && v == 0x4c4c);
}

int main(u64 rsdp)
{
    (void)rsdp;
    printf("hostile: armras hostile guest (console flood, hvc flood, bus errors, far timer)\n");
    long_line();
    hvc_flood();
    flash_store();
    device_call();
    far_timer();
    unassigned_load();
    printf("HOSTILE ok=%d fail=%d\n", n_ok, n_fail);
    return n_fail ? 1 : 0;
}
