"""Crash reports: what a user needs to see when a guest stops the platform."""
from __future__ import annotations

from typing import Iterable

from unicorn import UcError

from armras.arch.cpu import Cpu, describe_esr
from armras.arch.mmu import translate
from armras.board.memory import PAGE_MASK, PAGE_SIZE, PhysicalMemory
from armras.errors import ArmrasError
from armras.guests.elf import Symbolizer



def crash_report(recent: Iterable[str], cpu: Cpu, mem: PhysicalMemory, symbols: Symbolizer,
                 which: str = "CPU") -> str:
    """The last console lines, the PC symbolized and disassembled, key registers."""
    lines = ["--- last console lines ---"]
    lines += [f"  {line}" for line in list(recent)[-15:]] or ["  (no console output)"]
    try:
        regs = cpu.snapshot()
    except UcError:
        return "\n".join(lines)
    pc = regs["pc"]
    where = symbols.lookup(pc)
    lines.append(f"--- {which} at EL{(regs['pstate'] >> 2) & 3}, PC {pc:#x}{f' <{where}>' if where else ''} ---")
    lines.append("  " + "  ".join(f"{k}={v:#x}" for k, v in regs.items() if k != "pc"))
    if regs["esr_el1"]:
        elr_at = symbols.lookup(regs["elr_el1"])
        lines.append(f"  last exception: {describe_esr(regs['esr_el1'])} ELR {regs['elr_el1']:#x}"
                     + (f" <{elr_at}>" if elr_at else ""))
    lines += disassemble(cpu, mem, pc)
    return "\n".join(lines)


def disassemble(cpu: Cpu, mem: PhysicalMemory, pc: int, before: int = 4, after: int = 3) -> list[str]:
    """A few instructions around `pc`, read through the guest's own page tables."""
    from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs

    pa = translate(cpu, mem, pc)
    if pa is None:
        return [f"  (the code at {pc:#x} is not mapped by the guest's page tables)"]
    # Stay inside the PC's page: the neighbouring virtual page may map elsewhere.
    first = max(pa - 4 * before, pa & PAGE_MASK)
    last = min(pa + 4 * (after + 1), (pa & PAGE_MASK) + PAGE_SIZE)
    start = pc - (pa - first)
    try:
        code = mem.read(first, last - first)
    except ArmrasError:
        return [f"  (the code at {pc:#x} (PA {pa:#x}) is not readable)"]
    out = []
    for insn in Cs(CS_ARCH_ARM64, CS_MODE_ARM).disasm(code, start):
        mark = "=>" if insn.address == pc else "  "
        out.append(f"  {mark} {insn.address:#x}: {insn.mnemonic} {insn.op_str}")
    return out


__all__ = ["crash_report", "disassemble"]
