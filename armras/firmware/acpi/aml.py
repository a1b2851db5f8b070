"""A minimal AML encoder: just what the board's DSDT needs.

ACPI 6.4 20.2 (AML Grammar Definition). Modelled on QEMU's hw/acpi/aml-build.c:
every constructor returns the encoded bytes of one term, and containers (Scope,
Device, Method, If, Buffer) take their already-encoded children and wrap them with
an opcode and a PkgLength.
"""
from __future__ import annotations

import enum
import struct
import uuid
from collections.abc import Iterable, Sequence

# Opcodes (ACPI 6.4 20.2.5 - 20.2.6).
ZERO_OP = 0x00
ONE_OP = 0x01
NAME_OP = 0x08
BYTE_PREFIX = 0x0A
WORD_PREFIX = 0x0B
DWORD_PREFIX = 0x0C
STRING_PREFIX = 0x0D
QWORD_PREFIX = 0x0E
SCOPE_OP = 0x10
BUFFER_OP = 0x11
PACKAGE_OP = 0x12
METHOD_OP = 0x14
DUAL_NAME_PREFIX = 0x2E
MULTI_NAME_PREFIX = 0x2F
EXT_OP_PREFIX = 0x5B
ROOT_CHAR = 0x5C
PARENT_PREFIX_CHAR = 0x5E
LOCAL0_OP = 0x60
ARG0_OP = 0x68
STORE_OP = 0x70
AND_OP = 0x7B
OR_OP = 0x7D
NOTIFY_OP = 0x86
CREATE_DWORD_FIELD_OP = 0x8A
LNOT_OP = 0x92
LEQUAL_OP = 0x93
IF_OP = 0xA0
ELSE_OP = 0xA1
RETURN_OP = 0xA4
NULL_NAME = 0x00

# Extended opcodes (after EXT_OP_PREFIX).
EXT_OP_REGION = 0x80
EXT_FIELD = 0x81
EXT_DEVICE = 0x82

# Resource descriptors (ACPI 6.4 6.4.3).
RES_MEMORY32_FIXED = 0x86
RES_EXTENDED_IRQ = 0x89
RES_END_TAG = 0x79
RES_DWORD_ADDRESS = 0x87
RES_WORD_ADDRESS = 0x88
RES_QWORD_ADDRESS = 0x8A

NAME_SEG_LEN = 4
MAX_LOCAL = 7
MAX_METHOD_ARGS = 7
MAX_PACKAGE_ELEMENTS = 255
UUID_SIZE = 16

# Address space resource types and flags (ACPI 6.4 6.4.3.5.1 - 6.4.3.5.3).
ADDR_SPACE_MEMORY = 0
ADDR_SPACE_IO = 1
ADDR_SPACE_BUS_NUMBER = 2
ADDR_FLAG_CONSUMER = 1 << 0        # 0: produces (a bridge's window), 1: consumes
ADDR_FLAG_SUB_DECODE = 1 << 1
ADDR_FLAG_MIN_FIXED = 1 << 2
ADDR_FLAG_MAX_FIXED = 1 << 3
MEM_FLAG_READ_WRITE = 1 << 0       # type-specific: memory
MEM_NON_CACHEABLE = 0 << 1
IO_RANGE_ENTIRE = 3                # type-specific: I/O, ISA and non-ISA ranges


class RegionSpace(enum.IntEnum):
    SYSTEM_MEMORY = 0x00
    SYSTEM_IO = 0x01


class FieldAccess(enum.IntEnum):
    ANY = 0
    BYTE = 1
    WORD = 2
    DWORD = 3
    QWORD = 4
    BUFFER = 5


class FieldLock(enum.IntEnum):
    NO_LOCK = 0
    LOCK = 1


class FieldUpdate(enum.IntEnum):
    PRESERVE = 0
    WRITE_AS_ONES = 1
    WRITE_AS_ZEROS = 2


class Trigger(enum.IntEnum):
    LEVEL = 0
    EDGE = 1


class Polarity(enum.IntEnum):
    ACTIVE_HIGH = 0
    ACTIVE_LOW = 1


class Sharing(enum.IntEnum):
    EXCLUSIVE = 0
    SHARED = 1


