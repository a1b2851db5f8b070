/*
 * armras native block hook: stops the CPU at a translation-block boundary when asked,
 * and counts guest instructions, without calling into Python on the hot path.
 *
 * It also delivers interrupts on time: while an IRQ (or an SError) is pending but masked,
 * it stops the CPU at the first block where PSTATE.I (PSTATE.A) is clear (Linux unmasks
 * with `msr daifclr`, which Unicorn's MRS/MSR hook does not see), and it stops the CPU
 * before the next block when the guest's instruction cache maintenance needs every
 * translation dropped (armras_ic_hook below).
 *
 * Why a stop flag: Unicorn 2.1.4 re-executes an MMIO load/store when uc_emu_stop() arrives from
 * another thread around that access (a UART byte printed twice, a GIC IAR read that
 * acknowledges two interrupts). A stop issued from inside a block hook is taken at a
 * block start with the PC synchronised, so the alarm thread only sets `stop` here.
 *
 * The module exports the hook's address and the state layout; Python registers the
 * hook with uc_hook_add through ctypes and owns the state memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);

#define PSTATE_I (1u << 7)
#define PSTATE_EL_MASK (3u << 2)
#define PSTATE_SP (1u << 0)

/* Unicorn's uc_arm64_cp_reg: read SPSR_EL1 (op0 3, op1 0, CRn 4, CRm 0, op2 0) through it. */
typedef struct {
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
} armras_cp_reg;

typedef struct {
    volatile int32_t stop;      /* set by any thread: stop at the next block */
    int32_t watch_unmask;       /* PSTATE mask bits (I, A) an interrupt waits for: stop once one clears */
    uint64_t instructions;      /* guest instructions entered (block size / 4) */
    uint64_t stop_at;           /* stop once instructions >= stop_at; 0 = never */
    uc_emu_stop_fn emu_stop;    /* libunicorn's uc_emu_stop */
    uc_reg_read_fn reg_read;    /* libunicorn's uc_reg_read */
    int32_t pstate_regid;       /* UC_ARM64_REG_PSTATE */
    int32_t reason;             /* why the hook stopped the CPU (STOP_*), 0 if it did not */
    int32_t sea_pending;        /* an injected SEA waits for a point where it may be taken */
    int32_t elr_regid;          /* UC_ARM64_REG_ELR_EL1 */
    int32_t cp_regid;           /* UC_ARM64_REG_CP_REG */
    int32_t tb_flush_pending;   /* the guest invalidated instruction caches: drop all translations */
    uint64_t sea_deadline;      /* take the pending SEA here at the latest (instruction count) */
    uint64_t block_start;       /* the block being run, counted in full when entered */
    uint64_t block_end;
    uint64_t tb_flush_block;    /* the block that asked for it (an IC loop) may run on */
} armras_block_state;

#define STOP_REQUESTED 1
#define STOP_UNMASKED 2
#define STOP_COUNT 3
#define STOP_SEA 4
#define STOP_TB_FLUSH 5

/*
 * May an injected SEA be taken at this block start? Not while the guest is between an
 * exception entry and saving ELR_EL1/SPSR_EL1 (a nested entry would overwrite them).
 * Safe: EL0; EL1 with IRQs unmasked (an OS saves its exception state before unmasking,
 * or a nested IRQ would clobber it too); the first block after an exception return
 * (PC == ELR_EL1 and PSTATE's EL/SP == SPSR_EL1's: the interrupted context, restored).
 * armras.board.machine.Machine._sea_safe_now is the same rule for the host side.
 */
static int armras_sea_safe(void *uc, armras_block_state *st, uint64_t address)
{
    uint64_t pstate = PSTATE_I | (1u << 2), elr = 0;
    armras_cp_reg spsr = {4, 0, 3, 0, 0, 0};
    st->reg_read(uc, st->pstate_regid, &pstate);
    if ((pstate & PSTATE_EL_MASK) == 0 || !(pstate & PSTATE_I))
        return 1;
    st->reg_read(uc, st->elr_regid, &elr);
    if (elr != address)
        return 0;
    st->reg_read(uc, st->cp_regid, &spsr);
    return ((spsr.val ^ pstate) & (PSTATE_EL_MASK | PSTATE_SP)) == 0;
}

