"""GICv2 distributor and CPU interfaces for up to 8 CPUs (Arm IHI 0048B).

Enough for Linux's irq-gic driver and bare-metal guests: SGIs (with their source CPU),
PPIs and SPIs with enable/pending/active state, priorities and the priority mask, edge
and level configuration, SPI routing by GICD_ITARGETSR, a running-priority stack per
CPU interface, IAR/EOIR/DIR. SGIs and PPIs (INTIDs 0-31) are banked per CPU, as are
the CPU interface registers: a register access is made by the CPU `current_cpu()`
names (the machine's running CPU). Security extensions are not modelled: the guest is
Non-secure and all interrupts are Group 1.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)

NUM_IRQS = 288                 # 32 private + 256 shared, as QEMU virt
NUM_PRIVATE = 32               # SGIs 0-15, PPIs 16-31: banked per CPU
NUM_SGIS = 16
MAX_CPUS = 8                   # GICv2 (IHI 0048B 1.3)
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
SGIR_TARGET_LIST, SGIR_ALL_BUT_SELF, SGIR_SELF = 0, 1, 2
IAR_CPUID_SHIFT = 10           # the requesting CPU of an SGI, in GICC_IAR[12:10]


@dataclass
class _Bank:
    """One CPU's view: its SGIs/PPIs and its CPU interface."""

    enabled: list[bool] = field(default_factory=lambda: [False] * NUM_PRIVATE)
    latched: list[bool] = field(default_factory=lambda: [False] * NUM_PRIVATE)   # PPI edge/software pending
    level: list[bool] = field(default_factory=lambda: [False] * NUM_PRIVATE)
    active: list[bool] = field(default_factory=lambda: [False] * NUM_PRIVATE)
    priority: list[int] = field(default_factory=lambda: [0] * NUM_PRIVATE)
    edge: list[bool] = field(default_factory=lambda: [True] * NUM_SGIS + [False] * (NUM_PRIVATE - NUM_SGIS))
    group: list[int] = field(default_factory=lambda: [0] * NUM_PRIVATE)
    sgi_sources: list[int] = field(default_factory=lambda: [0] * NUM_SGIS)   # bitmask of requesting CPUs
    ctlr: int = 0
    pmr: int = 0
    bpr: int = 2
    running: list[tuple[int, int]] = field(default_factory=list)   # (priority, intid) acknowledged


class _CpuPort:
    """A CPU's private interrupt inputs (its timer PPIs), as an IrqSink."""

    def __init__(self, gic: GicV2, cpu: int) -> None:
        self._gic, self._cpu = gic, cpu

    def set_level(self, intid: int, level: bool) -> None:
        self._gic.set_level(intid, level, cpu=self._cpu)

    def pulse(self, intid: int) -> None:
        self._gic.pulse(intid, cpu=self._cpu)


