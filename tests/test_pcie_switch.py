"""The switch below root port 00:02.0, Secondary Bus Reset, error forwarding, MSI and the GICv2m frame.

Offsets and values: PCIe Base 4.0 (7.5.1.3 type 1 header, 7.5.3 PCI Express Capability,
7.7.1 MSI Capability, 7.8.4 AER) as Linux's include/uapi/linux/pci_regs.h names them;
QEMU's xio3130 ids (hw/pci-bridge/xio3130_upstream.c / _downstream.c); the GICv2m frame
as QEMU's hw/intc/arm_gicv2m.c (MSI_TYPER 0x008, MSI_SETSPI_NS 0x040, MSI_IIDR 0xFCC) at
QEMU virt's address with its SPIs 48..111. All written out here, none imported.
"""
from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armras.board.machine import Machine
from armras.devices.gicv2m import GicV2m
from armras.devices.pcie import PcieHost

RP2 = 2 << 15                          # ECAM offset of 00:02.0
AER = 0x100
PCI_COMMAND, PCI_STATUS, PCI_PRIMARY_BUS, PCI_SEC_STATUS, PCI_BRIDGE_CONTROL = 0x04, 0x06, 0x18, 0x1E, 0x3E
PCI_EXP, PCI_EXP_FLAGS, PCI_EXP_DEVCTL, PCI_EXP_LNKCAP, PCI_EXP_LNKSTA = 0x40, 0x02, 0x08, 0x0C, 0x12
PCI_ERR_UNCOR_STATUS, PCI_ERR_ROOT_COMMAND, PCI_ERR_ROOT_STATUS, PCI_ERR_ROOT_ERR_SRC = 0x04, 0x2C, 0x30, 0x34
PCI_CAP_ID_EXP, PCI_CAP_ID_MSI = 0x10, 0x05
PCI_MSI_FLAGS, PCI_MSI_ADDRESS_LO, PCI_MSI_ADDRESS_HI, PCI_MSI_DATA_64 = 0x02, 0x04, 0x08, 0x0C
PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_64BIT = 0x0001, 0x0080
PCI_BRIDGE_CTL_SERR, PCI_BRIDGE_CTL_BUS_RESET = 0x02, 0x40
PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR = 0x4000
PCI_EXP_LNKCAP_DLLLARC, PCI_EXP_LNKSTA_DLLLA = 1 << 20, 1 << 13
UNCOR_COMP_TIME, UNCOR_DLP = 1 << 14, 1 << 4
V2M_BASE, V2M_MSI_TYPER, V2M_MSI_SETSPI_NS, V2M_MSI_IIDR = 0x0802_0000, 0x008, 0x040, 0xFCC
V2M_FIRST_INTID, V2M_SPIS = 32 + 48, 64


class Gic:
    def __init__(self) -> None:
        self.levels: dict[int, bool] = {}
        self.pulses: list[int] = []

    def set_level(self, intid: int, level: bool) -> None:
        self.levels[intid] = level

    def pulse(self, intid: int) -> None:
        self.pulses.append(intid)


def ecam(bus: int, dev: int = 0, fn: int = 0) -> int:
    return bus << 20 | dev << 15 | fn << 12


@pytest.fixture
def gic() -> Gic:
    return Gic()


@pytest.fixture
def v2m(gic: Gic) -> GicV2m:
    return GicV2m(gic, V2M_BASE, V2M_FIRST_INTID, V2M_SPIS)


@pytest.fixture
def host(gic: Gic, v2m: GicV2m) -> PcieHost:
    h = PcieHost(gic, 32 + 3 + 1, 32 + 3 + 2, msi=v2m.msi_write)
    # Bus numbers as Linux assigns them (pci_scan_bridge_extend): 00:02.0 -> 2..4,
    # the upstream port 02:00.0 -> 3..4, the downstream port 03:00.0 -> 4.
    h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_04_02_00)
    h.write(ecam(2) + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)
    h.write(ecam(3) + PCI_PRIMARY_BUS, 4, 0x00_04_04_03)
    return h


