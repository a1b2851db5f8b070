/* sdei_ref: the reference SDEI guest, a small OS's firmware-first RAS path.
 * Finds the HEST and the SDEI table through the RSDP, checks SDEI's error returns,
 * registers every SDEI-notified GHES source's event (the HEST vector) with sdei_entry
 * (sdei_ref_asm.S), then waits for the host's injections, one phase at a time:
 *   basic   an event interrupts a wait loop with IRQs masked: plain EVENT_COMPLETE
 *   resume  the same with IRQs unmasked: EVENT_COMPLETE_AND_RESUME to the IRQ vector,
 *           as Linux's do_sdei_event does
 *   polled  the polled source's block is read every poll interval until it holds a record
 *   nest    (a normal and a critical SDEI source only) the critical event interrupts
 *           the normal event's handler
 * Every handler parses and acknowledges its source's record like Linux's ghes.c.
 * Exit: 0 ok, 1 no usable HEST/SDEI, 2 a check failed (a "FAIL: ..." line says which),
 * 3 unexpected exception. */
#include "guest.h"

#define WAIT_MS       2000          /* how long a phase waits for the host's injection */
#define MAX_POLLS     10
#define MAX_SDEI      4
#define WAIT_REGS     29            /* x0-x28 as sdei_wait stores them */
#define SDEI_PATTERN(n) (0x5DE1000000000000UL | (u64)(n) << 32 | 0xC0DE0000UL | (u64)(n))
#define PSR_MODE_MASK 0xfUL
#define PSR_MODE_EL1T 0x4UL
#define PSR_MODE_EL1H 0x5UL
#define PSR_I         (1UL << 7)
#define PSR_DAIF      0x3c0UL
#define VEC_CUR_SP0_IRQ 0x080

extern char sdei_entry[], sdei_wait_loop[], sdei_wait_end[];
u64 sdei_wait(volatile u32 *flag, u64 deadline, u64 *regs);
u64 sdei_handler(u64 event, u64 arg, u64 pc, u64 pstate);
void __attribute__((noreturn)) sdei_complete_failed(s64 err, u64 resume);

#define FAIL(fmt, ...) do { printf("FAIL: " fmt "\n", ##__VA_ARGS__); failures++; } while (0)

struct sdei_source {
    struct ghes_source *ghes;
    u32 event;                      /* the HEST notification's vector */
    s64 priority;                   /* EVENT_GET_INFO EV_PRIORITY: 0 normal, 1 critical */
    u32 taken;
    u64 x[4];                       /* x0-x3 at handler entry */
    u64 ctx[4];                     /* EVENT_CONTEXT 0-3: the interrupted x0-x3 */
};

enum { PH_SETUP, PH_BASIC, PH_RESUME, PH_NEST, PH_DONE };

static struct sdei_source srcs[MAX_SDEI];
static int nsrc;
static int failures;
static volatile int phase;
static struct sdei_source *awaited;     /* the event main() waits for */
static volatile u32 wake;               /* its handler ran */
static volatile int depth;              /* handlers running on this PE */
/* resume phase */
static volatile int resume_expected, resumed;
static u64 resume_elr, resume_spsr;     /* what the IRQ vector found */
static u32 resume_iar;
/* nest phase */
static struct sdei_source *nest_normal, *nest_critical;
static volatile u32 crit_done;
static u64 nest_pc;
static u64 nest_normal_frame, nest_critical_frame;  /* the handlers' frame addresses */
static int nest_depth;
static s64 nest_normal_status;
static u32 order[4];                    /* event | ORDER_COMPLETE, in the order seen */
static int norder;
#define ORDER_COMPLETE 0x80000000u

static u64 ms_ticks(u64 ms)
{
    return ms * (timer_freq() / 1000);
}

static int in_wait_loop(u64 pc)
{
    return pc >= (u64)sdei_wait_loop && pc < (u64)sdei_wait_end;
}

static void log_order(u32 what)
{
    if (norder < 4)
        order[norder] = what;
    norder++;
}

static void expect_ret(const char *what, s64 got, s64 want)
{
    printf("SDEI check %s -> %ld %s, expect %ld: %s\n", what, got, sdei_error_name(got), want,
           got == want ? "OK" : "FAIL");
    if (got != want)
        FAIL("SDEI %s returned %ld, expected %ld", what, got, want);
}

