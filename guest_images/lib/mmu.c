/* Stage-1 EL1&0 identity map, 4 KiB granule, 39-bit VA (T0SZ=25, walk starts at L1).
 *
 *   L1[0]   -> L2 "low":  0x0800_0000-0x09FF_FFFF as 2 MiB Device-nGnRnE blocks, EL1 only
 *   L1[1]   -> L2 "ram":  RAM as 2 MiB Normal WB blocks, EL1 only, except
 *              L2[0] -> L3: 0x4000_0000-0x401F_FFFF as 4 KiB pages (the image lives here):
 *                     .user_text pages  EL0+EL1 read-only, EL0-executable (PXN)
 *                     .user_data pages  EL0+EL1 read-write, never executable
 *                     L3[511] (L3_HOLE_VA = 0x401F_F000) invalid -> translation fault, level 3
 *                     everything else   EL1 read-write Normal WB
 *   L1[2..] 1 GiB Normal blocks if RAM extends above 2 GiB
 *   L1[511] (L1_HOLE_VA = 0x7F_DEAD_0000) invalid -> translation fault, level 1
 */
#include "guest.h"

#define PTE_VALID      (1UL << 0)
#define PTE_TABLE      (1UL << 1)      /* L1/L2: next-level table; L3: page */
#define PTE_ATTR(i)    ((u64)(i) << 2)
#define PTE_AP_EL0     (1UL << 6)      /* AP[1] */
#define PTE_AP_RO      (1UL << 7)      /* AP[2] */
#define PTE_SH_INNER   (3UL << 8)
#define PTE_AF         (1UL << 10)
#define PTE_PXN        (1UL << 53)
#define PTE_UXN        (1UL << 54)

#define MAIR_NORMAL    0               /* Attr0 = 0xFF Normal, inner/outer WB RW-allocate */
#define MAIR_DEVICE    1               /* Attr1 = 0x00 Device-nGnRnE */

#define NORMAL_EL1  (PTE_VALID | PTE_ATTR(MAIR_NORMAL) | PTE_SH_INNER | PTE_AF | PTE_UXN)
#define DEVICE_EL1  (PTE_VALID | PTE_ATTR(MAIR_DEVICE) | PTE_AF | PTE_UXN | PTE_PXN)
#define USER_TEXT   (PTE_VALID | PTE_ATTR(MAIR_NORMAL) | PTE_SH_INNER | PTE_AF | \
                     PTE_AP_EL0 | PTE_AP_RO | PTE_PXN)
#define USER_DATA   (PTE_VALID | PTE_ATTR(MAIR_NORMAL) | PTE_SH_INNER | PTE_AF | \
                     PTE_AP_EL0 | PTE_UXN | PTE_PXN)

#define SZ_2M  (1UL << 21)
#define SZ_1G  (1UL << 30)

static u64 l1[512] __attribute__((aligned(4096)));
static u64 l2_low[512] __attribute__((aligned(4096)));
static u64 l2_ram[512] __attribute__((aligned(4096)));
static u64 l3_img[512] __attribute__((aligned(4096)));

void mmu_enable(void)
{
    u64 ut0 = (u64)__user_text_start, ut1 = (u64)__user_text_end;
    u64 ud0 = (u64)__user_data_start, ud1 = (u64)__user_data_end;

    for (u64 pa = DEVICE_START; pa < DEVICE_END; pa += SZ_2M)
        l2_low[pa / SZ_2M] = pa | DEVICE_EL1;
    l1[0] = (u64)l2_low | PTE_VALID | PTE_TABLE;

    for (u64 i = 0; i < 511; i++) {
        u64 pa = RAM_BASE + i * 4096;
        u64 attr = NORMAL_EL1;
        if (pa >= ut0 && pa < ut1)
            attr = USER_TEXT;
        else if (pa >= ud0 && pa < ud1)
            attr = USER_DATA;
        l3_img[i] = pa | attr | PTE_TABLE;     /* L3 page descriptor: bits[1:0] = 0b11 */
    }
    l3_img[511] = 0;                           /* L3_HOLE_VA */
    l2_ram[0] = (u64)l3_img | PTE_VALID | PTE_TABLE;
    for (u64 i = 1; i < 512 && RAM_BASE + i * SZ_2M < ram_end; i++)
        l2_ram[i] = (RAM_BASE + i * SZ_2M) | NORMAL_EL1;
    l1[1] = (u64)l2_ram | PTE_VALID | PTE_TABLE;
    for (u64 i = 2; i < 511 && i * SZ_1G < ram_end; i++)
        l1[i] = (i * SZ_1G) | NORMAL_EL1;
    l1[511] = 0;                               /* L1_HOLE_VA */

    write_sysreg(mair_el1, 0xffUL | (0x00UL << 8));
    write_sysreg(tcr_el1,
                 25UL                          /* T0SZ: 39-bit VA */
                 | (1UL << 8) | (1UL << 10)    /* IRGN0/ORGN0: WB RA WA */
                 | (3UL << 12)                 /* SH0: inner shareable */
                 | (0UL << 14)                 /* TG0: 4 KiB */
                 | (1UL << 23)                 /* EPD1: no TTBR1 walks */
                 | (2UL << 32));               /* IPS: 40-bit PA */
    write_sysreg(ttbr0_el1, (u64)l1);
    isb();
    __asm__ volatile("tlbi vmalle1\n\tdsb ish\n\tisb" ::: "memory");
    /* RES1 bits (11, 20, 22, 23=SPAN: no PAN on entry, 28, 29) | nTWE | nTWI | I | C | M */
    u64 sctlr = 0x30D00800UL | (1UL << 18) | (1UL << 16) | (1UL << 12) | (1UL << 2) | 1UL;
    write_sysreg(sctlr_el1, sctlr);
    isb();
}