def test_switch_enumerates_as_qemu_x3130(host: PcieHost, gic: Gic, v2m: GicV2m) -> None:
    assert host.read(RP2, 4) == 0x000C_1B36                    # pcie-root-port
    assert host.read(ecam(2), 4) == 0x8232_104C                # x3130-upstream
    assert host.read(ecam(3), 4) == 0x8233_104C                # xio3130-downstream
    for base, port_type in ((RP2, 0x4), (ecam(2), 0x5), (ecam(3), 0x6)):
        assert host.read(base + 0x08, 4) >> 8 == 0x060400        # PCI-to-PCI bridge
        assert host.read(base + 0x0E, 1) == 0x01                 # type 1 header
        assert (host.read(base + PCI_EXP + PCI_EXP_FLAGS, 2) >> 4) & 0xF == port_type
        # Capability chain: PCI Express at 0x40, then MSI (64-bit, one vector), then the end.
        assert host.read(base + 0x34, 1) == PCI_EXP and host.read(base + PCI_EXP, 1) == PCI_CAP_ID_EXP
        msi = host.read(base + PCI_EXP + 1, 1)
        assert host.read(base + msi, 1) == PCI_CAP_ID_MSI and host.read(base + msi + 1, 1) == 0
        assert host.read(base + msi + PCI_MSI_FLAGS, 2) == PCI_MSI_FLAGS_64BIT
        assert host.read(base + AER, 4) & 0xFFFF == 0x0001        # AER extended capability
    assert host.read(ecam(2) + 0x08, 1) == 0x02                  # xio3130 revision
    # Ports above a link report Data Link Layer Link Active (Linux's waits after a reset end at once).
    for base in (RP2, ecam(3)):
        assert host.read(base + PCI_EXP + PCI_EXP_LNKCAP, 4) & PCI_EXP_LNKCAP_DLLLARC
        assert host.read(base + PCI_EXP + PCI_EXP_LNKSTA, 2) & PCI_EXP_LNKSTA_DLLLA
    # Only device 0 below a port; nothing below the downstream port; buses past 4 are nobody's.
    for offset in (ecam(2, 1), ecam(3, 1), ecam(3, 0, 1), ecam(4), ecam(5)):
        assert host.read(offset, 4) == 0xFFFF_FFFF
    assert [f"{rid >> 8:02x}:{(rid >> 3) & 31:02x}.{rid & 7}" for rid, _ in host.functions() if rid is not None] \
        == ["00:01.0", "00:02.0", "02:00.0", "03:00.0"]        # 01:00.0 waits for 00:01.0's numbers


def test_unnumbered_switch_is_unreachable(gic: Gic) -> None:
    h = PcieHost(gic, 32 + 3 + 1, 32 + 3 + 2)
    assert h.read(ecam(2), 4) == 0xFFFF_FFFF
    h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_04_02_00)
    assert h.read(ecam(2), 4) == 0x8232_104C
    assert h.read(ecam(3), 4) == 0xFFFF_FFFF                   # the upstream port's bus is not numbered


def test_secondary_bus_reset_resets_everything_below(host: PcieHost) -> None:
    up, down, rp = host.switch_upstream, host.switch_downstream, host.switch_root_port
    host.write(ecam(3) + PCI_COMMAND, 2, 0x0006)
    host.inject_aer(0x0300, uncor=UNCOR_COMP_TIME)
    host.write(RP2 + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET)
    host.write(RP2 + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET)   # still asserted: one reset
    host.write(RP2 + PCI_BRIDGE_CONTROL, 2, 0)
    assert rp.secondary_bus_resets == 1
    # The hot reset reached both switch ports: bus numbers and Command back to 0, so the
    # downstream port is unreachable until software renumbers the upstream port ...
    assert host.read(ecam(2) + PCI_PRIMARY_BUS, 4) & 0xFF_FFFF == 0
    assert host.read(ecam(3), 4) == 0xFFFF_FFFF
    assert down.reg(PCI_COMMAND, 2) == 0 and down.reg(PCI_PRIMARY_BUS, 3) == 0
    # ... and the sticky (RW1CS) AER status survived it.
    assert down.reg(AER + PCI_ERR_UNCOR_STATUS) == UNCOR_COMP_TIME
    host.write(ecam(2) + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)
    assert host.read(ecam(3), 4) == 0x8233_104C
    assert rp.reg(PCI_PRIMARY_BUS, 3) == 0x04_02_00              # the root port itself keeps its numbers
    assert up.secondary_bus_resets == 0


