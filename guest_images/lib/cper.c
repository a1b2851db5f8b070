/* GHES error status block processing, after Linux drivers/acpi/apei/ghes.c:
 * peek (address register -> block, block_status), check lengths, walk the Generic
 * Error Data Entries (UEFI N.2), print, clear block_status, then the GHESv2 ack. */
#include "guest.h"

#define GEBS_SIZE        20          /* Generic Error Status Block header */
#define GEDE_SIZE_V300   72          /* Generic Error Data Entry, revision >= 0x300 */
#define GEDE_SIZE_OLD    64

static const u8 GUID_MEMORY[16] = {      /* A5BC1114-6F64-4EDE-B863-3E83ED7C83B1 */
    0x14, 0x11, 0xbc, 0xa5, 0x64, 0x6f, 0xde, 0x4e,
    0xb8, 0x63, 0x3e, 0x83, 0xed, 0x7c, 0x83, 0xb1 };
static const u8 GUID_ARM[16] = {         /* E19E3D16-BC11-11E4-9CAA-C2051D5D46B0 */
    0x16, 0x3d, 0x9e, 0xe1, 0x11, 0xbc, 0xe4, 0x11,
    0x9c, 0xaa, 0xc2, 0x05, 0x1d, 0x5d, 0x46, 0xb0 };

static int guid_is(u64 a, const u8 *g)
{
    for (int i = 0; i < 16; i++)
        if (rd8(a + i) != g[i])
            return 0;
    return 1;
}

static void print_memory(u64 sec, u32 len, struct cper_result *r)
{
    if (len < 24) {
        printf("CPER section=memory invalid: length %u < 24\n", len);
        return;
    }
    u64 pa = rd64(sec + 16);
    printf("CPER section=memory pa=0x%016lx\n", pa);
    if (!r->have_mem_pa) {
        r->have_mem_pa = 1;
        r->mem_pa = pa;
    }
}

/* UEFI 2.9+ error-info type is a bit mask (QEMU/armras: cache=bit1, tlb=2, bus=3, uarch=4). */
static const char *arm_type_name(u8 type)
{
    switch (type) {
    case 1u << 1: return "cache";
    case 1u << 2: return "tlb";
    case 1u << 3: return "bus";
    case 1u << 4: return "micro-arch";
    default: return "other";
    }
}

/* ARM Processor Error Section (UEFI N.2.4.4): valid u32 @0, err_info_num u16 @4,
 * ctx_info_num u16 @6, section_length u32 @8, affinity u8 @12, rsvd[3], mpidr u64 @16,
 * midr u64 @24, running_state u32 @32, psci_state u32 @36; then 32-byte error-info
 * records: version u8, length u8, valid u16, type u8 @4, multiple_error u16 @5,
 * flags u8 @7, error_info u64 @8, virt_addr u64 @16, phys_addr u64 @24. */
static void print_arm(u64 sec, u32 len)
{
    if (len < 40) {
        printf("CPER section=arm-processor invalid: length %u < 40\n", len);
        return;
    }
    u16 n = rd16(sec + 4);
    u64 mpidr = rd64(sec + 16);
    if (n == 0 || len < 40 + 32u * n) {
        printf("CPER section=arm-processor mpidr=0x%lx errors=%u (no complete error-info)\n",
               mpidr, n);
        return;
    }
    for (u16 i = 0; i < n; i++) {
        u64 e = sec + 40 + 32u * i;
        u8 type = rd8(e + 4);
        u64 va = rd64(e + 16), pa = rd64(e + 24);
        if (i == 0)
            printf("CPER section=arm-processor mpidr=0x%lx errors=%u type=0x%x(%s) pa=0x%lx va=0x%lx\n",
                   mpidr, n, type, arm_type_name(type), pa, va);
        else
            printf("CPER arm-error-info index=%u type=0x%x(%s) pa=0x%lx va=0x%lx\n", i, type,
                   arm_type_name(type), pa, va);
    }
}

static void print_unknown(u64 gde)
{
    printf("CPER section=unknown guid=%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x\n",
           rd32(gde), rd16(gde + 4), rd16(gde + 6), rd8(gde + 8), rd8(gde + 9),
           rd8(gde + 10), rd8(gde + 11), rd8(gde + 12), rd8(gde + 13), rd8(gde + 14),
           rd8(gde + 15));
}