static void check_regs(const char *what, const u64 *regs)
{
    int bad = 0;
    for (int n = 0; n < WAIT_REGS; n++) {
        if (n == 18 || regs[n] == SDEI_PATTERN(n))
            continue;
        FAIL("%s: x%d=0x%lx after the event, expected 0x%lx", what, n, regs[n], SDEI_PATTERN(n));
        bad++;
    }
    if (!bad)
        printf("SDEI regs intact after %s: x0-x17 x19-x28\n", what);
}

static struct sdei_source *source_of(u64 arg)
{
    for (int i = 0; i < nsrc; i++)
        if (arg == (u64)&srcs[i])
            return &srcs[i];
    return NULL;
}

/* Called by sdei_entry for every event (DAIF masked, on the interrupted stack). */
u64 sdei_handler(u64 event, u64 arg, u64 pc, u64 pstate)
{
    struct sdei_source *s = source_of(arg);
    int level = ++depth;
    u64 cpu = read_sysreg(mpidr_el1) & 0xff;
    u64 resume = 0;

    log_order((u32)event);
    printf("SDEI event %lu on CPU %lu: x0=0x%lx x1=0x%lx x2=0x%lx x3=0x%lx depth=%d\n", event, cpu,
           event, arg, pc, pstate, level);
    if (!s || s->event != event) {
        FAIL("SDEI handler: x1=0x%lx is not the argument registered for event %lu", arg, event);
        depth--;
        return 0;
    }
    s->taken++;
    s->x[0] = event;
    s->x[1] = arg;
    s->x[2] = pc;
    s->x[3] = pstate;
    for (int i = 0; i < 4; i++)
        s->ctx[i] = (u64)sdei_call(SDEI_EVENT_CONTEXT, i, 0, 0, 0, 0);
    s64 status = sdei_call(SDEI_EVENT_STATUS, event, 0, 0, 0, 0);
    s64 ctx18 = sdei_call(SDEI_EVENT_CONTEXT, 18, 0, 0, 0, 0);
    printf("SDEI context x0=0x%lx x1=0x%lx x2=0x%lx x3=0x%lx status=0x%lx context(18)=%ld\n",
           s->ctx[0], s->ctx[1], s->ctx[2], s->ctx[3], status, ctx18);
    if (status != (SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED | SDEI_STATUS_RUNNING))
        FAIL("EVENT_STATUS of running event %lu is 0x%lx, expected 0x7", event, status);
    if (ctx18 != SDEI_INVALID_PARAMETERS)
        FAIL("EVENT_CONTEXT(18) returned %ld, expected -2 (x0-x17 only)", ctx18);

    /* Linux ghes_sdei_*_callback: read the source's block, then clear and ack it. */
    struct cper_result r;
    ghes_read(s->ghes, &r);
    if (r.valid && r.have_mem_pa)
        printf("SDEI event %lu on CPU %lu: source=%u physical_address 0x%lx\n", event, cpu,
               s->ghes->id, r.mem_pa);
    else
        FAIL("SDEI event %lu: source %u holds no memory-error record", event, s->ghes->id);
    ghes_ack(s->ghes, &r);
    if (!r.acked || r.block_status_after)
        FAIL("ACK source=%u: read_ack=0x%lx block_status=0x%x", s->ghes->id, r.read_ack,
             r.block_status_after);

    if (phase == PH_NEST && s == nest_normal && level == 1) {
        u64 regs[WAIT_REGS];
        u64 deadline = timer_now() + ms_ticks(WAIT_MS);
        nest_normal_frame = (u64)__builtin_frame_address(0);
        timer_arm_at(deadline);
        printf("SDEI in normal handler event=%u, waiting for critical event %u", s->event,
               nest_critical->event);           /* sdei_wait ends the line */
        u64 timeout = sdei_wait(&crit_done, deadline, regs);
        timer_stop();
        if (timeout)
            FAIL("critical event %u did not preempt the normal handler within %d ms",
                 nest_critical->event, WAIT_MS);
        else
            check_regs("critical event in normal handler", regs);
    } else if (phase == PH_NEST && s == nest_critical) {
        nest_pc = pc;
        nest_depth = level;
        /* Entered on the interrupted SP: below the normal handler's frame if it was
         * the normal handler (its sdei_wait call) that the event interrupted. */
        nest_critical_frame = (u64)__builtin_frame_address(0);
        nest_normal_status = sdei_call(SDEI_EVENT_STATUS, nest_normal->event, 0, 0, 0, 0);
        printf("SDEI nested: critical event %u interrupted normal event %u at PC 0x%lx (%s) "
               "depth=%d status(%u)=0x%lx frame 0x%lx %s the normal handler's 0x%lx\n", s->event,
               nest_normal->event, pc, in_wait_loop(pc) ? "its wait loop" : "outside its wait loop",
               level, nest_normal->event, nest_normal_status, nest_critical_frame,
               nest_critical_frame < nest_normal_frame ? "below" : "NOT below", nest_normal_frame);
        crit_done = 1;
    }

    /* Linux do_sdei_event: an event that interrupted EL1 with IRQs unmasked is
     * completed into the IRQ vector, so it looks like an IRQ taken there. */
    u64 mode = pstate & PSR_MODE_MASK;
    if ((mode == PSR_MODE_EL1H || mode == PSR_MODE_EL1T) && !(pstate & PSR_I)) {
        resume = read_sysreg(vbar_el1) + (mode == PSR_MODE_EL1H ? VEC_CUR_SPX_IRQ : VEC_CUR_SP0_IRQ);
        resume_expected = 1;
        printf("SDEI event %lu: IRQs were unmasked, COMPLETE_AND_RESUME at 0x%lx (IRQ vector)\n",
               event, resume);
    }
    log_order((u32)event | ORDER_COMPLETE);
    if (s == awaited)
        wake = 1;
    depth--;
    return resume;
}

