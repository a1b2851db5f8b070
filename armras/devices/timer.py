"""The Arm generic timer's EL1 physical and virtual timers (Arm ARM D11).

Unicorn 2.1.4's generic timer is inert: guest MSR/MRS of CNT{P,V}_{CTL,CVAL,TVAL}_EL0
are dropped/read as 0, and it has no interrupt outputs. We therefore trap exactly those
registers through UC_HOOK_INSN (MRS/MSR) and model the timers here; the counters
(CNTPCT/CNTVCT) stay native, read through the machine's clock. The timer outputs are
level-sensitive PPIs on the GIC: 30 (physical) and 27 (virtual).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

from armras.devices import IrqSink

log = logging.getLogger(__name__)

CTL_ENABLE = 1 << 0
CTL_IMASK = 1 << 1
CTL_ISTATUS = 1 << 2

# (op1, CRn, CRm) of the EL0 timer registers (op0 = 3); op2 selects TVAL/CTL/CVAL.
OP1_EL0, CRN_TIMER = 3, 14
CRM_PHYS, CRM_VIRT = 2, 3
OP2_TVAL, OP2_CTL, OP2_CVAL = 0, 1, 2


class Counter(Protocol):
    """The system counter as a timer sees it (ticks at `frequency` Hz)."""

    frequency: int

    def physical_count(self) -> int: ...

    def virtual_count(self) -> int: ...


@dataclass
class _Timer:
    name: str
    intid: int
    virtual: bool
    ctl: int = 0
    cval: int = 0


@dataclass
class GenericTimer:
    counter: Counter
    irq: IrqSink
    on_change: Callable[[], None] = field(default=lambda: None)
    phys_intid: int = 30
    virt_intid: int = 27

    def __post_init__(self) -> None:
        self.timers = {
            CRM_PHYS: _Timer("phys", self.phys_intid, virtual=False),
            CRM_VIRT: _Timer("virt", self.virt_intid, virtual=True),
        }

    def _count(self, t: _Timer) -> int:
        return self.counter.virtual_count() if t.virtual else self.counter.physical_count()

    def _istatus(self, t: _Timer, count: int | None = None) -> bool:
        if not t.ctl & CTL_ENABLE:
            return False
        count = self._count(t) if count is None else count
        return count >= t.cval

    # --- system register access (from the MRS/MSR hook) -------------------------------
    def handles(self, op0: int, op1: int, crn: int, crm: int) -> bool:
        return op0 == 3 and op1 == OP1_EL0 and crn == CRN_TIMER and crm in self.timers

    def read(self, crm: int, op2: int) -> int:
        t = self.timers[crm]
        if op2 == OP2_CTL:
            return (t.ctl & (CTL_ENABLE | CTL_IMASK)) | (CTL_ISTATUS if self._istatus(t) else 0)
        if op2 == OP2_CVAL:
            return t.cval
        if op2 == OP2_TVAL:
            return (t.cval - self._count(t)) & 0xFFFF_FFFF
        return 0

    def write(self, crm: int, op2: int, value: int) -> None:
        t = self.timers[crm]
        if op2 == OP2_CTL:
            t.ctl = value & (CTL_ENABLE | CTL_IMASK)
        elif op2 == OP2_CVAL:
            t.cval = value & 0xFFFF_FFFF_FFFF_FFFF
        elif op2 == OP2_TVAL:
            tval = value & 0xFFFF_FFFF
            if tval & 0x8000_0000:
                tval -= 1 << 32
            t.cval = (self._count(t) + tval) & 0xFFFF_FFFF_FFFF_FFFF
        self.update()
        self.on_change()

    # --- interrupt lines and deadlines ---------------------------------------------
    def update(self) -> None:
        """Drive each timer's PPI from its current condition."""
        for t in self.timers.values():
            self.irq.set_level(t.intid, self._istatus(t) and not t.ctl & CTL_IMASK)

    def describe(self) -> str:
        return ", ".join(f"{t.name} timer CTL={t.ctl:#x} CVAL={t.cval:#x} count={self._count(t):#x}"
                         for t in self.timers.values())

    def ticks_until_next(self, virtual: bool) -> int | None:
        """Counter ticks until the next pending-to-be interrupt of this kind, or None."""
        best: int | None = None
        for t in self.timers.values():
            if t.virtual != virtual or not t.ctl & CTL_ENABLE or t.ctl & CTL_IMASK:
                continue
            delta = t.cval - self._count(t)
            if delta > 0 and (best is None or delta < best):
                best = delta
        return best
