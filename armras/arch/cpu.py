"""The AArch64 CPU: a Unicorn core plus the architectural exception entry Unicorn lacks.

Unicorn 2.1.4 stops short of AArch64 exception entry: SVC, HVC, SMC, BRK, UDEF and
aborts all reach UC_HOOK_INTR carrying only QEMU's exception number. The syndrome,
fault address and target EL are in QEMU's `env->exception`, which we read from the
saved context blob at an offset found at start-up by a probe. Entry (Arm ARM D1.10,
"Exception entry") is then done here: SPSR_EL1, ELR_EL1, ESR_EL1, FAR_EL1, the stack
pointer banks, PSTATE = EL1h with DAIF masked, PC = VBAR_EL1 + vector offset.
"""
from __future__ import annotations

import ctypes
import logging
import struct
from dataclasses import dataclass
from typing import Callable

from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc
from unicorn.arm64_const import (
    UC_ARM64_REG_ELR_EL1,
    UC_ARM64_REG_ESR_EL1,
    UC_ARM64_REG_FAR_EL1,
    UC_ARM64_REG_PC,
    UC_ARM64_REG_PSTATE,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_SP_EL0,
    UC_ARM64_REG_SP_EL1,
    UC_ARM64_REG_VBAR_EL1,
    UC_ARM64_REG_X0,
)

from armras.arch.regs import Regs
from armras.errors import ArmrasError

log = logging.getLogger(__name__)

# QEMU target/arm/cpu.h exception numbers as Unicorn passes them to UC_HOOK_INTR.
EXCP_UDEF = 1
EXCP_SWI = 2
EXCP_PREFETCH_ABORT = 3
EXCP_DATA_ABORT = 4
EXCP_IRQ = 5
EXCP_FIQ = 6
EXCP_BKPT = 7
EXCP_HVC = 11
EXCP_SMC = 13
EXCP_HLT = 0x10001
EXCP_HALTED = 0x10003

# System register encodings (op0, op1, CRn, CRm, op2).
SCR_EL3 = (3, 6, 1, 1, 0)
HCR_EL2 = (3, 4, 1, 1, 0)
SPSR_EL1 = (3, 0, 4, 0, 0)
SCTLR_EL1 = (3, 0, 1, 0, 0)
TCR_EL1 = (3, 0, 2, 0, 2)
TTBR0_EL1 = (3, 0, 2, 0, 0)
TTBR1_EL1 = (3, 0, 2, 0, 1)
MAIR_EL1 = (3, 0, 10, 2, 0)
VBAR_EL1 = (3, 0, 12, 0, 0)
MIDR_EL1 = (3, 0, 0, 0, 0)
SCTLR_M, SCTLR_C, SCTLR_I = 1 << 0, 1 << 2, 1 << 12     # MMU, data and instruction cache enables

SCR_NS = 1 << 0
SCR_HCE = 1 << 8
SCR_RW = 1 << 10
HCR_RW = 1 << 31

# PSTATE / SPSR bits
PSTATE_SP = 1 << 0
PSTATE_EL_SHIFT = 2
PSTATE_EL_MASK = 3 << PSTATE_EL_SHIFT
PSTATE_F = 1 << 6
PSTATE_I = 1 << 7
PSTATE_A = 1 << 8
PSTATE_D = 1 << 9
PSTATE_DAIF = PSTATE_D | PSTATE_A | PSTATE_I | PSTATE_F
PSTATE_EL1H = (1 << PSTATE_EL_SHIFT) | PSTATE_SP

# Vector table layout (Arm ARM D1.10.2): base offset by where the exception came from,
# plus the kind of exception.
VECTOR_CURRENT_SP0 = 0x000
VECTOR_CURRENT_SPX = 0x200
VECTOR_LOWER_A64 = 0x400
VECTOR_SYNC = 0x000
VECTOR_IRQ = 0x080
VECTOR_FIQ = 0x100
VECTOR_SERROR = 0x180

# ESR_ELx fields
ESR_EC_SHIFT = 26
ESR_IL = 1 << 25
EC_UNKNOWN = 0x00
EC_SVC64 = 0x15
EC_HVC64 = 0x16
EC_SMC64 = 0x17
EC_IABT_LOWER = 0x20
EC_IABT_CUR = 0x21
EC_DABT_LOWER = 0x24
EC_DABT_CUR = 0x25
EC_SERROR = 0x2F
EC_BRK64 = 0x3C
ISS_FNV = 1 << 10
ISS_WNR = 1 << 6
FSC_SEA = 0x10  # synchronous external abort, not on a translation table walk