void sdei_complete_failed(s64 err, u64 resume)
{
    printf("FAIL: SDEI EVENT_COMPLETE%s returned %ld %s\n", resume ? "_AND_RESUME" : "", err,
           sdei_error_name(err));
    system_off(2);
}

void exc_dispatch(struct trap_frame *f, u64 vec)
{
    if (vec != VEC_CUR_SPX_IRQ)
        exc_unexpected(f, vec);
    if (resume_expected) {
        /* EVENT_COMPLETE_AND_RESUME: as if an IRQ had been taken where the event struck. */
        resume_expected = 0;
        resumed++;
        resume_elr = f->elr;
        resume_spsr = f->spsr;
        resume_iar = gic_ack() & 0x3ff;     /* Linux's IRQ entry finds no interrupt: 1023 */
        if (resume_iar < 1020)
            gic_eoi(resume_iar);
    }
    for (int n = 0; n < 16; n++) {
        u32 iar = gic_ack();
        u32 id = iar & 0x3ff;
        if (id >= 1020)
            break;
        if (id == INTID_VTIMER)
            timer_stop();                   /* a wait's deadline: the loop sees it */
        else
            printf("IRQ unexpected intid=%u\n", id);
        gic_eoi(iar);
    }
}

/* Waits for `s`'s handler to run; the host injects on the "SDEI WAIT <label>" line. */
static int wait_for(struct sdei_source *s, const char *label, int irqs, u64 *regs)
{
    awaited = s;
    wake = 0;
    u64 deadline = timer_now() + ms_ticks(WAIT_MS);
    timer_arm_at(deadline);
    printf("SDEI WAIT %s event=%u", label, s->event);   /* sdei_wait ends the line */
    if (irqs)
        irq_enable();
    u64 timeout = sdei_wait(&wake, deadline, regs);
    irq_disable();
    timer_stop();
    if (timeout) {
        FAIL("SDEI %s: event %u was not taken within %d ms", label, s->event, WAIT_MS);
        return 0;
    }
    return 1;
}

/* The handler's view of one event taken in the wait loop. */
static void check_entry(const char *what, struct sdei_source *s, u64 pstate_bits)
{
    if (s->x[0] != s->event || s->x[1] != (u64)s)
        FAIL("%s: handler got x0=0x%lx x1=0x%lx, expected the event %u and 0x%lx", what, s->x[0],
             s->x[1], s->event, (u64)s);
    if (!in_wait_loop(s->x[2]))
        FAIL("%s: interrupted PC 0x%lx is outside the wait loop 0x%lx-0x%lx", what, s->x[2],
             (u64)sdei_wait_loop, (u64)sdei_wait_end);
    if ((s->x[3] & (PSR_MODE_MASK | PSR_DAIF)) != pstate_bits)
        FAIL("%s: interrupted PSTATE 0x%lx, expected EL1h with DAIF 0x%lx", what, s->x[3],
             pstate_bits & PSR_DAIF);
    for (int i = 0; i < 4; i++)
        if (s->ctx[i] != SDEI_PATTERN(i))
            FAIL("%s: EVENT_CONTEXT(%d)=0x%lx, expected the interrupted x%d=0x%lx", what, i,
                 s->ctx[i], i, SDEI_PATTERN(i));
}

