"""A Debian arm64 userland in the initramfs: packages from Debian, the project's /init on top.

``armras initramfs --debian busybox-static,rasdaemon -o OUT.cpio`` (``make userland``)
builds a newc initramfs from Debian's own arm64 binaries so that unmodified tools
(rasdaemon, ras-mc-ctl, stress-ng...) run in a Linux guest:

1. **A private apt.**  Everything apt needs lives under ``cache_dir()/debian/<suite>-arm64``
   (its own sources.list, lists, archive cache and an *empty* dpkg status), and apt is
   told that arm64 is its native architecture.  The host's apt sources, its dpkg
   architectures and its installed packages are neither read nor changed, and no root
   is needed.  Only ``--update`` (what ``make userland`` passes) runs ``apt-get update``
   against the Debian mirror; without it the lists already cached are used, and a build
   with everything cached needs no network at all.

2. **The dependency closure from apt's resolver.**  ``apt-get install --simulate
   --no-install-recommends PKGS`` against the empty status lists every package the
   requested ones need (Depends and Pre-Depends, alternatives and virtual packages
   resolved by apt, exact versions).  We use that rather than ELF ``DT_NEEDED``: the
   consumer that matters, ``ras-mc-ctl``, is a Perl script whose needs (perl,
   DBI, DBD::SQLite) are package dependencies and no ELF file names them.

3. **Download and unpack.**  ``apt-get download NAME:arm64=VERSION`` for each package of
   the closure not yet in ``debs/``, then ``dpkg-deb -x`` of each into one tree.
   Maintainer scripts are never run (none of the packages needs one to work in a
   throw-away initramfs).  Documentation, manual pages, locales and Perl's ``.pod``
   files are left out to keep the archive small.

4. **Merged /usr.**  Trixie is merged-/usr (its packages install into ``/usr/bin``,
   ``/usr/lib``...; the links are made by base-files' maintainer script, which we do
   not run), so the archive gets ``bin``, ``sbin`` and ``lib`` as symbolic links into
   ``usr`` (the arm64 dynamic loader is ``/lib/ld-linux-aarch64.so.1``), plus
   ``/bin/sh`` -> busybox when busybox-static is in the set and nothing else
   provides a shell.  /var/lib, /var/log, /run, /etc and /root exist (empty).

The project's static /init stays ``/init``; with ``armras_sh=PATH`` on the kernel
command line it runs ``/bin/sh PATH`` (see guest_images/linux/init.c).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from armras.errors import ArmrasError
from armras.guests.initramfs import CpioEntry, build_archive
from armras.guests.kernels import cache_dir

log = logging.getLogger("armras.guests.userland")

ARCH = "arm64"
DEFAULT_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# What `make userland` fetches (and the rasdaemon test needs): a shell and its applets,
# rasdaemon with ras-mc-ctl's Perl and SQLite dependencies. (stress-ng works too but pulls
# in Mesa and LLVM through its Depends: 56 packages, ~150 MiB.)
DEFAULT_PACKAGES = ("busybox-static", "rasdaemon")
MAX_PACKAGES = 200          # a closure larger than this is a mistake, not an initramfs

# Left out of the tree: nothing in the guest reads them. Documentation; glibc's iconv
# character-set modules (gconv, 20 MiB); Perl's CJK encodings and Unicode::Collate tables
# (12 MiB: neither rasdaemon nor ras-mc-ctl loads them).
_PERL_ARCH = "usr/lib/aarch64-linux-gnu/perl/5.40.1"
_PRUNED_DIRS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                "usr/share/lintian", "usr/share/bug", "usr/share/gdb", "usr/share/bash-completion",
                "usr/lib/aarch64-linux-gnu/gconv", *(f"{_PERL_ARCH}/auto/Encode/{x}" for x in ("JP", "KR", "CN", "TW")),
                f"{_PERL_ARCH}/auto/Unicode/Collate", "usr/share/perl/5.40/Unicode/Collate")
_PRUNED_SUFFIXES = (".pod",)
# Merged /usr (trixie): top-level directory -> its target in /usr.
MERGED_USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib"}
EMPTY_DIRS = ("etc", "root", "run", "var/lib", "var/log", "var/tmp")

_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")      # Debian Policy 5.6.1
_SUITE_RE = re.compile(r"^[a-z]+(?:-[a-z]+)?$")          # trixie, bookworm-backports
# "Inst libc6 (2.41-12 Debian:13.2/stable [arm64])" (apt-get --simulate's line per package)
_INST_RE = re.compile(r"^Inst (?P<name>\S+) (?:\[\S+\] )?\((?P<version>\S+) .*\[(?P<arch>[a-z0-9]+)\]\)")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str = ARCH        # or "all"

    @property
    def deb_name(self) -> str:
        """The file name apt-get download gives it (an epoch's ':' is written %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass
class PrivateApt:
    """apt-get/apt-cache confined to ``root``: nothing of the host's apt or dpkg state is used."""

    suite: str = DEFAULT_SUITE
    root: Path = field(default_factory=lambda: cache_dir() / "debian")

    @property
    def state(self) -> Path:
        return self.root / f"{self.suite}-{ARCH}"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    def options(self) -> list[str]:
        s = self.state
        return [
            "-o", f"Dir::Etc::sourcelist={s / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::Etc::preferences={s / 'preferences'}", "-o", "Dir::Etc::preferencesparts=-",
            "-o", f"Dir::State::Lists={s / 'lists'}", "-o", f"Dir::Cache={s / 'cache'}",
            "-o", f"Dir::State::status={s / 'status'}", "-o", f"Dir::State={s}",
            "-o", f"APT::Architecture={ARCH}", "-o", f"APT::Architectures={ARCH}",
            "-o", "Debug::NoLocking=1", "-o", "APT::Get::AllowUnauthenticated=false",
        ]

    def prepare(self) -> None:
        s = self.state
        for d in (s / "lists" / "partial", s / "cache" / "archives" / "partial", self.debs):
            d.mkdir(parents=True, exist_ok=True)
        (s / "sources.list").write_text(
            f"deb [arch={ARCH} signed-by={KEYRING}] {DEBIAN_MIRROR} {self.suite} main\n")
        (s / "preferences").write_text("")
        status = s / "status"
        if not status.exists():
            status.write_text("")      # an empty system: the closure is complete

    def has_lists(self) -> bool:
        lists = self.state / "lists"
        return lists.is_dir() and any(p.name.endswith(("_Packages", "_Packages.lz4", "_Packages.xz",
                                                       "_Packages.gz")) for p in lists.iterdir())

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        if shutil.which(tool) is None:
            raise ArmrasError(f"{tool} not found: a Debian userland needs a host with apt and dpkg")
        cmd = [tool, *self.options(), *args]
        log.debug("running: %s", " ".join(cmd))
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("E:")] or lines[-1:] or [f"exit {proc.returncode}"]
            raise ArmrasError(f"{tool} {' '.join(args[:2])}... failed: {errors[0].strip()}")
        return proc

    def update(self) -> None:
        self.prepare()
        log.info("apt-get update (%s, %s, private lists in %s)", self.suite, ARCH, self.state)
        proc = self.run("apt-get", "update")
        failed = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("Err:", "W: Failed"))]
        if failed:
            raise ArmrasError(f"apt-get update ({self.suite} {ARCH}): {failed[0].strip()}")

    def closure(self, packages: list[str]) -> list[Package]:
        """Every package (exact version) an empty system needs to install ``packages``."""
        if not self.has_lists():
            raise UserlandMissing(f"no {self.suite} {ARCH} package lists in {self.state} "
                                  "(run `make userland`, or armras initramfs --debian ... --update)")
        proc = self.run("apt-get", "install", "--simulate", "--no-install-recommends", "-q",
                        *(f"{p}:{ARCH}" for p in packages))
        found = []
        for line in proc.stdout.splitlines():
            m = _INST_RE.match(line)
            if m:
                found.append(Package(m.group("name").split(":")[0], m.group("version"), m.group("arch")))
        if len(found) > MAX_PACKAGES:
            raise ArmrasError(f"{', '.join(packages)} need {len(found)} packages (more than {MAX_PACKAGES})")
        return found

    def download(self, packages: list[Package], allow_network: bool) -> list[Path]:
        """The .deb of each package, downloading the missing ones into ``debs`` if allowed."""
        missing = [p for p in packages if not (self.debs / p.deb_name).is_file()]
        if missing and not allow_network:
            raise UserlandMissing(f"{len(missing)} Debian package(s) not downloaded yet "
                                  f"({', '.join(p.name for p in missing[:5])}...): run `make userland`")
        if missing:
            log.info("downloading %d packages into %s", len(missing), self.debs)
            with tempfile.TemporaryDirectory(prefix="armras-debs-", dir=self.debs) as tmp:
                self.run("apt-get", "download", *(f"{p.name}:{ARCH}={p.version}" for p in missing), cwd=Path(tmp))
                for p in missing:
                    got = Path(tmp) / p.deb_name
                    if not got.is_file():
                        raise ArmrasError(f"apt-get download {p.name}={p.version} gave no {p.deb_name}")
                    got.rename(self.debs / p.deb_name)
        return [self.debs / p.deb_name for p in packages]


