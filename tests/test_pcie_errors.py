"""Firmware-first PCIe records (armras.ras.pcie_errors) field by field, for each kind of function.

The record is a Generic Error Status Block with one PCI Express Error Section (UEFI 2.9 N.2.7),
read here at the offsets of Linux's struct cper_sec_pcie (include/linux/cper.h), written out:
 0 validation bits (u64), 8 port type (u32), 12 version minor/major (u8, u8), 16 command,
 18 status (u16), 24 vendor, 26 device (u16), 28 class code (3 bytes), 31 function, 32 device
 (u8), 33 segment (u16), 35 bus, 36 secondary bus (u8), 40 serial number (u64), 48 bridge
 secondary status, 50 bridge control (u16), 52 PCI Express capability (60 bytes), 112 AER
 capability (96 bytes; Linux's struct aer_capability_regs is its first 56).
"""
from __future__ import annotations

import struct
import uuid

import pytest

from armras.devices.pcie import PcieHost
from armras.errors import ArmrasError
from armras.ras import cper
from armras.ras.pcie_errors import STATUS_NAMES, PcieError, firmware_first_record, function_at, parse_bdf

PCIE_SECTION = uuid.UUID("d995e954-bbc1-430f-ad91-b44dcb3c6f35")
AER = 0x100
PCI_COMMAND, PCI_STATUS, PCI_PRIMARY_BUS, PCI_SEC_STATUS, PCI_BRIDGE_CONTROL = 0x04, 0x06, 0x18, 0x1E, 0x3E
PCI_ERR_UNCOR_STATUS, PCI_ERR_UNCOR_SEVER, PCI_ERR_COR_STATUS, PCI_ERR_CAP = 0x04, 0x0C, 0x10, 0x18
PCI_ERR_HEADER_LOG = 0x1C
PCI_EXP_DEVCTL, PCI_EXP_DEVSTA = 0x48, 0x4A
PCI_EXP_DEVSTA_CED, PCI_EXP_DEVSTA_NFED, PCI_EXP_DEVSTA_FED = 1, 2, 4
PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER, PCI_COMMAND_SERR = 0x2, 0x4, 0x100
PCI_STATUS_CAP_LIST, PCI_STATUS_SIG_SYSTEM_ERROR = 0x10, 0x4000
PCI_BRIDGE_CTL_SERR = 0x02
PCI_MEMORY_BASE, PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR = 0x20, 0x4000
COR_RCVR, UNCOR_DLP, UNCOR_COMP_TIME, UNCOR_UNSUP = 1 << 0, 1 << 4, 1 << 14, 1 << 20
VALID_ALL_BUT_SERIAL_AND_BRIDGE = 0xCF        # port type, version, command/status, device id, capability, AER
VALID_BRIDGE_CONTROL = 1 << 5
FATAL, RECOVERABLE, CORRECTED = 1, 0, 2       # CPER Error Severity


class Gic:
    def set_level(self, intid: int, level: bool) -> None:
        pass

    def pulse(self, intid: int) -> None:
        pass


def ecam(bus: int, dev: int = 0, fn: int = 0) -> int:
    return bus << 20 | dev << 15 | fn << 12


@pytest.fixture
def host() -> PcieHost:
    h = PcieHost(Gic(), 36, 37)
    # Bus numbers as Linux assigns them: 00:01.0 -> 1; 00:02.0 -> 2..4, 02:00.0 -> 3..4, 03:00.0 -> 4.
    h.write(ecam(0, 1) + PCI_PRIMARY_BUS, 4, 0x00_01_01_00)
    h.write(ecam(0, 2) + PCI_PRIMARY_BUS, 4, 0x00_04_02_00)
    h.write(ecam(2) + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)
    h.write(ecam(3) + PCI_PRIMARY_BUS, 4, 0x00_04_04_03)
    return h


def _section(record: bytes) -> tuple[cper.ErrorStatus, bytes]:
    status = cper.parse_generic_error_status(record)
    assert len(status.entries) == 1 and status.entries[0].section_type == PCIE_SECTION
    payload = status.entries[0].payload
    assert len(payload) == 208
    return status, payload


def _config(host: PcieHost, bdf: tuple[int, int, int]) -> bytes:
    base = ecam(*bdf)
    return b"".join(host.read(base + off, 4).to_bytes(4, "little") for off in range(0, 0x200, 4))