/* The hook stops the CPU at a block start: that block has not run, so it is not counted,
 * and the block bounds are cleared (a stopped CPU is at a block boundary). */
static void armras_stop_at_block(void *uc, armras_block_state *st, int32_t reason)
{
    st->reason = reason;
    st->block_start = st->block_end = 0;
    st->emu_stop(uc);
}

static void armras_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    armras_block_state *st = (armras_block_state *)user_data;
    if (st->tb_flush_pending && address != st->tb_flush_block) {
        /* Before any other code runs: a loop of IC IVAU costs one flush, not one a line. */
        armras_stop_at_block(uc, st, STOP_TB_FLUSH);
        return;
    }
    if (st->watch_unmask) {
        /* QEMU ends a block after DAIF writes and ERET, so this sees the unmask at once:
         * the guest's `msr daifclr` is not an MSR Unicorn lets us hook. */
        uint64_t watched = (uint32_t)st->watch_unmask, pstate = watched;
        st->reg_read(uc, st->pstate_regid, &pstate);
        if ((pstate & watched) != watched) {
            st->watch_unmask = 0;
            armras_stop_at_block(uc, st, STOP_UNMASKED);
            return;
        }
    }
    if (st->sea_pending &&
        (armras_sea_safe(uc, st, address) || st->instructions >= st->sea_deadline)) {
        st->sea_pending = 0;
        armras_stop_at_block(uc, st, STOP_SEA);
        return;
    }
    if (st->stop || (st->stop_at && st->instructions >= st->stop_at)) {
        int32_t reason = st->stop ? STOP_REQUESTED : STOP_COUNT;
        st->stop = 0;
        armras_stop_at_block(uc, st, reason);
        return;
    }
    /* Counted when entered: a read in the middle of the block subtracts the part not yet
     * run, (block_end - pc) / 4 (armras.timing.guesttime.InstructionCounter). */
    st->instructions += size / 4;
    st->block_start = address;
    st->block_end = address + size;
}

/*
 * MRS/MSR filter. Unicorn's UC_HOOK_INSN for MRS/MSR fires for every system register
 * access, and Linux reads SP_EL0 (`current`) and TPIDR_EL1 millions of times while
 * booting. Only the generic timer registers (and, in deterministic mode, the counters)
 * need the emulator: forward those to the Python callback, serve the RAS extension's
 * registers here, let everything else run.
 */
typedef uint32_t (*armras_sys_cb)(void *uc, int reg, const armras_cp_reg *cp, void *user_data);

typedef int (*uc_reg_write_fn)(void *uc, int regid, const void *value);

typedef struct {
    armras_sys_cb callback;     /* Python (ctypes) callback for trapped registers */
    int32_t trap_counters;      /* deterministic mode: serve CNTPCT_EL0/CNTVCT_EL0 reads here */
    int32_t is_read;            /* this state belongs to the MRS hook */
    const armras_block_state *blocks;   /* instruction count and the block being run */
    uc_reg_read_fn reg_read;
    uc_reg_write_fn reg_write;
    int32_t pc_regid;           /* UC_ARM64_REG_PC */
    int32_t reserved;
    uint64_t ticks_per_insn;    /* armras.timing.guesttime.InstructionCounter, kept in step by Python: */
    uint64_t skipped_ticks;     /*   ticks WFI skipped */
    uint64_t voff;              /*   physical count when guest time started */
    struct armras_ras_state *ras;   /* shared by the MRS and MSR hooks; NULL: no RAS extension */
} armras_sysreg_state;

/*
 * The RAS extension's System registers (armras.arch.hooks.RasRegisters is the Python
 * twin). Unicorn 2.1.4 (QEMU 5.0) has none of them, and its ID_AA64PFR0_EL1 says RAS = 0.
 * armras advertises RAS = 1, so Linux classifies SErrors by their AET, and then must be
 * able to use the registers that come with it: DISR_EL1 (Linux clears it on every CPU),
 * ERRIDR_EL1 = 0 (no error records behind System registers), and ERRSELR_EL1 / ERX*_EL1
 * RAZ/WI, as QEMU's later minimal RAS. All are EL1 registers: at EL0 they stay UNDEFINED.
 */
