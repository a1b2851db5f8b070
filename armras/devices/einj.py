"""The EINJ (Error Injection) action registers: what the EINJ table's actions read and write.

ACPI 6.4 18.6 (Error Injection): the OS runs the table's actions (BEGIN_INJECTION_OPERATION,
SET_ERROR_TYPE(_WITH_ADDRESS), EXECUTE_OPERATION, CHECK_BUSY_STATUS, GET_COMMAND_STATUS,
GET_TRIGGER_ERROR_ACTION_TABLE, END_OPERATION) as register reads and writes; the platform
injects the error on EXECUTE_OPERATION. This device is one 4 KiB MMIO frame holding

* the action registers, 64 bits each, at REG_*;
* the SET_ERROR_TYPE_WITH_ADDRESS data structure at PARAM_OFFSET, which Linux maps and
  writes field by field (drivers/acpi/apei/einj.c, `v5param`);
* the Trigger Error Action Table at TRIGGER_OFFSET: a header with no entries, since the
  error is in place once EXECUTE_OPERATION completes.

EXECUTE_OPERATION checks the request (error type, flags, address) and hands a valid one to
the board's `submit` callback, which performs it between CPU slices and reports the command
status through `complete`; CHECK_BUSY_STATUS reads 1 until then. A request the platform
cannot carry out completes at once with the spec's status (INVALID_ACCESS), never an error.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

from armras.ratelimit import RateLimiter

log = logging.getLogger(__name__)

FRAME_SIZE = 0x1000

# Action registers (64-bit, offsets in the frame).
REG_OPERATION = 0x00        # BEGIN writes OPERATION_BEGIN, END writes OPERATION_END
REG_EXECUTE = 0x08          # EXECUTE_OPERATION writes EXECUTE_GO
REG_BUSY = 0x10             # CHECK_BUSY_STATUS: bit 0
REG_COMMAND_STATUS = 0x18   # GET_COMMAND_STATUS: a CommandStatus
REG_ERROR_TYPE = 0x20       # SET_ERROR_TYPE (the ACPI 4.0 way; no address)
REG_AVAILABLE_TYPES = 0x28  # GET_ERROR_TYPE: the supported ErrorType bits
REG_TRIGGER_TABLE = 0x30    # GET_TRIGGER_ERROR_ACTION_TABLE: its physical address
REG_TIMINGS = 0x38          # GET_EXECUTE_OPERATION_TIMINGS
REGS_END = 0x40

OPERATION_BEGIN = 1
OPERATION_END = 0
EXECUTE_GO = 1
BUSY_BIT = 1

# GET_EXECUTE_OPERATION_TIMINGS: [63:32] maximum, [31:0] nominal time of an
# EXECUTE_OPERATION in microseconds. Ours completes at the next CPU stop.
TIMING_NOMINAL_US = 1
TIMING_MAX_US = 1000
TIMINGS = (TIMING_MAX_US << 32) | TIMING_NOMINAL_US

# The SET_ERROR_TYPE_WITH_ADDRESS data structure (ACPI 6.4 18.6).
PARAM_OFFSET = 0x100
PARAM_TYPE = 0               # u32 Error Type (an ErrorType bit, or bit 31 vendor-defined)
PARAM_VENDOR_EXTENSION = 4   # u32 offset of the vendor extension structure (0: none)
PARAM_FLAGS = 8              # u32 ParamFlags
PARAM_APICID = 12            # u32 processor identification
PARAM_MEMORY_ADDRESS = 16    # u64
PARAM_MEMORY_RANGE = 24      # u64 address mask (Linux: param2)
PARAM_PCIE_SBDF = 32         # u32
PARAM_SIZE = 36
PARAM_WINDOW = 0x40          # bytes of the frame the structure occupies (writable)

# The Trigger Error Action Table's header: header size, revision, table size, entry count
# (u32 each); no entries.
TRIGGER_OFFSET = 0x200
TRIGGER_HEADER_SIZE = 16
TRIGGER_REVISION = 1
TRIGGER_ENTRY_COUNT = 0
TRIGGER_TABLE = struct.pack("<IIII", TRIGGER_HEADER_SIZE, TRIGGER_REVISION,
                            TRIGGER_HEADER_SIZE, TRIGGER_ENTRY_COUNT)

PAGE_SIZE = 4096
PAGE_MASK = ~(PAGE_SIZE - 1) & ((1 << 64) - 1)
VENDOR_DEFINED = 1 << 31


class ErrorType(IntEnum):
    """Error Type bits; the board injects the memory ones."""

    PROCESSOR_CORRECTABLE = 1 << 0
    PROCESSOR_UNCORRECTABLE = 1 << 1
    PROCESSOR_FATAL = 1 << 2
    MEMORY_CORRECTABLE = 1 << 3
    MEMORY_UNCORRECTABLE = 1 << 4
    MEMORY_FATAL = 1 << 5
    PCIE_CORRECTABLE = 1 << 6
    PCIE_UNCORRECTABLE = 1 << 7
    PCIE_FATAL = 1 << 8


SUPPORTED_TYPES = (ErrorType.MEMORY_CORRECTABLE, ErrorType.MEMORY_UNCORRECTABLE, ErrorType.MEMORY_FATAL)
AVAILABLE_TYPES = sum(SUPPORTED_TYPES)


class ParamFlags(IntEnum):
    """The data structure's Flags field."""

    PROCESSOR_VALID = 1 << 0
    MEMORY_VALID = 1 << 1      # Memory Address and Memory Address Range are valid
    PCIE_SBDF_VALID = 1 << 2


class CommandStatus(IntEnum):
    """GET_COMMAND_STATUS values."""

    SUCCESS = 0
    UNKNOWN_FAILURE = 1
    INVALID_ACCESS = 2


