"""The ERST register interface: an action register, a value register, an exchange buffer.

The interface of QEMU's hw/acpi/erst.c (its PCI BARs become a fixed MMIO frame and
firmware-reserved RAM here): the ERST's instructions write an action code to ACTION
(offset 0, 32 bits) and move arguments and results through VALUE (offset 8, 64 bits,
also accessible as two 32-bit halves). Every side effect happens on the write of an
action; EXECUTE_OPERATION runs the operation begun by BEGIN_WRITE/READ/CLEAR against
the records in the exchange buffer, if VALUE holds EXECUTE_OPERATION_MAGIC first (as
QEMU: the ERST's EXECUTE_OPERATION entry writes it). Operations complete at once, so
CHECK_BUSY_STATUS always reads 0.

Everything the guest writes is untrusted: offsets, lengths and ids out of range give the
spec's command status (ACPI 6.4 Table 18.30), never an exception.
"""
from __future__ import annotations

import logging
import struct
from typing import Protocol

from armras.errors import GuestAddressError
from armras.ras.erst import (
    CPER_RECORD_LENGTH_OFFSET,
    CPER_RECORD_MIN_SIZE,
    EMPTY_END_RECORD_ID,
    UNSPECIFIED_RECORD_ID,
    Action,
    ErstStore,
    Status,
)

log = logging.getLogger(__name__)

ERST_ACTION = 0x0                  # register offsets in the frame (QEMU ERST_ACTION_OFFSET)
ERST_VALUE = 0x8                   # (QEMU ERST_VALUE_OFFSET)
ACTION_BITS = 32
VALUE_BITS = 64
EXECUTE_OPERATION_MAGIC = 0x9C     # QEMU ERST_EXECUTE_OPERATION_MAGIC
# GET_EXECUTE_OPERATION_TIMINGS (ACPI 6.4 Table 18.27): max us in [63:32], nominal us in [31:0], as QEMU.
EXECUTE_TIMINGS = (100 << 32) | 10
ADDRESS_RANGE_ATTRIBUTES = 0       # not NVRAM, not slow: Linux copies through the buffer

U64 = 0xFFFF_FFFF_FFFF_FFFF
RECORD_OFFSET_MASK = 0xFFFF_FFFF


class GuestMemory(Protocol):
    def read(self, pa: int, size: int) -> bytes: ...

    def write(self, pa: int, data: bytes) -> None: ...


