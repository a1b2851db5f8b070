"""A minimal UEFI for booting Linux's arm64 EFI stub (UEFI 2.10 chapters 4, 7, 8, 9).

Every boot and runtime service is a two-instruction stub in guest memory,
`hvc #(SERVICE_BASE + n); ret`, so the firmware's logic runs here in Python while the
tables the OS loader reads (System Table, Boot/Runtime Services, configuration tables,
Loaded Image protocol, the memory map) are real structures in guest RAM.

What the arm64 EFI stub uses is implemented: HandleProtocol/OpenProtocol for
LOADED_IMAGE (LoadOptions = kernel command line), ConOut OutputString, Allocate/Free
Pages and Pool, GetMemoryMap, ExitBootServices (map-key checked), LocateDevicePath and
LoadFile2 for LINUX_EFI_INITRD_MEDIA_GUID (the initrd), InstallConfigurationTable,
GetVariable (no variables), LocateProtocol/LocateHandleBuffer (NOT_FOUND: no RNG, TPM,
GOP, PCI...), GetTime, ResetSystem. An EFI_RT_PROPERTIES_TABLE advertises no runtime
services, so the kernel skips SetVirtualAddressMap and never calls into firmware with
virtual pointers. Every pointer the guest passes is checked; a bad one gets
EFI_INVALID_PARAMETER, never an emulator crash.
"""
from __future__ import annotations

import datetime
import logging
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from armras.arch.cpu import GuestFault, describe_esr
from armras.errors import ArmrasError
from armras.firmware.efi_memory import (
    DESCRIPTOR_SIZE,
    DESCRIPTOR_VERSION,
    PAGE,
    AllocationError,
    EfiMemoryMap,
    MemoryType,
)

if TYPE_CHECKING:
    from armras.arch.cpu import Cpu
    from armras.firmware.platform import FirmwarePlatform

log = logging.getLogger(__name__)

EFI_SUCCESS = 0
_ERR = 1 << 63
EFI_LOAD_ERROR = _ERR | 1
EFI_INVALID_PARAMETER = _ERR | 2
EFI_UNSUPPORTED = _ERR | 3
EFI_BUFFER_TOO_SMALL = _ERR | 5
EFI_NOT_READY = _ERR | 6
EFI_OUT_OF_RESOURCES = _ERR | 9
EFI_NOT_FOUND = _ERR | 14

SYSTEM_TABLE_SIGNATURE = 0x5453595320494249    # "IBI SYST"
BOOT_SERVICES_SIGNATURE = 0x56524553544F4F42   # "BOOTSERV"
RUNTIME_SERVICES_SIGNATURE = 0x56524553544E5552  # "RUNTSERV"
UEFI_REVISION = (2 << 16) | 70                 # 2.70, as the reference EDK2

SERVICE_BASE = 0xE000      # hvc immediates: boot services 0xE000+, runtime 0xE100+, protocols 0xE200+
RUNTIME_BASE = 0xE100
PROTOCOL_BASE = 0xE200
HVC_EXCEPTION = 0xEFFE     # firmware vector table: the stub took an exception
HVC_IMAGE_RETURN = 0xEFFF  # the image returned to the firmware
COPY_CHUNK = 1 << 20       # SetMem/CopyMem/CalculateCrc32 work on guest memory 1 MiB at a time