def sea_syndrome(from_el: int, *, instruction: bool = False, fnv: bool = True) -> int:
    """ESR for a Synchronous External Abort taken to EL1, as QEMU's kvm_inject_arm_sea.

    `(0x24 + same_el) << 26 | IL | FnV | DFSC 0x10`: 0x96000410 from EL1, 0x92000410 from EL0.
    Like KVM, WnR is 0 whatever the access was; an instruction fetch gets the
    instruction-abort class (0x20 + same_el) with the same ISS.
    """
    same_el = 1 if from_el == 1 else 0
    ec = (EC_IABT_LOWER if instruction else EC_DABT_LOWER) + same_el
    esr = (ec << ESR_EC_SHIFT) | ESR_IL | FSC_SEA
    if fnv:
        esr |= ISS_FNV
    return esr


# An SError interrupt's ISS with the RAS extension (Arm ARM D17.2.37 ESR_EL1, "ISS encoding
# for an SError interrupt"): IDS (bit 24) = 0, so the rest is architectural; AET (bits
# [12:10]) grades the error; DFSC (bits [5:0]) 0b010001 is an asynchronous SError. IESB
# (bit 13) and EA (bit 9) stay 0.
ISS_SERROR_IDS = 1 << 24
ISS_AET_SHIFT = 10
ISS_AET_MASK = 0b111 << ISS_AET_SHIFT
AET_UC = 0b000      # Uncontainable
AET_UEU = 0b001     # Unrecoverable state
AET_UEO = 0b010     # Restartable state (not yet consumed)
AET_UER = 0b011     # Recoverable state
AET_CE = 0b110      # Corrected
DFSC_ASYNC_SERROR = 0b010001
AET_NAMES = {AET_UC: "UC", AET_UEU: "UEU", AET_UEO: "UEO", AET_UER: "UER", AET_CE: "CE"}
# The names the --inject grammar and the control socket take (`ue` is UEU), most severe first.
SERROR_AETS = {"uc": AET_UC, "ue": AET_UEU, "uer": AET_UER, "ueo": AET_UEO, "ce": AET_CE}


# The AET an SError carries for a record of each CPER error severity (UEFI N.2.1) when
# firmware raises it alongside a GHES record (HEST notification type 9, ARMv8 SEI): the
# three gradings both know. UEU and UEO have no CPER severity; inject them with serror:aet=.
AET_FOR_CPER_SEVERITY = {0: AET_UER, 1: AET_UC, 2: AET_CE, 3: AET_CE}   # recoverable, fatal, corrected, info


def serror_syndrome(aet: int) -> int:
    """ESR for a physical SError interrupt with RAS syndrome `aet` (an AET_* value).

    EC 0x2F, IL = 1, IDS = 0, AET, DFSC = asynchronous SError: e.g. 0xbe000011 (UC),
    0xbe001811 (CE). The same from EL0 and EL1: SError has a single exception class.
    """
    if aet not in SERROR_AETS.values():
        raise ValueError(f"{aet:#x} is not an AET encoding of the RAS extension")
    return (EC_SERROR << ESR_EC_SHIFT) | ESR_IL | (aet << ISS_AET_SHIFT) | DFSC_ASYNC_SERROR


def serror_aet_name(esr: int) -> str:
    """The --inject name of an SError syndrome's AET (`uc`, `ue`, `ueo`, `uer`, `ce`)."""
    aet = (esr & ISS_AET_MASK) >> ISS_AET_SHIFT
    return next((name for name, value in SERROR_AETS.items() if value == aet), f"{aet:#05b}")


def bus_error_syndrome(from_el: int, *, instruction: bool, write: bool, far_valid: bool) -> int:
    """ESR for a genuine bus error (nothing answers at the physical address), as QEMU TCG
    reports it: a synchronous external abort (FSC 0x10) with FAR valid (FnV = 0) and WnR
    set for a write. Injected SEAs and poisoned pages use sea_syndrome (KVM's) instead.
    """
    esr = sea_syndrome(from_el, instruction=instruction, fnv=not far_valid)
    if write and not instruction:
        esr |= ISS_WNR
    return esr


@dataclass(frozen=True)
class ExceptionInfo:
    """QEMU's env->exception at the time UC_HOOK_INTR fired."""

    syndrome: int
    fsr: int
    vaddress: int
    target_el: int


_EXC_STRUCT = struct.Struct("<IIQI")  # {u32 syndrome, u32 fsr, u64 vaddress, u32 target_el}


