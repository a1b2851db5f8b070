"""SMBIOS 3.0 tables: what Linux's DMI layer reads (DMTF DSP0134 3.3.0).

The 64-bit entry point (`_SM3_`, DSP0134 5.2.2) is published through the EFI
configuration table (SMBIOS3_TABLE_GUID); the structure table it points at holds
one structure of each type below, each a formatted area (header: type, length,
handle) followed by its string set (numbered from 1, each NUL-terminated, the set
ending with an extra NUL). Linux prints `DMI: <sys_vendor> <product_name>, BIOS
<bios_version> <bios_date>` from types 1 and 0, fills /sys/class/dmi/id/, and names
the DIMM of a memory error from type 17 (`dmi_memdev_name`, used by CPER's
"DIMM location" line when the memory section carries a module handle).

Values follow QEMU's hw/smbios for `-M virt` where the spec leaves a choice.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# --- 64-bit entry point (5.2.2) ---
SM3_ANCHOR = b"_SM3_"
SM3_ENTRY_POINT_LENGTH = 0x18
SM3_CHECKSUM_OFFSET = 5
SMBIOS_MAJOR = 3
SMBIOS_MINOR = 0
SMBIOS_DOCREV = 0
SM3_ENTRY_POINT_REVISION = 1     # the 3.0 entry point layout
SM3_FORMAT = "<5sBBBBBBBIQ"

# --- structure types (6.1.2 / 7) ---
TYPE_BIOS = 0
TYPE_SYSTEM = 1
TYPE_PROCESSOR = 4
TYPE_PHYS_MEM_ARRAY = 16
TYPE_MEMORY_DEVICE = 17
TYPE_MEM_ARRAY_MAPPED_ADDR = 19
TYPE_SYSTEM_BOOT = 32
TYPE_END = 127
HEADER_FORMAT = "<BBH"

# Handles: one per structure, fixed so a CPER module handle can name the DIMM.
HANDLE_BIOS = 0x0000
HANDLE_SYSTEM = 0x0100
HANDLE_PROCESSOR_BASE = 0x0400
HANDLE_MEM_ARRAY = 0x1000
HANDLE_MEMORY_DEVICE = 0x1100     # the one DIMM
HANDLE_MEM_ARRAY_MAPPED = 0x1300
HANDLE_SYSTEM_BOOT = 0x2000
HANDLE_END = 0xFEFF
HANDLE_NONE = 0xFFFF              # "no structure" in a handle field
ERROR_INFO_NOT_PROVIDED = 0xFFFE  # 7.17.1 / 7.18.1 Memory Error Information Handle

# --- type 0 BIOS Information (7.1), 3.1+ length 0x1A ---
BIOS_LENGTH = 0x1A
BIOS_CHAR_NOT_SUPPORTED = 1 << 3            # 7.1.1: "BIOS Characteristics are not supported"
BIOS_CHAR_EXT2_UEFI = 1 << 3                # 7.1.2.2 byte 2 bit 3: UEFI is supported
BIOS_CHAR_EXT2_VM = 1 << 4                  # byte 2 bit 4: SMBIOS table describes a virtual machine
BIOS_ROM_SIZE_NONE = 0                      # no physical ROM (extended size 0)

# --- type 1 System Information (7.2), 2.4+ length 0x1B ---
SYSTEM_LENGTH = 0x1B
WAKEUP_POWER_SWITCH = 0x06

# --- type 4 Processor Information (7.5), 3.0+ length 0x30 ---
PROCESSOR_LENGTH = 0x30
PROCESSOR_TYPE_CENTRAL = 0x03
PROCESSOR_FAMILY_USE_FAMILY2 = 0xFE
PROCESSOR_FAMILY2_ARMV8 = 0x0101
PROCESSOR_STATUS_POPULATED_ENABLED = 0x41   # bit 6 socket populated, 1 = CPU enabled
PROCESSOR_UPGRADE_OTHER = 0x01
PROCESSOR_CHAR_64BIT = 1 << 2

# --- type 16 Physical Memory Array (7.17), 2.7+ length 0x17 ---
MEM_ARRAY_LENGTH = 0x17
MEM_ARRAY_LOCATION_SYSTEM_BOARD = 0x03
MEM_ARRAY_USE_SYSTEM = 0x03
MEM_ARRAY_ECC_MULTI_BIT = 0x06
MEM_ARRAY_CAPACITY_USE_EXTENDED = 0x8000_0000

# --- type 17 Memory Device (7.18), 2.8+ length 0x28 ---
MEMORY_DEVICE_LENGTH = 0x28
MEMORY_SIZE_USE_EXTENDED = 0x7FFF           # Size field: see Extended Size (MiB)
MEMORY_FORM_FACTOR_DIMM = 0x09
MEMORY_TYPE_DDR4 = 0x1A
MEMORY_TYPE_DETAIL_SYNCHRONOUS = 1 << 7
MEMORY_TOTAL_WIDTH_ECC = 72
MEMORY_DATA_WIDTH = 64

# --- type 19 Memory Array Mapped Address (7.20), 2.7+ length 0x1F ---
MEM_MAPPED_LENGTH = 0x1F
MEM_MAPPED_USE_EXTENDED = 0xFFFF_FFFF

# --- type 32 System Boot Information (7.33) ---
SYSTEM_BOOT_LENGTH = 0x0B
BOOT_STATUS_NO_ERRORS = 0

END_LENGTH = 4

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class SmbiosPlatform:
    """What the tables describe; the strings are what Linux shows under /sys/class/dmi/id/."""

    ram_base: int
    ram_size: int
    cpus: int
    midr: int
    bios_vendor: str = "armras"
    bios_version: str = "1.0"
    bios_date: str = "01/01/2024"          # mm/dd/yyyy (7.1)
    bios_major: int = 1
    bios_minor: int = 0
    sys_vendor: str = "armras"
    product_name: str = "armras RAS virtual platform"
    product_version: str = "1.0"
    serial: str = "0"
    uuid: bytes = bytes(16)
    family: str = "armras"
    dimm_locator: str = "DIMM 0"
    bank_locator: str = "BANK 0"


def _strings(values: list[str]) -> tuple[list[int], bytes]:
    """String numbers for `values` (0 for an empty one) and the string set."""
    numbers: list[int] = []
    table = bytearray()
    n = 0
    for v in values:
        if not v:
            numbers.append(0)
            continue
        n += 1
        numbers.append(n)
        table += v.encode("ascii", "replace") + b"\0"
    return numbers, bytes(table) + b"\0" if table else b"\0\0"


def _structure(stype: int, handle: int, formatted: bytes, strings: bytes) -> bytes:
    length = 4 + len(formatted)
    return struct.pack(HEADER_FORMAT, stype, length, handle) + formatted + strings


def bios_information(p: SmbiosPlatform) -> bytes:
    (vendor, version, date), strings = _strings([p.bios_vendor, p.bios_version, p.bios_date])
    body = struct.pack("<BBHBBQBBBBBBH", vendor, version, 0, date, BIOS_ROM_SIZE_NONE,
                       BIOS_CHAR_NOT_SUPPORTED, 0, BIOS_CHAR_EXT2_UEFI | BIOS_CHAR_EXT2_VM,
                       p.bios_major, p.bios_minor, 0xFF, 0xFF, 0)   # no embedded controller
    assert 4 + len(body) == BIOS_LENGTH
    return _structure(TYPE_BIOS, HANDLE_BIOS, body, strings)


def system_information(p: SmbiosPlatform) -> bytes:
    (man, prod, ver, ser, sku, fam), strings = _strings(
        [p.sys_vendor, p.product_name, p.product_version, p.serial, "", p.family])
    body = struct.pack("<BBBB16sBBB", man, prod, ver, ser, p.uuid, WAKEUP_POWER_SWITCH, sku, fam)
    assert 4 + len(body) == SYSTEM_LENGTH
    return _structure(TYPE_SYSTEM, HANDLE_SYSTEM, body, strings)


def processor_information(p: SmbiosPlatform, cpu: int) -> bytes:
    (socket, man, ver), strings = _strings([f"CPU {cpu}", "ARM", "ARMv8 (MIDR 0x%08x)" % p.midr])
    body = struct.pack("<BBBBQBBHHHBBHHHBBBBBBHHHHH",
                       socket, PROCESSOR_TYPE_CENTRAL, PROCESSOR_FAMILY_USE_FAMILY2, man,
                       p.midr & 0xFFFF_FFFF,          # Processor ID: MIDR_EL1 (7.5.3.3), SoC ID 0
                       ver, 0, 0, 0, 0,               # voltage, external clock, max/current speed unknown
                       PROCESSOR_STATUS_POPULATED_ENABLED, PROCESSOR_UPGRADE_OTHER,
                       HANDLE_NONE, HANDLE_NONE, HANDLE_NONE,   # L1/L2/L3 cache handles
                       0, 0, 0,                       # serial, asset tag, part number
                       1, 1, 1,                       # core count, enabled, thread count
                       PROCESSOR_CHAR_64BIT, PROCESSOR_FAMILY2_ARMV8, 1, 1, 1)
    assert 4 + len(body) == PROCESSOR_LENGTH
    return _structure(TYPE_PROCESSOR, HANDLE_PROCESSOR_BASE + cpu, body, strings)


def physical_memory_array(p: SmbiosPlatform) -> bytes:
    body = struct.pack("<BBBIHHQ", MEM_ARRAY_LOCATION_SYSTEM_BOARD, MEM_ARRAY_USE_SYSTEM,
                       MEM_ARRAY_ECC_MULTI_BIT, MEM_ARRAY_CAPACITY_USE_EXTENDED, ERROR_INFO_NOT_PROVIDED,
                       1, p.ram_size)
    assert 4 + len(body) == MEM_ARRAY_LENGTH
    return _structure(TYPE_PHYS_MEM_ARRAY, HANDLE_MEM_ARRAY, body, b"\0\0")


def memory_device(p: SmbiosPlatform) -> bytes:
    (locator, bank, man, serial, asset, part), strings = _strings(
        [p.dimm_locator, p.bank_locator, p.sys_vendor, "", "", ""])
    mib = p.ram_size // MiB
    size, extended = (mib, 0) if mib < MEMORY_SIZE_USE_EXTENDED else (MEMORY_SIZE_USE_EXTENDED, mib)
    body = struct.pack("<HHHHHBBBBBHHBBBBBIHHHH", HANDLE_MEM_ARRAY, ERROR_INFO_NOT_PROVIDED,
                       MEMORY_TOTAL_WIDTH_ECC, MEMORY_DATA_WIDTH, size, MEMORY_FORM_FACTOR_DIMM, 0,
                       locator, bank, MEMORY_TYPE_DDR4, MEMORY_TYPE_DETAIL_SYNCHRONOUS, 0,
                       man, serial, asset, part, 0, extended, 0, 0, 0, 0)
    assert 4 + len(body) == MEMORY_DEVICE_LENGTH
    return _structure(TYPE_MEMORY_DEVICE, HANDLE_MEMORY_DEVICE, body, strings)


def memory_array_mapped_address(p: SmbiosPlatform) -> bytes:
    end = p.ram_base + p.ram_size - 1
    if end // KiB < MEM_MAPPED_USE_EXTENDED:
        start_kib, end_kib, ext_start, ext_end = p.ram_base // KiB, end // KiB, 0, 0
    else:
        start_kib, end_kib, ext_start, ext_end = (MEM_MAPPED_USE_EXTENDED, MEM_MAPPED_USE_EXTENDED,
                                                  p.ram_base, end)
    body = struct.pack("<IIHBQQ", start_kib, end_kib, HANDLE_MEM_ARRAY, 1, ext_start, ext_end)
    assert 4 + len(body) == MEM_MAPPED_LENGTH
    return _structure(TYPE_MEM_ARRAY_MAPPED_ADDR, HANDLE_MEM_ARRAY_MAPPED, body, b"\0\0")


def system_boot_information() -> bytes:
    body = bytes(6) + struct.pack("<B", BOOT_STATUS_NO_ERRORS)
    assert 4 + len(body) == SYSTEM_BOOT_LENGTH
    return _structure(TYPE_SYSTEM_BOOT, HANDLE_SYSTEM_BOOT, body, b"\0\0")


def end_of_table() -> bytes:
    return _structure(TYPE_END, HANDLE_END, b"", b"\0\0")


def build_structures(p: SmbiosPlatform) -> bytes:
    return b"".join([bios_information(p), system_information(p),
                     *(processor_information(p, i) for i in range(p.cpus)),
                     physical_memory_array(p), memory_device(p), memory_array_mapped_address(p),
                     system_boot_information(), end_of_table()])


def build_entry_point(table_address: int, table_size: int) -> bytes:
    """The 24-byte `_SM3_` entry point; its bytes sum to 0 mod 256."""
    ep = bytearray(struct.pack(SM3_FORMAT, SM3_ANCHOR, 0, SM3_ENTRY_POINT_LENGTH, SMBIOS_MAJOR,
                               SMBIOS_MINOR, SMBIOS_DOCREV, SM3_ENTRY_POINT_REVISION, 0,
                               table_size, table_address))
    ep[SM3_CHECKSUM_OFFSET] = (-sum(ep)) & 0xFF
    return bytes(ep)
