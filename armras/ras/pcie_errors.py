"""PCIe errors as the user names them, and the CPER PCIe section firmware builds from a function.

Native AER (`aer:` injections) leaves the error in the function's AER registers and lets
the root port interrupt the OS; firmware-first (`pcie:`) is what firmware does when it
takes the error instead: read the function's PCI Express and AER capabilities, clear the
status it read, and report them in a PCI Express Error Section (UEFI 2.9 N.2.7) through a
GHES source (Linux: ghes_handle_aer -> aer_recover_queue).
"""
from __future__ import annotations

from dataclasses import dataclass

from armras.devices import pcie
from armras.errors import ArmrasError
from armras.ras import cper


@dataclass(frozen=True)
class PcieError:
    """Status bits to set in a function's AER registers."""

    cor: int = 0
    uncor: int = 0
    header_log: tuple[int, int, int, int] | None = None   # the TLP header of an uncorrectable error

    def severity(self, fn: pcie.Function) -> cper.Severity:
        """The CPER severity of these errors at `fn` (its Uncorrectable Error Severity register)."""
        if self.uncor & fn.reg(pcie.AER_CAP + pcie.AER_UNCOR_SEVER):
            return cper.Severity.FATAL
        if self.uncor:
            return cper.Severity.RECOVERABLE
        return cper.Severity.CORRECTED


# status=NAME: one representative error of each class (PCIe Base 4.0 7.8.4.2 / 7.8.4.5; the
# uncorrectable ones are non-fatal / fatal in the Uncorrectable Error Severity register's default).
STATUS_NAMES: dict[str, PcieError] = {
    "cor": PcieError(cor=pcie.COR_RCVR),                      # Receiver Error
    "uncor-nonfatal": PcieError(uncor=pcie.UNCOR_COMP_TIME),  # Completion Timeout
    "uncor-fatal": PcieError(uncor=pcie.UNCOR_DLP),           # Data Link Protocol Error
}


def parse_bdf(text: str) -> int:
    """BB:DD.F (hex bus and device, function 0-7) as a Requester ID."""
    try:
        bus_text, _, rest = text.partition(":")
        dev_text, dot, fn_text = rest.partition(".")
        bus, dev, fn = int(bus_text, 16), int(dev_text, 16), int(fn_text, 10)
    except ValueError:
        raise ArmrasError(f"dev={text!r} is not BB:DD.F (e.g. 01:00.0)") from None
    if not dot or not 0 <= bus <= 0xFF or not 0 <= dev <= 0x1F or not 0 <= fn <= 7:
        raise ArmrasError(f"dev={text!r} is not BB:DD.F with bus 00-ff, device 00-1f, function 0-7")
    return pcie.bdf(bus, (dev << 3) | fn)


def function_at(host: pcie.PcieHost, requester_id: int) -> pcie.Function:
    fn = host.find(requester_id)
    if fn is None:
        present = ", ".join(pcie.format_bdf(rid) for rid, _ in host.functions() if rid is not None)
        raise ArmrasError(f"no PCIe function at {pcie.format_bdf(requester_id)} (the board has {present})")
    return fn


def firmware_first_record(host: pcie.PcieHost, requester_id: int, error: PcieError,
                          severity: cper.Severity | None = None) -> bytes:
    """The record firmware writes for `error` at `requester_id`: the function's registers with the
    error logged, which firmware then clears (the function is left as it was). The section's
    severity is the error's class (Linux: cper_severity_to_aer picks the recovery from it);
    `severity` overrides the record's (GHES panics on a fatal record)."""
    fn = function_at(host, requester_id)
    saved = bytes(fn.cfg.data)
    try:
        fn.aer_error(error.cor, error.uncor, error.header_log)
        info = cper.PcieErrorInfo(
            port_type=int(fn.port_type),
            command=fn.reg(pcie.PCI_COMMAND, 2),
            status=fn.reg(pcie.PCI_STATUS, 2),
            vendor_id=fn.reg(pcie.PCI_VENDOR_ID, 2),
            device_id=fn.reg(pcie.PCI_DEVICE_ID, 2),
            class_code=fn.reg(pcie.PCI_CLASS_PROG, 3),
            segment=0,
            bus=requester_id >> 8,
            device=(requester_id >> 3) & 0x1F,
            function=requester_id & 7,
            secondary_bus=(fn.reg(pcie.PCI_SECONDARY_BUS, 1) if isinstance(fn, pcie.Bridge) else 0),
            capability=fn.pcie_cap(),
            aer=fn.aer_regs(),
            bridge_secondary_status=(fn.reg(pcie.PCI_SEC_STATUS, 2) if isinstance(fn, pcie.Bridge) else None),
            bridge_control=(fn.reg(pcie.PCI_BRIDGE_CONTROL, 2) if isinstance(fn, pcie.Bridge) else None),
        )
    finally:
        fn.cfg.data[:] = saved
    own = error.severity(fn)
    return cper.pcie_error_record(info, severity if severity is not None else own, section_severity=own)
