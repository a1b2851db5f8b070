"""The PCIe host bridge, root port and endpoint: ECAM decoding, config-space semantics, AER.

Register offsets and values are PCIe Base 4.0's (7.5.1 headers, 7.5.3 PCI Express
Capability, 7.8.4 AER) and Linux's include/uapi/linux/pci_regs.h, written out here.
"""
from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armras.board.machine import Machine
from armras.devices.pcie import PcieHost
from armras.drive.inject import parse_inject_spec, perform
from armras.errors import ArmrasError
from armras.ras import cper

ECAM = 0x3F00_0000
RP = 1 << 15                   # ECAM offset of 00:01.0
AER = 0x100                    # where both functions put AER (PCI_EXT_CAP_ID_ERR at 0x100)
PCI_ERR_UNCOR_STATUS, PCI_ERR_UNCOR_SEVER, PCI_ERR_COR_STATUS, PCI_ERR_COR_MASK = 0x04, 0x0C, 0x10, 0x14
PCI_ERR_CAP, PCI_ERR_ROOT_COMMAND, PCI_ERR_ROOT_STATUS, PCI_ERR_ROOT_ERR_SRC = 0x18, 0x2C, 0x30, 0x34
ROOT_PORT_INTID = 32 + 3 + (1 + 0) % 4      # QEMU virt: SPI 3 + (slot 1 + INTA) % 4
SWITCH_ROOT_PORT_INTID = 32 + 3 + (2 + 0) % 4   # the root port 00:02.0 above the switch


class Gic:
    def __init__(self) -> None:
        self.levels: dict[int, bool] = {}

    def set_level(self, intid: int, level: bool) -> None:
        self.levels[intid] = level

    def pulse(self, intid: int) -> None:
        raise AssertionError("INTx is level-triggered")


def ep(bus: int = 1) -> int:
    return bus << 20


@pytest.fixture
def host() -> PcieHost:
    h = PcieHost(Gic(), ROOT_PORT_INTID, SWITCH_ROOT_PORT_INTID)
    h.write(RP + 0x18, 4, 0x00_01_01_00)       # primary 0, secondary 1, subordinate 1 (as Linux assigns)
    return h


def test_enumeration_ids_and_absent_functions(host: PcieHost) -> None:
    assert host.read(RP + 0x00, 4) == 0x000C_1B36            # QEMU pcie-root-port
    assert host.read(RP + 0x08, 4) >> 8 == 0x060400           # PCI-to-PCI bridge
    assert host.read(RP + 0x0E, 1) == 0x01                    # type 1 header
    assert host.read(ep() + 0x00, 4) == 0x0005_1B36
    assert host.read(ep() + 0x0E, 1) == 0x00
    # No function: master abort, all ones, at every size; writes vanish.
    for offset in (0, 1 << 15 | 1 << 12, 3 << 15, 1 << 20 | 1 << 15, 2 << 20, 15 << 20 | 0xFFC):
        assert host.read(offset, 4) == 0xFFFF_FFFF
        assert host.read(offset, 1) == 0xFF
        assert host.read(offset, 8) == 0xFFFF_FFFF_FFFF_FFFF
        host.write(offset, 4, 0)
    # Before the OS numbers the secondary bus, bus 1 is nobody's.
    fresh = PcieHost(Gic(), ROOT_PORT_INTID, SWITCH_ROOT_PORT_INTID)
    assert fresh.read(ep(), 4) == 0xFFFF_FFFF


def test_capability_chain(host: PcieHost) -> None:
    for base in (RP, ep()):
        assert host.read(base + 0x06, 2) & 0x10              # PCI_STATUS_CAP_LIST
        cap = host.read(base + 0x34, 1)
        assert host.read(base + cap, 1) == 0x10              # PCI_CAP_ID_EXP, the only one
        assert host.read(base + cap + 1, 1) == 0
        header = host.read(base + AER, 4)
        assert header & 0xFFFF == 0x0001 and (header >> 16) & 0xF == 2 and header >> 20 == 0
    assert (host.read(RP + 0x42, 2) >> 4) & 0xF == 0x4        # PCI_EXP_TYPE_ROOT_PORT
    assert (host.read(ep() + 0x42, 2) >> 4) & 0xF == 0x0      # PCI_EXP_TYPE_ENDPOINT
    assert host.read(RP + 0x3D, 1) == 1                       # INTA
    assert host.read(RP + AER + PCI_ERR_UNCOR_SEVER, 4) == 0x0046_2030
    assert host.read(RP + AER + PCI_ERR_COR_MASK, 4) == 0x0000_2000