typedef struct armras_ras_state {
    int32_t pstate_regid;       /* UC_ARM64_REG_PSTATE */
    int32_t reserved;
    uint64_t id_aa64pfr0;       /* ID_AA64PFR0_EL1 as the guest reads it (RAS = 1) */
    uint64_t disr;              /* DISR_EL1 of the CPU on the core (the machine swaps it per vCPU) */
} armras_ras_state;

enum { RAS_ID, RAS_DISR, RAS_ERRIDR, RAS_RAZ_WI };

/* DISR_EL1: A (bit 31), IDS (bit 24), the syndrome in bits [23:0]; the rest is RES0. */
#define DISR_EL1_MASK 0x81FFFFFFull

static int armras_ras_register(const armras_cp_reg *cp)
{
    if (cp->crn == 0 && cp->crm == 4 && cp->op2 == 0)
        return RAS_ID;                              /* ID_AA64PFR0_EL1 */
    if (cp->crn == 12 && cp->crm == 1 && cp->op2 == 1)
        return RAS_DISR;                            /* DISR_EL1 */
    if (cp->crn == 5 && cp->crm == 3 && cp->op2 == 0)
        return RAS_ERRIDR;                          /* ERRIDR_EL1 */
    if (cp->crn == 5 && ((cp->crm == 3 && cp->op2 == 1) ||  /* ERRSELR_EL1 */
                         (cp->crm == 4 && cp->op2 <= 6) ||  /* ERXFR/CTLR/STATUS/ADDR/PFG*_EL1 */
                         (cp->crm == 5 && cp->op2 <= 3)))   /* ERXMISC0-3_EL1 */
        return RAS_RAZ_WI;
    return -1;
}

static uint32_t armras_ras_access(void *uc, int reg, const armras_cp_reg *cp, armras_sysreg_state *st)
{
    armras_ras_state *ras = st->ras;
    int which = armras_ras_register(cp);
    uint64_t pstate = 0, value = 0, pc = 0;

    if (which < 0 || (which == RAS_ID && !st->is_read))
        return 0;                   /* not ours; an MSR to an ID register UNDEFs in Unicorn */
    st->reg_read(uc, ras->pstate_regid, &pstate);
    if ((pstate & PSTATE_EL_MASK) == 0)
        return 0;                   /* EL0: Unicorn raises the UNDEF (the registers are EL1's) */
    if (which == RAS_ID) {
        st->reg_write(uc, reg, &ras->id_aa64pfr0);
        return 1;                   /* Unicorn has the register: the instruction just completes */
    }
    if (which == RAS_ERRIDR && !st->is_read)
        return 0;                   /* read-only: UNDEFINED */
    if (which == RAS_DISR) {
        if (st->is_read)
            value = ras->disr;
        else
            ras->disr = cp->val & DISR_EL1_MASK;
    }
    if (st->is_read)
        st->reg_write(uc, reg, &value);
    /* Unicorn does not know the register, so it ended the block with an UNDEF at this
     * instruction, and the hook's skip branch lands past it, at the block's exit, from
     * where Unicorn would restart the block. Step over the instruction instead: a PC
     * write makes Unicorn leave the block and go on from the new PC. */
    st->reg_read(uc, st->pc_regid, &pc);
    pc += 4;
    st->reg_write(uc, st->pc_regid, &pc);
    return 1;
}

/*
 * Deterministic time without Python: physical count = instructions run * ticks per
 * instruction + ticks skipped in WFI, virtual = physical - voff. Instructions run are
 * exact: the block hook counted the whole block on entry, so subtract the part of it
 * not yet run (Unicorn syncs the PC before calling an MRS hook).
 */
static uint32_t armras_counter_read(void *uc, int reg, const armras_cp_reg *cp, armras_sysreg_state *st)
{
    const armras_block_state *b = st->blocks;
    uint64_t pc = 0, executed = b->instructions, value;
    st->reg_read(uc, st->pc_regid, &pc);
    if (pc >= b->block_start && pc < b->block_end)
        executed -= (b->block_end - pc) / 4;
    value = executed * st->ticks_per_insn + st->skipped_ticks;
    if (cp->op2 == 2)
        value -= st->voff;                  /* CNTVCT_EL0 */
    st->reg_write(uc, reg, &value);
    return 1;
}

