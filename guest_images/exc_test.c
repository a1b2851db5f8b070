/* exc_test: architectural exception entry, checked against values computed in the
 * guest. Each case prints one "EXC <name> ... expect ... -> OK|FAIL" line, then
 * "EXC summary ok=<n> fail=<m>"; exit status = m (3 on an unexpected exception). */
#include "guest.h"

#define SPSR_MASK_EL0  0xF00003DFu     /* NZCV, DAIF, M[4:0] */
#define SPSR_MASK_EL1  0x000003DFu     /* DAIF, M[4:0]: NZCV are whatever C left */
#define SPSR_EL1H_MASKED 0x3C5u
#define NZCV_ZC        0x60000000u
/* Data aborts: EC, IL, FnV, EA, CM, S1PTW, WnR, DFSC. The instruction syndrome
 * (ISV, SAS, SSE, SRT, SF, AR; bits 24:14) is checked too when ISV reads as 1. */
#define ESR_MASK_DABT  0xFE0007FFu
#define ESR_ISS_SYND   0x01FFC000u
#define DFSC_TRANS(l)  (0x04u | (l))   /* translation fault, level l */

struct rec {
    u64 vec, elr, spsr, far, daif, cur_el, spsel;
    u32 esr;
};
static struct rec recs[8];
static volatile int nrec;
static int n_ok, n_fail;

struct expect {
    const char *name;
    u64 vec;
    u32 esr, esr_mask;
    u64 elr;
    u32 spsr, spsr_mask;
    int far_valid;
    u64 far;
    int isv_srt;                       /* register number for the ISV syndrome, -1: n/a */
};

extern char el0_prog[], el0_svc_next[], el0_store_insn[];
extern char brk_insn[], undef_insn[], svc1_next[], el1_load_insn[];
void trig_brk(void);
void trig_undef(void);
void trig_svc1(void);
void trig_el1_load(u64 va);
static u8 el0_stack[4096] __attribute__((section(".user_data"), aligned(16)));

void exc_dispatch(struct trap_frame *f, u64 vec)
{
    struct rec r;
    r.esr = (u32)read_sysreg(esr_el1);
    r.far = read_sysreg(far_el1);
    r.daif = read_sysreg(daif);
    r.cur_el = (read_sysreg(currentel) >> 2) & 3;
    r.spsel = read_sysreg(spsel) & 1;
    r.vec = vec;
    r.elr = f->elr;
    r.spsr = f->spsr;
    u32 ec = ESR_EC(r.esr);

    if (!VEC_IS_SYNC(vec))
        exc_unexpected(f, vec);
    if (vec == VEC_LOW64_SYNC && ec == EC_SVC64 && (r.esr & 0xffff) == 0xff) {
        f->elr = (u64)el0_return;      /* EL0 program done: resume enter_el0's caller */
        f->spsr = SPSR_EL1H_MASKED;
        return;
    }
    switch (ec) {
    case EC_SVC64:                     /* preferred return: the next instruction */
        break;
    case EC_UNKNOWN:
    case EC_BRK64:
    case EC_DABT_LOW:
    case EC_DABT_CUR:                  /* preferred return: the instruction itself */
        f->elr += 4;
        break;
    default:
        exc_unexpected(f, vec);
    }
    if (nrec >= (int)(sizeof(recs) / sizeof(recs[0])))
        exc_unexpected(f, vec);
    recs[nrec++] = r;
}

