"""arm64 Image parsing (armras.guests.image) and the kernel cache lookup (armras.guests.kernels)."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from armras.guests import kernels
from armras.errors import ArmrasError, ImageError
from armras.guests.image import (
    ARM64_MAGIC,
    LEGACY_TEXT_OFFSET,
    PE_MACHINE_ARM64,
    Arm64Image,
    load_arm64_image,
    parse_arm64_image,
)
from conftest import debian_kernel

PE_OFF = 0x40
OPT_SIZE = 0xA0  # PE32+ optional header with 16 data directories, as Linux emits
SECTIONS = ((b".text", 0x10000, 0x10000, 0x20000, 0x10000, 0x60000020),
            (b".data", 0x30000, 0x30000, 0x8000, 0x6000, 0xC0000040))


def make_image(*, text_offset: int = 0, image_size: int = 0x50000, flags: int = 0xA,
               magic: bytes = ARM64_MAGIC, pe: bool = True, machine: int = PE_MACHINE_ARM64,
               opt_magic: int = 0x20B, entry: int = 0x12345, size: int = 0x40000) -> bytes:
    """A synthetic arm64 Image laid out like Linux's head.S + efi-header.S."""
    data = bytearray(size)
    code0 = 0xFA405A4D if pe else 0x14000000 | 16  # "MZ" + ccmp, or a plain branch
    struct.pack_into("<IIQQQQQQ4sI", data, 0, code0, 0x14000000, text_offset, image_size, flags,
                     0, 0, 0, magic, PE_OFF if pe else 0)
    if pe:
        data[PE_OFF:PE_OFF + 4] = b"PE\0\0"
        coff = PE_OFF + 4
        struct.pack_into("<HHIIIHH", data, coff, machine, len(SECTIONS), 0, 0, 0, OPT_SIZE, 0x206)
        opt = coff + 20
        struct.pack_into("<HBBIIIII", data, opt, opt_magic, 2, 20, 0x20000, 0x8000, 0, entry, 0x10000)
        struct.pack_into("<QII", data, opt + 24, 0, 0x10000, 0x200)
        struct.pack_into("<I", data, opt + 56, image_size)
        table = opt + OPT_SIZE
        for i, (name, vsize, vaddr, rsize, roff, chars) in enumerate(SECTIONS):
            off = table + 40 * i
            struct.pack_into("<8sIIII12xI", data, off, name, vsize, vaddr, rsize, roff, chars)
    return bytes(data)


def write(tmp_path: Path, data: bytes, name: str = "Image") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- valid images

def test_valid_pe_image_fields(tmp_path: Path) -> None:
    img = load_arm64_image(write(tmp_path, make_image()))
    assert isinstance(img, Arm64Image)
    assert img.text_offset == 0
    assert img.image_size == 0x50000
    assert img.flags == 0xA
    assert img.page_size == 4096
    assert img.phys_placement_anywhere
    assert not img.big_endian
    assert img.is_pe and img.pe_offset == PE_OFF
    assert img.pe_entry == 0x12345
    assert img.pe_size_of_image == 0x50000
    assert img.section_alignment == 0x10000
    assert img.file_alignment == 0x200
    assert [s.name for s in img.sections] == [".text", ".data"]
    text = img.section(".text")
    assert text is not None
    assert (text.virtual_address, text.virtual_size, text.raw_offset, text.raw_size) == (0x10000, 0x10000, 0x10000, 0x20000)
    assert img.section(".bss") is None
    assert len(img.data) == 0x40000
    assert img.load_size == 0x50000
    assert img.path == tmp_path / "Image"


@pytest.mark.parametrize("bits,size", [(0, 0), (1, 4096), (2, 16384), (3, 65536)])
def test_page_size_flags(bits: int, size: int) -> None:
    img = parse_arm64_image(make_image(flags=bits << 1))
    assert img.page_size == size
    assert not img.phys_placement_anywhere