static void status_is(const char *what, u32 event, s64 want)
{
    s64 st = sdei_call(SDEI_EVENT_STATUS, event, 0, 0, 0, 0);
    printf("SDEI status %s event=%u: 0x%lx\n", what, event, st);
    if (st != want)
        FAIL("EVENT_STATUS %s event=%u is 0x%lx, expected 0x%lx", what, event, st, want);
}

static void basic_phase(struct sdei_source *s)
{
    u64 regs[WAIT_REGS];
    phase = PH_BASIC;
    if (!wait_for(s, "basic", 0, regs))
        return;
    check_entry("basic", s, PSR_MODE_EL1H | PSR_DAIF);
    check_regs("basic", regs);
    status_is("after complete", s->event, SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED);
}

static void resume_phase(struct sdei_source *s)
{
    u64 regs[WAIT_REGS];
    phase = PH_RESUME;
    resumed = 0;
    if (!wait_for(s, "resume", 1, regs))
        return;
    check_entry("resume", s, PSR_MODE_EL1H | (PSR_DAIF & ~PSR_I));
    printf("SDEI resumed at IRQ vector: ELR_EL1=0x%lx SPSR_EL1=0x%lx IAR=%u (handler x2=0x%lx x3=0x%lx)\n",
           resume_elr, resume_spsr, resume_iar, s->x[2], s->x[3]);
    if (resumed != 1)
        FAIL("resume: the IRQ vector was entered %d times, expected once", resumed);
    else if (resume_elr != s->x[2] || resume_spsr != s->x[3])
        FAIL("resume: ELR_EL1/SPSR_EL1 0x%lx/0x%lx are not the interrupted PC/PSTATE 0x%lx/0x%lx",
             resume_elr, resume_spsr, s->x[2], s->x[3]);
    check_regs("resume", regs);
    status_is("after complete_and_resume", s->event, SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED);
}

/* Linux ghes_poll_func: read the block every poll interval until it holds a record. */
static void poll_phase(void)
{
    struct ghes_source *p = ghes_by_notify(HEST_NOTIFY_POLLED);
    if (!p) {
        printf("POLL skipped: the HEST lists no polled source\n");
        return;
    }
    if (!p->poll_interval) {
        FAIL("POLL source=%u: poll interval 0", p->id);
        return;
    }
    printf("POLL source=%u every %u ms: waiting for a record\n", p->id, p->poll_interval);
    u64 start = timer_now();
    for (int n = 1; n <= MAX_POLLS; n++) {
        delay_ms_wfi(p->poll_interval);
        u64 blk = mmio_read64(p->errsts_reg);
        if (!phys_ok(blk, p->block_len)) {
            FAIL("POLL source=%u: block 0x%lx outside RAM", p->id, blk);
            return;
        }
        if (mmio_read32(blk) == 0)
            continue;                       /* ghes_peek_estatus: nothing yet */
        u64 ms = (timer_now() - start) / ms_ticks(1);
        struct cper_result r;
        ghes_process(p, &r);                /* ghes_clear_estatus + ghes_ack_error */
        if (!r.valid || !r.have_mem_pa)
            FAIL("POLL source=%u: the record is not a memory error", p->id);
        else
            printf("POLL source=%u record at poll %d (%lu ms): physical_address 0x%lx\n", p->id, n,
                   ms, r.mem_pa);
        if (!r.acked || r.block_status_after)
            FAIL("ACK source=%u: read_ack=0x%lx block_status=0x%x", p->id, r.read_ack,
                 r.block_status_after);
        return;
    }
    FAIL("POLL source=%u: no record within %d polls", p->id, MAX_POLLS);
}

