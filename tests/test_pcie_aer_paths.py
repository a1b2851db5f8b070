"""What PCIe error handling does beyond the register map: logging in the function that detected
the error (PCIe Base 4.0 6.2.5 and Figure 6-2, 7.8.4.2-7.8.4.7), the root port's error
registers and interrupt (7.8.4.9-7.8.4.11), forwarding through switch ports (7.5.1.3.7,
7.5.1.3.13), Secondary Bus Reset (7.5.1.3.13), MSI (7.7.1), routing by bus number (7.5.1.3.3-5)
and the ECAM window's edges (7.2.2).

Offsets and bits are the spec's, as Linux's include/uapi/linux/pci_regs.h names them, written
out here; none is imported from armras.
"""
from __future__ import annotations

import logging

import pytest

from armras.devices.pcie import Endpoint, Function, Message, PcieHost, RootPort, SwitchDownstreamPort

# Type 0/1 header
PCI_COMMAND, PCI_STATUS, PCI_REVISION_ID = 0x04, 0x06, 0x08
PCI_PRIMARY_BUS, PCI_SEC_STATUS, PCI_MEMORY_BASE, PCI_BRIDGE_CONTROL = 0x18, 0x1E, 0x20, 0x3E
PCI_COMMAND_MASTER, PCI_COMMAND_SERR = 0x0004, 0x0100
PCI_STATUS_INTERRUPT, PCI_STATUS_SIG_SYSTEM_ERROR = 0x0008, 0x4000
PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR = 0x4000
PCI_BRIDGE_CTL_SERR, PCI_BRIDGE_CTL_BUS_RESET = 0x02, 0x40
# PCI Express Capability at 0x40, MSI at 0x80
PCI_EXP = 0x40
PCI_EXP_NEXT, PCI_EXP_DEVCTL, PCI_EXP_DEVSTA, PCI_EXP_LNKCAP = 0x01, 0x08, 0x0A, 0x0C
PCI_EXP_DEVCTL_CERE, PCI_EXP_DEVCTL_NFERE, PCI_EXP_DEVCTL_FERE = 0x1, 0x2, 0x4
PCI_EXP_DEVSTA_CED, PCI_EXP_DEVSTA_NFED, PCI_EXP_DEVSTA_FED = 0x1, 0x2, 0x4
MSI = 0x80
PCI_MSI_FLAGS, PCI_MSI_ADDRESS_LO, PCI_MSI_ADDRESS_HI, PCI_MSI_DATA_64 = 0x02, 0x04, 0x08, 0x0C
PCI_MSI_FLAGS_ENABLE = 0x0001
# AER at 0x100
AER = 0x100
PCI_ERR_UNCOR_STATUS, PCI_ERR_UNCOR_MASK, PCI_ERR_COR_STATUS, PCI_ERR_COR_MASK = 0x04, 0x08, 0x10, 0x14
PCI_ERR_CAP, PCI_ERR_HEADER_LOG = 0x18, 0x1C
PCI_ERR_ROOT_COMMAND, PCI_ERR_ROOT_STATUS, PCI_ERR_ROOT_ERR_SRC = 0x2C, 0x30, 0x34
PCI_ERR_COR_RCVR, PCI_ERR_COR_BAD_TLP = 0x0000_0001, 0x0000_0040
PCI_ERR_COR_ADV_NFAT = 0x0000_2000                 # masked at reset
PCI_ERR_UNC_DLP, PCI_ERR_UNC_COMP_TIME = 0x0000_0010, 0x0000_4000      # fatal, non-fatal by default
PCI_ERR_UNC_UNX_COMP, PCI_ERR_UNC_MALF_TLP = 0x0001_0000, 0x0004_0000  # non-fatal, fatal by default
PCI_ERR_ROOT_CMD_COR_EN, PCI_ERR_ROOT_CMD_NONFATAL_EN, PCI_ERR_ROOT_CMD_FATAL_EN = 0x1, 0x2, 0x4
PCI_ERR_ROOT_COR_RCV, PCI_ERR_ROOT_MULTI_COR_RCV = 0x01, 0x02
PCI_ERR_ROOT_UNCOR_RCV, PCI_ERR_ROOT_MULTI_UNCOR_RCV, PCI_ERR_ROOT_FIRST_FATAL = 0x04, 0x08, 0x10
PCI_ERR_ROOT_NONFATAL_RCV, PCI_ERR_ROOT_FATAL_RCV = 0x20, 0x40
PCI_ERR_CAP_FEP_MASK = 0x1F

