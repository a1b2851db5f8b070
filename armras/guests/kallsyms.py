"""Symbolize kernel PCs from the kallsyms tables inside an arm64 Linux Image.

Debian's kernel packages ship a stub System.map, but every kernel built with
CONFIG_KALLSYMS carries its own compressed symbol table in .rodata, emitted by
scripts/kallsyms.c. This module finds and decodes it straight from the Image
bytes (the Image is a flat copy of vmlinux from ``_text``, so a file offset is
``VA - _text``).

The tables (every label ``.balign 8`` on 64-bit; all little endian)::

    kallsyms_offsets        u32[num_syms]  address - relative_base (sorted by address)
    kallsyms_relative_base  u64            address of the first symbol
    kallsyms_num_syms       u32
    kallsyms_names          per symbol: length (1 byte, or 2 as ULEB128 when >= 0x80,
                            6.1+), then that many token_table indexes; the first expanded
                            character is the symbol type
    kallsyms_markers        u32[ceil(num_syms / 256)]  names offset of every 256th symbol
    kallsyms_seqs_of_names  3-byte big-endian index per symbol, sorted by name (6.2+;
                            u32 in early 6.2 patches)
    kallsyms_token_table    256 NUL-terminated strings
    kallsyms_token_index    u16[256]  offsets into token_table

Their order depends on the kernel:

* up to 6.3 (and Debian's 6.1.y, which has seqs_of_names backported): offsets,
  relative_base, num_syms, names, markers, [seqs_of_names,] token_table, token_index;
* 6.4+ (commit "kallsyms: change the output order to fill alignment gaps", e.g.
  6.12): num_syms, names, markers, token_table, token_index, offsets,
  relative_base, seqs_of_names.

Rather than trusting a version number, the decoder anchors on the token table (found
as vmlinux-to-elf does: its single-character tokens "0".."9" are consecutive
NUL-terminated strings), validates token_index against it, finds markers and
names+num_syms before it, then tries both positions of offsets/relative_base.

Addresses (kernel/kallsyms.c ``kallsyms_sym_address``; arm64 never uses
CONFIG_KALLSYMS_ABSOLUTE_PERCPU): ``relative_base + (u32)offset``. A relocatable
arm64 kernel is linked with ``--no-apply-dynamic-relocs``, so the stored
``relative_base`` quad reads 0 in the Image; its value is the addend of the
R_AARCH64_RELATIVE entry in ``.rela.dyn`` whose r_offset is its address, which also
gives the link address of ``_text`` (r_offset - file offset).
"""
from __future__ import annotations

import logging
import re
import struct
import time
from dataclasses import dataclass

from armras.guests.elf import Symbolizer

log = logging.getLogger(__name__)

ALIGN = 8                          # ALGN = .balign 8 on 64-bit kernels
TOKENS = 256
TOKEN_INDEX_SIZE = TOKENS * 2      # u16[256]
MARKER_STRIDE = 256                # one marker per 256 symbols
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
RELA = struct.Struct("<QQq")       # Elf64_Rela: r_offset, r_info, r_addend
R_AARCH64_RELATIVE = 1027
DIGIT_TOKENS = b"".join(bytes((c, 0)) for c in b"0123456789")
FIRST_DIGIT = ord("0")
MAX_TOKEN_LEN = 1024               # a token expands to at most a symbol name
MAX_NAME_BYTES = 512               # KSYM_NAME_LEN (6.1+; 128 before): a name's compressed length
MIN_ENTRY_BYTES = 2                # length byte + at least one token
MAX_ENTRY_BYTES = 2 + MAX_NAME_BYTES
MAX_SYMBOLS = 1 << 22
MAX_TABLE_CANDIDATES = 64
MAX_ZERO_WORDS = 1 << 16           # markers[0] candidates examined before giving up
ZERO_WORD = bytes(4)
ZERO_SKIP_CHUNK = 4096
NEAR_TOKEN_TABLE = 2048            # only here can markers be a lone 0 (fewer than 257 symbols)
SEQ_SIZES = (0, 3, 4)              # bytes per kallsyms_seqs_of_names entry (0: absent)
KERNEL_VA_MIN = 0xFFFF_0000_0000_0000
RELOC_ALIGN = 0x200000             # the link address of _text (KIMAGE_VADDR) is 2 MiB aligned
TEXT_START_MAX = 0x200000          # .text (the lowest kallsyms symbol) starts this close to _text
FUNCTION_TYPES = frozenset("tTwW")


