"""PCIe AER recovery that succeeds, on Debian's unmodified 6.1 and 6.12: errors at a PCIe switch.

The board's second root port 00:02.0 has a switch below it (QEMU's x3130-upstream 104c:8232 at
02:00.0, xio3130-downstream 104c:8233 at 03:00.0, nothing below that). Every function under
the reporting port is a bridge bound by Linux's pcieport driver, whose error handlers return
CAN_RECOVER (non-fatal) / NEED_RESET then RECOVERED (fatal), so drivers/pci/pcie/err.c's
pcie_do_recovery ends in "device recovery successful" (pci_info on the port recovery ran
under: the root port for an error at the upstream port, the downstream port itself for its
own error). For a fatal error it first resets the link: aer_root_reset ->
pci_bus_error_reset -> a Secondary Bus Reset of that port ("Root Port link has been reset
(0)" / "Downstream Port link has been reset (0)"), after which pcieport's slot_reset
restores each port's config space (its bus numbers included) from what it saved.

The root ports signal AER through MSI: the GICv2m frame (MADT GIC MSI Frame) is Linux's PCI
MSI domain ("GICv2m: range[mem 0x08020000-0x08020fff], SPI[80:143]"), pcieport allocates one
MSI per root port and /proc/interrupts counts it on an "MSI <hwirq> Edge PCIe PME, aerdrv"
line (6.1: chip "MSI", hwirq = Requester ID << 11, drivers/pci/msi/irqdomain.c
pci_msi_domain_calc_hwirq; 6.12: chip "GICv2m-PCI-MSI-0000:00:02.0", the per-device domain).
6.1 says "Corrected"/"Uncorrected", 6.12 "Correctable"/"Uncorrectable".
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from armras.board.machine import Machine
from conftest import boot_linux_here
from test_linux import in_order
from test_smp import initramfs  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel

SEVERITY = {"6.1": ("Corrected", "Uncorrected (Non-Fatal)", "Uncorrected (Fatal)"),
            "6.12": ("Correctable", "Uncorrectable (Non-Fatal)", "Uncorrectable (Fatal)")}
ROOT_PORT = "0000:00:02.0"
UPSTREAM = "0000:02:00.0"
DOWNSTREAM = "0000:03:00.0"
AER_ROOT_STATUS = 0x100 + 0x30           # PCI_ERR_ROOT_STATUS in the AER capability at 0x100
PCI_PRIMARY_BUS = 0x18                   # primary, secondary, subordinate bus numbers
MSI_HWIRQ_00_02_0 = (0x00 << 8 | 2 << 3) << 11      # Requester ID 00:02.0 << 11
# The /proc/interrupts chip and hwirq columns of 00:02.0's MSI: 6.1's global PCI MSI domain,
# 6.12's per-device one (irq-gic-v2m.c as an MSI parent: "GICv2m-PCI-MSI-<device>", vector 0).
MSI_COLUMNS = {"6.1": rf"MSI {MSI_HWIRQ_00_02_0}", "6.12": rf"GICv2m-PCI-MSI-{ROOT_PORT}\s+0"}


def _boot(series: str, initrd: Path, injections: list[str], append: str = "") -> tuple[Machine, str, int]:
    return boot_linux_here(series, initrd, f"console=ttyAMA0 armras_sleep_ms=3000 {append}".strip(), injections)


def _enumeration(series: str) -> list[str]:
    # 6.12 names the port type after the class ("PCIe Switch Upstream Port"), 6.1 does not.
    return [
        r"ACPI: IORT 0x[0-9A-F]+ 000054 \(v03 ARMRAS ARMRASVT 00000001 ARMR 00000001\)",
        r"GICv2m: ACPI overriding V2M MSI_TYPER \(base:80, num:64\)",
        r"GICv2m: range\[mem 0x08020000-0x08020fff\], SPI\[80:143\]",
        rf"pci {ROOT_PORT}: \[1b36:000c\] type 01 class 0x060400\b",
        rf"pci {UPSTREAM}: \[104c:8232\] type 01 class 0x060400\b",
        rf"pci {DOWNSTREAM}: \[104c:8233\] type 01 class 0x060400\b",
        rf"pci {DOWNSTREAM}: PCI bridge to \[bus 04\]",
        rf"pci {UPSTREAM}: PCI bridge to \[bus 03-04\]",
        rf"pci {ROOT_PORT}: PCI bridge to \[bus 02-04\]",
        rf"pcieport {ROOT_PORT}: AER: enabled with IRQ (\d+)$",
    ]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_native_aer_at_the_switch_recovers(series: str, initramfs: Path) -> None:  # noqa: F811
    cor, nonfatal, fatal = SEVERITY[series]
    m, out, status = _boot(series, initramfs, [
        "aer:dev=02:00.0,status=cor,on=^SLEEP ms=",
        "aer:dev=02:00.0,status=uncor-nonfatal,on=RxErr",               # after the correctable report
        "aer:dev=02:00.0,status=uncor-fatal,on=AER: device recovery successful",
    ], "irqtest")
    assert status == 0, out[-4000:]
    in_order(out, [*_enumeration(series),
        rf"pcieport {ROOT_PORT}: AER: {cor} error message received from {UPSTREAM}$",
        rf"pcieport {UPSTREAM}: PCIe Bus Error: severity={cor}, type=Physical Layer, \(Receiver ID\)$",
        rf"pcieport {UPSTREAM}:   device \[104c:8232\] error status/mask=00000001/00002000$",
        rf"pcieport {UPSTREAM}:    \[ 0\] RxErr",
        rf"pcieport {ROOT_PORT}: AER: {re.escape(nonfatal)} error message received from {UPSTREAM}$",
        rf"pcieport {UPSTREAM}: PCIe Bus Error: severity={re.escape(nonfatal)}, type=Transaction Layer, "
        r"\(Requester ID\)$",
        rf"pcieport {UPSTREAM}:   device \[104c:8232\] error status/mask=00004000/00000000$",
        rf"pcieport {UPSTREAM}:    \[14\] CmpltTO",
        rf"pcieport {ROOT_PORT}: AER: device recovery successful$",
        rf"pcieport {ROOT_PORT}: AER: {re.escape(fatal)} error message received from {UPSTREAM}$",
        # A fatal error's link may be down: Linux does not read the upstream port's registers.
        rf"pcieport {UPSTREAM}: AER: PCIe Bus Error: severity={re.escape(fatal)}, type=Inaccessible, "
        r"\(Unregistered Agent ID\)$",
        rf"pcieport {ROOT_PORT}: AER: Root Port link has been reset \(0\)$",
        rf"pcieport {ROOT_PORT}: AER: device recovery successful$",
        r"^SLEEP DONE$",
        rf"^IRQTEST\s+\d+:\s+3\s+{MSI_COLUMNS[series]}\s+Edge\s+PCIe PME, aerdrv$",
        r"^IRQTEST DONE$",
    ])
    assert "device recovery failed" not in out and "can't recover" not in out
    # The AER IRQ Linux printed is the MSI that /proc/interrupts counted three times.
    irq = re.search(rf"pcieport {ROOT_PORT}: AER: enabled with IRQ (\d+)$", out, re.M)
    assert irq and re.search(rf"^IRQTEST\s+{irq[1]}:\s+3\s+{MSI_COLUMNS[series]}\s", out, re.M), out[-3000:]
    # Three MSI writes reached the GICv2m frame's MSI_SETSPI_NS, none went to INTx; one
    # Secondary Bus Reset of the root port, after which Linux restored the switch's bus numbers.
    rp, up, down = m.pcie.switch_root_port, m.pcie.switch_upstream, m.pcie.switch_downstream
    assert (rp.msi_sent, m.gic_v2m.raised, rp.line) == (3, 3, False)
    assert rp.secondary_bus_resets == 1 and up.secondary_bus_resets == 0
    assert up.reg(PCI_PRIMARY_BUS, 3) == 0x04_03_02 and down.reg(PCI_PRIMARY_BUS, 3) == 0x04_04_03
    assert rp.reg(AER_ROOT_STATUS) == 0                      # aer_irq / aer_root_reset cleared it


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_downstream_port_fatal_and_firmware_first_recover(series: str, initramfs: Path) -> None:  # noqa: F811
    """A fatal error the downstream port detects itself (recovery runs at that port: its own
    secondary bus reset), then firmware-first errors at the upstream port: a non-fatal one and a
    fatal one in a recoverable record (GHES panics on a fatal record; the section's severity is
    what ghes_handle_aer hands to the AER recovery, cper_severity_to_aer)."""
    _, nonfatal, fatal = SEVERITY[series]
    m, out, status = _boot(series, initramfs, [
        "aer:dev=03:00.0,status=uncor-fatal,on=^SLEEP ms=",
        "pcie:dev=02:00.0,status=uncor-nonfatal,on=03:00.0: AER: device recovery successful",
        "pcie:dev=02:00.0,status=uncor-fatal,severity=recoverable,on=00:02.0: AER: device recovery successful",
    ])
    assert status == 0, out[-4000:]
    in_order(out, [*_enumeration(series),
        rf"pcieport {ROOT_PORT}: AER: {re.escape(fatal)} error message received from {DOWNSTREAM}$",
        # A downstream port's own fatal error: Linux reads its registers (aer_get_device_error_info).
        rf"pcieport {DOWNSTREAM}: PCIe Bus Error: severity={re.escape(fatal)}, type=Data Link Layer, "
        r"\(Receiver ID\)$",
        rf"pcieport {DOWNSTREAM}:   device \[104c:8233\] error status/mask=00000010/00000000$",
        rf"pcieport {DOWNSTREAM}:    \[ 4\] DLP",
        rf"pcieport {DOWNSTREAM}: AER: Downstream Port link has been reset \(0\)$",
        rf"pcieport {DOWNSTREAM}: AER: device recovery successful$",
        r"\[Hardware Error\]: event severity: recoverable$",
        r"\[Hardware Error\]:   port_type: 5, upstream switch port$",
        rf"\[Hardware Error\]:   device_id: {UPSTREAM}$",
        r"\[Hardware Error\]:   secondary_bus: 0x03$",
        r"\[Hardware Error\]:   vendor_id: 0x104c, device_id: 0x8232$",
        # Received System Error (the downstream port's fatal message passed through) and SERR#
        # Enable, which Linux's pci_configure_serr set so the switch forwards ERR_* messages.
        r"\[Hardware Error\]:   bridge: secondary_status: 0x4000, control: 0x0002$",
        rf"pcieport {UPSTREAM}: AER: aer_status: 0x00004000, aer_mask: 0x00000000$",
        rf"pcieport {UPSTREAM}: AER: aer_layer=Transaction Layer, aer_agent=Requester ID$",
        rf"pcieport {ROOT_PORT}: AER: device recovery successful$",
        r"\[Hardware Error\]: event severity: recoverable$",
        r"\[Hardware Error\]:  Error 0, type: fatal$",
        r"\[Hardware Error\]:   aer_uncor_status: 0x00000010, aer_uncor_mask: 0x00000000$",
        rf"pcieport {UPSTREAM}: AER: aer_status: 0x00000010, aer_mask: 0x00000000$",
        rf"pcieport {ROOT_PORT}: AER: Root Port link has been reset \(0\)$",
        rf"pcieport {ROOT_PORT}: AER: device recovery successful$",
        r"^SLEEP DONE$",
    ])
    assert "device recovery failed" not in out and "Kernel panic" not in out
    assert m.pcie.switch_downstream.secondary_bus_resets == 1
    assert m.pcie.switch_root_port.secondary_bus_resets == 1
    assert [m.sources.by_id(1).read_ack()] == [1]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_root_ports_fall_back_to_intx_without_msi(series: str, initramfs: Path) -> None:  # noqa: F811
    """pci=nomsi: Linux enables no MSI, so the ports' services get INTA through the DSDT's _PRT
    (slot 1 -> GSI 36, slot 2 -> GSI 37, level). Without MSI Linux asks no _OSC control
    and runs no AER at all (aer.c pci_aer_available() requires pci_msi_enabled()), so
    pcie_ports=native makes it drive the PME service, the one left to show the wiring."""
    m, out, status = _boot(series, initramfs, [], "irqtest pci=nomsi pcie_ports=native")
    assert status == 0, out[-4000:]
    found = in_order(out, [
        r"pcieport 0000:00:01\.0: PME: Signaling with IRQ (\d+)$",
        rf"pcieport {ROOT_PORT}: PME: Signaling with IRQ (\d+)$",
        r"^IRQTEST DONE$",
    ])
    for match, gsi in zip(found[:2], (36, 37)):
        assert re.search(rf"^IRQTEST\s+{match[1]}:\s+0\s+GIC-0\s+{gsi}\s+Level\s+PCIe PME$", out, re.M), out[-3000:]
    assert "AER: enabled" not in out
    assert (m.pcie.root_port.msi_sent, m.pcie.switch_root_port.msi_sent, m.gic_v2m.raised) == (0, 0, 0)
