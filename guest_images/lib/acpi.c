/* RSDP -> XSDT -> HEST walker (and the SDEI table's presence). Every pointer taken from a table is bounds-checked
 * against RAM before it is dereferenced; a bad table prints one "ACPI ..." or
 * "HEST ..." line saying why and yields no sources, it never faults. */
#include "guest.h"

u64 ram_end = RAM_BASE + (512UL << 20);      /* replaced by acpi_init() */
struct ghes_source ghes[MAX_GHES];
int ghes_count;
u64 acpi_sdei_table;

int phys_ok(u64 addr, u64 len)
{
    return addr >= RAM_BASE && addr < ram_end && len <= ram_end - addr;
}

/* Bytewise little-endian reads: ACPI/CPER fields are often unaligned and, with the
 * MMU off, memory is Device-nGnRnE (no unaligned accesses). */
u8 rd8(u64 a) { return *(volatile u8 *)a; }
u16 rd16(u64 a) { return (u16)(rd8(a) | (u16)rd8(a + 1) << 8); }
u32 rd32(u64 a) { return rd16(a) | (u32)rd16(a + 2) << 16; }
u64 rd64(u64 a) { return rd32(a) | (u64)rd32(a + 4) << 32; }

static u8 checksum(u64 a, u32 len)
{
    u8 s = 0;
    while (len--)
        s += rd8(a++);
    return s;
}

static int sig_is(u64 a, const char *sig, int n)
{
    for (int i = 0; i < n; i++)
        if (rd8(a + i) != (u8)sig[i])
            return 0;
    return 1;
}

/* Standard 36-byte SDT header: signature, length, checksum. Returns length or 0. */
static u32 check_sdt(u64 a, const char *sig, const char *what)
{
    if (!phys_ok(a, 36)) {
        printf("ACPI %s invalid: address 0x%lx outside RAM\n", what, a);
        return 0;
    }
    if (sig && !sig_is(a, sig, 4)) {
        printf("ACPI %s invalid: bad signature at 0x%lx\n", what, a);
        return 0;
    }
    u32 len = rd32(a + 4);
    if (len < 36 || len > (1u << 20) || !phys_ok(a, len)) {
        printf("ACPI %s invalid: length %u at 0x%lx\n", what, len, a);
        return 0;
    }
    if (checksum(a, len) != 0) {
        printf("ACPI %s invalid: checksum mismatch\n", what);
        return 0;
    }
    return len;
}

/* A GAS usable for a 64-bit register: SystemMemory, 8-byte aligned, in RAM. */
static int gas_reg_ok(u64 gas, u64 *addr, u8 *bit_offset, const char *what, u16 id)
{
    u8 space = rd8(gas), width = rd8(gas + 1), off = rd8(gas + 2), access = rd8(gas + 3);
    u64 a = rd64(gas + 4);
    const char *why = NULL;
    if (space != 0)
        why = "address space is not SystemMemory";
    else if (a == 0)
        why = "address is zero";
    else if ((a & 7) || !phys_ok(a, 8))
        why = "address unaligned or outside RAM";
    else if (width + off > 64 || (access != 0 && access != 4))
        why = "not a 64-bit register";
    if (why) {
        printf("HEST source=%u invalid %s GAS: %s (addr=0x%lx)\n", id, what, why, a);
        return 0;
    }
    *addr = a;
    *bit_offset = off;
    return 1;
}

/* Size of a HEST error source structure (ACPI 6.5 18.3.2), 0 if unknown. */
static u32 hest_entry_size(u16 type)
{
    switch (type) {
    case 2: return 28;      /* NMI */
    case 6: return 48;      /* PCIe root port AER */
    case 7: return 44;      /* PCIe device AER */
    case 8: return 56;      /* PCIe bridge AER */
    case 9: return 68;      /* GHES */
    case 10: return 92;     /* GHESv2 */
    default: return 0;
    }
}

