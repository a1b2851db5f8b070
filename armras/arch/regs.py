"""Register access without the unicorn package's Python layer.

`Uc.reg_read` works out a register's class (vector, cp-reg, plain) on every call; for the
64-bit registers and system registers the emulator touches on its Python paths (SEA entry,
HVC/SMC dispatch, MMIO, PSCI) calling libunicorn's `uc_reg_read`/`uc_reg_write` and
`UC_ARM64_REG_CP_REG` directly through ctypes is about 4x cheaper. Same registers, same
semantics: only for 64-bit integer registers and (op0, op1, CRn, CRm, op2) system registers.
"""
from __future__ import annotations

import ctypes
from typing import Iterable, Sequence

from unicorn import Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_CP_REG
from unicorn.unicorn_py3 import unicorn as _ucmod

MASK64 = 0xFFFF_FFFF_FFFF_FFFF


class _CpReg(ctypes.Structure):
    """Unicorn's uc_arm64_cp_reg (unicorn/arm64.h)."""

    _fields_ = [("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("op0", ctypes.c_uint32),
                ("op1", ctypes.c_uint32), ("op2", ctypes.c_uint32), ("val", ctypes.c_uint64)]


class Regs:
    """Fast reads and writes of one Uc's 64-bit and system registers."""

    def __init__(self, uc: Uc) -> None:
        lib = _ucmod.uclib
        self._h = uc._uch
        self._read = lib.uc_reg_read
        self._write = lib.uc_reg_write
        self._buf = ctypes.c_uint64()
        self._ref = ctypes.byref(self._buf)
        self._cp = _CpReg()
        self._cp_ref = ctypes.byref(self._cp)

    def read(self, regid: int) -> int:
        status = self._read(self._h, regid, self._ref)
        if status:
            raise UcError(status)
        return self._buf.value

    def write(self, regid: int, value: int) -> None:
        self._buf.value = value & MASK64
        status = self._write(self._h, regid, self._ref)
        if status:
            raise UcError(status)

    def read_many(self, regids: Iterable[int]) -> list[int]:
        return [self.read(r) for r in regids]

    def write_many(self, pairs: Sequence[tuple[int, int]]) -> None:
        for regid, value in pairs:
            self.write(regid, value)

    def _set_cp(self, enc: tuple[int, int, int, int, int]) -> None:
        cp = self._cp
        cp.op0, cp.op1, cp.crn, cp.crm, cp.op2 = enc

    def sysreg(self, enc: tuple[int, int, int, int, int]) -> int:
        """Read the system register (op0, op1, CRn, CRm, op2)."""
        self._set_cp(enc)
        status = self._read(self._h, UC_ARM64_REG_CP_REG, self._cp_ref)
        if status:
            raise UcError(status)
        return self._cp.val

    def set_sysreg(self, enc: tuple[int, int, int, int, int], value: int) -> None:
        self._set_cp(enc)
        self._cp.val = value & MASK64
        status = self._write(self._h, UC_ARM64_REG_CP_REG, self._cp_ref)
        if status:
            raise UcError(status)


__all__ = ["Regs"]
