"""GICv2 distributor and CPU interface (Arm IHI 0048B), register by register, plus
guest-level delivery: an IRQ pending while masked is taken right at `msr daifclr`.

Register offsets and values are the spec's (4.1.2 distributor map, 4.1.3 CPU interface
map), written out here rather than taken from armras.
"""
from __future__ import annotations

import pytest

from armras.devices.gicv2 import GicV2
from test_machine import POWER_OFF

# Distributor (IHI 0048B table 4-1)
CTLR, ISENABLER, ICENABLER = 0x000, 0x100, 0x180
ISPENDR, ICPENDR, ISACTIVER, ICACTIVER = 0x200, 0x280, 0x300, 0x380
IPRIORITYR, ICFGR, SGIR = 0x400, 0xC00, 0xF00
# CPU interface (table 4-2)
C_CTLR, PMR, IAR, EOIR, RPR, HPPIR, DIR = 0x00, 0x04, 0x0C, 0x10, 0x14, 0x18, 0x1000
SPURIOUS = 1023     # 3.2.5: no pending interrupt of sufficient priority


class Gic:
    """A GicV2 driven only through its two MMIO frames, as a guest would."""

    def __init__(self) -> None:
        self.changes = 0
        self.dev = GicV2(on_change=self._changed)

    def _changed(self) -> None:
        self.changes += 1

    def dw(self, off: int, value: int, size: int = 4) -> None:
        self.dev.distributor.write(off, size, value)

    def dr(self, off: int, size: int = 4) -> int:
        return self.dev.distributor.read(off, size)

    def cw(self, off: int, value: int) -> None:
        self.dev.cpu_interface.write(off, 4, value)

    def cr(self, off: int) -> int:
        return self.dev.cpu_interface.read(off, 4)

    def enable(self, intid: int, priority: int) -> None:
        self.dw(ISENABLER + intid // 32 * 4, 1 << intid % 32)
        self.dw(IPRIORITYR + intid, priority, size=1)

    def pend(self, intid: int) -> None:
        self.dw(ISPENDR + intid // 32 * 4, 1 << intid % 32)

    def pending(self, intid: int) -> bool:
        return bool(self.dr(ISPENDR + intid // 32 * 4) >> intid % 32 & 1)

    def active(self, intid: int) -> bool:
        return bool(self.dr(ISACTIVER + intid // 32 * 4) >> intid % 32 & 1)


@pytest.fixture
def gic() -> Gic:
    g = Gic()
    g.dw(CTLR, 1)       # 4.3.1 GICD_CTLR.Enable
    g.cw(C_CTLR, 1)     # 4.4.1 GICC_CTLR.Enable
    g.cw(PMR, 0xFF)
    return g


def test_priority_mask_must_be_strictly_above_the_interrupt_priority(gic: Gic) -> None:
    # 3.3.2 / 4.4.2: an interrupt is signalled only if its priority is higher (numerically
    # lower) than GICC_PMR; PMR 0 (its reset value) masks everything.
    gic.enable(40, 0x80)
    gic.pend(40)
    gic.cw(PMR, 0x80)
    assert not gic.dev.irq_asserted()
    assert gic.cr(IAR) == SPURIOUS and gic.pending(40) and not gic.active(40)
    gic.cw(PMR, 0x81)
    assert gic.cr(PMR) == 0x81
    assert gic.dev.irq_asserted()
    assert gic.cr(IAR) == 40
    assert gic.active(40) and not gic.pending(40)
    fresh = Gic()
    assert fresh.cr(PMR) == 0


def test_iar_reads_1023_when_nothing_is_pending_or_the_interface_is_disabled(gic: Gic) -> None:
    assert gic.cr(IAR) == SPURIOUS
    gic.enable(50, 0x10)
    gic.pend(50)
    gic.cw(C_CTLR, 0)                   # CPU interface disabled: nothing signalled
    assert gic.cr(IAR) == SPURIOUS
    gic.cw(C_CTLR, 1)
    gic.dw(CTLR, 0)                     # distributor disabled: nothing forwarded
    assert gic.cr(IAR) == SPURIOUS
    gic.dw(CTLR, 1)
    gic.dw(ICENABLER + 4, 1 << (50 - 32))
    assert gic.cr(IAR) == SPURIOUS      # pending but disabled
    assert gic.pending(50)


def test_running_priority_and_preemption(gic: Gic) -> None:
    # 3.3.3 / 4.4.6: GICC_RPR reads 0xFF when idle, else the priority of the highest
    # active interrupt; only a strictly higher priority pre-empts it.
    assert gic.cr(RPR) == 0xFF
    for intid, prio in ((40, 0x80), (41, 0xA0), (42, 0x40)):
        gic.enable(intid, prio)
    gic.pend(40)
    assert gic.cr(IAR) == 40 and gic.cr(RPR) == 0x80
    gic.pend(41)                                  # lower priority: must wait
    assert not gic.dev.irq_asserted() and gic.cr(IAR) == SPURIOUS
    assert gic.cr(HPPIR) == 41                    # but it is the highest pending one
    gic.enable(43, 0x80)
    gic.pend(43)                                  # equal priority: does not pre-empt
    assert gic.cr(IAR) == SPURIOUS
    gic.pend(42)                                  # higher priority: pre-empts
    assert gic.dev.irq_asserted()
    assert gic.cr(IAR) == 42 and gic.cr(RPR) == 0x40
    gic.cw(EOIR, 42)                              # priority drop back to 40's
    assert gic.cr(RPR) == 0x80 and not gic.active(42) and gic.active(40)
    assert gic.cr(IAR) == SPURIOUS                # 41 and 43 still wait
    gic.cw(EOIR, 40)
    assert gic.cr(RPR) == 0xFF
    assert gic.cr(IAR) == 43                      # 0x80 beats 0xA0
    gic.cw(EOIR, 43)
    assert gic.cr(IAR) == 41 and gic.cr(RPR) == 0xA0
    gic.cw(EOIR, 41)
    assert gic.cr(RPR) == 0xFF and gic.cr(IAR) == SPURIOUS


def test_icfgr_sgis_are_fixed_edge_and_spis_are_configurable(gic: Gic) -> None:
    # 4.3.13: two bits per interrupt, bit [2F+1] = 1 edge-triggered; SGI fields are
    # read-only 0b10.  QEMU resets SPIs to level-sensitive.
    assert gic.dr(ICFGR) == 0xAAAAAAAA
    gic.dw(ICFGR, 0)
    assert gic.dr(ICFGR) == 0xAAAAAAAA
    assert gic.dr(ICFGR + 8) == 0                 # INTIDs 32-47: level
    gic.dw(ICFGR + 8, 2 << 2 * (40 - 32))         # INTID 40 edge
    assert gic.dr(ICFGR + 8) == 0x20000
    gic.enable(40, 0x80)
    gic.enable(41, 0x80)
    # Edge: a rising edge latches the pending state; the line dropping does not clear it.
    gic.dev.set_level(40, True)
    gic.dev.set_level(40, False)
    assert gic.pending(40)
    assert gic.cr(IAR) == 40 and not gic.pending(40)
    gic.cw(EOIR, 40)
    # Level: pending exactly while the line is high; still pending after acknowledge
    # (active and pending) until the device drops the line.
    gic.dev.set_level(41, True)
    assert gic.pending(41)
    assert gic.cr(IAR) == 41 and gic.active(41) and gic.pending(41)
    gic.dev.set_level(41, False)
    assert not gic.pending(41)
    gic.cw(EOIR, 41)
    assert not gic.active(41) and gic.cr(IAR) == SPURIOUS
    gic.dev.set_level(41, True)
    gic.dev.set_level(41, False)
    assert not gic.pending(41)                    # a level interrupt does not latch


def test_set_and_clear_pending_and_active_registers(gic: Gic) -> None:
    # 4.3.7-4.3.10: the set and clear registers read back the same state.
    gic.dw(ISPENDR + 4, 0x0000_0300)              # INTIDs 40, 41
    assert gic.dr(ISPENDR + 4) == gic.dr(ICPENDR + 4) == 0x300
    gic.dw(ICPENDR + 4, 0x0000_0100)              # clear 40
    assert gic.dr(ISPENDR + 4) == 0x200
    gic.dw(ISACTIVER + 4, 0x0001_0000)            # INTID 48 active
    assert gic.dr(ISACTIVER + 4) == gic.dr(ICACTIVER + 4) == 0x10000
    gic.dw(ICACTIVER + 4, 0x0001_0000)
    assert gic.dr(ISACTIVER + 4) == 0
    gic.dw(ISENABLER + 4, 0x8000_0001)            # INTIDs 32 and 63
    gic.dw(ISENABLER + 4, 0x0000_0002)            # writing 0 bits changes nothing
    assert gic.dr(ISENABLER + 4) == gic.dr(ICENABLER + 4) == 0x8000_0003
    gic.dw(ICENABLER + 4, 0x8000_0000)
    assert gic.dr(ISENABLER + 4) == 3
    # A software-pended active interrupt is not signalled again until it is deactivated.
    gic.enable(41, 0x80)                          # still pending from above
    gic.enable(45, 0x20)
    gic.dw(ISACTIVER + 4, 1 << (45 - 32))
    gic.pend(45)
    assert gic.cr(IAR) == 41                      # 45 is active: the next one is 41
    gic.cw(EOIR, 41)
    gic.dw(ICACTIVER + 4, 1 << (45 - 32))
    assert gic.cr(IAR) == 45
    # Byte access to the priority registers (4.3.11: byte-accessible).
    gic.dw(IPRIORITYR + 44, 0x11223344)
    assert gic.dr(IPRIORITYR + 45, size=1) == 0x33 and gic.dr(IPRIORITYR + 44) == 0x11223344


def test_sgis_through_gicd_sgir(gic: Gic) -> None:
    # 4.3.15 GICD_SGIR: [25:24] TargetListFilter (0 = CPUTargetList, 1 = all but self,
    # 2 = self only), [23:16] CPUTargetList, [3:0] SGIINTID. The board has CPU 0 only.
    for sgi in (1, 3, 5, 7):
        gic.enable(sgi, 0x10)
    gic.dw(SGIR, 2 << 24 | 3)                     # to self
    gic.dw(SGIR, 0 << 24 | 0x01 << 16 | 5)        # list: CPU 0
    gic.dw(SGIR, 0 << 24 | 0x02 << 16 | 7)        # list: CPU 1 only (absent)
    gic.dw(SGIR, 1 << 24 | 1)                     # all others: none here
    assert gic.dr(ISPENDR) & 0xFFFF == (1 << 3) | (1 << 5)
    # 4.4.4: GICC_IAR [12:10] is the requesting CPU (0) for SGIs, [9:0] the INTID.
    assert gic.cr(IAR) == 3
    assert gic.cr(IAR) == SPURIOUS                # 5 has the same priority: no pre-emption
    gic.cw(EOIR, 3)
    assert gic.cr(IAR) == 5
    gic.cw(EOIR, 5)
    assert gic.cr(IAR) == SPURIOUS
    assert not gic.active(3) and not gic.active(5)


def test_eoimode_splits_priority_drop_and_deactivation(gic: Gic) -> None:
    # 4.4.1 GICC_CTLR.EOImodeNS (bit 9): EOIR only drops the running priority, GICC_DIR
    # deactivates (Linux with a hypervisor-style split EOI).
    gic.cw(C_CTLR, 1 | 1 << 9)
    gic.enable(40, 0x80)
    gic.pend(40)
    assert gic.cr(IAR) == 40
    gic.cw(EOIR, 40)
    assert gic.cr(RPR) == 0xFF and gic.active(40)
    gic.pend(40)
    assert gic.cr(IAR) == SPURIOUS                # still active: not signalled again
    gic.cw(DIR, 40)
    assert not gic.active(40)
    assert gic.cr(IAR) == 40
    # EOImode 0: EOIR does both.
    gic.cw(C_CTLR, 1)
    gic.cw(EOIR, 40)
    assert not gic.active(40) and gic.cr(RPR) == 0xFF


def test_gicd_typer_and_cpu_interface_enable_readback() -> None:
    g = Gic()
    # 4.3.2 GICD_TYPER.ITLinesNumber: 32*(N+1) interrupts; QEMU virt has 288 -> N = 8.
    assert g.dr(0x004) & 0x1F == 8
    g.cw(C_CTLR, 1)
    g.dw(CTLR, 1)
    assert g.cr(C_CTLR) & 1 == 1 and g.dr(CTLR) == 1


GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER, GICD_SGIR, GICD_CTLR = 0x100, 0x200, 0x300, 0xF00, 0x000
GICC_CTLR, GICC_PMR, GICC_IAR, GICC_EOIR, GICC_DIR = 0x00, 0x04, 0x0C, 0x10, 0x1000


class TwoCpuGic:
    """A 2-CPU GicV2 whose register accesses come from `self.cpu`."""

    def __init__(self) -> None:
        from armras.devices.gicv2 import GicV2

        self.cpu = 0
        self.dev = GicV2(num_cpus=2, current_cpu=lambda: self.cpu)
        for c in (0, 1):
            self.on(c)
            self.cw(GICC_CTLR, 1)                  # 4.4.1 Enable
            self.cw(GICC_PMR, 0xFF)
            self.dw(GICD_ISENABLER, 0xFFFF_FFFF)   # this CPU's SGIs and PPIs
        self.dw(GICD_CTLR, 1)
        self.on(0)

    def on(self, cpu: int) -> "TwoCpuGic":
        self.cpu = cpu
        return self

    def dw(self, off: int, value: int, size: int = 4) -> None:
        self.dev.distributor.write(off, size, value)

    def dr(self, off: int, size: int = 4) -> int:
        return self.dev.distributor.read(off, size)

    def cw(self, off: int, value: int) -> None:
        self.dev.cpu_interface.write(off, 4, value)

    def cr(self, off: int) -> int:
        return self.dev.cpu_interface.read(off, 4)


def test_gic_sgi_filters_name_the_sending_cpu() -> None:
    # 4.3.15 GICD_SGIR [25:24]: 1 = all but the requesting CPU, 2 = the requesting CPU only;
    # 4.4.4 GICC_IAR [12:10] = the CPU that requested the SGI.
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 1 << 24 | 4)            # CPU 1: SGI 4 to all but self
    assert g.on(1).cr(GICC_IAR) == 1023
    assert g.on(0).cr(GICC_IAR) == 1 << 10 | 4
    g.on(0).cw(GICC_EOIR, 1 << 10 | 4)
    g.on(1).dw(GICD_SGIR, 2 << 24 | 6)            # CPU 1: SGI 6 to itself
    assert g.on(0).cr(GICC_IAR) == 1023
    assert g.on(1).cr(GICC_IAR) == 1 << 10 | 6


def test_gic_one_sgi_pending_from_two_cpus_is_taken_once_per_source() -> None:
    # 4.3.15 / 3.2.4: an SGI is pending separately for each requesting CPU.
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 1 -> CPU 0, SGI 5
    g.on(0).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 0 -> CPU 0, SGI 5
    assert g.on(0).cr(GICC_IAR) == 0 << 10 | 5    # lowest-numbered source first
    g.cw(GICC_EOIR, 5)
    assert g.cr(GICC_IAR) == 1 << 10 | 5
    g.cw(GICC_EOIR, 1 << 10 | 5)
    assert g.cr(GICC_IAR) == 1023


def test_gic_pulses_latch_spis_and_each_cpus_own_ppis() -> None:
    g = TwoCpuGic()
    g.dw(GICD_ISENABLER + 4, 1 << 0)              # SPI 32 (level-sensitive by default)
    g.dev.pulse(32)                                # a device's edge (the GED's)
    g.dev.pulse(32)
    assert g.dr(GICD_ISPENDR + 4) & 1
    assert g.on(0).cr(GICC_IAR) == 32             # latched although the line never stayed high
    g.cw(GICC_EOIR, 32)
    assert g.cr(GICC_IAR) == 1023                 # two pulses before the ack: one interrupt
    g.dev.cpu_port(1).pulse(23)                   # CPU 1's PPI 23
    assert g.on(0).dr(GICD_ISPENDR) >> 23 & 1 == 0
    assert g.on(1).dr(GICD_ISPENDR) >> 23 & 1 == 1
    assert g.on(1).cr(GICC_IAR) == 23


def test_gic_dir_deactivates_a_private_interrupt_of_the_cpu_writing_it() -> None:
    # 4.4.1 EOImodeNS: EOIR drops priority only, GICC_DIR deactivates (here a PPI, banked).
    g = TwoCpuGic()
    g.on(1).cw(GICC_CTLR, 1 | 1 << 9)
    g.dev.cpu_port(1).pulse(27)
    assert g.on(1).cr(GICC_IAR) == 27
    g.cw(GICC_EOIR, 27)
    assert g.dr(GICD_ISACTIVER) >> 27 & 1
    g.cw(GICC_DIR, 27)
    assert g.dr(GICD_ISACTIVER) >> 27 & 1 == 0


def test_gic_distributor_registers_read_back_per_cpu() -> None:
    g = TwoCpuGic()
    # 4.3.2 GICD_TYPER: ITLinesNumber [4:0] = 8 (288 interrupts), CPUNumber [7:5] = CPUs - 1.
    assert g.dr(0x004) == 8 | 1 << 5
    # 4.3.4 GICD_IGROUPR: one bit per interrupt, IGROUPR0 banked per CPU.
    g.on(1).dw(0x080, 0x0000_FFFF)
    g.on(0).dw(0x084, 0x8000_0001)
    assert g.on(0).dr(0x080) == 0 and g.on(1).dr(0x080) == 0xFFFF
    assert g.on(1).dr(0x084) == 0x8000_0001 and g.dr(0x087, size=1) == 0x80
    # 4.3.5-4.3.10: the clear registers read the same state as the set registers, from
    # the first one on (INTIDs 0-31, banked).
    g.on(1).dw(GICD_ISPENDR, 1 << 20)
    g.on(1).dw(GICD_ISACTIVER, 1 << 21)
    assert g.on(1).dr(0x180) == 0xFFFF_FFFF       # GICD_ICENABLER0
    assert g.on(1).dr(0x280) == 1 << 20           # GICD_ICPENDR0
    assert g.on(1).dr(0x380) == 1 << 21           # GICD_ICACTIVER0
    assert g.on(0).dr(0x280) == 0 and g.on(0).dr(0x380) == 0
    # 4.3.11 GICD_IPRIORITYR: byte per interrupt, SGIs/PPIs banked.
    g.on(1).dw(0x400, 0x40302010)
    g.on(1).dw(0x400 + 27, 0xA0, size=1)
    g.on(0).dw(0x420, 0x88776655)                 # INTIDs 32-35
    assert g.on(1).dr(0x400) == 0x40302010 and g.on(0).dr(0x400) == 0
    assert g.on(1).dr(0x400 + 27, size=1) == 0xA0 and g.on(0).dr(0x400 + 27, size=1) == 0
    assert g.on(1).dr(0x420) == 0x88776655 and g.dr(0x421, size=1) == 0x66
    # 4.3.12 GICD_ITARGETSR: SGI/PPI fields read as the reading CPU's own bit; SPI fields
    # hold only CPUs that exist (bits 0-1 here).
    assert g.on(0).dr(0x800) == 0x01010101 and g.on(1).dr(0x81C) == 0x02020202
    g.dw(0x820, 0x02, size=1)                     # INTID 32, the first SPI: as written
    assert g.on(0).dr(0x820, size=1) == 0x02 and g.on(1).dr(0x81F, size=1) == 0x02
    g.dw(0x828, 0xFF020301)                       # INTIDs 40-43
    assert g.dr(0x828) == 0x03020301 and g.dr(0x829, size=1) == 0x03 and g.dr(0x82B, size=1) == 0x03
    # 4.3.13 GICD_ICFGR: two bits per interrupt, [2F+1] edge; up to INTID 287 (0xC44).
    g.on(1).dw(0xC04, 0x2)                        # CPU 1's PPI 16 edge-triggered
    assert g.on(1).dr(0xC00) == 0xAAAAAAAA and g.on(1).dr(0xC04) == 0x2 and g.on(0).dr(0xC04) == 0
    g.dw(0xC44, 0x8000_0000)                      # INTID 287 edge
    assert g.dr(0xC44) == 0x8000_0000
    assert g.dr(0xC48) == 0                       # past the last interrupt


def test_gic_peripheral_id2_is_a_gicv2_designed_by_arm() -> None:
    # GICD_PIDR2 (0xFE8): ArchRev [7:4] = 2 (what Linux's irq-gic checks), JEDEC [3] = 1 and
    # JEP106 identity code [6:4] of Arm (0x3B) in [2:0] = 3: 0x2B, as QEMU's GICv2 and GIC-400.
    assert TwoCpuGic().dr(0xFE8) == 0x2B


def test_gic_sgi_pending_registers_hold_the_requesting_cpus() -> None:
    # 4.3.16/4.3.17 GICD_CPENDSGIRn / GICD_SPENDSGIRn: a byte per SGI, bit n = pending
    # from CPU n; both read the same state; SGIs 0-3 at +0x0, 4-7 at +0x4 ...
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 2)         # CPU 1 -> CPU 0: SGI 2
    g.on(0).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 0 -> CPU 0: SGI 5
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 5)         # CPU 1 -> CPU 0: SGI 5
    assert g.on(0).dr(0xF10) == 0x0002_0000 and g.dr(0xF20) == 0x0002_0000
    assert g.dr(0xF14) == 0x0000_0300 and g.dr(0xF24) == 0x0000_0300
    assert g.dr(0xF15, size=1) == 0x03 and g.dr(0xF2C) == 0
    assert g.on(1).dr(0xF20) == 0 and g.on(1).dr(0xF14) == 0
    g.on(0).dw(0xF14, 0x0000_0100)                # clear SGI 5 from CPU 0
    assert g.dr(0xF24) == 0x0000_0200
    g.dw(0xF2C, 0x0100_0000)                      # set SGI 15 from CPU 0
    assert g.dr(0xF1C) == 0x0100_0000
    assert g.dr(0xF30) == 0                       # past GICD_SPENDSGIR3


def test_gic_acknowledged_sgi_is_active_until_its_eoi() -> None:
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 9)         # CPU 1 -> CPU 0: SGI 9
    assert g.on(0).cr(GICC_IAR) == 1 << 10 | 9
    assert g.dr(GICD_ISACTIVER) == 1 << 9         # acknowledged: active (3.2.4)
    g.cw(GICC_EOIR, 1 << 10 | 9)
    assert g.dr(GICD_ISACTIVER) == 0


def test_gic_spis_reach_only_their_target_cpus_lowest_intid_first() -> None:
    # 4.3.12 GICD_ITARGETSR routes an SPI to the CPUs it names; of two pending interrupts
    # of the same priority QEMU's GIC (gic_update) signals the lower INTID.
    g = TwoCpuGic()
    g.dw(0x828, 0x02020202)                       # SPIs 40-43 -> CPU 1
    g.dw(GICD_ISENABLER + 4, 0x300)               # enable 40, 41 (priority 0)
    g.dw(GICD_ISPENDR + 4, 0x300)
    assert g.on(0).cr(GICC_IAR) == 1023
    assert g.on(1).cr(GICC_IAR) == 40
    g.cw(GICC_EOIR, 40)
    assert g.on(1).cr(GICC_IAR) == 41


def test_gic_private_interrupt_priority_against_pmr_and_running_priority() -> None:
    # 3.3.2 / 4.4.2: priority 0x80 is not above a PMR of 0x80; GICC_RPR is the running
    # interrupt's own (banked) priority.
    g = TwoCpuGic()
    g.on(1).dw(0x400 + 25, 0x80, size=1)          # CPU 1's PPI 25 at 0x80
    g.cw(GICC_PMR, 0x80)
    g.dev.cpu_port(1).pulse(25)
    assert not g.dev.irq_asserted(1) and g.cr(GICC_IAR) == 1023
    g.cw(GICC_PMR, 0x81)
    assert g.dev.irq_asserted(1) and g.cr(GICC_IAR) == 25
    assert g.cr(0x14) == 0x80                     # GICC_RPR


def test_gic_writes_stay_in_their_register() -> None:
    g = TwoCpuGic()
    g.dw(0x084, 0xF)                              # IGROUPR1: INTIDs 32-35 group 1
    g.dw(0x080, 0xFFFF_FFFF)                      # IGROUPR0 must not touch them
    assert g.dr(0x084) == 0xF
    g.dw(GICD_ISENABLER + 0x24, 0xFFFF_FFFF)      # past GICD_ISENABLER8: ignored
    g.dw(GICD_ISPENDR + 0x24, 0xFFFF_FFFF)
    assert g.dr(GICD_ISENABLER + 0x20) == 0 and g.dr(GICD_ISENABLER + 0x24) == 0
    # A reserved CPU interface offset reads as zero (QEMU gic_cpu_read).
    assert g.cr(0x40) == 0


def test_gic_clear_registers_from_their_first_word() -> None:
    # 4.3.6 / 4.3.8 / 4.3.10: GICD_ICENABLER0, GICD_ICPENDR0, GICD_ICACTIVER0 (INTIDs 0-31).
    g = TwoCpuGic()
    g.dw(0x180, 1 << 20)                          # disable PPI 20
    assert g.dr(GICD_ISENABLER) == 0xFFFF_FFFF & ~(1 << 20)
    g.dw(GICD_ISPENDR, 1 << 21)
    g.dw(0x280, 1 << 21)
    assert g.dr(GICD_ISPENDR) == 0
    g.dw(GICD_ISACTIVER, 1 << 22)
    g.dw(0x380, 1 << 22)
    assert g.dr(GICD_ISACTIVER) == 0


def test_gic_word_writes_to_targets_and_configuration() -> None:
    g = TwoCpuGic()
    g.dw(0x820, 0x01020102)                       # ITARGETSR8: INTIDs 32-35
    assert [g.dr(0x820 + k, size=1) for k in range(4)] == [0x02, 0x01, 0x02, 0x01]
    g.dw(0xC0C, 0x2)                              # ICFGR3: INTID 48 edge
    g.dw(0xC08, 0x2)                              # ICFGR2: INTID 32 edge, 33-47 level
    assert g.dr(0xC08) == 0x2 and g.dr(0xC0C) == 0x2


def test_gic_sgi_set_and_clear_pending_registers_by_byte() -> None:
    # 4.3.16 / 4.3.17: write 1 to set (SPENDSGIR) or clear (CPENDSGIR) a source CPU's bit.
    g = TwoCpuGic()
    g.on(1).dw(GICD_SGIR, 0x01 << 16 | 3)         # CPU 1 -> CPU 0: SGI 3
    g.on(0).dw(0xF20, 0x0000_0001)                # SGI 0 from CPU 0, at GICD_SPENDSGIR0 itself
    assert g.dr(0xF10) == 0x0200_0001
    g.dw(0xF24, 0x0000_0100)                      # SGI 5 from CPU 0
    assert g.dr(0xF24) == 0x0000_0100
    g.dw(0xF10, 0x0200_0001)                      # GICD_CPENDSGIR0: clear both
    assert g.dr(0xF10) == 0
    g.dw(0xF30, 0x0000_00FF)                      # past GICD_SPENDSGIR3: nothing
    assert g.dr(0xF20) == 0


def test_gic_writes_past_the_last_interrupt_are_ignored() -> None:
    g = TwoCpuGic()
    g.dw(0x0A4, 0xFFFF_FFFF)                      # IGROUPR9: INTIDs 288-319 do not exist
    assert g.dr(0x0A4) == 0
    g.cw(GICC_EOIR, 288)                          # neither EOI nor deactivation of them
    g.cw(GICC_DIR, 288)
    assert g.cr(GICC_IAR) == 1023
    # 4.4.3 GICC_BPR: the binary point is bits [2:0].
    g.cw(0x08, 0xFF)
    assert g.cr(0x08) == 7
    g.cw(0x08, 0x3)
    assert g.cr(0x08) == 3


def test_gic_eoi_with_nothing_running_is_ignored() -> None:
    # 4.4.5: an EOIR write naming an interrupt that is not active changes nothing.
    g = TwoCpuGic()
    g.cw(GICC_EOIR, 40)
    assert g.cr(0x14) == 0xFF                     # GICC_RPR: idle
    g.dw(GICD_ISENABLER + 4, 1 << 8)
    g.dw(GICD_ISPENDR + 4, 1 << 8)
    assert g.cr(GICC_IAR) == 40


def test_gic_bit_registers_stop_at_the_last_interrupt() -> None:
    # 4.3.2: 288 interrupts (ITLinesNumber 8) -> GICD_ISENABLER0-8; a register past the
    # last one reads as zero, and a 32-bit read returns only its own 32 interrupts.
    g = TwoCpuGic()
    g.dw(GICD_ISENABLER + 4, 0xF)                 # SPIs 32-35
    assert g.dr(GICD_ISENABLER) == 0xFFFF_FFFF    # INTIDs 0-31 only
    g.dw(GICD_ISENABLER + 0x20, 1 << 31)          # INTID 287, the last one
    assert g.dr(GICD_ISENABLER + 0x20) == 1 << 31
    assert g.dr(GICD_ISENABLER + 0x24) == 0
    assert g.dr(GICD_ISPENDR + 0x24) == 0 and g.dr(GICD_ISACTIVER + 0x24) == 0


def test_gic_describe_lists_each_cpus_pending_and_active_interrupts() -> None:
    # The GIC part of the "idle with nothing that could wake it" error.
    g = TwoCpuGic()
    g.dw(0x800 + 40, 0x02, size=1)                # GICD_ITARGETSR: SPI 40 -> CPU 1 only
    g.dw(0x800 + 32, 0x01, size=1)                # SPI 32 -> CPU 0 only...
    g.dw(GICD_ISPENDR + 4, 1 << 0)                # ...pending (disabled: still listed)
    g.dw(GICD_ISENABLER + 4, 1 << 8)
    g.dw(GICD_ISPENDR + 4, 1 << 8)
    g.dev.cpu_port(0).pulse(30)
    g.dw(GICD_ISACTIVER + 4, 1 << 9)              # SPI 41 active
    assert g.dev.describe(1) == ("GIC dist enable 1; CPU1: cpu enable 0x1 PMR 0xff pending [40] "
                                 "active [41] running []")
    assert g.dev.describe() == ("GIC dist enable 1; CPU0: cpu enable 0x1 PMR 0xff pending [30, 32] active [41] "
                                "running []; CPU1: cpu enable 0x1 PMR 0xff pending [40] active [41] running []")
    assert g.on(0).cr(GICC_IAR) == 30
    assert g.dev.describe(0) == ("GIC dist enable 1; CPU0: cpu enable 0x1 PMR 0xff pending [32] active [30, 41] "
                                 "running [30]")


# --- guest level --------------------------------------------------------------------

IRQ_AT_UNMASK = """
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 msr daifset, #2              // IRQs masked while the SPI is made pending
 ldr x6, =0x08000000
 ldr x8, =0x08010000
 mov w7, #1
 str w7, [x6]                 // GICD_CTLR
 str w7, [x8]                 // GICC_CTLR
 mov w7, #0xff
 str w7, [x8, #4]             // GICC_PMR
 mov w7, #(1 << (40 - 32))
 str w7, [x6, #0x104]         // GICD_ISENABLER1: SPI 40
 str w7, [x6, #0x204]         // GICD_ISPENDR1: pending now, while masked
 mov x5, #0
 mov x19, #0
 mov x9, #200
1: subs x9, x9, #1            // a masked while: the IRQ must wait
 b.ne 1b
 msr daifclr, #2
after_unmask:
 mov x5, #1
 adr x4, after_unmask
 mov x9, #200
2: subs x9, x9, #1
 b.ne 2b
 mov x1, #0
""" + POWER_OFF + """
 .balign 0x800
vectors:
 .skip 0x280                  // current EL with SP_ELx, IRQ
 mrs x21, elr_el1
 mov x22, x5                  // had the instruction after the msr run?
 ldr w10, [x8, #0xc]          // GICC_IAR
 mov x17, x10
 add x19, x19, #1
 str w10, [x8, #0x10]         // GICC_EOIR
 eret
 .ltorg
"""


@pytest.mark.parametrize("deterministic", [False, True])
def test_irq_pending_while_masked_is_taken_exactly_at_daifclr(board, deterministic: bool) -> None:
    b = board(IRQ_AT_UNMASK, deterministic=deterministic)
    r = b.run()
    assert r.status == 0
    assert b.x(19) == 1 and b.x(17) == 40
    # Arm ARM D1.13.4: the unmasked IRQ is taken before the next instruction; the
    # preferred return address is the instruction after the MSR.
    assert b.x(21) == b.x(4)
    assert b.x(22) == 0


def test_guest_sends_itself_an_sgi(board) -> None:
    b = board("""
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 ldr x6, =0x08000000
 ldr x8, =0x08010000
 mov w7, #1
 str w7, [x6]                 // GICD_CTLR
 str w7, [x8]                 // GICC_CTLR
 mov w7, #0xf0
 str w7, [x8, #4]             // GICC_PMR
 mov w7, #(1 << 6)
 str w7, [x6, #0x100]         // enable SGI 6
 mov x19, #0
 msr daifclr, #2
 ldr w7, =0x02000006          // GICD_SGIR: TargetListFilter 2 (self), SGI 6
 str w7, [x6, #0xf00]
 mov x9, #100
1: subs x9, x9, #1
 b.ne 1b
 mov x1, #0
""" + POWER_OFF + """
 .balign 0x800
vectors:
 .skip 0x280
 ldr w10, [x8, #0xc]          // GICC_IAR
 mov x17, x10
 add x19, x19, #1
 str w10, [x8, #0x10]         // GICC_EOIR
 eret
 .ltorg
""")
    r = b.run()
    assert r.status == 0
    assert b.x(19) == 1 and b.x(17) == 6      # one SGI 6 from CPU 0 (IAR[12:10] = 0)
