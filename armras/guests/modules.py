"""Kernel modules from a cached Debian kernel package, for an initramfs.

`make kernels` keeps each kernel's ``.deb`` next to its Image (armras.guests.kernels,
``package.deb``). Its ``/lib/modules/<release>/`` has the modules but no ``modules.dep``
(Debian's postinst runs depmod), so dependencies come from each module's own
``.modinfo`` ``depends=`` field, the field depmod reads. 6.12 ships ``.ko.xz``; they are
decompressed here (Python's lzma), so the guest loads plain ELF objects with
finit_module() whether or not its kernel has CONFIG_MODULE_DECOMPRESS.

`module_files(image, ["einj"])` returns the initramfs entries: each module with its
dependencies at ``/lib/modules/<release>/<path in the package>`` and a ``modules.dep`` in
depmod's format (``path: dep dep``, the last dependency to be loaded first), which
armras's /init (`einjtest`) and a userland modprobe read.
"""
from __future__ import annotations

import io
import logging
import lzma
import re
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from armras.errors import ArmrasError
from armras.guests.kernels import DEB_FILE, SERIES, cached_kernel

log = logging.getLogger(__name__)

MODULE_DIR_RE = re.compile(r"^\./lib/modules/(?P<release>[^/]+)/(?P<path>kernel/.+\.ko(?P<xz>\.xz)?)$")
MAX_MODULE_SIZE = 64 << 20      # a .ko bigger than this is not a module we want in an initramfs
MAX_MODULES = 64                # a dependency closure bigger than this is refused


@dataclass(frozen=True)
class Module:
    name: str                   # as modinfo name= (dashes as underscores)
    release: str                # the kernel release, /lib/modules/<release>
    path: str                   # relative to /lib/modules/<release>, without .xz
    data: bytes                 # the ELF object
    depends: tuple[str, ...]


def module_name(text: str) -> str:
    """A module's canonical name: file stem, dashes as underscores (as kmod compares them)."""
    name = PurePosixPath(text).name
    for suffix in (".xz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")


def kernel_package(kernel: str) -> Path:
    """The cached .deb of `kernel`: a series ("6.1", "debian:6.12") or the path of a cached Image."""
    series = kernel.removeprefix("debian:")
    image = cached_kernel(series) if series in SERIES else Path(kernel)
    if image is None:
        raise ArmrasError(f"no cached {kernel} kernel: run `make kernels`")
    deb = image.parent / DEB_FILE
    if not deb.is_file():
        raise ArmrasError(f"{deb} is missing: run `make kernels` (it keeps each kernel's package for its modules)")
    return deb


def modinfo_depends(data: bytes, what: str) -> tuple[str, ...]:
    """The depends= of a module's .modinfo section."""
    try:
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".modinfo")
    except ELFError as e:
        raise ArmrasError(f"{what}: not an ELF object ({e})") from None
    if section is None:
        raise ArmrasError(f"{what}: no .modinfo section (not a kernel module)")
    for field in section.data().split(b"\0"):
        if field.startswith(b"depends="):
            return tuple(module_name(d) for d in field[len(b"depends="):].decode().split(",") if d)
    return ()


def _read_package(deb: Path, wanted: set[str]) -> tuple[dict[str, tuple[str, str]], dict[str, bytes]]:
    """One pass over the package: (name -> (release, member path) of every module, name -> data of `wanted`)."""
    index: dict[str, tuple[str, str]] = {}
    found: dict[str, bytes] = {}
    try:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise ArmrasError("dpkg-deb not found: reading a kernel package's modules needs dpkg") from None
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                m = MODULE_DIR_RE.match(member.name)
                if not m or not member.isfile():
                    continue
                name = module_name(m["path"])
                index[name] = (m["release"], m["path"])
                if name in wanted:
                    if member.size > MAX_MODULE_SIZE:
                        raise ArmrasError(f"{deb.name}: {m['path']} is {member.size} bytes")
                    f = tar.extractfile(member)
                    assert f is not None
                    data = f.read()
                    found[name] = lzma.decompress(data) if m["xz"] else data
    except (tarfile.TarError, lzma.LZMAError) as e:
        raise ArmrasError(f"{deb}: cannot read its modules ({e})") from None
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        if proc.wait() != 0:
            raise ArmrasError(f"dpkg-deb --fsys-tarfile {deb} failed: {err.splitlines()[-1] if err else proc.returncode}")
    return index, found


def resolve_modules(deb: Path, names: Sequence[str]) -> list[Module]:
    """`names` and everything they depend on, dependencies before their users."""
    wanted = {module_name(n) for n in names}
    data: dict[str, bytes] = {}
    index: dict[str, tuple[str, str]] = {}
    while wanted - data.keys():
        missing = wanted - data.keys()
        index, found = _read_package(deb, missing)
        absent = missing - found.keys()
        if absent:
            raise ArmrasError(f"{deb.parent.name}: no module {', '.join(sorted(absent))} in the package "
                              "(built in, or not built for this kernel)")
        data.update(found)
        for name in found:
            wanted.update(modinfo_depends(found[name], index[name][1]))
        if len(wanted) > MAX_MODULES:
            raise ArmrasError(f"{', '.join(names)}: more than {MAX_MODULES} modules with their dependencies")
    modules = {n: Module(n, index[n][0], index[n][1].removesuffix(".xz"), data[n],
                         modinfo_depends(data[n], index[n][1])) for n in wanted}
    ordered: list[Module] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise ArmrasError(f"module dependency cycle: {' -> '.join((*stack, name))}")
        if any(m.name == name for m in ordered):
            return
        for dep in modules[name].depends:
            visit(dep, (*stack, name))
        ordered.append(modules[name])

    for name in sorted(modules):
        visit(name, ())
    return ordered


def modules_dep(modules: Sequence[Module]) -> str:
    """depmod's modules.dep for `modules`: each line lists a module's whole dependency
    closure, the one to load first last."""
    by_name = {m.name: m for m in modules}
    lines = []
    for m in modules:
        closure: list[str] = []

        def add(name: str) -> None:
            for dep in by_name[name].depends:
                if by_name[dep].path not in closure:
                    add(dep)
                    closure.append(by_name[dep].path)

        add(m.name)
        lines.append(f"{m.path}:" + "".join(f" {p}" for p in reversed(closure)))
    return "".join(line + "\n" for line in lines)


def module_files(kernel: str, names: Sequence[str]) -> dict[str, bytes]:
    """Initramfs entries for `names` (and their dependencies) from `kernel`'s package."""
    modules = resolve_modules(kernel_package(kernel), names)
    releases = {m.release for m in modules}
    if len(releases) != 1:
        raise ArmrasError(f"modules from several kernel releases: {', '.join(sorted(releases))}")
    root = f"/lib/modules/{releases.pop()}"
    files = {f"{root}/{m.path}": m.data for m in modules}
    files[f"{root}/modules.dep"] = modules_dep(modules).encode()
    log.info("kernel modules: %s", ", ".join(f"{m.name} ({m.path})" for m in modules))
    return files


__all__ = ["Module", "kernel_package", "module_files", "modules_dep", "resolve_modules"]
