"""Every byte of each PCIe function's config space: reset value, writable bits, write-1-to-clear
bits and sticky bits, from a register map written out here.

The map follows PCIe Base 4.0 (7.5.1.1 common header, 7.5.1.2 type 0, 7.5.1.3 type 1,
7.5.3 PCI Express Capability, 7.7.1 MSI Capability, 7.8.4 AER) for the functions QEMU's virt
board has (hw/pci-bridge/gen_pcie_root_port.c 1b36:000c, xio3130_upstream.c 104c:8232 and
xio3130_downstream.c 104c:8233 at revision 2, hw/misc/pci-testdev.c's ids 1b36:0005 with
QEMU's subsystem 1af4:1100): RO fields read their value and ignore writes, RW bits take what
is written, RW1C bits clear where a 1 is written, and RWS/RW1CS/ROS bits keep their value
across a hot reset (Secondary Bus Reset) while everything else goes back to its reset value.
Anything the map does not list reads 0 and is read-only.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from armras.devices.pcie import Endpoint, Function, RootPort, SwitchDownstreamPort, SwitchUpstreamPort

SIZE = 4096


@dataclass(frozen=True)
class Reg:
    offset: int
    size: int
    reset: int = 0
    rw: int = 0           # RW bits
    w1c: int = 0          # RW1C bits
    sticky: bool = False  # the whole register keeps its value across a hot reset


def common(vendor: int, device: int, revision: int, class_code: int, header_type: int, port_type: int,
           command_rw: int, pin: int) -> list[Reg]:
    return [
        Reg(0x00, 2, vendor), Reg(0x02, 2, device),
        Reg(0x04, 2, 0, rw=command_rw),                          # Command
        Reg(0x06, 2, 0x0010, w1c=0xF900),                        # Status: Capabilities List; error bits RW1C
        Reg(0x08, 1, revision), Reg(0x09, 3, class_code),
        Reg(0x0C, 1, 0, rw=0xFF),                                # Cache Line Size
        Reg(0x0E, 1, header_type),
        Reg(0x34, 1, 0x40),                                      # Capabilities Pointer
        Reg(0x3C, 1, 0, rw=0xFF), Reg(0x3D, 1, pin),             # Interrupt Line, Interrupt Pin
        # PCI Express Capability (version 2) at 0x40
        Reg(0x40, 1, 0x10),
        Reg(0x42, 2, 0x0002 | port_type << 4),
        Reg(0x44, 4, 0x8000),                                    # Device Capabilities: Role-Based Error Reporting
        Reg(0x48, 2, 0x2810, rw=0x78FF),                         # Device Control: RO, No Snoop, MRRS 512
        Reg(0x4A, 2, 0, w1c=0x000F),                             # Device Status: CED, NFED, FED, URD
        Reg(0x50, 2, 0, rw=0x00DB),                              # Link Control
        Reg(0x6C, 4, 0x2),                                       # Link Capabilities 2: 2.5 GT/s
        Reg(0x70, 2, 0x1),                                       # Link Control 2: target 2.5 GT/s
        # AER at 0x100 (version 2)
        Reg(0x100, 4, 0x0002_0001),
        Reg(0x104, 4, 0, w1c=0x07FF_F030, sticky=True),          # Uncorrectable Error Status
        Reg(0x108, 4, 0, rw=0x07FF_F030, sticky=True),           # Uncorrectable Error Mask
        Reg(0x10C, 4, 0x0046_2030, rw=0x07FF_F030, sticky=True), # Uncorrectable Error Severity
        Reg(0x110, 4, 0, w1c=0xF1C1, sticky=True),               # Correctable Error Status
        Reg(0x114, 4, 0x2000, rw=0xF1C1, sticky=True),           # Correctable Error Mask: Advisory Non-Fatal
        Reg(0x118, 4, 0, sticky=True),                           # Capabilities and Control (First Error Pointer)
        Reg(0x11C, 16, 0, sticky=True),                          # Header Log
    ]


def bridge(port_number: int, link_active: bool, msi: bool) -> list[Reg]:
    regs = [
        Reg(0x18, 3, 0, rw=0xFF_FFFF),                           # Primary, Secondary, Subordinate Bus
        Reg(0x1C, 1, 0x01, rw=0xF0), Reg(0x1D, 1, 0x01, rw=0xF0),  # I/O Base/Limit: 32-bit decode
        Reg(0x1E, 2, 0, w1c=0xF900),                             # Secondary Status
        Reg(0x20, 4, 0, rw=0xFFF0_FFF0),                         # Memory Base/Limit
        Reg(0x24, 4, 0x0001_0001, rw=0xFFF0_FFF0),               # Prefetchable Base/Limit: 64-bit
        Reg(0x28, 8, 0, rw=(1 << 64) - 1),                       # Prefetchable Base/Limit Upper 32 Bits
        Reg(0x30, 4, 0, rw=0xFFFF_FFFF),                         # I/O Base/Limit Upper 16 Bits
        Reg(0x3E, 2, 0, rw=0x005F),                              # Bridge Control
        Reg(0x4C, 4, 0x11 | port_number << 24 | (1 << 20 if link_active else 0)),   # Link Capabilities
        Reg(0x52, 2, 0x11 | (0x2000 if link_active else 0)),     # Link Status (Data Link Layer Link Active)
    ]
    if msi:
        regs += [Reg(0x41, 1, 0x80),                             # next capability: MSI
                 Reg(0x80, 1, 0x05),
                 Reg(0x82, 2, 0x0080, rw=0x0071),                # Message Control: 64-bit; Enable, MME
                 Reg(0x84, 4, 0, rw=0xFFFF_FFFC), Reg(0x88, 4, 0, rw=0xFFFF_FFFF), Reg(0x8C, 2, 0, rw=0xFFFF)]
    return regs


def endpoint_map() -> list[Reg]:
    return common(0x1B36, 0x0005, 0, 0x00FF00, 0x00, 0x0, 0x0546, 0) + [
        Reg(0x2C, 2, 0x1AF4), Reg(0x2E, 2, 0x1100),               # Subsystem Vendor ID / Subsystem ID
        Reg(0x4C, 4, 0x11), Reg(0x52, 2, 0x11),                   # Link Capabilities / Status: x1 2.5 GT/s
    ]


def root_port_map(msi: bool) -> list[Reg]:
    return common(0x1B36, 0x000C, 0, 0x060400, 0x01, 0x4, 0x0547, 1) + bridge(1, True, msi) + [
        Reg(0x5C, 2, 0, rw=0x000F),                              # Root Control
        Reg(0x60, 4, 0, w1c=0x1_0000),                           # Root Status: PME Status
        Reg(0x12C, 4, 0, rw=0x7),                                # Root Error Command
        Reg(0x130, 4, 0, w1c=0x7F, sticky=True),                 # Root Error Status
        Reg(0x134, 4, 0, sticky=True),                           # Error Source Identification
    ]


FUNCTIONS = {
    "endpoint": (Endpoint, endpoint_map),
    "root_port": (lambda: RootPort(_Irq(), 36, msi=lambda address, data: None), lambda: root_port_map(True)),
    "root_port_intx_only": (lambda: RootPort(_Irq(), 36), lambda: root_port_map(False)),
    "switch_upstream": (SwitchUpstreamPort,
                        lambda: common(0x104C, 0x8232, 2, 0x060400, 0x01, 0x5, 0x0547, 0) + bridge(0, False, True)),
    "switch_downstream": (lambda: SwitchDownstreamPort(port_number=3),
                          lambda: common(0x104C, 0x8233, 2, 0x060400, 0x01, 0x6, 0x0547, 0) + bridge(3, True, True)),
}


class _Irq:
    def set_level(self, intid: int, level: bool) -> None:
        pass

    def pulse(self, intid: int) -> None:
        pass


def _bytes(regs: list[Reg]) -> tuple[bytearray, bytearray, bytearray, bytearray]:
    """The map as per-byte reset values, RW masks, RW1C masks and sticky masks."""
    reset, rw, w1c, sticky = (bytearray(SIZE) for _ in range(4))
    for r in regs:
        reset[r.offset:r.offset + r.size] = r.reset.to_bytes(r.size, "little")
        rw[r.offset:r.offset + r.size] = r.rw.to_bytes(r.size, "little")
        w1c[r.offset:r.offset + r.size] = r.w1c.to_bytes(r.size, "little")
        sticky[r.offset:r.offset + r.size] = (0xFF if r.sticky else 0).to_bytes(1, "little") * r.size
    return reset, rw, w1c, sticky


@pytest.fixture(params=sorted(FUNCTIONS))
def function(request: pytest.FixtureRequest) -> tuple[Function, list[Reg]]:
    make, regs = FUNCTIONS[request.param]
    return make(), regs()


def _config(fn: Function) -> bytes:
    return bytes(fn.read_byte(reg) for reg in range(SIZE))


def test_reset_values(function: tuple[Function, list[Reg]]) -> None:
    fn, regs = function
    reset, _, _, _ = _bytes(regs)
    got = _config(fn)
    wrong = [f"{i:#05x}: {got[i]:#04x} != {reset[i]:#04x}" for i in range(SIZE) if got[i] != reset[i]]
    assert not wrong, wrong[:20]


def test_writable_and_write_one_to_clear_bits(function: tuple[Function, list[Reg]]) -> None:
    fn, regs = function
    reset, rw, w1c, _ = _bytes(regs)
    wrong = []
    for reg in range(SIZE):
        if reg == 0x3E:
            continue                    # Bridge Control: its Secondary Bus Reset bit is tested below
        fn.cfg.data[reg] = 0xFF         # the hardware set every bit
        fn.write_bytes(reg, b"\x00")    # RW bits take 0, RO and RW1C bits stay
        after_zero = fn.read_byte(reg)
        fn.write_bytes(reg, b"\xff")    # RW bits take 1, RW1C bits clear
        after_ones = fn.read_byte(reg)
        expect_zero, expect_ones = 0xFF & ~rw[reg], (0xFF & ~w1c[reg]) | rw[reg]
        if isinstance(fn, RootPort) and reg == 0x06:
            # Interrupt Status follows the port's AER interrupt, recomputed after each write: none here.
            expect_zero, expect_ones = expect_zero & ~0x08, expect_ones & ~0x08
        if (after_zero, after_ones) != (expect_zero, expect_ones):
            wrong.append(f"{reg:#05x}: {after_zero:#04x}/{after_ones:#04x} != {expect_zero:#04x}/{expect_ones:#04x}")
        fn.cfg.data[reg] = reset[reg]
    assert not wrong, wrong[:20]


def test_multi_byte_writes_apply_each_byte_mask(function: tuple[Function, list[Reg]]) -> None:
    fn, regs = function
    reset, rw, _, _ = _bytes(regs)
    fn.write_bytes(0x04, b"\xff\xff")                  # Command: RW bits only
    assert fn.read_byte(0x04) | fn.read_byte(0x05) << 8 == rw[4] | rw[5] << 8
    fn.write_bytes(0x104, (0xFFFF_FFFF).to_bytes(4, "little"))   # Uncorrectable Error Status: nothing to clear
    assert _config(fn)[0x104:0x108] == bytes(reset[0x104:0x108])


def test_hot_reset_keeps_sticky_bits_only(function: tuple[Function, list[Reg]]) -> None:
    fn, regs = function
    reset, _, _, sticky = _bytes(regs)
    fn.cfg.data[:] = b"\xa5" * SIZE
    fn.hot_reset()
    expect = bytes((0xA5 & sticky[i]) | (reset[i] & ~sticky[i] & 0xFF) for i in range(SIZE))
    got = _config(fn)
    wrong = [f"{i:#05x}: {got[i]:#04x} != {expect[i]:#04x}" for i in range(SIZE) if got[i] != expect[i]]
    assert not wrong, wrong[:20]
