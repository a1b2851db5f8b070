"""UEFI runtime services as an OS calls them: through EFI_SYSTEM_TABLE.RuntimeServices.

A bare-metal guest calls GetTime/SetTime and the variable services with pointers into
scratch memory the test prepared, and stores every EFI_STATUS; the test checks the
statuses against UEFI 2.10 8.2/8.3, the bytes the firmware wrote, and the PL031's own
RTCDR register (GetTime and SetTime share its clock).
"""
from __future__ import annotations

import datetime
import json
import struct
import uuid
from pathlib import Path

import pytest

from armras.errors import ArmrasError
from armras.firmware.efivars import VariableStore
from armras.firmware.uefi import Uefi

ST_RUNTIME_SERVICES = 88           # EFI_SYSTEM_TABLE.RuntimeServices (UEFI 2.10 4.3.1)
# EFI_RUNTIME_SERVICES (4.5.1): the 24-byte header, then one pointer per service.
GET_TIME, SET_TIME = 24, 32
GET_VARIABLE, GET_NEXT_VARIABLE_NAME, SET_VARIABLE = 72, 80, 88
QUERY_VARIABLE_INFO = 128

SUCCESS = 0
INVALID_PARAMETER = (1 << 63) | 2
UNSUPPORTED = (1 << 63) | 3
BUFFER_TOO_SMALL = (1 << 63) | 5
DEVICE_ERROR = (1 << 63) | 7
WRITE_PROTECTED = (1 << 63) | 8
OUT_OF_RESOURCES = (1 << 63) | 9
NOT_FOUND = (1 << 63) | 14

NV, BS, RT, APPEND = 0x1, 0x2, 0x4, 0x40   # EFI_VARIABLE_* attributes (8.2.1)
NV_BS_RT = NV | BS | RT

# What the firmware defines (UEFI 2.10 3.3, Table 3-1: all BS|RT, read-only): name -> data.
GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c").bytes_le
FIRMWARE = {
    "OsIndicationsSupported": bytes(8),    # UINT64, no EFI_OS_INDICATIONS_* bit supported
    "PlatformLangCodes": b"en-US\0",        # ASCII, RFC 4646
    "LangCodes": b"eng\0",                  # ASCII, ISO 639-2
    "SecureBoot": b"\x00",                  # UINT8: not in Secure Boot mode
    "SetupMode": b"\x01",                   # UINT8: setup mode (no PK)
}

DATA = 0x4100_0000                 # what the test writes for the guest
RESULTS = 0x4200_0000              # one EFI_STATUS per call, 8 bytes each
PL031_RTCDR = 0x0901_0000          # QEMU virt's PL031, data register
VENDOR = uuid.UUID("3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01").bytes_le