class Usage(enum.IntEnum):
    PRODUCER = 0
    CONSUMER = 1


# ---------------------------------------------------------------- encodings


def pkg_length(length: int, include_self: bool = True) -> bytes:
    """Encode a PkgLength (ACPI 6.4 20.2.4) for `length` bytes of payload.

    With `include_self` the encoded value also counts the PkgLength bytes themselves
    (packages); without it the value is `length` as is (field unit bit lengths).
    Byte 0 holds the count of following bytes in bits 7:6; with one byte, bits 5:0
    hold the length, otherwise bits 3:0 hold its low nibble and each following byte
    the next 8 bits.
    """
    if length < 0:
        raise ValueError("negative PkgLength")
    if length + 1 < 1 << 6:
        nbytes = 1
    elif length + 2 < 1 << 12:
        nbytes = 2
    elif length + 3 < 1 << 20:
        nbytes = 3
    elif length + 4 < 1 << 28:
        nbytes = 4
    else:
        raise ValueError(f"PkgLength {length} too large")
    if include_self:
        length += nbytes
    if nbytes == 1:
        return bytes([length])
    out = bytearray([((nbytes - 1) << 6) | (length & 0x0F)])
    value = length >> 4
    for _ in range(nbytes - 1):
        out.append(value & 0xFF)
        value >>= 8
    return bytes(out)


def decode_pkg_length(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Inverse of `pkg_length`: returns (encoded value, number of PkgLength bytes)."""
    lead = data[offset]
    nbytes = (lead >> 6) + 1
    if nbytes == 1:
        return lead & 0x3F, 1
    value = lead & 0x0F
    for i in range(1, nbytes):
        value |= data[offset + i] << (4 + 8 * (i - 1))
    return value, nbytes


def _package(opcode: bytes, payload: bytes) -> bytes:
    return opcode + pkg_length(len(payload)) + payload


def name_seg(seg: str) -> bytes:
    """A 4-character NameSeg, padded with '_' (ACPI 6.4 20.2.2)."""
    if not 1 <= len(seg) <= NAME_SEG_LEN:
        raise ValueError(f"bad NameSeg {seg!r}")
    if not (seg[0].isupper() or seg[0] == "_") or not all(
            c.isupper() or c.isdigit() or c == "_" for c in seg):
        raise ValueError(f"bad NameSeg {seg!r}")
    return seg.ljust(NAME_SEG_LEN, "_").encode("ascii")


def name_string(path: str) -> bytes:
    """A NameString: optional '\\' or '^' prefixes, then dot-separated NameSegs."""
    prefix = bytearray()
    rest = path
    if rest.startswith("\\"):
        prefix.append(ROOT_CHAR)
        rest = rest[1:]
    else:
        while rest.startswith("^"):
            prefix.append(PARENT_PREFIX_CHAR)
            rest = rest[1:]
    segs = [s for s in rest.split(".")] if rest else []
    encoded = b"".join(name_seg(s) for s in segs)
    if not segs:
        return bytes(prefix) + bytes([NULL_NAME])
    if len(segs) == 1:
        return bytes(prefix) + encoded
    if len(segs) == 2:
        return bytes(prefix) + bytes([DUAL_NAME_PREFIX]) + encoded
    if len(segs) > 255:
        raise ValueError("too many NameSegs")
    return bytes(prefix) + bytes([MULTI_NAME_PREFIX, len(segs)]) + encoded


# ------------------------------------------------------------------ data


def integer(value: int) -> bytes:
    """The shortest integer encoding, as QEMU's aml_int (Zero/One/Byte/Word/DWord/QWord)."""
    if value < 0 or value > 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"integer {value} out of range")
    if value == 0:
        return bytes([ZERO_OP])
    if value == 1:
        return bytes([ONE_OP])
    if value <= 0xFF:
        return bytes([BYTE_PREFIX, value])
    if value <= 0xFFFF:
        return bytes([WORD_PREFIX]) + struct.pack("<H", value)
    if value <= 0xFFFF_FFFF:
        return bytes([DWORD_PREFIX]) + struct.pack("<I", value)
    return bytes([QWORD_PREFIX]) + struct.pack("<Q", value)


