"""A pure-Python cpio "newc" initramfs writer (and a minimal reader for tests).

Format (Documentation/driver-api/early-userspace/buffer-format.rst): each
entry is a 110-byte ASCII header ``070701`` + 13 fields of 8 hex digits
(ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
rdevminor, namesize, check), then the NUL-terminated name padded so that
header+name is a multiple of 4, then the data padded to a multiple of 4.
The archive ends with an entry named ``TRAILER!!!``.

No root and no external tools are needed: the /dev/console device node is
just a header with S_IFCHR and rdev 5:1.  Output is reproducible (mtime 0,
uid/gid 0, inodes numbered in order).
"""

from __future__ import annotations

import argparse
import gzip
import stat
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from armras.errors import ArmrasError, ImageError

NEWC_MAGIC = b"070701"
NEWC_CRC_MAGIC = b"070702"
HEADER_LEN = 110
TRAILER = "TRAILER!!!"

BASE_DIRS = ("dev", "proc", "sys", "tmp")
CONSOLE_MAJOR = 5
CONSOLE_MINOR = 1

_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
           "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")


@dataclass(frozen=True)
class CpioEntry:
    name: str  # as stored: no leading "/"
    mode: int
    data: bytes = b""
    ino: int = 0
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0
    header_offset: int = 0  # where the entry starts in the archive (reader only)
    data_offset: int = 0  # where its data starts in the archive (reader only)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_chr(self) -> bool:
        return stat.S_ISCHR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _encode_entry(entry: CpioEntry) -> bytes:
    name = entry.name.encode() + b"\x00"
    values = (entry.ino, entry.mode, entry.uid, entry.gid, entry.nlink, entry.mtime, len(entry.data),
              entry.devmajor, entry.devminor, entry.rdevmajor, entry.rdevminor, len(name), 0)
    for field_name, value in zip(_FIELDS, values):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"cpio field {field_name}={value} of {entry.name!r} does not fit in 32 bits")
    header = NEWC_MAGIC + b"".join(b"%08X" % v for v in values)
    assert len(header) == HEADER_LEN
    out = header + name + b"\x00" * _pad4(HEADER_LEN + len(name))
    return out + entry.data + b"\x00" * _pad4(len(entry.data))