def _probe_exception_offset() -> int:
    """Find env->exception inside Unicorn's context blob by taking two known exceptions.

    `svc #0x5a5` must leave syndrome 0x560005a5 (EC 0x15, IL) with target EL 1, and
    `hvc #0x1234` 0x5a001234 with target EL 2, at the same offset.
    """
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    _enable_aarch64_el1(uc)
    base = 0x1000
    code = struct.pack("<III", 0xD400B4A1, 0xD4024682, 0xD503201F)  # svc #0x5a5; hvc #0x1234; nop
    uc.mem_map(base, 0x1000)
    uc.mem_write(base, code)
    ctx = uc.context_save()
    blobs: list[bytes] = []

    def on_intr(uc: Uc, intno: int, _ud: object) -> None:
        uc.context_update(ctx)
        blobs.append(bytes(ctx))
        if len(blobs) == 2:
            uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.emu_start(base, base + len(code), count=3)
    if len(blobs) != 2:
        raise ArmrasError("unsupported Unicorn build: SVC/HVC did not reach UC_HOOK_INTR")
    svc, hvc = blobs
    needle = struct.pack("<I", 0x560005A5)
    start = 0
    while (off := svc.find(needle, start)) >= 0:
        s = _EXC_STRUCT.unpack_from(svc, off)
        h = _EXC_STRUCT.unpack_from(hvc, off)
        if s[3] == 1 and h[0] == 0x5A001234 and h[3] == 2:
            log.debug("env->exception found at context offset %d", off)
            return off
        start = off + 1
    raise ArmrasError("unsupported Unicorn build: cannot locate env->exception in the CPU context")


def _enable_aarch64_el1(uc: Uc) -> None:
    # Unicorn starts with SCR_EL3.RW = HCR_EL2.RW = 0: EL1 would be AArch32. Also make EL1
    # Non-secure (as under a real EL3 firmware) and let HVC reach us (SCR_EL3.HCE).
    uc.cpr_write(*SCR_EL3, uc.cpr_read(*SCR_EL3) | SCR_RW | SCR_HCE | SCR_NS)
    uc.cpr_write(*HCR_EL2, uc.cpr_read(*HCR_EL2) | HCR_RW)


class GuestFault(ArmrasError):
    """The guest did something the platform cannot continue from (reported with context)."""

    exit_code = 126


