/* PL011 output and a small printf (%d %i %u %x %X %p %s %c %%, l/ll, width, '0', '-'). */
#include "guest.h"

#define UART_DR 0x00
#define UART_FR 0x18
#define FR_TXFF (1u << 5)

void uart_putc(char c)
{
    /* Bounded wait: a broken FR must not hang the guest silently. */
    for (int spin = 0; spin < 100000; spin++)
        if (!(mmio_read32(UART_BASE + UART_FR) & FR_TXFF))
            break;
    mmio_write32(UART_BASE + UART_DR, (u8)c);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

struct out {
    char *buf;
    size_t cap, len;
};

static void out_c(struct out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

static void out_num(struct out *o, u64 v, unsigned base, int upper, int neg,
                    int width, int zero, int left)
{
    char tmp[24];
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int len = n + (neg ? 1 : 0);
    if (!left && !zero)
        for (; width > len; width--)
            out_c(o, ' ');
    if (neg)
        out_c(o, '-');
    if (!left && zero)
        for (; width > len; width--)
            out_c(o, '0');
    while (n)
        out_c(o, tmp[--n]);
    if (left)
        for (; width > len; width--)
            out_c(o, ' ');
}

static int vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct out o = { buf, cap, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out_c(&o, *fmt);
            continue;
        }
        fmt++;
        int zero = 0, left = 0, width = 0, lng = 0;
        for (;; fmt++) {
            if (*fmt == '0') zero = 1;
            else if (*fmt == '-') left = 1;
            else break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            s64 v = lng ? va_arg(ap, s64) : va_arg(ap, int);
            out_num(&o, v < 0 ? -(u64)v : (u64)v, 10, 0, v < 0, width, zero, left);
            break;
        }
        case 'u':
            out_num(&o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, 0, 0, width, zero, left);
            break;
        case 'x':
        case 'X':
            out_num(&o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, *fmt == 'X', 0,
                    width, zero, left);
            break;
        case 'p':
            out_c(&o, '0');
            out_c(&o, 'x');
            out_num(&o, (u64)va_arg(ap, void *), 16, 0, 0, width, zero, left);
            break;
        case 'c':
            out_c(&o, (char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = 0;
            while (s[n])
                n++;
            if (!left)
                for (; width > n; width--)
                    out_c(&o, ' ');
            while (*s)
                out_c(&o, *s++);
            if (left)
                for (; width > n; width--)
                    out_c(&o, ' ');
            break;
        }
        case '%':
            out_c(&o, '%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            out_c(&o, '%');
            out_c(&o, *fmt);
        }
    }
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vformat(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

/* Formats the whole line first, then writes it, so a line is emitted in one go. */
int printf(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int r = vformat(line, sizeof(line), fmt, ap);
    va_end(ap);
    uart_puts(line);
    return r;
}