static uint32_t armras_sysreg_hook(void *uc, int reg, const armras_cp_reg *cp, void *user_data)
{
    armras_sysreg_state *st = (armras_sysreg_state *)user_data;
    if (cp->op0 != 3)
        return 0;
    if (cp->op1 == 0) {             /* EL1 registers: SP_EL0 and TPIDR_EL1 leave at once */
        if (st->ras != NULL && (cp->crn == 0 || cp->crn == 5 || cp->crn == 12))
            return armras_ras_access(uc, reg, cp, st);
        return 0;
    }
    if (cp->op1 != 3 || cp->crn != 14)
        return 0;
    if (cp->crm == 2 || cp->crm == 3)
        return st->callback(uc, reg, cp, user_data);
    if (st->trap_counters && cp->crm == 0 && (cp->op2 == 1 || cp->op2 == 2))
        return st->is_read ? armras_counter_read(uc, reg, cp, st) : 0;
    return 0;
}

/*
 * Instruction cache maintenance drops stale translations.
 *
 * Unicorn 2.1.4 does not see every store to code. Its notdirty_write() stops watching a
 * TLB entry's page after the first store through it unless that same entry is used for
 * instruction fetch, and tlb_protect_code() is a stub, so nothing watches the page again
 * while the entry lives. A second store to a code page through another virtual alias
 * (Linux patches its text through the linear map: alternatives, lm_alias()) leaves the
 * translations of the old instructions in place for every CPU. What the architecture
 * asks of software that writes instructions is cache maintenance (Arm ARM B2.4.4: DC
 * CVAU, DSB, IC IVAU or IC IALLU[IS], DSB, ISB; CTR_EL0.DIC is 0 on this CPU), so that
 * is where the stale translations go:
 *   IC IVAU Xt    the line's translations, through the VA (all aliases: the cache is
 *                 physically indexed); if Xt is not executable here (Linux's
 *                 __sync_icache_dcache uses the linear map) all of them, as IC IALLU;
 *   IC IALLU[IS]  all translations (the cache is shared by every vCPU), dropped by the
 *                 run loop before any block other than the one asking runs (see
 *                 armras_block_hook: a loop of IC IVAU costs one flush).
 */
typedef int (*uc_vmem_translate_fn)(void *uc, uint64_t address, int prot, uint64_t *paddress);
typedef int (*uc_ctl_fn)(void *uc, int control, ...);

#define ARMRAS_IC_RANGES 64

typedef struct {
    armras_block_state *blocks;     /* where a full flush is requested */
    uc_vmem_translate_fn vmem_translate;
    uc_ctl_fn ctl;                  /* libunicorn's uc_ctl */
    int32_t remove_cache;           /* UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2) */
    int32_t prot_exec;              /* UC_PROT_EXEC */
    uint64_t line_size;             /* smallest I-cache line, CTR_EL0.IminLine */
    uint64_t lines;                 /* IC IVAU served by dropping one line's translations */
    uint64_t flushes;               /* full flushes requested */
    int32_t prot_read;              /* UC_PROT_READ */
    int32_t full;                   /* a full flush is pending (else only `ranges`) */
    uint64_t nranges;               /* physical ranges pending, merged when adjacent */
    uint64_t ranges[ARMRAS_IC_RANGES][2];   /* [start, end) physical, dropped at the stop */
} armras_ic_state;

/* Stop at the next block (a loop of IC IVAU runs on first): Python then drops what is pending. */
static void armras_ic_request(armras_ic_state *st)
{
    if (!st->blocks->tb_flush_pending) {
        st->blocks->tb_flush_pending = 1;
        st->blocks->tb_flush_block = st->blocks->block_start;
    }
}

static void armras_ic_full(armras_ic_state *st)
{
    if (!st->full) {
        st->full = 1;
        st->nranges = 0;
        st->flushes++;
    }
    armras_ic_request(st);
}

/* IC IVAU of a line whose VA translates (for reads: the Arm ARM's rule for IC by VA) but is
 * not executable here, e.g. Linux syncing a user page through its linear map: its
 * translations are dropped by physical address at the stop (ICacheMaintenance.apply). */
static void armras_ic_pending(armras_ic_state *st, uint64_t pa)
{
    uint64_t end = pa + st->line_size;
    if (st->full)
        return;
    if (st->nranges && st->ranges[st->nranges - 1][1] == pa) {
        st->ranges[st->nranges - 1][1] = end;
    } else if (st->nranges < ARMRAS_IC_RANGES) {
        st->ranges[st->nranges][0] = pa;
        st->ranges[st->nranges][1] = end;
        st->nranges++;
    } else {
        armras_ic_full(st);
        return;
    }
    st->lines++;
    armras_ic_request(st);
}

