"""The ranges armras accepts for numbers from the user (command line, scenarios, control socket).

Every check raises ArmrasError with one line naming the value, so a bad number is refused
where it is typed instead of wrapping, overflowing or hanging later:

* RAM: 16 MiB to 16 GiB, a multiple of 2 MiB (the firmware tables take the top 2 MiB; the
  guest's RAM is one host mmap reserved up front).
* wall-clock timeouts: finite, > 0, at most 1,000,000 s (~11.5 days).
* guest-time triggers (`at=`): finite, >= 0, at most 1e9 s (fits the 64-bit instruction
  counter at 62.5 ticks per microsecond in deterministic mode).
* instruction counts (`insn=`, `--max-insns`): below 2^63 (the native counter is 64-bit).
* CPUs (`--smp`, `smp =`): 1 to 8 (GICv2's limit, as QEMU virt with gic-version=2).
* physical addresses: below 2^48 (the architecture's largest PA, FEAT_LPA aside); other
  64-bit fields (va=, mpidr=): below 2^64.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, TypeVar

from armras.errors import ArmrasError
from armras.board.memmap import GiB, MiB
from armras.board.vcpu import MAX_CPUS

MIN_RAM_SIZE = 16 * MiB
MAX_RAM_SIZE = 16 * GiB
RAM_ALIGN = 2 * MiB
MAX_TIMEOUT = 1_000_000.0
MAX_GUEST_SECONDS = 1e9
MAX_INSNS = (1 << 63) - 1
PA_BITS = 48
MAX_PA = (1 << PA_BITS) - 1
MAX_U64 = (1 << 64) - 1


def _show(value: object) -> str:
    """A number as the user gave it, shortened (a 5000-digit int is not worth printing)."""
    try:
        text = f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 9999 \
            else repr(value)
    except ValueError:
        text = "a huge number"
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:    # an int too large for a double
        return False


def check_cpus(count: int, what: str = "smp") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CPUS:
        raise ArmrasError(f"{what}: {_show(count)} is not a number of CPUs from 1 to {MAX_CPUS}")
    return count


T = TypeVar("T")


def _number(text: str, kind: Callable[[str], T], what: str) -> T:
    try:
        return kind(text)
    except ValueError:
        raise ArmrasError(f"{text!r} is not {what}") from None


def parse_timeout(text: str) -> float:
    return check_timeout(_number(text, float, "a number"), text)


def parse_insn_limit(text: str) -> int:
    return check_count(_number(text, lambda t: int(t, 0), "an integer"), text, minimum=1)


def parse_cpus(text: str) -> int:
    return check_cpus(_number(text, lambda t: int(t, 0), "an integer"), "--smp")


def as_argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type=` from one of these parsers: a bad value is argparse's usage error."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ArmrasError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


_SIZE = re.compile(r"^(\d+)([KMG]?)i?B?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A size as users write it: 512M, 1G, 65536 (bytes)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ArmrasError(f"{text!r} is not a size (e.g. 512M, 1G)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def parse_ram_size(text: str) -> int:
    """A guest RAM size as text, checked: 16M-16G, a multiple of 2M."""
    return check_ram_size(parse_size(text), f"{text!r}")


def check_cpu_index(index: int, what: str = "cpu") -> int:
    """A CPU named by an injection (whether the board has it is checked when it happens)."""
    if not 0 <= index < MAX_CPUS:
        raise ArmrasError(f"{what}={_show(index)} is not a CPU index (0-{MAX_CPUS - 1})")
    return index


MAX_SOURCE_ID = 0xFFFE          # HEST source ids are u16; 0xFFFF means "none"


def check_source_id(value: int, what: str = "source") -> int:
    """A HEST error source id (whether the board has it is checked when it is used)."""
    if not 0 <= value <= MAX_SOURCE_ID:
        raise ArmrasError(f"{what}={_show(value)} is not a HEST source id (0-{MAX_SOURCE_ID})")
    return value


def check_ram_size(size: int, what: str = "memory") -> int:
    if not MIN_RAM_SIZE <= size <= MAX_RAM_SIZE or size % RAM_ALIGN:
        raise ArmrasError(f"{what}: {_show(size)} bytes is not a RAM size armras supports "
                          "(16M to 16G, a multiple of 2M)")
    return size


def check_timeout(value: float, what: str = "timeout") -> float:
    """Wall-clock seconds: finite, positive, at most MAX_TIMEOUT."""
    if not _finite(value) or not 0 < value <= MAX_TIMEOUT:
        raise ArmrasError(f"{what}: {_show(value)} is not a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return float(value)


def check_guest_seconds(value: float, what: str = "at") -> float:
    if not _finite(value) or not 0 <= value <= MAX_GUEST_SECONDS:
        raise ArmrasError(f"{what}: {_show(value)} is not a guest time in seconds in [0, {MAX_GUEST_SECONDS:g}]")
    return float(value)


def check_count(value: int, what: str, minimum: int = 0) -> int:
    """An instruction count for the native 64-bit counter: minimum <= value < 2^63."""
    if not minimum <= value <= MAX_INSNS:
        raise ArmrasError(f"{what}: {_show(value)} is out of range ({minimum} to 2^63-1)")
    return value


def check_pa(value: int, what: str = "pa") -> int:
    """A physical address the architecture can express (below 2^48)."""
    if not 0 <= value <= MAX_PA:
        raise ArmrasError(f"{what}: {_show(value)} is not a physical address (must be below 2^{PA_BITS})")
    return value


def check_u64(value: int, what: str) -> int:
    if not 0 <= value <= MAX_U64:
        raise ArmrasError(f"{what}: {_show(value)} does not fit in 64 bits (0 to 2^64-1)")
    return value
