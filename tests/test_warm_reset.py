"""Warm reset within one run (PSCI SYSTEM_RESET / SYSTEM_RESET2, DEN 0022D 5.10/5.11), what
survives it, and the Boot Error Record Table (ACPI 6.4 18.3.1) it fills."""
from __future__ import annotations

import io
import struct
import subprocess
import sys

import pytest

from armras.board.machine import Machine, MachineConfig
from armras.drive.inject import parse_inject_spec, perform
from armras.drive.session import Guest, RunSession
from armras.errors import ArmrasError
from armras.ras import cper
from conftest import LOAD_ADDRESS, assemble

UART = 0x0900_0000
SYSTEM_RESET, SYSTEM_RESET2, SYSTEM_OFF = 0x8400_0009, 0xC400_0012, 0x8400_0008


def _program(body: str) -> Guest:
    """A bare-metal guest: `body` runs at LOAD_ADDRESS on every boot."""
    code = assemble(body)

    def load(m: Machine) -> None:
        m.mem.write(LOAD_ADDRESS, code)
        m.cpu.pc = LOAD_ADDRESS
        m.cpu.set_x(0, m.acpi.rsdp_address)

    return Guest(load=load)


PRINT_B_THEN_RESET = f"""
 ldr x1, ={UART:#x}
 mov w2, #'B'
 strb w2, [x1]
 mov w2, #'\\n'
 strb w2, [x1]
 ldr x0, ={SYSTEM_RESET:#x}
 hvc #0
 b .
 .ltorg
"""


def _session(guest: Guest, **kw: object) -> tuple[RunSession, io.BytesIO]:
    console = io.BytesIO()
    return RunSession(MachineConfig(console=console, timeout=20.0), guest, **kw), console  # type: ignore[arg-type]


def test_every_reset_boots_again_until_the_limit() -> None:
    session, console = _session(_program(PRINT_B_THEN_RESET), max_reboots=2)
    with pytest.raises(ArmrasError, match=r"warm reset number 3 \(PSCI SYSTEM_RESET\); --max-reboots 2 ends"):
        session.run()
    assert console.getvalue() == b"B\nB\nB\n" and session.boots == 2


def test_a_reset_then_power_off_ends_with_the_last_boots_status() -> None:
    # The host marks RAM in the first boot only; the guest resets while it sees the mark.
    # A warm reset gives a fresh board: the second boot finds RAM cleared and powers off 7.
    body = f"""
 ldr x1, =0x40300000
 ldr x2, [x1]
 cbz x2, off
 ldr x0, ={SYSTEM_RESET2:#x}
 mov x1, #0                 // SYSTEM_WARM_RESET
 hvc #0
 b .
off:
 ldr x0, ={SYSTEM_OFF:#x}
 mov x1, #7
 hvc #0
 .ltorg
"""
    session, _ = _session(_program(body), first_boot=[lambda m: m.mem.write_u64(0x4030_0000, 1)])
    r = session.run()
    assert (r.status, session.boots, r.reset) == (7, 1, False)


@pytest.mark.parametrize("reset_type, expected", [(1, 2**64 - 2), (0x8000_0000, 2**64 - 1)])
def test_system_reset2_refuses_other_types(reset_type: int, expected: int) -> None:
    # PSCI: architectural types other than SYSTEM_WARM_RESET (0) are INVALID_PARAMETERS (-2);
    # vendor types (bit 31) this platform lacks are NOT_SUPPORTED (-1). The call returns.
    body = f"""
 ldr x0, ={SYSTEM_RESET2:#x}
 ldr x1, ={reset_type:#x}
 hvc #0
 mov x19, x0
 ldr x0, ={SYSTEM_OFF:#x}
 mov x1, #0
 hvc #0
 .ltorg
"""
    session, _ = _session(_program(body))
    assert session.run().status == 0 and session.boots == 0
    assert session.machine is not None and session.machine.cpu.x(19) == expected


def _bert(m: Machine) -> tuple[int, int]:
    table = m.acpi.table("BERT")
    assert table[:4] == b"BERT" and len(table) == 48
    length, address = struct.unpack_from("<IQ", table, 36)
    return address, length


