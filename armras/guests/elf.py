"""Guest image loading: ELF64 AArch64 executables (pyelftools) and their symbols."""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from armras.errors import GuestAddressError, ImageError
from armras.board.memory import PhysicalMemory

log = logging.getLogger(__name__)


@dataclass
class Symbolizer:
    """Address -> "symbol+0xoff" from an ELF symbol table (functions and objects)."""

    _addrs: list[int] = field(default_factory=list)
    _entries: list[tuple[int, int, str]] = field(default_factory=list)
    _by_name: dict[str, int] = field(default_factory=dict)
    text_va: int | None = None          # a kernel's link address of _text, when known otherwise

    @classmethod
    def from_system_map(cls, path: Path) -> "Symbolizer":
        """Symbols from a Linux System.map ("address type name" lines)."""
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                try:
                    entries.append((int(parts[0], 16), 0, parts[2]))
                except ValueError:
                    continue
        entries.sort()
        sym = cls()
        sym._entries = entries
        sym._addrs = [e[0] for e in entries]
        sym._by_name = {name: addr for addr, _, name in reversed(entries)}
        return sym

    @classmethod
    def from_entries(cls, entries: list[tuple[int, int, str]]) -> "Symbolizer":
        """Symbols from (address, size, name) tuples (size 0: up to the next symbol)."""
        sym = cls()
        sym._entries = sorted(entries)
        sym._addrs = [e[0] for e in sym._entries]
        sym._by_name = {name: addr for addr, _, name in reversed(sym._entries)}
        return sym

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, addr: int, size: int, name: str) -> None:
        self._by_name.setdefault(name, addr)
        i = bisect.bisect(self._addrs, addr)
        self._addrs.insert(i, addr)
        self._entries.insert(i, (addr, size, name))

    def lookup(self, addr: int) -> str | None:
        i = bisect.bisect(self._addrs, addr) - 1
        if i < 0:
            return None
        start, size, name = self._entries[i]
        if size and addr >= start + size:
            return None
        return f"{name}+{addr - start:#x}" if addr != start else name

    def address_of(self, name: str) -> int | None:
        return self._by_name.get(name)

    def text_address(self) -> int | None:
        """The link address of a kernel's _text (the image's first byte)."""
        return self.text_va if self.text_va is not None else self.address_of("_text")


class LazySymbolizer(Symbolizer):
    """A Symbolizer built on first use: decoding a kernel's kallsyms costs ~0.2 s, and only
    a crash report or a symbol lookup needs it."""

    def __init__(self, load: Callable[[], Symbolizer | None]) -> None:
        super().__init__()
        self._load: Callable[[], Symbolizer | None] | None = load

    def _ensure(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            loaded = load()
            if loaded is not None:
                self._addrs, self._entries, self._by_name = loaded._addrs, loaded._entries, loaded._by_name
                self.text_va = loaded.text_va

    def __len__(self) -> int:
        self._ensure()
        return super().__len__()

    def add(self, addr: int, size: int, name: str) -> None:
        self._ensure()
        super().add(addr, size, name)

    def lookup(self, addr: int) -> str | None:
        self._ensure()
        return super().lookup(addr)

    def address_of(self, name: str) -> int | None:
        self._ensure()
        return super().address_of(name)

    def text_address(self) -> int | None:
        self._ensure()
        return super().text_address()


@dataclass
class LoadedImage:
    path: Path
    entry: int
    segments: list[tuple[int, int]]
    symbols: Symbolizer


def load_elf(path: Path, mem: PhysicalMemory, reserved: tuple[int, int] | None = None) -> LoadedImage:
    """Copy an ELF64 AArch64 executable's PT_LOAD segments to their physical addresses.

    `reserved` is a (base, size) range firmware owns; segments may not overlap it.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read guest image: {e.strerror}") from None
    if not data.startswith(b"\x7fELF"):
        hint = " (an arm64 Linux Image: use --kernel)" if data[0x38:0x3C] == b"ARM\x64" else ""
        raise ImageError(f"{path}: not an ELF file{hint}")
    try:
        from io import BytesIO

        elf = ELFFile(BytesIO(data))
        if elf.elfclass != 64 or elf["e_machine"] != "EM_AARCH64" or not elf.little_endian:
            raise ImageError(f"{path}: not a little-endian ELF64 AArch64 image "
                             f"(class {elf.elfclass}, machine {elf['e_machine']})")
        if elf["e_type"] != "ET_EXEC":
            raise ImageError(f"{path}: ELF type {elf['e_type']} is not a linked executable")
        segments: list[tuple[int, int]] = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            pa, memsz, filesz = seg["p_paddr"], seg["p_memsz"], seg["p_filesz"]
            if filesz > memsz or seg["p_offset"] + filesz > len(data):
                raise ImageError(f"{path}: truncated or inconsistent segment at {pa:#x}")
            try:
                mem.region_of(pa, memsz)
            except GuestAddressError:
                raise ImageError(f"{path}: segment {pa:#x}-{pa + memsz - 1:#x} lies outside guest memory") from None
            if reserved and pa < reserved[0] + reserved[1] and reserved[0] < pa + memsz:
                raise ImageError(f"{path}: segment {pa:#x}-{pa + memsz - 1:#x} overlaps firmware-reserved "
                                 f"memory {reserved[0]:#x}-{reserved[0] + reserved[1] - 1:#x}")
            mem.write(pa, seg.data()[:filesz] + bytes(memsz - filesz))
            segments.append((pa, memsz))
        if not segments:
            raise ImageError(f"{path}: ELF has no loadable segments")
        entry = elf["e_entry"]
        if not any(pa <= entry < pa + size for pa, size in segments):
            raise ImageError(f"{path}: entry point {entry:#x} is not inside a loaded segment")
        symbols = Symbolizer()
        symtab = elf.get_section_by_name(".symtab")
        if symtab is not None:
            for sym in symtab.iter_symbols():
                if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") \
                        and sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
                    symbols.add(sym["st_value"], sym["st_size"], sym.name)
    except ELFError as e:
        raise ImageError(f"{path}: malformed ELF: {e}") from None
    log.info("loaded %s: entry %#x, %d segment(s)", path, entry, len(segments))
    return LoadedImage(path, entry, segments, symbols)
