"""Layout of the GHES "hardware errors" area in guest RAM, as QEMU's etc/hardware_errors.

    u64 error_block_address[N]   the HEST Error Status Address registers (point at block i)
    u64 read_ack_register[N]     the HEST Read Ack registers (initialised to 1: "acknowledged")
    u8  error_status_block_i[block_length_i]   one after the other

(QEMU hw/acpi/ghes.c build_ghes_error_table; ACPI 6.4 18.3.2.8 GHESv2.) QEMU gives every
source a 1 KiB block; a user-described HEST may give each its own length.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from armras.ras.sources import BOARD_SOURCES

READ_ACK_PRESERVE = 0xFFFF_FFFF_FFFF_FFFE   # ~1
READ_ACK_WRITE = 0x1


@dataclass(frozen=True)
class HardwareErrorsLayout:
    base: int                                       # guest physical address (8-byte aligned)
    block_lengths: tuple[int, ...] = tuple(s.block_length for s in BOARD_SOURCES)

    @property
    def num_sources(self) -> int:
        return len(self.block_lengths)

    def error_status_address_reg(self, index: int) -> int:
        return self.base + 8 * index

    def read_ack_reg(self, index: int) -> int:
        return self.base + 8 * self.num_sources + 8 * index

    def error_block(self, index: int) -> int:
        return self.base + 16 * self.num_sources + sum(self.block_lengths[:index])

    def block_length(self, index: int) -> int:
        return self.block_lengths[index]

    @property
    def size(self) -> int:
        return 16 * self.num_sources + sum(self.block_lengths)

    def initial_bytes(self) -> bytes:
        """The area as firmware installs it: addresses filled in, every source acknowledged."""
        n = self.num_sources
        regs = struct.pack(f"<{n}Q", *(self.error_block(i) for i in range(n)))
        acks = struct.pack(f"<{n}Q", *([READ_ACK_WRITE] * n))
        return regs + acks + bytes(sum(self.block_lengths))
