"""Stage-1 address translation of the guest's EL1&0 regime, for crash reports and tools.

A read-only walk of the guest's own page tables (Arm ARM D8, VMSAv8-64, 4 KiB granule):
TTBR0/TTBR1 chosen by VA bit 55, table levels from TxSZ, block and page descriptors.
Other granules are reported as untranslatable rather than guessed.
"""
from __future__ import annotations

from armras.arch.cpu import SCTLR_EL1, TCR_EL1, TTBR0_EL1, TTBR1_EL1, Cpu
from armras.errors import ArmrasError
from armras.board.memory import PhysicalMemory

OA_MASK = 0x0000_FFFF_FFFF_F000
TG0_4K = 0
TG1_4K = 2


def translate(cpu: Cpu, mem: PhysicalMemory, va: int) -> int | None:
    """The physical address `va` maps to now, or None (unmapped, or not walkable)."""
    if not cpu.sysreg(SCTLR_EL1) & 1:
        return va
    tcr = cpu.sysreg(TCR_EL1)
    if va >> 55 & 1:
        tsz, granule_ok, ttbr = tcr >> 16 & 0x3F, (tcr >> 30 & 3) == TG1_4K, cpu.sysreg(TTBR1_EL1)
    else:
        tsz, granule_ok, ttbr = tcr & 0x3F, (tcr >> 14 & 3) == TG0_4K, cpu.sysreg(TTBR0_EL1)
    if not granule_ok or not 16 <= tsz <= 39:
        return None
    va_bits = 64 - tsz
    level = 4 - (va_bits - 12 + 8) // 9          # 48 bits -> level 0, 39 -> level 1
    table = ttbr & OA_MASK
    try:
        while level <= 3:
            shift = 12 + 9 * (3 - level)
            index = (va >> shift) & 0x1FF
            desc = mem.read_u64(table + 8 * index)
            if not desc & 1:
                return None
            if level == 3 or not desc & 2:       # page, or block at level 1/2
                if level == 3 and not desc & 2:
                    return None
                return (desc & OA_MASK & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
            table = desc & OA_MASK
            level += 1
    except ArmrasError:
        return None
    return None
