"""IORT (IO Remapping Table, Arm DEN 0049E.b) with one PCI Root Complex node and no ID mappings.

QEMU 7.2's hw/arm/virt-acpi-build.c `build_iort` writes table revision 3 with an ITS Group
node and a Root Complex node (node revision 3) whose single ID mapping sends every
Requester ID to that ITS group. The board has a GICv2 with a GICv2m frame and no ITS: a
GICv2m doorbell takes the SPI number in the MSI data and never sees a DeviceID, and the
IORT has no node type for a GICv2m frame, so there is nothing for an ID mapping to point
at (an ITS Group would name an ITS the MADT does not have). The table therefore keeps
only what is true of the root complex: its memory access properties (fully coherent,
as the DSDT's _CCA), ATS unsupported, PCI segment 0 (the MCFG's) and a 64-bit memory
address size limit (Linux's rc_dma_get_range warns "Root complex has no memory address
limit" if it is 0). That is what QEMU's 2025 series "Always build IORT table (even with
GIC ITS disabled)" builds for a board without an ITS: a Root Complex node alone. Linux then finds no
MSI parent in the IORT (iort_get_device_domain returns NULL) and uses the host bridge's
MSI domain, the GICv2m one registered by gicv2m_acpi_init.
"""
from __future__ import annotations

import struct

from armras.firmware.acpi.builder import TableBuilder

IORT_SIGNATURE = b"IORT"
IORT_REVISION = 3                    # DEN 0049E.b, as QEMU 7.2
IORT_NODE_OFFSET = 48                # header (36) + node count, node array offset, reserved
NODE_TYPE_PCI_ROOT_COMPLEX = 2
ROOT_COMPLEX_NODE_REVISION = 3       # as QEMU 7.2 (E.b: Identifier field, 64-bit address limit)
ROOT_COMPLEX_NODE_SIZE = 36          # without ID mappings (E.b Table 17)
CCA_FULLY_COHERENT = 1
MAF_CPM_DACS = 0x3                   # Memory Access Flags: coherent path to memory, device attributes
ATS_UNSUPPORTED = 0
MEMORY_ADDRESS_SIZE_LIMIT = 64
# Root Complex node: Type u8, Length u16, Revision u8, Identifier u32, Number of ID mappings u32,
# Reference to ID Array u32, Memory access properties (CCA u32, Allocation Hints u8, Reserved u16,
# Memory Access Flags u8), ATS Attribute u32, PCI Segment number u32, Memory address size limit u8,
# Reserved u8[3].
ROOT_COMPLEX_FORMAT = "<BHBIIIIBHBIIB3s"


def build_iort(segment: int, oem_id: bytes, oem_table_id: bytes) -> bytes:
    tb = TableBuilder(IORT_SIGNATURE, IORT_REVISION, oem_id, oem_table_id)
    tb.u32(1)                        # Number of IORT nodes
    tb.u32(IORT_NODE_OFFSET)         # Offset to the array of IORT nodes
    tb.u32(0)                        # Reserved
    assert tb.offset == IORT_NODE_OFFSET
    node = struct.pack(ROOT_COMPLEX_FORMAT, NODE_TYPE_PCI_ROOT_COMPLEX, ROOT_COMPLEX_NODE_SIZE,
                       ROOT_COMPLEX_NODE_REVISION, 0, 0, ROOT_COMPLEX_NODE_SIZE,
                       CCA_FULLY_COHERENT, 0, 0, MAF_CPM_DACS, ATS_UNSUPPORTED, segment,
                       MEMORY_ADDRESS_SIZE_LIMIT, bytes(3))
    assert len(node) == ROOT_COMPLEX_NODE_SIZE
    tb.raw(node)
    return tb.finish()
