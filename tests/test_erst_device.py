"""The board's ERST and its registers, driven as Linux drives them.

A small copy of Linux's APEI interpreter (drivers/acpi/apei/apei-base.c: apei_exec_run and
the READ_REGISTER/READ_REGISTER_VALUE/WRITE_REGISTER/WRITE_REGISTER_VALUE instructions,
masks applied) runs the board's own ERST entries against the device's registers, with the
operation sequences of drivers/acpi/apei/erst.c (__erst_write_to_storage,
__erst_read_from_storage, __erst_clear_from_storage). Action codes, instruction codes and
command status values are ACPI 6.4 Tables 18.27/18.29/18.30, written as numbers.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from armras.board.machine import Machine
from armras.firmware.efi_memory import MemoryType
from armras.firmware.uefi import Uefi

ERST_FRAME = 0x0910_0000          # the board's ERST registers (docs/design.md memory map)
ERST_FRAME_SIZE = 0x1000

# ACPI 6.4 Table 18.27 Serialization Actions
BEGIN_WRITE, BEGIN_READ, BEGIN_CLEAR, END, SET_RECORD_OFFSET, EXECUTE, CHECK_BUSY, GET_STATUS = range(8)
GET_RECORD_ID, SET_RECORD_ID, GET_RECORD_COUNT, BEGIN_DUMMY_WRITE = 8, 9, 10, 11
GET_LOG_RANGE, GET_LOG_LENGTH, GET_LOG_ATTRIBUTES, GET_TIMINGS = 0xD, 0xE, 0xF, 0x10
# ACPI 6.4 Table 18.30 Command Status
SUCCESS, NOT_ENOUGH_SPACE, HW_NOT_AVAILABLE, FAILED, STORE_EMPTY, NOT_FOUND = range(6)
ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Entry:
    action: int
    instruction: int
    flags: int
    space: int
    bit_width: int
    bit_offset: int
    access_size: int
    address: int
    value: int
    mask: int


def entries(table: bytes) -> list[Entry]:
    count = struct.unpack_from("<I", table, 44)[0]
    return [Entry(*struct.unpack_from("<BBBxBBBBQQQ", table, 48 + 32 * i)) for i in range(count)]


class Apei:
    """What Linux's apei_exec_run does with the ERST's entries for one action."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.dev = machine.devices["erst"]
        self.table = machine.acpi.table("ERST")
        self.entries = entries(self.table)

    def _read(self, e: Entry) -> int:
        size = 1 << (e.access_size - 1)
        return self.dev.read(e.address - ERST_FRAME, size)

    def _write(self, e: Entry, value: int) -> None:
        size = 1 << (e.access_size - 1)
        self.dev.write(e.address - ERST_FRAME, size, value)

    def run(self, action: int, value: int = 0) -> int:
        ran = False
        for e in self.entries:
            if e.action != action:
                continue
            ran = True
            if e.instruction == 0:            # READ_REGISTER
                value = (self._read(e) >> e.bit_offset) & e.mask
            elif e.instruction == 1:          # READ_REGISTER_VALUE
                value = int(((self._read(e) >> e.bit_offset) & e.mask) == e.value)
            elif e.instruction == 2:          # WRITE_REGISTER
                self._write(e, (value & e.mask) << e.bit_offset)
            elif e.instruction == 3:          # WRITE_REGISTER_VALUE
                self._write(e, (e.value & e.mask) << e.bit_offset)
            else:
                raise AssertionError(f"instruction {e.instruction} is not one Linux's ERST uses here")
        assert ran, f"no entry for action {action:#x}"
        return value

    def operation(self, begin: int, offset: int | None = None, record_id: int | None = None) -> int:
        """One write/read/clear as erst.c does it; the command status."""
        self.run(begin)
        if offset is not None:
            self.run(SET_RECORD_OFFSET, offset)
        if record_id is not None:
            self.run(SET_RECORD_ID, record_id)
        self.run(EXECUTE)
        assert self.run(CHECK_BUSY) == 0
        status = self.run(GET_STATUS)
        self.run(END)
        return status

    def ids(self) -> Iterator[int]:
        while (rid := self.run(GET_RECORD_ID)) != ALL_ONES:
            yield rid


def cper(record_id: int, length: int = 256, fill: int = 0x3C) -> bytes:
    rec = bytearray([fill]) * length
    rec[0:4] = b"CPER"
    rec[6:10] = b"\xff\xff\xff\xff"
    rec[20:24] = struct.pack("<I", length)        # Record Length (UEFI Table N-1)
    rec[96:104] = struct.pack("<Q", record_id)    # Record ID
    return bytes(rec)


