"""The GICv2m MSI frame on its own and on the board (SBSA Appendix E; QEMU hw/intc/arm_gicv2m.c).

What a guest reads and writes: MSI_TYPER 0x008 (first SPI's INTID in bits 25:16, the number of
SPIs in 9:0), MSI_SETSPI_NS 0x040 (an INTID in bits 9:0 raises that SPI), MSI_IIDR 0xFCC
(QEMU's product id 'Q' in bits 31:20), identification registers 0xFD0-0xFFC reading 0, and one
warning line for each kind of access the frame does not define.
"""
from __future__ import annotations

import logging

import pytest

from armras.devices.gicv2m import GicV2m
from test_machine import POWER_OFF

BASE = 0x0802_0000                  # QEMU virt's frame
FIRST, COUNT = 80, 64               # SPIs 48..111
MSI_TYPER, MSI_SETSPI_NS, MSI_IIDR = 0x008, 0x040, 0xFCC
IIDR_QEMU = 0x051 << 20             # 'Q'


class Spis:
    """The GIC side: which INTIDs the frame pulsed."""

    def __init__(self) -> None:
        self.pulses: list[int] = []

    def set_level(self, intid: int, level: bool) -> None:
        raise AssertionError("an MSI frame only pulses")

    def pulse(self, intid: int) -> None:
        self.pulses.append(intid)


@pytest.fixture
def spis() -> Spis:
    return Spis()


@pytest.fixture
def frame(spis: Spis) -> GicV2m:
    return GicV2m(spis, BASE, FIRST, COUNT)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "armras.devices.gicv2m"]


def test_typer_and_identification_registers(frame: GicV2m, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "armras.devices.gicv2m")
    assert frame.read(MSI_TYPER, 4) == (FIRST << 16) | COUNT == 0x0050_0040
    assert frame.read(MSI_IIDR, 4) == IIDR_QEMU
    for offset in range(0xFD0, 0x1000, 4):
        assert frame.read(offset, 4) == 0, hex(offset)
    other = GicV2m(Spis(), BASE, 32, 1)
    assert other.read(MSI_TYPER, 4) == (32 << 16) | 1
    assert _warnings(caplog) == []                  # 0xFD0..0xFFC are defined: no "undefined offset" line


@pytest.mark.parametrize("first,count", [(80, 0), (80, -1), (80, 0x400), (31, 64), (0x400, 1), (-1, 1)])
def test_a_range_msi_typer_cannot_hold_is_refused(first: int, count: int) -> None:
    with pytest.raises(ValueError, match=rf"GICv2m SPI range {first}\+{count} does not fit MSI_TYPER"):
        GicV2m(Spis(), BASE, first, count)


@pytest.mark.parametrize("first,count", [(32, 1), (0x3FF, 1), (80, 0x3FF)])
def test_the_edges_msi_typer_can_hold_are_accepted(first: int, count: int) -> None:
    assert GicV2m(Spis(), BASE, first, count).read(MSI_TYPER, 4) == (first << 16) | count


def test_setspi_raises_each_spi_of_the_frame_and_counts_them(frame: GicV2m, spis: Spis) -> None:
    frame.write(MSI_SETSPI_NS, 4, FIRST)
    frame.write(MSI_SETSPI_NS, 2, FIRST + COUNT - 1)          # 16-bit writes are accepted (QEMU)
    frame.write(MSI_SETSPI_NS, 4, 0xFFFF_FC00 | (FIRST + 5))  # only bits 9:0 name the INTID
    assert spis.pulses == [FIRST, FIRST + COUNT - 1, FIRST + 5]
    assert frame.raised == 3


def test_what_the_frame_does_not_define_is_ignored_with_one_line_each(
        frame: GicV2m, spis: Spis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "armras.devices.gicv2m")
    assert frame.read(MSI_TYPER, 2) == 0
    assert frame.read(MSI_TYPER, 8) == 0
    assert frame.read(0xFCC - 4, 4) == 0
    assert frame.read(0x044, 4) == 0
    frame.write(MSI_SETSPI_NS, 1, FIRST)
    frame.write(MSI_SETSPI_NS, 8, FIRST)
    frame.write(MSI_TYPER, 4, 0x1234)
    frame.write(MSI_SETSPI_NS, 4, FIRST - 1)
    frame.write(MSI_SETSPI_NS, 4, FIRST + COUNT)
    frame.msi_write(BASE + MSI_TYPER, FIRST)
    frame.msi_write(0x4000_0040, FIRST)
    assert spis.pulses == [] and frame.raised == 0
    assert frame.read(MSI_TYPER, 4) == 0x0050_0040                 # the write to MSI_TYPER changed nothing
    assert _warnings(caplog) == [
        "gic_v2m: 2-byte read at 0x8 ignored (32-bit registers)",
        "gic_v2m: 8-byte read at 0x8 ignored (32-bit registers)",
        "gic_v2m: read of undefined offset 0xfc8 ignored",
        "gic_v2m: read of undefined offset 0x44 ignored",
        "gic_v2m: 1-byte write at 0x40 ignored (16- or 32-bit writes)",
        "gic_v2m: 8-byte write at 0x40 ignored (16- or 32-bit writes)",
        "gic_v2m: write of 0x1234 to offset 0x8 ignored (only MSI_SETSPI_NS is writable)",
        "gic_v2m: MSI_SETSPI_NS write of INTID 79 ignored (the frame has 80..143)",
        "gic_v2m: MSI_SETSPI_NS write of INTID 144 ignored (the frame has 80..143)",
        "gic_v2m: MSI write of 0x50 to 0x8020008 dropped: not the frame's MSI_SETSPI_NS (0x8020040)",
        "gic_v2m: MSI write of 0x50 to 0x40000040 dropped: not the frame's MSI_SETSPI_NS (0x8020040)",
    ]


def test_msi_to_the_doorbell_raises_the_spi(frame: GicV2m, spis: Spis) -> None:
    frame.msi_write(BASE + MSI_SETSPI_NS, FIRST + 7)
    frame.msi_write(BASE + MSI_SETSPI_NS, FIRST + 7)
    assert spis.pulses == [FIRST + 7, FIRST + 7] and frame.raised == 2


def test_the_board_maps_the_frame_where_the_madt_says(board) -> None:
    # A guest at EL1 reads MSI_TYPER and MSI_IIDR at QEMU virt's 0x0802_0000 and raises SPI 80
    # with a store to MSI_SETSPI_NS: the board's GIC has it pending.
    b = board(f"""
 ldr x3, ={BASE:#x}
 ldr w20, [x3, #{MSI_TYPER:#x}]
 ldr w21, [x3, #{MSI_IIDR:#x}]
 mov w4, #{FIRST + 3}
 str w4, [x3, #{MSI_SETSPI_NS:#x}]
""" + POWER_OFF)
    assert b.run().status == 0
    assert (b.x(20), b.x(21)) == (0x0050_0040, IIDR_QEMU)
    gic = b.machine.gic
    assert gic.is_pending(FIRST + 3) and not gic.is_pending(FIRST + 2) and not gic.is_pending(FIRST + 4)
    assert b.machine.gic_v2m.raised == 1
