"""The newc initramfs writer/reader and the static /init built with zig."""

from __future__ import annotations

import gzip
import importlib.util
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from armras.errors import ImageError
from armras.guests.initramfs import HEADER_LEN, build_initramfs, read_cpio, write_initramfs
from armras.drive.regress import load_scenario
from conftest import require_tool, unavailable

REPO = Path(__file__).resolve().parents[1]
INIT_C = REPO / "guest_images" / "linux" / "init.c"
FAKE_INIT = b"\x7fELF" + bytes(range(256)) * 3 + b"xyz"  # 775 bytes: needs data padding


def by_name(data: bytes) -> dict[str, object]:
    return {e.name: e for e in read_cpio(data)}


def test_layout_and_round_trip() -> None:
    archive = build_initramfs(FAKE_INIT)
    entries = read_cpio(archive)
    names = [e.name for e in entries]
    assert names == ["dev", "proc", "sys", "tmp", "dev/console", "init"]
    ents = {e.name: e for e in entries}
    for d in ("dev", "proc", "sys"):
        assert ents[d].mode == stat.S_IFDIR | 0o755
        assert ents[d].data == b""
    assert ents["tmp"].mode == stat.S_IFDIR | 0o1777

    console = ents["dev/console"]
    assert console.mode == stat.S_IFCHR | 0o600
    assert (console.rdevmajor, console.rdevminor) == (5, 1)
    assert console.data == b""

    init = ents["init"]
    assert init.mode == stat.S_IFREG | 0o755
    assert init.data == FAKE_INIT
    assert (init.uid, init.gid, init.mtime, init.nlink) == (0, 0, 0, 1)
    # Inodes are unique (the kernel treats equal ino with nlink>1 as hard links).
    assert len({e.ino for e in entries}) == len(entries)


