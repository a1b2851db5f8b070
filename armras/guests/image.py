"""Parse and validate an arm64 Linux Image (Documentation/arch/arm64/booting.rst).

The 64-byte header, all fields little endian::

    0x00 u32 code0          executable code ("MZ" + an add when it is also a PE image)
    0x04 u32 code1          executable code
    0x08 u64 text_offset    image load offset from a 2 MiB aligned base
    0x10 u64 image_size     effective image size (including bss), 0 on kernels < 3.17
    0x18 u64 flags          bit 0 big endian, bits 1-2 page size, bit 3 physical placement
    0x20 u64 res2, res3, res4
    0x38 u32 magic          "ARM\\x64"
    0x3C u32 res5           offset of the PE header ("PE\\0\\0"), the MZ header's e_lfanew

A kernel built with CONFIG_EFI is also a PE/COFF executable: "MZ" at 0,
"PE\\0\\0" at res5, machine 0xAA64, a PE32+ optional header and a section table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from armras.errors import ImageError

ARM64_MAGIC = b"ARM\x64"
HEADER_SIZE = 64
LEGACY_TEXT_OFFSET = 0x80000  # text_offset to assume when image_size == 0 (booting.rst)

FLAG_BE = 1 << 0
FLAG_PAGE_SIZE_SHIFT = 1
FLAG_PAGE_SIZE_MASK = 0b11 << FLAG_PAGE_SIZE_SHIFT
FLAG_PHYS_PLACEMENT = 1 << 3  # 1: may be anywhere in physical memory; 0: close to the start of DRAM

PAGE_SIZES = {0: 0, 1: 4096, 2: 16384, 3: 65536}  # 0: unspecified

PE_SIGNATURE = b"PE\x00\x00"
PE_MACHINE_ARM64 = 0xAA64
PE32PLUS_MAGIC = 0x20B
COFF_HEADER_SIZE = 20
PE_SECTION_SIZE = 40
PE_OPT_MIN_SIZE = 64  # through SizeOfImage/SizeOfHeaders, all this parser reads

_PE_MACHINES = {
    0x014C: "i386",
    0x8664: "x86-64",
    0x01C0: "ARM",
    0x01C2: "ARM Thumb",
    0x01C4: "ARMv7 Thumb-2",
    0x5064: "RISC-V 64",
    0x6264: "LoongArch 64",
}

_COMPRESSED_MAGICS: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "zcat"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"),
    (b"\xfd7zXZ\x00", "xz", "xzcat"),
    (b"BZh", "bzip2", "bzcat"),
    (b"\x02\x21\x4c\x18", "lz4 (legacy)", "lz4cat"),
    (b"\x89LZO", "lzo", "lzop -dc"),
)


@dataclass(frozen=True)
class PeSection:
    name: str
    virtual_size: int
    virtual_address: int
    raw_size: int
    raw_offset: int
    characteristics: int


@dataclass
class Arm64Image:
    """A validated arm64 Image; ``data`` is the whole file."""

    data: bytes
    text_offset: int
    image_size: int
    flags: int
    page_size: int  # bytes; 0 when the header leaves it unspecified
    pe_entry: int | None = None  # AddressOfEntryPoint (RVA of the EFI stub) or None without a PE header
    pe_size_of_image: int | None = None
    sections: list[PeSection] = field(default_factory=list)
    pe_offset: int | None = None
    section_alignment: int | None = None
    file_alignment: int | None = None
    code0: int = 0
    code1: int = 0
    path: Path | None = None

    @property
    def big_endian(self) -> bool:
        return bool(self.flags & FLAG_BE)

    @property
    def phys_placement_anywhere(self) -> bool:
        """Whether the 2 MiB aligned base may be anywhere in RAM (flags bit 3)."""
        return bool(self.flags & FLAG_PHYS_PLACEMENT)

    @property
    def is_pe(self) -> bool:
        return self.pe_offset is not None

    @property
    def load_size(self) -> int:
        """Bytes to reserve from the load address: image_size, or the file size on legacy kernels."""
        return max(self.image_size, len(self.data))

    def section(self, name: str) -> PeSection | None:
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None


def _not_an_image_reason(data: bytes) -> str | None:
    """Say what the file is when it is clearly some other format."""
    if data[:4] == b"\x7fELF":
        return "is an ELF file (vmlinux?), not an arm64 Image: use the ELF loader for it"
    for magic, kind, tool in _COMPRESSED_MAGICS:
        if data.startswith(magic):
            return (f"is {kind}-compressed: decompress it first (e.g. {tool} vmlinuz > Image); "
                    "armras boots the raw arm64 Image")
    if data[:2] == b"MZ" and data[4:8] == b"zimg":
        comp = data[24:32].split(b"\x00", 1)[0].decode("ascii", "replace") or "unknown"
        return (f"is an EFI zboot image ({comp}-compressed payload), not a raw arm64 Image: "
                "extract the payload and decompress it first")
    return None


def _parse_pe(data: bytes, pe_off: int, where: str) -> tuple[int, int, int, int, list[PeSection]]:
    """(entry, size_of_image, section_alignment, file_alignment, sections) of the PE header at pe_off."""
    if pe_off < HEADER_SIZE or pe_off % 4:
        raise ImageError(f"{where}: bad PE header offset {pe_off:#x} at 0x3C")
    if len(data) < pe_off + 4 + COFF_HEADER_SIZE:
        raise ImageError(f"{where}: truncated PE header (file is {len(data)} bytes, PE header at {pe_off:#x})")
    if data[pe_off:pe_off + 4] != PE_SIGNATURE:
        raise ImageError(f"{where}: no 'PE\\0\\0' signature at {pe_off:#x} although the file starts with 'MZ'")
    coff = pe_off + 4
    machine, nsections, _ts, _symptr, _nsyms, opt_size, _chars = struct.unpack_from("<HHIIIHH", data, coff)
    if machine != PE_MACHINE_ARM64:
        name = _PE_MACHINES.get(machine, "unknown")
        raise ImageError(f"{where}: PE machine is {machine:#06x} ({name}), not arm64 (0xaa64)")
    opt = coff + COFF_HEADER_SIZE
    if opt_size < PE_OPT_MIN_SIZE:
        raise ImageError(f"{where}: PE optional header too small ({opt_size} bytes)")
    if len(data) < opt + opt_size:
        raise ImageError(f"{where}: truncated PE optional header (needs {opt + opt_size} bytes, file has {len(data)})")
    (opt_magic,) = struct.unpack_from("<H", data, opt)
    if opt_magic != PE32PLUS_MAGIC:
        raise ImageError(f"{where}: PE optional header magic {opt_magic:#x}, expected PE32+ (0x20b)")
    (entry,) = struct.unpack_from("<I", data, opt + 16)
    sect_align, file_align = struct.unpack_from("<II", data, opt + 32)
    (size_of_image,) = struct.unpack_from("<I", data, opt + 56)
    table = opt + opt_size
    if len(data) < table + nsections * PE_SECTION_SIZE:
        raise ImageError(f"{where}: truncated PE section table ({nsections} sections at {table:#x})")
    sections: list[PeSection] = []
    for i in range(nsections):
        off = table + i * PE_SECTION_SIZE
        raw_name = data[off:off + 8].split(b"\x00", 1)[0]
        vsize, vaddr, rsize, roff = struct.unpack_from("<IIII", data, off + 8)
        (chars,) = struct.unpack_from("<I", data, off + 36)
        sections.append(PeSection(raw_name.decode("ascii", "replace"), vsize, vaddr, rsize, roff, chars))
    if size_of_image and entry >= size_of_image:
        raise ImageError(f"{where}: PE entry point {entry:#x} outside SizeOfImage {size_of_image:#x}")
    # The sections' file data is the kernel's text and data: a file cut short (an interrupted
    # download or copy) would otherwise boot into zeros.
    for sec in sections:
        end = sec.raw_offset + sec.raw_size
        if sec.raw_size and end > len(data):
            raise ImageError(f"{where}: truncated Image: section {sec.name} needs {end} bytes of file "
                             f"(to {end:#x}), the file has {len(data)}")
    return entry, size_of_image, sect_align, file_align, sections


def parse_arm64_image(data: bytes, where: str = "<image>") -> Arm64Image:
    """Validate ``data`` as an arm64 Image; ``where`` names it in errors."""
    other = _not_an_image_reason(data)
    if other:
        raise ImageError(f"{where} {other}")
    if len(data) < HEADER_SIZE:
        raise ImageError(f"{where}: too short for an arm64 Image header ({len(data)} bytes, need {HEADER_SIZE})")
    code0, code1, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", data, 0)
    magic = data[0x38:0x3C]
    (pe_off,) = struct.unpack_from("<I", data, 0x3C)
    if magic != ARM64_MAGIC:
        raise ImageError(f"{where}: bad arm64 Image magic {magic!r} at 0x38 (expected {ARM64_MAGIC!r})")
    if flags & FLAG_BE:
        raise ImageError(f"{where}: big-endian kernel (flags bit 0); armras runs little-endian guests only")
    if image_size == 0:
        # Kernels before 3.17: text_offset is unreliable, assume the historical 0x80000.
        text_offset = LEGACY_TEXT_OFFSET
    elif image_size < HEADER_SIZE:
        raise ImageError(f"{where}: implausible image_size {image_size:#x}")
    if text_offset % 4096:
        raise ImageError(f"{where}: text_offset {text_offset:#x} is not page aligned")
    page_size = PAGE_SIZES[(flags & FLAG_PAGE_SIZE_MASK) >> FLAG_PAGE_SIZE_SHIFT]

    img = Arm64Image(data=data, text_offset=text_offset, image_size=image_size, flags=flags,
                     page_size=page_size, code0=code0, code1=code1)
    if data[:2] == b"MZ":
        entry, size_of_image, sect_align, file_align, sections = _parse_pe(data, pe_off, where)
        img.pe_offset = pe_off
        img.pe_entry = entry
        img.pe_size_of_image = size_of_image
        img.section_alignment = sect_align
        img.file_alignment = file_align
        img.sections = sections
    return img


def load_arm64_image(path: Path | str) -> Arm64Image:
    """Read and validate an arm64 Image file; raises ImageError with one line on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such kernel Image file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not a kernel Image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read kernel Image: {exc.strerror}") from None
    img = parse_arm64_image(data, str(path))
    img.path = path
    return img
