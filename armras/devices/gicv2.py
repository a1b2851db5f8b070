"""GICv2 distributor and CPU interface for one CPU (Arm IHI 0048B).

Enough for Linux's irq-gic driver and bare-metal guests: SGIs, PPIs and SPIs with
enable/pending/active state, priorities and the priority mask, edge and level
configuration, running-priority stack, IAR/EOIR/DIR. Security extensions are not
modelled: the guest is Non-secure and all interrupts are Group 1.
"""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)

NUM_IRQS = 288                 # 32 private + 256 shared, as QEMU virt
SPURIOUS = 1023
IDLE_PRIORITY = 0x100          # running priority with nothing active

# Distributor registers
GICD_CTLR = 0x000
GICD_TYPER = 0x004
GICD_IIDR = 0x008
GICD_IGROUPR = 0x080
GICD_ISENABLER = 0x100
GICD_ICENABLER = 0x180
GICD_ISPENDR = 0x200
GICD_ICPENDR = 0x280
GICD_ISACTIVER = 0x300
GICD_ICACTIVER = 0x380
GICD_IPRIORITYR = 0x400
GICD_ITARGETSR = 0x800
GICD_ICFGR = 0xC00
GICD_SGIR = 0xF00
GICD_CPENDSGIR = 0xF10
GICD_SPENDSGIR = 0xF20
GICD_PIDR2 = 0xFE8

# CPU interface registers
GICC_CTLR = 0x00
GICC_PMR = 0x04
GICC_BPR = 0x08
GICC_IAR = 0x0C
GICC_EOIR = 0x10
GICC_RPR = 0x14
GICC_HPPIR = 0x18
GICC_ABPR = 0x1C
GICC_AIAR = 0x20
GICC_AEOIR = 0x24
GICC_AHPPIR = 0x28
GICC_APR0 = 0xD0
GICC_IIDR = 0xFC
GICC_DIR = 0x1000

GICC_CTLR_EOIMODE = 1 << 9
IIDR_ARM = 0x0200043B          # ARM implementer, GIC-400 style