/* Walks the data entries; with print=0 only validates. Returns NULL if OK, else why. */
static const char *walk(u64 blk, u32 data_len, int print, int *count, struct cper_result *r)
{
    u64 p = blk + GEBS_SIZE;
    u32 left = data_len;
    *count = 0;
    while (left) {
        if (left < GEDE_SIZE_OLD)
            return "truncated data entry header";
        u16 rev = rd16(p + 20);
        u32 hdr = (rev >> 8) >= 3 ? GEDE_SIZE_V300 : GEDE_SIZE_OLD;
        u32 elen = rd32(p + 24);
        if (left < hdr || elen > left - hdr)
            return "data entry overruns data_length";
        if (print) {
            if (guid_is(p, GUID_MEMORY))
                print_memory(p + hdr, elen, r);
            else if (guid_is(p, GUID_ARM))
                print_arm(p + hdr, elen);
            else
                print_unknown(p);
        }
        (*count)++;
        p += hdr + elen;
        left -= hdr + elen;
    }
    if (*count == 0)
        return "no data entries";
    return NULL;
}

void ghes_ack(struct ghes_source *s, struct cper_result *r)
{
    u64 blk = r->block;
    if (!s)
        return;
    if (blk)
        mmio_write32(blk, 0);                   /* block_status = 0: consumed */
    dsb_sy();
    /* Checked before the ack: once acked, the platform may write the next record (and
     * clear read-ack) at any instruction, so later reads may already see that one. */
    r->block_status_after = blk ? mmio_read32(blk) : 0;
    if (s->has_ack) {
        u64 v = mmio_read64(s->ack_reg);
        v &= s->ack_preserve << s->ack_bit_offset;
        v |= s->ack_write << s->ack_bit_offset;
        mmio_write64(s->ack_reg, v);
        dsb_sy();
        r->read_ack = mmio_read64(s->ack_reg);
        /* Stuck, or already consumed by a new record (read-ack cleared, block set). */
        r->acked = r->read_ack == v || (blk && r->read_ack == 0 && mmio_read32(blk) != 0);
        if (r->read_ack != v && r->acked)
            r->read_ack = v;
    } else {
        r->acked = 1;                           /* GHES v1: nothing to acknowledge */
    }
    printf("ACK source=%u read_ack=0x%lx block_status=0x%x\n", s->id, r->read_ack,
           r->block_status_after);
}

void ghes_read(struct ghes_source *s, struct cper_result *r)
{
    memset(r, 0, sizeof(*r));
    if (!s) {
        printf("CPER invalid: no such GHES source in HEST\n");
        return;
    }
    const char *why = NULL;
    u64 blk = mmio_read64(s->errsts_reg);
    if (!blk) {
        why = "error status address is 0";
    } else if ((blk & 3) || !phys_ok(blk, s->block_len)) {
        printf("CPER source=%u invalid: block 0x%lx (len %u) unaligned or outside RAM\n",
               s->id, blk, s->block_len);
        blk = 0;                                /* never touch it, but still ack */
    } else {
        u32 st = rd32(blk), raw_off = rd32(blk + 4), raw_len = rd32(blk + 8);
        u32 data_len = rd32(blk + 12);
        r->block_status = st;
        r->severity = rd32(blk + 16);
        u64 len = raw_len ? (u64)raw_off + raw_len : GEBS_SIZE + (u64)data_len;
        if (st == 0)
            why = "block_status=0 (empty block)";
        else if (len > s->block_len || GEBS_SIZE + (u64)data_len > s->block_len)
            why = "length exceeds error status block length";
        else if (raw_len && raw_off < GEBS_SIZE + data_len)
            why = "raw data overlaps data entries";
        else if (!(why = walk(blk, data_len, 0, &r->sections, r))) {
            printf("CPER source=%u block_status=0x%x severity=%u sections=%d\n", s->id, st,
                   r->severity, r->sections);
            walk(blk, data_len, 1, &r->sections, r);
            r->valid = 1;
        }
    }
    if (why)
        printf("CPER source=%u invalid: %s\n", s->id, why);
    r->block = blk;
}

void ghes_process(struct ghes_source *s, struct cper_result *r)
{
    ghes_read(s, r);
    if (s)
        ghes_ack(s, r);
}
