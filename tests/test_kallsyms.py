"""armras.guests.kallsyms: kernel symbols from the Image's own kallsyms tables.

Fast tests build synthetic tables in both layouts (<= 6.3 "offsets first", with and
without kallsyms_seqs_of_names, and 6.4+ "names first") with a small encoder that
follows scripts/kallsyms.c, plus hostile input. The `kernel` tests check the decoder
against the ground truth, the guest's own /proc/kallsyms (a tiny static /init,
tests/data/kallsyms_init.c, prints chosen lines and a CRC-32 of the whole file), and
that a panic's crash report names the function the CPU is in.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import debian_kernel, unavailable

from armras.guests.initramfs import build_initramfs
from armras.guests.kallsyms import (R_AARCH64_RELATIVE, KallsymsError, decode_kallsyms, kallsyms_symbolizer)

REPO = Path(__file__).resolve().parents[1]
INIT_SOURCE = REPO / "tests" / "data" / "kallsyms_init.c"
INITRAMFS = REPO / "guest_images" / "build" / "linux" / "initramfs.cpio"
TEXT_VA = 0xFFFF_8000_0800_0000
WANTED = ("panic", "start_kernel", "ghes_probe", "memory_failure", "do_sea", "_stext")


# --- a synthetic kallsyms encoder (scripts/kallsyms.c, simplified compression) ---

@dataclass(frozen=True)
class Sym:
    addr: int
    type: str
    name: str


def _symbols() -> list[Sym]:
    syms = [Sym(TEXT_VA + 0x10000, "T", "_stext")]
    syms += [Sym(TEXT_VA + 0x10000 + 0x40 * i, "t" if i % 3 else "T", f"func_{i}") for i in range(600)]
    syms.append(Sym(TEXT_VA + 0x10000 + 0x40 * 600, "W", "weak_one"))
    syms.append(Sym(TEXT_VA + 0x20000, "T", "y" * 150 + "_big"))         # 2-byte (ULEB128) length
    syms.append(Sym(TEXT_VA + 0x20100, "T", "_etext"))
    syms.append(Sym(TEXT_VA + 0x30000, "D", "some_data"))
    syms.append(Sym(TEXT_VA + 0x30100, "b", "some_bss"))
    return sorted(syms, key=lambda s: s.addr)


MULTI_TOKENS = (b"func_", b"_1", b"Tf", b"tf", b"xxxx", b"some_")


def _token_table(streams: list[bytes]) -> list[bytes]:
    tokens = [b""] * 256
    for c in {b for s in streams for b in s}:
        tokens[c] = bytes([c])
    free = [i for i in range(255, -1, -1) if not tokens[i]]
    for code, tok in zip(free, MULTI_TOKENS):
        tokens[code] = tok
    return tokens


def _compress(stream: bytes, tokens: list[bytes]) -> bytes:
    by_len = sorted(((t, i) for i, t in enumerate(tokens) if t), key=lambda ti: -len(ti[0]))
    out, pos = bytearray(), 0
    while pos < len(stream):
        tok, code = next((t, i) for t, i in by_len if stream.startswith(t, pos))
        out.append(code)
        pos += len(tok)
    return bytes(out)


def build_image(syms: list[Sym], order: str, seq_size: int = 3, relocatable: bool = True,
                seed: int = 1) -> tuple[bytes, dict[str, int]]:
    """An "Image": random head and text, the kallsyms tables in .rodata, then .rela.dyn."""
    rnd = random.Random(seed)
    out = bytearray(rnd.randbytes(0x12345))
    at: dict[str, int] = {}

    def label(name: str) -> None:
        out.extend(bytes(-len(out) % 8))
        at[name] = len(out)

    streams = [(s.type + s.name).encode() for s in syms]
    tokens = _token_table(streams)
    comp = [_compress(s, tokens) for s in streams]
    base = syms[0].addr
    names, markers = bytearray(), []
    for i, c in enumerate(comp):
        if i % 256 == 0:
            markers.append(len(names))
        names += bytes([len(c)]) if len(c) < 0x80 else bytes([(len(c) & 0x7F) | 0x80, len(c) >> 7])
        names += c
    seq_order = sorted(range(len(syms)), key=lambda i: (syms[i].name, syms[i].addr))
    table, index = bytearray(), []
    for t in tokens:
        index.append(len(table))
        table += t + b"\0"

    def offsets() -> None:
        label("offsets")
        out.extend(struct.pack(f"<{len(syms)}I", *(s.addr - base for s in syms)))
        label("relative_base")
        out.extend(struct.pack("<Q", 0 if relocatable else base))

    def seqs(size: int) -> None:
        if size:
            label("seqs")
            for i in seq_order:
                out.extend(i.to_bytes(4, "big")[-size:])

    if order == "offsets-first":
        offsets()
    label("num_syms")
    out.extend(struct.pack("<I", len(syms)))
    label("names")
    out.extend(names)
    label("markers")
    out.extend(struct.pack(f"<{len(markers)}I", *markers))
    if order == "offsets-first":
        seqs(seq_size)
    label("token_table")
    out.extend(table)
    label("token_index")
    out.extend(struct.pack("<256H", *index))
    if order == "names-first":
        offsets()
        seqs(3)
    out.extend(rnd.randbytes(0x3003))
    label("rela")
    rb = at["relative_base"]
    entries = [(TEXT_VA + rnd.randrange(0, len(out)) & ~7, base + rnd.randrange(0, 0x10000)) for _ in range(50)]
    entries.append((TEXT_VA + 0x10000 + rb, TEXT_VA + 0x100))        # decoy: _text would not be 2 MiB aligned
    entries.append((TEXT_VA + 0x200000 + rb, TEXT_VA + 0x100))       # decoy: value below that "_text"
    entries.append((TEXT_VA + rb, base))                              # the real one
    entries.sort()
    for r_offset, addend in entries:
        out.extend(struct.pack("<QQq", r_offset, R_AARCH64_RELATIVE, addend - (1 << 64)))
    out.extend(rnd.randbytes(0x101))
    return bytes(out), at


LAYOUTS = [("offsets-first", 0), ("offsets-first", 3), ("offsets-first", 4), ("names-first", 3)]


@pytest.mark.parametrize("order,seq_size", LAYOUTS)
@pytest.mark.parametrize("relocatable", [True, False])
def test_decodes_synthetic_tables(order: str, seq_size: int, relocatable: bool) -> None:
    syms = _symbols()
    image, at = build_image(syms, order, seq_size, relocatable)
    table = decode_kallsyms(image)
    lay = table.layout
    assert lay.order == order
    assert (lay.num_syms, lay.names, lay.markers, lay.token_table, lay.token_index, lay.offsets,
            lay.relative_base_at) == (len(syms), at["names"], at["markers"], at["token_table"],
                                      at["token_index"], at["offsets"], at["relative_base"])
    assert lay.seqs_of_names == at.get("seqs")
    assert lay.relative_base == syms[0].addr
    assert lay.text_va == (TEXT_VA if relocatable else None)
    assert table.names == [s.name for s in syms]
    assert table.types == "".join(s.type for s in syms)
    assert table.addresses == [s.addr for s in syms]


def test_symbolizer_has_functions_bounded_by_the_next_symbol() -> None:
    syms = _symbols()
    sym = kallsyms_symbolizer(build_image(syms, "names-first")[0])
    assert sym is not None
    assert sym.address_of("func_7") == TEXT_VA + 0x10000 + 0x40 * 7
    assert sym.lookup(TEXT_VA + 0x10000 + 0x40 * 7 + 0x24) == "func_7+0x24"
    assert sym.lookup(TEXT_VA + 0x10000 + 0x40 * 600) == "weak_one"
    assert sym.address_of("y" * 150 + "_big") == TEXT_VA + 0x20000
    assert sym.address_of("some_data") is None and sym.address_of("some_bss") is None
    assert sym.lookup(TEXT_VA + 0x20100 + 8) == "_etext+0x8"
    assert sym.lookup(TEXT_VA + 0x30000 + 8) is None          # data: past the last function's extent
    assert sym.lookup(TEXT_VA) is None                         # before the first symbol


@pytest.mark.parametrize("data", [b"", b"MZ" + bytes(100), bytes(1 << 20), random.Random(3).randbytes(1 << 20),
                                  b"".join(bytes((c, 0)) for c in b"0123456789") * 3])
def test_no_tables_gives_none_with_a_reason(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="armras.guests.kallsyms"):
        assert kallsyms_symbolizer(data) is None
    assert "will not be symbolized" in caplog.text


def test_truncated_and_corrupted_tables_never_raise() -> None:
    image, at = build_image(_symbols(), "names-first")
    for cut in range(at["num_syms"], len(image), 997):
        try:
            decode_kallsyms(image[:cut])
        except KallsymsError:
            pass
    rnd = random.Random(7)
    for _ in range(150):
        bad = bytearray(image)
        for _ in range(rnd.randrange(1, 40)):
            bad[rnd.randrange(at["num_syms"], len(bad))] = rnd.randrange(256)
        kallsyms_symbolizer(bytes(bad))                       # a Symbolizer or None, never an exception


@pytest.mark.parametrize("order,seq_size", LAYOUTS)
def test_zeroed_tables_are_rejected_quickly(order: str, seq_size: int) -> None:
    """Runs of zeros (markers/num_syms candidates everywhere) must not make the search crawl."""
    image, at = build_image(_symbols(), order, seq_size)
    for bad in (bytes(16 << 20) + image[:at["names"]] + bytes(at["token_table"] - at["names"]) + image[at["token_table"]:],
                bytes(16 << 20) + image[at["token_table"]:]):
        start = time.perf_counter()
        assert kallsyms_symbolizer(bad) is None
        assert time.perf_counter() - start < 5


# --- against the guest's /proc/kallsyms (Debian's kernels) ---

@pytest.fixture(scope="module")
def kallsyms_initramfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        unavailable("ziglang", "pip install ziglang; needed to build the test /init")
    source = INIT_SOURCE.read_bytes()
    cache = Path(tempfile.gettempdir()) / "armras-test-kallsyms"
    cache.mkdir(exist_ok=True)
    init = cache / f"init-{hashlib.sha256(source).hexdigest()[:16]}"
    if not init.exists():
        subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-musl", "-static", "-Os",
                        "-Wall", "-Wextra", "-Werror", "-s", "-o", f"{init}.tmp", str(INIT_SOURCE)], check=True)
        os.replace(f"{init}.tmp", init)
    cpio = tmp_path_factory.mktemp("kallsyms") / "initramfs.cpio"
    cpio.write_bytes(build_initramfs(init.read_bytes()))
    return cpio


def _run(kernel: Path, initrd: Path, append: str, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "run", "--kernel", str(kernel), "--initrd", str(initrd),
                           "--append", append, "--timeout", str(timeout)],
                          capture_output=True, text=True, timeout=timeout + 60, cwd=REPO)



@pytest.mark.kernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_addresses_match_the_guests_proc_kallsyms(series: str, kallsyms_initramfs: Path) -> None:
    kernel = debian_kernel(series)
    table = decode_kallsyms(kernel.read_bytes())
    # nokaslr: /proc/kallsyms then prints the link addresses the decoder gives (with KASLR
    # every one is shifted by the random offset; test_panic_crash_report_names_the_function).
    proc = _run(kernel, kallsyms_initramfs, f"console=ttyAMA0 nokaslr kallsyms_want={','.join(WANTED)}", 150)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    done = re.search(r"^KALLSYMS done (\d+) ([0-9a-f]{8})\r?$", out, re.MULTILINE)
    assert done, out[-3000:]
    guest = {}
    for m in re.finditer(r"^KALLSYMS ([0-9a-f]{16}) (\S) (\S+)\r?$", out, re.MULTILINE):
        guest.setdefault(m[3], set()).add((int(m[1], 16), m[2]))
    assert set(guest) == set(WANTED), out[-3000:]
    assert all(addr != 0 for entries in guest.values() for addr, _ in entries), "kptr_restrict hid the addresses"
    mine: dict[str, set[tuple[int, str]]] = {}
    for addr, typ, name in zip(table.addresses, table.types, table.names):
        if name in guest:
            mine.setdefault(name, set()).add((addr, typ))
    assert mine == guest
    # the whole table: /proc/kallsyms prints "%px %c %s\n" per symbol, in table order
    text = "".join(f"{a:016x} {t} {n}\n" for a, t, n in zip(table.addresses, table.types, table.names))
    assert (int(done[1]), int(done[2], 16)) == (table.layout.num_syms, zlib.crc32(text.encode()))
    # the link address of _text (from .rela.dyn) is the kernel's KIMAGE_VADDR
    assert table.layout.text_va == {"6.1": 0xFFFF_8000_0800_0000, "6.12": 0xFFFF_8000_8000_0000}[series]


@pytest.mark.kernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_panic_crash_report_names_the_function(series: str) -> None:
    kernel = debian_kernel(series)
    if not INITRAMFS.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    proc = _run(kernel, INITRAMFS, "console=ttyAMA0 rdinit=/nope", 100)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 126, out[-3000:]
    m = re.search(r"^--- CPU at EL1, PC (0x[0-9a-f]+) <([A-Za-z_][\w.]*)(?:\+(0x[0-9a-f]+))?> ---$", out, re.MULTILINE)
    assert m, out[-3000:]
    pc, name, off = int(m[1], 16), m[2], int(m[3] or "0", 16)
    # KASLR is on (EFI_RNG_PROTOCOL): the kernel's panic notifier prints its random offset,
    # and the report must have symbolized the PC at its link address pc - offset.
    assert "KASLR enabled" in out
    kaslr = re.search(r"Kernel Offset: (0x[0-9a-f]+) from (0x[0-9a-f]+)", out)
    assert kaslr and int(kaslr[1], 16) != 0, out[-3000:]
    pc -= int(kaslr[1], 16)
    functions = decode_kallsyms(kernel.read_bytes()).functions()
    # a kernel function that really covers the PC (after the "end Kernel panic" line the CPU
    # loops in panic()'s delay, e.g. __delay_cycles on 6.1, or is in a timer interrupt)
    assert any(a == pc - off and off < (size or 1 << 20) for a, size, n in functions if n == name)


@pytest.mark.kernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_kaslr_symbols_survive_the_header_page_being_reused(series: str) -> None:
    """arm64 reserves its image from _stext, not _text: Linux may reuse the header page of
    the running (relocated) Image, as a 6.1 panic test showed in 1 run of 2. The symbolizer
    must still find the image (by the kernel's vectors) and name the PC's function."""
    import io

    from armras.arch.mmu import translate
    from armras.board.machine import Machine, MachineConfig
    from armras.guests.linux import boot_linux

    if not INITRAMFS.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    m = Machine(MachineConfig(console=io.BytesIO(), timeout=100.0))
    try:
        boot_linux(m, debian_kernel(series), INITRAMFS, "console=ttyAMA0 rdinit=/nope")
        with pytest.raises(Exception):
            m.run()                                  # the panic ends the run
        pc = m.cpu.pc
        before = m.symbols.lookup(pc)
        assert before and not before.startswith("_einittext"), before
        # Wipe the header page of the image the CPU runs from, as Linux may.
        pa = translate(m.cpu, m.mem, pc)
        assert pa is not None
        name, _, off = before.partition("+")
        functions = decode_kallsyms(debian_kernel(series).read_bytes()).functions()
        link = next(a for a, _, n in functions if n == name) + int(off or "0", 16)
        text_link = m.symbols.text_address()
        base = pa - (link - text_link)
        m.mem.write(base, bytes(4096))
        assert m.symbols.lookup(pc) == before
    finally:
        m.close()