@pytest.fixture
def board() -> Iterator[tuple[Machine, Apei]]:
    m = Machine()
    try:
        yield m, Apei(m)
    finally:
        m.close()


def test_table_is_what_linux_checks(board: tuple[Machine, Apei]) -> None:
    m, apei = board
    table = m.acpi.table("ERST")
    length, revision = struct.unpack_from("<IB", table, 4)
    assert table[:4] == b"ERST" and length == len(table) and sum(table) % 256 == 0 and revision == 1
    # erst_check_table: header_length 48 (or 12), entries == (length - 48) / 32
    header_length, _, count = struct.unpack_from("<III", table, 36)
    assert header_length == 48 and count == (length - 48) // 32 == len(apei.entries)
    for e in apei.entries:
        # apei_check_gar: SystemMemory, a nonzero address, access size 1-4, width+offset fits
        assert e.space == 0 and e.flags == 0 and e.bit_offset == 0
        assert ERST_FRAME <= e.address < ERST_FRAME + ERST_FRAME_SIZE
        assert (e.bit_width, e.access_size, e.mask) in ((32, 3, 0xFFFF_FFFF), (64, 4, ALL_ONES))
        assert e.instruction in (0, 1, 2, 3)
    # Every action erst.c runs has entries (0xC is reserved).
    assert {e.action for e in apei.entries} == set(range(0x11)) - {0xC}


def test_exchange_buffer_is_reserved_ram_typed_for_linux(board: tuple[Machine, Apei]) -> None:
    m, apei = board
    base, length = apei.run(GET_LOG_RANGE), apei.run(GET_LOG_LENGTH)
    assert length == 8192                                  # QEMU's default record size
    assert apei.run(GET_LOG_ATTRIBUTES) == 0               # not NVRAM (erst.c would refuse to write)
    assert apei.run(GET_TIMINGS) == (100 << 32) | 10       # QEMU's max/nominal microseconds
    reserved_base, reserved_size = m.reserved_range
    assert reserved_base <= base and base + length <= reserved_base + reserved_size
    uefi = Uefi(m)
    kinds = {r.type for r in uefi.memmap.ranges if r.start < base + length and base < r.end}
    assert kinds == {MemoryType.ACPI_NVS}                   # not RAM Linux could hand out


def test_write_read_clear_through_the_exchange_buffer(board: tuple[Machine, Apei]) -> None:
    m, apei = board
    buf = apei.run(GET_LOG_RANGE)
    assert apei.run(GET_RECORD_COUNT) == 0
    assert list(apei.ids()) == []
    for rid, length in ((0x500000001, 300), (0x500000002, 8192)):
        m.mem.write(buf, cper(rid, length))
        assert apei.operation(BEGIN_WRITE, offset=0) == SUCCESS
    assert apei.run(GET_RECORD_COUNT) == 2
    assert list(apei.ids()) == [0x500000001, 0x500000002]
    # A record at an offset in the buffer (record_offset), overwriting by id.
    m.mem.write(buf + 0x100, cper(0x500000001, 400, fill=0x77))
    assert apei.operation(BEGIN_WRITE, offset=0x100) == SUCCESS
    assert apei.run(GET_RECORD_COUNT) == 2
    m.mem.write(buf, bytes(8192))
    assert apei.operation(BEGIN_READ, offset=0, record_id=0x500000001) == SUCCESS
    assert m.mem.read(buf, 400) == cper(0x500000001, 400, fill=0x77)
    assert apei.operation(BEGIN_READ, offset=0x40, record_id=0x500000002) == FAILED   # 8 KiB no longer fits
    assert apei.operation(BEGIN_CLEAR, record_id=0x500000001) == SUCCESS
    assert apei.operation(BEGIN_CLEAR, record_id=0x500000001) == NOT_FOUND
    assert apei.operation(BEGIN_READ, offset=0, record_id=0x500000001) == NOT_FOUND
    assert list(apei.ids()) == [0x500000002]
    assert apei.operation(BEGIN_DUMMY_WRITE) == SUCCESS
    assert m.persistent.erst.ids() == [0x500000002]         # the platform's store, kept across resets