def test_switch_forwards_error_messages_only_with_serr_enable(host: PcieHost) -> None:
    rp = host.switch_root_port
    host.write(RP2 + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)
    host.write(ecam(3) + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)      # the downstream port reports errors
    result = host.inject_aer(0x0300, uncor=UNCOR_DLP)            # fatal by default
    assert [msg.value for msg in result.messages] == ["ERR_FATAL"] and result.blocked_at == "switch_upstream"
    assert rp.reg(AER + PCI_ERR_ROOT_STATUS) == 0                # the upstream port did not forward it
    assert host.read(ecam(2) + PCI_SEC_STATUS, 2) & PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR
    host.write(ecam(2) + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_SERR)   # what Linux's pci_configure_serr does
    result = host.inject_aer(0x0300, uncor=UNCOR_COMP_TIME)
    assert result.blocked_at is None
    assert rp.reg(AER + PCI_ERR_ROOT_STATUS) == 0x4 | 0x20       # first uncorrectable, non-fatal received
    assert rp.reg(AER + PCI_ERR_ROOT_ERR_SRC) >> 16 == 0x0300
    # The upstream port's own errors need no forwarding: they leave on its primary side.
    host.write(ecam(2) + PCI_BRIDGE_CONTROL, 2, 0)
    host.write(ecam(2) + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    assert host.inject_aer(0x0200, cor=1).blocked_at is None
    assert rp.reg(AER + PCI_ERR_ROOT_ERR_SRC) & 0xFFFF == 0x0200


def _enable_msi(host: PcieHost, data: int, address: int = V2M_BASE + V2M_MSI_SETSPI_NS) -> None:
    host.write(RP2 + 0x80 + PCI_MSI_ADDRESS_LO, 4, address & 0xFFFF_FFFF)
    host.write(RP2 + 0x80 + PCI_MSI_ADDRESS_HI, 4, address >> 32)
    host.write(RP2 + 0x80 + PCI_MSI_DATA_64, 2, data)
    host.write(RP2 + 0x80 + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE)
    host.write(RP2 + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)
    host.write(ecam(2) + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)


def test_root_port_aer_interrupt_is_an_msi_through_the_gicv2m_frame(host: PcieHost, gic: Gic,
                                                                     v2m: GicV2m) -> None:
    spi = V2M_FIRST_INTID + 1
    _enable_msi(host, spi)
    host.inject_aer(0x0200, cor=1)
    assert gic.pulses == []                                      # Bus Master Enable clear: no memory write
    host.write(RP2 + PCI_ERR_ROOT_STATUS + AER, 4, 0x7F)         # what Linux's aer_irq does
    host.write(RP2 + PCI_COMMAND, 2, 0x0004)                     # pci_set_master
    host.inject_aer(0x0200, cor=1)
    assert gic.pulses == [spi] and v2m.raised == 1
    assert 32 + 3 + 2 not in gic.levels                          # MSI enabled: INTA stays low
    host.inject_aer(0x0200, cor=1)                               # still pending: no new edge
    assert gic.pulses == [spi]
    host.write(RP2 + AER + PCI_ERR_ROOT_STATUS, 4, 0x7F)
    host.inject_aer(0x0200, uncor=UNCOR_COMP_TIME)
    assert gic.pulses == [spi, spi] and host.switch_root_port.msi_sent == 2
    # MSI disabled again: the pending interrupt is INTA, level.
    host.write(RP2 + 0x80 + PCI_MSI_FLAGS, 2, 0)
    assert gic.levels[32 + 3 + 2] is True


def test_msi_to_a_wrong_doorbell_is_dropped_with_a_log_line(host: PcieHost, gic: Gic, v2m: GicV2m,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    _enable_msi(host, V2M_FIRST_INTID, address=0x4000_0000)
    host.write(RP2 + PCI_COMMAND, 2, 0x0004)
    with caplog.at_level(logging.WARNING):
        host.inject_aer(0x0200, cor=1)
    assert gic.pulses == [] and host.switch_root_port.msi_sent == 1
    assert "not the frame's MSI_SETSPI_NS" in caplog.text


def test_gicv2m_registers_as_qemu(v2m: GicV2m, gic: Gic) -> None:
    assert v2m.read(V2M_MSI_TYPER, 4) == (80 << 16) | 64 == 0x0050_0040
    assert v2m.read(V2M_MSI_IIDR, 4) == 0x51 << 20               # QEMU's product id 'Q'
    assert all(v2m.read(off, 4) == 0 for off in range(0xFD0, 0x1000, 4))
    v2m.write(V2M_MSI_SETSPI_NS, 4, 80)
    v2m.write(V2M_MSI_SETSPI_NS, 2, 143)                         # 16-bit writes are accepted
    v2m.write(V2M_MSI_SETSPI_NS, 4, 0xFFFF_FC00 | 100)           # bits 31:10 ignored
    assert gic.pulses == [80, 143, 100]


@pytest.mark.parametrize("op, args, needle", [
    ("write", (V2M_MSI_SETSPI_NS, 4, 79), "INTID 79 ignored (the frame has 80..143)"),
    ("write", (V2M_MSI_SETSPI_NS, 4, 144), "INTID 144 ignored"),
    ("write", (V2M_MSI_SETSPI_NS, 1, 80), "1-byte write"),
    ("write", (V2M_MSI_SETSPI_NS, 8, 80), "8-byte write"),
    ("write", (V2M_MSI_TYPER, 4, 80), "only MSI_SETSPI_NS is writable"),
    ("read", (V2M_MSI_TYPER, 2), "2-byte read"),
    ("read", (0x100, 4), "undefined offset 0x100"),
])
def test_gicv2m_bad_guest_access_is_ignored_with_one_line(v2m: GicV2m, gic: Gic, op: str, args: tuple[int, ...],
                                                          needle: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = getattr(v2m, op)(*args)
    assert result in (None, 0) and gic.pulses == []
    assert len(caplog.records) == 1 and needle in caplog.text


def test_gicv2m_repeated_bad_writes_log_a_few_lines(v2m: GicV2m, gic: Gic,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        for _ in range(10_000):
            v2m.write(V2M_MSI_SETSPI_NS, 4, 0)
    assert gic.pulses == [] and len(caplog.records) <= 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 0xFFF), st.sampled_from([1, 2, 4, 8]),
                          st.integers(0, 2 ** 64 - 1)), max_size=30))
