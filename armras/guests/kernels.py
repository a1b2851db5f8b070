"""Fetch Debian's reference arm64 kernels and cache their raw arm64 Image.

Debian's ``linux-image-<abi>-arm64-unsigned`` packages ship ``/boot/vmlinuz-*``
as an uncompressed arm64 Image (with an EFI PE/COFF header), which is exactly
what armras boots.  We never install the package: ``apt-get download`` the
``.deb`` for the arm64 architecture, unpack it with ``dpkg-deb -x`` into a
temporary directory and keep the Image (and the kernel config) in the cache::

    cache_dir()/kernels/<package>_<version>/vmlinuz
    cache_dir()/kernels/<package>_<version>/config
    cache_dir()/kernels/<package>_<version>/package.deb   (its modules: armras.guests.modules)

Series supported: ``6.1`` (bookworm: ``linux-image-6.1.0-N-arm64-unsigned``)
and ``6.12`` (bookworm-security ships ``linux-image-6.12.N+deb12-arm64-unsigned``;
bookworm-backports ``...+bpo-...``; trixie ``...+deb13-...``).  The newest
version available to apt is resolved at fetch time, never hard-coded.

Downloading needs apt to know arm64 packages, which changes the host's package
configuration. armras does that only when asked (``armras fetch-kernel --setup-apt``,
as ``make kernels`` does): ``dpkg --add-architecture arm64`` (written under
/var/lib/dpkg), ``apt-get update`` (refreshes /var/lib/apt/lists) and, only when no
6.12 package is visible to apt at all on bookworm, an extra apt source
(bookworm-backports) under /etc/apt/sources.list.d/ plus a pin under
/etc/apt/preferences.d/, restricted to arm64 and pinned low so that nothing on the host
is ever upgraded from it. Without ``--setup-apt`` a host that needs any of this gets
one line saying what to run by hand, and nothing is changed.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from armras.errors import ArmrasError

log = logging.getLogger("armras.guests.kernels")

ARCH = "arm64"

# Package-name patterns per series; group 1 is the number that orders them
# (the ABI number for 6.1, the stable patch level for 6.12).
_SERIES_PATTERNS: dict[str, str] = {
    "6.1": r"^linux-image-6\.1\.0-(\d+)-arm64-unsigned$",
    "6.12": r"^linux-image-6\.12\.(\d+)(?:\+[a-z0-9]+)?-arm64-unsigned$",
}

SERIES = tuple(_SERIES_PATTERNS)

EXTRA_SOURCE_FILE = Path("/etc/apt/sources.list.d/armras-kernels.sources")
EXTRA_PREFS_FILE = Path("/etc/apt/preferences.d/armras-kernels.pref")

DEB_FILE = "package.deb"     # the downloaded package, kept for its kernel modules

# Cache directory names are "<package>_<version>"; "+" and "~" are kept
# as they are (both are legal in file names).
_CACHE_NAME_RE = re.compile(r"^(?P<package>linux-image-[^_]+)_(?P<version>[^_/]+)$")


@dataclass(frozen=True)
class KernelSpec:
    """One Debian kernel package: ``series`` is "6.1" or "6.12"."""

    series: str
    package: str
    version: str

    @property
    def cache_name(self) -> str:
        return f"{self.package}_{self.version}"


def cache_dir() -> Path:
    """$ARMRAS_CACHE, or ~/.cache/armras."""
    env = os.environ.get("ARMRAS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "armras"


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


def _series_re(series: str) -> re.Pattern[str]:
    try:
        return re.compile(_SERIES_PATTERNS[series])
    except KeyError:
        known = ", ".join(sorted(_SERIES_PATTERNS))
        raise ArmrasError(f"unknown kernel series {series!r} (known: {known})") from None


# --------------------------------------------------------------------------
# Running apt/dpkg
# --------------------------------------------------------------------------

def _run(cmd: list[str], *, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; turn a missing tool into ArmrasError."""
    log.debug("running: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ArmrasError(
            f"{cmd[0]} not found: fetching kernels needs a Debian-based host with apt and dpkg"
        ) from None
    if check and proc.returncode != 0:
        raise ArmrasError(f"{' '.join(cmd)} failed: {_last_error_line(proc)}")
    return proc


def _last_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of a failed apt/dpkg run (its last E: line if any)."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "dpkg:", "dpkg-deb:"))]
    if errors:
        return errors[-1]
    if lines:
        return lines[-1]
    return f"exit status {proc.returncode}"


