"""Whole CPER records (UEFI 2.10 Appendix N.2: Record Header, Section Descriptors), as the
ERST stores them, and the pstore records Linux writes there.

Linux's ERST pstore backend (drivers/acpi/apei/erst.c erst_writer) writes one CPER record
per pstore chunk: the record header (creator CPER_CREATOR_PSTORE), one section descriptor
whose type says what follows (dmesg text, deflate-compressed dmesg, MCE), then the data.
Compressed dmesg is a raw deflate stream (6.1: crypto "deflate"; 6.6+: zlib_deflate with
-MAX_WBITS), which `zlib` reads with wbits=-15.
"""
from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from armras.ras.cper import severity_label

# UEFI 2.10 Table N-1 (Record Header), 128 bytes.
RECORD_HEADER_FORMAT = "<4sHIHIIIQ16s16s16s16sQIQ12s"
RECORD_HEADER_SIZE = struct.calcsize(RECORD_HEADER_FORMAT)
RECORD_SIGNATURE = b"CPER"
RECORD_SIGNATURE_END = 0xFFFF_FFFF
VALID_PLATFORM_ID = 1 << 0
VALID_TIMESTAMP = 1 << 1
VALID_PARTITION_ID = 1 << 2

# UEFI 2.10 Table N-5 (Section Descriptor), 72 bytes.
SECTION_DESCRIPTOR_FORMAT = "<IIHBBI16s16sI20s"
SECTION_DESCRIPTOR_SIZE = struct.calcsize(SECTION_DESCRIPTOR_FORMAT)

# GUIDs from Linux drivers/acpi/apei/erst.c and include/linux/cper.h.
CREATOR_PSTORE = uuid.UUID("75a574e3-5052-4b29-8a8e-be2c6490b89d")
SECTION_TYPE_DMESG = uuid.UUID("c197e04e-d545-4a70-9c17-a5549419eb12")
SECTION_TYPE_DMESG_Z = uuid.UUID("4f118707-04dd-4055-b5dd-956d34ddfac6")
SECTION_TYPE_MCE = uuid.UUID("fe08ffbe-95e4-4be7-bc73-4096044a38fc")
NOTIFY_MCE = uuid.UUID("e8f56ffe-919c-4cc5-ba88-65abe14913bb")

SECTION_NAMES = {
    SECTION_TYPE_DMESG: "pstore dmesg",
    SECTION_TYPE_DMESG_Z: "pstore dmesg (deflate)",
    SECTION_TYPE_MCE: "pstore MCE",
}
CREATOR_NAMES = {CREATOR_PSTORE: "Linux pstore"}
NOTIFY_NAMES = {NOTIFY_MCE: "MCE"}
MAX_TEXT = 1 << 20          # a decompressed dmesg is at most this long (a bound on a zip bomb)


@dataclass(frozen=True)
class SectionDescriptor:
    offset: int
    length: int
    revision: int
    flags: int
    section_type: uuid.UUID
    severity: int


@dataclass(frozen=True)
class CperRecord:
    revision: int
    section_count: int
    severity: int
    validation_bits: int
    length: int
    timestamp: int
    creator_id: uuid.UUID
    notification_type: uuid.UUID
    record_id: int
    flags: int
    sections: tuple[SectionDescriptor, ...]
    data: bytes

    def section_data(self, section: SectionDescriptor) -> bytes:
        return self.data[section.offset:section.offset + section.length]


class CperRecordError(ValueError):
    pass


