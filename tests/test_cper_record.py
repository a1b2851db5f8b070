"""Whole CPER records as the ERST keeps them (armras.ras.cper_record), built here byte by byte.

UEFI 2.10 Table N-1 (Record Header, 128 bytes) and Table N-5 (Section Descriptor, 72 bytes),
as Linux's struct cper_record_header / cper_section_descriptor lay them out; the pstore GUIDs
are drivers/acpi/apei/erst.c's.
"""
from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from armras.ras.cper_record import (
    CperRecordError,
    describe,
    inflate_dmesg,
    parse_record,
    printable,
    pstore_text,
)

CREATOR_PSTORE = uuid.UUID("75a574e3-5052-4b29-8a8e-be2c6490b89d")
DMESG = uuid.UUID("c197e04e-d545-4a70-9c17-a5549419eb12")
DMESG_Z = uuid.UUID("4f118707-04dd-4055-b5dd-956d34ddfac6")
MCE = uuid.UUID("fe08ffbe-95e4-4be7-bc73-4096044a38fc")
NOTIFY_MCE = uuid.UUID("e8f56ffe-919c-4cc5-ba88-65abe14913bb")
OTHER = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
HEADER, DESCRIPTOR = 128, 72
VALID_TIMESTAMP = 1 << 1


def header(*, count: int, length: int, severity: int = 2, valid: int = VALID_TIMESTAMP, timestamp: int = 0,
           creator: uuid.UUID = CREATOR_PSTORE, notify: uuid.UUID = NOTIFY_MCE, record_id: int = 0x1234,
           flags: int = 0, revision: int = 0x0100, signature: bytes = b"CPER", signature_end: int = 0xFFFF_FFFF
           ) -> bytes:
    out = bytearray(HEADER)
    struct.pack_into("<4sHIHII", out, 0, signature, revision, signature_end, count, severity, valid)
    struct.pack_into("<IQ", out, 20, length, timestamp)
    out[64:80] = creator.bytes_le
    out[80:96] = notify.bytes_le
    struct.pack_into("<QI", out, 96, record_id, flags)
    return bytes(out)


def descriptor(offset: int, length: int, section_type: uuid.UUID, *, severity: int = 2, revision: int = 0x0100,
               flags: int = 0) -> bytes:
    out = bytearray(DESCRIPTOR)
    struct.pack_into("<IIHBBI", out, 0, offset, length, revision, 0, 0, flags)
    out[16:32] = section_type.bytes_le
    struct.pack_into("<I", out, 48, severity)
    return bytes(out)


def record(sections: list[tuple[uuid.UUID, bytes]], **fields: object) -> bytes:
    start = HEADER + DESCRIPTOR * len(sections)
    descs, body, at = b"", b"", start
    for stype, payload in sections:
        descs += descriptor(at, len(payload), stype, severity=3, revision=0x0300, flags=0x5)
        body += payload
        at += len(payload)
    return header(count=len(sections), length=at, **fields) + descs + body      # type: ignore[arg-type]


