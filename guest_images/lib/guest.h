/* Shared definitions for the armras bare-metal guest images.
 * Everything here follows tests/guest_contract.md (the platform contract). */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;
typedef unsigned long uintptr_t;
typedef unsigned long size_t;
typedef __builtin_va_list va_list;
#define va_start __builtin_va_start
#define va_end __builtin_va_end
#define va_arg __builtin_va_arg
#define NULL ((void *)0)

/* ---- platform (QEMU virt addresses, see armras/board/memmap.py) ---- */
#define RAM_BASE        0x40000000UL
#define FW_RESERVED     (2UL << 20)      /* top 2 MiB of RAM: ACPI tables + GHES blob */
#define UART_BASE       0x09000000UL
#define GICD_BASE       0x08000000UL
#define GICC_BASE       0x08010000UL
#define GED_BASE        0x09080000UL
#define DEVICE_START    0x08000000UL
#define DEVICE_END      0x0A000000UL

#define INTID_VTIMER    27               /* PPI, level */
#define INTID_GED       41               /* SPI 9, edge */
#define GED_EVT_HW_ERROR 0x20

#define PSCI_VERSION    0x84000000UL
#define PSCI_SYSTEM_OFF 0x84000008UL
#define PSCI_SYSTEM_RESET 0x84000009UL

/* exit statuses shared by all images (SYSTEM_OFF x1) */
#define EXIT_OK          0
#define EXIT_UNEXPECTED  3

/* ---- system registers ---- */
#define read_sysreg(r) ({ u64 __v; __asm__ volatile("mrs %0, " #r : "=r"(__v)); __v; })
#define write_sysreg(r, v) __asm__ volatile("msr " #r ", %0" : : "r"((u64)(v)) : "memory")
#define isb() __asm__ volatile("isb" ::: "memory")
#define dsb_sy() __asm__ volatile("dsb sy" ::: "memory")
#define wfi() __asm__ volatile("wfi" ::: "memory")
#define irq_enable() __asm__ volatile("msr daifclr, #2" ::: "memory")
#define irq_disable() __asm__ volatile("msr daifset, #2" ::: "memory")

static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline u64 mmio_read64(u64 a) { return *(volatile u64 *)a; }
static inline void mmio_write64(u64 a, u64 v) { *(volatile u64 *)a = v; }

/* ---- ESR_EL1 fields (Arm ARM D17.2.37) ---- */
#define ESR_EC(e)    (((e) >> 26) & 0x3f)
#define ESR_IL       (1u << 25)
#define ESR_ISS(e)   ((e) & 0x1ffffff)
#define ESR_DFSC(e)  ((e) & 0x3f)
#define ESR_WNR      (1u << 6)
#define ESR_FNV      (1u << 10)
#define ESR_ISV      (1u << 24)
#define EC_UNKNOWN   0x00
#define EC_SVC64     0x15
#define EC_IABT_LOW  0x20
#define EC_IABT_CUR  0x21
#define EC_DABT_LOW  0x24
#define EC_DABT_CUR  0x25
#define EC_BRK64     0x3c
#define DFSC_SEA     0x10                /* synchronous external abort, not on walk */

/* ---- vector table (lib/vectors.S) ---- */
/* Offsets of the vector slots within VBAR_EL1. */
#define VEC_CUR_SP0_SYNC  0x000
#define VEC_CUR_SPX_SYNC  0x200
#define VEC_CUR_SPX_IRQ   0x280
#define VEC_LOW64_SYNC    0x400
#define VEC_LOW64_IRQ     0x480
#define VEC_IS_SYNC(v)    (((v) & 0x180) == 0x000)
#define VEC_IS_IRQ(v)     (((v) & 0x180) == 0x080)

struct trap_frame {                   /* layout fixed by lib/vectors.S */
    u64 x[31];
    u64 sp_el0;
    u64 elr;
    u64 spsr;
};
/* Each image defines this; called for every vector slot with the slot offset. */
void exc_dispatch(struct trap_frame *f, u64 vec);
/* Prints "UNEXPECTED exception ..." and powers off with EXIT_UNEXPECTED. */
void __attribute__((noreturn)) exc_unexpected(struct trap_frame *f, u64 vec);
const char *vec_name(u64 vec);
extern char vectors[];
/* Drop to EL0 at entry with SP_EL0 = sp, SPSR_EL1 = spsr (lib/vectors.S).
 * Returns only if a handler redirects ELR to el0_return with an EL1h SPSR. */
void enter_el0(u64 entry, u64 sp, u64 spsr);
extern char el0_return[];

/* ---- uart / printing (lib/uart.c) ---- */
void uart_putc(char c);
void uart_puts(const char *s);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- psci (lib/psci.c) ---- */
u64 psci_call(u64 fn, u64 a1, u64 a2, u64 a3);
void __attribute__((noreturn)) system_off(u64 status);

/* ---- gic (lib/gic.c) ---- */
void gic_init(void);
void gic_enable_irq(u32 intid, int edge);
u32 gic_ack(void);                     /* raw IAR value */
void gic_eoi(u32 iar);
#define GIC_SPURIOUS 1023

/* ---- generic timer (lib/timer.c) ---- */
u64 timer_freq(void);
u64 timer_now(void);
void timer_arm_at(u64 cval);           /* enables the virtual timer, unmasked */
void timer_stop(void);
void delay_ms_wfi(u64 ms);             /* WFI until CNTVCT passes now+ms (IRQs may stay masked) */