class Cpu:
    """One AArch64 core (EL1/EL0 guest; EL2/EL3 are the emulator itself)."""

    def __init__(self, uc: Uc | None = None, exception_offset: int | None = None) -> None:
        self.uc = uc or Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        _enable_aarch64_el1(self.uc)
        self._exc_offset = exception_offset if exception_offset is not None else _probe_exception_offset()
        self._ctx = self.uc.context_save()
        self.regs = Regs(self.uc)
        # Consecutive synchronous exceptions taken at the same vector with the same ESR
        # and no progress: a guest stuck in an exception loop.
        self._last_entry: tuple[int, int] | None = None
        self._repeat = 0
        self._entries = 0
        # Exceptions entered elsewhere (the native hook, armras.arch.hooks.ExceptionHook).
        self.other_entries: Callable[[], int] = lambda: 0

    # --- registers -------------------------------------------------------------------
    @property
    def pc(self) -> int:
        return self.regs.read(UC_ARM64_REG_PC)

    @pc.setter
    def pc(self, value: int) -> None:
        self.regs.write(UC_ARM64_REG_PC, value)

    def x(self, n: int) -> int:
        return self.regs.read(UC_ARM64_REG_X0 + n)

    def set_x(self, n: int, value: int) -> None:
        self.regs.write(UC_ARM64_REG_X0 + n, value & 0xFFFF_FFFF_FFFF_FFFF)

    def xs(self, count: int) -> list[int]:
        return list(self.regs.read_many([UC_ARM64_REG_X0 + i for i in range(count)]))

    @property
    def pstate(self) -> int:
        return self.regs.read(UC_ARM64_REG_PSTATE)

    @property
    def current_el(self) -> int:
        return (self.pstate >> PSTATE_EL_SHIFT) & 3

    @property
    def irq_masked(self) -> bool:
        return bool(self.pstate & PSTATE_I)

    @property
    def serror_masked(self) -> bool:
        # PSTATE.A masks an SError taken to EL1 at EL0 as well as at EL1, as PSTATE.I does
        # an IRQ: only exceptions routed to EL2/EL3 from a lower EL ignore the PSTATE
        # masks (Arm ARM, "Asynchronous exception masking"; QEMU's arm_excp_unmasked).
        return bool(self.pstate & PSTATE_A)

    def sysreg(self, enc: tuple[int, int, int, int, int]) -> int:
        return self.regs.sysreg(enc)

    def set_sysreg(self, enc: tuple[int, int, int, int, int], value: int) -> None:
        self.regs.set_sysreg(enc, value)

    def exception_info(self) -> ExceptionInfo:
        """env->exception of the exception being reported to UC_HOOK_INTR right now."""
        self.uc.context_update(self._ctx)
        raw = ctypes.string_at(self._ctx.context.value + self._exc_offset, _EXC_STRUCT.size)
        return ExceptionInfo(*_EXC_STRUCT.unpack(raw))

    def snapshot(self) -> dict[str, int]:
        """A few registers for crash reports."""
        names = ["pc", "sp", "pstate", "elr_el1", "esr_el1", "far_el1", "vbar_el1"]
        ids = [UC_ARM64_REG_PC, UC_ARM64_REG_SP, UC_ARM64_REG_PSTATE, UC_ARM64_REG_ELR_EL1,
               UC_ARM64_REG_ESR_EL1, UC_ARM64_REG_FAR_EL1, UC_ARM64_REG_VBAR_EL1]
        return dict(zip(names, self.regs.read_many(ids)))

    @property
    def exceptions_taken(self) -> int:
        """Exceptions entered since the CPU started (here and natively)."""
        return self._entries + self.other_entries()

    @property
    def context_blob(self) -> object:
        """The saved-context buffer exception_info() reads env->exception from."""
        return self._ctx

    @property
    def exception_offset(self) -> int:
        return self._exc_offset

    def enter_el1_reset_state(self) -> None:
        """PSTATE as a CPU leaves reset into the OS (PSCI CPU_ON): EL1h, DAIF all masked."""
        self.regs.write(UC_ARM64_REG_PSTATE, PSTATE_EL1H | PSTATE_DAIF)
        self.regs.set_sysreg(SPSR_EL1, 0)   # through the cp-reg path: rebuilds QEMU's cached hflags

    # --- returns from EL3 (SDEI dispatch and completion) -------------------------------
    def set_elr_spsr(self, elr: int, spsr: int) -> None:
        """ELR_EL1/SPSR_EL1 as an exception taken from (elr, spsr) leaves them."""
        self.regs.write(UC_ARM64_REG_ELR_EL1, elr)
        self.regs.set_sysreg(SPSR_EL1, spsr)

    def eret_to(self, pc: int, pstate: int) -> None:
        """Continue at `pc` with `pstate`, as an ERET from EL3 would: the live stack pointer
        becomes the one the new EL/SPSel selects (SP_EL0 or SP_EL1), the old one banked.
        EL1 system registers (ELR_EL1, SPSR_EL1, ...) are left as they are."""
        old, sp = self.regs.read_many([UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP])
        self.regs.write(UC_ARM64_REG_SP_EL1 if _uses_sp_el1(old) else UC_ARM64_REG_SP_EL0, sp)
        new_sp = self.regs.read(UC_ARM64_REG_SP_EL1 if _uses_sp_el1(pstate) else UC_ARM64_REG_SP_EL0)
        self.regs.write_many([(UC_ARM64_REG_PSTATE, pstate), (UC_ARM64_REG_SP, new_sp),
                                 (UC_ARM64_REG_PC, pc)])
        # Through the cp-reg path, as in take_exception: rebuilds QEMU's cached hflags.
        self.regs.set_sysreg(SPSR_EL1, self.regs.sysreg(SPSR_EL1))

    # --- exception entry -----------------------------------------------------------
    def take_exception(self, kind: int, *, elr: int, esr: int | None = None, far: int | None = None) -> int:
        """Enter EL1 at VBAR_EL1 + offset as the architecture does. Returns the new PC.

        `kind` is VECTOR_SYNC/IRQ/FIQ/SERROR. ELR is the preferred return address.
        Safe to call inside UC_HOOK_INTR (the PC write redirects the running CPU) and
        between emu_start slices.
        """
        pstate, sp, sp_el1, vbar = self.regs.read_many(
            [UC_ARM64_REG_PSTATE, UC_ARM64_REG_SP, UC_ARM64_REG_SP_EL1, UC_ARM64_REG_VBAR_EL1])
        el = (pstate >> PSTATE_EL_SHIFT) & 3
        if el > 1:
            raise GuestFault(f"exception taken while the CPU is at EL{el}; armras runs EL2/EL3 itself")
        if el == 0:
            base = VECTOR_LOWER_A64
        elif pstate & PSTATE_SP:
            base = VECTOR_CURRENT_SPX
        else:
            base = VECTOR_CURRENT_SP0
        target = vbar + base + kind
        if kind == VECTOR_SYNC:
            self._check_exception_loop(vbar, elr, esr or 0)
        writes: list[tuple[int, int]] = []
        if el == 0 or not pstate & PSTATE_SP:
            # The live SP is SP_EL0: bank it and switch to SP_EL1, as QEMU's
            # aarch64_save_sp/aarch64_restore_sp would (ERET relies on these banks).
            writes += [(UC_ARM64_REG_SP_EL0, sp), (UC_ARM64_REG_SP, sp_el1)]
        writes.append((UC_ARM64_REG_ELR_EL1, elr))
        if esr is not None:
            writes.append((UC_ARM64_REG_ESR_EL1, esr))
        if far is not None:
            writes.append((UC_ARM64_REG_FAR_EL1, far))
        writes += [(UC_ARM64_REG_PSTATE, PSTATE_EL1H | PSTATE_DAIF), (UC_ARM64_REG_PC, target)]
        self.regs.write_many(writes)
        self._entries += 1
        # Written last through the cp-reg path: that rebuilds QEMU's cached hflags after
        # the PSTATE change, without which the handler's ERET would UNDEF.
        self.regs.set_sysreg(SPSR_EL1, pstate)
        return target

    def _check_exception_loop(self, vbar: int, elr: int, esr: int) -> None:
        if vbar == 0 and self.sysreg(SCTLR_EL1) & 1 == 0:
            raise GuestFault(
                f"guest took a synchronous exception (ESR {esr:#010x} at {elr:#x}) before "
                "installing a vector table (VBAR_EL1 is 0)")
        in_vectors = vbar <= elr < vbar + 0x800
        key = (elr, esr)
        if in_vectors and key == self._last_entry:
            self._repeat += 1
            if self._repeat >= 64:
                raise GuestFault(
                    f"guest is stuck in an exception loop: ESR {esr:#010x} taken again and again "
                    f"at {elr:#x} inside its vector table (VBAR_EL1 {vbar:#x})")
        else:
            self._repeat = 0
        self._last_entry = key