class KallsymsError(Exception):
    """The Image's kallsyms tables are missing or inconsistent (the reason is the message)."""


def _align(x: int) -> int:
    return (x + ALIGN - 1) & ~(ALIGN - 1)


@dataclass(frozen=True)
class KallsymsLayout:
    """File offsets of the tables found in one Image, and the addresses they resolve to."""

    order: str                     # "offsets-first" (<= 6.3) or "names-first" (6.4+)
    num_syms: int                  # count of symbols
    num_syms_at: int
    names: int
    markers: int
    seqs_of_names: int | None
    seq_size: int
    token_table: int
    token_index: int
    offsets: int
    relative_base_at: int
    relative_base: int             # value (address of the first symbol)
    text_va: int | None            # link address of _text (None: not derivable)


@dataclass(frozen=True)
class KallsymsTable:
    layout: KallsymsLayout
    addresses: list[int]
    types: str
    names: list[str]

    def functions(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of the text symbols (types t/T/w/W), sorted by address.

        The size runs to the next higher symbol of any type, so a PC past the last
        function (data, or beyond _etext) is not blamed on it.
        """
        out: list[tuple[int, int, str]] = []
        following = None           # the next higher address (addresses are sorted)
        for i in range(len(self.addresses) - 1, -1, -1):
            addr = self.addresses[i]
            if self.types[i] in FUNCTION_TYPES:
                out.append((addr, following - addr if following is not None else 0, self.names[i]))
            if i and self.addresses[i - 1] != addr:
                following = addr
        out.reverse()
        return out


@dataclass(frozen=True)
class _Tokens:
    table: int
    index: int
    strings: list[bytes]


def _u32s(data: bytes, at: int, count: int) -> tuple[int, ...]:
    if at < 0 or count < 0 or at + 4 * count > len(data):
        raise KallsymsError(f"u32[{count}] at {at:#x} runs past the end of the Image")
    return struct.unpack_from(f"<{count}I", data, at)


def _find_tokens(data: bytes) -> _Tokens:
    """kallsyms_token_table + kallsyms_token_index: anchor on the "0".."9" tokens."""
    pos, seen = -1, 0
    while seen < MAX_TABLE_CANDIDATES:
        pos = data.find(DIGIT_TOKENS, pos + 1)
        if pos < 0:
            break
        seen += 1
        tokens = _tokens_at(data, pos)
        if tokens is not None:
            return tokens
    raise KallsymsError(f"no kallsyms_token_table ({seen} candidate '0'..'9' token runs, none validated)")


def _tokens_at(data: bytes, digits: int) -> _Tokens | None:
    # Walk forward over tokens 0x30..0xff to the end of the table.
    end = digits
    for _ in range(FIRST_DIGIT, TOKENS):
        nul = data.find(b"\0", end, end + MAX_TOKEN_LEN)
        if nul < 0:
            return None
        end = nul + 1
    for index in range(end, min(end + ALIGN, len(data) - TOKEN_INDEX_SIZE + 1)):
        if index % ALIGN:
            continue
        offs = struct.unpack_from(f"<{TOKENS}H", data, index)
        table = digits - offs[FIRST_DIGIT]
        if offs[0] != 0 or table < 0 or table + offs[-1] >= end:
            continue
        strings = []
        for i, off in enumerate(offs):
            nxt = offs[i + 1] if i + 1 < TOKENS else end - table
            if nxt <= off or data[table + nxt - 1] != 0:
                break
            s = data[table + off:table + nxt - 1]
            if b"\0" in s:
                break
            strings.append(s)
        else:
            if table + offs[-1] + len(strings[-1]) + 1 == end:
                return _Tokens(table, index, strings)
    return None


@dataclass(frozen=True)
class _Names:
    num_syms: int
    num_syms_at: int
    names: int
    markers: int
    seqs: int | None
    seq_size: int


def _walk_names(data: bytes, start: int, count: int, markers: tuple[int, ...]) -> int | None:
    """End offset of `count` names from `start` if every 256th agrees with markers."""
    pos, limit = start, len(data)
    for i in range(count):
        if not i & 0xFF and pos - start != markers[i >> 8]:
            return None
        if pos >= limit:
            return None
        n = data[pos]
        if n & 0x80:
            if pos + 1 >= limit:
                return None
            n = (n & 0x7F) | (data[pos + 1] << 7)
            pos += 2
        else:
            pos += 1
        if n == 0:
            return None
        pos += n
    return pos if pos <= limit else None


def _markers_at(data: bytes, at: int, count: int) -> tuple[int, ...] | None:
    """kallsyms_markers[count] at `at` if plausible: 0, then rising by 2..MAX_ENTRY_BYTES per symbol."""
    if at < 0 or at + 4 * count > len(data):
        return None
    lo, hi = MARKER_STRIDE * MIN_ENTRY_BYTES, MARKER_STRIDE * MAX_ENTRY_BYTES
    prev = -lo
    for i in range(count):          # early exit: most candidates fail within a word or two
        v = U32.unpack_from(data, at + 4 * i)[0]
        if not lo <= v - prev <= hi and not (i == 0 and v == 0):
            return None
        prev = v
    return _u32s(data, at, count)


def _zeros_start(data: bytes, lo: int, end: int) -> int:
    """Start of the run of zero bytes ending at `end` (not before `lo`), in bounded chunks."""
    while end > lo:
        start = max(lo, end - ZERO_SKIP_CHUNK)
        kept = len(data[start:end].rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return lo


def _find_names(data: bytes, token_table: int) -> _Names:
    """num_syms, names and markers end just before token_table (after seqs_of_names, if
    that sits there). markers[0] == 0 is a zero u32 at an 8-aligned offset: try each,
    nearest first, against every seqs_of_names size."""
    hi, seen = token_table, 0
    lowest = max(0, token_table - (4 + 4 * 256 + max(SEQ_SIZES) * 256) * (MAX_SYMBOLS // 256))
    while seen < MAX_ZERO_WORDS:
        x = data.rfind(b"\0\0\0\0", lowest, hi)
        if x < 0:
            break
        hi = x + 3
        if data[x + 4:x + 8] == ZERO_WORD and token_table - x > NEAR_TOKEN_TABLE:
            # inside zeros, markers[1] would be 0 too: skip the run
            hi = _zeros_start(data, lowest, x) + len(ZERO_WORD) - 1
            continue
        if x % ALIGN or x == token_table:
            continue
        seen += 1
        for seq_size in SEQ_SIZES:
            found = _names_with_markers_at(data, x, token_table, seq_size)
            if found is not None:
                return found
    raise KallsymsError(f"no kallsyms_markers/kallsyms_names before the token table at {token_table:#x} "
                        f"({seen} candidate positions)")


def _names_with_markers_at(data: bytes, x: int, token_table: int, seq_size: int) -> _Names | None:
    gap = token_table - x
    per_marker = 4 + seq_size * MARKER_STRIDE
    m_lo = max(1, (gap - 2 * ALIGN) // per_marker)
    m_hi = (gap + seq_size * MARKER_STRIDE) // per_marker + 1
    if seq_size == 0:
        m_lo, m_hi = max(1, (gap - ALIGN) // 4), gap // 4
    for m in range(m_lo, min(m_hi, MAX_SYMBOLS // MARKER_STRIDE) + 1):
        markers_end = _align(x + 4 * m)
        if markers_end > token_table:
            break
        if seq_size == 0:
            if markers_end != token_table:
                continue
            counts = range(MARKER_STRIDE * (m - 1) + 1, MARKER_STRIDE * m + 1)
        else:
            rem = token_table - markers_end
            # align8(markers_end + seq_size * n) == token_table
            counts = range(max(MARKER_STRIDE * (m - 1) + 1, -(-(rem - ALIGN + 1) // seq_size)),
                           min(MARKER_STRIDE * m, rem // seq_size) + 1)
        if not counts:
            continue
        markers = _markers_at(data, x, m)
        if markers is None:
            continue
        tail_min = markers[-1] + MIN_ENTRY_BYTES
        tail_max = markers[-1] + MAX_ENTRY_BYTES * MARKER_STRIDE
        # names end in (x - 8, x]; num_syms sits 8 bytes before names
        q_hi = x - tail_min - ALIGN
        q_lo = max(0, x - ALIGN - tail_max - ALIGN)
        wanted = {U32.pack(n) + b"\0\0\0\0": n for n in counts}
        hi = q_hi + ALIGN
        while (z := data.rfind(b"\0\0\0\0", q_lo + 4, hi)) >= 0:   # the padding after num_syms
            hi = z + 3
            q = z - 4
            if data[q:z] == ZERO_WORD:      # num_syms is not 0: skip the run of zeros
                hi = _zeros_start(data, q_lo, z) + 2 * len(ZERO_WORD) - 1
                continue
            n = wanted.get(data[q:q + 8]) if q % ALIGN == 0 else None
            if n is None:
                continue
            end = _walk_names(data, q + ALIGN, n, markers)
            if end is not None and _align(end) == x:
                return _Names(n, q, q + ALIGN, x, markers_end if seq_size else None, seq_size)
    return None


def _offsets_ok(data: bytes, at: int, count: int) -> tuple[int, ...] | None:
    if at < 0 or at + 4 * count > len(data):
        return None
    offs = struct.unpack_from(f"<{count}I", data, at)
    if offs[0] != 0 or any(a > b for a, b in zip(offs, offs[1:])):
        return None
    return offs


def _relocated_quad(data: bytes, at: int) -> tuple[int, int | None]:
    """The value of the u64 at file offset `at` and the link address of _text.

    Stored non-zero: a non-relocatable kernel, the value is final (_text unknown).
    Stored zero: look for its R_AARCH64_RELATIVE in .rela.dyn (r_offset = _text + at).
    Only the low 16 bits of r_offset are known up front, so several entries may fit; the
    right one puts `_text` 2 MiB aligned and the value (kallsyms' lowest symbol, the
    start of .text) within the Image's first 2 MiB (its head is 64 KiB).
    """
    stored = U64.unpack_from(data, at)[0]
    if stored:
        return stored, None
    # r_offset = _text + at, and _text is 2 MiB aligned: match its low 16 bits
    pattern = re.compile(re.escape(U16.pack(at & 0xFFFF)) + b".{6}" + re.escape(U64.pack(R_AARCH64_RELATIVE)),
                         re.DOTALL)
    found: set[tuple[int, int]] = set()
    for m in pattern.finditer(data):
        e = m.start()
        if e % ALIGN:
            continue
        r_offset, _, addend = RELA.unpack_from(data, e)
        text = r_offset - at
        value = addend & 0xFFFF_FFFF_FFFF_FFFF
        if text % RELOC_ALIGN or text < KERNEL_VA_MIN or not 0 <= value - text < TEXT_START_MAX:
            continue
        neighbours = [e + d for d in (-RELA.size, RELA.size) if 0 <= e + d <= len(data) - RELA.size]
        if any(RELA.unpack_from(data, n)[1] == R_AARCH64_RELATIVE for n in neighbours):
            found.add((value, text))
    if len(found) != 1:
        raise KallsymsError(f"kallsyms_relative_base at {at:#x} reads 0 and "
                            f"{'no' if not found else 'more than one'} R_AARCH64_RELATIVE entry resolves it")
    return found.pop()


def _decode(data: bytes) -> KallsymsTable:
    tokens = _find_tokens(data)
    names = _find_names(data, tokens.table)
    n = names.num_syms
    # 6.4+: offsets after token_index; <= 6.3: offsets, relative_base just before num_syms.
    candidates = []
    at = _align(tokens.index + TOKEN_INDEX_SIZE)
    candidates.append(("names-first", at, _align(at + 4 * n)))
    rb = names.num_syms_at - ALIGN
    candidates.append(("offsets-first", rb - _align(4 * n), rb))
    for order, offsets_at, rb_at in candidates:
        offs = _offsets_ok(data, offsets_at, n)
        if offs is None or rb_at + 8 > len(data):
            continue
        base, text = _relocated_quad(data, rb_at)
        if base < KERNEL_VA_MIN:
            raise KallsymsError(f"kallsyms_relative_base {base:#x} is not a kernel address")
        seqs = names.seqs
        if order == "names-first":
            seqs, seq_size = _align(rb_at + 8), 3
        else:
            seq_size = names.seq_size
        layout = KallsymsLayout(order, n, names.num_syms_at, names.names, names.markers, seqs, seq_size,
                                tokens.table, tokens.index, offsets_at, rb_at, base, text)
        return _expand(data, layout, tokens.strings, offs)
    raise KallsymsError(f"no sorted kallsyms_offsets[{n}] after token_index or before num_syms")


def _expand(data: bytes, layout: KallsymsLayout, strings: list[bytes], offs: tuple[int, ...]) -> KallsymsTable:
    tok = strings
    names: list[str] = []
    types: list[str] = []
    pos = layout.names
    for _ in range(layout.num_syms):
        n = data[pos]
        if n & 0x80:
            n = (n & 0x7F) | (data[pos + 1] << 7)
            pos += 2
        else:
            pos += 1
        s = b"".join([tok[b] for b in data[pos:pos + n]]).decode("latin-1")
        pos += n
        types.append(s[:1])
        names.append(s[1:])
    base = layout.relative_base
    addresses = [base + o for o in offs]
    table = KallsymsTable(layout, addresses, "".join(types), names)
    if layout.text_va is not None:
        for name, addr in zip(names, addresses):
            if name == "_text":
                if addr != layout.text_va:
                    raise KallsymsError(f"_text is {addr:#x} in kallsyms but .rela.dyn says {layout.text_va:#x}")
                break
    return table


def decode_kallsyms(image: bytes) -> KallsymsTable:
    """Decode the kallsyms tables of an arm64 Image; KallsymsError says why it can't."""
    try:
        return _decode(image)
    except (struct.error, IndexError, ValueError, OverflowError, UnicodeError) as e:
        raise KallsymsError(f"malformed kallsyms tables: {e}") from None


def kallsyms_symbolizer(image: bytes) -> Symbolizer | None:
    """A Symbolizer of the Image's function symbols, or None (logged) if it has no usable kallsyms."""
    start = time.perf_counter()
    try:
        table = decode_kallsyms(image)
    except KallsymsError as e:
        log.warning("kernel PCs will not be symbolized: %s", e)
        return None
    lay = table.layout
    log.info("kallsyms: %d symbols (%s layout, _text %s, relative_base %#x) decoded in %.0f ms",
             lay.num_syms, lay.order, f"{lay.text_va:#x}" if lay.text_va is not None else "?",
             lay.relative_base, (time.perf_counter() - start) * 1e3)
    sym = Symbolizer.from_entries(table.functions())
    sym.text_va = lay.text_va           # 6.1 lists no _text symbol; KASLR lookups need it
    return sym