def test_read_only_rw1c_and_unaligned(host: PcieHost) -> None:
    host.write(RP + 0x00, 4, 0)                               # IDs are read-only
    assert host.read(RP + 0x00, 4) == 0x000C_1B36
    host.write(RP + 0x10, 4, 0xFFFF_FFFF)                     # no BARs: sizing reads 0
    assert host.read(RP + 0x10, 4) == 0 and host.read(ep() + 0x10, 4) == 0
    host.write(RP + 0x20, 4, 0xFFFF_FFFF)                     # memory base/limit: bits 15:4 only
    assert host.read(RP + 0x20, 4) == 0xFFF0_FFF0
    assert host.read(RP + 0x1C, 1) & 0xF == 1                 # 32-bit I/O decode, read-only
    host.inject_aer(1 << 8, cor=1)
    assert host.read(ep() + AER + PCI_ERR_COR_STATUS, 4) == 1
    host.write(ep() + AER + PCI_ERR_COR_STATUS, 4, 0)         # writing 0 keeps an RW1C bit
    assert host.read(ep() + AER + PCI_ERR_COR_STATUS, 4) == 1
    host.write(ep() + AER + PCI_ERR_COR_STATUS, 4, 1)
    assert host.read(ep() + AER + PCI_ERR_COR_STATUS, 4) == 0
    # Unaligned and odd sizes are decoded byte by byte; straddling into an absent function reads 0xff.
    assert host.read(RP + 0x01, 2) == 0x0C1B
    assert host.read(RP + 0xFFE, 4) == 0xFFFF_0000
    host.write(RP + 0xFFF, 8, 0)
    assert host.read(RP + 0x00, 4) == 0x000C_1B36


def test_native_aer_root_error_registers_and_intx(host: PcieHost) -> None:
    gic: Gic = host.root_port._irq  # type: ignore[assignment]
    host.write(RP + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)      # report correctable/non-fatal/fatal
    host.write(ep() + 0x48, 2, 0x7)                           # endpoint DEVCTL: error reporting enabled
    host.inject_aer(1 << 8, cor=1)
    assert host.read(RP + AER + PCI_ERR_ROOT_STATUS, 4) == 0x1          # ERR_COR received
    assert host.read(RP + AER + PCI_ERR_ROOT_ERR_SRC, 4) == 0x0000_0100  # from 01:00.0
    assert gic.levels[ROOT_PORT_INTID] is True
    assert host.read(RP + 0x06, 2) & 0x8                      # PCI_STATUS_INTERRUPT
    assert host.read(ep() + 0x4A, 2) & 0x1                    # DEVSTA correctable detected
    host.inject_aer(1 << 8, cor=1)
    assert host.read(RP + AER + PCI_ERR_ROOT_STATUS, 4) == 0x3          # multiple ERR_COR
    host.write(RP + AER + PCI_ERR_ROOT_STATUS, 4, 0x3)       # what Linux's aer_irq does
    assert gic.levels[ROOT_PORT_INTID] is False
    host.inject_aer(1 << 8, uncor=1 << 4)                     # Data Link Protocol: fatal by default
    assert host.read(RP + AER + PCI_ERR_ROOT_STATUS, 4) == 0x4 | 0x10 | 0x40
    assert host.read(RP + AER + PCI_ERR_ROOT_ERR_SRC, 4) >> 16 == 0x0100
    assert host.read(ep() + AER + PCI_ERR_CAP, 4) & 0x1F == 4           # First Error Pointer
    host.write(RP + 0x04, 2, 1 << 10)                         # INTx disable drops the line
    assert gic.levels[ROOT_PORT_INTID] is False


