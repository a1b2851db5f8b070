/* SDEI calls (Arm DEN 0054) over the SMCCC conduit the FADT names: hvc #0. */
#include "guest.h"

s64 sdei_call(u64 fn, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5)
{
    register u64 x0 __asm__("x0") = fn;
    register u64 x1 __asm__("x1") = a1;
    register u64 x2 __asm__("x2") = a2;
    register u64 x3 __asm__("x3") = a3;
    register u64 x4 __asm__("x4") = a4;
    register u64 x5 __asm__("x5") = a5;
    /* SMCCC 1.0 lets the callee clobber x4-x17; the firmware returns x0 only. */
    __asm__ volatile("hvc #0"
                     : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3), "+r"(x4), "+r"(x5)
                     :
                     : "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
                       "x16", "x17", "memory");
    return (s64)x0;
}

const char *sdei_error_name(s64 ret)
{
    switch (ret) {
    case SDEI_SUCCESS: return "SUCCESS";
    case SDEI_NOT_SUPPORTED: return "NOT_SUPPORTED";
    case SDEI_INVALID_PARAMETERS: return "INVALID_PARAMETERS";
    case SDEI_DENIED: return "DENIED";
    case SDEI_PENDING: return "PENDING";
    case SDEI_OUT_OF_RESOURCE: return "OUT_OF_RESOURCE";
    default: return ret >= 0 ? "value" : "unknown error";
    }
}