@pytest.mark.parametrize("bdf, port_type, ids, class_code, secondary, bridge", [
    ((1, 0, 0), 0, (0x1B36, 0x0005), 0x00FF00, 0, False),      # the endpoint below 00:01.0
    ((0, 1, 0), 4, (0x1B36, 0x000C), 0x060400, 1, True),       # root port
    ((0, 2, 0), 4, (0x1B36, 0x000C), 0x060400, 2, True),       # the root port above the switch
    ((2, 0, 0), 5, (0x104C, 0x8232), 0x060400, 3, True),       # switch upstream port (x3130)
    ((3, 0, 0), 6, (0x104C, 0x8233), 0x060400, 4, True),       # switch downstream port
])
def test_every_field_of_the_section_is_the_functions(host: PcieHost, bdf: tuple[int, int, int], port_type: int,
                                                     ids: tuple[int, int], class_code: int, secondary: int,
                                                     bridge: bool) -> None:
    base = ecam(*bdf)
    # What the OS set up before the error: memory + bus master + SERR#, reporting enabled,
    # and on a bridge SERR# forwarding.
    host.write(base + PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR)
    host.write(base + PCI_EXP_DEVCTL, 2, 0x7)
    if bridge:
        host.write(base + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_SERR)
        host.write(base + PCI_MEMORY_BASE, 4, 0x1010_1000)             # a memory window after the status
        # An error already forwarded from below: Received System Error in the secondary status.
        fn = host.find(bdf[0] << 8 | bdf[1] << 3 | bdf[2])
        assert fn is not None
        fn.cfg.set(PCI_SEC_STATUS, 2, PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR)
    before = _config(host, bdf)
    rid = bdf[0] << 8 | bdf[1] << 3 | bdf[2]
    header = (0x4A00_0001, 0x0100_000F, 0x1000_0000, 0x0000_0004)
    record = firmware_first_record(host, rid, PcieError(uncor=UNCOR_UNSUP, header_log=header))
    status, sec = _section(record)
    assert status.severity == RECOVERABLE and status.entries[0].severity == RECOVERABLE

    valid, ptype, minor, major = struct.unpack_from("<QIBB", sec, 0)
    assert valid == VALID_ALL_BUT_SERIAL_AND_BRIDGE | (VALID_BRIDGE_CONTROL if bridge else 0)
    assert ptype == port_type and (major, minor) == (4, 0)
    command, pci_status = struct.unpack_from("<HH", sec, 16)
    assert command == PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR
    # A non-fatal error sent with SERR# enabled sets Signaled System Error (PCIe Base 4.0 7.5.1.1.4).
    assert pci_status == PCI_STATUS_CAP_LIST | PCI_STATUS_SIG_SYSTEM_ERROR
    assert struct.unpack_from("<HH", sec, 24) == ids
    assert int.from_bytes(sec[28:31], "little") == class_code
    function, device, segment, bus, secondary_bus = struct.unpack_from("<BBHBB", sec, 31)
    assert (bus, device, function, segment) == (bdf[0], bdf[1], bdf[2], 0)
    assert secondary_bus == secondary if bridge else secondary_bus == 0
    assert struct.unpack_from("<Q", sec, 40) == (0,)                       # no serial number
    sec_status, bridge_control = struct.unpack_from("<HH", sec, 48)
    assert (sec_status, bridge_control) == ((PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR, PCI_BRIDGE_CTL_SERR) if bridge
                                             else (0, 0))
    # The capability and AER bytes are the function's registers with the error logged ...
    capability, aer = sec[52:112], sec[112:208]
    assert capability[:0x0A] == before[0x40:0x4A] and capability[0x0C:] == before[0x4C:0x7C]
    devsta = int.from_bytes(capability[0x0A:0x0C], "little")
    assert devsta == PCI_EXP_DEVSTA_NFED
    assert struct.unpack_from("<I", aer, PCI_ERR_UNCOR_STATUS) == (UNCOR_UNSUP,)
    assert struct.unpack_from("<I", aer, PCI_ERR_UNCOR_SEVER) == (0x0046_2030,)
    assert struct.unpack_from("<I", aer, PCI_ERR_CAP)[0] & 0x1F == 20       # First Error Pointer: UR
    assert struct.unpack_from("<4I", aer, PCI_ERR_HEADER_LOG) == header
    assert aer[0x38:] == bytes(96 - 0x38)                                  # beyond aer_capability_regs
    assert aer[:PCI_ERR_UNCOR_STATUS] == before[AER:AER + 4]               # the extended capability header
    # ... which firmware cleared: the function reads as it did before.
    assert _config(host, bdf) == before


