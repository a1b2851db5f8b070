"""The ERST (ACPI 6.4 18.5, Error Record Serialization Table) for the board's ERST device.

Header, Serialization Header Length u32 (48, the header included, as QEMU), reserved
u32, Instruction Entry Count u32, then 32-byte Serialization Instruction Entries (ACPI
6.4 Table 18.28): action u8, instruction u8, flags u8, reserved u8, register region
GAS, value u64, mask u64. The entries are those of QEMU's hw/acpi/erst.c `build_erst`,
one action after another, against the board's ACTION and VALUE registers
(armras.devices.erst); Linux's APEI interpreter (drivers/acpi/apei/apei-base.c) runs
them.
"""
from __future__ import annotations

from dataclasses import dataclass

from armras.devices.erst import ACTION_BITS, ERST_ACTION, ERST_VALUE, EXECUTE_OPERATION_MAGIC, VALUE_BITS
from armras.firmware.acpi.builder import GAS_SPACE_SYSTEM_MEMORY, Gas, TableBuilder
from armras.ras.erst import Action, Instruction

ERST_SIGNATURE = b"ERST"
ERST_REVISION = 1
SERIALIZATION_HEADER_LENGTH = 48
ENTRY_SIZE = 32
ENTRY_FLAGS_NONE = 0              # bit 0 PRESERVE_REGISTER unset


@dataclass(frozen=True)
class _Register:
    offset: int
    bits: int


_ACTION = _Register(ERST_ACTION, ACTION_BITS)
_VALUE32 = _Register(ERST_VALUE, 32)
_VALUE64 = _Register(ERST_VALUE, VALUE_BITS)


def _register_gas(base: int, reg: _Register) -> Gas:
    # Access size code: 3 = DWORD, 4 = QWORD (ACPI 6.4 Table 5.1), as QEMU's ctz(bits) - 2.
    return Gas(GAS_SPACE_SYSTEM_MEMORY, reg.bits, 0, reg.bits.bit_length() - 1 - 2, base + reg.offset)


def _mask(bits: int) -> int:
    return (1 << bits) - 1


def _program() -> list[tuple[Action, Instruction, _Register, int]]:
    """(action, instruction, register, value) for every entry, in QEMU's order."""
    A, I = Action, Instruction
    wr_action = (I.WRITE_REGISTER_VALUE, _ACTION)
    entries: list[tuple[Action, Instruction, _Register, int]] = []

    def add(action: Action, ins: Instruction, reg: _Register, value: int) -> None:
        entries.append((action, ins, reg, value))

    def action_only(action: Action) -> None:
        add(action, *wr_action, action)

    for action in (A.BEGIN_WRITE_OPERATION, A.BEGIN_READ_OPERATION, A.BEGIN_CLEAR_OPERATION, A.END_OPERATION):
        action_only(action)
    add(A.SET_RECORD_OFFSET, I.WRITE_REGISTER, _VALUE32, 0)
    action_only(A.SET_RECORD_OFFSET)
    add(A.EXECUTE_OPERATION, I.WRITE_REGISTER_VALUE, _VALUE32, EXECUTE_OPERATION_MAGIC)
    action_only(A.EXECUTE_OPERATION)
    action_only(A.CHECK_BUSY_STATUS)
    add(A.CHECK_BUSY_STATUS, I.READ_REGISTER_VALUE, _VALUE32, 0x01)
    action_only(A.GET_COMMAND_STATUS)
    add(A.GET_COMMAND_STATUS, I.READ_REGISTER, _VALUE32, 0)
    action_only(A.GET_RECORD_IDENTIFIER)
    add(A.GET_RECORD_IDENTIFIER, I.READ_REGISTER, _VALUE64, 0)
    add(A.SET_RECORD_IDENTIFIER, I.WRITE_REGISTER, _VALUE64, 0)
    action_only(A.SET_RECORD_IDENTIFIER)
    action_only(A.GET_RECORD_COUNT)
    add(A.GET_RECORD_COUNT, I.READ_REGISTER, _VALUE32, 0)
    action_only(A.BEGIN_DUMMY_WRITE_OPERATION)
    action_only(A.GET_ERROR_LOG_ADDRESS_RANGE)
    add(A.GET_ERROR_LOG_ADDRESS_RANGE, I.READ_REGISTER, _VALUE64, 0)
    action_only(A.GET_ERROR_LOG_ADDRESS_RANGE_LENGTH)
    add(A.GET_ERROR_LOG_ADDRESS_RANGE_LENGTH, I.READ_REGISTER, _VALUE64, 0)
    action_only(A.GET_ERROR_LOG_ADDRESS_RANGE_ATTRIBUTES)
    add(A.GET_ERROR_LOG_ADDRESS_RANGE_ATTRIBUTES, I.READ_REGISTER, _VALUE32, 0)
    action_only(A.GET_EXECUTE_OPERATION_TIMINGS)
    add(A.GET_EXECUTE_OPERATION_TIMINGS, I.READ_REGISTER, _VALUE64, 0)
    return entries


def build_erst(register_base: int, oem_id: bytes, oem_table_id: bytes) -> bytes:
    """The ERST for an ERST device whose register frame is at `register_base`."""
    entries = _program()
    tb = TableBuilder(ERST_SIGNATURE, ERST_REVISION, oem_id, oem_table_id)
    tb.u32(SERIALIZATION_HEADER_LENGTH).u32(0).u32(len(entries))
    for action, ins, reg, value in entries:
        tb.u8(action).u8(ins).u8(ENTRY_FLAGS_NONE).u8(0)
        tb.gas(_register_gas(register_base, reg))
        tb.u64(value).u64(_mask(reg.bits))
    return tb.finish()


__all__ = ["ENTRY_SIZE", "ERST_SIGNATURE", "SERIALIZATION_HEADER_LENGTH", "build_erst"]
