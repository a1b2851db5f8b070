"""`armras efivars FILE`: the variables of a `--efivars` store, and the pstore dumps in them.

Linux's efi-pstore backend (drivers/firmware/efi/efi-pstore.c, 6.1 and 6.12) writes each
pstore record as one non-volatile variable under LINUX_EFI_CRASH_GUID (include/linux/efi.h)
named "dump-type<type>-<part>-<count>-<seconds>-<C|D>": the pstore type (0 is dmesg), the
part of the dump (1 holds the newest lines, the panic), the dump count, the time it was
written (UEFI GetTime, seconds since 1970) and whether the data is compressed (C: a raw
deflate stream, as the ERST backend's DMESG_Z sections) or plain text (D).
"""
from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass

from armras.firmware.efivars import (
    APPEND_WRITE,
    BOOTSERVICE_ACCESS,
    HARDWARE_ERROR_RECORD,
    NON_VOLATILE,
    RUNTIME_ACCESS,
    STORE_SIZE,
    Variable,
    VariableStore,
)
from armras.ras.cper_record import inflate_dmesg, printable

LINUX_EFI_CRASH_GUID = uuid.UUID("cfc8fc79-be2e-4ddc-97f0-9f98bfe298a0").bytes_le
PSTORE_TYPE_DMESG = 0           # enum pstore_type_id (include/linux/pstore.h)
DUMP_NAME_RE = re.compile(r"^dump-type(?P<type>\d+)-(?P<part>\d+)-(?P<count>-?\d+)-(?P<time>\d+)-(?P<kind>[CD])$")
ATTRIBUTE_NAMES = [(NON_VOLATILE, "NV"), (BOOTSERVICE_ACCESS, "BS"), (RUNTIME_ACCESS, "RT"),
                   (HARDWARE_ERROR_RECORD, "HR"), (APPEND_WRITE, "AW")]
PREVIEW_BYTES = 64              # data shown of a variable that is not a pstore dump


@dataclass(frozen=True)
class PstoreDump:
    """What an efi-pstore variable's name says."""
    type: int
    part: int
    count: int
    time: int
    compressed: bool


def parse_dump_name(guid: bytes, name: str) -> PstoreDump | None:
    m = DUMP_NAME_RE.match(name)
    if guid != LINUX_EFI_CRASH_GUID or m is None:
        return None
    return PstoreDump(int(m["type"]), int(m["part"]), int(m["count"]), int(m["time"]), m["kind"] == "C")


def attribute_text(attributes: int) -> str:
    return "|".join(label for bit, label in ATTRIBUTE_NAMES if attributes & bit) or "0"


def _data_text(data: bytes) -> str:
    head = data[:PREVIEW_BYTES]
    text = head.rstrip(b"\0")
    if text and all(0x20 <= b < 0x7F for b in text):
        shown = repr(text.decode("ascii"))
    else:
        shown = head.hex(" ")
    return shown + (" ..." if len(data) > PREVIEW_BYTES else "")


def dump_text(dump: PstoreDump, data: bytes) -> str:
    return inflate_dmesg(data) if dump.compressed else data.decode("utf-8", "replace")


def describe_variable(guid: bytes, name: str, var: Variable, text_lines: int | None = None) -> str:
    head = f"{uuid.UUID(bytes_le=guid)} {printable(name)}: {attribute_text(var.attributes)}, {len(var.data)} bytes"
    dump = parse_dump_name(guid, name)
    if dump is None:
        return f"{head}: {_data_text(var.data)}"
    when = datetime.datetime.fromtimestamp(dump.time, datetime.timezone.utc).isoformat() \
        if dump.time < 253402300800 else str(dump.time)          # datetime stops at year 9999
    kind = "dmesg" if dump.type == PSTORE_TYPE_DMESG else f"pstore type {dump.type}"
    lines = [f"{head}: Linux efi-pstore {kind} part {dump.part}, dump {dump.count}, written {when}, "
             f"{'deflate' if dump.compressed else 'plain text'}"]
    if dump.type == PSTORE_TYPE_DMESG:
        body = dump_text(dump, var.data).rstrip("\n").split("\n")
        if text_lines is not None:
            body = body[-text_lines:]
        lines.extend(f"    | {printable(line)}" for line in body)
    return "\n".join(lines)


def describe_store(store: VariableStore, text_lines: int | None = None) -> str:
    lines = [f"{store.path}: {len(store.variables)} variable(s), {store.used()} of {STORE_SIZE} bytes used"]
    lines.extend(describe_variable(g, n, v, text_lines) for (g, n), v in store.variables.items())
    return "\n".join(lines)


__all__ = ["LINUX_EFI_CRASH_GUID", "PstoreDump", "describe_store", "describe_variable", "dump_text",
           "parse_dump_name"]
