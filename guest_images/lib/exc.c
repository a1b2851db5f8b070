#include "guest.h"

const char *vec_name(u64 vec)
{
    static const char *const kind[4] = { "sync", "irq", "fiq", "serror" };
    static const char *const from[4] = { "cur-el-sp0", "cur-el-spx", "lower-el-a64", "lower-el-a32" };
    static char buf[32];
    snprintf(buf, sizeof(buf), "%s-%s", from[(vec >> 9) & 3], kind[(vec >> 7) & 3]);
    return buf;
}

void exc_unexpected(struct trap_frame *f, u64 vec)
{
    u32 esr = (u32)read_sysreg(esr_el1);
    u64 far = read_sysreg(far_el1);
    printf("UNEXPECTED exception ESR=0x%08x ELR=0x%lx FAR=0x%lx SPSR=0x%lx vector=0x%03lx (%s)\n",
           esr, f->elr, far, f->spsr, vec, vec_name(vec));
    system_off(EXIT_UNEXPECTED);
}
