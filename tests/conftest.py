"""Shared test helpers: assemble AArch64 snippets with zig's clang, run them on a board."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn, Sequence

import pytest
from elftools.elf.elffile import ELFFile

from armras.board.machine import Machine, MachineConfig, RunResult

REPO = Path(__file__).resolve().parents[1]
GUEST_BUILD = REPO / "guest_images" / "build"
LOAD_ADDRESS = 0x4008_0000


def unavailable(what: str, how: str) -> NoReturn:
    """Skip a test that needs something this machine lacks; under CI (`CI` set, as
    `.ci/run` does) fail instead: CI installs everything, so a skip there would hide a
    test that never ran."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not available in CI: {how}", pytrace=False)
    pytest.skip(f"{what} is not available ({how})")


def require_tool(name: str, how: str) -> str:
    """The path of a host tool, or skip (fail under CI) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        unavailable(name, how)
    return path


def _zig_available() -> bool:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return False
    return True


def assemble(source: str, base: int = LOAD_ADDRESS) -> bytes:
    """Assemble AArch64 source (GNU syntax) to raw bytes linked at `base`."""
    if not _zig_available():
        unavailable("ziglang", "pip install ziglang; needed to assemble test guests")
    text = f".text\n.global _start\n_start:\n{source}\n"
    key = hashlib.sha256(f"{base:#x}\n{text}".encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "armras-test-asm"
    cache.mkdir(exist_ok=True)
    out = cache / f"{key}.bin"
    if not out.exists():
        src = cache / f"{key}.S"
        elf = cache / f"{key}.elf"
        src.write_text(text)
        # Snippets are position independent (adr, literal-pool constants), so an object
        # file's .text is the final code; anything needing relocation is refused.
        subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-freestanding-none",
                        "-c", str(src), "-o", str(elf)], check=True)
        with open(elf, "rb") as f:
            obj = ELFFile(f)
            if obj.get_section_by_name(".rela.text") is not None:
                raise ValueError("test snippet needs relocations; use adr/literal constants only")
            data = obj.get_section_by_name(".text").data()
        out.write_bytes(data)
    return out.read_bytes()


class Board:
    """A machine running an assembled snippet, with its console captured."""

    def __init__(self, source: str, **config: object) -> None:
        self.console = io.BytesIO()
        config.setdefault("timeout", 20.0)
        self.machine = Machine(MachineConfig(console=self.console, **config))  # type: ignore[arg-type]
        self.code = assemble(source)
        self.machine.mem.write(LOAD_ADDRESS, self.code)
        self.machine.cpu.pc = LOAD_ADDRESS
        self.machine.cpu.set_x(0, self.machine.acpi.rsdp_address)

    def run(self) -> RunResult:
        return self.machine.run()

    @property
    def output(self) -> str:
        return self.console.getvalue().decode("utf-8", "replace")

    def x(self, n: int) -> int:
        return self.machine.cpu.x(n)

    def close(self) -> None:
        self.machine.close()


@pytest.fixture(params=["native", "python"])
def hooks_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the native hooks (armras/arch/_native.c) and with their Python twins."""
    if request.param == "python":
        import armras.arch

        monkeypatch.delattr(armras.arch, "_native", raising=False)
        monkeypatch.setitem(sys.modules, "armras.arch._native", None)
    return request.param


@pytest.fixture
def board():
    boards: list[Board] = []

    def make(source: str, **config: object) -> Board:
        b = Board(source, **config)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


@pytest.fixture(scope="session")
def guest_images() -> Path:
    """The bare-metal guest images, built with `make -C guest_images` if missing."""
    if not _zig_available():
        unavailable("ziglang", "pip install ziglang; needed to build the guest images")
    needed = ["ras_ref.elf", "ras_el0.elf", "exc_test.elf", "hostile.elf", "sdei_ref.elf"]
    if not all((GUEST_BUILD / n).exists() for n in needed):
        subprocess.run(["make", "-C", str(REPO / "guest_images"), f"PYTHON={sys.executable}"], check=True,
                       env={**os.environ})
    return GUEST_BUILD


def make_elf(code: bytes, base: int = LOAD_ADDRESS) -> bytes:
    """A minimal ELF64 AArch64 executable: one PT_LOAD segment holding `code` at `base`."""
    import struct

    ehsize, phsize = 64, 56
    offset = ehsize + phsize
    header = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 183, 1, base, ehsize, 0, 0,
                         ehsize, phsize, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, base, base, len(code), len(code), 0x1000)
    return header + phdr + code


def debian_kernel(series: str) -> Path:
    """A cached Debian reference kernel; skip without it (fail in CI, where .ci/run fetches it)."""
    from armras.guests.kernels import cached_kernel

    path = cached_kernel(series)
    if path is None:
        unavailable(f"the Debian {series} kernel", "run `make kernels`")
    return path


def module_initramfs(out: Path, modules: Sequence[str]) -> dict[str, Path]:
    """An initramfs per kernel series in `out`: /init plus those modules from that kernel's
    package (with modules.dep), as `python -m armras.guests.initramfs --module M` builds it."""
    init = GUEST_BUILD / "linux" / "init"
    if not init.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    paths = {}
    for series in ("6.1", "6.12"):
        debian_kernel(series)
        path = out / f"initramfs-{'-'.join(modules)}-{series}.cpio"
        proc = subprocess.run([sys.executable, "-m", "armras.guests.initramfs", str(init), "-o", str(path),
                               "--kernel", series, *(a for m in modules for a in ("--module", m))],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        paths[series] = path
    return paths


def run_linux(series: str, initrd: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`armras run` a Debian kernel in a child process; returns it and its console (tmp_path/console.log)."""
    console = tmp_path / "console.log"
    proc = subprocess.run(
        [sys.executable, "-m", "armras", "run", "--kernel", str(debian_kernel(series)), "--initrd", str(initrd),
         "--timeout", "300", "--console", str(console), *args], capture_output=True, text=True, timeout=400)
    return proc, console.read_text(errors="replace").replace("\r\n", "\n")


def boot_linux_here(series: str, initrd: Path, append: str, injections: Sequence[str] = (),
                    prepare: Callable[[Machine], None] | None = None,
                    **config: object) -> tuple[Machine, str, int]:
    """Boot a Debian kernel in this process to power-off with the CLI's `--inject` specs;
    `prepare(machine)` runs before it starts. Returns the machine, its console, the status."""
    from armras.drive.inject import parse_inject_spec, schedule
    from armras.guests.linux import boot_linux

    console = io.BytesIO()
    config.setdefault("timeout", 300.0)
    m = Machine(MachineConfig(console=console, **config))  # type: ignore[arg-type]
    try:
        boot_linux(m, debian_kernel(series), initrd, append)
        if prepare is not None:
            prepare(m)
        for text in injections:
            schedule(m, parse_inject_spec(text))
        status = m.run().status
    finally:
        m.close()
    return m, console.getvalue().decode("utf-8", "replace").replace("\r\n", "\n"), status


def in_order(text: str, patterns: list[str]) -> list[re.Match[str]]:
    """Each pattern must match after the previous one's match; returns the matches."""
    pos, found = 0, []
    for p in patterns:
        m = re.compile(p, re.MULTILINE).search(text, pos)
        assert m, f"{p!r} not found (in order) in the console:\n{text[-3000:]}"
        found.append(m)
        pos = m.end()
    return found
