"""`armras initramfs --debian`: a Debian arm64 userland unpacked into the initramfs.

Needs the packages `make userland` downloads (busybox-static, rasdaemon and their Depends,
cached under ~/.cache/armras/debian); the archive is built offline from that cache.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from armras.guests.initramfs import CpioEntry, build_archive, read_cpio
from armras.guests.userland import UserlandMissing, userland_entries
from conftest import REPO, unavailable

FAKE_INIT = b"\x7fELF" + b"\x00" * 60
ELF_MACHINE_AARCH64 = 183           # e_machine (ELF for the Arm 64-bit Architecture)


@pytest.fixture(scope="module")
def entries() -> dict[str, CpioEntry]:
    try:
        tree = userland_entries(["busybox-static", "rasdaemon"])
    except UserlandMissing as e:
        unavailable("the Debian userland (busybox-static, rasdaemon)", f"{e}; run `make userland`")
    return {e.name: e for e in read_cpio(build_archive(FAKE_INIT, tree, {"/test.sh": b"#!/bin/sh\necho hi\n"}))}


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return int.from_bytes(data[18:20], "little")


def test_debian_binaries_and_merged_usr(entries: dict[str, CpioEntry]) -> None:
    # The project's /init and the extra file, the base directories and the console node.
    assert entries["init"].data == FAKE_INIT and entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["test.sh"].mode == stat.S_IFREG | 0o755
    assert entries["dev/console"].is_chr
    # Merged /usr: the top-level links base-files' maintainer script would make.
    for top in ("bin", "sbin", "lib"):
        assert stat.S_ISLNK(entries[top].mode) and entries[top].data == f"usr/{top}".encode()
    # The arm64 dynamic loader at the path every Debian arm64 ELF names (PT_INTERP).
    loader = entries["usr/lib/ld-linux-aarch64.so.1"]
    assert stat.S_ISLNK(loader.mode)
    target = "usr/lib/" + loader.data.decode()
    assert _elf_machine(entries[target].data) == ELF_MACHINE_AARCH64
    for exe in ("usr/sbin/rasdaemon", "usr/bin/busybox", "usr/bin/perl"):
        assert _elf_machine(entries[exe].data) == ELF_MACHINE_AARCH64
        assert entries[exe].mode & 0o111
    assert b"/lib/ld-linux-aarch64.so.1" in entries["usr/sbin/rasdaemon"].data
    # ras-mc-ctl is a Perl script; its DBD::SQLite comes from the Depends closure, not DT_NEEDED.
    assert entries["usr/sbin/ras-mc-ctl"].data.startswith(b"#!/usr/bin/perl")
    assert "usr/lib/aarch64-linux-gnu/perl5/5.40/DBD/SQLite.pm" in entries
    assert any(n.startswith("usr/lib/aarch64-linux-gnu/libtraceevent.so.1") for n in entries)
    # /bin/sh is busybox; documentation and iconv modules are left out; /var/lib exists.
    assert stat.S_ISLNK(entries["usr/bin/sh"].mode) and entries["usr/bin/sh"].data == b"busybox"
    assert not any(n.startswith(("usr/share/doc/", "usr/share/man/", "usr/lib/aarch64-linux-gnu/gconv/"))
                   for n in entries)
    assert entries["var/lib"].is_dir
    # Every directory precedes what it holds (the kernel creates entries in archive order).
    seen: set[str] = set()
    for name in entries:
        parent = name.rpartition("/")[0]
        assert not parent or parent in seen, name
        seen.add(name)


def test_tree_conflicts_are_refused() -> None:
    tree = [CpioEntry(name="init", mode=stat.S_IFREG | 0o755, data=b"x")]
    with pytest.raises(ValueError, match="reserved"):
        build_archive(FAKE_INIT, tree)
    with pytest.raises(ValueError, match="before its directory"):
        build_archive(FAKE_INIT, [CpioEntry(name="usr/bin/x", mode=stat.S_IFREG | 0o644)])
    twice = [CpioEntry(name="a", mode=stat.S_IFREG | 0o644), CpioEntry(name="a", mode=stat.S_IFREG | 0o644)]
    with pytest.raises(ValueError, match="given twice"):
        build_archive(FAKE_INIT, twice)


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "initramfs", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--debian", "rasdaemon;rm"], "is not a Debian package name"),
    (["--debian", ","], "no package named"),
    (["--debian", "rasdaemon", "--suite", "trixie main"], "is not a Debian suite name"),
    (["--add", "test.sh=x"], "--add wants /DEST=SRC"),
    (["--add", "/x=/nonexistent/file"], "cannot read /nonexistent/file"),
    (["--init", "/nonexistent/init"], "cannot read /nonexistent/init"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _cli(*args, "-o", str(tmp_path / "out.cpio"))
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out.cpio").exists()


def test_cli_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    script = tmp_path / "test.sh"
    script.write_text("#!/bin/sh\n")
    init = tmp_path / "init"
    init.write_bytes(FAKE_INIT)
    proc = _cli("--init", str(init), "--add", f"/test.sh={script}", "-o", str(script))
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr, proc.stderr
    assert script.read_text() == "#!/bin/sh\n"
    # Without --debian: just /init and the extra file, nothing downloaded.
    out = tmp_path / "plain.cpio"
    proc = _cli("--init", str(init), "--add", f"/test.sh={script}", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [e.name for e in read_cpio(out.read_bytes())] == ["dev", "proc", "sys", "tmp", "dev/console", "init",
                                                            "test.sh"]


def test_missing_cache_says_make_userland(tmp_path: Path) -> None:
    # An empty cache without --update: one line naming the make target, no network.
    init = tmp_path / "init"
    init.write_bytes(FAKE_INIT)
    proc = subprocess.run([sys.executable, "-m", "armras", "initramfs", "--init", str(init), "--debian", "rasdaemon",
                           "-o", str(tmp_path / "out.cpio")], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "ARMRAS_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1 and "make userland" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_closure_lines_and_deb_names() -> None:
    # apt-get --simulate's "Inst" lines (apt's own format) and the file names apt-get download
    # writes: an epoch's ':' becomes %3a, Architecture: all packages end in _all.deb.
    from armras.guests.userland import _INST_RE, Package

    lines = {
        "Inst libcrypt1 (1:4.4.38-1 Debian:13.2/stable [arm64])": Package("libcrypt1", "1:4.4.38-1", "arm64"),
        "Inst init-system-helpers (1.69~deb13u1 Debian:13.2/stable [all]) []":
            Package("init-system-helpers", "1.69~deb13u1", "all"),
    }
    for line, want in lines.items():
        m = _INST_RE.match(line)
        assert m and Package(m.group("name"), m.group("version"), m.group("arch")) == want
    assert Package("libcrypt1", "1:4.4.38-1").deb_name == "libcrypt1_1%3a4.4.38-1_arm64.deb"
    assert Package("init-system-helpers", "1.69~deb13u1", "all").deb_name == "init-system-helpers_1.69~deb13u1_all.deb"
    assert _INST_RE.match("Conf libc6 (2.41-12 Debian:13.2/stable [arm64])") is None