RP1_INTID, RP2_INTID = 32 + 3 + 1, 32 + 3 + 2
LOGGER = "armras.devices.pcie"


def ecam(bus: int, dev: int = 0, fn: int = 0) -> int:
    return bus << 20 | dev << 15 | fn << 12


RP1, RP2 = ecam(0, 1), ecam(0, 2)      # root ports 00:01.0 (endpoint below) and 00:02.0 (switch below)
EP, UP, DOWN = ecam(1), ecam(2), ecam(3)


class Irq:
    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def set_level(self, intid: int, level: bool) -> None:
        self.calls.append((intid, level))

    def pulse(self, intid: int) -> None:
        raise AssertionError("the root ports' INTx is level-triggered")


@pytest.fixture
def irq() -> Irq:
    return Irq()


@pytest.fixture
def msis() -> list[tuple[int, int]]:
    return []


@pytest.fixture
def host(irq: Irq, msis: list[tuple[int, int]]) -> PcieHost:
    h = PcieHost(irq, RP1_INTID, RP2_INTID, msi=lambda address, data: msis.append((address, data)))
    # Bus numbers as Linux assigns them: 00:01.0 -> 1; 00:02.0 -> 2..4, 02:00.0 -> 3..4, 03:00.0 -> 4.
    h.write(RP1 + PCI_PRIMARY_BUS, 4, 0x00_01_01_00)
    h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_04_02_00)
    h.write(UP + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)
    h.write(DOWN + PCI_PRIMARY_BUS, 4, 0x00_04_04_03)
    return h


def _header_log(fn: Function) -> tuple[int, ...]:
    return tuple(fn.reg(AER + PCI_ERR_HEADER_LOG + 4 * i) for i in range(4))


# --- one function ------------------------------------------------------------------------------
def test_an_error_of_one_kind_logs_nothing_of_the_other() -> None:
    fn = Endpoint()
    fn.aer_error(cor=PCI_ERR_COR_BAD_TLP)
    assert fn.reg(AER + PCI_ERR_COR_STATUS) == PCI_ERR_COR_BAD_TLP
    assert fn.reg(AER + PCI_ERR_UNCOR_STATUS) == 0
    fn = Endpoint()
    fn.aer_error(uncor=PCI_ERR_UNC_COMP_TIME)
    assert fn.reg(AER + PCI_ERR_UNCOR_STATUS) == PCI_ERR_UNC_COMP_TIME
    assert fn.reg(AER + PCI_ERR_COR_STATUS) == 0
    assert _header_log(fn) == (0, 0, 0, 0)          # no TLP header given: the Header Log stays 0
    assert fn.reg(AER + PCI_ERR_CAP) & PCI_ERR_CAP_FEP_MASK == 14


def test_the_host_injects_only_what_it_is_given(host: PcieHost) -> None:
    host.inject_aer(0x0100, cor=PCI_ERR_COR_RCVR)
    assert host.read(EP + AER + PCI_ERR_UNCOR_STATUS, 4) == 0
    host.inject_aer(0x0100, uncor=PCI_ERR_UNC_COMP_TIME)
    assert host.read(EP + AER + PCI_ERR_COR_STATUS, 4) == PCI_ERR_COR_RCVR


