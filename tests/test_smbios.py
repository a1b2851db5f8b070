"""SMBIOS 3.0 tables in guest memory, read as an OS does: EFI configuration table
(SMBIOS3_TABLE_GUID) -> `_SM3_` entry point -> structure table, each field at its
DMTF DSP0134 3.3.0 offset; then the same bytes through `dmidecode --from-dump`.
"""
from __future__ import annotations

import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require_tool
from armras.firmware.uefi import Uefi

SMBIOS3_TABLE_GUID = uuid.UUID("f2fd1544-9794-4a2c-992e-e5bbcf20e394").bytes_le   # UEFI 2.10 4.6.1
ST_CONFIG_COUNT, ST_CONFIG_TABLE = 104, 112                                      # EFI_SYSTEM_TABLE
MiB = 1 << 20


@dataclass
class Structure:
    type: int
    handle: int
    formatted: bytes          # the whole formatted area, header included (offsets as in DSP0134)
    strings: list[str]

    def u8(self, off: int) -> int:
        return self.formatted[off]

    def u16(self, off: int) -> int:
        return struct.unpack_from("<H", self.formatted, off)[0]

    def u32(self, off: int) -> int:
        return struct.unpack_from("<I", self.formatted, off)[0]

    def u64(self, off: int) -> int:
        return struct.unpack_from("<Q", self.formatted, off)[0]

    def string(self, off: int) -> str:
        n = self.u8(off)
        return "" if n == 0 else self.strings[n - 1]


def walk(table: bytes) -> list[Structure]:
    """DSP0134 6.1.2/6.1.3: header (type, length, handle), formatted area, string set."""
    out, off = [], 0
    while off < len(table):
        stype, length, handle = struct.unpack_from("<BBH", table, off)
        assert length >= 4
        formatted = table[off:off + length]
        end = table.index(b"\0\0", off + length)             # the string set ends with a double NUL
        raw = table[off + length:end]
        strings = [s.decode() for s in raw.split(b"\0")] if raw else []
        out.append(Structure(stype, handle, formatted, strings))
        off = end + 2
        if stype == 127:
            break
    assert off == len(table), "bytes after the End-of-Table structure"
    return out


@pytest.fixture
def smbios(board):  # type: ignore[no-untyped-def]
    m = board(" b .\n", cpus=2).machine
    uefi = Uefi(m)
    st = m.mem.read(uefi.system_table, 120)
    n, tables = struct.unpack_from("<QQ", st, ST_CONFIG_COUNT)
    entries = [m.mem.read(tables + 24 * i, 24) for i in range(n)]
    entry_point = next(struct.unpack_from("<Q", e, 16)[0] for e in entries if e[:16] == SMBIOS3_TABLE_GUID)
    ep = m.mem.read(entry_point, 24)
    size, address = struct.unpack_from("<IQ", ep, 12)
    return m, ep, m.mem.read(address, size)


def test_entry_point(smbios) -> None:  # type: ignore[no-untyped-def]
    """DSP0134 5.2.2, SMBIOS 3.0 (64-bit) entry point."""
    _, ep, table = smbios
    assert ep[:5] == b"_SM3_"
    assert sum(ep) % 256 == 0
    assert ep[6] == 0x18                              # entry point length
    assert (ep[7], ep[8], ep[9]) == (3, 0, 0)         # SMBIOS 3.0.0
    assert ep[10] == 1                                # entry point revision: 3.0 layout
    assert len(table) == struct.unpack_from("<I", ep, 12)[0]


