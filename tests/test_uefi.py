"""The UEFI firmware as the EFI stub sees it: tables in guest memory, services over HVC.

A small guest calls boot services through the System Table it is handed in x1 (as the
kernel's EFI stub does) and keeps the results in registers.
"""
from __future__ import annotations

import struct

from armras.firmware.efi_memory import DESCRIPTOR_SIZE, EfiMemoryMap, MemoryType
from armras.firmware.uefi import (
    EFI_BUFFER_TOO_SMALL,
    EFI_INVALID_PARAMETER,
    EFI_SUCCESS,
    LINUX_EFI_INITRD_MEDIA_GUID,
    LOAD_FILE2_PROTOCOL_GUID,
    Uefi,
)

BS = 96           # EFI_SYSTEM_TABLE.BootServices
ALLOCATE_POOL = 24 + 8 * 5
GET_MEMORY_MAP = 24 + 8 * 4
LOCATE_DEVICE_PATH = 24 + 8 * 20
HANDLE_PROTOCOL = 24 + 8 * 16
SCRATCH = 0x4100_0000


def call(offset: int, setup: str, save: str) -> str:
    """Call BootServices[offset] with arguments set up by `setup`, save x0 to `save`."""
    return f"""
 ldr x9, [x20, #{BS}]
 ldr x9, [x9, #{offset}]
{setup}
 blr x9
 mov {save}, x0
"""


def test_boot_services_validate_guest_pointers_and_hand_over_the_initrd(board):
    src = """
 mov x20, x1                    // the System Table, as the EFI stub gets it
 ldr x3, =0x40400000
 mov sp, x3
 ldr x21, =0x41000000           // scratch memory
""" + call(ALLOCATE_POOL, " mov x0, #2\n mov x1, #100\n mov x2, x21", "x22") + \
        call(ALLOCATE_POOL, " mov x0, #2\n mov x1, #100\n ldr x2, =0xdead00000000", "x23") + \
        call(GET_MEMORY_MAP, " str xzr, [x21, #8]\n add x0, x21, #8\n mov x1, #0\n add x2, x21, #16\n"
                             " add x3, x21, #24\n add x4, x21, #32", "x24") + \
        call(LOCATE_DEVICE_PATH, " adr x0, lf2_guid\n adr x10, initrd_dp\n str x10, [x21, #40]\n"
                                 " add x1, x21, #40\n add x2, x21, #48", "x25") + \
        call(HANDLE_PROTOCOL, " ldr x0, [x21, #48]\n adr x1, lf2_guid\n add x2, x21, #56", "x26") + \
        call(LOCATE_DEVICE_PATH, " adr x0, lf2_guid\n ldr x10, =0xffff000000000000\n str x10, [x21, #64]\n"
                                 " add x1, x21, #64\n add x2, x21, #72", "x27") + """
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .balign 8
lf2_guid: .byte """ + ",".join(str(b) for b in LOAD_FILE2_PROTOCOL_GUID) + """
initrd_dp: .byte 4, 3, 20, 0
 .byte """ + ",".join(str(b) for b in LINUX_EFI_INITRD_MEDIA_GUID) + """
 .byte 0x7f, 0xff, 4, 0
 .ltorg
"""
    b = board(src)
    m = b.machine
    uefi = Uefi(m, cmdline="console=ttyAMA0", initrd=b"INITRD")
    m.cpu.set_x(1, uefi.system_table)
    r = b.run()
    assert r.status == 0
    assert b.x(22) == EFI_SUCCESS
    pool = m.mem.read_u64(SCRATCH)
    assert uefi.memmap.type_at(pool) == MemoryType.LOADER_DATA
    assert b.x(23) == EFI_INVALID_PARAMETER             # output pointer outside guest memory
    assert b.x(24) == EFI_BUFFER_TOO_SMALL               # size probe, as the stub does first
    assert m.mem.read_u64(SCRATCH + 8) == uefi.memmap.map_size
    assert m.mem.read_u64(SCRATCH + 24) == DESCRIPTOR_SIZE
    assert b.x(25) == EFI_SUCCESS                        # the initrd's vendor media path is known
    assert m.mem.read_u64(SCRATCH + 48) == uefi.initrd_handle
    assert b.x(26) == EFI_SUCCESS and m.mem.read_u64(SCRATCH + 56) == uefi.load_file2
    assert b.x(27) == EFI_INVALID_PARAMETER              # a device path pointer into nowhere


def test_system_table_and_memory_map_as_linux_expects(board):
    m = board(" b .\n").machine
    uefi = Uefi(m)
    st = m.mem.read(uefi.system_table, 120)
    assert struct.unpack_from("<Q", st)[0] == 0x5453595320494249      # "IBI SYST"
    n, tables = struct.unpack_from("<QQ", st, 104)
    entries = [m.mem.read(tables + 24 * i, 24) for i in range(n)]
    acpi = next(e for e in entries if e[:16] == bytes.fromhex("71e86888f1e4d311bc220080c73c8881"))
    assert struct.unpack_from("<Q", acpi, 16)[0] == m.acpi.rsdp_address
    # The GHES blob must be ACPI NVS (acpi_os_ioremap refuses RAM-typed regions), WB.
    assert uefi.memmap.type_at(m.hw_errors.base) == MemoryType.ACPI_NVS
    assert uefi.memmap.type_at(m.acpi.rsdp_address) == MemoryType.ACPI_RECLAIM
    desc = uefi.memmap.descriptors()
    for i in range(0, len(desc), DESCRIPTOR_SIZE):
        mtype, _, start, _, pages, attr = struct.unpack_from("<IIQQQQ", desc, i)
        if start <= m.hw_errors.base < start + pages * 4096:
            assert mtype == MemoryType.ACPI_NVS and attr & 0x8


def test_memory_map_allocator():
    mm = EfiMemoryMap(0x4000_0000, 0x100_0000)
    top = mm.allocate(2, MemoryType.LOADER_DATA)
    assert top == 0x40FF_E000                               # top-down, as EDK2
    low = mm.allocate(1, MemoryType.BOOT_SERVICES_DATA, max_address=0x4010_0000)
    assert low < 0x4010_0000
    fixed = mm.allocate(4, MemoryType.LOADER_CODE, address=0x4020_0000)
    assert fixed == 0x4020_0000 and not mm.is_free(0x4020_0000, 0x1000)
    key = mm.key
    mm.free(fixed, 4)
    assert mm.is_free(0x4020_0000, 0x4000) and mm.key != key
    aligned = mm.allocate(16, MemoryType.LOADER_CODE, align=0x20_0000)
    assert aligned % 0x20_0000 == 0
