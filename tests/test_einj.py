"""EINJ (ACPI 6.4 18.6): the action registers, the SET_ERROR_TYPE_WITH_ADDRESS data
structure and the trigger table as a guest sees them, the command status a bad request
gets, the EINJ table through iasl, and what an injection becomes on the board.

Values are the spec's: error types 0x8 memory correctable, 0x10 memory uncorrectable
non-fatal, 0x20 memory uncorrectable fatal; command status 0 success, 1 unknown
failure, 2 invalid access; the data structure as Linux's `struct
set_error_type_with_address` (type +0, vendor extension +4, flags +8, APIC id +12, memory
address +16, memory address range +24, PCIe SBDF +32); flag 0x2 = memory address valid;
the Trigger Error Action Table header: header size 16, revision, table size, entry count.
"""
from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from armras.devices.einj import CommandStatus, EinjDevice
from armras.firmware.acpi import board_platform, build_acpi_tables
from armras.board.memmap import DEFAULT_RAM_SIZE, FirmwareLayout
from conftest import require_tool
from test_machine import guest
from test_sea import CPER_PA_OFFSET

FRAME = 0x0912_0000           # the EINJ frame's physical address (the board's memory map)
RAM = (0x4000_0000, 0x6000_0000)
VICTIM = 0x4800_0000
ONE_PAGE = 0xFFFF_FFFF_FFFF_F000
IASL_HOW = "apt-get install acpica-tools"

# Register offsets as the EINJ table gives them (checked against the table below).
BEGIN, EXECUTE, BUSY, STATUS, ERROR_TYPE, AVAILABLE, TRIGGER, TIMINGS = (0x00, 0x08, 0x10, 0x18, 0x20, 0x28,
                                                                           0x30, 0x38)
PARAM = 0x100


class Recorder:
    def __init__(self) -> None:
        self.requests: list = []
        self.complete = None

    def __call__(self, request, complete) -> None:
        self.requests.append(request)
        self.complete = complete


def device() -> tuple[EinjDevice, Recorder]:
    rec = Recorder()
    return EinjDevice(FRAME, lambda pa: RAM[0] <= pa < RAM[1], rec), rec


def set_param(dev: EinjDevice, error_type: int, address: int, mask: int = ONE_PAGE, flags: int = 0x2) -> None:
    """As Linux's __einj_error_inject writes v5param: u32 type, flags; u64 address, range."""
    dev.write(PARAM + 0, 4, error_type)
    dev.write(PARAM + 16, 8, address)
    dev.write(PARAM + 24, 8, mask)
    dev.write(PARAM + 8, 4, flags)


def test_available_types_trigger_table_and_timings() -> None:
    dev, _ = device()
    assert dev.read(AVAILABLE, 8) == 0x8 | 0x10 | 0x20
    trigger = dev.read(TRIGGER, 8)
    assert trigger == FRAME + 0x200
    header = bytes(dev.read(trigger - FRAME + i, 1) for i in range(16))
    assert struct.unpack("<IIII", header) == (16, 1, 16, 0)    # no entries: nothing to trigger
    assert dev.read(TIMINGS, 8) >> 32 >= dev.read(TIMINGS, 8) & 0xFFFF_FFFF  # max >= nominal
    assert dev.read(BUSY, 8) == 0 and dev.read(STATUS, 8) == 0


def test_execute_is_busy_until_the_board_completes_it() -> None:
    dev, rec = device()
    dev.write(BEGIN, 8, 1)
    set_param(dev, 0x10, VICTIM + 0x123)
    assert dev.read(PARAM + 16, 8) == VICTIM + 0x123 and dev.read(PARAM + 8, 4) == 2
    dev.write(EXECUTE, 8, 1)
    assert [(int(r.error_type), r.address) for r in rec.requests] == [(0x10, VICTIM + 0x123)]
    assert dev.read(BUSY, 8) & 1 == 1
    dev.write(EXECUTE, 8, 1)                   # a second EXECUTE while busy is not a second request
    assert len(rec.requests) == 1
    rec.complete(CommandStatus.SUCCESS)
    assert dev.read(BUSY, 8) == 0 and dev.read(STATUS, 8) == 0
    rec.complete(CommandStatus.UNKNOWN_FAILURE)
    assert dev.read(STATUS, 8) == 1