def test_disabled_reporting_and_masked_errors(host: PcieHost) -> None:
    gic: Gic = host.root_port._irq  # type: ignore[assignment]
    host.write(RP + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)
    result = host.inject_aer(1 << 8, uncor=1 << 14)          # DEVCTL enables still 0
    assert result.messages == () and [m.value for m in result.unreported] == ["ERR_NONFATAL"]
    assert host.read(ep() + AER + PCI_ERR_UNCOR_STATUS, 4) == 1 << 14  # logged anyway
    assert ROOT_PORT_INTID not in gic.levels
    host.write(ep() + 0x48, 2, 0x7)
    assert host.inject_aer(1 << 8, cor=1 << 13).messages == ()         # Advisory Non-Fatal: masked


def test_secondary_bus_reset_keeps_sticky_aer(host: PcieHost) -> None:
    host.write(ep() + 0x04, 2, 0x0006)
    host.inject_aer(1 << 8, uncor=1 << 14)
    host.write(RP + 0x3E, 2, 0x40)                            # Secondary Bus Reset
    host.write(RP + 0x3E, 2, 0x00)
    assert host.read(ep() + 0x04, 2) == 0                     # Command back to its reset value
    assert host.read(ep() + AER + PCI_ERR_UNCOR_STATUS, 4) == 1 << 14   # RW1CS survives a hot reset


def test_pcie_cper_section_layout() -> None:
    """UEFI 2.9 N.2.7 at the offsets of Linux's struct cper_sec_pcie (208 bytes)."""
    m = Machine()
    try:
        m.pcie.root_port.cfg.set(0x19, 1, 1)                  # the OS numbered the secondary bus
        source = perform(m, parse_inject_spec("pcie:dev=01:00.0,status=uncor-nonfatal"))
        assert source is not None and source.source_id == 1
        status = cper.parse_generic_error_status(m.mem.read(source.block_address(), source.block_length))
        assert status.severity == cper.Severity.RECOVERABLE and len(status.entries) == 1
        entry = status.entries[0]
        assert entry.section_type == uuid.UUID("d995e954-bbc1-430f-ad91-b44dcb3c6f35")
        sec = entry.payload
        assert len(sec) == 208
        valid, port_type, minor, major = struct.unpack_from("<QIBB", sec, 0)
        assert valid == 0xCF and port_type == 0 and (major, minor) == (4, 0)
        vendor, device = struct.unpack_from("<HH", sec, 24)
        assert (vendor, device) == (0x1B36, 0x0005) and sec[28:31] == bytes([0x00, 0xFF, 0x00])
        function, dev, segment, bus = struct.unpack_from("<BBHB", sec, 31)
        assert (function, dev, segment, bus) == (0, 0, 0, 1)
        assert sec[52] == 0x10                                # capability: PCI_CAP_ID_EXP
        aer = sec[112:112 + 56]
        uncor_status, _, uncor_sever = struct.unpack_from("<III", aer, 4)
        assert uncor_status == 1 << 14 and uncor_sever == 0x0046_2030
        # Firmware cleared what it read: the endpoint's own status is clear again.
        assert m.pcie.endpoint.reg(AER + PCI_ERR_UNCOR_STATUS) == 0
    finally:
        m.close()


@pytest.mark.parametrize("text, needle", [
    ("aer:status=cor", "needs dev="),
    ("aer:dev=1:0", "BB:DD.F"),
    ("aer:dev=00:01.0", "no error to inject"),
    ("aer:dev=00:01.0,status=bogus", "unknown status"),
    ("aer:dev=00:01.0,status=cor,uncor=0x10", "not both"),
    ("aer:dev=00:01.0,cor=-1", "32-bit"),
    ("aer:dev=00:01.0,cor=0x3", "bits 0x2 that are reserved"),
    ("aer:dev=00:01.0,uncor=0x1", "bits 0x1 that are reserved"),
    ("aer:dev=00:01.0,cor=nan", "not a number"),
    ("aer:dev=00:01.0,status=cor,source=1", "not source="),
    ("gpio:pa=0x40000000,dev=00:01.0", "PCIe error"),
])
def test_inject_grammar_refusals(text: str, needle: str) -> None:
    with pytest.raises(ArmrasError, match=needle) as info:
        parse_inject_spec(text)
    assert "\n" not in str(info.value)


def test_inject_at_a_missing_function_is_one_line() -> None:
    m = Machine()
    try:
        with pytest.raises(ArmrasError, match=r"no PCIe function at 01:00.0 \(the board has 00:01.0, 00:02.0\)"):
            perform(m, parse_inject_spec("aer:dev=01:00.0,status=cor"))
    finally:
        m.close()