static void nest_phase(void)
{
    u64 regs[WAIT_REGS];
    if (!nest_normal || !nest_critical) {
        printf("SDEI NEST skipped: the HEST lists no %s-priority SDEI source\n",
               nest_normal ? "critical" : "normal");
        return;
    }
    phase = PH_NEST;
    norder = 0;
    crit_done = 0;
    if (!wait_for(nest_normal, "nest", 0, regs))
        return;
    printf("SDEI NEST order: enter %u, enter %u, complete %u, complete %u\n", order[0] & ~ORDER_COMPLETE,
           order[1] & ~ORDER_COMPLETE, order[2] & ~ORDER_COMPLETE, order[3] & ~ORDER_COMPLETE);
    u32 n = nest_normal->event, c = nest_critical->event;
    if (norder != 4 || order[0] != n || order[1] != c || order[2] != (c | ORDER_COMPLETE) ||
        order[3] != (n | ORDER_COMPLETE))
        FAIL("NEST: %d handler steps, expected enter %u, enter %u, complete %u, complete %u", norder,
             n, c, c, n);
    if (nest_depth != 2 || !in_wait_loop(nest_pc) || nest_critical_frame >= nest_normal_frame ||
        nest_normal_status != (SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED | SDEI_STATUS_RUNNING))
        FAIL("NEST: critical handler ran at depth %d, interrupted PC 0x%lx, normal status 0x%lx; "
             "expected depth 2 inside the normal handler's wait loop with the normal event running "
             "(frame 0x%lx, normal handler's 0x%lx)", nest_depth, nest_pc, nest_normal_status,
             nest_critical_frame, nest_normal_frame);
    check_entry("nest", nest_normal, PSR_MODE_EL1H | PSR_DAIF);
    check_regs("nest", regs);
    status_is("after nest", n, SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED);
    status_is("after nest", c, SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED);
}

static u32 unknown_event(void)
{
    u32 e = 0x40000;
    for (int i = 0; i < nsrc; i++)
        if (srcs[i].event == e) {
            e++;
            i = -1;
        }
    return e;
}

static int setup_sdei(void)
{
    char what[80];
    for (int i = 0; i < ghes_count; i++) {
        struct ghes_source *g = &ghes[i];
        printf("SOURCE id=%u notify=%u(%s) vector=%u poll_interval=%u block_len=%u\n", g->id,
               g->notify, ghes_notify_name(g->notify), g->vector, g->poll_interval, g->block_len);
        if (g->notify == HEST_NOTIFY_SDEI && nsrc < MAX_SDEI) {
            srcs[nsrc].ghes = g;
            srcs[nsrc].event = g->vector;
            nsrc++;
        }
    }
    if (!acpi_sdei_table) {
        printf("FAIL: no SDEI table in the XSDT: firmware has no SDEI dispatcher\n");
        return 0;
    }
    printf("ACPI SDEI table at 0x%lx length=%u revision=%u\n", acpi_sdei_table,
           rd32(acpi_sdei_table + 4), rd8(acpi_sdei_table + 8));
    s64 v = sdei_call(SDEI_VERSION, 0, 0, 0, 0, 0);
    printf("SDEI version=0x%lx (%lu.%lu vendor %lu)\n", v, SDEI_VERSION_MAJOR((u64)v),
           SDEI_VERSION_MINOR((u64)v), SDEI_VERSION_VENDOR((u64)v));
    if (v < 0 || SDEI_VERSION_MAJOR((u64)v) != 1) {
        printf("FAIL: SDEI VERSION returned 0x%lx, expected major version 1\n", v);
        return 0;
    }
    if (!nsrc) {
        printf("FAIL: the HEST lists no SDEI-notified source\n");
        return 0;
    }
    struct sdei_source *p = &srcs[0];

    /* DEN 0054 error returns, before anything is registered. */
    u32 unknown = unknown_event();
    snprintf(what, sizeof(what), "register unknown event=%u", unknown);
    expect_ret(what, sdei_call(SDEI_EVENT_REGISTER, unknown, (u64)sdei_entry, 0, SDEI_REGF_RM_ANY, 0),
               SDEI_INVALID_PARAMETERS);
    expect_ret("context outside a handler", sdei_call(SDEI_EVENT_CONTEXT, 0, 0, 0, 0, 0), SDEI_DENIED);
    expect_ret("complete outside a handler", sdei_call(SDEI_EVENT_COMPLETE, 0, 0, 0, 0, 0), SDEI_DENIED);
    expect_ret("complete_and_resume outside a handler",
               sdei_call(SDEI_EVENT_COMPLETE_AND_RESUME, (u64)vectors + VEC_CUR_SPX_IRQ, 0, 0, 0, 0),
               SDEI_DENIED);
    snprintf(what, sizeof(what), "enable unregistered event=%u", p->event);
    expect_ret(what, sdei_call(SDEI_EVENT_ENABLE, p->event, 0, 0, 0, 0), SDEI_DENIED);
    snprintf(what, sizeof(what), "status unregistered event=%u", p->event);
    expect_ret(what, sdei_call(SDEI_EVENT_STATUS, p->event, 0, 0, 0, 0), 0);

    for (int i = 0; i < nsrc; i++) {
        struct sdei_source *s = &srcs[i];
        s64 type = sdei_call(SDEI_EVENT_GET_INFO, s->event, SDEI_INFO_EV_TYPE, 0, 0, 0);
        s64 sig = sdei_call(SDEI_EVENT_GET_INFO, s->event, SDEI_INFO_EV_SIGNALED, 0, 0, 0);
        s->priority = sdei_call(SDEI_EVENT_GET_INFO, s->event, SDEI_INFO_EV_PRIORITY, 0, 0, 0);
        printf("SDEI info event=%u source=%u type=%ld(%s) signaled=%ld priority=%ld(%s)\n", s->event,
               s->ghes->id, type, type == 0 ? "private" : "shared", sig, s->priority,
               s->priority == 1 ? "critical" : "normal");
        if (type < 0 || sig < 0 || s->priority < 0)
            FAIL("EVENT_GET_INFO of event %u failed", s->event);
        if (s->priority == 1 && !nest_critical)
            nest_critical = s;
        if (s->priority == 0 && !nest_normal)
            nest_normal = s;
        s64 reg = sdei_call(SDEI_EVENT_REGISTER, s->event, (u64)sdei_entry, (u64)s, SDEI_REGF_RM_ANY, 0);
        s64 st1 = sdei_call(SDEI_EVENT_STATUS, s->event, 0, 0, 0, 0);
        s64 en = sdei_call(SDEI_EVENT_ENABLE, s->event, 0, 0, 0, 0);
        s64 st2 = sdei_call(SDEI_EVENT_STATUS, s->event, 0, 0, 0, 0);
        printf("SDEI register event=%u source=%u entry=0x%lx arg=0x%lx -> %ld status=0x%lx; "
               "enable -> %ld status=0x%lx\n", s->event, s->ghes->id, (u64)sdei_entry, (u64)s, reg,
               st1, en, st2);
        if (reg != 0 || st1 != SDEI_STATUS_REGISTERED || en != 0 ||
            st2 != (SDEI_STATUS_REGISTERED | SDEI_STATUS_ENABLED))
            FAIL("registering event %u: register %ld status 0x%lx, enable %ld status 0x%lx", s->event,
                 reg, st1, en, st2);
    }
    snprintf(what, sizeof(what), "register again event=%u", p->event);
    expect_ret(what, sdei_call(SDEI_EVENT_REGISTER, p->event, (u64)sdei_entry, (u64)p, SDEI_REGF_RM_ANY, 0),
               SDEI_DENIED);
    return 1;
}