def test_a_fatal_record_reaches_the_next_boots_bert_only() -> None:
    boots: list[Machine] = []

    def first(m: Machine) -> None:
        perform(m, parse_inject_spec("gpio:pa=0x41234000,severity=fatal"))
        perform(m, parse_inject_spec("arm:type=tlb,cpu=0,severity=recoverable,source=3"))   # not fatal: not kept

    session, _ = _session(_program(PRINT_B_THEN_RESET), max_reboots=2, first_boot=[first],
                          every_boot=[boots.append])
    with pytest.raises(ArmrasError, match="max-reboots 2"):
        session.run()
    regions = []
    for m in boots:
        address, length = _bert(m)
        assert length == 64 * 1024
        regions.append(m.mem.read(address, 1024))
    assert regions[0] == bytes(1024)                     # the first boot's BERT is empty
    st = cper.parse_generic_error_status(regions[1], require_active=True)
    assert st.severity == cper.Severity.FATAL and st.entries[0].physical_address == 0x4123_4000
    assert regions[1][st.length:st.length + 4] == bytes(4)   # one record, then an empty block
    assert regions[2] == bytes(1024)                     # only the previous boot's errors


def test_bert_injection_and_the_region_bound() -> None:
    m = Machine(MachineConfig())
    try:
        perform(m, parse_inject_spec("bert:pa=0x41000000"))
        perform(m, parse_inject_spec("bert:type=cache,cpu=0,severity=corrected"))
        address, _ = _bert(m)
        first = cper.parse_generic_error_status(m.mem.read(address, 1024))
        assert first.severity == cper.Severity.FATAL and first.entries[0].physical_address == 0x4100_0000
        second = cper.parse_generic_error_status(m.mem.read(address + first.length, 1024))
        assert second.severity == cper.Severity.CORRECTED
        with pytest.raises(ArmrasError, match="no room for another"):
            for _ in range(1000):
                perform(m, parse_inject_spec("bert:pa=0x41000000"))
    finally:
        m.close()


@pytest.mark.parametrize("keep", [False, True])
def test_poisoned_pages_survive_a_reset_only_when_asked(keep: bool) -> None:
    boots: list[Machine] = []
    session, _ = _session(_program(PRINT_B_THEN_RESET), max_reboots=1, keep_poison=keep,
                          first_boot=[lambda m: m.poison(0x4500_0000)], every_boot=[boots.append])
    with pytest.raises(ArmrasError):
        session.run()
    assert boots[0].poisoned == {0x4500_0000}
    assert boots[1].poisoned == ({0x4500_0000} if keep else set())


@pytest.mark.parametrize("value", ["-1", "1001", "inf", "nan", "x"])
def test_max_reboots_is_checked(value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "armras", "run", "--max-reboots", value, "x.elf"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--max-reboots" in proc.stderr and "Traceback" not in proc.stderr


# --- the boot error region's bookkeeping: mutants of armras/ras/bert.py ---------------

def test_boot_error_region_keeps_room_for_the_terminating_header() -> None:
    # ACPI 6.4 18.3.1: the region holds Generic Error Status Blocks one after another; an
    # empty block header (20 bytes, 18.3.2.7) ends the list. QEMU's memory-error record is
    # 172 bytes (20 + a 72-byte data entry + an 80-byte memory error section).
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

    from armras.board.memory import PhysicalMemory, Region
    from armras.ras.bert import BootErrorRegion
    from armras.ras.cper import memory_error_record

    base, ram = 0x4000_0000, 0x10_0000
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(base, ram)
    mem = PhysicalMemory(uc, [Region("ram", base, ram)])
    record = memory_error_record(0x4012_3000)
    assert len(record) == 172
    region = BootErrorRegion(mem, base, 2 * 172 + 20)
    region.append(record)
    region.append(record)                           # exactly fills it, header included
    assert region.records == 2 and region.used == 344
    assert uc.mem_read(base + 172, 172) == record
    with pytest.raises(ArmrasError, match=r"\(364 bytes\) has no room for another 172-byte record \(2 recorded\)"):
        region.append(record)
    small = BootErrorRegion(mem, base, 2 * 172 + 19)
    small.append(record)
    with pytest.raises(ArmrasError, match=r"\(1 recorded\)"):
        small.append(record)
    inactive = bytes(4) + record[4:]                # Block Status 0: not a record (Linux skips it)
    with pytest.raises(ArmrasError):
        region.install([inactive])


def test_boot_error_region_takes_records_longer_than_a_ghes_block() -> None:
    # The BERT region is not a 1 KiB GHES block: a record is bounded by the region only.
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

    from armras.board.memory import PhysicalMemory, Region
    from armras.ras.bert import BootErrorRegion
    from armras.ras.cper import MEMORY_ERROR_GUID, generic_error_status, memory_error_section

    base, ram = 0x4000_0000, 0x10_0000
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(base, ram)
    region = BootErrorRegion(PhysicalMemory(uc, [Region("ram", base, ram)]), base, 4096)
    record = generic_error_status([(MEMORY_ERROR_GUID, memory_error_section(0x4000_0000 + i * 0x1000))
                                   for i in range(20)])
    assert len(record) == 20 + 20 * (72 + 80)
    region.install([record])
    assert region.records == 1 and uc.mem_read(base, len(record)) == record
