"""PhysicalMemory's reads of RAM from the host memory Unicorn maps (mem_map_ptr): the same bytes
as Unicorn's own reads, guest stores seen at once, and a poisoned page still refused."""
from __future__ import annotations

import io
import struct

import pytest
from armras.board.machine import Machine, MachineConfig
from armras.errors import GuestAddressError

PAGE = 0x4100_0000


@pytest.fixture
def machine() -> Machine:
    m = Machine(MachineConfig(console=io.BytesIO()))
    yield m
    m.close()


def test_reads_match_unicorns_and_see_writes(machine: Machine) -> None:
    data = bytes(range(256)) * 40
    machine.uc.mem_write(PAGE - 100, data)              # across a page boundary
    assert machine.mem.read(PAGE - 100, len(data)) == data == bytes(machine.uc.mem_read(PAGE - 100, len(data)))
    assert machine.mem.read_u64(PAGE - 4) == struct.unpack("<Q", data[96:104])[0]
    assert machine.mem.read_u32(PAGE + 8) == struct.unpack("<I", data[108:112])[0]
    machine.mem.write_u64(PAGE, 0x1122_3344_5566_7788)
    assert machine.mem.read(PAGE, 8) == bytes.fromhex("8877665544332211")
    assert machine.mem.read(PAGE, 0) == b""


def test_a_store_by_the_guest_is_read_at_once(board) -> None:
    # Each HVC stops in the host, which reads what the guest stored just before (no flush between).
    b = board("""
 ldr x5, =0x41000ff8
 ldr x6, =0x1122334455667788
 str x6, [x5]
 hvc #0x99
 add x6, x6, #1
 str x6, [x5]
 hvc #0x99
 ldr x0, =0x84000008
 hvc #0
 .ltorg
""")
    m = b.machine
    seen: list[int] = []
    m.hvc_handlers[0x99] = lambda cpu: seen.append(m.mem.read_u64(0x4100_0FF8))
    b.run()
    assert seen == [0x1122_3344_5566_7788, 0x1122_3344_5566_7789]


def test_poisoned_pages_are_still_refused(machine: Machine) -> None:
    machine.mem.write(PAGE + 0x1000, b"\xaa" * 16)
    machine.poison(PAGE)
    for pa, size in ((PAGE, 8), (PAGE + 0xFF8, 16), (PAGE - 8, 16), (PAGE - 0x1000, 0x3000)):
        with pytest.raises(GuestAddressError, match="cannot read guest memory"):
            machine.mem.read(pa, size)
    with pytest.raises(GuestAddressError):
        machine.mem.read_u64(PAGE + 0x10)
    assert machine.mem.read(PAGE + 0x1000, 16) == b"\xaa" * 16           # the next page is fine
    assert machine.mem.read(PAGE - 16, 16) == bytes(16)                   # and the one before


def test_reads_outside_memory_are_refused_as_before(machine: Machine) -> None:
    end = machine.ram.end
    with pytest.raises(GuestAddressError, match="outside guest memory"):
        machine.mem.read(end - 4, 8)
    with pytest.raises(GuestAddressError, match="outside guest memory"):
        machine.mem.read_u64(0x0900_0000)                                # the UART: MMIO, never read
    assert not machine.mem.contains(end - 4, 8) and machine.mem.contains(end - 8, 8)
    assert not machine.mem.contains(machine.ram.base, -1)