BOOT_SERVICES = [
    "RaiseTPL", "RestoreTPL", "AllocatePages", "FreePages", "GetMemoryMap", "AllocatePool", "FreePool",
    "CreateEvent", "SetTimer", "WaitForEvent", "SignalEvent", "CloseEvent", "CheckEvent",
    "InstallProtocolInterface", "ReinstallProtocolInterface", "UninstallProtocolInterface", "HandleProtocol",
    "Reserved", "RegisterProtocolNotify", "LocateHandle", "LocateDevicePath", "InstallConfigurationTable",
    "LoadImage", "StartImage", "Exit", "UnloadImage", "ExitBootServices", "GetNextMonotonicCount", "Stall",
    "SetWatchdogTimer", "ConnectController", "DisconnectController", "OpenProtocol", "CloseProtocol",
    "OpenProtocolInformation", "ProtocolsPerHandle", "LocateHandleBuffer", "LocateProtocol",
    "InstallMultipleProtocolInterfaces", "UninstallMultipleProtocolInterfaces", "CalculateCrc32", "CopyMem",
    "SetMem", "CreateEventEx",
]
RUNTIME_SERVICES = [
    "GetTime", "SetTime", "GetWakeupTime", "SetWakeupTime", "SetVirtualAddressMap", "ConvertPointer",
    "GetVariable", "GetNextVariableName", "SetVariable", "GetNextHighMonotonicCount", "ResetSystem",
    "UpdateCapsule", "QueryCapsuleCapabilities", "QueryVariableInfo",
]
# Protocol member functions we provide, in table order.
CON_OUT = ["Reset", "OutputString", "TestString", "QueryMode", "SetMode", "SetAttribute", "ClearScreen",
           "SetCursorPosition", "EnableCursor"]
CON_IN = ["Reset", "ReadKeyStroke"]
LOAD_FILE2 = ["LoadFile"]


def guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


ACPI_20_TABLE_GUID = guid("8868e871-e4f1-11d3-bc22-0080c73c8881")
RT_PROPERTIES_TABLE_GUID = guid("eb66918a-7eef-402a-842e-931d21c38ae9")
LOADED_IMAGE_PROTOCOL_GUID = guid("5b1b31a1-9562-11d2-8e3f-00a0c969723b")
LOADED_IMAGE_DEVICE_PATH_GUID = guid("bc62157e-3e33-4fec-9920-2d3b36d750df")
DEVICE_PATH_PROTOCOL_GUID = guid("09576e91-6d3f-11d2-8e39-00a0c969723b")
LOAD_FILE2_PROTOCOL_GUID = guid("4006c0c1-fcb3-403e-996d-4a6c8724e06d")
LINUX_EFI_INITRD_MEDIA_GUID = guid("5568e427-68fc-4f3d-ac74-ca555231cc68")

MEDIA_DEVICE_PATH = 4
MEDIA_VENDOR_DP = 3
END_DEVICE_PATH = 0x7F
END_ENTIRE = 0xFF

MAX_CONFIG_TABLES = 32
ALLOCATE_ANY, ALLOCATE_MAX_ADDRESS, ALLOCATE_ADDRESS = 0, 1, 2
U64 = 0xFFFF_FFFF_FFFF_FFFF


@dataclass
class _ConfigTable:
    guid: bytes
    address: int


EFI_RESET_COLD, EFI_RESET_WARM, EFI_RESET_SHUTDOWN = 0, 1, 2   # UEFI 2.x 8.5.1 EFI_RESET_TYPE


