"""The board's virtual CPUs: what each keeps while another one runs on the shared core.

All vCPUs run on one Unicorn instance, one at a time, round-robin in slices, as QEMU's
single-threaded TCG does. One instance means one translation cache: code written by any
CPU is invalidated for all (Unicorn detects self-modifying code per instance only), and
what Unicorn misses, a store through a second alias, goes at the guest's IC IVAU or IC
IALLU[IS] for all of them too (armras.arch.hooks.ICacheMaintenance). Switching CPUs saves
the outgoing CPU's registers (Unicorn's context: CPUARMState), restores the incoming
one's, and flushes the softmmu TLB (it is not tagged by CPU). MPIDR_EL1 is not part of a
context, but EL1 reads of it return VMPIDR_EL2, which is: each CPU sets its own.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from unicorn.unicorn_py3.unicorn import UcContext

from armras.devices.gicv2 import MAX_CPUS     # GICv2's limit, as QEMU virt with gic-version=2
from armras.devices.timer import GenericTimer

MPIDR_RES1 = 1 << 31             # MPIDR_EL1 bit 31 reads as one
VMPIDR_EL2 = (3, 4, 0, 0, 5)


def mpidr_of(index: int) -> int:
    """MPIDR affinity of CPU `index` as QEMU virt numbers GICv2 CPUs (8 per cluster)."""
    return (index // 8) << 8 | index % 8


class Power(enum.Enum):
    """PSCI AFFINITY_INFO states (DEN 0022 5.1.5)."""

    ON = 0
    OFF = 1
    ON_PENDING = 2


@dataclass
class VCpu:
    index: int
    mpidr: int
    timer: GenericTimer
    power: Power = Power.OFF
    context: UcContext | None = None        # its registers while another CPU runs
    waiting: bool = False                   # in WFI (or PSCI CPU_SUSPEND): runs again on an interrupt
    sea_held: bool = False                  # an injected SEA this CPU must take
    start: tuple[int, int] | None = None    # PSCI CPU_ON entry point and context id, not yet applied
    seas_taken: int = 0                     # SEAs this CPU took (injected or from poisoned pages)
    serror: int | None = None               # the syndrome of an SError pending for this CPU
    serrors_taken: int = 0
    serrors_deferred: int = 0               # deferred into DISR_EL1 by an ESB
    disr: int = 0                           # DISR_EL1 while another CPU runs (RAS; not in Unicorn's context)


__all__ = ["MAX_CPUS", "MPIDR_RES1", "VMPIDR_EL2", "Power", "VCpu", "mpidr_of"]