static uint32_t armras_ic_hook(void *uc, int reg, const armras_cp_reg *cp, void *user_data)
{
    armras_ic_state *st = (armras_ic_state *)user_data;
    (void)reg;
    if (cp->op0 != 1 || cp->crn != 7)
        return 0;
    if (cp->op1 == 3 && cp->crm == 5 && cp->op2 == 1) {             /* IC IVAU */
        uint64_t start = cp->val & ~(st->line_size - 1), pa = 0;
        /* Probe first: uc_ctl's own translation would raise a guest fault instead. */
        if (st->vmem_translate(uc, start, st->prot_exec, &pa) == 0 &&
            st->ctl(uc, st->remove_cache, start, start + st->line_size) == 0) {
            st->lines++;
            return 0;
        }
        if (st->vmem_translate(uc, start, st->prot_read, &pa) == 0) {
            armras_ic_pending(st, pa);
            return 0;
        }
    } else if (!(cp->op1 == 0 && cp->op2 == 0 && (cp->crm == 5 || cp->crm == 1))) {
        return 0;                                                   /* not IC IALLU[IS] */
    }
    armras_ic_full(st);
    return 0;
}

/*
 * Exception entry (Arm ARM D1.10) for the guest's own synchronous exceptions.
 *
 * Unicorn 2.1.4 has no AArch64 exception entry: SVC, UDEF, BRK and aborts reach
 * UC_HOOK_INTR with only QEMU's exception number, the rest being in env->exception.
 * armras.arch.cpu.Cpu.take_exception does the entry in Python (~50 us); doing the common
 * cases here keeps system calls and page faults off Python. Rules are the same:
 * SPSR_EL1 = PSTATE, ELR_EL1 = PC, ESR_EL1 = syndrome, FAR_EL1 = fault address for
 * aborts, SP_EL0 banked when the live SP is SP_EL0, PSTATE = EL1h with DAIF masked,
 * PC = VBAR_EL1 + {0x000 SP0, 0x200 SPx, 0x400 lower EL} + 0x000 (synchronous).
 * Anything unusual (HVC/SMC, a target other than EL1, no vector table, a loop of
 * identical exceptions) goes to the Python callback, which does it all the slow way.
 */
typedef int (*uc_context_save_fn)(void *uc, void *context);   /* refreshes an allocated context */
typedef void (*armras_intr_cb)(void *uc, uint32_t intno, void *user_data);

enum { R_PC, R_SP, R_SP_EL0, R_SP_EL1, R_VBAR, R_ELR, R_ESR, R_FAR, R_PSTATE, R_CP, R_COUNT };

typedef struct {
    armras_intr_cb fallback;        /* Python: HVC/SMC and everything not handled here */
    uc_reg_read_fn reg_read;
    uc_reg_write_fn reg_write;
    uc_context_save_fn context_update;
    void *context;                  /* a uc_context owned by Python, to read env->exception */
    uint64_t exception_offset;      /* of env->exception inside that context */
    int32_t regids[R_COUNT];
    int32_t enabled;
    uint64_t entries;               /* exceptions entered here */
    uint64_t last_elr, last_esr;    /* exception-loop detection, as Cpu._check_exception_loop */
    uint64_t repeat;
} armras_intr_state;

#define EXCP_UDEF 1
#define EXCP_SWI 2
#define EXCP_PREFETCH_ABORT 3
#define EXCP_DATA_ABORT 4
#define EXCP_BKPT 7
#define PSTATE_DAIF (0xFu << 6)
#define PSTATE_EL1H ((1u << 2) | PSTATE_SP)
#define LOOP_LIMIT 32

struct armras_exception {           /* QEMU target/arm/cpu.h: env->exception */
    uint32_t syndrome, fsr;
    uint64_t vaddress;
    uint32_t target_el;
};

