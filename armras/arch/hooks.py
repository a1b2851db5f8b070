"""Stopping the CPU safely, taking masked IRQs/SErrors on unmask, counting instructions: a block hook.

The native hook (armras/arch/_native.c) runs at every translation-block start: it adds the
block's instructions to a counter and stops the CPU when another thread has asked to
(or when a counter limit is reached). Stopping there keeps the PC exact; an
asynchronous uc_emu_stop() near an MMIO access makes Unicorn 2.1.4 execute that access
twice. Without the compiled extension the same logic runs as a (much slower) Python hook.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
from typing import Callable

from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, Uc, UcError
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TB_FLUSH, UC_CTL_TLB_FLUSH
from unicorn.arm64_const import UC_ARM64_REG_CP_REG, UC_ARM64_REG_ELR_EL1, UC_ARM64_REG_PC, UC_ARM64_REG_PSTATE
from unicorn.unicorn_py3 import unicorn as _ucmod

from armras.arch.cpu import SCTLR_EL1, SCTLR_M

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
        ("sea_pending", ctypes.c_int32),
        ("elr_regid", ctypes.c_int32),
        ("cp_regid", ctypes.c_int32),
        ("tb_flush_pending", ctypes.c_int32),
        ("sea_deadline", ctypes.c_uint64),
        ("block_start", ctypes.c_uint64),
        ("block_end", ctypes.c_uint64),
        ("tb_flush_block", ctypes.c_uint64),
    ]


STOP_REQUESTED, STOP_UNMASKED, STOP_COUNT, STOP_SEA, STOP_TB_FLUSH = 1, 2, 3, 4, 5


class BlockHook:
    """Stop requests (any thread) and instruction counting for one Unicorn instance."""

    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self.state = _State()
        self.state.emu_stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
        self.state.reg_read = ctypes.cast(_ucmod.uclib.uc_reg_read, ctypes.c_void_p).value
        self.state.pstate_regid = UC_ARM64_REG_PSTATE
        self.state.elr_regid = UC_ARM64_REG_ELR_EL1
        self.state.cp_regid = UC_ARM64_REG_CP_REG
        self.native = False
        # The host-side twin of the native SEA rule, for the Python fallback hook.
        self.sea_safe: Callable[[int], bool] | None = None
        try:
            from armras.arch import _native
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
            log.warning("armras.arch._native is not built (pip install -e . compiles it): using a slow Python block hook")
            uc.hook_add(UC_HOOK_BLOCK, self._python_hook)

    def _python_hook(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        st = self.state
        if st.tb_flush_pending and address != st.tb_flush_block:
            self._stop(uc, STOP_TB_FLUSH)
        elif st.watch_unmask and uc.reg_read(UC_ARM64_REG_PSTATE) & st.watch_unmask != st.watch_unmask:
            st.watch_unmask = 0
            self._stop(uc, STOP_UNMASKED)
        elif st.sea_pending and (self.sea_safe is not None and self.sea_safe(address)
                                 or st.instructions >= st.sea_deadline):
            st.sea_pending = 0
            self._stop(uc, STOP_SEA)
        elif st.stop or (st.stop_at and st.instructions >= st.stop_at):
            reason = STOP_REQUESTED if st.stop else STOP_COUNT
            st.stop = 0
            self._stop(uc, reason)
        else:
            st.instructions += size // 4
            st.block_start, st.block_end = address, address + size

    def _stop(self, uc: Uc, reason: int) -> None:
        """As _native.c armras_stop_at_block: the block at which we stop has not run."""
        self.state.reason = reason
        self.state.block_start = self.state.block_end = 0
        uc.emu_stop()

    def executed(self, pc: int) -> int:
        """Instructions actually run when the CPU is at `pc` (exact inside a block)."""
        st = self.state
        if st.block_start <= pc < st.block_end:
            return st.instructions - (st.block_end - pc) // 4
        return st.instructions

    def stopped_inside_block(self, pc: int) -> None:
        """The CPU stopped before `pc` inside the block it entered (a debugger's code or
        memory hook): count only what ran, so the block started at `pc` is counted anew."""
        st = self.state
        st.instructions = self.executed(pc)
        st.block_start = st.block_end = 0

    def hold_sea(self, deadline: int) -> None:
        """Stop at the first block start where an injected SEA may be taken (see _native.c
        armras_sea_safe), or once `deadline` instructions have run in any case."""
        self.state.sea_deadline = deadline
        self.state.sea_pending = 1

    def clear_sea(self) -> None:
        self.state.sea_pending = 0

    @property
    def sea_held(self) -> bool:
        return bool(self.state.sea_pending)

    @property
    def stopped_for_sea(self) -> bool:
        return self.state.reason == STOP_SEA

    def request_stop(self) -> None:
        """Stop at the next block boundary (safe from any thread or callback)."""
        self.state.stop = 1

    def watch_unmask(self, bits: int) -> None:
        """Stop as soon as the guest clears one of these PSTATE mask bits (PSTATE_I: an
        IRQ waits for it, PSTATE_A: an SError); 0 stops watching."""
        self.state.watch_unmask = bits

    def clear(self) -> None:
        self.state.stop = 0
        self.state.reason = 0

    @property
    def tb_flush_pending(self) -> bool:
        """The guest invalidated instruction caches (see ICacheMaintenance): drop every
        translation before the CPU runs on."""
        return bool(self.state.tb_flush_pending)

    def tb_flushed(self) -> None:
        self.state.tb_flush_pending = 0

    @property
    def stopped_cpu(self) -> bool:
        """Whether the last emu_start ended because this hook stopped the CPU."""
        return self.state.reason != 0

    @property
    def instructions(self) -> int:
        return self.state.instructions

    def stop_at(self, count: int | None) -> None:
        self.state.stop_at = count or 0




class _CpReg(ctypes.Structure):
    _fields_ = [("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("op0", ctypes.c_uint32),
                ("op1", ctypes.c_uint32), ("op2", ctypes.c_uint32), ("val", ctypes.c_uint64)]


_SYS_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_CpReg), ctypes.c_void_p)


class _SysregState(ctypes.Structure):
    _fields_ = [("callback", _SYS_CB), ("trap_counters", ctypes.c_int32), ("is_read", ctypes.c_int32),
                ("blocks", ctypes.c_void_p), ("reg_read", ctypes.c_void_p), ("reg_write", ctypes.c_void_p),
                ("pc_regid", ctypes.c_int32), ("reserved", ctypes.c_int32),
                ("ticks_per_insn", ctypes.c_uint64), ("skipped_ticks", ctypes.c_uint64), ("voff", ctypes.c_uint64),
                ("ras", ctypes.c_void_p)]


class _RasState(ctypes.Structure):
    _fields_ = [("pstate_regid", ctypes.c_int32), ("reserved", ctypes.c_int32),
                ("id_aa64pfr0", ctypes.c_uint64), ("disr", ctypes.c_uint64)]


ID_AA64PFR0_EL1 = (3, 0, 0, 4, 0)
ID_AA64PFR0_RAS_SHIFT = 28            # RAS, bits [31:28]: 1 = the RAS extension (FEAT_RAS)
_RAS_ID, _RAS_DISR, _RAS_ERRIDR, _RAS_RAZ_WI = range(4)
DISR_EL1_MASK = 0x81FF_FFFF           # A (bit 31), IDS (bit 24), syndrome [23:0]; the rest RES0
DISR_A = 1 << 31                      # DISR_EL1.A: an SError was deferred by an ESB
DISR_SYNDROME_MASK = 0x01FF_FFFF      # DISR_EL1 [24:0] hold the deferred SError's ESR ISS (IDS, AET, EA, DFSC)
ESB = 0xD503_221F                     # ESB, the Error Synchronization Barrier (HINT #16)


def _ras_register(crn: int, crm: int, op2: int) -> int | None:
    """Which RAS register an op1 = 0 encoding is (twin of _native.c armras_ras_register)."""
    if (crn, crm, op2) == (0, 4, 0):
        return _RAS_ID                  # ID_AA64PFR0_EL1
    if (crn, crm, op2) == (12, 1, 1):
        return _RAS_DISR                # DISR_EL1
    if (crn, crm, op2) == (5, 3, 0):
        return _RAS_ERRIDR              # ERRIDR_EL1
    if crn == 5 and ((crm == 3 and op2 == 1) or (crm == 4 and op2 <= 6) or (crm == 5 and op2 <= 3)):
        return _RAS_RAZ_WI              # ERRSELR_EL1, ERX*_EL1
    return None


SysregHandler = Callable[[bool, int, "_CpReg"], int]


class SysregTrap:
    """Trap the generic timer's system registers (MRS and MSR) to `handler`, and serve the
    RAS extension's registers (enable_ras).

    `handler(is_write, reg, cp)` returns 1 when it emulated the access (for a read it has
    written the destination register), 0 to let the instruction run natively. The native
    filter keeps every other system register access out of Python.
    """

    def __init__(self, uc: Uc, handler: SysregHandler, blocks: BlockHook) -> None:
        from unicorn.arm64_const import UC_ARM64_INS_MRS, UC_ARM64_INS_MSR
        from unicorn.unicorn_const import UC_HOOK_INSN

        self._handler = handler
        self._uc = uc
        self.ras = _RasState(pstate_regid=UC_ARM64_REG_PSTATE)
        self._ras_on = False
        try:
            from armras.arch import _native
        except ImportError:
            _native = None
        self.native = (_native is not None and _native.sysreg_state_size == ctypes.sizeof(_SysregState)
                       and _native.ras_state_size == ctypes.sizeof(_RasState))
        self._callbacks = []
        self.states = []
        for insn, is_write in ((UC_ARM64_INS_MRS, False), (UC_ARM64_INS_MSR, True)):
            cb = _SYS_CB(lambda uc_, reg, cp, _ud, w=is_write: self._handler(w, reg, cp.contents))
            self._callbacks.append(cb)
            if self.native:
                state = _SysregState(callback=cb, is_read=int(not is_write),
                                     blocks=ctypes.addressof(blocks.state),
                                     reg_read=ctypes.cast(_ucmod.uclib.uc_reg_read, ctypes.c_void_p).value,
                                     reg_write=ctypes.cast(_ucmod.uclib.uc_reg_write, ctypes.c_void_p).value,
                                     pc_regid=UC_ARM64_REG_PC, ticks_per_insn=1)
                self.states.append(state)
                handle = ctypes.c_size_t()
                status = _ucmod.uclib.uc_hook_add(
                    uc._uch, ctypes.byref(handle), UC_HOOK_INSN, ctypes.c_void_p(_native.sysreg_hook_address),
                    ctypes.c_void_p(ctypes.addressof(state)), ctypes.c_uint64(1), ctypes.c_uint64(0),
                    ctypes.c_int(insn))
                if status != 0:
                    raise UcError(status)
            else:
                uc.hook_add(UC_HOOK_INSN, lambda uc_, reg, cp, _ud, w=is_write: self._python_filter(w, reg, cp),
                            None, 1, 0, insn)

    def enable_ras(self) -> None:
        """Advertise the RAS extension (ID_AA64PFR0_EL1.RAS = 1) and emulate its registers:
        DISR_EL1 read/write, ERRIDR_EL1 = 0 (no error records), ERRSELR_EL1 and ERX*_EL1
        RAZ/WI, all EL1-only (_native.c armras_ras_access; Unicorn 2.1.4 has none of them)."""
        pfr0 = self._uc.cpr_read(*ID_AA64PFR0_EL1)
        self.ras.id_aa64pfr0 = pfr0 & ~(0xF << ID_AA64PFR0_RAS_SHIFT) | 1 << ID_AA64PFR0_RAS_SHIFT
        self._ras_on = True
        for state in self.states:
            state.ras = ctypes.addressof(self.ras)

    @property
    def disr(self) -> int:
        """DISR_EL1 of the CPU on the core (not in Unicorn's context: the machine swaps it)."""
        return self.ras.disr

    @disr.setter
    def disr(self, value: int) -> None:
        self.ras.disr = value

    def _python_filter(self, is_write: bool, reg: int, cp: _CpReg) -> int:
        """Without the extension: the RAS registers here, everything else to the handler."""
        if self._ras_on and cp.op0 == 3 and cp.op1 == 0:
            return self._ras_access(is_write, reg, cp)
        return self._handler(is_write, reg, cp)

    def _ras_access(self, is_write: bool, reg: int, cp: _CpReg) -> int:
        """Twin of _native.c armras_ras_access."""
        which = _ras_register(cp.crn, cp.crm, cp.op2)
        if which is None or (which == _RAS_ID and is_write):
            return 0
        uc = self._uc
        if not uc.reg_read(UC_ARM64_REG_PSTATE) & 0xC:
            return 0                    # EL0: UNDEFINED (Unicorn raises it)
        if which == _RAS_ID:
            with contextlib.suppress(UcError):      # XZR as the destination
                uc.reg_write(reg, self.ras.id_aa64pfr0)
            return 1
        if which == _RAS_ERRIDR and is_write:
            return 0
        value = 0
        if which == _RAS_DISR:
            if is_write:
                self.ras.disr = cp.val & DISR_EL1_MASK
            else:
                value = self.ras.disr
        if not is_write:
            with contextlib.suppress(UcError):      # XZR as the destination
                uc.reg_write(reg, value)
        uc.reg_write(UC_ARM64_REG_PC, uc.reg_read(UC_ARM64_REG_PC) + 4)   # Unicorn lacks it: step over
        return 1

    def trap_counters(self, on: bool) -> None:
        """Also trap CNTPCT_EL0/CNTVCT_EL0 reads (deterministic mode)."""
        for state in self.states:
            state.trap_counters = 1 if on else 0

    def serve_counters(self, ticks_per_insn: int) -> Callable[[int, int], None] | None:
        """Serve deterministic counter reads natively (_native.c armras_counter_read).

        Returns the function that keeps the native copy of (skipped ticks, voff) in step
        with armras.timing.guesttime.InstructionCounter, or None without the extension
        (reads then reach `handler`).
        """
        if not self.native:
            return None
        for state in self.states:
            state.ticks_per_insn = ticks_per_insn

        def update(skipped_ticks: int, voff: int) -> None:
            for state in self.states:
                state.skipped_ticks = skipped_ticks & 0xFFFF_FFFF_FFFF_FFFF
                state.voff = voff & 0xFFFF_FFFF_FFFF_FFFF

        return update


IC_RANGES = 64                        # physical ranges an IC IVAU loop may leave pending (_native.c)


class _ICState(ctypes.Structure):
    _fields_ = [("blocks", ctypes.c_void_p), ("vmem_translate", ctypes.c_void_p), ("ctl", ctypes.c_void_p),
                ("remove_cache", ctypes.c_int32), ("prot_exec", ctypes.c_int32),
                ("line_size", ctypes.c_uint64), ("lines", ctypes.c_uint64), ("flushes", ctypes.c_uint64),
                ("prot_read", ctypes.c_int32), ("full", ctypes.c_int32), ("nranges", ctypes.c_uint64),
                ("ranges", (ctypes.c_uint64 * 2) * IC_RANGES)]


IC_IVAU = (3, 5, 1)                   # (op1, CRm, op2) of SYS with op0 1, CRn 7
IC_IALLU = ((0, 5, 0), (0, 1, 0))     # IC IALLU, IC IALLUIS
CTR_EL0 = (3, 3, 0, 0, 1)


class ICacheMaintenance:
    """The guest's instruction cache maintenance drops Unicorn's stale translations.

    Unicorn 2.1.4 misses stores to code made through a second virtual alias once one store
    went through it (cputlb.c notdirty_write drops the TLB entry's write watch for good:
    tlb_protect_code is a stub). Linux patches its own text through the linear map, so
    the old instructions kept running. Software that writes instructions must follow with
    IC IVAU or IC IALLU[IS] (Arm ARM B2.4.4; this CPU's CTR_EL0.DIC is 0), so: IC IVAU
    drops the translations of that line (of every alias: a physical line); IC IALLU[IS]
    drops all of them (one cache for every vCPU), before any other block runs
    (BlockHook.tb_flush_pending). See _native.c armras_ic_hook, which does this without
    Python.

    An IC IVAU whose VA is readable but not executable here (Linux syncs every new user
    code page through its execute-never linear map) is kept as a physical range and
    dropped at the stop by `apply`: Unicorn drops translations only by an executable VA,
    so `apply` turns the EL1&0 MMU off for the moment (VA = PA) and drops each range by
    its physical address. A full flush instead cost ~40 ms of retranslation per page.
    """

    def __init__(self, uc: Uc, blocks: BlockHook, line_size: int) -> None:
        from unicorn import UC_HOOK_INSN, UC_PROT_EXEC, UC_PROT_READ
        from unicorn.arm64_const import UC_ARM64_INS_SYS
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TB_REMOVE_CACHE

        self._uc = uc
        self._blocks = blocks
        self.line_size = line_size
        lib = _ucmod.uclib
        lib.uc_vmem_translate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_uint64)]
        lib.uc_vmem_translate.restype = ctypes.c_int
        try:
            from armras.arch import _native
        except ImportError:
            _native = None
        self.native = _native is not None and _native.ic_state_size == ctypes.sizeof(_ICState)
        st = self.state = _ICState(blocks=ctypes.addressof(blocks.state), line_size=line_size,
                                   prot_exec=UC_PROT_EXEC, prot_read=UC_PROT_READ,
                                   remove_cache=UC_CTL_TB_REMOVE_CACHE | 2 << 26 | UC_CTL_IO_WRITE << 30,
                                   vmem_translate=ctypes.cast(lib.uc_vmem_translate, ctypes.c_void_p).value,
                                   ctl=ctypes.cast(lib.uc_ctl, ctypes.c_void_p).value)
        if self.native:
            handle = ctypes.c_size_t()
            status = lib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_INSN,
                                     ctypes.c_void_p(_native.ic_hook_address), ctypes.c_void_p(ctypes.addressof(st)),
                                     ctypes.c_uint64(1), ctypes.c_uint64(0), ctypes.c_int(UC_ARM64_INS_SYS))
            if status != 0:
                raise UcError(status)
        else:
            uc.hook_add(UC_HOOK_INSN, self._python_hook, None, 1, 0, UC_ARM64_INS_SYS)

    def _translate(self, uc: Uc, va: int, prot: int) -> int | None:
        pa = ctypes.c_uint64()
        if _ucmod.uclib.uc_vmem_translate(uc._uch, va, prot, ctypes.byref(pa)) != 0:
            return None
        return pa.value

    def _request(self) -> None:
        blocks = self._blocks.state
        if not blocks.tb_flush_pending:
            blocks.tb_flush_pending = 1
            blocks.tb_flush_block = blocks.block_start

    def _full(self) -> None:
        st = self.state
        if not st.full:
            st.full, st.nranges = 1, 0
            st.flushes += 1
        self._request()

    def _pending(self, pa: int) -> None:
        st = self.state
        if st.full:
            return
        end = pa + self.line_size
        if st.nranges and st.ranges[st.nranges - 1][1] == pa:
            st.ranges[st.nranges - 1][1] = end
        elif st.nranges < IC_RANGES:
            st.ranges[st.nranges][0], st.ranges[st.nranges][1] = pa, end
            st.nranges += 1
        else:
            self._full()
            return
        st.lines += 1
        self._request()

    def _python_hook(self, uc: Uc, _reg: int, cp: _CpReg, _ud: object) -> bool:
        """The same as _native.c armras_ic_hook."""
        if cp.op0 != 1 or cp.crn != 7:
            return False
        op = (cp.op1, cp.crm, cp.op2)
        if op == IC_IVAU:
            start = cp.val & ~(self.line_size - 1)
            if self._translate(uc, start, self.state.prot_exec) is not None:
                uc.ctl_remove_cache(start, start + self.line_size)
                self.state.lines += 1
                return False
            pa = self._translate(uc, start, self.state.prot_read)
            if pa is not None:
                self._pending(pa)
                return False
        elif op not in IC_IALLU:
            return False
        self._full()
        return False

    def apply(self, el: int) -> bool:
        """Drop what the guest's maintenance left pending, with the CPU stopped at `el`.

        Returns whether every translation was dropped (a full flush)."""
        st = self.state
        ranges = [(st.ranges[i][0], st.ranges[i][1]) for i in range(st.nranges)]
        full = bool(st.full) or (bool(ranges) and el > 1)     # the EL2/EL3 regimes: no MMU switch here
        st.full, st.nranges = 0, 0
        self._blocks.tb_flushed()
        uc = self._uc
        if full:
            uc.ctl(UC_CTL_TB_FLUSH, UC_CTL_IO_WRITE)
            return True
        if ranges:
            # Unicorn writes SCTLR_EL1 raw (no TLB flush): flush before, so that no guest
            # entry for VA = PA is used, and after, so that the identity entries go.
            sctlr = uc.cpr_read(*SCTLR_EL1)
            uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
            uc.cpr_write(*SCTLR_EL1, sctlr & ~SCTLR_M)
            try:
                for start, end in ranges:
                    uc.ctl_remove_cache(start, end)
            finally:
                uc.cpr_write(*SCTLR_EL1, sctlr)
                uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        return False

    @property
    def lines(self) -> int:
        """IC IVAU served by dropping one line's translations."""
        return self.state.lines

    @property
    def flushes(self) -> int:
        """Full flushes the guest's IC asked for."""
        return self.state.flushes