def _uses_sp_el1(pstate: int) -> bool:
    """EL1h: the live stack pointer is SP_EL1 (EL0 and EL1t use SP_EL0)."""
    return (pstate >> PSTATE_EL_SHIFT) & 3 != 0 and bool(pstate & PSTATE_SP)


def describe_esr(esr: int) -> str:
    """Short human-readable decoding of an ESR value for logs and crash reports."""
    ec = esr >> ESR_EC_SHIFT
    names = {
        EC_UNKNOWN: "unknown/undefined instruction", EC_SVC64: "SVC", EC_HVC64: "HVC",
        EC_SMC64: "SMC", EC_IABT_LOWER: "instruction abort (lower EL)",
        EC_IABT_CUR: "instruction abort (same EL)", EC_DABT_LOWER: "data abort (lower EL)",
        EC_DABT_CUR: "data abort (same EL)", EC_BRK64: "BRK", 0x18: "trapped MSR/MRS",
        0x22: "PC alignment", 0x26: "SP alignment", 0x07: "FP/SIMD access", EC_SERROR: "SError",
    }
    text = f"ESR {esr:#010x} EC {ec:#x} ({names.get(ec, 'other')})"
    if ec in (EC_IABT_LOWER, EC_IABT_CUR, EC_DABT_LOWER, EC_DABT_CUR):
        text += f" FSC {esr & 0x3F:#x}"
        if esr & ISS_FNV:
            text += " FnV"
    elif ec == EC_SERROR and not esr & ISS_SERROR_IDS:
        aet = (esr & ISS_AET_MASK) >> ISS_AET_SHIFT
        text += f" AET {AET_NAMES.get(aet, f'{aet:#05b}')}"
    return text


HookErrorSink = Callable[[BaseException], None]


def safe_hook(fn: Callable[..., object], on_error: HookErrorSink) -> Callable[..., object]:
    """Wrap a Unicorn callback: an exception inside it stops the CPU and is re-raised later.

    Exceptions must never escape into Unicorn's C frames; they are handed to `on_error`
    (the machine records it and stops emulation) and the callback returns a neutral value.
    """

    def wrapper(*args: object) -> object:
        try:
            return fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised by the run loop
            on_error(e)
            return 0

    wrapper.__name__ = getattr(fn, "__name__", "hook")
    return wrapper


__all__ = [
    "AET_FOR_CPER_SEVERITY",
    "Cpu", "ExceptionInfo", "GuestFault", "bus_error_syndrome", "describe_esr", "safe_hook", "sea_syndrome",
    "serror_syndrome",
]
