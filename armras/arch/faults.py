"""The virtual address a faulting load/store accessed: FAR for a genuine bus error.

Unicorn reports an access nothing answered by its physical address only. The
architecture reports the virtual one (FAR_ELx, with ESR.FnV = 0), and Linux hands it to
user space as SIGBUS's si_addr. The instruction at the PC is decoded (capstone) and its
address computed from the registers as they were before it ran: base + offset (pre-index
and offset forms), base (post-index), base + extended/shifted index, or Xt for DC ZVA.
The page is then chosen by the physical address that faulted, so an access crossing into
the failing page reports an address in that page. Anything undecodable gives None (the
caller then reports FnV = 1: FAR not valid).
"""
from __future__ import annotations

from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs, CsError
from capstone import arm64_const as A
from unicorn import arm64_const as U

from armras.arch.cpu import Cpu
from armras.arch.mmu import translate
from armras.board.memory import PAGE_MASK, PAGE_SIZE, PhysicalMemory
from armras.errors import ArmrasError

U64 = 0xFFFF_FFFF_FFFF_FFFF


def _decoder() -> Cs:
    md = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
    md.detail = True
    return md


def _register(cpu: Cpu, name: str) -> int | None:
    """A general register's value by capstone's name (w registers read as x, extended later).

    Unicorn numbers X0-X28 consecutively but X29 (FP) and X30 (LR) apart from them.
    """
    if name in ("xzr", "wzr"):
        return 0
    if name in ("sp", "wsp"):
        return cpu.uc.reg_read(U.UC_ARM64_REG_SP)
    if name in ("x29", "w29", "fp"):
        return cpu.uc.reg_read(U.UC_ARM64_REG_X29)
    if name in ("x30", "w30", "lr"):
        return cpu.uc.reg_read(U.UC_ARM64_REG_X30)
    if name[0] in "xw" and name[1:].isdigit() and int(name[1:]) <= 28:
        return cpu.uc.reg_read(U.UC_ARM64_REG_X0 + int(name[1:]))
    return None


def _extend(value: int, ext: int) -> int:
    if ext in (A.ARM64_EXT_UXTW,):
        return value & 0xFFFF_FFFF
    if ext in (A.ARM64_EXT_SXTW,):
        value &= 0xFFFF_FFFF
        return value - (1 << 32) if value >> 31 else value
    return value


def access_address(cpu: Cpu, mem: PhysicalMemory) -> int | None:
    """The first virtual address the load/store at the PC accesses, or None."""
    pc = cpu.pc
    pc_pa = translate(cpu, mem, pc)
    if pc_pa is None:
        return None
    try:
        word = mem.read(pc_pa, 4)
        insn = next(_decoder().disasm(word, pc), None)
    except (ArmrasError, CsError):
        return None
    if insn is None:
        return None
    for op in insn.operands:
        if op.type == A.ARM64_OP_MEM:
            base = _register(cpu, insn.reg_name(op.mem.base))
            if base is None:
                return None
            va = base + op.mem.disp
            if op.mem.index:
                index = _register(cpu, insn.reg_name(op.mem.index))
                if index is None:
                    return None
                va += _extend(index, op.ext) << (op.shift.value if op.shift.type == A.ARM64_SFT_LSL else 0)
            return va & U64
    if insn.mnemonic == "dc" and insn.op_str.startswith("zva"):
        return _register(cpu, insn.op_str.split(",")[1].strip())
    return None


def fault_address(cpu: Cpu, mem: PhysicalMemory, fault_pa: int) -> int | None:
    """FAR for a data access at the PC that faulted on physical address `fault_pa`."""
    va = access_address(cpu, mem)
    if va is None:
        return None
    page = va & PAGE_MASK
    first = translate(cpu, mem, page)
    if first is None or first & PAGE_MASK != fault_pa & PAGE_MASK:
        page = (page + PAGE_SIZE) & U64          # the access crossed into the next page
    return page | (fault_pa & ~PAGE_MASK & U64)


__all__ = ["access_address", "fault_address"]