def test_the_record_severity_follows_the_error_and_can_be_overridden(host: PcieHost) -> None:
    rid = 0x0100                                                            # 01:00.0
    cases = [(STATUS_NAMES["cor"], CORRECTED), (STATUS_NAMES["uncor-nonfatal"], RECOVERABLE),
             (STATUS_NAMES["uncor-fatal"], FATAL), (PcieError(cor=COR_RCVR, uncor=UNCOR_COMP_TIME), RECOVERABLE),
             (PcieError(cor=COR_RCVR, uncor=UNCOR_DLP | UNCOR_COMP_TIME), FATAL)]
    for error, severity in cases:
        status, sec = _section(firmware_first_record(host, rid, error))
        assert (status.severity, status.entries[0].severity) == (severity, severity), error
        aer = sec[112:208]
        assert struct.unpack_from("<I", aer, PCI_ERR_COR_STATUS) == (error.cor,)
        assert struct.unpack_from("<I", aer, PCI_ERR_UNCOR_STATUS) == (error.uncor,)
    # The user's severity= sets the record's; the section keeps the error's own.
    status, _ = _section(firmware_first_record(host, rid, STATUS_NAMES["uncor-fatal"], cper.Severity.RECOVERABLE))
    assert (status.severity, status.entries[0].severity) == (RECOVERABLE, FATAL)
    status, _ = _section(firmware_first_record(host, rid, STATUS_NAMES["cor"], cper.Severity.FATAL))
    assert (status.severity, status.entries[0].severity) == (FATAL, CORRECTED)


def test_severity_reads_the_functions_severity_register(host: PcieHost) -> None:
    fn = host.endpoint
    assert PcieError(uncor=UNCOR_COMP_TIME).severity(fn) == cper.Severity.RECOVERABLE
    assert PcieError(uncor=UNCOR_DLP).severity(fn) == cper.Severity.FATAL
    assert PcieError(cor=COR_RCVR).severity(fn) == cper.Severity.CORRECTED
    assert PcieError().severity(fn) == cper.Severity.CORRECTED
    # The OS made Completion Timeout fatal: the same error is now fatal.
    host.write(ecam(1) + AER + PCI_ERR_UNCOR_SEVER, 4, 0x0046_2030 | UNCOR_COMP_TIME)
    assert PcieError(uncor=UNCOR_COMP_TIME).severity(fn) == cper.Severity.FATAL
    assert PcieError(uncor=UNCOR_DLP).severity(fn) == cper.Severity.FATAL


@pytest.mark.parametrize("text, rid", [("00:01.0", 0x0008), ("01:00.0", 0x0100), ("ff:1f.7", 0xFFFF),
                                       ("03:00.0", 0x0300), ("0a:02.3", 0x0A13)])
def test_parse_bdf(text: str, rid: int) -> None:
    assert parse_bdf(text) == rid


@pytest.mark.parametrize("text, message", [
    ("1:0", "dev='1:0' is not BB:DD.F (e.g. 01:00.0)"),
    ("x:00.0", "dev='x:00.0' is not BB:DD.F (e.g. 01:00.0)"),
    ("00:01", "dev='00:01' is not BB:DD.F (e.g. 01:00.0)"),
    ("00:01.a", "dev='00:01.a' is not BB:DD.F (e.g. 01:00.0)"),
    ("100:00.0", "dev='100:00.0' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
    ("00:20.0", "dev='00:20.0' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
    ("00:01.8", "dev='00:01.8' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
    ("-1:00.0", "dev='-1:00.0' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
    ("00:-1.0", "dev='00:-1.0' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
    ("00:01.-1", "dev='00:01.-1' is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7"),
])
def test_parse_bdf_refusals_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ArmrasError) as info:
        parse_bdf(text)
    assert str(info.value) == message


def test_a_missing_function_names_the_ones_the_board_has(host: PcieHost) -> None:
    assert function_at(host, 0x0300) is host.switch_downstream
    with pytest.raises(ArmrasError) as info:
        function_at(host, 0x0500)
    assert str(info.value) == "no PCIe function at 05:00.0 (the board has 00:01.0, 01:00.0, 00:02.0, 02:00.0, 03:00.0)"
    # Before the OS numbers the buses only the root ports are reachable.
    fresh = PcieHost(Gic(), 36, 37)
    with pytest.raises(ArmrasError) as info:
        firmware_first_record(fresh, 0x0100, STATUS_NAMES["cor"])
    assert str(info.value) == "no PCIe function at 01:00.0 (the board has 00:01.0, 00:02.0)"
