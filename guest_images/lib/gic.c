/* GICv2 distributor + CPU interface, as Linux's irq-gic.c sets them up. */
#include "guest.h"

#define GICD_CTLR        0x000
#define GICD_ISENABLER   0x100
#define GICD_ICENABLER   0x180
#define GICD_ICPENDR     0x280
#define GICD_IPRIORITYR  0x400
#define GICD_ITARGETSR   0x800
#define GICD_ICFGR       0xC00
#define GICC_CTLR        0x000
#define GICC_PMR         0x004
#define GICC_BPR         0x008
#define GICC_IAR         0x00C
#define GICC_EOIR        0x010

/* 32-bit read-modify-write of one byte lane (no byte accesses to the GIC). */
static void gicd_set_byte(u32 reg, u32 intid, u8 val)
{
    u64 a = GICD_BASE + reg + (intid & ~3u);
    unsigned sh = (intid & 3) * 8;
    mmio_write32(a, (mmio_read32(a) & ~(0xffu << sh)) | ((u32)val << sh));
}

void gic_init(void)
{
    mmio_write32(GICD_BASE + GICD_CTLR, 0);
    for (u32 i = 0; i < 64; i += 32) {          /* INTIDs 0..63 cover what we use */
        mmio_write32(GICD_BASE + GICD_ICENABLER + i / 8, 0xffffffff);
        mmio_write32(GICD_BASE + GICD_ICPENDR + i / 8, 0xffffffff);
    }
    mmio_write32(GICD_BASE + GICD_CTLR, 1);
    mmio_write32(GICC_BASE + GICC_PMR, 0xf0);
    mmio_write32(GICC_BASE + GICC_BPR, 0);
    mmio_write32(GICC_BASE + GICC_CTLR, 1);
}

void gic_enable_irq(u32 intid, int edge)
{
    gicd_set_byte(GICD_IPRIORITYR, intid, 0xa0);
    if (intid >= 32)
        gicd_set_byte(GICD_ITARGETSR, intid, 0x01);     /* CPU 0 */
    if (intid >= 16) {
        u64 a = GICD_BASE + GICD_ICFGR + (intid / 16) * 4;
        u32 bit = 1u << ((intid % 16) * 2 + 1);          /* 1 = edge, 0 = level */
        u32 v = mmio_read32(a);
        mmio_write32(a, edge ? (v | bit) : (v & ~bit));
    }
    mmio_write32(GICD_BASE + GICD_ISENABLER + (intid / 32) * 4, 1u << (intid % 32));
}

u32 gic_ack(void)
{
    return mmio_read32(GICC_BASE + GICC_IAR);
}

void gic_eoi(u32 iar)
{
    mmio_write32(GICC_BASE + GICC_EOIR, iar);
}