class ErstDevice:
    def __init__(self, store: ErstStore, mem: GuestMemory, exchange_base: int, name: str = "erst") -> None:
        self.name = name
        self.store = store
        self._mem = mem
        self.exchange_base = exchange_base
        self.exchange_length = store.record_size
        self.action = 0
        self.value = 0
        self.operation = Action.END_OPERATION
        self.busy = 0
        self.command_status = Status.SUCCESS
        self.record_offset = 0
        self.record_id = UNSPECIFIED_RECORD_ID
        self._next_index = 0                  # GET_RECORD_IDENTIFIER's position in the store

    # --- MMIO ------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if offset in (ERST_ACTION, ERST_ACTION + 4):
            return _read_half(self.action, offset - ERST_ACTION, size)
        if offset in (ERST_VALUE, ERST_VALUE + 4):
            return _read_half(self.value, offset - ERST_VALUE, size)
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset in (ERST_VALUE, ERST_VALUE + 4):
            self.value = _write_half(self.value, offset - ERST_VALUE, size, value)
        elif offset == ERST_ACTION:
            self.action = value & 0xFFFF_FFFF
            self._do(self.action)

    # --- actions -----------------------------------------------------------------------------
    def _do(self, action: int) -> None:
        if action in (Action.BEGIN_WRITE_OPERATION, Action.BEGIN_READ_OPERATION, Action.BEGIN_CLEAR_OPERATION,
                      Action.BEGIN_DUMMY_WRITE_OPERATION, Action.END_OPERATION):
            self.operation = Action(action)
        elif action == Action.SET_RECORD_OFFSET:
            # A 32-bit register (the ERST writes VALUE's low half): the high half may hold
            # an earlier result, e.g. an all-ones record id (QEMU keeps a u32 too).
            self.record_offset = self.value & RECORD_OFFSET_MASK
        elif action == Action.EXECUTE_OPERATION:
            if self.value & 0xFF == EXECUTE_OPERATION_MAGIC:
                self.command_status = self._execute()
        elif action == Action.CHECK_BUSY_STATUS:
            self.value = self.busy
        elif action == Action.GET_COMMAND_STATUS:
            self.value = int(self.command_status)
        elif action == Action.GET_RECORD_IDENTIFIER:
            self.value = self._next_record_id()
            self.command_status = Status.SUCCESS if self.store.records else Status.RECORD_STORE_EMPTY
        elif action == Action.SET_RECORD_IDENTIFIER:
            self.record_id = self.value
        elif action == Action.GET_RECORD_COUNT:
            self.value = len(self.store)
        elif action == Action.GET_ERROR_LOG_ADDRESS_RANGE:
            self.value = self.exchange_base
        elif action == Action.GET_ERROR_LOG_ADDRESS_RANGE_LENGTH:
            self.value = self.exchange_length
        elif action == Action.GET_ERROR_LOG_ADDRESS_RANGE_ATTRIBUTES:
            self.value = ADDRESS_RANGE_ATTRIBUTES
        elif action == Action.GET_EXECUTE_OPERATION_TIMINGS:
            self.value = EXECUTE_TIMINGS
        # Anything else (reserved 0xC, unknown codes) does nothing, as QEMU.

    def _execute(self) -> Status:
        op = self.operation
        try:
            if op == Action.BEGIN_WRITE_OPERATION:
                return self._write_record()
            if op == Action.BEGIN_READ_OPERATION:
                return self._read_record()
            if op == Action.BEGIN_CLEAR_OPERATION:
                return self.store.clear(self.record_id)
        except GuestAddressError as e:      # the exchange buffer is RAM; a poisoned page can refuse
            log.warning("ERST: exchange buffer access failed: %s", e)
            return Status.HARDWARE_NOT_AVAILABLE
        return Status.SUCCESS               # dummy write, END: nothing to do

    def _offset_ok(self) -> bool:
        return self.record_offset <= self.exchange_length - CPER_RECORD_MIN_SIZE

    def _write_record(self) -> Status:
        if not self._offset_ok():
            return Status.FAILED
        base = self.exchange_base + self.record_offset
        length = struct.unpack("<I", self._mem.read(base + CPER_RECORD_LENGTH_OFFSET, 4))[0]
        if not CPER_RECORD_MIN_SIZE <= length <= self.exchange_length - self.record_offset:
            return Status.FAILED
        return self.store.write(self._mem.read(base, length))

    def _read_record(self) -> Status:
        if not self.store.records:
            return Status.RECORD_STORE_EMPTY
        if self.record_id == UNSPECIFIED_RECORD_ID:     # "the first record" (ACPI 6.4 18.5.2.2)
            self._next_index = 0
            self.record_id = self._next_record_id()
        if self.record_id == EMPTY_END_RECORD_ID or not self._offset_ok():
            return Status.FAILED
        record = self.store.read(self.record_id)
        if record is None:
            self._next_index = 0
            return Status.RECORD_NOT_FOUND
        if len(record) > self.exchange_length - self.record_offset:
            return Status.FAILED
        self._mem.write(self.exchange_base + self.record_offset, record)
        return Status.SUCCESS

    def _next_record_id(self) -> int:
        """The next id of an iteration over the store; all ones at its end (then it restarts)."""
        ids = self.store.ids()
        if self._next_index < len(ids):
            record_id = ids[self._next_index]
            self._next_index += 1
            return record_id
        self._next_index = 0
        return EMPTY_END_RECORD_ID


def _read_half(reg: int, offset: int, size: int) -> int:
    if size == 8:
        return reg & U64
    return (reg >> (32 if offset else 0)) & 0xFFFF_FFFF


def _write_half(reg: int, offset: int, size: int, value: int) -> int:
    if size == 8:
        return value & U64
    shift = 32 if offset else 0
    mask = 0xFFFF_FFFF << shift
    return (reg & ~mask & U64) | ((value & 0xFFFF_FFFF) << shift)


__all__ = ["ACTION_BITS", "ERST_ACTION", "ERST_VALUE", "EXECUTE_OPERATION_MAGIC", "ErstDevice", "VALUE_BITS"]