def test_status_accumulates_and_the_first_error_keeps_its_pointer_and_header(host: PcieHost) -> None:
    fn = host.endpoint
    host.write(EP + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    host.write(EP + AER + PCI_ERR_COR_MASK, 4, PCI_ERR_COR_ADV_NFAT | PCI_ERR_COR_RCVR)
    host.write(EP + AER + PCI_ERR_UNCOR_MASK, 4, PCI_ERR_UNC_DLP)
    # Correctable: a masked error is logged but signals nothing; an unmasked one adds to it.
    assert host.inject_aer(0x0100, cor=PCI_ERR_COR_RCVR).messages == ()
    host.inject_aer(0x0100, cor=PCI_ERR_COR_BAD_TLP)
    assert host.read(EP + AER + PCI_ERR_COR_STATUS, 4) == PCI_ERR_COR_RCVR | PCI_ERR_COR_BAD_TLP
    assert host.read(EP + AER + PCI_ERR_COR_MASK, 4) == PCI_ERR_COR_ADV_NFAT | PCI_ERR_COR_RCVR
    # Uncorrectable: the first unmasked error sets First Error Pointer and the Header Log ...
    host.inject_aer(0x0100, uncor=PCI_ERR_UNC_COMP_TIME, header_log=(0x4A00_0001, 0x0100_0004, 0x0200_0000, 0))
    assert host.read(EP + AER + PCI_ERR_CAP, 4) == 14
    assert host.read(EP + AER + PCI_ERR_UNCOR_MASK, 4) == PCI_ERR_UNC_DLP
    # ... a second one while the first is still logged changes neither.
    host.inject_aer(0x0100, uncor=PCI_ERR_UNC_UNX_COMP, header_log=(1, 2, 3, 4))
    assert host.read(EP + AER + PCI_ERR_UNCOR_STATUS, 4) == PCI_ERR_UNC_COMP_TIME | PCI_ERR_UNC_UNX_COMP
    assert host.read(EP + AER + PCI_ERR_CAP, 4) == 14
    assert _header_log(fn) == (0x4A00_0001, 0x0100_0004, 0x0200_0000, 0)
    # Device Status keeps what was detected before: correctable, then non-fatal.
    assert host.read(EP + PCI_EXP + PCI_EXP_DEVSTA, 2) == PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED
    # Once software clears the status, two errors detected at once point at the lower bit.
    host.write(EP + AER + PCI_ERR_UNCOR_STATUS, 4, 0xFFFF_FFFF)
    host.inject_aer(0x0100, uncor=PCI_ERR_UNC_UNX_COMP | PCI_ERR_UNC_MALF_TLP)
    assert host.read(EP + AER + PCI_ERR_CAP, 4) == 16
    # A masked error alone is logged in the status, and nothing else changes.
    host.write(EP + AER + PCI_ERR_UNCOR_STATUS, 4, 0xFFFF_FFFF)
    result = host.inject_aer(0x0100, uncor=PCI_ERR_UNC_DLP)
    assert (result.messages, result.unreported) == ((), ())
    assert host.read(EP + AER + PCI_ERR_UNCOR_STATUS, 4) == PCI_ERR_UNC_DLP
    assert host.read(EP + AER + PCI_ERR_CAP, 4) == 16


def test_one_injection_of_every_class_signals_each_message(host: PcieHost) -> None:
    host.write(EP + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    result = host.inject_aer(0x0100, cor=PCI_ERR_COR_RCVR, uncor=PCI_ERR_UNC_DLP | PCI_ERR_UNC_COMP_TIME)
    assert result.messages == (Message.ERR_COR, Message.ERR_FATAL, Message.ERR_NONFATAL)
    assert host.read(EP + PCI_EXP + PCI_EXP_DEVSTA, 2) == (PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED
                                                           | PCI_EXP_DEVSTA_FED)
    assert host.read(EP + AER + PCI_ERR_CAP, 4) == 4                    # DLP, bit 4, is the lower


@pytest.mark.parametrize("devctl, cor, uncor, message", [
    (PCI_EXP_DEVCTL_NFERE | PCI_EXP_DEVCTL_FERE, PCI_ERR_COR_RCVR, 0, Message.ERR_COR),
    (PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_FERE, 0, PCI_ERR_UNC_COMP_TIME, Message.ERR_NONFATAL),
    (PCI_EXP_DEVCTL_CERE | PCI_EXP_DEVCTL_NFERE, 0, PCI_ERR_UNC_DLP, Message.ERR_FATAL),
])
def test_each_reporting_enable_gates_its_own_message(host: PcieHost, devctl: int, cor: int, uncor: int,
                                                     message: Message) -> None:
    host.write(EP + PCI_EXP + PCI_EXP_DEVCTL, 2, devctl)
    result = host.inject_aer(0x0100, cor=cor, uncor=uncor)
    assert (result.messages, result.unreported) == ((), (message,))
    host.write(EP + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    assert host.inject_aer(0x0100, cor=cor, uncor=uncor).messages == (message,)


def test_serr_sends_uncorrectable_messages_and_sets_signaled_system_error() -> None:
    port = SwitchDownstreamPort()                      # revision 2, as QEMU's xio3130
    port.write_bytes(PCI_COMMAND, PCI_COMMAND_SERR.to_bytes(2, "little"))
    port.write_bytes(PCI_EXP + PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_CERE.to_bytes(2, "little"))
    assert port.aer_error(cor=PCI_ERR_COR_RCVR).messages == (Message.ERR_COR,)
    assert port.reg(PCI_STATUS, 2) & PCI_STATUS_SIG_SYSTEM_ERROR == 0   # a correctable one: no SERR
    assert port.aer_error(uncor=PCI_ERR_UNC_COMP_TIME).messages == (Message.ERR_NONFATAL,)
    assert port.reg(PCI_STATUS, 2) & PCI_STATUS_SIG_SYSTEM_ERROR
    assert port.reg(PCI_REVISION_ID, 1) == 2


# --- the root port's error registers and interrupt -------------------------------------------
def test_root_error_status_keeps_every_class_and_error_source_both_requesters(irq: Irq) -> None:
    rp = RootPort(irq, RP1_INTID)
    rp.receive(Message.ERR_COR, 0x0101)
    rp.receive(Message.ERR_NONFATAL, 0x0200)
    assert rp.reg(AER + PCI_ERR_ROOT_STATUS) == (PCI_ERR_ROOT_COR_RCV | PCI_ERR_ROOT_UNCOR_RCV
                                                  | PCI_ERR_ROOT_NONFATAL_RCV)
    assert rp.reg(AER + PCI_ERR_ROOT_ERR_SRC) == 0x0200_0101
    rp.write_bytes(AER + PCI_ERR_ROOT_STATUS, (0x7F).to_bytes(4, "little"))
    rp.receive(Message.ERR_COR, 0x0300)                  # Error Source is not cleared; its half is replaced
    assert rp.reg(AER + PCI_ERR_ROOT_ERR_SRC) == 0x0200_0300

    rp = RootPort(irq, RP1_INTID)
    rp.receive(Message.ERR_FATAL, 0x0100)
    rp.receive(Message.ERR_NONFATAL, 0x0200)
    assert rp.reg(AER + PCI_ERR_ROOT_STATUS) == (PCI_ERR_ROOT_UNCOR_RCV | PCI_ERR_ROOT_MULTI_UNCOR_RCV
                                                  | PCI_ERR_ROOT_FIRST_FATAL | PCI_ERR_ROOT_NONFATAL_RCV
                                                  | PCI_ERR_ROOT_FATAL_RCV)
    rp.receive(Message.ERR_COR, 0x0300)
    assert rp.reg(AER + PCI_ERR_ROOT_STATUS) & 0x7F == 0x7D
    assert rp.reg(AER + PCI_ERR_ROOT_ERR_SRC) == 0x0100_0300


def test_a_root_ports_own_error_leaves_its_root_error_command_alone(host: PcieHost, irq: Irq) -> None:
    host.write(RP1 + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)
    host.write(RP1 + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    host.inject_aer(0x0008, uncor=PCI_ERR_UNC_COMP_TIME, header_log=(1, 2, 3, 4))
    assert _header_log(host.root_port) == (1, 2, 3, 4)     # the dword before Root Error Command
    assert host.read(RP1 + AER + PCI_ERR_ROOT_COMMAND, 4) == 0x7
    assert host.read(RP1 + AER + PCI_ERR_ROOT_ERR_SRC, 4) == 0x0008_0000
    assert irq.calls == [(RP1_INTID, True)]


@pytest.mark.parametrize("message, enable", [
    (Message.ERR_COR, PCI_ERR_ROOT_CMD_COR_EN),
    (Message.ERR_NONFATAL, PCI_ERR_ROOT_CMD_NONFATAL_EN),
    (Message.ERR_FATAL, PCI_ERR_ROOT_CMD_FATAL_EN),
])
def test_each_root_error_command_bit_enables_its_class_alone(irq: Irq, message: Message, enable: int) -> None:
    rp = RootPort(irq, RP1_INTID)
    rp.write_bytes(AER + PCI_ERR_ROOT_COMMAND, (0x7 & ~enable).to_bytes(4, "little"))
    rp.receive(message, 0x0100)
    assert irq.calls == [] and not rp.reg(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT
    rp.write_bytes(AER + PCI_ERR_ROOT_COMMAND, (0x7).to_bytes(4, "little"))
    assert irq.calls == [(RP1_INTID, True)] and rp.reg(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT


def test_the_intx_line_is_driven_on_changes_only(irq: Irq) -> None:
    rp = RootPort(irq, RP1_INTID)
    rp.write_bytes(AER + PCI_ERR_ROOT_COMMAND, (0x7).to_bytes(4, "little"))
    rp.receive(Message.ERR_COR, 0x0100)
    rp.receive(Message.ERR_COR, 0x0100)
    rp.write_bytes(PCI_COMMAND, (0).to_bytes(2, "little"))
    rp.write_bytes(AER + PCI_ERR_ROOT_STATUS, (0x7F).to_bytes(4, "little"))
    rp.write_bytes(AER + PCI_ERR_ROOT_STATUS, (0x7F).to_bytes(4, "little"))
    assert irq.calls == [(RP1_INTID, True), (RP1_INTID, False)]


def test_msi_carries_a_64_bit_address_and_the_message_data(host: PcieHost, msis: list[tuple[int, int]],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    for base in (RP1, RP2):                            # both root ports have MSI after the PCIe capability
        assert host.read(base + PCI_EXP + PCI_EXP_NEXT, 1) == MSI and host.read(base + MSI, 1) == 0x05
    host.write(RP1 + MSI + PCI_MSI_ADDRESS_LO, 4, 0x0802_0040)
    host.write(RP1 + MSI + PCI_MSI_ADDRESS_HI, 4, 0x0000_0080)
    host.write(RP1 + MSI + PCI_MSI_DATA_64, 2, 0x0051)
    host.write(RP1 + MSI + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE)
    host.write(RP1 + AER + PCI_ERR_ROOT_COMMAND, 4, 0x7)
    host.write(EP + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        host.inject_aer(0x0100, cor=PCI_ERR_COR_RCVR)
    assert msis == []
    assert [r.getMessage() for r in caplog.records] == [
        "root_port: MSI not sent: Bus Master Enable is clear in the Command register"]
    host.write(RP1 + AER + PCI_ERR_ROOT_STATUS, 4, 0x7F)
    host.write(RP1 + PCI_COMMAND, 2, PCI_COMMAND_MASTER)
    host.inject_aer(0x0100, cor=PCI_ERR_COR_RCVR)
    assert msis == [(0x80_0802_0040, 0x0051)]


# --- switch ports ------------------------------------------------------------------------------
def test_forwarding_through_the_switch_sets_received_system_error_for_uncorrectable_only(
        host: PcieHost, caplog: pytest.LogCaptureFixture) -> None:
    host.write(UP + PCI_MEMORY_BASE, 4, 0x10F0_10F0)
    host.write(DOWN + PCI_EXP + PCI_EXP_DEVCTL, 2, 0x7)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = host.inject_aer(0x0300, uncor=PCI_ERR_UNC_DLP)
    assert result.blocked_at == "switch_upstream"
    assert [r.getMessage() for r in caplog.records] == [
        "switch_upstream: ERR_FATAL from 03:00.0 not forwarded: SERR# Enable is clear in Bridge Control"]
    assert host.read(UP + PCI_SEC_STATUS, 2) == PCI_SEC_STATUS_RECEIVED_SYSTEM_ERROR
    assert host.read(UP + PCI_MEMORY_BASE, 4) == 0x10F0_10F0
    host.write(UP + PCI_SEC_STATUS, 2, 0xFFFF)
    host.write(UP + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_SERR)
    assert host.inject_aer(0x0300, cor=PCI_ERR_COR_RCVR).blocked_at is None
    assert host.read(UP + PCI_SEC_STATUS, 2) == 0
    assert host.read(RP2 + PCI_SEC_STATUS, 2) == 0
    assert host.switch_root_port.reg(AER + PCI_ERR_ROOT_ERR_SRC) & 0xFFFF == 0x0300


def test_config_requests_reach_the_subordinate_bus_and_no_further(irq: Irq) -> None:
    h = PcieHost(irq, RP1_INTID, RP2_INTID)
    h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_03_02_00)       # 00:02.0: buses 2..3
    h.write(UP + PCI_PRIMARY_BUS, 4, 0x00_03_03_02)        # 02:00.0: bus 3
    assert h.read(DOWN, 4) == 0x8233_104C                  # bus 3 == subordinate: reached
    h.write(RP2 + PCI_PRIMARY_BUS, 4, 0x00_02_02_00)       # 00:02.0: bus 2 only
    assert h.read(DOWN, 4) == 0xFFFF_FFFF
    assert h.find(0x0300) is None
    ids = {fn.name: rid for rid, fn in h.functions()}
    assert ids["switch_downstream"] is None               # numbered below, but unreachable
    assert ids["switch_upstream"] == 0x0200


@pytest.mark.parametrize("base, name", [(RP1, "root_port"), (RP2, "switch_root_port"),
                                        (UP, "switch_upstream"), (DOWN, "switch_downstream")])
def test_each_secondary_bus_reset_is_counted_and_logged(host: PcieHost, base: int, name: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(2):
            host.write(base + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET)
            host.write(base + PCI_BRIDGE_CONTROL, 2, 0)
    port = host.find(base >> 12)
    assert port is not None and port.name == name
    assert port.secondary_bus_resets == 2                  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records] == [f"{name}: secondary bus reset"] * 2


def test_a_port_reset_by_the_port_above_can_reset_its_own_bus_at_once(host: PcieHost) -> None:
    host.write(RP2 + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET)
    host.write(RP2 + PCI_BRIDGE_CONTROL, 2, 0)
    host.write(UP + PCI_PRIMARY_BUS, 4, 0x00_04_03_02)      # software renumbers the switch
    host.write(DOWN + PCI_PRIMARY_BUS, 4, 0x00_04_04_03)
    host.write(DOWN + PCI_COMMAND, 2, PCI_COMMAND_MASTER)
    host.write(UP + PCI_BRIDGE_CONTROL, 2, PCI_BRIDGE_CTL_BUS_RESET)
    assert host.switch_upstream.secondary_bus_resets == 1
    assert host.switch_downstream.reg(PCI_COMMAND, 2) == 0


# --- the board's functions and the ECAM window -------------------------------------------------
def test_port_numbers_in_link_capabilities(host: PcieHost) -> None:
    numbers = {base: host.read(base + PCI_EXP + PCI_EXP_LNKCAP, 4) >> 24 for base in (RP1, RP2, UP, DOWN)}
    assert numbers == {RP1: 1, RP2: 2, UP: 0, DOWN: 0}


def test_root_port_of_each_function(host: PcieHost) -> None:
    assert host.root_port_of(host.endpoint) is host.root_port
    assert host.root_port_of(host.root_port) is host.root_port
    assert host.root_port_of(host.switch_downstream) is host.switch_root_port
    with pytest.raises(AssertionError, match="endpoint is not below a root port"):
        host.root_port_of(Endpoint())


def test_injecting_at_a_missing_function_names_it(host: PcieHost) -> None:
    with pytest.raises(LookupError, match=r"^no PCIe function at 05:00\.0$"):
        host.inject_aer(0x0500, cor=PCI_ERR_COR_RCVR)


def test_writes_are_cut_to_their_size_and_straddling_writes_reach_the_next_function(host: PcieHost) -> None:
    host.write(RP1 + PCI_COMMAND, 2, 0xFFFF_0000 | PCI_COMMAND_MASTER)    # the upper half is not Status
    assert host.read(RP1 + PCI_COMMAND, 2) == PCI_COMMAND_MASTER
    assert host.read(RP1 + PCI_STATUS, 2) == 0x0010                        # Capabilities List only
    # 8 bytes from the last 2 of the absent 00:01.7 into 00:02.0's first 6: its Command gets bytes 6-7.
    host.write(RP2 - 2, 8, PCI_COMMAND_MASTER << 48)
    assert host.read(RP2 + PCI_COMMAND, 2) == PCI_COMMAND_MASTER