class GicV2:
    """Interrupt state plus the two register frames (`distributor`, `cpu_interface`)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.enabled = [False] * NUM_IRQS
        self.latched = [False] * NUM_IRQS   # edge/SGI/software pending state
        self.level = [False] * NUM_IRQS     # input line level
        self.active = [False] * NUM_IRQS
        self.priority = [0] * NUM_IRQS
        self.edge = [True] * 16 + [False] * (NUM_IRQS - 16)  # SGIs are edge; PPIs/SPIs level by default
        self.group = [0] * NUM_IRQS
        self.targets = [1] * NUM_IRQS
        self.dist_ctlr = 0
        self.cpu_ctlr = 0
        self.pmr = 0
        self.bpr = 2
        self.running: list[tuple[int, int]] = []   # stack of (priority, intid) of acknowledged IRQs
        self._on_change = on_change or (lambda: None)
        self.distributor = _Frame("gicd", self._dist_read, self._dist_write)
        self.cpu_interface = _Frame("gicc", self._cpu_read, self._cpu_write)

    # --- interrupt lines (IrqSink) --------------------------------------------------
    def set_level(self, intid: int, level: bool) -> None:
        if self.level[intid] == level:
            return
        self.level[intid] = level
        if level and self.edge[intid]:
            self.latched[intid] = True
        self._on_change()

    def pulse(self, intid: int) -> None:
        self.latched[intid] = True
        self._on_change()

    # --- state -----------------------------------------------------------------------
    def is_pending(self, i: int) -> bool:
        return self.latched[i] or (not self.edge[i] and self.level[i])

    def running_priority(self) -> int:
        return self.running[-1][0] if self.running else IDLE_PRIORITY

    def highest_pending(self) -> int:
        """Highest-priority pending, enabled, inactive interrupt, or SPURIOUS."""
        best, best_prio = SPURIOUS, IDLE_PRIORITY
        for i in range(NUM_IRQS):
            if self.enabled[i] and not self.active[i] and self.is_pending(i) and self.priority[i] < best_prio:
                best, best_prio = i, self.priority[i]
        return best

    def irq_asserted(self) -> bool:
        """Whether the CPU's IRQ input is asserted (the machine then takes the IRQ when PSTATE.I is clear)."""
        if not (self.dist_ctlr & 3 and self.cpu_ctlr & 3):
            return False
        i = self.highest_pending()
        if i == SPURIOUS:
            return False
        prio = self.priority[i]
        return prio < self.pmr and prio < self.running_priority()

    def describe(self) -> str:
        pending = [i for i in range(NUM_IRQS) if self.is_pending(i)]
        active = [i for i in range(NUM_IRQS) if self.active[i]]
        return (f"GIC dist/cpu enable {self.dist_ctlr}/{self.cpu_ctlr:#x} PMR {self.pmr:#x} "
                f"pending {pending} active {active} running {[i for _, i in self.running]}")

    def acknowledge(self) -> int:
        if not self.irq_asserted():
            return SPURIOUS
        i = self.highest_pending()
        self.active[i] = True
        self.latched[i] = False
        self.running.append((self.priority[i], i))
        return i

    def end_of_interrupt(self, intid: int) -> None:
        for n in range(len(self.running) - 1, -1, -1):
            if self.running[n][1] == intid:
                del self.running[n]
                break
        else:
            log.debug("EOI of interrupt %d that is not running", intid)
        if not self.cpu_ctlr & GICC_CTLR_EOIMODE:
            self.active[intid] = False
        self._on_change()

    def deactivate(self, intid: int) -> None:
        self.active[intid] = False
        self._on_change()

    # --- distributor frame -------------------------------------------------------------
    def _bits(self, arr: list[bool], offset: int, size: int) -> int:
        first = offset * 8
        return sum(1 << b for b in range(size * 8) if first + b < NUM_IRQS and arr[first + b])

    def _set_bits(self, arr: list[bool], offset: int, value: int, size: int, state: bool) -> None:
        first = offset * 8
        for b in range(size * 8):
            if value >> b & 1 and first + b < NUM_IRQS:
                arr[first + b] = state

    def _dist_read(self, off: int, size: int) -> int:
        if off == GICD_CTLR:
            return self.dist_ctlr
        if off == GICD_TYPER:
            return NUM_IRQS // 32 - 1
        if off == GICD_IIDR:
            return IIDR_ARM
        if GICD_IGROUPR <= off < GICD_ISENABLER:
            return self._bits([bool(g) for g in self.group], off - GICD_IGROUPR, size)
        if GICD_ISENABLER <= off < GICD_ICENABLER:
            return self._bits(self.enabled, off - GICD_ISENABLER, size)
        if GICD_ICENABLER <= off < GICD_ISPENDR:
            return self._bits(self.enabled, off - GICD_ICENABLER, size)
        if GICD_ISPENDR <= off < GICD_ISACTIVER:
            base = GICD_ISPENDR if off < GICD_ICPENDR else GICD_ICPENDR
            pend = [self.is_pending(i) for i in range(NUM_IRQS)]
            return self._bits(pend, off - base, size)
        if GICD_ISACTIVER <= off < GICD_IPRIORITYR:
            base = GICD_ISACTIVER if off < GICD_ICACTIVER else GICD_ICACTIVER
            return self._bits(self.active, off - base, size)
        if GICD_IPRIORITYR <= off < GICD_IPRIORITYR + NUM_IRQS:
            return self._bytes(self.priority, off - GICD_IPRIORITYR, size)
        if GICD_ITARGETSR <= off < GICD_ITARGETSR + NUM_IRQS:
            return self._bytes(self.targets, off - GICD_ITARGETSR, size)
        if GICD_ICFGR <= off < GICD_ICFGR + NUM_IRQS // 4:
            first = (off - GICD_ICFGR) * 4
            return sum((2 if self.edge[first + k] else 0) << (2 * k)
                       for k in range(size * 4) if first + k < NUM_IRQS)
        if off == GICD_PIDR2:
            return 0x20  # ArchRev 2
        return 0

    def _bytes(self, arr: list[int], index: int, size: int) -> int:
        return sum((arr[index + k] & 0xFF) << (8 * k) for k in range(size) if index + k < NUM_IRQS)

    def _dist_write(self, off: int, size: int, value: int) -> None:
        if off == GICD_CTLR:
            self.dist_ctlr = value & 3
        elif GICD_IGROUPR <= off < GICD_ISENABLER:
            first = (off - GICD_IGROUPR) * 8
            for b in range(size * 8):
                if first + b < NUM_IRQS:
                    self.group[first + b] = value >> b & 1
        elif GICD_ISENABLER <= off < GICD_ICENABLER:
            self._set_bits(self.enabled, off - GICD_ISENABLER, value, size, True)
        elif GICD_ICENABLER <= off < GICD_ISPENDR:
            self._set_bits(self.enabled, off - GICD_ICENABLER, value, size, False)
        elif GICD_ISPENDR <= off < GICD_ICPENDR:
            self._set_bits(self.latched, off - GICD_ISPENDR, value, size, True)
        elif GICD_ICPENDR <= off < GICD_ISACTIVER:
            self._set_bits(self.latched, off - GICD_ICPENDR, value, size, False)
        elif GICD_ISACTIVER <= off < GICD_ICACTIVER:
            self._set_bits(self.active, off - GICD_ISACTIVER, value, size, True)
        elif GICD_ICACTIVER <= off < GICD_IPRIORITYR:
            self._set_bits(self.active, off - GICD_ICACTIVER, value, size, False)
        elif GICD_IPRIORITYR <= off < GICD_IPRIORITYR + NUM_IRQS:
            idx = off - GICD_IPRIORITYR
            for k in range(size):
                if idx + k < NUM_IRQS:
                    self.priority[idx + k] = value >> (8 * k) & 0xFF
        elif GICD_ITARGETSR <= off < GICD_ITARGETSR + NUM_IRQS:
            idx = off - GICD_ITARGETSR
            for k in range(size):
                if 32 <= idx + k < NUM_IRQS:  # SGI/PPI targets are read-only
                    self.targets[idx + k] = value >> (8 * k) & 0xFF
        elif GICD_ICFGR <= off < GICD_ICFGR + NUM_IRQS // 4:
            first = (off - GICD_ICFGR) * 4
            for k in range(size * 4):
                if 16 <= first + k < NUM_IRQS:  # SGI configuration is fixed (edge)
                    self.edge[first + k] = bool(value >> (2 * k + 1) & 1)
        elif off == GICD_SGIR:
            self._sgi(value)
        elif GICD_CPENDSGIR <= off < GICD_CPENDSGIR + 16:
            self._set_bits_bytes(off - GICD_CPENDSGIR, value, size, False)
        elif GICD_SPENDSGIR <= off < GICD_SPENDSGIR + 16:
            self._set_bits_bytes(off - GICD_SPENDSGIR, value, size, True)
        else:
            log.debug("GICD write to unmodelled offset %#x = %#x", off, value)
        self._on_change()

    def _set_bits_bytes(self, index: int, value: int, size: int, state: bool) -> None:
        for k in range(size):
            if index + k < 16 and value >> (8 * k) & 0xFF:
                self.latched[index + k] = state

    def _sgi(self, value: int) -> None:
        intid = value & 0xF
        target_filter = value >> 24 & 3
        cpu_list = value >> 16 & 0xFF
        # One CPU (interface 0): filter 0 = list, 1 = all but self, 2 = self only.
        if (target_filter == 0 and cpu_list & 1) or target_filter == 2:
            self.latched[intid] = True

    # --- CPU interface frame ---------------------------------------------------------
    def _cpu_read(self, off: int, size: int) -> int:
        if off == GICC_CTLR:
            return self.cpu_ctlr
        if off == GICC_PMR:
            return self.pmr
        if off == GICC_BPR:
            return self.bpr
        if off in (GICC_IAR, GICC_AIAR):
            intid = self.acknowledge()
            self._on_change()
            return intid
        if off == GICC_RPR:
            return self.running_priority() & 0xFF if self.running else 0xFF
        if off in (GICC_HPPIR, GICC_AHPPIR):
            return self.highest_pending()
        if off == GICC_IIDR:
            return IIDR_ARM
        return 0

    def _cpu_write(self, off: int, size: int, value: int) -> None:
        if off == GICC_CTLR:
            self.cpu_ctlr = value & (3 | GICC_CTLR_EOIMODE)
        elif off == GICC_PMR:
            self.pmr = value & 0xFF
        elif off == GICC_BPR:
            self.bpr = value & 7
        elif off in (GICC_EOIR, GICC_AEOIR):
            intid = value & 0x3FF
            if intid < NUM_IRQS:
                self.end_of_interrupt(intid)
        elif off == GICC_DIR:
            intid = value & 0x3FF
            if intid < NUM_IRQS:
                self.deactivate(intid)
        self._on_change()


class _Frame:
    """One MMIO frame of the GIC, as the machine maps it."""

    def __init__(self, name: str, read: Callable[[int, int], int], write: Callable[[int, int, int], None]) -> None:
        self.name = name
        self.read = read
        self.write = write