class EsbWatch:
    """Executed ESB instructions, seen while a masked SError is pending (and only then).

    Arm ARM (DDI 0487) C6.2 ESB / D19 DISR_EL1: an ESB executed while a physical SError is
    pending and masked defers it: DISR_EL1.A is set, DISR_EL1 takes its syndrome and the
    SError is no longer pending. Unicorn translates ESB as a NOP and has no hook for hint
    instructions, so while enabled a code hook compares every executed instruction with
    ESB (`fetch` reads it through the guest's translation). That costs a Python call per
    instruction, so the board enables it only for the rare spans in which an injected
    SError waits for PSTATE.A; enabling and disabling drop the translated blocks (they carry
    the hook calls, or must stop carrying them).
    """

    def __init__(self, uc: Uc, fetch: Callable[[int], int | None], on_esb: Callable[[int], None],
                 wrap: Callable[[Callable[..., object]], Callable[..., object]] = lambda f: f) -> None:
        self._uc = uc
        self._fetch = fetch
        self._on_esb = on_esb
        self._callback = wrap(self._on_code)
        self._hook: int | None = None
        self.armed = 0                       # times it was enabled (for tests and logs)

    @property
    def active(self) -> bool:
        return self._hook is not None

    def enable(self, on: bool) -> None:
        """Watch (or stop watching) for ESB; call only while the CPU is stopped."""
        if on == self.active:
            return
        if on:
            self._hook = self._uc.hook_add(UC_HOOK_CODE, self._callback)
            self.armed += 1
        else:
            assert self._hook is not None
            self._uc.hook_del(self._hook)
            self._hook = None
        self._uc.ctl(UC_CTL_TB_FLUSH, UC_CTL_IO_WRITE)

    def _on_code(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        if size == 4 and self._fetch(address) == ESB:
            self._on_esb(address)


_INTR_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)