def test_image_without_pe_header() -> None:
    img = parse_arm64_image(make_image(pe=False, text_offset=0x80000))
    assert img.text_offset == 0x80000
    assert not img.is_pe
    assert img.pe_entry is None and img.pe_size_of_image is None and img.sections == []


def test_legacy_image_size_zero_assumes_0x80000() -> None:
    img = parse_arm64_image(make_image(pe=False, image_size=0, text_offset=0))
    assert img.text_offset == LEGACY_TEXT_OFFSET
    assert img.load_size == 0x40000


# ---------------------------------------------------------------- rejected files

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"no such kernel Image file") as exc:
        load_arm64_image(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        load_arm64_image(tmp_path)


@pytest.mark.parametrize("size", [0, 1, 63])
def test_too_short(tmp_path: Path, size: int) -> None:
    path = write(tmp_path, make_image()[:size])
    with pytest.raises(ImageError, match=r"too short .* need 64") as exc:
        load_arm64_image(path)
    assert str(path) in str(exc.value)


def test_bad_magic(tmp_path: Path) -> None:
    path = write(tmp_path, make_image(magic=b"RISC"))
    with pytest.raises(ImageError, match=r"bad arm64 Image magic b'RISC' at 0x38 \(expected b'ARMd'\)") as exc:
        load_arm64_image(path)
    assert str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_gzip_compressed(tmp_path: Path) -> None:
    path = write(tmp_path, gzip.compress(make_image()), "vmlinuz")
    with pytest.raises(ImageError, match=r"gzip-compressed: decompress it first") as exc:
        load_arm64_image(path)
    assert str(path) in str(exc.value)


def test_zstd_compressed() -> None:
    with pytest.raises(ImageError, match="zstd-compressed"):
        parse_arm64_image(b"\x28\xb5\x2f\xfd" + bytes(100))


def test_efi_zboot() -> None:
    data = bytearray(make_image())
    data[4:8] = b"zimg"
    data[24:28] = b"gzip"
    with pytest.raises(ImageError, match=r"EFI zboot image \(gzip-compressed payload\)"):
        parse_arm64_image(bytes(data))


def test_elf_points_to_elf_loader(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x7fELF\x02\x01\x01" + bytes(200), "vmlinux")
    with pytest.raises(ImageError, match=r"ELF file .*use the ELF loader"):
        load_arm64_image(path)


def test_big_endian_rejected() -> None:
    with pytest.raises(ImageError, match="big-endian"):
        parse_arm64_image(make_image(flags=0xB))


def test_misaligned_text_offset() -> None:
    with pytest.raises(ImageError, match="not page aligned"):
        parse_arm64_image(make_image(text_offset=0x80010))


@pytest.mark.parametrize("cut,what", [
    (PE_OFF + 2, "truncated PE header"),
    (PE_OFF + 24 + 20, "truncated PE optional header"),
    (PE_OFF + 24 + OPT_SIZE + 40, "truncated PE section table"),
])
def test_truncated_pe(cut: int, what: str) -> None:
    with pytest.raises(ImageError, match=what):
        parse_arm64_image(make_image()[:cut])


def test_truncated_image_is_refused_naming_the_section(tmp_path: Path) -> None:
    # .text's file bytes end at 0x30000: one byte less is a cut-short download, which
    # would otherwise boot into zeros.
    parse_arm64_image(make_image()[:0x30000])
    with pytest.raises(ImageError, match=r"truncated Image: section \.text needs 196608 bytes .* has 196607"):
        parse_arm64_image(make_image()[:0x30000 - 1])
    with pytest.raises(ImageError, match=r"truncated Image: section \.text"):
        parse_arm64_image(make_image()[:PE_OFF + 24 + OPT_SIZE + 80])
    # Through the command line: one line, exit 1.
    cut = write(tmp_path, make_image()[:0x20000])
    proc = subprocess.run([sys.executable, "-m", "armras", "run", "--kernel", str(cut)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("armras: error: ") and "truncated Image" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_pe_signature() -> None:
    data = bytearray(make_image())
    data[PE_OFF:PE_OFF + 4] = b"NE\0\0"
    with pytest.raises(ImageError, match=r"no 'PE\\0\\0' signature at 0x40"):
        parse_arm64_image(bytes(data))


def test_x86_pe_machine_rejected() -> None:
    with pytest.raises(ImageError, match=r"PE machine is 0x8664 \(x86-64\), not arm64"):
        parse_arm64_image(make_image(machine=0x8664))


def test_pe32_not_plus_rejected() -> None:
    with pytest.raises(ImageError, match=r"expected PE32\+"):
        parse_arm64_image(make_image(opt_magic=0x10B))


def test_entry_outside_image() -> None:
    with pytest.raises(ImageError, match="outside SizeOfImage"):
        parse_arm64_image(make_image(entry=0x60000))


def test_image_error_is_user_facing() -> None:
    assert issubclass(ImageError, ArmrasError)


# ---------------------------------------------------------------- kernel cache (no apt, no network)

def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARMRAS_CACHE", str(tmp_path / "c"))
    assert kernels.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ARMRAS_CACHE")
    assert kernels.cache_dir() == Path.home() / ".cache" / "armras"


def test_cached_kernel_picks_newest_of_series(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARMRAS_CACHE", str(tmp_path))
    assert kernels.cached_kernel("6.1") is None
    root = tmp_path / "kernels"
    names = [
        "linux-image-6.1.0-9-arm64-unsigned_6.1.27-1",
        "linux-image-6.1.0-47-arm64-unsigned_6.1.170-3",
        "linux-image-6.1.0-47-cloud-arm64-unsigned_6.1.170-3",  # other flavour: ignored
        "linux-image-6.12.115+deb12-arm64-unsigned_6.12.115-2~deb12u1",
        "linux-image-6.12.117+deb12-arm64-unsigned_6.12.117-1~deb12u1",
        "linux-image-6.12.99+deb12-arm64-unsigned_6.12.99-1~deb12u1",
    ]
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "vmlinuz").write_bytes(make_image())
    (root / "linux-image-6.1.0-99-arm64-unsigned_6.1.300-1").mkdir()  # no vmlinuz: a failed fetch
    assert kernels.cached_kernel("6.1") == root / names[1] / "vmlinuz"
    assert kernels.cached_kernel("6.12") == root / names[4] / "vmlinuz"
    with pytest.raises(ArmrasError, match="unknown kernel series"):
        kernels.cached_kernel("5.10")


@pytest.mark.parametrize("series,name,ok", [
    ("6.1", "linux-image-6.1.0-56-arm64-unsigned", True),
    ("6.1", "linux-image-6.1.0-56-rt-arm64-unsigned", False),
    ("6.1", "linux-image-6.1.0-56-arm64", False),
    ("6.12", "linux-image-6.12.117+deb12-arm64-unsigned", True),
    ("6.12", "linux-image-6.12.38+deb13-arm64-unsigned", True),
    ("6.12", "linux-image-6.12.12+bpo-arm64-unsigned", True),
    ("6.12", "linux-image-6.12.117+deb12-cloud-arm64-unsigned", False),
    ("6.12", "linux-image-6.1.0-56-arm64-unsigned", False),
])
def test_series_package_names(series: str, name: str, ok: bool) -> None:
    assert bool(kernels._series_re(series).match(name)) is ok


# ---------------------------------------------------------------- real Debian kernels, if already fetched

@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_real_debian_kernel_parses(series: str) -> None:
    img = load_arm64_image(debian_kernel(series))
    assert img.is_pe and img.pe_offset == 0x40
    assert img.data[:2] == b"MZ"
    assert img.text_offset == 0
    assert img.page_size == 4096
    assert img.phys_placement_anywhere
    assert img.image_size >= len(img.data) > 16 << 20
    assert img.image_size % 0x10000 == 0
    assert img.pe_size_of_image == img.image_size
    assert img.section_alignment == 0x10000
    assert [s.name for s in img.sections][:2] == [".text", ".data"]
    assert img.pe_entry is not None
    text = img.sections[0]
    assert text.virtual_address <= img.pe_entry < text.virtual_address + text.virtual_size


# ---------------------------------------------------------------- fetch-kernel and the host's apt setup

class FakeApt:
    """Stands in for apt/dpkg: records every command, changes nothing on the host."""

    def __init__(self, foreign: str = "", pkgnames: str = "") -> None:
        self.commands: list[list[str]] = []
        self.foreign = foreign
        self.pkgnames = pkgnames

    def __call__(self, cmd: list[str], *, cwd: Path | None = None, check: bool = True):
        import subprocess

        self.commands.append(cmd)
        out = {("dpkg", "--print-architecture"): "amd64\n",
               ("dpkg", "--print-foreign-architectures"): self.foreign,
               ("apt-cache", "pkgnames"): self.pkgnames}.get(tuple(cmd[:2]), "")
        return subprocess.CompletedProcess(cmd, 0, out, "")

    def changed_the_host(self) -> bool:
        return any(c[:2] in (["dpkg", "--add-architecture"], ["apt-get", "update"]) for c in self.commands)


def test_fetch_kernel_leaves_apt_alone_unless_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARMRAS_CACHE", str(tmp_path))            # nothing cached: no fallback
    monkeypatch.setattr(kernels.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(kernels, "_ensure_extra_source", lambda series: pytest.fail("would write /etc/apt"))
    apt = FakeApt()
    monkeypatch.setattr(kernels, "_run", apt)
    with pytest.raises(ArmrasError, match=r"dpkg does not know the arm64 architecture; .* --setup-apt .*"
                                          r"sudo dpkg --add-architecture arm64 && sudo apt-get update"):
        kernels.fetch_kernel("6.1")
    assert not apt.changed_the_host()
    apt = FakeApt(foreign="arm64\n")                             # arm64 known, but no package in the lists
    monkeypatch.setattr(kernels, "_run", apt)
    with pytest.raises(ArmrasError, match=r"no linux-image-6\.1\*-arm64-unsigned package in apt's lists; .*"
                                          r"--setup-apt"):
        kernels.fetch_kernel("6.1")
    assert not apt.changed_the_host()
    # With --setup-apt the same host gets the architecture and an apt-get update.
    apt = FakeApt()
    monkeypatch.setattr(kernels, "_run", apt)
    monkeypatch.setattr(kernels, "_ensure_extra_source", lambda series: False)
    with pytest.raises(ArmrasError, match="no Debian linux-image-6.1"):
        kernels.fetch_kernel("6.1", setup_apt=True)
    assert ["dpkg", "--add-architecture", "arm64"] in apt.commands and ["apt-get", "update"] in apt.commands


def test_fetch_kernel_command_line_says_what_it_would_change(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    from armras import cli

    monkeypatch.setenv("ARMRAS_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    apt = FakeApt()
    monkeypatch.setattr(kernels, "_run", apt)
    assert cli.main(["fetch-kernel", "6.1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("armras: error: dpkg does not know the arm64 architecture")
    assert not apt.changed_the_host()
    assert "--setup-apt" in (REPO_MAKEFILE.read_text().split("\nkernels:", 1)[1].split("\n\n", 1)[0])


REPO_MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def test_missing_prerequisites_skip_locally_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI must not go green by skipping: conftest.unavailable fails there instead.
    from conftest import require_tool

    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-xyz is not available in CI"):
        require_tool("no-such-tool-xyz", "apt-get install it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz is not available"):
        require_tool("no-such-tool-xyz", "apt-get install it")