def _normalize(path: str) -> str:
    p = PurePosixPath("/" + path.lstrip("/"))
    parts = [x for x in p.parts[1:] if x not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad initramfs path {path!r}")
    return "/".join(parts)


def _file_mode(data: bytes) -> int:
    """0755 for executables (ELF or #! script), 0644 otherwise."""
    perm = 0o755 if data[:4] == b"\x7fELF" or data[:2] == b"#!" else 0o644
    return stat.S_IFREG | perm


def build_initramfs(init_binary: bytes, extra: dict[str, bytes] | None = None,
                    compress: bool = False) -> bytes:
    """A newc archive with /dev /proc /sys /tmp, /dev/console (c 5:1), /init (0755) and ``extra``.

    ``extra`` maps absolute paths to file contents; missing parent directories
    are created (0755).  Executables (ELF, #!) get 0755, other files 0644.
    ``compress`` gzips the archive (the kernel unpacks it with CONFIG_RD_GZIP).
    """
    dirs: list[str] = list(BASE_DIRS)
    files: list[tuple[str, bytes]] = []
    for path, data in (extra or {}).items():
        name = _normalize(path)
        if name == "init" or name == "dev/console" or name in BASE_DIRS:
            raise ValueError(f"initramfs path {path!r} is reserved")
        parents = PurePosixPath(name).parents
        for parent in reversed(list(parents)[:-1]):  # skip "."
            if str(parent) not in dirs:
                dirs.append(str(parent))
        files.append((name, bytes(data)))

    entries: list[CpioEntry] = []

    def add(name: str, mode: int, data: bytes = b"", nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> None:
        entries.append(CpioEntry(name=name, mode=mode, data=data, ino=len(entries) + 1, nlink=nlink,
                                 rdevmajor=rdev[0], rdevminor=rdev[1]))

    for d in sorted(dirs, key=lambda x: (x.count("/"), x)):
        add(d, stat.S_IFDIR | (0o1777 if d == "tmp" else 0o755), nlink=2)
    add("dev/console", stat.S_IFCHR | 0o600, rdev=(CONSOLE_MAJOR, CONSOLE_MINOR))
    add("init", stat.S_IFREG | 0o755, bytes(init_binary))
    for name, data in sorted(files):
        add(name, _file_mode(data), data)
    entries.append(CpioEntry(name=TRAILER, mode=0, ino=0, nlink=1))

    archive = b"".join(_encode_entry(e) for e in entries)
    if compress:
        return gzip.compress(archive, compresslevel=9, mtime=0)
    return archive


def write_initramfs(path: Path | str, init_binary: bytes, extra: dict[str, bytes] | None = None,
                    compress: bool = False) -> Path:
    """Build the archive and write it to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(build_initramfs(init_binary, extra, compress=compress))
    return path


def read_cpio(data: bytes) -> list[CpioEntry]:
    """Parse a newc archive (gzip-compressed or not) up to its trailer, which is not returned.

    Strict about the layout: raises ImageError on a bad magic, a truncated
    entry, misaligned padding or a missing trailer.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    entries: list[CpioEntry] = []
    off = 0
    while True:
        if off % 4:
            raise ImageError(f"cpio: entry at {off:#x} is not 4-byte aligned")
        if len(data) < off + HEADER_LEN:
            raise ImageError(f"cpio: truncated header at {off:#x} (no {TRAILER})")
        magic = data[off:off + 6]
        if magic not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise ImageError(f"cpio: bad magic {magic!r} at {off:#x} (not a newc archive)")
        try:
            fields = dict(zip(_FIELDS, (int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13))))
        except ValueError:
            raise ImageError(f"cpio: non-hex header field at {off:#x}") from None
        name_start = off + HEADER_LEN
        name_end = name_start + fields["namesize"]
        if fields["namesize"] == 0 or len(data) < name_end or data[name_end - 1] != 0:
            raise ImageError(f"cpio: bad or truncated name at {off:#x}")
        name = data[name_start:name_end - 1].decode()
        data_start = name_end + _pad4(name_end - off)
        if any(data[name_end:data_start]):
            raise ImageError(f"cpio: non-zero name padding after {name!r}")
        data_end = data_start + fields["filesize"]
        if len(data) < data_end:
            raise ImageError(f"cpio: truncated data of {name!r}")
        if name == TRAILER:
            return entries
        entries.append(CpioEntry(
            name=name, mode=fields["mode"], data=data[data_start:data_end], ino=fields["ino"],
            uid=fields["uid"], gid=fields["gid"], nlink=fields["nlink"], mtime=fields["mtime"],
            devmajor=fields["devmajor"], devminor=fields["devminor"],
            rdevmajor=fields["rdevmajor"], rdevminor=fields["rdevminor"],
            header_offset=off, data_offset=data_start,
        ))
        off = data_end + _pad4(fields["filesize"])
        if any(data[data_end:off]):
            raise ImageError(f"cpio: non-zero data padding after {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m armras.guests.initramfs",
        description="Build a newc initramfs with /dev/console and the given /init (no root needed).",
    )
    parser.add_argument("init", type=Path, help="the /init executable (static)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="archive to write")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the archive")
    parser.add_argument("--add", action="append", default=[], metavar="DEST=SRC",
                        help="also add host file SRC as DEST (e.g. /bin/tool=build/tool)")
    parser.add_argument("--module", action="append", default=[], metavar="NAME",
                        help="also add kernel module NAME and its dependencies from --kernel's Debian package "
                             "under /lib/modules/<release>/, with a modules.dep (e.g. --module einj)")
    parser.add_argument("--kernel", metavar="SERIES|IMAGE",
                        help="the cached kernel (6.1, 6.12 or the path of its Image) whose modules --module takes")
    parser.add_argument("--list", action="store_true", help="print the entries written")
    args = parser.parse_args(argv)
    try:
        init = args.init.read_bytes()
        extra: dict[str, bytes] = {}
        for item in args.add:
            dest, sep, src = item.partition("=")
            if not sep or not dest or not src:
                parser.error(f"--add wants DEST=SRC, got {item!r}")
            extra[dest] = Path(src).read_bytes()
        if args.module:
            if args.kernel is None:
                parser.error("--module needs --kernel")
            from armras.guests.modules import module_files
            extra.update(module_files(args.kernel, args.module))
        write_initramfs(args.output, init, extra, compress=args.gzip)
    except OSError as exc:
        print(f"armras: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except (ValueError, ArmrasError) as exc:
        print(f"armras: {exc}", file=sys.stderr)
        return 1
    if args.list:
        for e in read_cpio(args.output.read_bytes()):
            print(f"{stat.filemode(e.mode)} {e.rdevmajor}:{e.rdevminor} {len(e.data):>9} /{e.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