static void armras_intr_hook(void *uc, uint32_t intno, void *user_data)
{
    armras_intr_state *st = (armras_intr_state *)user_data;
    struct armras_exception exc;
    uint64_t pc = 0, sp = 0, sp_el1 = 0, vbar = 0, pstate = 0, base, elr;
    const int32_t *r = st->regids;

    if (!st->enabled || !(intno == EXCP_SWI || intno == EXCP_UDEF || intno == EXCP_BKPT ||
                          intno == EXCP_PREFETCH_ABORT || intno == EXCP_DATA_ABORT))
        goto slow;
    st->context_update(uc, st->context);
    memcpy(&exc, (const char *)st->context + st->exception_offset, sizeof(exc));
    if (exc.target_el != 1)
        goto slow;
    st->reg_read(uc, r[R_PSTATE], &pstate);
    st->reg_read(uc, r[R_VBAR], &vbar);
    if ((pstate & PSTATE_EL_MASK) > (1u << 2) || vbar == 0)
        goto slow;
    st->reg_read(uc, r[R_PC], &pc);
    elr = pc;
    if (elr >= vbar && elr < vbar + 0x800 && elr == st->last_elr && exc.syndrome == st->last_esr) {
        if (++st->repeat >= LOOP_LIMIT)
            goto slow;
    } else {
        st->repeat = 0;
    }
    st->last_elr = elr;
    st->last_esr = exc.syndrome;

    if ((pstate & PSTATE_EL_MASK) == 0)
        base = 0x400;
    else
        base = (pstate & PSTATE_SP) ? 0x200 : 0x000;
    if ((pstate & PSTATE_EL_MASK) == 0 || !(pstate & PSTATE_SP)) {
        /* The live SP is SP_EL0: bank it and switch to SP_EL1 (QEMU aarch64_save_sp). */
        st->reg_read(uc, r[R_SP], &sp);
        st->reg_read(uc, r[R_SP_EL1], &sp_el1);
        st->reg_write(uc, r[R_SP_EL0], &sp);
        st->reg_write(uc, r[R_SP], &sp_el1);
    }
    {
        uint64_t esr = exc.syndrome, far = exc.vaddress;
        uint64_t new_pstate = PSTATE_EL1H | PSTATE_DAIF, target = vbar + base;
        armras_cp_reg spsr = {4, 0, 3, 0, 0, pstate};
        st->reg_write(uc, r[R_ELR], &elr);
        st->reg_write(uc, r[R_ESR], &esr);
        if (intno == EXCP_PREFETCH_ABORT || intno == EXCP_DATA_ABORT)
            st->reg_write(uc, r[R_FAR], &far);
        st->reg_write(uc, r[R_PSTATE], &new_pstate);
        st->reg_write(uc, r[R_PC], &target);
        /* Last, through the cp-reg path: rebuilds QEMU's cached hflags after the
         * PSTATE change (without it the handler's ERET would UNDEF). */
        st->reg_write(uc, r[R_CP], &spsr);
    }
    st->entries++;
    return;
slow:
    st->repeat = 0;
    st->fallback(uc, intno, user_data);
}

static struct PyModuleDef armras_native_module = {
    PyModuleDef_HEAD_INIT, "armras.arch._native",
    "Native Unicorn block hook (stop requests and instruction counting).", -1, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m = PyModule_Create(&armras_native_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObject(m, "block_hook_address",
                           PyLong_FromVoidPtr((void *)armras_block_hook)) < 0 ||
        PyModule_AddIntConstant(m, "state_size", (long)sizeof(armras_block_state)) < 0 ||
        PyModule_AddObject(m, "sysreg_hook_address",
                           PyLong_FromVoidPtr((void *)armras_sysreg_hook)) < 0 ||
        PyModule_AddIntConstant(m, "sysreg_state_size", (long)sizeof(armras_sysreg_state)) < 0 ||
        PyModule_AddIntConstant(m, "ras_state_size", (long)sizeof(armras_ras_state)) < 0 ||
        PyModule_AddObject(m, "ic_hook_address",
                           PyLong_FromVoidPtr((void *)armras_ic_hook)) < 0 ||
        PyModule_AddIntConstant(m, "ic_state_size", (long)sizeof(armras_ic_state)) < 0 ||
        PyModule_AddObject(m, "intr_hook_address",
                           PyLong_FromVoidPtr((void *)armras_intr_hook)) < 0 ||
        PyModule_AddIntConstant(m, "intr_state_size", (long)sizeof(armras_intr_state)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