def string(value: str) -> bytes:
    raw = value.encode("ascii")
    if b"\x00" in raw:
        raise ValueError("NUL in AML string")
    return bytes([STRING_PREFIX]) + raw + b"\x00"


def buffer(data: bytes) -> bytes:
    """DefBuffer: BufferOp PkgLength BufferSize ByteList."""
    return _package(bytes([BUFFER_OP]), integer(len(data)) + data)


def local(index: int) -> bytes:
    if not 0 <= index <= MAX_LOCAL:
        raise ValueError(f"no Local{index}")
    return bytes([LOCAL0_OP + index])


def arg(index: int) -> bytes:
    if not 0 <= index < MAX_METHOD_ARGS:
        raise ValueError(f"no Arg{index}")
    return bytes([ARG0_OP + index])


def package(elements: Sequence[bytes]) -> bytes:
    """DefPackage: PackageOp PkgLength NumElements PackageElementList."""
    if len(elements) > MAX_PACKAGE_ELEMENTS:
        raise ValueError(f"{len(elements)} package elements (at most {MAX_PACKAGE_ELEMENTS})")
    return _package(bytes([PACKAGE_OP]), bytes([len(elements)]) + b"".join(elements))


def to_uuid(text: str) -> bytes:
    """ToUUID("..."): the 16-byte buffer iasl makes of a UUID string (mixed-endian, as UEFI GUIDs)."""
    return buffer(uuid.UUID(text).bytes_le)


def name_ref(path: str) -> bytes:
    """A reference to a named object (for operands, Notify targets, ...)."""
    return name_string(path)


# ------------------------------------------------------------ resources


def memory32_fixed(base: int, length: int, read_write: bool = True) -> bytes:
    """Memory32Fixed descriptor (ACPI 6.4 6.4.3.4), 12 bytes."""
    body = struct.pack("<BII", 1 if read_write else 0, base, length)
    return bytes([RES_MEMORY32_FIXED]) + struct.pack("<H", len(body)) + body


def interrupt(irqs: Sequence[int], usage: Usage = Usage.CONSUMER,
              trigger: Trigger = Trigger.LEVEL, polarity: Polarity = Polarity.ACTIVE_HIGH,
              sharing: Sharing = Sharing.EXCLUSIVE) -> bytes:
    """Extended Interrupt descriptor (ACPI 6.4 6.4.3.6), as QEMU's aml_interrupt."""
    if not 1 <= len(irqs) <= 255:
        raise ValueError("need 1..255 interrupts")
    flags = int(usage) | int(trigger) << 1 | int(polarity) << 2 | int(sharing) << 3
    body = bytes([flags, len(irqs)]) + b"".join(struct.pack("<I", i) for i in irqs)
    return bytes([RES_EXTENDED_IRQ]) + struct.pack("<H", len(body)) + body


def _address_space(opcode: int, width: int, space: int, general: int, specific: int,
                   values: Sequence[int]) -> bytes:
    body = bytes([space, general, specific]) + b"".join(v.to_bytes(width, "little") for v in values)
    return bytes([opcode]) + struct.pack("<H", len(body)) + body


def _window(minimum: int, length: int, limit: int) -> list[int]:
    """Granularity, Min, Max, Translation (0), Length of a fixed window."""
    if length <= 0 or minimum < 0 or minimum + length - 1 > limit:
        raise ValueError(f"bad window {minimum:#x}+{length:#x}")
    return [0, minimum, minimum + length - 1, 0, length]


def word_bus_number(first: int, count: int) -> bytes:
    """WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, ...), ACPI 6.4 6.4.3.5.3."""
    return _address_space(RES_WORD_ADDRESS, 2, ADDR_SPACE_BUS_NUMBER,
                          ADDR_FLAG_MIN_FIXED | ADDR_FLAG_MAX_FIXED, 0, _window(first, count, 0xFFFF))


def dword_memory(base: int, length: int) -> bytes:
    """DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite), 6.4.3.5.2."""
    return _address_space(RES_DWORD_ADDRESS, 4, ADDR_SPACE_MEMORY, ADDR_FLAG_MIN_FIXED | ADDR_FLAG_MAX_FIXED,
                          MEM_FLAG_READ_WRITE | MEM_NON_CACHEABLE, _window(base, length, 0xFFFF_FFFF))