def _require_tools() -> None:
    for tool in ("apt-get", "apt-cache", "dpkg", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ArmrasError(
                f"{tool} not found: fetching kernels needs a Debian-based host with apt and dpkg "
                f"(or put an arm64 Image in {kernels_dir()}/<package>_<version>/vmlinuz)"
            )


def _needs_setup(what: str) -> ArmrasError:
    return ArmrasError(
        f"{what}; armras changes the host's apt configuration only when asked: rerun with --setup-apt "
        f"(as root), or do it by hand: sudo dpkg --add-architecture {ARCH} && sudo apt-get update"
    )


def _ensure_arm64_arch(setup_apt: bool) -> bool:
    """Make dpkg know the arm64 architecture; True if it had to be added."""
    native = _run(["dpkg", "--print-architecture"]).stdout.strip()
    if native == ARCH:
        return False
    foreign = _run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    if ARCH in foreign:
        return False
    if not setup_apt:
        raise _needs_setup(f"dpkg does not know the {ARCH} architecture")
    log.info("adding the %s architecture to dpkg (dpkg --add-architecture %s)", ARCH, ARCH)
    proc = _run(["dpkg", "--add-architecture", ARCH], check=False)
    if proc.returncode != 0:
        raise ArmrasError(
            f"dpkg --add-architecture {ARCH} failed ({_last_error_line(proc)}); run it as root"
        )
    return True


def _apt_update() -> None:
    log.info("running apt-get update")
    proc = _run(["apt-get", "update"], check=False)
    if proc.returncode != 0:
        raise ArmrasError(
            f"apt-get update failed ({_last_error_line(proc)}): needs root and access to the Debian mirror"
        )
    # apt-get update exits 0 even when some lists could not be fetched.
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith(("W: Failed to fetch", "Err:")):
            log.warning("apt-get update: %s", line.strip())


def _os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    return m.group(1) if m else ""


def _ensure_extra_source(series: str) -> bool:
    """Add an apt source that carries ``series``, if missing; True if it was added.

    Only used for 6.12 on bookworm when bookworm-security no longer carries it:
    bookworm-backports, for arm64 only, pinned at priority 1 so that apt never
    picks anything from it for the host unless asked for an exact version
    (we only ever ``apt-get download`` from it).
    """
    if series != "6.12":
        return False
    codename = _os_codename()
    if codename != "bookworm":
        return False
    if EXTRA_SOURCE_FILE.exists():
        return False
    suite = f"{codename}-backports"
    source = (
        "# Added by armras (armras/guests/kernels.py) to download arm64 6.12 kernels; never used for installs.\n"
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian\n"
        f"Suites: {suite}\n"
        "Components: main\n"
        f"Architectures: {ARCH}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    prefs = (
        "# Added by armras: nothing from backports is installed or upgraded by default.\n"
        "Package: *\n"
        f"Pin: release n={suite}\n"
        "Pin-Priority: 1\n"
    )
    log.info("adding apt source %s (%s, arm64 only, pinned to priority 1)", EXTRA_SOURCE_FILE, suite)
    try:
        EXTRA_PREFS_FILE.parent.mkdir(parents=True, exist_ok=True)
        if not EXTRA_PREFS_FILE.exists():
            EXTRA_PREFS_FILE.write_text(prefs)
        EXTRA_SOURCE_FILE.write_text(source)
    except OSError as exc:
        raise ArmrasError(f"cannot add apt source {EXTRA_SOURCE_FILE}: {exc.strerror}; run as root") from None
    return True


# --------------------------------------------------------------------------
# Resolving the newest package of a series
# --------------------------------------------------------------------------

def _candidate_versions(packages: list[str]) -> dict[str, str]:
    """Candidate version of each arm64 package (one apt-cache call); packages without one are left out."""
    if not packages:
        return {}
    proc = _run(["apt-cache", "policy", *(f"{p}:{ARCH}" for p in packages)], check=False)
    result: dict[str, str] = {}
    current: str | None = None
    for line in proc.stdout.splitlines():
        header = re.match(r"^(\S+?)(?::" + ARCH + r")?:$", line)
        if header:
            current = header.group(1)
            continue
        m = re.match(r"^\s+Candidate:\s*(\S+)", line)
        if m and current is not None and m.group(1) != "(none)":
            result[current] = m.group(1)
    return result


def _version_gt(a: str, b: str) -> bool:
    return _run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def _resolve(series: str) -> KernelSpec | None:
    """Newest package of ``series`` that apt has a candidate for, from the local lists."""
    pattern = _series_re(series)
    names = sorted({n for n in _run(["apt-cache", "pkgnames", "linux-image-"]).stdout.split() if pattern.match(n)})
    # Some names linger in the lists without any downloadable version: skip those.
    best: KernelSpec | None = None
    for name, version in _candidate_versions(names).items():
        if best is None or _version_gt(version, best.version):
            best = KernelSpec(series=series, package=name, version=version)
    return best


def find_kernel(series: str, setup_apt: bool = False) -> KernelSpec:
    """The newest Debian arm64 kernel package of ``series`` ("6.1" or "6.12") apt can reach.

    With ``setup_apt`` it may add the arm64 architecture, run ``apt-get update`` and
    (for 6.12 on a host whose suites lack it) add a pinned bookworm-backports source;
    without it, it only reads apt's lists and fails with the command to run instead.
    """
    _series_re(series)
    _require_tools()
    added = _ensure_arm64_arch(setup_apt)
    if added:
        _apt_update()
    spec = _resolve(series)
    if spec is None and not setup_apt:
        raise _needs_setup(f"no linux-image-{series}*-arm64-unsigned package in apt's lists")
    if spec is None and not added:
        log.info("no %s arm64 kernel in the local apt lists; refreshing them", series)
        _apt_update()
        spec = _resolve(series)
    if spec is None and _ensure_extra_source(series):
        _apt_update()
        spec = _resolve(series)
    if spec is None:
        raise ArmrasError(
            f"no Debian linux-image-{series}*-arm64-unsigned package found by apt "
            "(check /etc/apt/sources.list.d and network access to the Debian mirror)"
        )
    log.info("newest %s kernel: %s %s", series, spec.package, spec.version)
    return spec


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------

def _cached_specs(series: str) -> list[tuple[KernelSpec, Path]]:
    pattern = _series_re(series)
    root = kernels_dir()
    found: list[tuple[KernelSpec, Path]] = []
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        m = _CACHE_NAME_RE.match(entry.name)
        if not m or not pattern.match(m.group("package")):
            continue
        image = entry / "vmlinuz"
        if image.is_file():
            found.append((KernelSpec(series, m.group("package"), m.group("version")), image))
    return found


def _debian_version_key(version: str) -> list[object]:
    """A sort key approximating dpkg's order, good enough for kernel versions."""
    key: list[object] = []
    for part in re.split(r"(\d+)", version):
        if part.isdigit():
            key.append((1, int(part), ""))
        elif part:
            # '~' sorts before everything, even the end of the string.
            key.append((0 if part.startswith("~") else 2, 0, part))
    key.append((0.5, 0, ""))
    return key


def cached_kernel(series: str) -> Path | None:
    """The cached Image of the newest ``series`` kernel already fetched, or None (no apt, no network)."""
    found = _cached_specs(series)
    if not found:
        return None
    pattern = _series_re(series)

    def order(item: tuple[KernelSpec, Path]) -> tuple[int, list[object]]:
        spec = item[0]
        m = pattern.match(spec.package)
        return (int(m.group(1)) if m else 0, _debian_version_key(spec.version))

    return max(found, key=order)[1]


def _download_deb(spec: KernelSpec, tmp: Path) -> Path:
    """apt-get download the package's .deb into ``tmp``; its path."""
    log.info("downloading %s:%s=%s", spec.package, ARCH, spec.version)
    cmd = ["apt-get", "download", f"{spec.package}:{ARCH}={spec.version}"]
    proc = _run(cmd, cwd=tmp, check=False)
    if proc.returncode != 0:
        raise ArmrasError(
            f"apt-get download {spec.package}:{ARCH}={spec.version} failed: {_last_error_line(proc)}"
        )
    debs = sorted(tmp.glob("*.deb"))
    if not debs:
        raise ArmrasError(f"apt-get download {spec.package} produced no .deb file")
    return debs[0]


def _add_deb(spec: KernelSpec, dest: Path) -> None:
    """Add the package's .deb to a cache entry made before the .deb was kept (the Image
    stays in place: another process may be booting it)."""
    with tempfile.TemporaryDirectory(prefix="armras-kernel-", dir=dest) as tmp_name:
        deb = _download_deb(spec, Path(tmp_name))
        os.replace(deb, dest / DEB_FILE)


def _download_and_extract(spec: KernelSpec, dest: Path) -> None:
    """apt-get download the .deb, unpack /boot/vmlinuz-* (and config-*) into ``dest``; keep the .deb."""
    with tempfile.TemporaryDirectory(prefix="armras-kernel-") as tmp_name:
        tmp = Path(tmp_name)
        debs = [_download_deb(spec, tmp)]
        root = tmp / "root"
        log.info("extracting %s", debs[0].name)
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        images = sorted((root / "boot").glob("vmlinuz-*"))
        if not images:
            raise ArmrasError(f"{debs[0].name} has no /boot/vmlinuz-*")

        staging = dest.parent / (dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(images[0], staging / "vmlinuz")
        configs = sorted((root / "boot").glob("config-*"))
        if configs:
            shutil.copyfile(configs[0], staging / "config")
        maps = sorted((root / "boot").glob("System.map-*"))
        if maps:  # symbolizes kernel PCs in crash reports (Debian's is a stub pointing at -dbg)
            shutil.copyfile(maps[0], staging / "System.map")
        shutil.copyfile(debs[0], staging / DEB_FILE)
        (staging / "SOURCE").write_text(
            f"package={spec.package}\nversion={spec.version}\narch={ARCH}\n"
            f"file=/boot/{images[0].name}\ndeb={debs[0].name}\n"
        )
        # Refuse to cache something that is not a bootable arm64 Image.
        from armras.guests.image import load_arm64_image

        load_arm64_image(staging / "vmlinuz")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)


def fetch_kernel(series: str, force: bool = False, setup_apt: bool = False) -> Path:
    """Path of the cached Image of the newest ``series`` kernel, downloading it if needed.

    Resolves the newest version through apt; if that one is cached (and not
    ``force``) it is reused without downloading.  If apt cannot be used but an
    older version of the series is cached, that one is returned with a warning.
    """
    try:
        spec = find_kernel(series, setup_apt)
    except ArmrasError as exc:
        fallback = None if force else cached_kernel(series)
        if fallback is None:
            raise
        log.warning("%s; using the cached %s", exc, fallback)
        return fallback
    dest = kernels_dir() / spec.cache_name
    image = dest / "vmlinuz"
    if image.is_file() and not force:
        log.info("using cached %s", image)
        if not (dest / DEB_FILE).is_file():
            try:
                _add_deb(spec, dest)
            except ArmrasError as exc:     # the Image is still usable; only its modules are missing
                log.warning("%s; %s's kernel modules are not available", exc, spec.package)
        return image
    try:
        _download_and_extract(spec, dest)
    except ArmrasError as exc:
        # The local lists may name a version the mirror has since dropped.
        if not setup_apt:
            raise ArmrasError(f"{exc} (apt's lists may be stale: sudo apt-get update, or rerun with "
                              "--setup-apt)") from None
        log.info("download failed; refreshing the apt lists and retrying once")
        _apt_update()
        spec = find_kernel(series, setup_apt)
        dest = kernels_dir() / spec.cache_name
        image = dest / "vmlinuz"
        if image.is_file() and not force:
            return image
        _download_and_extract(spec, dest)
    log.info("cached %s %s at %s", spec.package, spec.version, image)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m armras.guests.kernels",
        description="Fetch Debian arm64 reference kernels and print the cached Image paths.",
    )
    parser.add_argument("series", nargs="+", choices=sorted(_SERIES_PATTERNS), help="kernel series")
    parser.add_argument("--force", action="store_true", help="download again even if cached")
    parser.add_argument("--cached", action="store_true", help="only print what is cached; no apt")
    parser.add_argument("--setup-apt", action="store_true",
                        help="let armras add the arm64 architecture / an apt source and run apt-get update")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    status = 0
    for series in args.series:
        try:
            if args.cached:
                path = cached_kernel(series)
            else:
                path = fetch_kernel(series, force=args.force, setup_apt=args.setup_apt)
        except ArmrasError as exc:
            print(f"armras: {series}: {exc}", file=sys.stderr)
            status = 1
            continue
        if path is None:
            print(f"armras: {series}: not cached", file=sys.stderr)
            status = 1
            continue
        print(f"{series} {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