def ucs2(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def efi_time(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
             nanos: int = 0, tz: int = 0x7FF, daylight: int = 0) -> bytes:
    """EFI_TIME (8.3.1): 16 bytes."""
    return struct.pack("<HBBBBBBIhBB", year, month, day, hour, minute, second, 0, nanos, tz, daylight, 0)


class Calls:
    """Runtime service calls for the guest: (table offset, x0..x4), results in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def call(self, offset: int, *args: int) -> int:
        setup = "\n".join(f" ldr x{i}, ={a:#x}" for i, a in enumerate(args))
        self.lines.append(f"""
 ldr x9, [x20, #{ST_RUNTIME_SERVICES}]
 ldr x9, [x9, #{offset}]
{setup}
 blr x9
 str x0, [x21, #{8 * self.n}]""")
        self.n += 1
        return self.n - 1

    def store(self, addr: int, value: int) -> None:
        """A 64-bit store by the guest between calls (e.g. resetting an IN OUT size)."""
        self.lines.append(f"""
 ldr x9, ={addr:#x}
 ldr x10, ={value:#x}
 str x10, [x9]""")

    def program(self) -> str:
        return """
 mov x20, x1
 ldr x3, =0x40400000
 mov sp, x3
 ldr x21, =""" + hex(RESULTS) + "".join(self.lines) + """
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .ltorg
"""


def run(board, calls: Calls, prepare, variables: VariableStore | None = None, **config):  # type: ignore[no-untyped-def]
    b = board(calls.program(), **config)
    m = b.machine
    uefi = Uefi(m, variables=variables or VariableStore())
    m.cpu.set_x(1, uefi.system_table)
    prepare(m.mem)
    assert b.run().status == 0, b.output
    return m, uefi, [m.mem.read_u64(RESULTS + 8 * i) for i in range(calls.n)]


def test_get_and_set_time_share_the_pl031_clock(board) -> None:  # type: ignore[no-untyped-def]
    t = DATA
    c = Calls()
    get1 = c.call(GET_TIME, t, t + 0x100)
    set_ok = c.call(SET_TIME, t + 0x200)
    get2 = c.call(GET_TIME, t + 0x300, 0)
    bad = [c.call(SET_TIME, t + 0x400 + 0x20 * i) for i in range(6)]
    beyond = c.call(SET_TIME, t + 0x500)
    null = c.call(GET_TIME, 0, 0)

    def prepare(mem):  # type: ignore[no-untyped-def]
        mem.write(t + 0x200, efi_time(2031, 7, 4, 12, 30, 15))
        for i, raw in enumerate([efi_time(2031, 13, 1), efi_time(2031, 2, 30), efi_time(2031, 1, 1, 24),
                                 efi_time(1899, 1, 1), efi_time(2031, 1, 1, nanos=10**9),
                                 efi_time(2031, 1, 1, tz=1441)]):
            mem.write(t + 0x400 + 0x20 * i, raw)
        mem.write(t + 0x500, efi_time(2200, 1, 1))          # past the PL031's 32-bit count

    m, _, st = run(board, c, prepare, deterministic=True)
    assert st[get1] == SUCCESS and st[set_ok] == SUCCESS and st[get2] == SUCCESS
    assert [st[i] for i in bad] == [INVALID_PARAMETER] * 6
    assert st[beyond] == DEVICE_ERROR and st[null] == INVALID_PARAMETER
    # --deterministic: the RTC starts at 2024-01-01T00:00:00 UTC (docs/design.md).
    year, month, day, hour, minute, _s, _p, _n, tz, _d, _p2 = struct.unpack("<HBBBBBBIhBB", m.mem.read(t, 16))
    assert (year, month, day, hour, minute) == (2024, 1, 1, 0, 0)
    resolution, accuracy, zero = struct.unpack("<IIB", m.mem.read(t + 0x100, 9))
    assert resolution == 1 and zero == 0                     # the PL031 counts whole seconds
    year, month, day, hour, minute, second = struct.unpack("<HBBBBB", m.mem.read(t + 0x300, 7))
    assert (year, month, day, hour, minute) == (2031, 7, 4, 12, 30) and second in (15, 16)
    set_to = int(datetime.datetime(2031, 7, 4, 12, 30, 15, tzinfo=datetime.timezone.utc).timestamp())
    assert set_to <= m.rtc.read(0, 4) <= set_to + 1          # the PL031's RTCDR moved with SetTime


def test_variable_services_status_codes(board) -> None:  # type: ignore[no-untyped-def]
    name, guid, data, size, attr, out = DATA, DATA + 0x100, DATA + 0x200, DATA + 0x300, DATA + 0x308, DATA + 0x400
    name2 = DATA + 0x800
    nextname, nextsize, nextguid = DATA + 0x1000, DATA + 0x1100, DATA + 0x1108
    qi = DATA + 0x1200
    c = Calls()
    missing = c.call(GET_VARIABLE, name, guid, attr, size, out)
    created = c.call(SET_VARIABLE, name, guid, NV_BS_RT, 5, data)
    probe = c.call(GET_VARIABLE, name, guid, attr, DATA + 0x310, 0)        # DataSize 0: size probe
    got = c.call(GET_VARIABLE, name, guid, attr, size, out)
    appended = c.call(SET_VARIABLE, name, guid, NV_BS_RT | APPEND, 3, data + 5)
    got2 = c.call(GET_VARIABLE, name, guid, 0, DATA + 0x318, out + 0x100)
    other_attrs = c.call(SET_VARIABLE, name, guid, BS, 1, data)              # attributes differ
    rt_without_bs = c.call(SET_VARIABLE, name2, guid, NV | RT, 1, data)
    auth = c.call(SET_VARIABLE, name2, guid, NV_BS_RT | 0x20, 1, data)       # time-based authenticated
    unknown_bits = c.call(SET_VARIABLE, name2, guid, NV_BS_RT | 0x1000, 1, data)
    huge = c.call(SET_VARIABLE, name2, guid, NV_BS_RT, 1 << 40, data)       # must not read or allocate 1 TiB
    null_data = c.call(SET_VARIABLE, name2, guid, NV_BS_RT, 4, 0)
    empty_name = c.call(SET_VARIABLE, DATA + 0x900, guid, NV_BS_RT, 1, data)
    unmapped = c.call(SET_VARIABLE, 0x7_0000_0000, guid, NV_BS_RT, 1, data)
    delete_missing = c.call(SET_VARIABLE, name2, guid, NV_BS_RT, 0, 0)
    # The firmware's own variables come first (defined at boot), then ArmrasTest, then no more.
    walk = []
    for _ in range(len(FIRMWARE) + 1):
        c.store(nextsize, 0x100)                 # the buffer's size again, as a caller must
        walk.append(c.call(GET_NEXT_VARIABLE_NAME, nextsize, nextname, nextguid))
    first = walk.pop()
    after = c.call(GET_NEXT_VARIABLE_NAME, nextsize, nextname, nextguid)   # size 22 from `first`
    query = c.call(QUERY_VARIABLE_INFO, NV_BS_RT, qi, qi + 8, qi + 16)
    deleted = c.call(SET_VARIABLE, name, guid, NV_BS_RT, 0, 0)
    gone = c.call(GET_VARIABLE, name, guid, attr, size, out)

    def prepare(mem):  # type: ignore[no-untyped-def]
        mem.write(name, ucs2("ArmrasTest"))
        mem.write(name2, ucs2("Other"))
        mem.write(DATA + 0x900, b"\0\0")
        mem.write(guid, VENDOR)
        mem.write(data, b"hello" + b"abc")
        mem.write_u64(size, 64)
        mem.write_u64(DATA + 0x310, 0)
        mem.write_u64(DATA + 0x318, 64)
        mem.write(nextname, b"\0\0")
        mem.write_u64(nextsize, 0x100)

    m, uefi, st = run(board, c, prepare)
    assert [st[i] for i in walk] == [SUCCESS] * len(walk)
    assert st[missing] == NOT_FOUND
    assert st[created] == SUCCESS
    assert st[probe] == BUFFER_TOO_SMALL and m.mem.read_u64(DATA + 0x310) == 5
    assert st[got] == SUCCESS and m.mem.read(out, 5) == b"hello" and m.mem.read_u64(size) == 5
    assert m.mem.read_u32(attr) == NV_BS_RT
    assert st[appended] == SUCCESS and st[got2] == SUCCESS and m.mem.read(out + 0x100, 8) == b"helloabc"
    assert st[other_attrs] == INVALID_PARAMETER
    assert st[rt_without_bs] == INVALID_PARAMETER
    assert st[auth] == UNSUPPORTED
    assert st[unknown_bits] == INVALID_PARAMETER
    assert st[huge] == INVALID_PARAMETER
    assert st[null_data] == INVALID_PARAMETER
    assert st[empty_name] == INVALID_PARAMETER
    assert st[unmapped] == INVALID_PARAMETER
    assert st[delete_missing] == NOT_FOUND
    assert st[first] == SUCCESS
    assert m.mem.read(nextname, 22) == ucs2("ArmrasTest") and m.mem.read(nextguid, 16) == VENDOR
    assert m.mem.read_u64(nextsize) == 22
    assert st[after] == NOT_FOUND                                          # the only variable
    assert st[query] == SUCCESS
    total, remaining, largest = (m.mem.read_u64(qi + 8 * i) for i in range(3))
    assert total > remaining > 0 and largest <= total
    firmware = sum(2 * (len(n) + 1) + len(d) for n, d in FIRMWARE.items())
    assert total - remaining == firmware + 22 + 8                          # names with their NUL + data
    assert st[deleted] == SUCCESS and st[gone] == NOT_FOUND


RAM_END = 0x6000_0000              # the board's default 512 MiB of RAM at 0x4000_0000 (QEMU virt's base)
AUTHENTICATED_WRITE, HARDWARE_ERROR = 0x10, 0x08


def test_hostile_arguments_get_the_spec_status_and_change_nothing(board) -> None:  # type: ignore[no-untyped-def]
    """Bad pointers, sizes, names and attributes a guest can pass (UEFI 2.10 8.2.1-8.2.4
    status codes): never an emulator error, no partial variable left behind."""
    name, guid, data, size, attr, out = DATA, DATA + 0x100, DATA + 0x200, DATA + 0x300, DATA + 0x308, DATA + 0x400
    long_name = DATA + 0x1_0000                  # 9 KiB of 'A' with no terminator
    straddle = DATA + 0x2_0ffe                   # "Pg" crossing a page boundary
    surrogate = DATA + 0x3_0000                  # a lone UTF-16 surrogate: not a CHAR16 string
    nextname, nextsize, nextguid = DATA + 0x4_0000, DATA + 0x4_0100, DATA + 0x4_0108
    global_guid, secure_boot = DATA + 0x5_0000, DATA + 0x5_0100
    qi = DATA + 0x6_0000
    bad = 0x7_0000_0000                          # outside guest memory
    c = Calls()
    created = c.call(SET_VARIABLE, name, guid, NV_BS_RT, 5, data)
    calls = {
        "get: name unmapped": (c.call(GET_VARIABLE, bad, guid, attr, size, out), INVALID_PARAMETER),
        "get: GUID runs off RAM": (c.call(GET_VARIABLE, name, RAM_END - 8, attr, size, out), INVALID_PARAMETER),
        "get: DataSize NULL": (c.call(GET_VARIABLE, name, guid, attr, 0, out), INVALID_PARAMETER),
        "get: DataSize huge, Data off RAM": (c.call(GET_VARIABLE, name, guid, attr, DATA + 0x310, RAM_END - 2),
                                             INVALID_PARAMETER),
        "get: name not terminated": (c.call(GET_VARIABLE, long_name, guid, attr, size, out), INVALID_PARAMETER),
        "get: name runs off RAM": (c.call(GET_VARIABLE, RAM_END - 4, guid, attr, size, out), INVALID_PARAMETER),
        "get: name across a page": (c.call(GET_VARIABLE, straddle, guid, attr, size, out), NOT_FOUND),
        "get: lone surrogate": (c.call(GET_VARIABLE, surrogate, guid, attr, size, out), INVALID_PARAMETER),
        "next: size 1": (c.call(GET_NEXT_VARIABLE_NAME, DATA + 0x318, nextname, nextguid), INVALID_PARAMETER),
        "next: not a variable": (c.call(GET_NEXT_VARIABLE_NAME, nextsize, DATA + 0x4_0200, nextguid),
                                 INVALID_PARAMETER),
        "next: not terminated in size": (c.call(GET_NEXT_VARIABLE_NAME, DATA + 0x320, long_name, nextguid),
                                         INVALID_PARAMETER),
        "next: GUID unmapped": (c.call(GET_NEXT_VARIABLE_NAME, nextsize, nextname, bad), INVALID_PARAMETER),
        "next: size huge": (c.call(GET_NEXT_VARIABLE_NAME, nextsize, nextname, nextguid), SUCCESS),
        "set: attributes over 32 bits": (c.call(SET_VARIABLE, name, guid, (1 << 32) | NV_BS_RT, 1, data),
                                         INVALID_PARAMETER),
        "set: all attribute bits": (c.call(SET_VARIABLE, name, guid, 0xFFFF_FFFF, 1, data), INVALID_PARAMETER),
        "set: HR without NV": (c.call(SET_VARIABLE, DATA + 0x4_0200, guid, BS | RT | HARDWARE_ERROR, 1, data),
                               INVALID_PARAMETER),
        "set: deprecated authenticated write": (c.call(SET_VARIABLE, DATA + 0x4_0200, guid,
                                                       NV_BS_RT | AUTHENTICATED_WRITE, 1, data), UNSUPPORTED),
        "set: 8 KiB + 1": (c.call(SET_VARIABLE, DATA + 0x4_0200, guid, NV_BS_RT, 0x2001, data), INVALID_PARAMETER),
        "set: size 2^64-1": (c.call(SET_VARIABLE, DATA + 0x4_0200, guid, NV_BS_RT, (1 << 64) - 1, data),
                             INVALID_PARAMETER),
        "set: data runs off RAM": (c.call(SET_VARIABLE, DATA + 0x4_0200, guid, NV_BS_RT, 0x100, RAM_END - 0x80),
                                   INVALID_PARAMETER),
        "set: name not terminated": (c.call(SET_VARIABLE, long_name, guid, NV_BS_RT, 1, data), INVALID_PARAMETER),
        "set: lone surrogate": (c.call(SET_VARIABLE, surrogate, guid, NV_BS_RT, 1, data), INVALID_PARAMETER),
        "set: firmware's SecureBoot": (c.call(SET_VARIABLE, secure_boot, global_guid, BS | RT, 1, data),
                                       WRITE_PROTECTED),
        "set: delete SecureBoot": (c.call(SET_VARIABLE, secure_boot, global_guid, 0, 0, 0), WRITE_PROTECTED),
        "left: no partial variable": (c.call(GET_VARIABLE, DATA + 0x4_0200, guid, attr, size, out), NOT_FOUND),
        "query: attributes 0": (c.call(QUERY_VARIABLE_INFO, 0, qi, qi + 8, qi + 16), INVALID_PARAMETER),
        "query: over 32 bits": (c.call(QUERY_VARIABLE_INFO, (1 << 32) | NV_BS_RT, qi, qi + 8, qi + 16),
                                INVALID_PARAMETER),
        "query: NULL pointer": (c.call(QUERY_VARIABLE_INFO, NV_BS_RT, qi, 0, qi + 16), INVALID_PARAMETER),
        "query: pointer off RAM": (c.call(QUERY_VARIABLE_INFO, NV_BS_RT, qi, qi + 8, RAM_END - 4),
                                   INVALID_PARAMETER),
        "query: authenticated": (c.call(QUERY_VARIABLE_INFO, NV_BS_RT | 0x20, qi, qi + 8, qi + 16), UNSUPPORTED),
    }
    still = c.call(GET_VARIABLE, name, guid, attr, size, out)

    def prepare(mem):  # type: ignore[no-untyped-def]
        assert mem.contains(RAM_END - 1) and not mem.contains(RAM_END)
        mem.write(name, ucs2("ArmrasTest"))
        mem.write(guid, VENDOR)
        mem.write(data, b"hello")
        mem.write_u64(size, 64)
        mem.write_u64(DATA + 0x310, (1 << 64) - 1)
        mem.write_u64(DATA + 0x318, 1)
        mem.write_u64(DATA + 0x320, 4)
        mem.write(long_name, b"A\0" * 0x1200)
        mem.write(straddle, ucs2("Pg"))
        mem.write(surrogate, b"\x00\xd8\0\0")
        mem.write(RAM_END - 4, b"A\0B\0")
        mem.write(nextname, b"\0\0")
        mem.write_u64(nextsize, (1 << 64) - 1)
        mem.write(DATA + 0x4_0200, ucs2("Nobody"))
        mem.write(global_guid, GLOBAL_VARIABLE)
        mem.write(secure_boot, ucs2("SecureBoot"))

    m, uefi, st = run(board, c, prepare)
    assert st[created] == SUCCESS
    got = {what: st[i] for what, (i, _) in calls.items()}
    assert got == {what: want for what, (_, want) in calls.items()}
    # GetVariable told the size it needs before refusing the bad Data pointer (8.2.1).
    assert m.mem.read_u64(DATA + 0x310) == 5
    # GetNextVariableName with a huge size: the first variable, the firmware's.
    assert m.mem.read(nextname, 46) == ucs2("OsIndicationsSupported") and m.mem.read_u64(nextsize) == 46
    assert st[still] == SUCCESS and m.mem.read(out, 5) == b"hello"
    assert uefi.variables.get(GLOBAL_VARIABLE, "SecureBoot").data == b"\x00"


def test_firmware_variables_as_the_spec_defines_them(board) -> None:  # type: ignore[no-untyped-def]
    """SecureBoot, SetupMode, ... (UEFI 2.10 3.3): BS|RT, volatile, the values in FIRMWARE."""
    global_guid = DATA
    c = Calls()
    slots = {}
    for i, var in enumerate(FIRMWARE):
        base = DATA + 0x1000 * (i + 1)
        slots[var] = (base, c.call(GET_VARIABLE, base, global_guid, base + 0x200, base + 0x208, base + 0x300))

    def prepare(mem):  # type: ignore[no-untyped-def]
        mem.write(global_guid, GLOBAL_VARIABLE)
        for var, (base, _) in slots.items():
            mem.write(base, ucs2(var))
            mem.write_u64(base + 0x208, 0x100)

    m, _, st = run(board, c, prepare)
    for var, (base, call) in slots.items():
        n = m.mem.read_u64(base + 0x208)
        assert (var, st[call], m.mem.read_u32(base + 0x200), m.mem.read(base + 0x300, n)) == \
            (var, SUCCESS, BS | RT, FIRMWARE[var])


def test_volatile_variables_end_at_a_reset_and_the_firmware_defines_its_own_again() -> None:
    store = VariableStore()
    store.set(VENDOR, "Volatile", BS | RT, b"v", runtime=True)
    store.set(VENDOR, "Kept", NV_BS_RT, b"k", runtime=True)
    store.define(GLOBAL_VARIABLE, "SecureBoot", BS | RT, b"\0")
    with pytest.raises(Exception) as locked:
        store.set(GLOBAL_VARIABLE, "SecureBoot", BS | RT, b"\1", runtime=True)
    assert getattr(locked.value, "status") == "WRITE_PROTECTED"
    store.reset()
    assert list(store.variables) == [(VENDOR, "Kept")]
    store.set(GLOBAL_VARIABLE, "SecureBoot", BS | RT, b"\1", runtime=True)   # no longer the firmware's


def test_get_next_variable_name_reports_the_size_it_needs(board) -> None:  # type: ignore[no-untyped-def]
    nextname, nextsize, nextguid = DATA, DATA + 0x100, DATA + 0x108
    c = Calls()
    small = c.call(GET_NEXT_VARIABLE_NAME, nextsize, nextname, nextguid)
    store = VariableStore()
    store.set(VENDOR, "LongVariableName", NV_BS_RT, b"x", runtime=False)

    def prepare(mem):  # type: ignore[no-untyped-def]
        mem.write(nextname, b"\0\0")
        mem.write_u64(nextsize, 4)

    m, _, st = run(board, c, prepare, variables=store)
    assert st[small] == BUFFER_TOO_SMALL
    assert m.mem.read_u64(nextsize) == 2 * (len("LongVariableName") + 1)


def test_store_is_bounded() -> None:
    store = VariableStore()
    chunk = b"\xAA" * 0x1000
    with pytest.raises(Exception) as too_big:
        store.set(VENDOR, "Big", NV_BS_RT, b"\0" * 0x4000, runtime=False)
    assert getattr(too_big.value, "status") == "INVALID_PARAMETER"     # over the per-variable limit
    n = 0
    with pytest.raises(Exception) as full:
        while n < 1000:
            store.set(VENDOR, f"V{n}", NV_BS_RT, chunk, runtime=False)
            n += 1
    assert getattr(full.value, "status") == "OUT_OF_RESOURCES"
    assert 8 <= n < 1000 and store.used() <= 0x10000


def test_runtime_hides_boot_services_variables() -> None:
    store = VariableStore()
    store.set(VENDOR, "BootOnly", BS, b"1", runtime=False)
    store.set(VENDOR, "Both", BS | RT, b"2", runtime=False)
    assert store.get(VENDOR, "BootOnly").data == b"1"
    with pytest.raises(Exception) as hidden:
        store.get(VENDOR, "BootOnly", runtime=True)
    assert getattr(hidden.value, "status") == "NOT_FOUND"
    assert store.next_name(VENDOR, "", runtime=True) == (VENDOR, "Both")
    with pytest.raises(Exception) as boot_only:
        store.set(VENDOR, "New", BS, b"3", runtime=True)
    assert getattr(boot_only.value, "status") == "INVALID_PARAMETER"


# ------------------------------------------------------------------ --efivars FILE


def test_file_store_round_trip_and_only_non_volatile_saved(tmp_path: Path) -> None:
    path = tmp_path / "vars.json"
    store = VariableStore.open(path)
    assert not path.exists()
    store.set(VENDOR, "Kept", NV_BS_RT, b"\x00\x01\x02", runtime=True)
    store.set(VENDOR, "Volatile", BS | RT, b"gone", runtime=True)
    doc = json.loads(path.read_text())
    assert doc["format"] == "armras-efivars"
    assert [(v["name"], v["guid"], v["attributes"]) for v in doc["variables"]] == \
        [("Kept", "3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01", NV_BS_RT)]
    again = VariableStore.open(path)
    assert again.get(VENDOR, "Kept").data == b"\x00\x01\x02"
    with pytest.raises(Exception):
        again.get(VENDOR, "Volatile")
    assert [p.name for p in tmp_path.iterdir()] == ["vars.json"]        # no temporary left behind


@pytest.mark.parametrize("content", [
    "my notes, not a variable store\n",
    json.dumps({"variables": []}),
    json.dumps({"format": "armras-efivars", "version": 99, "variables": []}),
    json.dumps({"format": "armras-efivars", "version": 1, "variables": [
        {"guid": "3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01", "name": "X", "attributes": 7, "data": "!!"}]}),
    json.dumps({"format": "armras-efivars", "version": 1, "variables": [
        {"guid": "3b6a9d1e-5b7c-4c3a-9a63-6f1d6c1f0a01", "name": "X", "attributes": 7,
         "data": "QUFB" * 0x2000}]}),
])
def test_a_file_that_is_not_ours_is_refused_and_kept(tmp_path: Path, content: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(content)
    with pytest.raises(ArmrasError, match="not an armras variable store"):
        VariableStore.open(path)
    assert path.read_text() == content


def test_cli_refuses_a_foreign_efivars_file_with_one_line(tmp_path: Path, guest_images: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "important.txt"
    path.write_text("do not touch\n")
    proc = subprocess.run([sys.executable, "-m", "armras", "run", str(guest_images / "exc_test.elf"),
                           "--efivars", str(path), "--timeout", "30"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not an armras variable store" in lines[0], proc.stderr
    assert path.read_text() == "do not touch\n"


# ------------------------------------------------------------------ EFI_RNG_PROTOCOL

ST_BOOT_SERVICES = 96
LOCATE_PROTOCOL = 24 + 8 * 37        # EFI_BOOT_SERVICES.LocateProtocol (UEFI 2.10 4.4.1)
RNG_PROTOCOL_GUID = uuid.UUID("3152bca5-eade-433d-862e-c01cdc291f44").bytes_le   # 37.5.1
RNG_ALGORITHM_RAW = uuid.UUID("e43176d7-b6e8-4827-b784-7ffdc4b68561").bytes_le
RNG_ALGORITHM_SP800_90_CTR_256 = uuid.UUID("44f0de6e-4d8c-4045-a8c7-4dd168856b9e").bytes_le


def _rng_program() -> str:
    """LocateProtocol(RNG) -> GetInfo, GetRNG(NULL, 64), GetRNG(RAW, 32), GetRNG(CTR, 8),
    GetRNG(NULL, 0), GetRNG(NULL, 1 GiB): statuses at RESULTS, interface at RESULTS+0x100."""
    def rng_call(slot: int, member: int, args: str) -> str:
        return f"""
 ldr x0, [x21, #0x100]
 ldr x9, [x0, #{8 * member}]
{args}
 blr x9
 str x0, [x21, #{8 * slot}]"""
    return """
 mov x20, x1
 ldr x3, =0x40400000
 mov sp, x3
 ldr x21, =""" + hex(RESULTS) + f"""
 ldr x9, [x20, #{ST_BOOT_SERVICES}]
 ldr x9, [x9, #{LOCATE_PROTOCOL}]
 ldr x0, ={DATA:#x}
 mov x1, #0
 add x2, x21, #0x100
 blr x9
 str x0, [x21, #0]""" + \
        rng_call(1, 0, f" ldr x1, ={DATA + 0x100:#x}\n ldr x2, ={DATA + 0x200:#x}") + \
        rng_call(2, 1, f" mov x1, #0\n mov x2, #64\n ldr x3, ={DATA + 0x1000:#x}") + \
        rng_call(3, 1, f" ldr x1, ={DATA + 0x10:#x}\n mov x2, #32\n ldr x3, ={DATA + 0x2000:#x}") + \
        rng_call(4, 1, f" ldr x1, ={DATA + 0x20:#x}\n mov x2, #8\n ldr x3, ={DATA + 0x3000:#x}") + \
        rng_call(5, 1, f" mov x1, #0\n mov x2, #0\n ldr x3, ={DATA + 0x3000:#x}") + \
        rng_call(6, 1, f" mov x1, #0\n ldr x2, =0x40000000\n ldr x3, ={DATA + 0x3000:#x}") + """
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .ltorg
"""


def _rng_run(board, seed):  # type: ignore[no-untyped-def]
    b = board(_rng_program())
    m = b.machine
    uefi = Uefi(m, rng_seed=seed)
    m.cpu.set_x(1, uefi.system_table)
    m.mem.write(DATA, RNG_PROTOCOL_GUID)
    m.mem.write(DATA + 0x10, RNG_ALGORITHM_RAW)
    m.mem.write(DATA + 0x20, RNG_ALGORITHM_SP800_90_CTR_256)
    m.mem.write_u64(DATA + 0x100, 64)
    assert b.run().status == 0, b.output
    st = [m.mem.read_u64(RESULTS + 8 * i) for i in range(7)]
    return m, st, m.mem.read(DATA + 0x1000, 64), m.mem.read(DATA + 0x2000, 32)


def test_rng_protocol(board) -> None:  # type: ignore[no-untyped-def]
    m, st, bytes64, raw32 = _rng_run(board, 1234)
    assert st[0] == SUCCESS                                   # LocateProtocol found it
    assert st[1] == SUCCESS and m.mem.read_u64(DATA + 0x100) == 16
    assert m.mem.read(DATA + 0x200, 16) == RNG_ALGORITHM_RAW  # the one algorithm GetInfo lists
    assert st[2] == SUCCESS and st[3] == SUCCESS
    assert st[4] == UNSUPPORTED                               # an algorithm it does not implement
    assert st[5] == INVALID_PARAMETER                         # RNGValueLength 0
    assert st[6] == INVALID_PARAMETER                         # 1 GiB: beyond guest RAM, nothing written
    assert bytes64 != bytes(64) and raw32 != bytes(32) and bytes64[:32] != raw32
    # A fixed seed (--deterministic) gives the same bytes every run; another seed others.
    assert _rng_run(board, 1234)[2:] == (bytes64, raw32)
    assert _rng_run(board, 4321)[2] != bytes64


RESET_SYSTEM = 104                 # EFI_RUNTIME_SERVICES.ResetSystem (4.5.1)
EFI_RESET_SHUTDOWN = 2             # EFI_RESET_TYPE (8.5.1)


def test_reset_system_shutdown_powers_the_board_off_with_its_status(board) -> None:  # type: ignore[no-untyped-def]
    c = Calls()
    c.call(RESET_SYSTEM, EFI_RESET_SHUTDOWN, 0x2A, 0, 0)    # does not return
    c.lines.append("\n ldr x0, =0x84000008\n mov x1, #1\n hvc #0")  # would power off with 1 instead
    b = board(c.program())
    m = b.machine
    uefi = Uefi(m, variables=VariableStore())
    m.cpu.set_x(1, uefi.system_table)
    assert b.run().status == 0x2A, b.output