def deflate(text: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(text) + c.flush()


def test_parse_reads_every_header_and_descriptor_field() -> None:
    data = record([(DMESG, b"one\n"), (DMESG_Z, deflate(b"two\n"))], severity=1, timestamp=0x0102030405060708,
                  record_id=0xABCD_EF01_2345_6789, flags=0x4, revision=0x0203, valid=0x7)
    rec = parse_record(data + b"trailing bytes beyond the record")
    assert (rec.revision, rec.section_count, rec.severity, rec.validation_bits) == (0x0203, 2, 1, 0x7)
    assert (rec.length, rec.timestamp, rec.record_id, rec.flags) == (len(data), 0x0102030405060708,
                                                                     0xABCD_EF01_2345_6789, 0x4)
    assert (rec.creator_id, rec.notification_type) == (CREATOR_PSTORE, NOTIFY_MCE)
    assert rec.data == data                                 # cut at the record's length
    first, second = rec.sections
    assert (first.offset, first.length, first.revision, first.flags, first.section_type, first.severity) == (
        HEADER + 2 * DESCRIPTOR, 4, 0x0300, 0x5, DMESG, 3)
    assert (second.offset, second.section_type) == (HEADER + 2 * DESCRIPTOR + 4, DMESG_Z)
    assert rec.section_data(first) == b"one\n"
    assert pstore_text(rec, first) == "one\n" and pstore_text(rec, second) == "two\n"


@pytest.mark.parametrize("data, message", [
    (b"", "0 bytes, shorter than a CPER record header"),
    (b"CPER" + bytes(123), "127 bytes, shorter than a CPER record header"),
    (header(count=0, length=HEADER, signature=b"CPEX"), "no CPER signature"),
    (header(count=0, length=HEADER, signature_end=0xFFFF_FFFE), "no CPER signature"),
    (header(count=0, length=HEADER + 1), f"record length {HEADER + 1} beyond its {HEADER} bytes"),
    (header(count=1, length=HEADER + DESCRIPTOR - 1) + bytes(DESCRIPTOR), "section descriptor 0 beyond the record"),
    (header(count=1, length=HEADER + DESCRIPTOR + 4) + descriptor(HEADER + DESCRIPTOR, 5, DMESG) + b"abcd",
     f"section 0 ({HEADER + DESCRIPTOR}+5) beyond the record"),
    (header(count=2, length=HEADER + DESCRIPTOR + 4) + descriptor(HEADER + DESCRIPTOR, 4, DMESG) + b"abcd",
     "section descriptor 1 beyond the record"),
])
def test_malformed_records_are_refused_naming_why(data: bytes, message: str) -> None:
    with pytest.raises(CperRecordError) as info:
        parse_record(data)
    assert str(info.value) == message


def test_edges_that_fit_are_accepted() -> None:
    assert parse_record(header(count=0, length=HEADER)).sections == ()
    exact = header(count=1, length=HEADER + DESCRIPTOR) + descriptor(HEADER + DESCRIPTOR, 0, DMESG)
    (sec,) = parse_record(exact).sections
    assert (sec.offset, sec.length) == (HEADER + DESCRIPTOR, 0)
    full = header(count=1, length=HEADER + DESCRIPTOR + 3) + descriptor(HEADER + DESCRIPTOR, 3, DMESG) + b"abc"
    assert parse_record(full).section_data(parse_record(full).sections[0]) == b"abc"


def test_pstore_text_only_for_dmesg_sections() -> None:
    rec = parse_record(record([(MCE, b"mce"), (OTHER, b"x"), (DMESG, b"caf\xc3\xa9 \xff\n")]))
    assert pstore_text(rec, rec.sections[0]) is None and pstore_text(rec, rec.sections[1]) is None
    assert pstore_text(rec, rec.sections[2]) == "caf\u00e9 \ufffd\n"


def test_inflate_is_bounded_and_never_raises() -> None:
    big = b"A" * (3 << 20)
    text = inflate_dmesg(deflate(big))
    assert len(text) == 1 << 20 and set(text) == {"A"}      # a zip bomb stops at 1 MiB
    assert inflate_dmesg(deflate(b"\xe2\x82\xac\xfe")) == "\u20ac\ufffd"
    bad = inflate_dmesg(b"\xff\xff\xff")
    assert bad.startswith("<compressed dmesg that does not inflate: Error -3 while decompressing data")
    assert bad.endswith(">")


def test_printable_shows_control_characters() -> None:
    assert printable("plain\ttab é") == "plain\ttab é"
    assert printable("\x1b[31mred\x00\x7f\n") == "\\x1b[31mred\\x00\\x7f\\x0a"


def test_describe_a_pstore_record() -> None:
    z = deflate(b"z1\nz2 X\n")
    data = record([(DMESG, b"first\nsecond line\n\x1b[0mthird \n"), (DMESG_Z, z), (MCE, b"m")],
                  severity=1, timestamp=1700000000, record_id=0x10)
    assert describe(0x10, data) == "\n".join([
        f"record 0x0000000000000010: {len(data)} bytes, severity fatal, 3 section(s)",
        "  timestamp: 1700000000",
        f"  creator: {CREATOR_PSTORE} (Linux pstore)",
        f"  notification type: {NOTIFY_MCE} (MCE)",
        f"  section 0: {DMESG} (pstore dmesg), 29 bytes",
        "    | first",
        "    | second line",
        "    | \\x1b[0mthird ",                   # only the final newline is cut
        f"  section 1: {DMESG_Z} (pstore dmesg (deflate)), {len(z)} bytes",
        "    | z1",
        "    | z2 X",
        f"  section 2: {MCE} (pstore MCE), 1 bytes",
    ])
    # The last lines only, and a header id that differs from the store's is named.
    assert describe(0x11, data, text_lines=1).splitlines()[4:8] == [
        "  header record id: 0x10",
        f"  section 0: {DMESG} (pstore dmesg), 29 bytes",
        "    | \\x1b[0mthird ",
        f"  section 1: {DMESG_Z} (pstore dmesg (deflate)), {len(z)} bytes",
    ]


def test_describe_a_foreign_record_and_garbage() -> None:
    data = record([(DMESG, b"not pstore's\n"), (OTHER, b"?")], creator=OTHER, notify=OTHER, valid=0, timestamp=99,
                  severity=2)
    assert describe(0x5, data) == "\n".join([
        f"record 0x0000000000000005: {len(data)} bytes, severity corrected, 2 section(s)",
        f"  creator: {OTHER} (unknown)",
        f"  notification type: {OTHER} (unknown)",
        "  header record id: 0x1234",
        f"  section 0: {DMESG} (pstore dmesg), 13 bytes",
        f"  section 1: {OTHER} (unknown), 1 bytes",
    ])
    assert describe(0xFFFF_FFFF_FFFF_FFFE, b"junk") == (
        "record 0xfffffffffffffffe: 4 bytes, not a CPER record (4 bytes, shorter than a CPER record header)")