def test_any_gicv2m_access_is_defined(accesses: list[tuple[bool, int, int, int]]) -> None:
    gic = Gic()
    v2m = GicV2m(gic, V2M_BASE, V2M_FIRST_INTID, V2M_SPIS)
    for is_write, offset, size, value in accesses:
        if is_write:
            v2m.write(offset, size, value & ((1 << (8 * size)) - 1))
        else:
            assert 0 <= v2m.read(offset, size) < 1 << (8 * size)
    assert all(V2M_FIRST_INTID <= i < V2M_FIRST_INTID + V2M_SPIS for i in gic.pulses)


def test_board_wires_msi_to_the_gic_through_the_frame() -> None:
    """On the machine: 00:02.0's MSI reaches the GICv2 distributor as a pending edge SPI."""
    m = Machine()
    try:
        assert m.gic_v2m.base == V2M_BASE and m.gic_v2m.read(V2M_MSI_TYPER, 4) == 0x0050_0040
        h = m.pcie
        h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_04_02_00)
        h.write(ecam(2) + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)
        _enable_msi(h, V2M_FIRST_INTID + 5)
        h.write(RP2 + PCI_COMMAND, 2, 0x0004)
        h.inject_aer(0x0200, cor=1)
        assert m.gic.latched[V2M_FIRST_INTID + 5]
        assert not m.gic.latched[32 + 3 + 2] and not m.gic.level[32 + 3 + 2]
    finally:
        m.close()