# Register ids in the order of _native.c's R_* enum.
_INTR_REGS = ("PC", "SP", "SP_EL0", "SP_EL1", "VBAR_EL1", "ELR_EL1", "ESR_EL1", "FAR_EL1", "PSTATE", "CP_REG")


class _IntrState(ctypes.Structure):
    _fields_ = [
        ("fallback", _INTR_CB),
        ("reg_read", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("context_update", ctypes.c_void_p),
        ("context", ctypes.c_void_p),
        ("exception_offset", ctypes.c_uint64),
        ("regids", ctypes.c_int32 * len(_INTR_REGS)),
        ("enabled", ctypes.c_int32),
        ("entries", ctypes.c_uint64),
        ("last_elr", ctypes.c_uint64),
        ("last_esr", ctypes.c_uint64),
        ("repeat", ctypes.c_uint64),
    ]


IntrHandler = Callable[[Uc, int, object], None]


class ExceptionHook:
    """UC_HOOK_INTR: the guest's synchronous exceptions to EL1 are entered natively
    (_native.c armras_intr_hook); HVC/SMC and anything unusual reach `handler`.

    Without the compiled extension every exception goes to `handler`.
    """

    def __init__(self, uc: Uc, handler: IntrHandler, context: object, exception_offset: int) -> None:
        from unicorn import UC_HOOK_INTR
        from unicorn import arm64_const

        self._handler = handler
        self._context = context          # keeps the uc_context alive for the native hook
        try:
            from armras.arch import _native
        except ImportError:
            _native = None
        self.native = _native is not None and _native.intr_state_size == ctypes.sizeof(_IntrState)
        if not self.native:
            self.state = None
            uc.hook_add(UC_HOOK_INTR, handler)
            return
        self._fallback = _INTR_CB(lambda _uc, intno, _ud: self._handler(uc, intno, None))
        st = self.state = _IntrState()
        st.fallback = self._fallback
        st.reg_read = ctypes.cast(_ucmod.uclib.uc_reg_read, ctypes.c_void_p).value
        st.reg_write = ctypes.cast(_ucmod.uclib.uc_reg_write, ctypes.c_void_p).value
        st.context_update = ctypes.cast(_ucmod.uclib.uc_context_save, ctypes.c_void_p).value
        st.context = context.context.value  # type: ignore[attr-defined]
        st.exception_offset = exception_offset
        for i, name in enumerate(_INTR_REGS):
            st.regids[i] = getattr(arm64_const, f"UC_ARM64_REG_{name}")
        st.enabled = 1
        handle = ctypes.c_size_t()
        status = _ucmod.uclib.uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_INTR, ctypes.c_void_p(_native.intr_hook_address),
            ctypes.c_void_p(ctypes.addressof(st)), ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != 0:
            raise UcError(status)

    @property
    def entries(self) -> int:
        """Exceptions entered natively so far."""
        return self.state.entries if self.state is not None else 0


__all__ = ["BlockHook", "ExceptionHook", "ICacheMaintenance", "SysregTrap", "STOP_REQUESTED", "STOP_UNMASKED",
           "STOP_COUNT", "STOP_SEA", "STOP_TB_FLUSH"]