class UserlandMissing(ArmrasError):
    """The packages (or their lists) are not in the cache and the network may not be used."""


def _check_names(packages: list[str]) -> None:
    if not packages:
        raise ArmrasError("--debian: no package named")
    for name in packages:
        if not _PACKAGE_RE.match(name):
            raise ArmrasError(f"--debian: {name!r} is not a Debian package name")


def _pruned(rel: str) -> bool:
    return rel.endswith(_PRUNED_SUFFIXES) or any(rel == d or rel.startswith(d + "/") for d in _PRUNED_DIRS)


def _tree_entries(root: Path) -> list[tuple[str, int, bytes]]:
    """(name, mode, data) of everything under root that goes into the archive; symlinks keep their target."""
    out: list[tuple[str, int, bytes]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if _pruned(rel):
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out.append((rel, stat.S_IFLNK | 0o777, path.readlink().as_posix().encode()))
        elif stat.S_ISDIR(st.st_mode):
            out.append((rel, stat.S_IFDIR | (st.st_mode & 0o7777), b""))
        elif stat.S_ISREG(st.st_mode):
            out.append((rel, stat.S_IFREG | (st.st_mode & 0o7777), path.read_bytes()))
        # device nodes, fifos: none in Debian packages; skipped
    return out


def unpack(debs: list[Path], root: Path) -> None:
    for deb in debs:
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise ArmrasError(f"dpkg-deb -x {deb.name} failed: {last}")


def userland_entries(packages: list[str], *, update: bool = False, suite: str = DEFAULT_SUITE,
                     apt: PrivateApt | None = None) -> list[CpioEntry]:
    """The archive entries of a Debian userland holding ``packages`` and their dependencies.

    ``update`` refreshes the private package lists and downloads what is missing; without
    it everything must already be cached (UserlandMissing otherwise).
    """
    _check_names(packages)
    if not _SUITE_RE.match(suite):
        raise ArmrasError(f"--suite {suite!r} is not a Debian suite name (e.g. trixie)")
    apt = apt or PrivateApt(suite=suite)
    apt.prepare()
    if update:
        apt.update()
    closure = apt.closure(packages)
    debs = apt.download(closure, allow_network=update)
    log.info("userland: %d packages: %s", len(closure), " ".join(p.name for p in closure))
    with tempfile.TemporaryDirectory(prefix="armras-userland-") as tmp:
        root = Path(tmp)
        unpack(debs, root)
        items = _tree_entries(root)
    names = {name for name, _, _ in items}
    for top, target in MERGED_USR_LINKS.items():
        if top in names:
            raise ArmrasError(f"the packages ship a real /{top}; merged /usr expects none")
        items.append((top, stat.S_IFLNK | 0o777, target.encode()))
    if "usr/bin/sh" not in names and "usr/bin/busybox" in names:
        items.append(("usr/bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    for d in EMPTY_DIRS:
        if d not in names:
            items.append((d, stat.S_IFDIR | 0o755, b""))
    return [CpioEntry(name=name, mode=mode, data=data) for name, mode, data in items]


def build_userland_initramfs(init_binary: bytes, packages: list[str], extra: dict[str, bytes] | None = None,
                             *, update: bool = False, suite: str = DEFAULT_SUITE) -> bytes:
    """A newc archive: the Debian userland, then the project's ``/init`` and ``extra`` files."""
    return build_archive(init_binary, userland_entries(packages, update=update, suite=suite), extra)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``armras initramfs``: the project's /init, Debian packages, extra files."""
    p = sub.add_parser("initramfs", help="build a Linux initramfs: the project's /init (+ Debian arm64 packages)",
                       description="Build a newc initramfs with the project's static /init and, with --debian, "
                                   "Debian arm64 packages and their dependencies (private apt state under "
                                   "~/.cache/armras/debian; the host's apt setup is not touched).")
    p.add_argument("-o", "--output", type=Path, required=True, help="archive to write (refuses to overwrite inputs)")
    p.add_argument("--init", type=Path, default=None,
                   help="the /init executable (default: guest_images/build/linux/init, from `make guests`)")
    p.add_argument("--add", action="append", default=[], metavar="DEST=SRC",
                   help="also add host file SRC as DEST (e.g. /test.sh=test.sh)")
    add_arguments(p)
    p.set_defaults(func=cmd_initramfs)


def default_init() -> Path:
    return Path(__file__).resolve().parents[2] / "guest_images" / "build" / "linux" / "init"


def cmd_initramfs(args: argparse.Namespace) -> int:
    from armras.guests.initramfs import build_initramfs
    from armras.paths import refuse_overwriting_inputs

    init_path = args.init or default_init()
    extra_paths = []
    for item in args.add:
        dest, sep, src = item.partition("=")
        if not sep or not dest.startswith("/") or not src:
            raise ArmrasError(f"--add wants /DEST=SRC, got {item!r}")
        extra_paths.append((dest, Path(src)))
    refuse_overwriting_inputs([("--output", args.output)],
                              [("init", init_path), *((f"--add {d}", s) for d, s in extra_paths)])
    try:
        init = init_path.read_bytes()
        extra = {dest: src.read_bytes() for dest, src in extra_paths}
    except OSError as e:
        raise ArmrasError(f"cannot read {e.filename}: {e.strerror}"
                          + (" (run `make guests`)" if Path(str(e.filename)) == init_path else "")) from None
    try:
        if args.debian is None:
            data = build_initramfs(init, extra)
        else:
            data = build_userland_initramfs(init, package_list(args.debian), extra, update=args.update,
                                            suite=args.suite)
    except ValueError as e:
        raise ArmrasError(str(e)) from None
    tmp = args.output.with_name(args.output.name + ".partial")
    try:
        tmp.write_bytes(data)
        tmp.replace(args.output)
    except OSError as e:
        raise ArmrasError(f"cannot write {args.output}: {e.strerror}") from None
    print(f"{args.output}: {len(data) / 2**20:.1f} MiB")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debian", metavar="PKG,PKG", default=None,
                   help="Debian arm64 packages to unpack (with their dependencies), e.g. "
                        f"{','.join(DEFAULT_PACKAGES)}")
    p.add_argument("--suite", default=DEFAULT_SUITE, help=f"Debian suite (default {DEFAULT_SUITE})")
    p.add_argument("--update", action="store_true",
                   help="refresh the private package lists and download missing packages (network)")


def package_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    _check_names(names)
    return names


def describe(entries: list[CpioEntry]) -> str:
    files = sum(1 for e in entries if e.is_reg)
    size = sum(len(e.data) for e in entries if e.is_reg)
    return f"{files} files, {size / 2**20:.1f} MiB"


__all__ = ["DEFAULT_PACKAGES", "DEFAULT_SUITE", "Package", "PrivateApt", "UserlandMissing",
           "build_userland_initramfs", "userland_entries"]