def test_untrusted_values_get_status_codes(board: tuple[Machine, Apei]) -> None:
    m, apei = board
    buf = apei.run(GET_LOG_RANGE)
    assert apei.operation(BEGIN_READ, offset=0, record_id=5) == STORE_EMPTY
    bad_length = bytearray(cper(5))
    bad_length[20:24] = struct.pack("<I", 0xFFFF_FFFF)
    for record, offset in ((cper(0), 0), (cper(ALL_ONES), 0), (bytes(bad_length), 0),
                           (cper(5, 100), 0), (cper(5, 8192), 8), (cper(5), 8192 - 127), (cper(5), 0xFFFF_FFFF)):
        if offset < 8192:
            m.mem.write(buf, bytes(8192))
            m.mem.write(buf + offset, record[:8192 - offset])
        assert apei.operation(BEGIN_WRITE, offset=offset) == FAILED, (record[:8].hex(), offset)
    assert apei.run(GET_RECORD_COUNT) == 0
    m.mem.write(buf, cper(5))
    assert apei.operation(BEGIN_WRITE, offset=0) == SUCCESS
    assert apei.operation(BEGIN_READ, offset=0, record_id=ALL_ONES) == FAILED
    assert apei.operation(BEGIN_READ, offset=8192 - 127, record_id=5) == FAILED
    assert apei.operation(BEGIN_READ, offset=0, record_id=6) == NOT_FOUND
    assert apei.operation(BEGIN_CLEAR, record_id=0) == FAILED
    # Record id 0 reads "the first record" (ACPI 6.4 18.5.2.2).
    m.mem.write(buf, bytes(256))
    assert apei.operation(BEGIN_READ, offset=0, record_id=0) == SUCCESS
    assert m.mem.read(buf, 256) == cper(5)
    # EXECUTE without the magic value in VALUE does nothing; unknown actions do nothing.
    dev = m.devices["erst"]
    dev.write(0, 4, BEGIN_CLEAR)
    dev.write(8, 8, 5)
    dev.write(0, 4, SET_RECORD_ID)
    dev.write(8, 8, 0x9B)
    dev.write(0, 4, EXECUTE)
    for code in (0xC, 0x11, 0xFFFF_FFFF):
        dev.write(0, 4, code)
    assert m.persistent.erst.ids() == [5]


def test_full_store_is_not_enough_space(board: tuple[Machine, Apei]) -> None:
    m, apei = board
    buf = apei.run(GET_LOG_RANGE)
    capacity = m.persistent.erst.capacity
    for rid in range(1, capacity + 1):
        m.mem.write(buf, cper(rid))
        assert apei.operation(BEGIN_WRITE, offset=0) == SUCCESS
    m.mem.write(buf, cper(capacity + 1))
    assert apei.operation(BEGIN_WRITE, offset=0) == NOT_ENOUGH_SPACE
    assert apei.run(GET_RECORD_COUNT) == capacity


def test_value_register_halves(board: tuple[Machine, Apei]) -> None:
    m, _ = board
    dev = m.devices["erst"]
    dev.write(8, 8, 0x1122_3344_5566_7788)
    assert dev.read(8, 4) == 0x5566_7788 and dev.read(12, 4) == 0x1122_3344
    dev.write(12, 4, 0xAABB_CCDD)
    assert dev.read(8, 8) == 0xAABB_CCDD_5566_7788
    assert dev.read(0x10, 8) == 0 and dev.read(0xFF8, 8) == 0
    dev.write(0x800, 8, ALL_ONES)                          # outside the registers: ignored
    assert dev.read(8, 8) == 0xAABB_CCDD_5566_7788


def test_random_register_traffic_never_raises_and_stays_bounded(board: tuple[Machine, Apei]) -> None:
    """A hostile guest: any access at any offset, any action with any value, random bytes in
    the exchange buffer. The device answers (status codes), the store stays within bounds."""
    import random

    m, apei = board
    dev = m.devices["erst"]
    buf = apei.run(GET_LOG_RANGE)
    rng = random.Random(1234)
    for i in range(20000):
        if i % 500 == 0:
            m.mem.write(buf, cper(rng.randrange(1, 1 << 64), rng.choice((128, 129, 4096, 8192))))
        if i % 97 == 0:
            m.mem.write(buf + rng.randrange(8192), rng.randbytes(rng.randrange(1, 64))[:8192])
        offset, size = rng.choice(((0, 4), (8, 8), (8, 4), (12, 4), (rng.randrange(0x1000), rng.choice((1, 2, 4, 8)))))
        if rng.random() < 0.5:
            dev.write(offset, size, rng.choice((rng.randrange(0x12), 0x9C, rng.randrange(1 << 64), 0, ALL_ONES)))
        else:
            assert 0 <= dev.read(offset, size) < 1 << 64
        if i % 50 == 0:
            dev.write(8, 8, 0x9C)
            dev.write(0, 4, EXECUTE)
            assert apei.run(GET_STATUS) in range(6)
    store = m.persistent.erst
    assert len(store) <= store.capacity
    assert all(128 <= len(r) <= 8192 for r in store.records.values())