@pytest.mark.parametrize("error_type, address, mask, flags", [
    (0x1, VICTIM, ONE_PAGE, 0x1),                  # processor correctable: not available
    (0x40, VICTIM, ONE_PAGE, 0x4),                 # PCIe correctable: not available
    (0x18, VICTIM, ONE_PAGE, 0x2),                 # two types at once
    (0x8000_0008, VICTIM, ONE_PAGE, 0x2),          # vendor-defined
    (0x10, 0x0900_0000, ONE_PAGE, 0x2),            # the UART, not RAM
    (0x10, 0x1_0000_0000, ONE_PAGE, 0x2),          # beyond RAM
    (0x10, 0xFFFF_FFFF_FFFF_F000, ONE_PAGE, 0x2),  # all ones
    (0x10, VICTIM, 0xFFFF_FFFF_FFFF_0000, 0x2),    # a 64 KiB range: coarser than a page
    (0x10, VICTIM, ONE_PAGE, 0x8),                 # a reserved flag
    (0x10, 0, ONE_PAGE, 0x0),                      # no address, and the platform picks none
], ids=["processor", "pcie", "two-types", "vendor", "mmio", "beyond-ram", "all-ones", "coarse-mask",
        "reserved-flag", "no-address"])
def test_bad_requests_complete_at_once_with_invalid_access(error_type, address, mask, flags) -> None:
    dev, rec = device()
    set_param(dev, error_type, address, mask, flags)
    dev.write(EXECUTE, 8, 1)
    assert rec.requests == []
    assert dev.read(BUSY, 8) == 0
    assert dev.read(STATUS, 8) == 2


def test_odd_accesses_are_harmless() -> None:
    dev, rec = device()
    for offset in (0x3, 0x40, 0x7F8, 0xFFF, PARAM + 0x3C):
        for size in (1, 2, 4, 8):
            dev.write(offset, size, (1 << 64) - 1)
            assert 0 <= dev.read(offset, size) < 1 << (8 * size)
    dev.write(EXECUTE, 8, 0)                  # EXECUTE without the go bit does nothing
    assert rec.requests == [] and dev.read(AVAILABLE, 8) == 0x38
    dev.write(PARAM + 0x3E, 8, 0x1122334455667788)   # runs off the end of the structure's window
    assert dev.read(PARAM + 0x3E, 2) == 0x7788


def test_a_guest_repeating_a_bad_request_gets_a_few_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    dev, rec = device()
    set_param(dev, 0x10, 0x0900_0000)
    with caplog.at_level("WARNING"):
        for _ in range(10_000):
            dev.write(EXECUTE, 8, 1)
    assert rec.requests == [] and dev.read(STATUS, 8) == 2
    assert 1 <= len(caplog.records) <= 4


# ------------------------------------------------------------ the table

def _einj_table() -> bytes:
    tables = build_acpi_tables(board_platform(RAM[0], DEFAULT_RAM_SIZE), FirmwareLayout(RAM[0], DEFAULT_RAM_SIZE).acpi_base)
    return tables.table("EINJ")