/* ---- memory bounds (lib/acpi.c) ---- */
extern u64 ram_end;                    /* derived from the RSDP, see acpi_init */
int phys_ok(u64 addr, u64 len);        /* [addr, addr+len) inside RAM */
u8 rd8(u64 a);
u16 rd16(u64 a);
u32 rd32(u64 a);
u64 rd64(u64 a);                       /* bytewise: CPER/ACPI fields are unaligned */

/* ---- ACPI / HEST (lib/acpi.c) ---- */
#define HEST_NOTIFY_POLLED 0             /* ACPI 6.4 Table 18.14 */
#define HEST_NOTIFY_GPIO 7
#define HEST_NOTIFY_SEA  8
#define HEST_NOTIFY_SDEI 11
#define MAX_GHES 8
struct ghes_source {
    u16 id;
    u16 type;                          /* 9 or 10 */
    u8 notify;
    u32 poll_interval;                 /* notification structure: ms, for polled sources */
    u32 vector;                        /* notification structure: the SDEI event, for SDEI */
    u8 ack_bit_offset;
    u8 has_ack;                        /* GHESv2 read-ack register usable */
    u64 errsts_reg;                    /* Error Status Address register (holds block address) */
    u32 block_len;                     /* Error Status Block Length */
    u64 ack_reg;
    u64 ack_preserve;
    u64 ack_write;
};
extern struct ghes_source ghes[MAX_GHES];
extern int ghes_count;
/* Validates RSDP->XSDT->HEST, fills ghes[], prints the ACPI/HEST lines.
 * Returns the number of usable GHES sources (0 on any error; a line says why). */
int acpi_init(u64 rsdp);
struct ghes_source *ghes_by_notify(u8 notify);
const char *ghes_notify_name(u8 notify);
extern u64 acpi_sdei_table;            /* the "SDEI" table (checksum checked), 0 if absent */

/* ---- CPER (lib/cper.c) ---- */
struct cper_result {
    int valid;                         /* block found and well formed */
    u32 block_status;
    u32 severity;
    int sections;
    int have_mem_pa;
    u64 mem_pa;                        /* first memory-error section's physical_address */
    int acked;                         /* read-ack write took effect (read back) */
    u64 read_ack;                      /* read back after ack */
    u32 block_status_after;
    u64 block;                         /* block address if it was safe to touch, else 0 */
};
/* Linux ghes_proc() in miniature. ghes_read: read, validate, print ("CPER ..." lines);
 * ghes_ack: block_status = 0, then the GHESv2 read-ack write ("ACK ..." line). */
void ghes_read(struct ghes_source *src, struct cper_result *r);
void ghes_ack(struct ghes_source *src, struct cper_result *r);
void ghes_process(struct ghes_source *src, struct cper_result *r);

/* ---- SDEI (lib/sdei.c; Arm DEN 0054, SMC64 calls over hvc #0 as the FADT says) ---- */
#define SDEI_VERSION                   0xC4000020UL
#define SDEI_EVENT_REGISTER            0xC4000021UL
#define SDEI_EVENT_ENABLE              0xC4000022UL
#define SDEI_EVENT_DISABLE             0xC4000023UL
#define SDEI_EVENT_CONTEXT             0xC4000024UL
#define SDEI_EVENT_COMPLETE            0xC4000025UL
#define SDEI_EVENT_COMPLETE_AND_RESUME 0xC4000026UL
#define SDEI_EVENT_UNREGISTER          0xC4000027UL
#define SDEI_EVENT_STATUS              0xC4000028UL
#define SDEI_EVENT_GET_INFO            0xC4000029UL
#define SDEI_EVENT_ROUTING_SET         0xC400002AUL
#define SDEI_PE_MASK                   0xC400002BUL
#define SDEI_PE_UNMASK                 0xC400002CUL
#define SDEI_FEATURES                  0xC4000050UL
/* return codes */
#define SDEI_SUCCESS             0
#define SDEI_NOT_SUPPORTED      -1
#define SDEI_INVALID_PARAMETERS -2
#define SDEI_DENIED             -3
#define SDEI_PENDING            -5
#define SDEI_OUT_OF_RESOURCE   -10
/* EVENT_STATUS bits */
#define SDEI_STATUS_REGISTERED 1
#define SDEI_STATUS_ENABLED    2
#define SDEI_STATUS_RUNNING    4
/* EVENT_GET_INFO queries, EVENT_REGISTER routing flags */
#define SDEI_INFO_EV_TYPE      0       /* 0 private, 1 shared */
#define SDEI_INFO_EV_SIGNALED  1
#define SDEI_INFO_EV_PRIORITY  2       /* 0 normal, 1 critical */
#define SDEI_REGF_RM_ANY       0
#define SDEI_REGF_RM_PE        1
#define SDEI_VERSION_MAJOR(v)  ((v) >> 48 & 0x7fff)
#define SDEI_VERSION_MINOR(v)  ((v) >> 32 & 0xffff)
#define SDEI_VERSION_VENDOR(v) ((v) & 0xffffffff)
/* One SDEI call; x0 comes back (a negative value is an error code). */
s64 sdei_call(u64 fn, u64 x1, u64 x2, u64 x3, u64 x4, u64 x5);
const char *sdei_error_name(s64 ret);  /* "SUCCESS", "DENIED", ... */

/* ---- MMU (lib/mmu.c) ---- */
#define L3_HOLE_VA   0x401FF000UL      /* last page of the first 2 MiB: invalid L3 entry */
#define L1_HOLE_VA   0x7FDEAD0000UL    /* L1 index 511: invalid L1 entry */
void mmu_enable(void);                 /* identity map; see lib/mmu.c for the layout */
extern char __user_text_start[], __user_text_end[];
extern char __user_data_start[], __user_data_end[];
extern char __image_start[], __image_end[];

/* ---- string (lib/string.c) ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