# QEMU hw/acpi/erst.c build_erst, entry by entry: (action, instruction, register, value);
# register A = ACTION (+0, 32 bits), V32/V64 = VALUE (+8) as 32/64 bits.
QEMU_ERST = [
    (0x0, 3, "A", 0x0), (0x1, 3, "A", 0x1), (0x2, 3, "A", 0x2), (0x3, 3, "A", 0x3),
    (0x4, 2, "V32", 0), (0x4, 3, "A", 0x4),
    (0x5, 3, "V32", 0x9C), (0x5, 3, "A", 0x5),
    (0x6, 3, "A", 0x6), (0x6, 1, "V32", 0x01),
    (0x7, 3, "A", 0x7), (0x7, 0, "V32", 0),
    (0x8, 3, "A", 0x8), (0x8, 0, "V64", 0),
    (0x9, 2, "V64", 0), (0x9, 3, "A", 0x9),
    (0xA, 3, "A", 0xA), (0xA, 0, "V32", 0),
    (0xB, 3, "A", 0xB),
    (0xD, 3, "A", 0xD), (0xD, 0, "V64", 0),
    (0xE, 3, "A", 0xE), (0xE, 0, "V64", 0),
    (0xF, 3, "A", 0xF), (0xF, 0, "V32", 0),
    (0x10, 3, "A", 0x10), (0x10, 0, "V64", 0),
]
REGISTERS = {"A": (0x0910_0000, 32), "V32": (0x0910_0008, 32), "V64": (0x0910_0008, 64)}


def test_entries_are_qemus_as_iasl_reads_them(board: tuple[Machine, Apei], tmp_path) -> None:
    import re

    from test_acpi import _iasl

    m, _ = board
    dsl = _iasl(tmp_path, "erst", m.acpi.table("ERST"))
    assert "Serialization Header Length : 00000030" in dsl
    assert f"Instruction Entry Count : {len(QEMU_ERST):08X}" in dsl
    fields = re.findall(r"Action : ([0-9A-F]{2}) \[[^\]]+\]\n.*Instruction : ([0-9A-F]{2}) \[[^\]]+\]\n"
                        r"(?:.*\n){5}.*Space ID : 00 \[SystemMemory\]\n.*Bit Width : ([0-9A-F]{2})\n"
                        r".*Bit Offset : 00\n.*Encoded Access Width : 0([34]) .*\n.*Address : ([0-9A-F]{16})\n\n"
                        r".*Value : ([0-9A-F]{16})\n.*Mask : ([0-9A-F]{16})", dsl)
    got = [(int(a, 16), int(i, 16), int(w, 16), int(acc), int(addr, 16), int(v, 16), int(mask, 16))
           for a, i, w, acc, addr, v, mask in fields]
    want = [(a, i, REGISTERS[r][1], 3 if REGISTERS[r][1] == 32 else 4, REGISTERS[r][0], v, (1 << REGISTERS[r][1]) - 1)
            for a, i, r, v in QEMU_ERST]
    assert got == want


# --- the device on its own (what mutation testing found unchecked) -----------------------

class Ram:
    """Guest memory holding the exchange buffer; `fail` makes accesses raise as poisoned RAM does."""

    def __init__(self, base: int, size: int) -> None:
        self.base, self.data, self.fail = base, bytearray(size), False

    def read(self, pa: int, size: int) -> bytes:
        if self.fail:
            from armras.errors import GuestAddressError
            raise GuestAddressError(f"read of poisoned page at {pa:#x}")
        return bytes(self.data[pa - self.base:pa - self.base + size])

    def write(self, pa: int, data: bytes) -> None:
        self.data[pa - self.base:pa - self.base + len(data)] = data


EXCHANGE = 0x4000_0000
BUFFER = 8192                   # the exchange buffer: one record of the store's record size


@pytest.fixture
def device() -> tuple[object, Ram]:
    from armras.devices.erst import ErstDevice
    from armras.ras.erst import ErstStore

    ram = Ram(EXCHANGE, BUFFER)
    return ErstDevice(ErstStore(), ram, EXCHANGE), ram