@dataclass(frozen=True)
class InjectionRequest:
    """A checked EXECUTE_OPERATION: inject `error_type` at physical address `address`."""

    error_type: ErrorType
    address: int


Submit = Callable[[InjectionRequest, Callable[[CommandStatus], None]], None]


class EinjDevice:
    """The EINJ frame. `ram_contains(pa)` says whether an address is RAM; `submit(request,
    complete)` carries out a request later and then calls `complete(status)`. Refusals are
    logged through `warnings` (a guest may repeat a bad request in a loop)."""

    def __init__(self, base: int, ram_contains: Callable[[int], bool], submit: Submit, name: str = "einj",
                 warnings: RateLimiter | None = None) -> None:
        self.name = name
        self._warnings = warnings or RateLimiter(log)
        self.base = base
        self._ram_contains = ram_contains
        self._submit = submit
        self.param = bytearray(PARAM_WINDOW)
        self.operation = OPERATION_END
        self.error_type = 0
        self.busy = False
        self.status = CommandStatus.SUCCESS
        self.injections = 0               # requests carried out successfully

    # --- the guest's accesses ------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if PARAM_OFFSET <= offset < PARAM_OFFSET + PARAM_WINDOW:
            return _bytes_value(self.param, offset - PARAM_OFFSET, size)
        if TRIGGER_OFFSET <= offset < TRIGGER_OFFSET + len(TRIGGER_TABLE):
            return _bytes_value(TRIGGER_TABLE, offset - TRIGGER_OFFSET, size)
        if offset % 8 or offset >= REGS_END:
            return 0
        return {
            REG_OPERATION: self.operation,
            REG_BUSY: BUSY_BIT if self.busy else 0,
            REG_COMMAND_STATUS: int(self.status),
            REG_ERROR_TYPE: self.error_type,
            REG_AVAILABLE_TYPES: AVAILABLE_TYPES,
            REG_TRIGGER_TABLE: self.base + TRIGGER_OFFSET,
            REG_TIMINGS: TIMINGS,
        }.get(offset, 0) & _size_mask(size)

    def write(self, offset: int, size: int, value: int) -> None:
        value &= _size_mask(size)
        if PARAM_OFFSET <= offset < PARAM_OFFSET + PARAM_WINDOW:
            start = offset - PARAM_OFFSET
            data = value.to_bytes(size, "little")[:PARAM_WINDOW - start]
            self.param[start:start + len(data)] = data
        elif offset == REG_OPERATION:
            self.operation = value
        elif offset == REG_ERROR_TYPE:
            self.error_type = value & 0xFFFF_FFFF
        elif offset == REG_EXECUTE and value & EXECUTE_GO:
            self._execute()
        # Everything else is read-only or reserved: writes are ignored.

    # --- EXECUTE_OPERATION ---------------------------------------------------------
    def parameters(self) -> tuple[int, int, int, int]:
        """(type, flags, memory address, memory address range) of the data structure."""
        error_type, _vendor, flags, _apicid, address, mask = struct.unpack_from("<IIIIQQ", self.param)
        return error_type, flags, address, mask

    def check(self) -> InjectionRequest | CommandStatus:
        """The request the registers describe, or INVALID_ACCESS saying why not (logged)."""
        error_type, flags, address, mask = self.parameters()
        if error_type == 0:                       # no SET_ERROR_TYPE_WITH_ADDRESS: the 4.0 register
            error_type, flags, address, mask = self.error_type, 0, 0, 0
        if error_type & VENDOR_DEFINED or error_type not in {int(t) for t in SUPPORTED_TYPES}:
            return self._invalid("type", f"error type {error_type:#x} is not one of the available types "
                                 f"{AVAILABLE_TYPES:#x}")
        if flags & ~sum(ParamFlags):
            return self._invalid("flags", f"reserved flags {flags:#x}")
        if not flags & ParamFlags.MEMORY_VALID and address == 0:
            return self._invalid("address", "no memory address (the platform does not choose one)")
        if mask and (mask & PAGE_MASK) != PAGE_MASK:
            return self._invalid("range", f"memory address range {mask:#x} is coarser than a 4 KiB page")
        if not self._ram_contains(address):
            return self._invalid("address", f"memory address {address:#x} is not RAM")
        return InjectionRequest(ErrorType(error_type), address)

    def _invalid(self, what: str, why: str) -> CommandStatus:
        self._warnings.warning(("einj", what), "EINJ: EXECUTE_OPERATION refused (INVALID_ACCESS): %s", why)
        return CommandStatus.INVALID_ACCESS

    def _execute(self) -> None:
        if self.busy:
            self._warnings.warning(("einj", "busy"), "EINJ: EXECUTE_OPERATION while the previous one is still "
                                   "busy; ignored")
            return
        request = self.check()
        if isinstance(request, CommandStatus):
            self.status = request
            return
        self.busy = True
        self._submit(request, self.complete)

    def complete(self, status: CommandStatus) -> None:
        """The board carried out (or failed) the submitted request."""
        self.status = status
        self.busy = False
        if status is CommandStatus.SUCCESS:
            self.injections += 1


def _size_mask(size: int) -> int:
    return (1 << (8 * size)) - 1 if 0 < size <= 8 else 0


def _bytes_value(data: bytes | bytearray, start: int, size: int) -> int:
    return int.from_bytes(bytes(data[start:start + size]).ljust(size, b"\0"), "little") if size > 0 else 0


__all__ = ["AVAILABLE_TYPES", "CommandStatus", "EinjDevice", "ErrorType", "InjectionRequest", "ParamFlags"]