static void teardown_sdei(void)
{
    char what[80];
    for (int i = 0; i < nsrc; i++) {
        snprintf(what, sizeof(what), "unregister event=%u", srcs[i].event);
        expect_ret(what, sdei_call(SDEI_EVENT_UNREGISTER, srcs[i].event, 0, 0, 0, 0), SDEI_SUCCESS);
        status_is("after unregister", srcs[i].event, 0);
    }
    expect_ret("pe_mask (unmasked)", sdei_call(SDEI_PE_MASK, 0, 0, 0, 0, 0), 1);
    expect_ret("pe_mask (masked)", sdei_call(SDEI_PE_MASK, 0, 0, 0, 0, 0), 0);
}

int main(u64 rsdp)
{
    printf("sdei_ref: armras reference SDEI guest (SDEI-notified and polled GHES sources)\n");
    printf("PSCI version=0x%lx CurrentEL=%lu rsdp=0x%lx\n", psci_call(PSCI_VERSION, 0, 0, 0),
           (read_sysreg(currentel) >> 2) & 3, rsdp);
    if (!acpi_init(rsdp)) {
        printf("FAIL: no usable GHES error source\n");
        return 1;
    }
    if (!setup_sdei())
        return 1;

    gic_init();
    gic_enable_irq(INTID_VTIMER, 0);
    expect_ret("pe_unmask", sdei_call(SDEI_PE_UNMASK, 0, 0, 0, 0, 0), SDEI_SUCCESS);
    printf("SDEI READY events=%d\n", nsrc);

    basic_phase(&srcs[0]);
    resume_phase(&srcs[0]);
    poll_phase();
    nest_phase();
    phase = PH_DONE;
    teardown_sdei();

    int taken = 0;
    for (int i = 0; i < nsrc; i++)
        taken += srcs[i].taken;
    printf("DONE sdei_taken=%d failures=%d\n", taken, failures);
    int status = failures ? 2 : 0;
    printf("POWEROFF status=%d\n", status);
    return status;
}