def test_structures_field_by_field(smbios) -> None:  # type: ignore[no-untyped-def]
    m, _, table = smbios
    structs = walk(table)
    by_type: dict[int, list[Structure]] = {}
    for s in structs:
        by_type.setdefault(s.type, []).append(s)
    assert len({s.handle for s in structs}) == len(structs), "handles must be unique"
    assert structs[-1].type == 127 and len(structs[-1].formatted) == 4
    for t in (0, 1, 16, 17, 19, 32):
        assert len(by_type[t]) == 1, t

    bios = by_type[0][0]                              # 7.1
    assert len(bios.formatted) >= 0x18
    assert bios.string(0x04) and bios.string(0x05)    # vendor, version
    month, day, year = bios.string(0x08).split("/")   # mm/dd/yyyy
    assert len(month) == 2 and len(day) == 2 and len(year) == 4
    assert bios.u8(0x13) & 1 << 3                     # extension byte 2: UEFI is supported
    assert bios.u8(0x13) & 1 << 4                     # ... a virtual machine

    system = by_type[1][0]                            # 7.2
    assert len(system.formatted) == 0x1B
    assert system.string(0x04) and system.string(0x05)   # manufacturer, product name

    cpus = by_type[4]                                 # 7.5, one per CPU
    assert len(cpus) == 2
    for cpu in cpus:
        assert len(cpu.formatted) == 0x30
        assert cpu.u8(0x05) == 3                      # central processor
        assert cpu.u8(0x06) == 0xFE and cpu.u16(0x28) == 0x101   # family: see family 2, ARMv8
        assert cpu.u32(0x08) == m.cpu.sysreg((3, 0, 0, 0, 0))    # Processor ID: MIDR_EL1
        assert cpu.u8(0x18) == 0x41                   # populated, enabled
        assert cpu.u16(0x26) & 1 << 2                 # 64-bit capable

    array = by_type[16][0]                            # 7.17
    assert array.u8(0x05) == 3                        # system memory
    assert array.u32(0x07) == 0x8000_0000 and array.u64(0x0F) == m.ram.size
    assert array.u16(0x0D) == 1                       # number of memory devices

    dimm = by_type[17][0]                             # 7.18
    assert len(dimm.formatted) >= 0x28
    assert dimm.u16(0x04) == array.handle             # Physical Memory Array handle
    assert dimm.u16(0x0C) == m.ram.size // MiB        # size in MiB (bit 15 clear)
    assert dimm.string(0x10) and dimm.string(0x11)    # device and bank locators: Linux's DIMM name

    mapped = by_type[19][0]                           # 7.20
    assert mapped.u32(0x04) == m.ram.base // 1024
    assert mapped.u32(0x08) == (m.ram.base + m.ram.size) // 1024 - 1
    assert mapped.u16(0x0C) == array.handle

    boot = by_type[32][0]                             # 7.33
    assert boot.formatted[4:10] == bytes(6) and boot.u8(0x0A) == 0   # no errors detected


def test_dmidecode_reads_the_tables(smbios, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dmidecode = require_tool("dmidecode", "apt-get install dmidecode")
    _, ep, table = smbios
    # dmidecode's dump format: the entry point at offset 0 pointing at the table at 32.
    ep = bytearray(ep)
    ep[16:24] = struct.pack("<Q", 32)
    ep[5] = 0
    ep[5] = -sum(ep) & 0xFF
    dump = tmp_path / "smbios.bin"
    dump.write_bytes(bytes(ep).ljust(32, b"\0") + table)
    proc = subprocess.run([dmidecode, "--from-dump", str(dump)], capture_output=True, text=True, check=True)
    out = proc.stdout
    assert "SMBIOS 3.0.0 present." in out
    assert "Invalid" not in out and "wrong" not in out.lower() and proc.stderr == ""
    for line in ["BIOS Information", "UEFI is supported", "System is a virtual machine",
                 "System Information", "Manufacturer: armras",
                 "Processor Information", "Family: ARMv8", "Status: Populated, Enabled",
                 "Physical Memory Array", "Error Correction Type: Multi-bit ECC", "Number Of Devices: 1",
                 "Memory Device", "Size: 512 MB", "Locator: DIMM 0", "Bank Locator: BANK 0",
                 "Memory Array Mapped Address", "Starting Address: 0x00040000000",
                 "Ending Address: 0x0005FFFFFFF", "Range Size: 512 MB",
                 "System Boot Information", "Status: No errors detected", "End Of Table"]:
        assert f"\t{line}" in out or f"\n{line}\n" in out, line
    assert out.count("Processor Information") == 2