def parse_record(data: bytes) -> CperRecord:
    if len(data) < RECORD_HEADER_SIZE:
        raise CperRecordError(f"{len(data)} bytes, shorter than a CPER record header")
    (sig, rev, sig_end, count, sev, valid, length, ts, _platform, _partition, creator, notify, rid, flags,
     _persist, _reserved) = struct.unpack_from(RECORD_HEADER_FORMAT, data)
    if sig != RECORD_SIGNATURE or sig_end != RECORD_SIGNATURE_END:
        raise CperRecordError("no CPER signature")
    if length > len(data):
        raise CperRecordError(f"record length {length} beyond its {len(data)} bytes")
    sections = []
    for i in range(count):
        at = RECORD_HEADER_SIZE + i * SECTION_DESCRIPTOR_SIZE
        if at + SECTION_DESCRIPTOR_SIZE > length:
            raise CperRecordError(f"section descriptor {i} beyond the record")
        off, slen, srev, _sval, _res, sflags, stype, _fru, ssev, _text = struct.unpack_from(
            SECTION_DESCRIPTOR_FORMAT, data, at)
        if off + slen > length:
            raise CperRecordError(f"section {i} ({off}+{slen}) beyond the record")
        sections.append(SectionDescriptor(off, slen, srev, sflags, uuid.UUID(bytes_le=stype), ssev))
    return CperRecord(rev, count, sev, valid, length, ts, uuid.UUID(bytes_le=creator), uuid.UUID(bytes_le=notify),
                      rid, flags, tuple(sections), bytes(data[:length]))


def pstore_text(record: CperRecord, section: SectionDescriptor) -> str | None:
    """The dmesg text of a pstore section (inflated if compressed), None if not dmesg."""
    payload = record.section_data(section)
    if section.section_type == SECTION_TYPE_DMESG:
        raw = payload
    elif section.section_type == SECTION_TYPE_DMESG_Z:
        return inflate_dmesg(payload)
    else:
        return None
    return raw.decode("utf-8", "replace")


def inflate_dmesg(payload: bytes) -> str:
    """A compressed pstore dmesg (raw deflate, at most MAX_TEXT bytes once inflated) as text."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        raw = d.decompress(payload, MAX_TEXT)
    except zlib.error as e:
        return f"<compressed dmesg that does not inflate: {e}>"
    return raw.decode("utf-8", "replace")


def printable(line: str) -> str:
    """Guest text with control characters (terminal escapes) made visible."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in line)


def describe(record_id: int, data: bytes, text_lines: int | None = None) -> str:
    """A few lines about one stored record, for `armras erst FILE`."""
    try:
        rec = parse_record(data)
    except CperRecordError as e:
        return f"record {record_id:#018x}: {len(data)} bytes, not a CPER record ({e})"
    lines = [f"record {record_id:#018x}: {rec.length} bytes, severity {severity_label(rec.severity)}, "
             f"{rec.section_count} section(s)"]
    if rec.validation_bits & VALID_TIMESTAMP:
        lines.append(f"  timestamp: {rec.timestamp}")
    lines.append(f"  creator: {rec.creator_id} ({CREATOR_NAMES.get(rec.creator_id, 'unknown')})")
    lines.append(f"  notification type: {rec.notification_type} ({NOTIFY_NAMES.get(rec.notification_type, 'unknown')})")
    if rec.record_id != record_id:
        lines.append(f"  header record id: {rec.record_id:#x}")
    for i, sec in enumerate(rec.sections):
        lines.append(f"  section {i}: {sec.section_type} ({SECTION_NAMES.get(sec.section_type, 'unknown')}), "
                     f"{sec.length} bytes")
        text = pstore_text(rec, sec) if rec.creator_id == CREATOR_PSTORE else None
        if text is not None:
            body = text.rstrip("\n").split("\n")
            if text_lines is not None:
                body = body[-text_lines:]
            lines.extend(f"    | {printable(line)}" for line in body)
    return "\n".join(lines)


__all__ = [
    "CREATOR_PSTORE",
    "CperRecord",
    "CperRecordError",
    "NOTIFY_MCE",
    "SECTION_TYPE_DMESG",
    "SECTION_TYPE_DMESG_Z",
    "describe",
    "inflate_dmesg",
    "parse_record",
    "printable",
    "pstore_text",
]
