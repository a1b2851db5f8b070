"""Stopping the CPU safely, taking masked IRQs on unmask, counting instructions: a block hook.

The native hook (armras/_native.c) runs at every translation-block start: it adds the
block's instructions to a counter and stops the CPU when another thread has asked to
(or when a counter limit is reached). Stopping there keeps the PC exact; an
asynchronous uc_emu_stop() near an MMIO access makes Unicorn 2.1.4 execute that access
twice. Without the compiled extension the same logic runs as a (much slower) Python hook.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Callable

from unicorn import UC_HOOK_BLOCK, Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_PSTATE
from unicorn.unicorn_py3 import unicorn as _ucmod

log = logging.getLogger(__name__)


class _State(ctypes.Structure):
    _fields_ = [
        ("stop", ctypes.c_int32),
        ("watch_unmask", ctypes.c_int32),
        ("instructions", ctypes.c_uint64),
        ("stop_at", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("pstate_regid", ctypes.c_int32),
        ("reason", ctypes.c_int32),
    ]


STOP_REQUESTED, STOP_UNMASKED, STOP_COUNT = 1, 2, 3


class BlockHook:
    """Stop requests (any thread) and instruction counting for one Unicorn instance."""

    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self.state = _State()
        self.state.emu_stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
        self.state.reg_read = ctypes.cast(_ucmod.uclib.uc_reg_read, ctypes.c_void_p).value
        self.state.pstate_regid = UC_ARM64_REG_PSTATE
        self.native = False
        try:
            from armras import _native
        except ImportError:
            _native = None
        if _native is not None and _native.state_size == ctypes.sizeof(_State):
            handle = ctypes.c_size_t()
            status = _ucmod.uclib.uc_hook_add(
                uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, ctypes.c_void_p(_native.block_hook_address),
                ctypes.c_void_p(ctypes.addressof(self.state)), ctypes.c_uint64(1), ctypes.c_uint64(0))
            if status != 0:
                raise UcError(status)
            self.native = True
        else:
            log.warning("armras._native is not built (pip install -e . compiles it): using a slow Python block hook")
            uc.hook_add(UC_HOOK_BLOCK, self._python_hook)

    def _python_hook(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        st = self.state
        st.instructions += size // 4
        if st.watch_unmask and not uc.reg_read(UC_ARM64_REG_PSTATE) & 0x80:
            st.watch_unmask = 0
            st.reason = STOP_UNMASKED
            uc.emu_stop()
            return
        if st.stop or (st.stop_at and st.instructions >= st.stop_at):
            st.reason = STOP_REQUESTED if st.stop else STOP_COUNT
            st.stop = 0
            uc.emu_stop()

    def request_stop(self) -> None:
        """Stop at the next block boundary (safe from any thread or callback)."""
        self.state.stop = 1

    def watch_unmask(self, on: bool) -> None:
        """Stop as soon as the guest clears PSTATE.I (an IRQ is waiting for it)."""
        self.state.watch_unmask = 1 if on else 0

    def clear(self) -> None:
        self.state.stop = 0
        self.state.reason = 0

    @property
    def stopped_cpu(self) -> bool:
        """Whether the last emu_start ended because this hook stopped the CPU."""
        return self.state.reason != 0

    @property
    def instructions(self) -> int:
        return self.state.instructions

    def stop_at(self, count: int | None) -> None:
        self.state.stop_at = count or 0


__all__ = ["BlockHook", "Callable"]
