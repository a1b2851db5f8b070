"""A minimal UEFI for booting Linux's arm64 EFI stub (UEFI 2.10 chapters 4, 7, 8, 9).

Every boot and runtime service is a two-instruction stub in guest memory,
`hvc #(SERVICE_BASE + n); ret`, so the firmware's logic runs here in Python while the
tables the OS loader reads (System Table, Boot/Runtime Services, configuration tables,
Loaded Image protocol, the memory map) are real structures in guest RAM.

What the arm64 EFI stub uses is implemented: HandleProtocol/OpenProtocol for
LOADED_IMAGE (LoadOptions = kernel command line), ConOut OutputString, Allocate/Free
Pages and Pool, GetMemoryMap, ExitBootServices (map-key checked), LocateDevicePath and
LoadFile2 for LINUX_EFI_INITRD_MEDIA_GUID (the initrd), InstallConfigurationTable,
LocateProtocol for EFI_RNG_PROTOCOL (seeded; a fixed seed under --deterministic, so KASLR
places the kernel at the same random offset every run), LocateHandleBuffer (NOT_FOUND: no
TPM, GOP, PCI...), and the runtime
services GetTime/SetTime (the board's PL031 clock), Get/GetNext/SetVariable and
QueryVariableInfo (armras.firmware.efivars), ResetSystem. An EFI_RT_PROPERTIES_TABLE
advertises those runtime services but not SetVirtualAddressMap, so Linux maps the
runtime regions 1:1 and calls the stubs at their physical addresses, passing pointers in
its own address space: the handlers translate them through the calling CPU's MMU. The
SMBIOS 3.0 tables (armras.firmware.smbios) are a configuration table. Every pointer the
guest passes is checked; a bad one gets EFI_INVALID_PARAMETER, never an emulator crash.
"""
from __future__ import annotations

import datetime
import logging
import random
import secrets
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from armras.arch.cpu import MIDR_EL1, GuestFault, describe_esr
from armras.errors import ArmrasError
from armras.firmware.efi_memory import (
    DESCRIPTOR_SIZE,
    DESCRIPTOR_VERSION,
    PAGE,
    AllocationError,
    EfiMemoryMap,
    MemoryType,
)
from armras.arch.mmu import translate
from armras.firmware.efivars import (
    BOOTSERVICE_ACCESS,
    MAX_NAME_CHARS,
    MAX_VARIABLE_SIZE,
    RUNTIME_ACCESS,
    VariableError,
    VariableStore,
)
from armras.firmware.smbios import SmbiosPlatform, build_entry_point, build_structures

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
EFI_DEVICE_ERROR = _ERR | 7
EFI_WRITE_PROTECTED = _ERR | 8
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
RNG = ["GetInfo", "GetRNG"]


def guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


ACPI_20_TABLE_GUID = guid("8868e871-e4f1-11d3-bc22-0080c73c8881")
SMBIOS3_TABLE_GUID = guid("f2fd1544-9794-4a2c-992e-e5bbcf20e394")
RT_PROPERTIES_TABLE_GUID = guid("eb66918a-7eef-402a-842e-931d21c38ae9")
LOADED_IMAGE_PROTOCOL_GUID = guid("5b1b31a1-9562-11d2-8e3f-00a0c969723b")
LOADED_IMAGE_DEVICE_PATH_GUID = guid("bc62157e-3e33-4fec-9920-2d3b36d750df")
DEVICE_PATH_PROTOCOL_GUID = guid("09576e91-6d3f-11d2-8e39-00a0c969723b")
LOAD_FILE2_PROTOCOL_GUID = guid("4006c0c1-fcb3-403e-996d-4a6c8724e06d")
RNG_PROTOCOL_GUID = guid("3152bca5-eade-433d-862e-c01cdc291f44")        # UEFI 2.10 37.5
RNG_ALGORITHM_RAW = guid("e43176d7-b6e8-4827-b784-7ffdc4b68561")
DETERMINISTIC_RNG_SEED = 0x41524D524153     # --deterministic: the same "random" bytes every run
LINUX_EFI_INITRD_MEDIA_GUID = guid("5568e427-68fc-4f3d-ac74-ca555231cc68")

