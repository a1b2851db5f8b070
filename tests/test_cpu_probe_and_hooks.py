"""How armras reads QEMU's exception state out of Unicorn, and how it wraps callbacks.

`Cpu.exception_info` reads env->exception at an offset in Unicorn's context blob that a
probe finds at start-up; the syndromes checked here are the Arm ARM's (ESR_ELx, D17.2.37):
BRK #imm16 is EC 0x3C with IL and ISS = imm16, SVC #imm16 EC 0x15, an undefined
instruction EC 0x00 with IL.
"""
from __future__ import annotations

import functools
import struct

import pytest
from unicorn import UC_HOOK_INTR, UC_HOOK_MEM_UNMAPPED, Uc, UcError
from unicorn.arm64_const import UC_ARM64_REG_X1
from unicorn.unicorn_const import UC_ERR_READ_UNMAPPED

import armras.arch.cpu as cpu_module
from armras.arch.cpu import Cpu, safe_hook
from armras.errors import ArmrasError

BASE = 0x1000


def _syndromes(words: list[int]) -> list[tuple[int, int]]:
    """(ESR, target EL) of each exception `words` raise, as Cpu.exception_info reads them."""
    cpu = Cpu()
    uc = cpu.uc
    uc.mem_map(BASE, 0x1000)
    uc.mem_write(BASE, b"".join(struct.pack("<I", w) for w in words))
    seen: list[tuple[int, int]] = []

    def on_intr(uc: Uc, intno: int, _ud: object) -> None:
        info = cpu.exception_info()
        seen.append((info.syndrome, info.target_el))
        cpu.pc = BASE + 4 * len(seen)          # go on with the next instruction

    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.emu_start(BASE, BASE + 4 * len(words), count=len(words))
    return seen


def test_the_probe_finds_the_syndrome_of_other_exceptions_too() -> None:
    # brk #0x1234; svc #0x77; udf #0
    assert _syndromes([0xD4224680, 0xD4000EE1, 0x00000000]) == [
        (0xF2001234, 1), (0x56000077, 1), (0x02000000, 1)]


def test_an_explicit_offset_is_used_as_given() -> None:
    probed = Cpu().exception_offset
    assert Cpu(exception_offset=probed + 8).exception_offset == probed + 8
    assert Cpu(exception_offset=0).exception_offset == 0


def _intr_never_reached(arch: int, mode: int) -> Uc:
    """A Unicorn whose UC_HOOK_INTR callbacks never see the exception (it just stops)."""
    uc = Uc(arch, mode)
    real_hook_add = uc.hook_add

    def hook_add(htype, callback, *args, **kwargs):          # type: ignore[no-untyped-def]
        if htype == UC_HOOK_INTR:
            callback = lambda uc, intno, ud: uc.emu_stop()   # noqa: E731
        return real_hook_add(htype, callback, *args, **kwargs)

    uc.hook_add = hook_add                                   # type: ignore[method-assign]
    return uc


def test_a_unicorn_that_hides_svc_and_hvc_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_module, "Uc", _intr_never_reached)
    with pytest.raises(ArmrasError) as e:
        Cpu()
    assert str(e.value) == "unsupported Unicorn build: SVC/HVC did not reach UC_HOOK_INTR"


def _context_never_updated(arch: int, mode: int) -> Uc:
    """A Unicorn whose saved context never holds the exception state (context_update is a no-op)."""
    uc = Uc(arch, mode)
    uc.context_update = lambda ctx: None                    # type: ignore[method-assign]
    return uc


def test_a_unicorn_whose_context_lacks_the_syndrome_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_module, "Uc", _context_never_updated)
    with pytest.raises(ArmrasError) as e:
        Cpu()
    assert str(e.value) == "unsupported Unicorn build: cannot locate env->exception in the CPU context"


# --- safe_hook ------------------------------------------------------------------------------
def test_a_failing_hook_is_handed_over_and_answers_not_handled() -> None:
    # A memory hook that raised must not claim the access: returning false to
    # UC_HOOK_MEM_UNMAPPED makes Unicorn report the unmapped read (UC_ERR_READ_UNMAPPED);
    # true would make it retry the access as if the hook had mapped it.
    errors: list[BaseException] = []

    def on_unmapped(uc, access, address, size, value, ud):    # type: ignore[no-untyped-def]
        raise RuntimeError("device model bug")

    cpu = Cpu()
    uc = cpu.uc
    uc.mem_map(BASE, 0x1000)
    uc.mem_write(BASE, struct.pack("<I", 0xF9400020))         # ldr x0, [x1]
    uc.reg_write(UC_ARM64_REG_X1, 0x9_0000)
    uc.hook_add(UC_HOOK_MEM_UNMAPPED, safe_hook(on_unmapped, errors.append))
    with pytest.raises(UcError) as e:
        uc.emu_start(BASE, BASE + 4, count=1)
    assert e.value.errno == UC_ERR_READ_UNMAPPED
    assert [str(x) for x in errors] == ["device model bug"]
    assert safe_hook(lambda: 1 // 0, errors.append)() == 0 and isinstance(errors[-1], ZeroDivisionError)


def test_a_wrapped_hook_keeps_its_name() -> None:
    def on_code() -> None:
        pass

    assert safe_hook(on_code, print).__name__ == "on_code"
    assert safe_hook(functools.partial(on_code), print).__name__ == "hook"     # no __name__ of its own
