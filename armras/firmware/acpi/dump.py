"""Human-readable decoding of the board's ACPI blob and HEST (for `armras hest`), no iasl.

ACPI 6.4 5.2.5 (RSDP), 5.2.8 (XSDT), 18.3.2.8 (GHESv2). The blob is walked the way an
OS does: RSDP -> XSDT -> each table, plus the DSDT through the FADT's X_DSDT.
"""
from __future__ import annotations

import struct
from collections.abc import Callable

from armras.firmware.acpi.builder import HEADER_SIZE, Gas, TableHeader
from armras.firmware.acpi.hest import GhesEntry, notify_name, parse_hest_entries
from armras.firmware.acpi.tables import (
    FADT_X_DSDT_OFFSET,
    RSDP_SIGNATURE,
    RSDP_SIZE_OFFSET,
    RSDP_V1_CHECKSUM_LEN,
    RSDP_XSDT_OFFSET,
)
from armras.errors import ArmrasError

GAS_SPACE_NAMES = {0: "SystemMemory", 1: "SystemIO"}
ACCESS_NAMES = {0: "Undefined", 1: "Byte", 2: "Word", 3: "DWord", 4: "QWord"}

ReadU64 = Callable[[int], int]


def _sum_ok(data: bytes) -> bool:
    return sum(data) & 0xFF == 0


def _gas_text(gas: Gas) -> str:
    space = GAS_SPACE_NAMES.get(gas.space_id, f"space {gas.space_id}")
    access = ACCESS_NAMES.get(gas.access_size, f"access {gas.access_size}")
    return (f"{gas.address:#018x} ({space}, {gas.bit_width}-bit, offset {gas.bit_offset}, "
            f"{access} access)")


def _read(read_u64: ReadU64 | None, address: int) -> str | int:
    if read_u64 is None:
        return "not available"
    try:
        return read_u64(address)
    except (ArmrasError, ValueError, KeyError) as exc:
        return f"unreadable ({exc})"


def _format_source(entry: GhesEntry, read_u64: ReadU64 | None) -> list[str]:
    lines = [
        f"  Source {entry.source_id}: {'GHESv2' if entry.read_ack_register else 'GHES'} (type {entry.type}) "
        f"at HEST+{entry.offset:#x}",
        f"    notify type:             {entry.notify_type} [{notify_name(entry.notify_type)}]"
        f" (structure length {entry.notify_length}, poll interval {entry.poll_interval} ms, "
        f"vector {entry.vector})",
        f"    enabled:                 {entry.enabled}  (flags {entry.flags:#x}, related source "
        f"{entry.related_source_id:#06x})",
        f"    records to preallocate:  {entry.records_to_preallocate}, max sections per record "
        f"{entry.max_sections_per_record}, max raw data length {entry.max_raw_data_length}",
        f"    error status address:    {_gas_text(entry.error_status_address)}",
    ]
    block = _read(read_u64, entry.error_status_address.address)
    block_text = f"{block:#018x}" if isinstance(block, int) else block
    lines.append(f"      -> error status block at {block_text}")
    lines.append(f"    error status block len:  {entry.error_status_block_length}")
    if entry.read_ack_register is None:
        return lines
    lines.append(f"    read ack register:       {_gas_text(entry.read_ack_register)}")
    ack = _read(read_u64, entry.read_ack_register.address)
    if isinstance(ack, int):
        state = "acknowledged" if ack & entry.read_ack_write else "NOT acknowledged"
        ack_text = f"{ack:#x} ({state})"
    else:
        ack_text = ack
    lines.append(f"      -> current value {ack_text}")
    lines.append(f"    read ack preserve:       {entry.read_ack_preserve:#018x}")
    lines.append(f"    read ack write:          {entry.read_ack_write:#x}")
    return lines


