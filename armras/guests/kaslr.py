"""Kernel symbols under KASLR: symbolize by where an address lands in the kernel image.

With EFI_RNG_PROTOCOL the arm64 EFI stub moves the Image to a random physical address
and the kernel maps itself at a random virtual offset from its link address, so a PC
cannot be looked up in the link-time symbol table as it is. The image is physically
contiguous, though: a kernel virtual address, translated through the CPU's own page
tables, lands at `text_pa + (link address - _text)`. The image's physical address is
where the firmware loaded it or, when the stub relocated it, the newest EFI_LOADER_CODE
allocation whose image-sized range holds the kernel's exception vectors (VBAR_EL1,
translated the same way). The header page is no proof of where the image runs: arm64
reserves its image from _stext, so Linux may reuse the pages between _text and _stext;
a copy of the header decides only before the kernel has installed its vectors. This
needs neither the offset nor a
symbol the kernel may not export (6.1's kallsyms has no data symbols), and works for
any seed; addresses outside the image fall back to the link-time table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from armras.arch.cpu import VBAR_EL1
from armras.arch.mmu import translate
from armras.errors import ArmrasError
from armras.guests.elf import Symbolizer

if TYPE_CHECKING:
    from armras.arch.cpu import Cpu
    from armras.board.memory import PhysicalMemory

KERNEL_VA_BIT = 1 << 63      # TTBR1 half: where a kernel PC lives


class KaslrSymbolizer(Symbolizer):
    def __init__(self, inner: Symbolizer, header: bytes, image_size: int,
                 candidates: Callable[[], list[int]], cpu: "Cpu", mem: "PhysicalMemory") -> None:
        super().__init__()
        self.inner = inner
        self.header = header
        self.image_size = image_size
        self.candidates = candidates
        self.cpu = cpu
        self.mem = mem

    def text_pa(self) -> int | None:
        """The physical address of the running Image: the newest candidate whose image-sized
        range holds the kernel's vectors, else the newest copy of its header."""
        candidates = list(reversed(self.candidates()))
        vbar = self.cpu.sysreg(VBAR_EL1)
        vectors = translate(self.cpu, self.mem, vbar) if vbar & KERNEL_VA_BIT else None
        if vectors is not None:
            for base in candidates:
                if base <= vectors < base + self.image_size:
                    return base
        for base in candidates:
            try:
                if self.mem.read(base, len(self.header)) == self.header:
                    return base
            except ArmrasError:
                continue
        return None

    def link_address(self, va: int) -> int:
        """The link-time address of kernel virtual address `va` (itself if not in the image)."""
        text_link = self.inner.text_address()
        if not va & KERNEL_VA_BIT or text_link is None:
            return va
        pa = translate(self.cpu, self.mem, va)
        text_pa = self.text_pa()
        if pa is None or text_pa is None or not text_pa <= pa < text_pa + self.image_size:
            return va
        return text_link + (pa - text_pa)

    def __len__(self) -> int:
        return len(self.inner)

    def add(self, addr: int, size: int, name: str) -> None:
        self.inner.add(addr, size, name)

    def lookup(self, addr: int) -> str | None:
        return self.inner.lookup(self.link_address(addr))

    def address_of(self, name: str) -> int | None:
        return self.inner.address_of(name)

    def text_address(self) -> int | None:
        return self.inner.text_address()


__all__ = ["KaslrSymbolizer"]