# The variables this firmware defines at every boot (UEFI 2.10 3.3, "Globally Defined
# Variables"): volatile, BS|RT, read-only for the OS.
EFI_GLOBAL_VARIABLE_GUID = guid("8be4df61-93ca-11d2-aa0d-00e098032b8c")
FIRMWARE_VARIABLE_ATTRIBUTES = BOOTSERVICE_ACCESS | RUNTIME_ACCESS
FIRMWARE_VARIABLES: dict[str, bytes] = {
    "OsIndicationsSupported": (0).to_bytes(8, "little"),  # UINT64: no OsIndications bit supported
    "PlatformLangCodes": b"en-US\0",                       # RFC 4646 language codes, ASCII
    "LangCodes": b"eng\0",                                 # ISO 639-2 (deprecated, still defined)
    "SecureBoot": b"\0",                                   # UINT8 0: Secure Boot off
    "SetupMode": b"\1",                                    # UINT8 1: no Platform Key enrolled
}

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

# EFI_RT_PROPERTIES_TABLE RuntimeServicesSupported bits (UEFI 2.10 4.6.2). SetVirtualAddressMap
# is left out: Linux then keeps the runtime regions mapped 1:1 (VA = PA) and calls the stubs
# there, with its own (kernel virtual) pointers as arguments, which the handlers translate.
# ResetSystem is left out too: Linux resets and powers off through PSCI, as it does on QEMU.
RT_SUPPORTED_GET_TIME = 0x0001
RT_SUPPORTED_SET_TIME = 0x0002
RT_SUPPORTED_GET_VARIABLE = 0x0010
RT_SUPPORTED_GET_NEXT_VARIABLE_NAME = 0x0020
RT_SUPPORTED_SET_VARIABLE = 0x0040
RT_SUPPORTED_QUERY_VARIABLE_INFO = 0x2000
RT_SUPPORTED = (RT_SUPPORTED_GET_TIME | RT_SUPPORTED_SET_TIME | RT_SUPPORTED_GET_VARIABLE |
                RT_SUPPORTED_GET_NEXT_VARIABLE_NAME | RT_SUPPORTED_SET_VARIABLE | RT_SUPPORTED_QUERY_VARIABLE_INFO)
RT_PROPERTIES_VERSION = 1

# EFI_TIME (UEFI 2.10 8.3.1) and EFI_TIME_CAPABILITIES.
EFI_TIME_FORMAT = "<HBBBBBBIhBB"
EFI_TIME_SIZE = 16
EFI_UNSPECIFIED_TIMEZONE = 0x07FF
EFI_TIME_ADJUST_DAYLIGHT = 0x01
EFI_TIME_IN_DAYLIGHT = 0x02
RTC_RESOLUTION_HZ = 1           # the PL031 counts seconds
RTC_ACCURACY = 50_000_000       # 50 ppm, in units of 1e-6 ppm (what EDK2 reports)
RTC_MAX_SECONDS = 0xFFFF_FFFF   # the PL031's 32-bit counter

_VARIABLE_STATUS = {"NOT_FOUND": EFI_NOT_FOUND, "INVALID_PARAMETER": EFI_INVALID_PARAMETER,
                    "UNSUPPORTED": EFI_UNSUPPORTED, "OUT_OF_RESOURCES": EFI_OUT_OF_RESOURCES,
                    "WRITE_PROTECTED": EFI_WRITE_PROTECTED}