def dword_io(port_base: int, length: int, translation: int) -> bytes:
    """DWordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange) with a translation
    offset: port `port_base` is at CPU physical address `port_base + translation` (6.4.3.5.2)."""
    values = _window(port_base, length, 0xFFFF_FFFF)
    values[3] = translation
    return _address_space(RES_DWORD_ADDRESS, 4, ADDR_SPACE_IO, ADDR_FLAG_MIN_FIXED | ADDR_FLAG_MAX_FIXED,
                          IO_RANGE_ENTIRE, values)


def end_tag() -> bytes:
    """End Tag with checksum 0 ("treated as if the checksum operation succeeded")."""
    return bytes([RES_END_TAG, 0x00])


def resource_template(*descriptors: bytes) -> bytes:
    return buffer(b"".join(descriptors) + end_tag())


# ------------------------------------------------------ named objects


def name(path: str, value: bytes) -> bytes:
    """DefName: Name(path, value)."""
    return bytes([NAME_OP]) + name_string(path) + value


def scope(path: str, children: Iterable[bytes]) -> bytes:
    return _package(bytes([SCOPE_OP]), name_string(path) + b"".join(children))


def device(path: str, children: Iterable[bytes]) -> bytes:
    return _package(bytes([EXT_OP_PREFIX, EXT_DEVICE]), name_string(path) + b"".join(children))


def method(path: str, argc: int, serialized: bool, body: Iterable[bytes],
           sync_level: int = 0) -> bytes:
    """DefMethod; MethodFlags = ArgCount | Serialized << 3 | SyncLevel << 4."""
    if not 0 <= argc <= MAX_METHOD_ARGS or not 0 <= sync_level <= 15:
        raise ValueError("bad method flags")
    flags = argc | (int(serialized) << 3) | (sync_level << 4)
    return _package(bytes([METHOD_OP]), name_string(path) + bytes([flags]) + b"".join(body))


def operation_region(path: str, space: RegionSpace, offset: int, length: int) -> bytes:
    return (bytes([EXT_OP_PREFIX, EXT_OP_REGION]) + name_string(path) + bytes([int(space)])
            + integer(offset) + integer(length))


def field(region: str, access: FieldAccess, lock: FieldLock, update: FieldUpdate,
          units: Sequence[tuple[str, int]]) -> bytes:
    """DefField with NamedFields (name, bit width); FieldFlags as ACPI 6.4 19.6.48."""
    flags = int(access) | int(lock) << 4 | int(update) << 5
    elements = b"".join(name_seg(n) + pkg_length(bits, include_self=False) for n, bits in units)
    return _package(bytes([EXT_OP_PREFIX, EXT_FIELD]), name_string(region) + bytes([flags]) + elements)


# ------------------------------------------------------------- statements


def store(source: bytes, target: bytes) -> bytes:
    return bytes([STORE_OP]) + source + target


def or_(left: bytes, right: bytes, target: bytes | None = None) -> bytes:
    return bytes([OR_OP]) + left + right + (target if target is not None else bytes([NULL_NAME]))


def lnot(operand: bytes) -> bytes:
    return bytes([LNOT_OP]) + operand


def create_dword_field(source: bytes, byte_index: bytes, field_name: str) -> bytes:
    """CreateDWordField(source, byte_index, name)."""
    return bytes([CREATE_DWORD_FIELD_OP]) + source + byte_index + name_string(field_name)


def return_(value: bytes) -> bytes:
    return bytes([RETURN_OP]) + value


def else_(body: Iterable[bytes]) -> bytes:
    """DefElse; must directly follow an If."""
    return _package(bytes([ELSE_OP]), b"".join(body))


def and_(left: bytes, right: bytes, target: bytes | None = None) -> bytes:
    return bytes([AND_OP]) + left + right + (target if target is not None else bytes([NULL_NAME]))


def lequal(left: bytes, right: bytes) -> bytes:
    return bytes([LEQUAL_OP]) + left + right


def if_(predicate: bytes, body: Iterable[bytes]) -> bytes:
    return _package(bytes([IF_OP]), predicate + b"".join(body))


def notify(target: bytes, value: bytes) -> bytes:
    return bytes([NOTIFY_OP]) + target + value
