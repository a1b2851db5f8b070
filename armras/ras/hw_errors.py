"""Layout of the GHES "hardware errors" blob in guest RAM, as QEMU's etc/hardware_errors.

    u64 error_block_address[N]   the HEST Error Status Address registers (point at block i)
    u64 read_ack_register[N]     the HEST Read Ack registers (initialised to 1: "acknowledged")
    u8  error_status_block[N][ERROR_BLOCK_SIZE]

(QEMU hw/acpi/ghes.c build_ghes_error_table; ACPI 6.x 18.3.2.8 GHESv2.)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

ERROR_BLOCK_SIZE = 1024          # ACPI_GHES_MAX_RAW_DATA_LENGTH, Error Status Block Length
READ_ACK_PRESERVE = 0xFFFF_FFFF_FFFF_FFFE   # ~1
READ_ACK_WRITE = 0x1

# HEST notification types used by the board (ACPI 6.x Table 18.14).
NOTIFY_GPIO = 7
NOTIFY_SEA = 8

# The board's error sources: (HEST source id, notification type). Source 0 is
# synchronous (SEA, fed by injection or by a guest touching a poisoned page);
# source 1 is asynchronous (GPIO-signal via the ACPI GED).
SOURCE_SEA = 0
SOURCE_GPIO = 1
BOARD_SOURCES: tuple[tuple[int, int], ...] = ((SOURCE_SEA, NOTIFY_SEA), (SOURCE_GPIO, NOTIFY_GPIO))


@dataclass(frozen=True)
class HardwareErrorsLayout:
    base: int                     # guest physical address of the blob (8-byte aligned)
    num_sources: int = len(BOARD_SOURCES)

    def error_status_address_reg(self, index: int) -> int:
        return self.base + 8 * index

    def read_ack_reg(self, index: int) -> int:
        return self.base + 8 * self.num_sources + 8 * index

    def error_block(self, index: int) -> int:
        return self.base + 16 * self.num_sources + ERROR_BLOCK_SIZE * index

    @property
    def size(self) -> int:
        return 16 * self.num_sources + ERROR_BLOCK_SIZE * self.num_sources

    def initial_bytes(self) -> bytes:
        """The blob as firmware installs it: addresses filled in, every source acknowledged."""
        n = self.num_sources
        regs = struct.pack(f"<{n}Q", *(self.error_block(i) for i in range(n)))
        acks = struct.pack(f"<{n}Q", *([READ_ACK_WRITE] * n))
        return regs + acks + bytes(ERROR_BLOCK_SIZE * n)