@dataclass
class Uefi:
    """The firmware state: tables in guest memory plus the Python service handlers."""

    machine: "FirmwarePlatform"     # the board, as firmware may see it
    cmdline: str = ""
    initrd: bytes | None = None
    variables: VariableStore = field(default_factory=VariableStore)   # per run, see efivars.py
    rng_seed: int | None = None     # EFI_RNG_PROTOCOL: fixed seed (--deterministic), or the host's entropy
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
        self._cpu: Cpu | None = None            # the CPU whose service call runs (its MMU maps pointers)
        self._rng = random.Random(self.rng_seed if self.rng_seed is not None else secrets.randbits(128))
        self.loader_code: list[tuple[int, int]] = []   # (address, pages) the OS loader allocated as code
        self._reserve_platform_firmware()
        for name, data in FIRMWARE_VARIABLES.items():
            self.variables.define(EFI_GLOBAL_VARIABLE_GUID, name, FIRMWARE_VARIABLE_ATTRIBUTES, data)
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
        proto_names = CON_OUT + CON_IN + LOAD_FILE2 + RNG
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
        n_lf2 = n_out + len(CON_IN)
        self.mem.write(self.load_file2, struct.pack("<Q", proto_stubs[n_lf2]))
        # EFI_RNG_PROTOCOL: GetInfo, GetRNG. The EFI stub seeds KASLR and Linux's RNG from it.
        self.rng = self._alloc(16, bs)
        self.mem.write(self.rng, b"".join(struct.pack("<Q", a) for a in proto_stubs[n_lf2 + 1:n_lf2 + 3]))
        self.initrd_handle = self._alloc(16, bs)
        self.image_handle = self._alloc(16, bs)

        vendor = self.firmware_vendor = self._alloc(64, rt)
        self.mem.write(vendor, self._utf16z("armras"))
        self.config_tables = self._alloc(24 * MAX_CONFIG_TABLES, rt)
        self.system_table = self._alloc(120, rt)
        props = self._alloc(8, rt)
        self.mem.write(props, struct.pack("<HHI", RT_PROPERTIES_VERSION, 8, RT_SUPPORTED))
        self._config = [_ConfigTable(ACPI_20_TABLE_GUID, self.machine.acpi.rsdp_address),
                        _ConfigTable(RT_PROPERTIES_TABLE_GUID, props),
                        _ConfigTable(SMBIOS3_TABLE_GUID, self._install_smbios())]
        self._write_system_table()

        # Firmware vector table: any exception while the stub runs is reported.
        vec = self._alloc(0x800, MemoryType.BOOT_SERVICES_CODE)
        trap = struct.pack("<I", 0xD4000002 | (HVC_EXCEPTION << 5))
        self.mem.write(vec, b"".join(trap.ljust(0x80, b"\0") for _ in range(16)))
        self.vectors = vec
        ret = self._alloc(4, MemoryType.BOOT_SERVICES_CODE)
        self.mem.write(ret, struct.pack("<I", 0xD4000002 | (HVC_IMAGE_RETURN << 5)))
        self.return_stub = ret

    def _install_smbios(self) -> int:
        """SMBIOS structures and their `_SM3_` entry point in runtime data, as EDK2 places them."""
        m = self.machine
        structures = build_structures(SmbiosPlatform(ram_base=m.ram.base, ram_size=m.ram.size,
                                                     cpus=len(m.vcpus), midr=m.cpu.sysreg(MIDR_EL1)))
        table = self._alloc(len(structures), MemoryType.RUNTIME_SERVICES_DATA)
        self.mem.write(table, structures)
        entry = self._alloc(PAGE, MemoryType.RUNTIME_SERVICES_DATA)
        self.mem.write(entry, build_entry_point(table, len(structures)))
        self.smbios_entry = entry
        return entry

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
                  (PROTOCOL_BASE + len(CON_OUT) + len(CON_IN), LOAD_FILE2, "lf2"),
                  (PROTOCOL_BASE + len(CON_OUT) + len(CON_IN) + len(LOAD_FILE2), RNG, "rng")]
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
            self._cpu = cpu
            if prefix == "bs" and self.exited_boot_services:
                log.warning("UEFI %s called after ExitBootServices", label)
                status = EFI_UNSUPPORTED
            elif method is None:
                log.info("UEFI %s: not implemented, returning EFI_UNSUPPORTED", label)
                status = EFI_UNSUPPORTED
            else:
                try:
                    status = method(*args)
                except VariableError as e:
                    log.debug("UEFI %s: %s", label, e)
                    status = _VARIABLE_STATUS[e.status]
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
        if mt == MemoryType.LOADER_CODE:
            self.loader_code.append((addr, pages))
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

    def _bs_LocateProtocol(self, guid_ptr: int, registration: int, iface_ptr: int, *_: int) -> int:
        if self._guid_at(guid_ptr) != RNG_PROTOCOL_GUID:
            return EFI_NOT_FOUND
        self._put64(iface_ptr, self.rng)
        return EFI_SUCCESS

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
    # After ExitBootServices the OS passes its own virtual addresses: every pointer goes
    # through the calling CPU's stage-1 translation (identity before the OS takes over),
    # page by page, and an unmapped one is EFI_INVALID_PARAMETER.
    def _pages(self, va: int, size: int) -> list[tuple[int, int]]:
        if va == 0:
            raise ArmrasError("NULL pointer")
        out: list[tuple[int, int]] = []
        end = va + size
        while va < end:
            n = min(end, (va | (PAGE - 1)) + 1) - va
            pa = translate(self._cpu, self.mem, va) if self._cpu is not None else va
            if pa is None:
                raise ArmrasError(f"unmapped guest address {va:#x}")
            out.append((pa, n))
            va += n
        return out

    def _read_va(self, va: int, size: int) -> bytes:
        return b"".join(self.mem.read(pa, n) for pa, n in self._pages(va, size))

    def _write_va(self, va: int, data: bytes) -> None:
        off = 0
        for pa, n in self._pages(va, len(data)):
            self.mem.write(pa, data[off:off + n])
            off += n

    def _read_u64_va(self, va: int) -> int:
        return int.from_bytes(self._read_va(va, 8), "little")

    def _write_u64_va(self, va: int, value: int) -> None:
        self._write_va(va, value.to_bytes(8, "little"))

    def _read_name(self, va: int, max_bytes: int = 2 * MAX_NAME_CHARS) -> str:
        """A NUL-terminated UCS-2 name of at most max_bytes (NUL included)."""
        raw = bytearray()
        checked = 0
        while len(raw) < max_bytes:
            pos = va + len(raw)
            raw += self._read_va(pos, min(PAGE - pos % PAGE, max_bytes - len(raw)))
            while checked + 1 < len(raw):
                if raw[checked] == 0 and raw[checked + 1] == 0:
                    return raw[:checked].decode("utf-16-le")
                checked += 2
        raise VariableError("INVALID_PARAMETER", "variable name not terminated")

    def _rt_GetTime(self, time_ptr: int, caps_ptr: int, *_: int) -> int:
        if time_ptr == 0:
            return EFI_INVALID_PARAMETER
        seconds = self.machine.rtc.now()
        now = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
        nanos = min(int((seconds - int(seconds)) * 1e9), 999_999_999)
        self._write_va(time_ptr, struct.pack(EFI_TIME_FORMAT, now.year, now.month, now.day, now.hour, now.minute,
                                             now.second, 0, nanos, 0, 0, 0))
        if caps_ptr:
            self._write_va(caps_ptr, struct.pack("<IIB", RTC_RESOLUTION_HZ, RTC_ACCURACY, 0))
        return EFI_SUCCESS

    def _rt_SetTime(self, time_ptr: int, *_: int) -> int:
        """The time is taken as UTC (as Linux's rtc-efi writes it, TimeZone unspecified)."""
        if time_ptr == 0:
            return EFI_INVALID_PARAMETER
        (year, month, day, hour, minute, second, _pad, nanos, tz, daylight,
         _pad2) = struct.unpack(EFI_TIME_FORMAT, self._read_va(time_ptr, EFI_TIME_SIZE))
        if not (1900 <= year <= 9999 and nanos <= 999_999_999 and
                (-1440 <= tz <= 1440 or tz == EFI_UNSPECIFIED_TIMEZONE) and
                not daylight & ~(EFI_TIME_ADJUST_DAYLIGHT | EFI_TIME_IN_DAYLIGHT)):
            return EFI_INVALID_PARAMETER
        try:
            when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
        except ValueError:          # month 13, February 30th, hour 24...
            return EFI_INVALID_PARAMETER
        seconds = int(when.timestamp())
        if not 0 <= seconds <= RTC_MAX_SECONDS:
            return EFI_DEVICE_ERROR     # the PL031 cannot hold it
        self.machine.rtc.set_now(seconds)
        log.info("UEFI SetTime: the RTC now reads %s", when.isoformat())
        return EFI_SUCCESS

    def _rt_GetVariable(self, name_ptr: int, guid_ptr: int, attr_ptr: int, size_ptr: int, data_ptr: int,
                        *_: int) -> int:
        if not (name_ptr and guid_ptr and size_ptr):
            return EFI_INVALID_PARAMETER
        var = self.variables.get(self._read_va(guid_ptr, 16), self._read_name(name_ptr),
                                 runtime=self.exited_boot_services)
        have = self._read_u64_va(size_ptr)
        self._write_u64_va(size_ptr, len(var.data))
        if attr_ptr:
            self._write_va(attr_ptr, struct.pack("<I", var.attributes))
        if have < len(var.data):
            return EFI_BUFFER_TOO_SMALL
        if var.data:
            if data_ptr == 0:
                return EFI_INVALID_PARAMETER
            self._write_va(data_ptr, var.data)
        return EFI_SUCCESS

    def _rt_GetNextVariableName(self, size_ptr: int, name_ptr: int, guid_ptr: int, *_: int) -> int:
        if not (size_ptr and name_ptr and guid_ptr):
            return EFI_INVALID_PARAMETER
        size = self._read_u64_va(size_ptr)
        if size < 2:
            return EFI_INVALID_PARAMETER
        name = self._read_name(name_ptr, min(size, 2 * MAX_NAME_CHARS) & ~1)
        g, next_name = self.variables.next_name(self._read_va(guid_ptr, 16), name,
                                                runtime=self.exited_boot_services)
        encoded = self._utf16z(next_name)
        self._write_u64_va(size_ptr, len(encoded))
        if size < len(encoded):
            return EFI_BUFFER_TOO_SMALL
        self._write_va(name_ptr, encoded)
        self._write_va(guid_ptr, g)
        return EFI_SUCCESS

    def _rt_SetVariable(self, name_ptr: int, guid_ptr: int, attributes: int, size: int, data_ptr: int,
                        *_: int) -> int:
        if not (name_ptr and guid_ptr) or attributes > 0xFFFF_FFFF:
            return EFI_INVALID_PARAMETER
        if size > MAX_VARIABLE_SIZE:        # before reading anything: the guest sizes nothing on the host
            return EFI_INVALID_PARAMETER
        if size and data_ptr == 0:
            return EFI_INVALID_PARAMETER
        name = self._read_name(name_ptr)
        data = self._read_va(data_ptr, size) if size else b""
        self.variables.set(self._read_va(guid_ptr, 16), name, attributes, data,
                           runtime=self.exited_boot_services)
        return EFI_SUCCESS

    def _rt_QueryVariableInfo(self, attributes: int, max_ptr: int, remaining_ptr: int, max_var_ptr: int,
                              *_: int) -> int:
        if not (max_ptr and remaining_ptr and max_var_ptr) or attributes > 0xFFFF_FFFF:
            return EFI_INVALID_PARAMETER
        total, remaining, largest = self.variables.query(attributes)
        self._write_u64_va(max_ptr, total)
        self._write_u64_va(remaining_ptr, remaining)
        self._write_u64_va(max_var_ptr, largest)
        return EFI_SUCCESS

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

    def _rng_GetInfo(self, this: int, size_ptr: int, list_ptr: int, *_: int) -> int:
        if this != self.rng:
            return EFI_INVALID_PARAMETER
        have = self.mem.read_u64(size_ptr)
        self._put64(size_ptr, len(RNG_ALGORITHM_RAW))
        if have < len(RNG_ALGORITHM_RAW) or list_ptr == 0:
            return EFI_BUFFER_TOO_SMALL
        self.mem.write(list_ptr, RNG_ALGORITHM_RAW)
        return EFI_SUCCESS

    def _rng_GetRNG(self, this: int, algorithm_ptr: int, length: int, buffer: int, *_: int) -> int:
        """RNGValueLength bytes of the raw algorithm (the default); the range is checked first,
        then filled COPY_CHUNK bytes at a time."""
        if this != self.rng or length == 0 or buffer == 0:
            return EFI_INVALID_PARAMETER
        if algorithm_ptr and self._guid_at(algorithm_ptr) != RNG_ALGORITHM_RAW:
            return EFI_UNSUPPORTED
        self.mem.region_of(buffer, length)
        for off in range(0, length, COPY_CHUNK):
            n = min(COPY_CHUNK, length - off)
            self.mem.write(buffer + off, self._rng.randbytes(n))
        return EFI_SUCCESS

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
