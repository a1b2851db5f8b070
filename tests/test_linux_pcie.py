"""PCIe AER on Debian's unmodified kernels: native AER (root port interrupt) and firmware-first (GHES).

What the kernel prints comes from drivers/pci/probe.c ("[%04x:%04x] type %02x class %#08x"),
drivers/acpi/pci_root.c ("_OSC: OS now controls [...]"), drivers/pci/pcie/aer.c ("AER:
enabled with IRQ %d", "%s error message received from %s", "PCIe Bus Error: severity=%s,
type=%s, (%s)", "aer_status: ..." from cper_print_aer), drivers/pci/pcie/err.c ("can't
recover (no error_detected callback)", "device recovery failed") and
drivers/firmware/efi/cper.c ("section_type: PCIe error", "port_type: %d, %s"). 6.1 says
"Corrected"/"Uncorrected", 6.12 "Correctable"/"Uncorrectable" (aer.c's aer_error_severity_string).
The endpoint (1b36:0005) has no driver, so an uncorrectable error is not recoverable: the kernel
says so, and for a fatal one still resets the link below the root port (secondary bus reset).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from armras.board.machine import Machine
from conftest import boot_linux_here
from test_smp import initramfs  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel

AER_ROOT_STATUS = 0x100 + 0x30           # PCI_ERR_ROOT_STATUS in the AER capability at 0x100
AER_COR_STATUS = 0x100 + 0x10            # PCI_ERR_COR_STATUS
# aer_error_severity_string[] per kernel: correctable, non-fatal, fatal.
SEVERITY = {"6.1": ("Corrected", "Uncorrected (Non-Fatal)", "Uncorrected (Fatal)"),
            "6.12": ("Correctable", "Uncorrectable (Non-Fatal)", "Uncorrectable (Fatal)")}
ENDPOINT = "0000:01:00.0"
ROOT_PORT = "0000:00:01.0"


def _boot(series: str, initrd: Path, injections: list[str]) -> tuple[Machine, str, int]:
    return boot_linux_here(series, initrd, "console=ttyAMA0 armras_sleep_ms=3000", injections)


def _after(out: str, line: str) -> str:
    assert line in out, f"{line!r} not printed:\n{out[-4000:]}"
    return out[out.index(line):]


def _assert_enumerated(out: str) -> None:
    assert re.search(r"_OSC: OS now controls \[[^]]*\bAER\b[^]]*\]", out), out[-4000:]
    assert re.search(rf"pci {ROOT_PORT}: \[1b36:000c\] type 01 class 0x060400\b", out)
    assert re.search(rf"pci {ENDPOINT}: \[1b36:0005\] type 00 class 0x00ff00\b", out)
    assert re.search(rf"pcieport {ROOT_PORT}: AER: enabled with IRQ \d+$", out, re.M)


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_native_aer_correctable_nonfatal_fatal(series: str, initramfs: Path) -> None:  # noqa: F811
    cor, nonfatal, fatal = SEVERITY[series]
    m, out, status = _boot(series, initramfs, [
        "aer:dev=01:00.0,status=cor,on=^SLEEP ms=",
        "aer:dev=01:00.0,status=uncor-nonfatal,on=RxErr",       # after the correctable one's report
        "aer:dev=01:00.0,status=uncor-fatal,on=CmpltTO",        # after the non-fatal one's report
    ])
    assert status == 0, out[-4000:]
    _assert_enumerated(out)
    rest = _after(out, f"pcieport {ROOT_PORT}: AER: {cor} error message received from {ENDPOINT}")
    rest = _after(rest, f"pci {ENDPOINT}: PCIe Bus Error: severity={cor}, type=Physical Layer, (Receiver ID)")
    rest = _after(rest, f"pci {ENDPOINT}:   device [1b36:0005] error status/mask=00000001/00002000")
    rest = _after(rest, f"pci {ENDPOINT}:    [ 0] RxErr")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: {nonfatal} error message received from {ENDPOINT}")
    rest = _after(rest, f"severity={nonfatal}, type=Transaction Layer, (Requester ID)")
    rest = _after(rest, f"pci {ENDPOINT}:   device [1b36:0005] error status/mask=00004000/00000000")
    rest = _after(rest, f"pci {ENDPOINT}:    [14] CmpltTO")
    rest = _after(rest, f"pci {ENDPOINT}: AER: can't recover (no error_detected callback)")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: device recovery failed")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: {fatal} error message received from {ENDPOINT}")
    # A fatal error's link may be down: Linux does not read the endpoint's registers.
    rest = _after(rest, f"severity={fatal}, type=Inaccessible, (Unregistered Agent ID)")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: Root Port link has been reset (0)")
    _after(rest, f"pcieport {ROOT_PORT}: AER: device recovery failed")
    assert "SLEEP DONE" in out
    # Linux's aer_irq cleared the Root Error Status (so INTA is low again) and the
    # endpoint's correctable status it reported.
    rp = m.pcie.root_port
    assert rp.reg(AER_ROOT_STATUS) == 0 and not rp.line
    assert m.pcie.endpoint.reg(AER_COR_STATUS) == 0


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_firmware_first_pcie_errors(series: str, initramfs: Path) -> None:  # noqa: F811
    m, out, status = _boot(series, initramfs, [
        "pcie:dev=01:00.0,status=cor,on=^SLEEP ms=",
        "pcie:dev=00:01.0,status=uncor-nonfatal,on=aer_agent=Receiver ID",
    ])
    assert status == 0, out[-4000:]
    _assert_enumerated(out)
    blocks = re.findall(r"^.*\{(\d+)\}\[Hardware Error\]: Hardware error from APEI Generic Hardware Error "
                        r"Source: 1$", out, re.M)
    assert len(blocks) == 2, out[-4000:]
    first = "\n".join(line for line in out.splitlines() if f"{{{blocks[0]}}}[Hardware Error]" in line)
    second = "\n".join(line for line in out.splitlines() if f"{{{blocks[1]}}}[Hardware Error]" in line)
    for needle in ("event severity: corrected", "section_type: PCIe error", "port_type: 0, PCIe end point",
                   "version: 4.0", f"device_id: {ENDPOINT}", "vendor_id: 0x1b36, device_id: 0x0005",
                   "class_code: 00ff00"):
        assert needle in first, first
    for needle in ("event severity: recoverable", "section_type: PCIe error", "port_type: 4, root port",
                   f"device_id: {ROOT_PORT}", "secondary_bus: 0x01", "vendor_id: 0x1b36, device_id: 0x000c",
                   "class_code: 060400", "bridge: secondary_status: 0x0000"):
        assert needle in second, second
    # aer_recover_queue -> aer_recover_work_func: cper_print_aer, then (non-fatal) pcie_do_recovery.
    rest = _after(out, f"pci {ENDPOINT}: AER: aer_status: 0x00000001, aer_mask: 0x00002000")
    rest = _after(rest, f"pci {ENDPOINT}: AER: aer_layer=Physical Layer, aer_agent=Receiver ID")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: aer_status: 0x00004000, aer_mask: 0x00000000")
    rest = _after(rest, f"pcieport {ROOT_PORT}: AER: aer_uncor_severity: 0x00462030")
    rest = _after(rest, f"pci {ENDPOINT}: AER: can't recover (no error_detected callback)")
    _after(rest, f"pcieport {ROOT_PORT}: AER: device recovery failed")
    # Native AER saw nothing: firmware took these errors.
    assert "error message received" not in out
    assert [m.sources.by_id(1).read_ack()] == [1]


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_unsupported_request_with_header_log(series: str, initramfs: Path) -> None:  # noqa: F811
    """An Unsupported Request (a TLP-logging error) with its Header Log, natively and firmware-first:
    Linux prints the logged TLP header (aer.c __print_tlp_header) from the registers and from the CPER."""
    header = "0x4a000001:0x0100000f:0x10000000:0"
    m, out, status = _boot(series, initramfs, [
        f"aer:dev=01:00.0,uncor=0x100000,header={header},on=^SLEEP ms=",
        f"pcie:dev=01:00.0,uncor=0x100000,header={header},on=AER: device recovery failed",
    ])
    assert status == 0, out[-4000:]
    nonfatal = SEVERITY[series][1]
    rest = _after(out, f"pcieport {ROOT_PORT}: AER: {nonfatal} error message received from {ENDPOINT}")
    rest = _after(rest, f"pci {ENDPOINT}:   device [1b36:0005] error status/mask=00100000/00000000")
    rest = _after(rest, f"pci {ENDPOINT}:    [20] UnsupReq               (First)")
    rest = _after(rest, f"pci {ENDPOINT}: AER:   TLP Header: 4a000001 0100000f 10000000 00000000")
    rest = _after(rest, "section_type: PCIe error")
    rest = _after(rest, f"pci {ENDPOINT}: AER: aer_status: 0x00100000, aer_mask: 0x00000000")
    _after(rest, f"pci {ENDPOINT}: AER:   TLP Header: 4a000001 0100000f 10000000 00000000")
