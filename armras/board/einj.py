"""What the board does when the guest's EINJ EXECUTE_OPERATION asks for a memory error.

The same RAS path as the command line's injections (armras.drive.inject):

* memory uncorrectable non-fatal (0x10): the page is poisoned (Machine.poison, as
  --poison-on): the guest's next access to it takes an SEA with a memory-error CPER, and
  Linux's memory_failure() recovers the page ("Memory failure: ...: Recovered");
* memory correctable (0x8): a corrected memory-error record in the GPIO-notified source
  (as `gpio:pa=...,severity=corrected`);
* memory uncorrectable fatal (0x20): a fatal memory-error record in the GPIO-notified
  source (as `gpio:pa=...,severity=fatal`): the OS panics, and firmware keeps the
  record for the next boot's BERT.

The request is carried out between CPU slices (Machine.defer): unmapping a page from
inside the MMIO access that asked for it is not safe, and the guest sees BUSY until then.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from armras.board.memmap import VIRT_MEMMAP
from armras.devices.einj import CommandStatus, EinjDevice, ErrorType, InjectionRequest
from armras.errors import ArmrasError
from armras.ras import cper
from armras.ras.sources import Notify

if TYPE_CHECKING:
    from armras.board.machine import Machine

# Error type -> severity of the record firmware reports for it.
RECORD_SEVERITY = {
    ErrorType.MEMORY_CORRECTABLE: cper.Severity.CORRECTED,
    ErrorType.MEMORY_FATAL: cper.Severity.FATAL,
}


def perform(machine: Machine, request: InjectionRequest) -> None:
    """Inject `request` now (the CPU is stopped between slices); ArmrasError if it cannot be."""
    if request.error_type is ErrorType.MEMORY_UNCORRECTABLE:
        machine.ras.source(notify=Notify.SEA)     # the access must be reportable (a --hest may lack SEA)
        machine.poison(request.address)
        return
    severity = RECORD_SEVERITY[request.error_type]
    machine.report(cper.memory_error_record(request.address, severity), notify=Notify.GPIO)


def make_einj(machine: Machine) -> EinjDevice:
    """The board's EINJ frame, its requests carried out on `machine`."""
    def submit(request: InjectionRequest, complete: Callable[[CommandStatus], None]) -> None:
        def action() -> None:
            try:
                perform(machine, request)
            except ArmrasError as e:
                machine.warnings.warning(("einj", "failed"), "EINJ: %s at %#x failed (UNKNOWN_FAILURE): %s",
                                         request.error_type.name, request.address, e)
                complete(CommandStatus.UNKNOWN_FAILURE)
                return
            complete(CommandStatus.SUCCESS)

        machine.defer(action, f"EINJ: inject {request.error_type.name.lower()} at {request.address:#x}")

    return EinjDevice(VIRT_MEMMAP["einj"].base, machine.ram.contains, submit, warnings=machine.warnings)


__all__ = ["make_einj", "perform"]