def test_control_socket_inject_aer_and_pcie(tmp_path, guest_images) -> None:
    """The control socket takes the --inject grammar's keys; refusals are one line."""
    from test_control import Run, one_line_error
    r = Run(tmp_path, guest_images / "ras_ref.elf", "--pause-on", "^READY")
    try:
        r.wait_console("^READY$")
        r.wait_status("paused")
        # The bare-metal guest enabled nothing: the root port logs its own error but sends no
        # message (Device Control enables are 0), so Root Error Status stays 0.
        reply = r.ok("aer", "--dev", "00:01.0", "--status", "cor")
        assert reply == {"dev": "00:01.0", "sent": [], "not_sent": ["ERR_COR"], "root_error_status": 0,
                         "error_source_id": 0}
        reply = r.ok("pcie", "--dev", "00:01.0", "--status", "uncor-nonfatal")
        assert reply["source_id"] == 1 and reply["records_written"] == 1
        one_line_error(r.inject("aer", "--dev", "01:00.0", "--status", "cor"), "no PCIe function at 01:00.0")
        one_line_error(r.inject("aer", "--dev", "00:01.0", "--cor", "0x2"), "reserved or not implemented")
        one_line_error(r.inject("aer", "--dev", "00:01.0,cor=1", "--status", "cor"), "plain string")
        assert r.ok("quit") == {}
        assert r.finish() == 0
    finally:
        r.kill()


def test_header_log_from_the_inject_grammar() -> None:
    spec = parse_inject_spec("aer:dev=00:01.0,uncor=0x100000,header=0x4a000001:0x0100000f:0x10000000:0")
    m = Machine()
    try:
        m.pcie.root_port.cfg.set(0x48, 2, 0x7)                # DEVCTL: reporting enabled
        from armras.drive.inject import perform_aer
        result = perform_aer(m, spec)
        assert [msg.value for msg in result.messages] == ["ERR_NONFATAL"]   # UR is non-fatal by default
        rp = m.pcie.root_port
        assert [rp.reg(AER + 0x1C + 4 * i) for i in range(4)] == [0x4A00_0001, 0x0100_000F, 0x1000_0000, 0]
        assert rp.reg(AER + PCI_ERR_CAP) & 0x1F == 20                       # First Error Pointer: UR
    finally:
        m.close()
    for bad, needle in (("aer:dev=00:01.0,cor=1,header=1:2:3:4", "goes with an uncorrectable"),
                        ("aer:dev=00:01.0,uncor=0x10,header=1:2:3", "four 32-bit words"),
                        ("aer:dev=00:01.0,uncor=0x10,header=1:2:3:0x100000000", "32-bit")):
        with pytest.raises(ArmrasError, match=needle):
            parse_inject_spec(bad)

_ACCESS = st.tuples(st.booleans(), st.integers(0, 0xFF_FFFF), st.sampled_from([1, 2, 4, 8]),
                    st.integers(0, 2 ** 64 - 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(_ACCESS, max_size=40))
def test_any_guest_access_is_defined(accesses: list[tuple[bool, int, int, int]]) -> None:
    """Whatever the guest reads or writes in the ECAM window, the model answers within the access
    size, never raises, and the read-only identity of both functions survives."""
    host = PcieHost(Gic(), ROOT_PORT_INTID, SWITCH_ROOT_PORT_INTID)
    host.write(RP + 0x18, 4, 0x00_01_01_00)
    for is_write, offset, size, value in accesses:
        if is_write:
            host.write(offset, size, value & ((1 << (8 * size)) - 1))
        else:
            assert 0 <= host.read(offset, size) < 1 << (8 * size)
    assert host.read(RP, 4) == 0x000C_1B36
    assert host.read(AER + RP, 4) & 0xFFFF == 0x0001
    bus = host.root_port.secondary_bus
    if bus:
        assert host.read(bus << 20, 4) == 0x0005_1B36


def test_access_straddling_an_absent_and_a_present_function(host: PcieHost) -> None:
    # The last two bytes of 00:00.7 (absent) and the first two of 00:01.0 (the root port).
    assert host.read(RP - 2, 4) == 0x1B36_FFFF