def _act(dev, action: int, value: int | None = None) -> int:     # type: ignore[no-untyped-def]
    if value is not None:
        dev.write(8, 8, value)
    dev.write(0, 4, action)
    return dev.read(8, 8)


def _status(dev) -> int:                                          # type: ignore[no-untyped-def]
    return _act(dev, GET_STATUS)


def test_reset_state_reads_zero_and_the_first_operations_need_no_setup(device) -> None:  # type: ignore[no-untyped-def]
    dev, ram = device
    assert [dev.read(off, 4) for off in (0, 4, 8, 12)] == [0, 0, 0, 0] and dev.read(8, 8) == 0
    assert _status(dev) == SUCCESS
    # A write with no SET_RECORD_OFFSET: the record is at the start of the buffer.
    ram.write(EXCHANGE, cper(0x77))
    _act(dev, BEGIN_WRITE)
    _act(dev, EXECUTE, 0x9C)
    assert _status(dev) == SUCCESS and dev.store.read(0x77) == cper(0x77)
    # A read with no SET_RECORD_IDENTIFIER reads the first record ("unspecified" id).
    from armras.devices.erst import ErstDevice
    fresh = ErstDevice(dev.store, ram, EXCHANGE)
    ram.write(EXCHANGE, bytes(256))
    _act(fresh, BEGIN_READ)
    _act(fresh, EXECUTE, 0x9C)
    assert _status(fresh) == SUCCESS and bytes(ram.data[:256]) == cper(0x77)
    # ... and the iteration of a fresh device starts at the first record.
    other = ErstDevice(dev.store, ram, EXCHANGE)
    dev.store.write(cper(0x78))
    assert [_act(other, GET_RECORD_ID) for _ in range(3)] == [0x77, 0x78, ALL_ONES]


def test_action_register_halves(device) -> None:  # type: ignore[no-untyped-def]
    dev, _ = device
    dev.write(0, 4, GET_RECORD_COUNT)
    assert (dev.read(0, 4), dev.read(4, 4), dev.read(0, 8)) == (GET_RECORD_COUNT, 0, GET_RECORD_COUNT)


def test_get_record_identifier_status_tells_an_empty_store(device) -> None:  # type: ignore[no-untyped-def]
    dev, _ = device
    assert _act(dev, GET_RECORD_ID) == ALL_ONES and _status(dev) == STORE_EMPTY
    dev.store.write(cper(5))
    assert _act(dev, GET_RECORD_ID) == 5 and _status(dev) == SUCCESS


def test_records_at_the_edges_of_the_exchange_buffer(device) -> None:  # type: ignore[no-untyped-def]
    dev, ram = device
    # A 128-byte record (just the CPER header) in the last 128 bytes of the buffer.
    ram.write(EXCHANGE + BUFFER - 128, cper(9, 128))
    _act(dev, BEGIN_WRITE)
    _act(dev, SET_RECORD_OFFSET, BUFFER - 128)
    _act(dev, EXECUTE, 0x9C)
    assert _status(dev) == SUCCESS and dev.store.read(9) == cper(9, 128)
    # Read back a 256-byte record into exactly the 256 bytes left at an offset.
    dev.store.write(cper(10, 256))
    ram.data[:] = bytes(BUFFER)
    _act(dev, BEGIN_READ)
    _act(dev, SET_RECORD_OFFSET, BUFFER - 256)
    _act(dev, SET_RECORD_ID, 10)
    _act(dev, EXECUTE, 0x9C)
    assert _status(dev) == SUCCESS
    assert bytes(ram.data[BUFFER - 256:]) == cper(10, 256) and bytes(ram.data[:BUFFER - 256]) == bytes(BUFFER - 256)
    # One byte further it does not fit.
    _act(dev, SET_RECORD_OFFSET, BUFFER - 255)
    _act(dev, EXECUTE, 0x9C)
    assert _status(dev) == FAILED


def test_an_exchange_buffer_that_faults_is_hw_not_available(device, caplog) -> None:  # type: ignore
    import logging

    caplog.set_level(logging.WARNING, "armras.devices.erst")
    dev, ram = device
    ram.fail = True
    _act(dev, BEGIN_WRITE)
    _act(dev, EXECUTE, 0x9C)
    assert _status(dev) == HW_NOT_AVAILABLE
    assert [r.getMessage() for r in caplog.records] == [
        f"ERST: exchange buffer access failed: read of poisoned page at {EXCHANGE + 20:#x}"]