def test_einj_table_through_iasl(tmp_path: Path) -> None:
    iasl = require_tool("iasl", IASL_HOW)
    table = _einj_table()
    (tmp_path / "einj.dat").write_bytes(table)
    proc = subprocess.run([iasl, "-d", "einj.dat"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dsl = (tmp_path / "einj.dsl").read_text()
    assert "Injection Header Length : 00000030" in dsl
    assert "Injection Entry Count : 0000000A" in dsl
    # Each action (as iasl names them) with its instruction and register address.
    rows = []
    for block in dsl.split("Action : ")[1:]:
        action = re.match(r"[0-9A-F]+ \[([^\]]+)\]", block)
        instruction = re.search(r"Instruction : [0-9A-F]+ \[([^\]]+)\]", block)
        address = re.search(r"Address : ([0-9A-F]+)", block)
        mask = re.search(r"Mask : ([0-9A-F]+)", block)
        assert action and instruction and address and mask, block
        rows.append((action[1], instruction[1], int(address[1], 16), int(mask[1], 16)))
    assert rows == [
        ("Begin Operation", "Write Register Value", FRAME + BEGIN, 0xFFFF_FFFF_FFFF_FFFF),
        ("Get Trigger Table", "Read Register", FRAME + TRIGGER, 0xFFFF_FFFF_FFFF_FFFF),
        ("Set Error Type", "Write Register", FRAME + ERROR_TYPE, 0xFFFF_FFFF),
        ("Get Error Type", "Read Register", FRAME + AVAILABLE, 0xFFFF_FFFF),
        ("End Operation", "Write Register Value", FRAME + BEGIN, 0xFFFF_FFFF_FFFF_FFFF),
        ("Execute Operation", "Write Register Value", FRAME + EXECUTE, 0xFFFF_FFFF_FFFF_FFFF),
        ("Check Busy Status", "Read Register", FRAME + BUSY, 1),
        ("Get Command Status", "Read Register", FRAME + STATUS, 0xFF),
        ("Set Error Type With Address", "Write Register", FRAME + PARAM, 0xFFFF_FFFF),
        ("Get Execute Timings", "Read Register", FRAME + TIMINGS, 0xFFFF_FFFF_FFFF_FFFF),
    ]
    assert dsl.count("[SystemMemory]") == 10 and dsl.count("[QWord Access:64]") == 10
    # ... and iasl compiles the disassembly back to the same table (its own creator id aside).
    proc = subprocess.run([iasl, "-p", "again", "einj.dsl"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "again.aml").read_bytes()[36:] == table[36:]


# ------------------------------------------------------------ on the board

def einj_guest(error_type: int, address: int, then: str = "") -> str:
    """Linux's sequence: BEGIN, the data structure, EXECUTE, poll CHECK_BUSY_STATUS,
    GET_COMMAND_STATUS (x4), GET_TRIGGER_ERROR_ACTION_TABLE (x5), END."""
    return guest(f"""
 ldr x1, ={FRAME:#x}
 mov x2, #1
 str x2, [x1, #{BEGIN}]
 ldr x2, ={error_type:#x}
 str w2, [x1, #{PARAM}]
 ldr x2, ={address:#x}
 str x2, [x1, #{PARAM + 16}]
 ldr x2, ={ONE_PAGE:#x}
 str x2, [x1, #{PARAM + 24}]
 mov x2, #2
 str w2, [x1, #{PARAM + 8}]
 mov x2, #1
 str x2, [x1, #{EXECUTE}]
 mov x6, #0
busy:
 add x6, x6, #1
 ldr x3, [x1, #{BUSY}]
 tbnz x3, #0, busy
 ldr x4, [x1, #{STATUS}]
 ldr x5, [x1, #{TRIGGER}]
 str xzr, [x1, #{BEGIN}]
{then}
""")


def test_uncorrectable_poisons_the_page_and_its_access_takes_an_sea(board) -> None:
    b = board(einj_guest(0x10, VICTIM + 0x40, f"""
 ldr x7, ={VICTIM + 0x40:#x}
 adr x28, back
 ldr x8, [x7]             // consumes the poison
back:
"""))
    r = b.run()
    assert r.status == 0
    assert b.x(4) == 0 and b.x(5) == FRAME + 0x200
    assert VICTIM in b.machine.poisoned
    assert b.x(20) == 0x96000410          # EC 0x25 (DABT, same EL), IL, FnV, DFSC 0x10
    assert b.machine.mem.read_u64(b.machine.sources.by_id(0).block_address() + CPER_PA_OFFSET) == VICTIM
    assert b.machine.einj.injections == 1


@pytest.mark.parametrize("error_type, severity", [(0x8, 2), (0x20, 1)], ids=["corrected", "fatal"])
def test_correctable_and_fatal_post_a_gpio_record(board, error_type: int, severity: int) -> None:
    b = board(einj_guest(error_type, VICTIM + 0x40))
    r = b.run()
    assert r.status == 0 and b.x(4) == 0
    assert b.machine.poisoned == set()
    block = b.machine.sources.by_id(1).block_address()       # source 1: GPIO-notified
    # Generic Error Status Block (ACPI 6.4 18.3.2.7.1): error severity at +16
    # (0 recoverable, 1 fatal, 2 corrected); the memory error's physical address.
    assert b.machine.mem.read_u32(block + 16) == severity
    assert b.machine.mem.read_u64(block + CPER_PA_OFFSET) == VICTIM + 0x40
    assert b.machine.ged.selector & 0x20                     # the GED error event is pending


def test_poisoning_firmware_memory_is_an_unknown_failure(board) -> None:
    reserved = FirmwareLayout(RAM[0], DEFAULT_RAM_SIZE).reserved_base
    b = board(einj_guest(0x10, reserved))
    r = b.run()
    assert r.status == 0
    assert b.x(4) == 1                     # UNKNOWN_FAILURE, and the board runs on
    assert b.machine.poisoned == set()


def test_bad_request_from_the_guest_is_invalid_access(board) -> None:
    b = board(einj_guest(0x2, VICTIM))     # processor uncorrectable: not available
    r = b.run()
    assert r.status == 0 and b.x(4) == 2 and b.x(6) == 1     # not busy at the first poll



def test_uncorrectable_without_an_sea_source_is_an_unknown_failure(board) -> None:
    from armras.ras.sources import BOARD_SOURCES, Notify

    gpio_only = tuple(s for s in BOARD_SOURCES if s.notify is Notify.GPIO)
    b = board(einj_guest(0x10, VICTIM), hest=gpio_only)
    r = b.run()
    assert r.status == 0 and b.x(4) == 1   # nothing could report the access: not poisoned
    assert b.machine.poisoned == set()


# --- what mutation testing found unchecked (benchmarks/mutation.sh) ----------------------

def _refusal(dev: EinjDevice, caplog: pytest.LogCaptureFixture) -> str:
    """EXECUTE_OPERATION; the one line its refusal logged (after clearing earlier ones)."""
    caplog.clear()
    dev.write(EXECUTE, 8, 1)
    assert dev.read(STATUS, 8) == CommandStatus.INVALID_ACCESS
    (line,) = [r.getMessage() for r in caplog.records if r.name == "armras.devices.einj"]
    assert line.startswith("EINJ: EXECUTE_OPERATION refused (INVALID_ACCESS): ")
    return line.split(": ", 2)[2]


def test_reset_state_and_register_read_back() -> None:
    dev, rec = device()
    assert [dev.read(off, 8) for off in (BEGIN, EXECUTE, BUSY, STATUS, ERROR_TYPE)] == [0, 0, 0, 0, 0]
    dev.write(BEGIN, 8, 1)                                  # BEGIN_INJECTION_OPERATION
    dev.write(ERROR_TYPE, 8, 0x1_0000_0010)                 # a 32-bit register: the upper half is dropped
    assert (dev.read(BEGIN, 8), dev.read(ERROR_TYPE, 8), dev.read(STATUS, 8)) == (1, 0x10, 0)
    dev.write(EXECUTE, 8, 0)                                # without bit 0 EXECUTE does nothing
    dev.write(BEGIN, 8, 1)
    dev.write(ERROR_TYPE, 8, 0x11)
    assert rec.requests == [] and dev.read(STATUS, 8) == 0 and dev.read(BUSY, 8) == 0
    assert dev.read(PARAM, 4) == 0
    dev.write(PARAM, 4, 0x10)                               # the data structure's first field
    assert dev.read(PARAM, 4) == 0x10 and dev.read(PARAM, 8) == 0x10


def test_a_write_across_the_end_of_the_data_structure_keeps_only_its_part() -> None:
    dev, _ = device()
    dev.write(PARAM + 0x3C, 8, 0x1122_3344_5566_7788)
    assert dev.read(PARAM + 0x3C, 8) == 0x5566_7788 and len(dev.param) == 0x40


def test_each_refusal_says_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", "armras.devices.einj")
    dev, rec = device()
    # The ACPI 4.0 way: SET_ERROR_TYPE with no data structure gives no address.
    dev.write(ERROR_TYPE, 8, 0x10)
    assert _refusal(dev, caplog) == "no memory address (the platform does not choose one)"
    dev.write(ERROR_TYPE, 8, 0x1)
    assert _refusal(dev, caplog) == "error type 0x1 is not one of the available types 0x38"
    set_param(dev, 0x1, VICTIM)                             # processor correctable: not offered
    assert _refusal(dev, caplog) == "error type 0x1 is not one of the available types 0x38"
    set_param(dev, 0x8000_0010, VICTIM)                     # vendor-defined
    assert _refusal(dev, caplog) == "error type 0x80000010 is not one of the available types 0x38"
    set_param(dev, 0x10, VICTIM, flags=0x8)
    assert _refusal(dev, caplog) == "reserved flags 0x8"
    set_param(dev, 0x10, 0, flags=0x2)                      # "valid" address 0: not RAM here
    assert _refusal(dev, caplog) == "memory address 0x0 is not RAM"
    set_param(dev, 0x10, 0x8000_0000_0000_0000)
    assert _refusal(dev, caplog) == "memory address 0x8000000000000000 is not RAM"
    set_param(dev, 0x10, VICTIM, mask=0xFFFF_FFFF_FFFF_0000 | 0x800)
    assert _refusal(dev, caplog) == "memory address range 0xffffffffffff0800 is coarser than a 4 KiB page"
    assert rec.requests == []
    # Flags without "memory address valid" but an address given: the address is used.
    set_param(dev, 0x10, VICTIM, flags=0)
    dev.write(EXECUTE, 8, 1)
    assert [(r.error_type, r.address) for r in rec.requests] == [(0x10, VICTIM)]


def test_the_two_address_refusals_share_one_log_budget(caplog: pytest.LogCaptureFixture) -> None:
    # A guest looping over bad addresses of either kind gets three lines, then a count.
    caplog.set_level("WARNING", "armras.devices.einj")
    dev, _ = device()
    set_param(dev, 0x10, 0, flags=0)
    for _ in range(3):
        dev.write(EXECUTE, 8, 1)
    set_param(dev, 0x10, 0x10, flags=0x2)
    dev.write(EXECUTE, 8, 1)
    assert dev.read(STATUS, 8) == CommandStatus.INVALID_ACCESS
    assert [r.getMessage() for r in caplog.records].count(
        "EINJ: EXECUTE_OPERATION refused (INVALID_ACCESS): no memory address (the platform does not choose one)") == 3
    assert not any("not RAM" in r.getMessage() for r in caplog.records)


def test_sizes_outside_one_to_eight_bytes_read_zero() -> None:
    dev, _ = device()
    dev.write(ERROR_TYPE, 8, 0x11)                          # odd: a mask of 1 would show
    dev.write(PARAM, 4, 0x20)
    for size in (0, 9, 16):
        assert dev.read(AVAILABLE, size) == 0 and dev.read(ERROR_TYPE, size) == 0, size
        assert dev.read(PARAM, size) == (0 if size == 0 else 0x20), size   # the data structure: its bytes
    assert (dev.read(AVAILABLE, 1), dev.read(AVAILABLE, 2)) == (0x38, 0x38)


def test_a_busy_execute_is_ignored_with_a_line_and_completions_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", "armras.devices.einj")
    dev, rec = device()
    set_param(dev, 0x10, VICTIM)
    dev.write(EXECUTE, 8, 1)
    dev.write(EXECUTE, 8, 1)                                # still busy: ignored
    assert len(rec.requests) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "EINJ: EXECUTE_OPERATION while the previous one is still busy; ignored"]
    rec.complete(CommandStatus.SUCCESS)
    dev.write(EXECUTE, 8, 1)
    rec.complete(CommandStatus.SUCCESS)
    dev.write(EXECUTE, 8, 1)
    rec.complete(CommandStatus.UNKNOWN_FAILURE)
    assert dev.injections == 2 and dev.read(STATUS, 8) == CommandStatus.UNKNOWN_FAILURE and dev.read(BUSY, 8) == 0
