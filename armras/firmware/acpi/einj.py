"""The EINJ table: the injection actions as reads and writes of the EINJ frame's registers.

ACPI 6.4 18.6.1 (Error Injection Table): the common header, then Injection Header Size
(u32), Injection Flags (u8), 3 reserved bytes, Injection Entry Count (u32), then one
32-byte injection instruction entry per instruction: Injection Action (u8), Instruction
(u8), Flags (u8), Reserved (u8), Register Region (GAS), Value (u64), Mask (u64). Linux's
drivers/acpi/apei/einj.c accepts a header size of 48 (the whole header) or 12.
The registers are those of armras.devices.einj.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from armras.devices.einj import (
    BUSY_BIT,
    EXECUTE_GO,
    OPERATION_BEGIN,
    OPERATION_END,
    PARAM_OFFSET,
    REG_AVAILABLE_TYPES,
    REG_BUSY,
    REG_COMMAND_STATUS,
    REG_ERROR_TYPE,
    REG_EXECUTE,
    REG_OPERATION,
    REG_TIMINGS,
    REG_TRIGGER_TABLE,
)
from armras.firmware.acpi.builder import HEADER_SIZE, Gas, TableBuilder, gas_memory

EINJ_SIGNATURE = b"EINJ"
EINJ_REVISION = 1
INJECTION_HEADER_SIZE = 48          # sizeof(struct acpi_table_einj)
INJECTION_FLAGS = 0
ENTRY_SIZE = 32
ENTRY_COUNT_OFFSET = HEADER_SIZE + 8
ENTRIES_OFFSET = HEADER_SIZE + 12

FLAG_PRESERVE_REGISTER = 1 << 0     # Instruction Flags: keep the bits outside Mask
MASK_ALL = 0xFFFF_FFFF_FFFF_FFFF
MASK_U32 = 0xFFFF_FFFF
MASK_STATUS = 0xFF


class Action(IntEnum):
    """Injection Action values (ACPI 6.4 18.6.2)."""

    BEGIN_INJECTION_OPERATION = 0x0
    GET_TRIGGER_ERROR_ACTION_TABLE = 0x1
    SET_ERROR_TYPE = 0x2
    GET_ERROR_TYPE = 0x3
    END_OPERATION = 0x4
    EXECUTE_OPERATION = 0x5
    CHECK_BUSY_STATUS = 0x6
    GET_COMMAND_STATUS = 0x7
    SET_ERROR_TYPE_WITH_ADDRESS = 0x8
    GET_EXECUTE_OPERATION_TIMINGS = 0x9
    TRIGGER_ERROR = 0xFF


class Instruction(IntEnum):
    """Injection Instructions (ACPI 6.4 18.6.3)."""

    READ_REGISTER = 0
    READ_REGISTER_VALUE = 1
    WRITE_REGISTER = 2
    WRITE_REGISTER_VALUE = 3
    NOOP = 4


@dataclass(frozen=True)
class EinjEntry:
    """One injection instruction entry."""

    action: Action
    instruction: Instruction
    flags: int
    register: Gas
    value: int
    mask: int

    def pack(self) -> bytes:
        return (struct.pack("<BBBB", self.action, self.instruction, self.flags, 0) + self.register.pack()
                + struct.pack("<QQ", self.value, self.mask))

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> "EinjEntry":
        action, instruction, flags, _reserved = struct.unpack_from("<BBBB", data, offset)
        value, mask = struct.unpack_from("<QQ", data, offset + 16)
        return cls(Action(action), Instruction(instruction), flags, Gas.unpack(data, offset + 4), value, mask)


def einj_entries(base: int) -> list[EinjEntry]:
    """The board's instructions, in the order Linux runs the actions, registers at `base`."""
    def entry(action: Action, instruction: Instruction, reg: int, value: int = 0, mask: int = MASK_ALL) -> EinjEntry:
        return EinjEntry(action, instruction, 0, gas_memory(base + reg), value, mask)

    write_value, read, write = Instruction.WRITE_REGISTER_VALUE, Instruction.READ_REGISTER, Instruction.WRITE_REGISTER
    return [
        entry(Action.BEGIN_INJECTION_OPERATION, write_value, REG_OPERATION, OPERATION_BEGIN),
        entry(Action.GET_TRIGGER_ERROR_ACTION_TABLE, read, REG_TRIGGER_TABLE),
        entry(Action.SET_ERROR_TYPE, write, REG_ERROR_TYPE, mask=MASK_U32),
        entry(Action.GET_ERROR_TYPE, read, REG_AVAILABLE_TYPES, mask=MASK_U32),
        entry(Action.END_OPERATION, write_value, REG_OPERATION, OPERATION_END),
        entry(Action.EXECUTE_OPERATION, write_value, REG_EXECUTE, EXECUTE_GO),
        entry(Action.CHECK_BUSY_STATUS, read, REG_BUSY, mask=BUSY_BIT),
        entry(Action.GET_COMMAND_STATUS, read, REG_COMMAND_STATUS, mask=MASK_STATUS),
        # Its register region is the data structure itself (Linux maps it as `v5param`).
        entry(Action.SET_ERROR_TYPE_WITH_ADDRESS, write, PARAM_OFFSET, mask=MASK_U32),
        entry(Action.GET_EXECUTE_OPERATION_TIMINGS, read, REG_TIMINGS),
    ]


def build_einj(base: int, oem_id: bytes, oem_table_id: bytes) -> bytes:
    """The EINJ table for an EINJ frame at physical `base`."""
    entries = einj_entries(base)
    tb = TableBuilder(EINJ_SIGNATURE, EINJ_REVISION, oem_id, oem_table_id)
    tb.u32(INJECTION_HEADER_SIZE)
    tb.u8(INJECTION_FLAGS)
    tb.reserved(3)
    assert tb.offset + 4 == ENTRIES_OFFSET
    tb.u32(len(entries))
    for e in entries:
        tb.raw(e.pack())
    return tb.finish()


def parse_einj(table: bytes) -> list[EinjEntry]:
    """The entries of an EINJ table (ValueError if the counts do not add up)."""
    (header_size,) = struct.unpack_from("<I", table, HEADER_SIZE)
    (count,) = struct.unpack_from("<I", table, ENTRY_COUNT_OFFSET)
    if header_size not in (INJECTION_HEADER_SIZE, INJECTION_HEADER_SIZE - HEADER_SIZE):
        raise ValueError(f"EINJ: injection header size {header_size}")
    if ENTRIES_OFFSET + count * ENTRY_SIZE != len(table):
        raise ValueError(f"EINJ: {count} entries do not fill {len(table)} bytes")
    return [EinjEntry.unpack(table, ENTRIES_OFFSET + i * ENTRY_SIZE) for i in range(count)]


__all__ = ["Action", "EinjEntry", "Instruction", "build_einj", "einj_entries", "parse_einj"]