@dataclass
class Uefi:
    """The firmware state: tables in guest memory plus the Python service handlers."""

    machine: "FirmwarePlatform"     # the board, as firmware may see it
    cmdline: str = ""
    initrd: bytes | None = None
    memmap: EfiMemoryMap = field(init=False)
    exited_boot_services: bool = False

    def __post_init__(self) -> None:
        m = self.machine
        self.mem = m.mem
        self.memmap = EfiMemoryMap(m.ram.base, m.ram.size)
        self._config: list[_ConfigTable] = []
        self._pool: dict[int, int] = {}          # AllocatePool address -> pages
        self._monotonic = 0
        self.calls: dict[str, int] = {}
        self._reserve_platform_firmware()
        self._build_tables()
        m.hvc_handlers.update(self._handlers())

    # --- memory layout -----------------------------------------------------------------
    def _reserve_platform_firmware(self) -> None:
        """Type what platform firmware put in RAM before us (ACPI, GHES blob)."""
        m = self.machine
        base, size = m.reserved_range
        self.memmap.set_type(base, size, MemoryType.RESERVED)
        acpi_pages = -(-len(m.acpi.blob) // PAGE)
        self.memmap.set_type(m.acpi.base, acpi_pages * PAGE, MemoryType.ACPI_RECLAIM)
        # GHES error status blocks and registers: ACPI NVS, write-back (Linux maps it
        # through acpi_os_ioremap, which refuses RAM-typed regions).
        hw = m.hw_errors
        hw_pages = -(-hw.size // PAGE)
        self.memmap.set_type(hw.base, hw_pages * PAGE, MemoryType.ACPI_NVS)
        # The ERST exchange buffer, as the GHES blob (Linux ioremap_cache()s it).
        erst_base, erst_size = m.erst_exchange
        self.memmap.set_type(erst_base, erst_size, MemoryType.ACPI_NVS)

    def _alloc(self, size: int, mtype: MemoryType) -> int:
        addr = self.memmap.allocate(-(-size // PAGE), mtype)
        self.mem.write(addr, bytes(-(-size // PAGE) * PAGE))
        return addr

    def _utf16z(self, text: str) -> bytes:
        return text.encode("utf-16-le") + b"\0\0"

    # --- tables --------------------------------------------------------------------------
    def _stub_page(self, base_imm: int, count: int, mtype: MemoryType) -> list[int]:
        """`hvc #imm; ret` for each service; returns the entry addresses."""
        page = self._alloc(count * 8, mtype)
        code = b"".join(struct.pack("<II", 0xD4000002 | ((base_imm + i) << 5), 0xD65F03C0) for i in range(count))
        self.mem.write(page, code)
        return [page + 8 * i for i in range(count)]

    @staticmethod
    def _header(signature: int, size: int) -> bytes:
        return struct.pack("<QIIII", signature, UEFI_REVISION, size, 0, 0)

    def _write_with_crc(self, addr: int, data: bytes) -> None:
        crc = zlib.crc32(data) & 0xFFFF_FFFF
        self.mem.write(addr, data[:16] + struct.pack("<I", crc) + data[20:])

    def _build_tables(self) -> None:
        rt = MemoryType.RUNTIME_SERVICES_DATA
        bs = MemoryType.BOOT_SERVICES_DATA
        boot_stubs = self._stub_page(SERVICE_BASE, len(BOOT_SERVICES), MemoryType.BOOT_SERVICES_CODE)
        rt_stubs = self._stub_page(RUNTIME_BASE, len(RUNTIME_SERVICES), MemoryType.RUNTIME_SERVICES_CODE)
        proto_names = CON_OUT + CON_IN + LOAD_FILE2
        proto_stubs = self._stub_page(PROTOCOL_BASE, len(proto_names), MemoryType.BOOT_SERVICES_CODE)
        self._proto_names = proto_names

        # Boot services table (UEFI 4.4).
        bst = self._header(BOOT_SERVICES_SIGNATURE, 24 + 8 * len(BOOT_SERVICES)) + \
            b"".join(struct.pack("<Q", a) for a in boot_stubs)
        self.boot_services = self._alloc(len(bst), bs)
        self._write_with_crc(self.boot_services, bst)
        # Runtime services table (UEFI 4.5).
        rst = self._header(RUNTIME_SERVICES_SIGNATURE, 24 + 8 * len(RUNTIME_SERVICES)) + \
            b"".join(struct.pack("<Q", a) for a in rt_stubs)
        self.runtime_services = self._alloc(len(rst), rt)
        self._write_with_crc(self.runtime_services, rst)

        # ConOut (SIMPLE_TEXT_OUTPUT_PROTOCOL) with its Mode, ConIn (SIMPLE_TEXT_INPUT).
        n_out = len(CON_OUT)
        self.con_out = self._alloc(8 * (n_out + 1) + 24, bs)
        mode = self.con_out + 8 * (n_out + 1)
        self.mem.write(self.con_out, b"".join(struct.pack("<Q", a) for a in proto_stubs[:n_out]) +
                       struct.pack("<Q", mode) + struct.pack("<iiiiiB", 1, 0, 0x07, 0, 0, 0).ljust(24, b"\0"))
        self.con_in = self._alloc(24, bs)
        self.mem.write(self.con_in, b"".join(struct.pack("<Q", a) for a in proto_stubs[n_out:n_out + 2]) +
                       struct.pack("<Q", 0))
        # LoadFile2 for the initrd, on its own handle with the vendor media device path.
        self.load_file2 = self._alloc(8, bs)
        self.mem.write(self.load_file2, struct.pack("<Q", proto_stubs[-1]))
        self.initrd_handle = self._alloc(16, bs)
        self.image_handle = self._alloc(16, bs)

        vendor = self.firmware_vendor = self._alloc(64, rt)
        self.mem.write(vendor, self._utf16z("armras"))
        self.config_tables = self._alloc(24 * MAX_CONFIG_TABLES, rt)
        self.system_table = self._alloc(120, rt)
        props = self._alloc(8, rt)
        self.mem.write(props, struct.pack("<HHI", 1, 8, 0))   # RT properties: no runtime services
        self._config = [_ConfigTable(ACPI_20_TABLE_GUID, self.machine.acpi.rsdp_address),
                        _ConfigTable(RT_PROPERTIES_TABLE_GUID, props)]
        self._write_system_table()

        # Firmware vector table: any exception while the stub runs is reported.
        vec = self._alloc(0x800, MemoryType.BOOT_SERVICES_CODE)
        trap = struct.pack("<I", 0xD4000002 | (HVC_EXCEPTION << 5))
        self.mem.write(vec, b"".join(trap.ljust(0x80, b"\0") for _ in range(16)))
        self.vectors = vec
        ret = self._alloc(4, MemoryType.BOOT_SERVICES_CODE)
        self.mem.write(ret, struct.pack("<I", 0xD4000002 | (HVC_IMAGE_RETURN << 5)))
        self.return_stub = ret

    def _write_system_table(self) -> None:
        entries = b"".join(t.guid + struct.pack("<Q", t.address) for t in self._config)
        self.mem.write(self.config_tables, entries)
        body = self._header(SYSTEM_TABLE_SIGNATURE, 120) + struct.pack(
            "<QI4xQQQQQQQQQQ", self.firmware_vendor, 0x10000, 0, self.con_in, 0, self.con_out, 0, self.con_out,
            self.runtime_services, self.boot_services, len(self._config), self.config_tables)
        self._write_with_crc(self.system_table, body)

    def install_loaded_image(self, image_base: int, image_size: int) -> int:
        """The EFI_LOADED_IMAGE_PROTOCOL of the kernel, LoadOptions = command line."""
        options = self._utf16z(self.cmdline)
        opts = self._alloc(len(options), MemoryType.LOADER_DATA)
        self.mem.write(opts, options)
        li = self._alloc(96, MemoryType.BOOT_SERVICES_DATA)
        self.mem.write(li, struct.pack("<IIQQQQQIIQQQIIQ", 0x1000, 0, 0, self.system_table, 0, 0, 0,
                                       len(options), 0, opts, image_base, image_size,
                                       MemoryType.LOADER_CODE, MemoryType.LOADER_DATA, 0))
        self.loaded_image = li
        return li

    # --- dispatch ------------------------------------------------------------------------
    def _handlers(self) -> dict[int, Callable[["Cpu"], None]]:
        table: dict[int, Callable[[Cpu], None]] = {}
        groups = [(SERVICE_BASE, BOOT_SERVICES, "bs"), (RUNTIME_BASE, RUNTIME_SERVICES, "rt"),
                  (PROTOCOL_BASE, CON_OUT, "conout"), (PROTOCOL_BASE + len(CON_OUT), CON_IN, "conin"),
                  (PROTOCOL_BASE + len(CON_OUT) + len(CON_IN), LOAD_FILE2, "lf2")]
        for base, names, prefix in groups:
            for i, name in enumerate(names):
                table[base + i] = self._make_handler(prefix, name)
        table[HVC_EXCEPTION] = self._stub_exception
        table[HVC_IMAGE_RETURN] = self._image_returned
        return table

    def _make_handler(self, prefix: str, name: str) -> Callable[["Cpu"], None]:
        method = getattr(self, f"_{prefix}_{name}", None)
        label = f"{prefix}.{name}"

        def handler(cpu: "Cpu") -> None:
            self.calls[label] = self.calls.get(label, 0) + 1
            args = cpu.xs(8)
            if prefix == "bs" and self.exited_boot_services:
                log.warning("UEFI %s called after ExitBootServices", label)
                status = EFI_UNSUPPORTED
            elif method is None:
                log.info("UEFI %s: not implemented, returning EFI_UNSUPPORTED", label)
                status = EFI_UNSUPPORTED
            else:
                try:
                    status = method(*args)
                except (ArmrasError, AllocationError, UnicodeDecodeError) as e:
                    log.warning("UEFI %s: invalid request from the guest: %s", label, e)
                    status = EFI_INVALID_PARAMETER
            log.debug("UEFI %s(%s) -> %#x", label, ", ".join(f"{a:#x}" for a in args[:5]), status)
            cpu.set_x(0, status)

        return handler

    def _stub_exception(self, cpu: "Cpu") -> None:
        regs = cpu.snapshot()
        raise GuestFault(f"the EFI stub took an exception at {regs['elr_el1']:#x}: "
                         f"{describe_esr(regs['esr_el1'])}, FAR {regs['far_el1']:#x}")

    def _image_returned(self, cpu: "Cpu") -> None:
        raise GuestFault(f"the EFI image returned to the firmware with status {cpu.x(0):#x} "
                         "(the kernel's EFI stub gave up; see its messages above)")

    # --- helpers for service implementations ----------------------------------------
    def _guid_at(self, addr: int) -> bytes:
        return self.mem.read(addr, 16)

    def _put64(self, addr: int, value: int) -> None:
        if addr == 0:
            raise ArmrasError("NULL output pointer")
        self.mem.write_u64(addr, value)

    # --- boot services -------------------------------------------------------------------
    def _bs_RaiseTPL(self, new_tpl: int, *_: int) -> int:
        return 4  # TPL_APPLICATION: the previous level

    def _bs_RestoreTPL(self, *_: int) -> int:
        return EFI_SUCCESS

    def _bs_AllocatePages(self, kind: int, mtype: int, pages: int, memory_ptr: int, *_: int) -> int:
        try:
            mt = MemoryType(mtype)
        except ValueError:
            mt = MemoryType.LOADER_DATA if mtype >= 0x8000_0000 else None  # OEM/OS types
            if mt is None:
                return EFI_INVALID_PARAMETER
        if pages == 0 or pages > self.machine.ram.size // PAGE:
            return EFI_OUT_OF_RESOURCES
        try:
            if kind == ALLOCATE_ANY:
                addr = self.memmap.allocate(pages, mt)
            elif kind == ALLOCATE_MAX_ADDRESS:
                addr = self.memmap.allocate(pages, mt, max_address=self.mem.read_u64(memory_ptr))
            elif kind == ALLOCATE_ADDRESS:
                addr = self.memmap.allocate(pages, mt, address=self.mem.read_u64(memory_ptr))
            else:
                return EFI_INVALID_PARAMETER
        except AllocationError:
            return EFI_NOT_FOUND if kind == ALLOCATE_ADDRESS else EFI_OUT_OF_RESOURCES
        self._put64(memory_ptr, addr)
        return EFI_SUCCESS

    def _bs_FreePages(self, memory: int, pages: int, *_: int) -> int:
        try:
            self.memmap.free(memory, pages)
        except AllocationError:
            return EFI_NOT_FOUND
        return EFI_SUCCESS

    def _bs_GetMemoryMap(self, size_ptr: int, map_ptr: int, key_ptr: int, desc_size_ptr: int,
                         desc_ver_ptr: int, *_: int) -> int:
        needed = self.memmap.map_size
        have = self.mem.read_u64(size_ptr)
        self._put64(size_ptr, needed)
        if desc_size_ptr:
            self._put64(desc_size_ptr, DESCRIPTOR_SIZE)
        if desc_ver_ptr:
            self.mem.write_u32(desc_ver_ptr, DESCRIPTOR_VERSION)
        if have < needed or map_ptr == 0:
            return EFI_BUFFER_TOO_SMALL
        self.mem.write(map_ptr, self.memmap.descriptors())
        self._put64(key_ptr, self.memmap.key)
        return EFI_SUCCESS

    def _bs_AllocatePool(self, pool_type: int, size: int, buffer_ptr: int, *_: int) -> int:
        if size > self.machine.ram.size:
            return EFI_OUT_OF_RESOURCES
        try:
            mt = MemoryType(pool_type)
        except ValueError:
            return EFI_INVALID_PARAMETER
        pages = max(1, -(-size // PAGE))
        try:
            addr = self.memmap.allocate(pages, mt)
        except AllocationError:
            return EFI_OUT_OF_RESOURCES
        self._pool[addr] = pages
        self._put64(buffer_ptr, addr)
        return EFI_SUCCESS

    def _bs_FreePool(self, buffer: int, *_: int) -> int:
        pages = self._pool.pop(buffer, None)
        if pages is None:
            return EFI_INVALID_PARAMETER
        self.memmap.free(buffer, pages)
        return EFI_SUCCESS

    def _bs_HandleProtocol(self, handle: int, guid_ptr: int, iface_ptr: int, *_: int) -> int:
        iface = self._protocol(handle, self._guid_at(guid_ptr))
        if iface is None:
            return EFI_UNSUPPORTED
        self._put64(iface_ptr, iface)
        return EFI_SUCCESS

    def _bs_OpenProtocol(self, handle: int, guid_ptr: int, iface_ptr: int, *_: int) -> int:
        iface = self._protocol(handle, self._guid_at(guid_ptr))
        if iface is None:
            return EFI_UNSUPPORTED
        if iface_ptr:
            self._put64(iface_ptr, iface)
        return EFI_SUCCESS

    def _bs_CloseProtocol(self, *_: int) -> int:
        return EFI_SUCCESS

    def _protocol(self, handle: int, g: bytes) -> int | None:
        if handle == self.image_handle and g == LOADED_IMAGE_PROTOCOL_GUID:
            return self.loaded_image
        if handle == self.initrd_handle and g == LOAD_FILE2_PROTOCOL_GUID and self.initrd is not None:
            return self.load_file2
        return None

    def _bs_LocateDevicePath(self, guid_ptr: int, dp_ptr_ptr: int, handle_ptr: int, *_: int) -> int:
        if self._guid_at(guid_ptr) != LOAD_FILE2_PROTOCOL_GUID or self.initrd is None:
            return EFI_NOT_FOUND
        dp = self.mem.read_u64(dp_ptr_ptr)
        node = self.mem.read(dp, 20)
        dtype, subtype, length = struct.unpack_from("<BBH", node)
        if (dtype, subtype, length) != (MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, 20) or \
                node[4:20] != LINUX_EFI_INITRD_MEDIA_GUID:
            return EFI_NOT_FOUND
        self._put64(dp_ptr_ptr, dp + 20)      # the remaining path: the End node
        self._put64(handle_ptr, self.initrd_handle)
        return EFI_SUCCESS

    def _bs_InstallConfigurationTable(self, guid_ptr: int, table: int, *_: int) -> int:
        g = self._guid_at(guid_ptr)
        existing = next((t for t in self._config if t.guid == g), None)
        if table == 0:
            if existing is None:
                return EFI_NOT_FOUND
            self._config.remove(existing)
        elif existing is not None:
            existing.address = table
        elif len(self._config) >= MAX_CONFIG_TABLES:
            return EFI_OUT_OF_RESOURCES
        else:
            self._config.append(_ConfigTable(g, table))
        self._write_system_table()
        return EFI_SUCCESS

    def _bs_LocateProtocol(self, *_: int) -> int:
        return EFI_NOT_FOUND

    def _bs_LocateHandle(self, *_: int) -> int:
        return EFI_NOT_FOUND

    def _bs_LocateHandleBuffer(self, *_: int) -> int:
        return EFI_NOT_FOUND

    def _bs_ExitBootServices(self, handle: int, key: int, *_: int) -> int:
        if key != self.memmap.key:
            return EFI_INVALID_PARAMETER
        self.exited_boot_services = True
        log.info("UEFI: ExitBootServices; handing over to the OS")
        return EFI_SUCCESS

    def _bs_GetNextMonotonicCount(self, count_ptr: int, *_: int) -> int:
        self._monotonic += 1
        self._put64(count_ptr, self._monotonic)
        return EFI_SUCCESS

    def _bs_Stall(self, *_: int) -> int:
        return EFI_SUCCESS

    def _bs_SetWatchdogTimer(self, *_: int) -> int:
        return EFI_SUCCESS

    # Guest-sized buffers are processed COPY_CHUNK bytes at a time, after checking the
    # whole range: a rejected 512 MiB request must not allocate 512 MiB on the host.
    def _bs_CalculateCrc32(self, data: int, size: int, crc_ptr: int, *_: int) -> int:
        self.mem.region_of(data, size)
        crc = 0
        for off in range(0, size, COPY_CHUNK):
            crc = zlib.crc32(self.mem.read(data + off, min(COPY_CHUNK, size - off)), crc)
        self.mem.write_u32(crc_ptr, crc & 0xFFFF_FFFF)
        return EFI_SUCCESS

    def _bs_CopyMem(self, dst: int, src: int, length: int, *_: int) -> int:
        self.mem.region_of(src, length)
        self.mem.region_of(dst, length)
        # memmove semantics: copy backwards when the destination overlaps the source's tail.
        offsets = range(0, length, COPY_CHUNK)
        for off in (reversed(offsets) if src < dst < src + length else offsets):
            n = min(COPY_CHUNK, length - off)
            self.mem.write(dst + off, self.mem.read(src + off, n))
        return EFI_SUCCESS

    def _bs_SetMem(self, buf: int, size: int, value: int, *_: int) -> int:
        self.mem.region_of(buf, size)
        chunk = bytes([value & 0xFF]) * min(size, COPY_CHUNK)
        for off in range(0, size, COPY_CHUNK):
            self.mem.write(buf + off, chunk[:size - off])
        return EFI_SUCCESS

    # --- runtime services ----------------------------------------------------------------
    def _rt_GetTime(self, time_ptr: int, caps_ptr: int, *_: int) -> int:
        now = datetime.datetime.now(datetime.timezone.utc)
        self.mem.write(time_ptr, struct.pack("<HBBBBBBIhBB", now.year, now.month, now.day, now.hour, now.minute,
                                             now.second, 0, now.microsecond * 1000, 0, 0, 0))
        if caps_ptr:
            self.mem.write(caps_ptr, struct.pack("<IIB", 1, 0, 0))
        return EFI_SUCCESS

    def _rt_GetVariable(self, *_: int) -> int:
        return EFI_NOT_FOUND

    def _rt_GetNextVariableName(self, *_: int) -> int:
        return EFI_NOT_FOUND

    def _rt_ResetSystem(self, reset_type: int, status: int, *_: int) -> int:
        if reset_type in (EFI_RESET_COLD, EFI_RESET_WARM):
            self.machine.system_reset(f"UEFI ResetSystem (type {reset_type})")
        else:   # EfiResetShutdown, or a platform-specific type: the board powers off
            self.machine.power_off(status & 0xFF if reset_type == EFI_RESET_SHUTDOWN else 0,
                                   f"UEFI ResetSystem (type {reset_type})")
        return EFI_SUCCESS

    # --- protocols -----------------------------------------------------------------------
    def _conout_OutputString(self, this: int, string: int, *_: int) -> int:
        raw = bytearray()
        while len(raw) < 8192:
            ch = self.mem.read(string + len(raw), 2)
            if ch == b"\0\0":
                break
            raw += ch
        text = raw.decode("utf-16-le", "replace").replace("\r\n", "\n").replace("\r", "")
        self.machine.console.write(text.encode())
        return EFI_SUCCESS

    def _conout_Reset(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conout_TestString(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conout_SetAttribute(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conout_ClearScreen(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conout_EnableCursor(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conin_Reset(self, *_: int) -> int:
        return EFI_SUCCESS

    def _conin_ReadKeyStroke(self, *_: int) -> int:
        return EFI_NOT_READY

    def _lf2_LoadFile(self, this: int, file_path: int, boot_policy: int, size_ptr: int, buffer: int,
                      *_: int) -> int:
        if self.initrd is None or this != self.load_file2:
            return EFI_UNSUPPORTED
        if boot_policy:
            return EFI_UNSUPPORTED
        have = self.mem.read_u64(size_ptr)
        self._put64(size_ptr, len(self.initrd))
        if buffer == 0 or have < len(self.initrd):
            return EFI_BUFFER_TOO_SMALL
        self.mem.write(buffer, self.initrd)
        return EFI_SUCCESS