static int parse_hest(u64 hest, u32 len)
{
    if (len < 40) {
        printf("HEST invalid: length %u too short\n", len);
        return 0;
    }
    u32 count = rd32(hest + 36);
    u64 p = hest + 40, end = hest + len;
    printf("HEST at 0x%lx length=%u error_source_count=%u\n", hest, len, count);
    for (u32 i = 0; i < count; i++) {
        if (end - p < 2) {
            printf("HEST invalid: entry %u beyond table length\n", i);
            break;
        }
        u16 type = rd16(p);
        u32 size = hest_entry_size(type);
        if (!size) {
            printf("HEST entry %u: unsupported type %u, stopping walk\n", i, type);
            break;
        }
        if (end - p < size) {
            printf("HEST invalid: entry %u (type %u) truncated\n", i, type);
            break;
        }
        if (type == 9 || type == 10) {
            struct ghes_source s = { 0 };
            s.id = rd16(p + 2);
            s.type = type;
            s.notify = rd8(p + 32);
            s.poll_interval = rd32(p + 36);      /* notification structure +4 */
            s.vector = rd32(p + 40);             /* +8: the SDEI event, for SDEI */
            s.block_len = rd32(p + 60);
            u8 enabled = rd8(p + 7);
            int ok = enabled;
            if (!enabled)
                printf("HEST source=%u disabled, ignored\n", s.id);
            ok = ok && gas_reg_ok(p + 20, &s.errsts_reg, &(u8){ 0 }, "error_status_address", s.id);
            if (ok && (s.block_len < 20 || s.block_len > 65536)) {
                printf("HEST source=%u invalid error_status_block_length=%u\n", s.id, s.block_len);
                ok = 0;
            }
            if (ok && type == 10) {
                s.has_ack = gas_reg_ok(p + 64, &s.ack_reg, &s.ack_bit_offset, "read_ack", s.id);
                s.ack_preserve = rd64(p + 76);
                s.ack_write = rd64(p + 84);
                ok = s.has_ack;
            }
            if (ok) {
                u64 block = mmio_read64(s.errsts_reg);
                printf("HEST source=%u type=%u notify=%u errsts_reg=0x%lx block=0x%lx "
                       "ack_reg=0x%lx ack=0x%lx\n",
                       s.id, type, s.notify, s.errsts_reg, block, s.ack_reg,
                       s.has_ack ? mmio_read64(s.ack_reg) : 0);
                if (ghes_count < MAX_GHES)
                    ghes[ghes_count++] = s;
            }
        } else {
            printf("HEST entry %u: type %u (not GHES) skipped\n", i, type);
        }
        p += size;
    }
    return ghes_count;
}

int acpi_init(u64 rsdp)
{
    ghes_count = 0;
    /* The RSDP lies in the firmware-reserved top 2 MiB of RAM, so RAM ends at the
     * next 2 MiB boundary above it (tests/guest_contract.md). */
    if (rsdp < RAM_BASE || rsdp >= RAM_BASE + (64UL << 30)) {
        printf("ACPI invalid: RSDP pointer x0=0x%lx not in RAM\n", rsdp);
        return 0;
    }
    ram_end = (rsdp + FW_RESERVED) & ~(FW_RESERVED - 1);
    printf("RAM 0x%lx-0x%lx (derived from RSDP)\n", RAM_BASE, ram_end);
    if (!phys_ok(rsdp, 36) || !sig_is(rsdp, "RSD PTR ", 8)) {
        printf("ACPI RSDP invalid: no \"RSD PTR \" signature at 0x%lx\n", rsdp);
        return 0;
    }
    u8 rev = rd8(rsdp + 15);
    if (rev < 2 || checksum(rsdp, 20) != 0 || rd32(rsdp + 20) < 36 ||
        checksum(rsdp, 36) != 0) {
        printf("ACPI RSDP invalid: revision %u or checksum mismatch\n", rev);
        return 0;
    }
    u64 xsdt = rd64(rsdp + 24);
    u32 xlen = check_sdt(xsdt, "XSDT", "XSDT");
    if (!xlen)
        return 0;
    u32 n = (xlen - 36) / 8;
    printf("ACPI RSDP=0x%lx XSDT=0x%lx tables=%u\n", rsdp, xsdt, n);
    u64 hest = 0;
    acpi_sdei_table = 0;
    for (u32 i = 0; i < n; i++) {
        u64 t = rd64(xsdt + 36 + 8 * i);
        if (!phys_ok(t, 36)) {
            printf("ACPI XSDT entry %u invalid: 0x%lx outside RAM\n", i, t);
            continue;
        }
        if (!hest && sig_is(t, "HEST", 4))
            hest = t;
        else if (!acpi_sdei_table && sig_is(t, "SDEI", 4) && check_sdt(t, "SDEI", "SDEI"))
            acpi_sdei_table = t;            /* header only (DEN 0054): firmware has SDEI */
    }
    if (!hest) {
        printf("ACPI: no HEST table in XSDT\n");
        return 0;
    }
    u32 hlen = check_sdt(hest, "HEST", "HEST");
    if (!hlen)
        return 0;
    return parse_hest(hest, hlen);
}

const char *ghes_notify_name(u8 notify)
{
    switch (notify) {
    case HEST_NOTIFY_POLLED: return "polled";
    case HEST_NOTIFY_GPIO: return "GPIO";
    case HEST_NOTIFY_SEA: return "SEA";
    case HEST_NOTIFY_SDEI: return "SDEI";
    default: return "other";
    }
}

struct ghes_source *ghes_by_notify(u8 notify)
{
    for (int i = 0; i < ghes_count; i++)
        if (ghes[i].notify == notify)
            return &ghes[i];
    return NULL;
}