def format_hest(hest: bytes, read_u64: ReadU64 | None = None) -> str:
    """Every HEST field per source; `read_u64(addr)` reads guest memory for live values."""
    if len(hest) < HEADER_SIZE + 4 or hest[:4] != b"HEST":
        raise ArmrasError("not a HEST table")
    header = TableHeader.unpack(hest)
    if header.length > len(hest):
        raise ArmrasError(f"HEST length {header.length} exceeds the {len(hest)} bytes given")
    table = hest[:header.length]
    (count,) = struct.unpack_from("<I", table, HEADER_SIZE)
    lines = [
        f"HEST: length {header.length}, revision {header.revision}, checksum "
        f"{'OK' if _sum_ok(table) else 'BAD'}, OEM {header.oem_id.decode('ascii', 'replace')!r}/"
        f"{header.oem_table_id.decode('ascii', 'replace')!r}, {count} error source(s)",
    ]
    try:
        entries = parse_hest_entries(table)
    except ValueError as exc:
        raise ArmrasError(str(exc)) from exc
    for entry in entries:
        lines.extend(_format_source(entry, read_u64))
    return "\n".join(lines) + "\n"


def _table_at(blob: bytes, base: int, address: int) -> bytes | None:
    start = address - base
    if start < 0 or start + HEADER_SIZE > len(blob):
        return None
    (length,) = struct.unpack_from("<I", blob, start + 4)
    if length < HEADER_SIZE or start + length > len(blob):
        return None
    return blob[start:start + length]


def list_tables(blob: bytes, base: int) -> list[tuple[str, int, int, bool]]:
    """(signature, address, length, checksum ok) of every table reachable from the RSDP."""
    if blob[:8] != RSDP_SIGNATURE:
        raise ArmrasError("blob does not start with an RSDP")
    (length,) = struct.unpack_from("<I", blob, RSDP_SIZE_OFFSET)
    rsdp_ok = _sum_ok(blob[:RSDP_V1_CHECKSUM_LEN]) and _sum_ok(blob[:length])
    out = [("RSDP", base, length, rsdp_ok)]
    (xsdt_address,) = struct.unpack_from("<Q", blob, RSDP_XSDT_OFFSET)
    xsdt = _table_at(blob, base, xsdt_address)
    if xsdt is None:
        raise ArmrasError(f"XSDT at {xsdt_address:#x} is outside the blob")
    out.append(("XSDT", xsdt_address, len(xsdt), _sum_ok(xsdt)))
    count = (len(xsdt) - HEADER_SIZE) // 8
    for address in struct.unpack_from(f"<{count}Q", xsdt, HEADER_SIZE):
        table = _table_at(blob, base, address)
        if table is None:
            out.append(("????", address, 0, False))
            continue
        sig = table[:4].decode("ascii", "replace")
        out.append((sig, address, len(table), _sum_ok(table)))
        if sig == "FACP" and len(table) >= FADT_X_DSDT_OFFSET + 8:
            (dsdt_address,) = struct.unpack_from("<Q", table, FADT_X_DSDT_OFFSET)
            dsdt = _table_at(blob, base, dsdt_address)
            if dsdt is not None:
                out.append((dsdt[:4].decode("ascii", "replace"), dsdt_address, len(dsdt),
                            _sum_ok(dsdt)))
    return out


def format_acpi(blob: bytes, base: int, read_u64: ReadU64 | None = None) -> str:
    """The table list of an ACPI blob (RSDP first) and the decoded HEST; a bare HEST is
    decoded as such."""
    if blob[:4] == b"HEST":
        return format_hest(blob, read_u64)
    lines = ["ACPI tables:"]
    hest_address = None
    for sig, address, length, ok in list_tables(blob, base):
        lines.append(f"  {sig:4s} at {address:#014x} length {length:5d}  checksum "
                     f"{'OK' if ok else 'BAD'}")
        if sig == "HEST":
            hest_address = address
    text = "\n".join(lines) + "\n"
    if hest_address is not None:
        hest = _table_at(blob, base, hest_address)
        assert hest is not None
        text += "\n" + format_hest(hest, read_u64)
    return text