def test_raw_bytes_padding_and_trailer() -> None:
    archive = build_initramfs(FAKE_INIT)
    # First entry by hand: "070701", ino=1, mode=040755, namesize=4 ("dev\0").
    assert archive[:6] == b"070701"
    assert int(archive[6:14], 16) == 1
    assert int(archive[14:22], 16) == 0o40755
    assert int(archive[94:102], 16) == 4
    assert archive[HEADER_LEN:HEADER_LEN + 4] == b"dev\0"
    # 110 + 4 = 114 -> padded to 116, the next header starts right there (no data).
    assert archive[116:122] == b"070701"
    for e in read_cpio(archive):
        assert e.header_offset % 4 == 0
        assert e.data_offset % 4 == 0
    init = by_name(archive)["init"]
    end = init.data_offset + len(FAKE_INIT)
    assert len(FAKE_INIT) % 4 == 3
    assert archive[end:end + 1] == b"\0"  # one padding byte, then the trailer header
    assert archive[end + 1:end + 7] == b"070701"
    assert b"TRAILER!!!\0" in archive[end:]
    assert len(archive) % 4 == 0
    # The trailer is the last entry.
    assert archive.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_console_rdev_fields_in_header() -> None:
    archive = build_initramfs(b"x")
    console = by_name(archive)["dev/console"]
    hdr = archive[console.header_offset:console.header_offset + HEADER_LEN]
    fields = [int(hdr[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    assert fields[1] == 0o20600
    assert fields[6] == 0
    assert fields[9:11] == [5, 1]
    assert fields[11] == len("dev/console") + 1


def test_extra_files_and_parent_dirs() -> None:
    archive = build_initramfs(b"#!/bin/sh\n", {"/etc/motd": b"hello\n", "/usr/bin/tool": b"\x7fELFtool",
                                               "data.bin": b"\x00\x01\x02"})
    ents = by_name(archive)
    names = list(ents)
    assert names.index("etc") < names.index("etc/motd")
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/tool")
    assert ents["etc/motd"].mode == stat.S_IFREG | 0o644
    assert ents["etc/motd"].data == b"hello\n"
    assert ents["usr/bin/tool"].mode == stat.S_IFREG | 0o755
    assert ents["usr/bin"].mode == stat.S_IFDIR | 0o755
    assert ents["data.bin"].data == b"\x00\x01\x02"
    assert ents["init"].data == b"#!/bin/sh\n"


@pytest.mark.parametrize("path", ["/init", "/dev/console", "/dev", "/../etc/x", "/"])
def test_reserved_or_bad_paths_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        build_initramfs(b"x", {path: b"y"})


def test_gzip_and_reproducible(tmp_path: Path) -> None:
    plain = build_initramfs(FAKE_INIT)
    packed = build_initramfs(FAKE_INIT, compress=True)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == plain
    assert read_cpio(packed) == read_cpio(plain)
    assert build_initramfs(FAKE_INIT, compress=True) == packed  # mtime 0 everywhere
    out = write_initramfs(tmp_path / "i.cpio.gz", FAKE_INIT, compress=True)
    assert out.read_bytes() == packed


def test_reader_rejects_garbage() -> None:
    archive = build_initramfs(FAKE_INIT)
    with pytest.raises(ImageError, match="bad magic"):
        read_cpio(b"070707" + archive[6:])  # odc, not newc
    with pytest.raises(ImageError, match="truncated"):
        read_cpio(archive[:-200])
    cut = archive[:archive.index(b"TRAILER!!!") - HEADER_LEN]
    with pytest.raises(ImageError, match="TRAILER"):
        read_cpio(cut)


def test_cli_writes_archive(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_bytes(FAKE_INIT)
    extra = tmp_path / "motd"
    extra.write_bytes(b"hi")
    out = tmp_path / "out.cpio"
    proc = subprocess.run([sys.executable, "-m", "armras.guests.initramfs", str(init), "-o", str(out),
                           "--add", f"/etc/motd={extra}", "--list"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert "crw------- 5:1" in proc.stdout and "/dev/console" in proc.stdout
    ents = by_name(out.read_bytes())
    assert ents["init"].data == FAKE_INIT
    assert ents["etc/motd"].data == b"hi"
    bad = subprocess.run([sys.executable, "-m", "armras.guests.initramfs", str(tmp_path / "missing"), "-o", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.startswith("armras: ") and "missing" in bad.stderr


# ---------------------------------------------------------------- /init built with zig

@pytest.fixture(scope="module")
def init_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("ziglang") is None:
        unavailable("ziglang", "pip install ziglang; needed to cross-compile init.c")
    out = tmp_path_factory.mktemp("init") / "init"
    proc = subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-musl", "-static",
                           "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(INIT_C)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_init_is_static_aarch64_elf(init_binary: Path) -> None:
    from elftools.elf.elffile import ELFFile

    with init_binary.open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64
        assert elf.little_endian
        assert elf["e_machine"] == "EM_AARCH64"
        assert elf["e_type"] in ("ET_EXEC", "ET_DYN")
        segments = [seg["p_type"] for seg in elf.iter_segments()]
        assert "PT_INTERP" not in segments
        assert "PT_LOAD" in segments
        dynamic = elf.get_section_by_name(".dynamic")
        needed = [t for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED"] if dynamic else []
        assert needed == []


def test_init_prints_the_host_contract(init_binary: Path) -> None:
    blob = init_binary.read_bytes()
    for text in (b"INIT-OK uptime=%s", b"SEATEST victim va=0x%lx PADDR=0x%lx cpu=%d",
                 b"SEATEST SIGBUS si_code=%d (BUS_MCEERR_AR=%d) si_addr=0x%lx", b"SEATEST no SIGBUS",
                 b"HardwareCorrupted:", b"SEATEST DONE", b"/proc/self/pagemap", b"seatest",
                 # benchmarks/bench_userspace.py parses these
                 b"armras_bench", b"BENCH %s n=%ld ns=%llu", b"BENCH DONE"):
        assert text in blob, text


def test_initramfs_with_real_init(init_binary: Path) -> None:
    data = init_binary.read_bytes()
    ents = by_name(build_initramfs(data, compress=True))
    assert ents["init"].data == data
    assert ents["init"].mode == stat.S_IFREG | 0o755


def _qemu_user() -> str:
    import os

    qemu = require_tool("qemu-aarch64-static", "apt-get install qemu-user-static")
    require_tool("unshare", "apt-get install util-linux")
    require_tool("chroot", "apt-get install coreutils")
    if os.geteuid() != 0:
        unavailable("root", "run as root: the test chroots into a fresh mount namespace")
    return qemu


# What the host waits for in /init's output: the shipped Linux scenarios' first wait and
# README's `--poison-on` regex; group 1 is the physical address to poison.
HOST_TRIGGERS = [load_scenario(REPO / "scenarios" / f"linux_{s}_sea.toml").steps[0].value for s in ("6_1", "6_12")]
HOST_TRIGGERS.append(r"PADDR=(0x[0-9a-f]+)")


@pytest.mark.parametrize("cmdline,seatest", [("console=ttyAMA0 seatest", True),
                                             ("console=ttyAMA0 seatestx", False)])
def test_init_runs_under_qemu_user(tmp_path: Path, cmdline: str, seatest: bool) -> None:
    """Runs /init in a chroot under qemu-user, inside fresh PID and mount namespaces.

    reboot(RB_POWER_OFF) from a non-initial PID namespace only ends that
    namespace (kernel/reboot.c: reboot_pid_ns), so the host is never touched;
    the mounts land in the private mount namespace.  No poison here, so the
    read succeeds: this checks the flow and the exact lines, not the SEA.
    """
    qemu = _qemu_user()
    if importlib.util.find_spec("ziglang") is None:
        unavailable("ziglang", "pip install ziglang; needed to cross-compile init.c")
    import shutil

    root = tmp_path / "root"
    for d in ("dev", "proc", "sys", "tmp", "etc"):
        (root / d).mkdir(parents=True)
    (root / "etc" / "cmdline").write_text(cmdline + "\n")
    shutil.copy(qemu, root / "qemu-aarch64-static")
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "aarch64-linux-musl", "-static", "-Os",
                    '-DINIT_CMDLINE_PATH="/etc/cmdline"', "-o", str(root / "init"), str(INIT_C)],
                   check=True, capture_output=True, timeout=600)
    unshare = subprocess.run(["unshare", "--pid", "--fork", "--mount", "true"], capture_output=True)
    if unshare.returncode != 0:
        unavailable("PID and mount namespaces", unshare.stderr.decode().strip())
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc",
                           "chroot", str(root), "/qemu-aarch64-static", "/init"],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout
    lines = out.splitlines()
    assert re.fullmatch(r"INIT-OK uptime=\d+\.\d+", lines[0]), out
    assert "INIT ERROR" not in out.replace("INIT ERROR mount", ""), out
    if not seatest:
        assert "SEATEST" not in out
        return
    if "SEATEST ERROR" in out and "pagemap" in out:
        unavailable("/proc/self/pagemap under qemu-user", out.strip().splitlines()[-2])
    m = re.search(r"^SEATEST victim va=(0x[0-9a-f]+) PADDR=(0x[0-9a-f]+) cpu=\d+$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(1), 16) & 0xFFF == 0x100 == int(m.group(2), 16) & 0xFFF
    # The host's triggers find that address in the line /init really printed.
    for trigger in HOST_TRIGGERS:
        found = re.search(trigger, out)
        assert found and int(found.group(1), 16) == int(m.group(2), 16), trigger
    assert "SEATEST no SIGBUS (read 0x5a, expected 0x5a)" in lines
    assert lines[-1] == "SEATEST DONE"