class GicV2:
    """Interrupt state plus the two register frames (`distributor`, `cpu_interface`)."""

    def __init__(self, on_change: Callable[[], None] | None = None, num_cpus: int = 1,
                 current_cpu: Callable[[], int] = lambda: 0) -> None:
        if not 1 <= num_cpus <= MAX_CPUS:
            raise ValueError(f"GICv2 supports 1-{MAX_CPUS} CPUs, not {num_cpus}")
        self.num_cpus = num_cpus
        self.banks = [_Bank() for _ in range(num_cpus)]
        # SPIs (entries 0-31 unused: those live in the banks)
        self.enabled = [False] * NUM_IRQS
        self.latched = [False] * NUM_IRQS
        self.level = [False] * NUM_IRQS
        self.active = [False] * NUM_IRQS
        self.priority = [0] * NUM_IRQS
        self.edge = [False] * NUM_IRQS
        self.group = [0] * NUM_IRQS
        self.targets = [1] * NUM_IRQS
        self._spi_raised: set[int] = set()    # SPIs whose line is high or that are latched
        self.dist_ctlr = 0
        self._current = current_cpu
        self._on_change = on_change or (lambda: None)
        self.distributor = _Frame("gicd", self._dist_read, self._dist_write)
        self.cpu_interface = _Frame("gicc", self._cpu_read, self._cpu_write)

    def cpu_port(self, cpu: int) -> _CpuPort:
        return _CpuPort(self, cpu)

    # --- interrupt lines (IrqSink) --------------------------------------------------
    def set_level(self, intid: int, level: bool, cpu: int = 0) -> None:
        if intid < NUM_PRIVATE:
            bank = self.banks[cpu]
            if bank.level[intid] == level:
                return
            bank.level[intid] = level
            if level and bank.edge[intid]:
                bank.latched[intid] = True
        else:
            if self.level[intid] == level:
                return
            self.level[intid] = level
            if level and self.edge[intid]:
                self.latched[intid] = True
            self._spi_track(intid)
        self._on_change()

    def pulse(self, intid: int, cpu: int = 0) -> None:
        if intid < NUM_PRIVATE:
            self.banks[cpu].latched[intid] = True
        else:
            self.latched[intid] = True
            self._spi_track(intid)
        self._on_change()

    def _spi_track(self, i: int) -> None:
        if self.latched[i] or self.level[i]:
            self._spi_raised.add(i)
        else:
            self._spi_raised.discard(i)

    # --- state -----------------------------------------------------------------------
    def is_pending(self, i: int, cpu: int = 0) -> bool:
        if i < NUM_SGIS:
            return self.banks[cpu].sgi_sources[i] != 0
        if i < NUM_PRIVATE:
            b = self.banks[cpu]
            return b.latched[i] or (not b.edge[i] and b.level[i])
        return self.latched[i] or (not self.edge[i] and self.level[i])

    def _is_active(self, i: int, cpu: int) -> bool:
        return self.banks[cpu].active[i] if i < NUM_PRIVATE else self.active[i]

    def _priority(self, i: int, cpu: int) -> int:
        return self.banks[cpu].priority[i] if i < NUM_PRIVATE else self.priority[i]

    def running_priority(self, cpu: int = 0) -> int:
        running = self.banks[cpu].running
        return running[-1][0] if running else IDLE_PRIORITY

    def highest_pending(self, cpu: int = 0) -> int:
        """Highest-priority pending, enabled, inactive interrupt for `cpu`, or SPURIOUS."""
        best, best_prio = SPURIOUS, IDLE_PRIORITY
        b = self.banks[cpu]
        for i in range(NUM_PRIVATE):
            if b.enabled[i] and not b.active[i] and b.priority[i] < best_prio and self.is_pending(i, cpu):
                best, best_prio = i, b.priority[i]
        mask = 1 << cpu
        for i in sorted(self._spi_raised):
            if (self.enabled[i] and not self.active[i] and self.targets[i] & mask
                    and self.priority[i] < best_prio and self.is_pending(i)):
                best, best_prio = i, self.priority[i]
        return best

    def irq_asserted(self, cpu: int = 0) -> bool:
        """Whether `cpu`'s IRQ input is asserted (taken when its PSTATE.I is clear)."""
        b = self.banks[cpu]
        if not (self.dist_ctlr & 3 and b.ctlr & 3):
            return False
        i = self.highest_pending(cpu)
        if i == SPURIOUS:
            return False
        prio = self._priority(i, cpu)
        return prio < b.pmr and prio < self.running_priority(cpu)

    def describe(self, cpu: int | None = None) -> str:
        cpus = range(self.num_cpus) if cpu is None else [cpu]
        parts = []
        for c in cpus:
            b = self.banks[c]
            pending = [i for i in range(NUM_IRQS) if self.is_pending(i, c) and (i < NUM_PRIVATE or self.targets[i] >> c & 1)]
            active = [i for i in range(NUM_IRQS) if self._is_active(i, c)]
            parts.append(f"CPU{c}: cpu enable {b.ctlr:#x} PMR {b.pmr:#x} pending {pending} active {active} "
                         f"running {[i for _, i in b.running]}")
        return f"GIC dist enable {self.dist_ctlr}; " + "; ".join(parts)

    def acknowledge(self, cpu: int = 0) -> int:
        """GICC_IAR: the interrupt ID (with the requesting CPU for an SGI), or SPURIOUS."""
        if not self.irq_asserted(cpu):
            return SPURIOUS
        i = self.highest_pending(cpu)
        b = self.banks[cpu]
        value = i
        if i < NUM_SGIS:
            source = (b.sgi_sources[i] & -b.sgi_sources[i]).bit_length() - 1
            b.sgi_sources[i] &= ~(1 << source)
            value |= source << IAR_CPUID_SHIFT
            b.active[i] = True
        elif i < NUM_PRIVATE:
            b.active[i] = True
            b.latched[i] = False
        else:
            self.active[i] = True
            self.latched[i] = False
            self._spi_track(i)
        b.running.append((self._priority(i, cpu), i))
        return value

    def end_of_interrupt(self, intid: int, cpu: int = 0) -> None:
        b = self.banks[cpu]
        for n in range(len(b.running) - 1, -1, -1):
            if b.running[n][1] == intid:
                del b.running[n]
                break
        else:
            log.debug("EOI of interrupt %d that is not running on CPU %d", intid, cpu)
        if not b.ctlr & GICC_CTLR_EOIMODE:
            self._deactivate(intid, cpu)
        self._on_change()

    def deactivate(self, intid: int, cpu: int = 0) -> None:
        self._deactivate(intid, cpu)
        self._on_change()

    def _deactivate(self, intid: int, cpu: int) -> None:
        if intid < NUM_PRIVATE:
            self.banks[cpu].active[intid] = False
        else:
            self.active[intid] = False

    # --- register access helpers ----------------------------------------------------
    def _flags(self, name: str, cpu: int) -> Callable[[int], bool]:
        """Read accessor for a per-interrupt flag, banked below INTID 32."""
        bank_arr, shared = getattr(self.banks[cpu], name), getattr(self, name)
        return lambda i: bool(bank_arr[i] if i < NUM_PRIVATE else shared[i])

    def _read_bits(self, get: Callable[[int], bool], offset: int, size: int) -> int:
        first = offset * 8
        return sum(1 << b for b in range(size * 8) if first + b < NUM_IRQS and get(first + b))

    def _write_bits(self, name: str, cpu: int, offset: int, value: int, size: int, state: bool,
                    first_writable: int = 0) -> None:
        first = offset * 8
        bank_arr, shared = getattr(self.banks[cpu], name), getattr(self, name)
        for b in range(size * 8):
            i = first + b
            if value >> b & 1 and first_writable <= i < NUM_IRQS:
                if i < NUM_PRIVATE:
                    bank_arr[i] = state
                else:
                    shared[i] = state
                    if name == "latched":
                        self._spi_track(i)

    def _read_bytes(self, name: str, cpu: int, index: int, size: int) -> int:
        bank_arr, shared = getattr(self.banks[cpu], name), getattr(self, name)
        return sum(((bank_arr[i] if i < NUM_PRIVATE else shared[i]) & 0xFF) << (8 * k)
                   for k, i in enumerate(range(index, index + size)) if i < NUM_IRQS)

    # --- distributor frame -------------------------------------------------------------
    def _dist_read(self, off: int, size: int) -> int:
        cpu = self._current()
        if off == GICD_CTLR:
            return self.dist_ctlr
        if off == GICD_TYPER:
            return (NUM_IRQS // 32 - 1) | (self.num_cpus - 1) << 5
        if off == GICD_IIDR:
            return IIDR_ARM
        if GICD_IGROUPR <= off < GICD_ISENABLER:
            return self._read_bits(self._flags("group", cpu), off - GICD_IGROUPR, size)
        if GICD_ISENABLER <= off < GICD_ISPENDR:
            base = GICD_ISENABLER if off < GICD_ICENABLER else GICD_ICENABLER
            return self._read_bits(self._flags("enabled", cpu), off - base, size)
        if GICD_ISPENDR <= off < GICD_ISACTIVER:
            base = GICD_ISPENDR if off < GICD_ICPENDR else GICD_ICPENDR
            return self._read_bits(lambda i: self.is_pending(i, cpu), off - base, size)
        if GICD_ISACTIVER <= off < GICD_IPRIORITYR:
            base = GICD_ISACTIVER if off < GICD_ICACTIVER else GICD_ICACTIVER
            return self._read_bits(self._flags("active", cpu), off - base, size)
        if GICD_IPRIORITYR <= off < GICD_IPRIORITYR + NUM_IRQS:
            return self._read_bytes("priority", cpu, off - GICD_IPRIORITYR, size)
        if GICD_ITARGETSR <= off < GICD_ITARGETSR + NUM_IRQS:
            idx = off - GICD_ITARGETSR
            # 4.3.12: the SGI/PPI fields read as the accessing CPU's own bit.
            return sum(((1 << cpu) if i < NUM_PRIVATE else self.targets[i] & 0xFF) << (8 * k)
                       for k, i in enumerate(range(idx, idx + size)) if i < NUM_IRQS)
        if GICD_ICFGR <= off < GICD_ICFGR + NUM_IRQS // 4:
            first = (off - GICD_ICFGR) * 4
            edge = self._flags("edge", cpu)
            return sum((2 if edge(first + k) else 0) << (2 * k) for k in range(size * 4) if first + k < NUM_IRQS)
        if GICD_CPENDSGIR <= off < GICD_SPENDSGIR + NUM_SGIS:
            idx = (off - GICD_CPENDSGIR) % NUM_SGIS
            sources = self.banks[cpu].sgi_sources
            return sum((sources[i] & 0xFF) << (8 * k) for k, i in enumerate(range(idx, idx + size)) if i < NUM_SGIS)
        if off == GICD_PIDR2:
            return 0x2B  # ArchRev 2 [7:4]; JEDEC [3] and JEP106 Arm [2:0] (QEMU arm_gic.c gic_id_gicv2)
        return 0

    def _dist_write(self, off: int, size: int, value: int) -> None:
        cpu = self._current()
        if off == GICD_CTLR:
            self.dist_ctlr = value & 3
        elif GICD_IGROUPR <= off < GICD_ISENABLER:
            first = (off - GICD_IGROUPR) * 8
            for b in range(size * 8):
                i = first + b
                if i < NUM_PRIVATE:
                    self.banks[cpu].group[i] = value >> b & 1
                elif i < NUM_IRQS:
                    self.group[i] = value >> b & 1
        elif GICD_ISENABLER <= off < GICD_ICENABLER:
            self._write_bits("enabled", cpu, off - GICD_ISENABLER, value, size, True)
        elif GICD_ICENABLER <= off < GICD_ISPENDR:
            self._write_bits("enabled", cpu, off - GICD_ICENABLER, value, size, False)
        elif GICD_ISPENDR <= off < GICD_ICPENDR:
            # SGI pending bits are set through GICD_SPENDSGIR, not here (4.3.7).
            self._write_bits("latched", cpu, off - GICD_ISPENDR, value, size, True, first_writable=NUM_SGIS)
        elif GICD_ICPENDR <= off < GICD_ISACTIVER:
            self._write_bits("latched", cpu, off - GICD_ICPENDR, value, size, False, first_writable=NUM_SGIS)
        elif GICD_ISACTIVER <= off < GICD_ICACTIVER:
            self._write_bits("active", cpu, off - GICD_ISACTIVER, value, size, True)
        elif GICD_ICACTIVER <= off < GICD_IPRIORITYR:
            self._write_bits("active", cpu, off - GICD_ICACTIVER, value, size, False)
        elif GICD_IPRIORITYR <= off < GICD_IPRIORITYR + NUM_IRQS:
            idx = off - GICD_IPRIORITYR
            for k in range(size):
                i = idx + k
                if i < NUM_PRIVATE:
                    self.banks[cpu].priority[i] = value >> (8 * k) & 0xFF
                elif i < NUM_IRQS:
                    self.priority[i] = value >> (8 * k) & 0xFF
        elif GICD_ITARGETSR <= off < GICD_ITARGETSR + NUM_IRQS:
            idx = off - GICD_ITARGETSR
            present = (1 << self.num_cpus) - 1
            for k in range(size):
                if NUM_PRIVATE <= idx + k < NUM_IRQS:  # SGI/PPI targets are read-only
                    self.targets[idx + k] = value >> (8 * k) & present
        elif GICD_ICFGR <= off < GICD_ICFGR + NUM_IRQS // 4:
            first = (off - GICD_ICFGR) * 4
            for k in range(size * 4):
                i = first + k
                edge = bool(value >> (2 * k + 1) & 1)
                if NUM_SGIS <= i < NUM_PRIVATE:        # SGI configuration is fixed (edge)
                    self.banks[cpu].edge[i] = edge
                elif NUM_PRIVATE <= i < NUM_IRQS:
                    self.edge[i] = edge
        elif off == GICD_SGIR:
            self._sgi(value, cpu)
        elif GICD_CPENDSGIR <= off < GICD_SPENDSGIR + NUM_SGIS:
            setting = off >= GICD_SPENDSGIR
            idx = (off - GICD_CPENDSGIR) % NUM_SGIS
            sources = self.banks[cpu].sgi_sources
            for k in range(size):
                if idx + k < NUM_SGIS:
                    bits = value >> (8 * k) & 0xFF
                    sources[idx + k] = sources[idx + k] | bits if setting else sources[idx + k] & ~bits
        else:
            log.debug("GICD write to unmodelled offset %#x = %#x", off, value)
        self._on_change()

    def _sgi(self, value: int, source: int) -> None:
        """GICD_SGIR (4.3.15): raise SGI `value[3:0]` on the CPUs the filter names."""
        intid = value & 0xF
        target_filter = value >> 24 & 3
        present = (1 << self.num_cpus) - 1
        if target_filter == SGIR_TARGET_LIST:
            targets = value >> 16 & 0xFF & present
        elif target_filter == SGIR_ALL_BUT_SELF:
            targets = present & ~(1 << source)
        elif target_filter == SGIR_SELF:
            targets = 1 << source
        else:
            return
        for cpu in range(self.num_cpus):
            if targets >> cpu & 1:
                self.banks[cpu].sgi_sources[intid] |= 1 << source

    # --- CPU interface frame ---------------------------------------------------------
    def _cpu_read(self, off: int, size: int) -> int:
        cpu = self._current()
        b = self.banks[cpu]
        if off == GICC_CTLR:
            return b.ctlr
        if off == GICC_PMR:
            return b.pmr
        if off == GICC_BPR:
            return b.bpr
        if off in (GICC_IAR, GICC_AIAR):
            intid = self.acknowledge(cpu)
            self._on_change()
            return intid
        if off == GICC_RPR:
            return self.running_priority(cpu) & 0xFF if b.running else 0xFF
        if off in (GICC_HPPIR, GICC_AHPPIR):
            return self.highest_pending(cpu)
        if off == GICC_IIDR:
            return IIDR_ARM
        return 0

    def _cpu_write(self, off: int, size: int, value: int) -> None:
        cpu = self._current()
        b = self.banks[cpu]
        if off == GICC_CTLR:
            b.ctlr = value & (3 | GICC_CTLR_EOIMODE)
        elif off == GICC_PMR:
            b.pmr = value & 0xFF
        elif off == GICC_BPR:
            b.bpr = value & 7
        elif off in (GICC_EOIR, GICC_AEOIR):
            intid = value & 0x3FF
            if intid < NUM_IRQS:
                self.end_of_interrupt(intid, cpu)
        elif off == GICC_DIR:
            intid = value & 0x3FF
            if intid < NUM_IRQS:
                self.deactivate(intid, cpu)
        self._on_change()


class _Frame:
    """One MMIO frame of the GIC, as the machine maps it."""

    def __init__(self, name: str, read: Callable[[int, int], int], write: Callable[[int, int, int], None]) -> None:
        self.name = name
        self.read = read
        self.write = write
