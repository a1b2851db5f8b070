/* The compiler may emit calls to these even with -ffreestanding. */
#include "guest.h"

void *memset(void *d, int c, size_t n)
{
    volatile u8 *p = d;             /* volatile: stop clang turning this into memset() */
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    volatile u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}