static void check(const struct expect *e, int idx)
{
    if (idx >= nrec) {
        printf("EXC %s no exception taken -> FAIL\n", e->name);
        n_fail++;
        return;
    }
    const struct rec *r = &recs[idx];
    u32 esr_mask = e->esr_mask, esr_exp = e->esr;
    if (e->isv_srt >= 0 && (r->esr & ESR_ISV)) {
        /* ISV=1: SAS=0b11 (64-bit), SSE=0, SRT, SF=1, AR=0 */
        esr_mask |= ESR_ISS_SYND;
        esr_exp |= ESR_ISV | (3u << 22) | ((u32)e->isv_srt << 16) | (1u << 15);
    }
    int ok = r->vec == e->vec && (r->esr & esr_mask) == esr_exp && r->elr == e->elr &&
             ((u32)r->spsr & e->spsr_mask) == e->spsr && (!e->far_valid || r->far == e->far) &&
             r->cur_el == 1 && r->spsel == 1 && r->daif == 0x3c0;
    char far_seen[24] = "-", far_exp[24] = "-";
    if (e->far_valid) {
        snprintf(far_seen, sizeof(far_seen), "0x%lx", r->far);
        snprintf(far_exp, sizeof(far_exp), "0x%lx", e->far);
    }
    printf("EXC %s vec=0x%03lx ESR=0x%08x ELR=0x%lx SPSR=0x%08lx FAR=%s entry=EL%luh/SPSel=%lu/DAIF=0x%lx"
           " expect vec=0x%03lx ESR=0x%08x/mask=0x%08x ELR=0x%lx SPSR=0x%08x/mask=0x%08x FAR=%s"
           " entry=EL1h/SPSel=1/DAIF=0x3c0 -> %s\n",
           e->name, r->vec, r->esr, r->elr, r->spsr, far_seen, r->cur_el, r->spsel, r->daif,
           e->vec, esr_exp, esr_mask, e->elr, e->spsr, e->spsr_mask, far_exp, ok ? "OK" : "FAIL");
    if (ok)
        n_ok++;
    else
        n_fail++;
}

int main(u64 rsdp)
{
    printf("exc_test: architectural exception entry\n");
    acpi_init(rsdp);                   /* only for the RAM extent; tables are optional here */
    mmu_enable();
    printf("MMU on: L3 hole 0x%lx, L1 hole 0x%lx\n", L3_HOLE_VA, L1_HOLE_VA);
    printf("PSTATE main CurrentEL=%lu SPSel=%lu DAIF=0x%lx\n", (read_sysreg(currentel) >> 2) & 3,
           read_sysreg(spsel) & 1, read_sysreg(daif));

    const struct expect el0[] = {
        { "svc0", VEC_LOW64_SYNC, 0x56000042, 0xFFFFFFFF, (u64)el0_svc_next,
          NZCV_ZC, SPSR_MASK_EL0, 0, 0, -1 },
        { "dabt-el0", VEC_LOW64_SYNC, (EC_DABT_LOW << 26) | ESR_IL | ESR_WNR | DFSC_TRANS(3),
          ESR_MASK_DABT, (u64)el0_store_insn, NZCV_ZC, SPSR_MASK_EL0, 1, L3_HOLE_VA + 0x10, 1 },
    };
    const struct expect el1[] = {
        { "dabt-el1", VEC_CUR_SPX_SYNC, (EC_DABT_CUR << 26) | ESR_IL | DFSC_TRANS(1),
          ESR_MASK_DABT, (u64)el1_load_insn, SPSR_EL1H_MASKED, SPSR_MASK_EL1, 1,
          L1_HOLE_VA + 0x8, 0 },
        { "brk7", VEC_CUR_SPX_SYNC, 0xF2000007, 0xFFFFFFFF, (u64)brk_insn,
          SPSR_EL1H_MASKED, SPSR_MASK_EL1, 0, 0, -1 },
        { "undef", VEC_CUR_SPX_SYNC, 0x02000000, 0xFFFFFFFF, (u64)undef_insn,
          SPSR_EL1H_MASKED, SPSR_MASK_EL1, 0, 0, -1 },
        { "svc1-el1", VEC_CUR_SPX_SYNC, 0x56000001, 0xFFFFFFFF, (u64)svc1_next,
          SPSR_EL1H_MASKED, SPSR_MASK_EL1, 0, 0, -1 },
    };

    /* EL0: SPSR 0 = EL0t with DAIF clear (no interrupt is enabled anywhere). */
    enter_el0((u64)el0_prog, (u64)el0_stack + sizeof(el0_stack), 0);
    for (int i = 0; i < 2; i++)
        check(&el0[i], i);

    for (int i = 0; i < 4; i++) {
        int before = nrec;
        switch (i) {
        case 0: trig_el1_load(L1_HOLE_VA + 0x8); break;
        case 1: trig_brk(); break;
        case 2: trig_undef(); break;
        case 3: trig_svc1(); break;
        }
        check(&el1[i], before);
        if (nrec > before + 1) {
            printf("EXC %s: %d exceptions taken, expected 1 -> FAIL\n", el1[i].name, nrec - before);
            n_fail++;
        }
    }
    printf("EXC summary ok=%d fail=%d\n", n_ok, n_fail);
    return n_fail;
}
