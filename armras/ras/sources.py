"""The board's hardware error sources, as data: what the HEST describes and how each is notified.

Every source is a Generic Hardware Error Source (ACPI 6.4 18.3.2.7, HEST type 9) or a
GHESv2 (18.3.2.8, type 10: GHES plus a Read Ack register). Its notification structure
(Table 18.14) says how the OS learns that the error status block holds a record:

    polled  the OS reads the block every `poll_interval_ms` (Linux: a timer per source)
    gpio    GPIO-signal: the ACPI GED interrupt, then Notify on the error device (Linux hed.c)
    sea     Synchronous External Abort: the CPU that consumed the error takes an SEA
    sdei    Software Delegated Exception: firmware dispatches SDEI event `event` (its
            `priority` is normal or critical) on a CPU (Linux ghes_sdei_*_callback)

The default board keeps QEMU virt's two sources (SEA id 0, GPIO id 1, in QEMU's order, so
its HEST stays byte-comparable with QEMU's) and adds an SDEI source and a polled source,
as Arm's Neoverse reference designs and NVIDIA Grace firmware notify errors. A user
describes their own server's list in TOML (`--hest FILE`, or `[[hest.source]]` in a
scenario); `parse_sources` checks it, one clear line per mistake.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from armras.errors import ArmrasError

ERROR_BLOCK_SIZE = 1024                  # QEMU's ACPI_GHES_MAX_RAW_DATA_LENGTH: the default block length
MIN_BLOCK_LENGTH = 128                   # room for the estatus header, one section and its data
MAX_SOURCES = 16                         # what the firmware's hardware-errors area is sized for
HW_ERRORS_AREA = 64 * 1024               # armras.board.memmap.HW_ERRORS_SIZE: all registers and blocks
MAX_POLL_INTERVAL_MS = 3_600_000
SDEI_EVENT_MAX = 0x7FFF_FFFF             # SDEI event numbers are 32-bit signed, >= 0 (DEN 0054 4.1)
DEFAULT_SDEI_EVENT = 804                 # the RAS event of Arm's Neoverse RD-N2 firmware (TF-A)
DEFAULT_POLL_INTERVAL_MS = 1000


class Notify(enum.IntEnum):
    """Hardware Error Notification types (ACPI 6.4 Table 18.14)."""

    POLLED = 0
    EXTERNAL = 1
    LOCAL = 2
    SCI = 3
    NMI = 4
    CMCI = 5
    MCE = 6
    GPIO = 7
    SEA = 8
    SEI = 9
    GSIV = 10
    SDEI = 11


# The notification kinds the board can deliver, by the name users write.
NOTIFY_BY_NAME: dict[str, Notify] = {
    "polled": Notify.POLLED, "gpio": Notify.GPIO, "sea": Notify.SEA, "sdei": Notify.SDEI, "sei": Notify.SEI,
}
_DISPLAY = {Notify.POLLED: "polled", Notify.GPIO: "GPIO", Notify.SEA: "SEA", Notify.SDEI: "SDEI", Notify.SEI: "SEI"}


def notify_name(notify: int) -> str:
    try:
        return _DISPLAY.get(Notify(notify), Notify(notify).name)
    except ValueError:
        return f"notify-{notify}"


class SdeiPriority(enum.IntEnum):
    """SDEI event priority (DEN 0054 EVENT_GET_INFO EV_PRIORITY)."""

    NORMAL = 0
    CRITICAL = 1


@dataclass(frozen=True)
class SourceSpec:
    """One error source as the HEST describes it."""

    source_id: int
    notify: Notify
    ghes_version: int = 2                     # 1: GHES (type 9), 2: GHESv2 (type 10, Read Ack)
    block_length: int = ERROR_BLOCK_SIZE      # Error Status Block Length
    poll_interval_ms: int = 0                 # polled: the notification's Poll Interval
    event: int = 0                            # sdei: the notification's Vector (the event number)
    priority: SdeiPriority = SdeiPriority.NORMAL
    shared: bool = False                      # sdei: a shared event (any CPU), else private (per CPU)

    @property
    def vector(self) -> int:
        return self.event if self.notify is Notify.SDEI else 0

    def describe(self) -> str:
        what = f"source {self.source_id} ({notify_name(self.notify)}"
        if self.notify is Notify.SDEI:
            what += f" event {self.event}, {self.priority.name.lower()}"
        elif self.notify is Notify.POLLED:
            what += f" every {self.poll_interval_ms} ms"
        return what + ("" if self.ghes_version == 2 else ", GHES v1") + ")"


SOURCE_SEA = 0
SOURCE_GPIO = 1
SOURCE_SDEI = 2
SOURCE_POLLED = 3
BOARD_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(SOURCE_SEA, Notify.SEA),
    SourceSpec(SOURCE_GPIO, Notify.GPIO),
    SourceSpec(SOURCE_SDEI, Notify.SDEI, event=DEFAULT_SDEI_EVENT, priority=SdeiPriority.CRITICAL),
    SourceSpec(SOURCE_POLLED, Notify.POLLED, poll_interval_ms=DEFAULT_POLL_INTERVAL_MS),
)

_KEYS = {"id", "notify", "ghes", "block_length", "poll_interval_ms", "event", "priority", "shared"}


def _int_field(entry: Mapping[str, Any], key: str, where: str, low: int, high: int, default: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArmrasError(f"{where}: {key} = {value!r} is not an integer")
    if not low <= value <= high:
        raise ArmrasError(f"{where}: {key} = {value} is outside {low}..{high}")
    return value


def parse_source(entry: Mapping[str, Any], where: str) -> SourceSpec:
    """One `[[hest.source]]` table: id, notify, and the keys that kind takes."""
    if not isinstance(entry, Mapping):
        raise ArmrasError(f"{where}: expected a table with id and notify, got {entry!r}")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ArmrasError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(_KEYS))})")
    if "id" not in entry or "notify" not in entry:
        raise ArmrasError(f"{where}: every source needs id and notify")
    source_id = _int_field(entry, "id", where, 0, 0xFFFE, 0)   # u16; 0xFFFF means "none"
    name = entry["notify"]
    if not isinstance(name, str) or name.lower() not in NOTIFY_BY_NAME:
        raise ArmrasError(f"{where}: notify = {name!r} is not one of {', '.join(NOTIFY_BY_NAME)}")
    notify = NOTIFY_BY_NAME[name.lower()]
    ghes = entry.get("ghes", "v2")
    if ghes not in ("v1", "v2"):
        raise ArmrasError(f"{where}: ghes = {ghes!r} must be \"v1\" (GHES) or \"v2\" (GHESv2)")
    block_length = _int_field(entry, "block_length", where, MIN_BLOCK_LENGTH, HW_ERRORS_AREA // 2,
                              ERROR_BLOCK_SIZE)
    if block_length % 8:
        raise ArmrasError(f"{where}: block_length = {block_length} must be a multiple of 8")
    allowed = {Notify.POLLED: {"poll_interval_ms"}, Notify.SDEI: {"event", "priority", "shared"}}.get(notify, set())
    for key in ("poll_interval_ms", "event", "priority", "shared"):
        if key in entry and key not in allowed:
            raise ArmrasError(f"{where}: {key} does not apply to a {name} source")
    poll = event = 0
    priority, shared = SdeiPriority.NORMAL, False
    if notify is Notify.POLLED:
        poll = _int_field(entry, "poll_interval_ms", where, 1, MAX_POLL_INTERVAL_MS, DEFAULT_POLL_INTERVAL_MS)
    if notify is Notify.SDEI:
        if "event" not in entry:
            raise ArmrasError(f"{where}: an sdei source needs event (its SDEI event number)")
        # Event 0 is the SDEI signal event, which Linux refuses for GHES (ghes_sdei_register).
        event = _int_field(entry, "event", where, 1, SDEI_EVENT_MAX, 0)
        text = entry.get("priority", "normal")
        if not isinstance(text, str) or text.lower() not in ("normal", "critical"):
            raise ArmrasError(f"{where}: priority = {text!r} must be \"normal\" or \"critical\"")
        priority = SdeiPriority[text.upper()]
        shared = entry.get("shared", False)
        if not isinstance(shared, bool):
            raise ArmrasError(f"{where}: shared = {shared!r} must be true or false")
    return SourceSpec(source_id, notify, 1 if ghes == "v1" else 2, block_length, poll, event, priority, shared)


def check_sources(sources: Sequence[SourceSpec], where: str) -> tuple[SourceSpec, ...]:
    """A whole list: unique ids, one SDEI event per source, and it fits the firmware's area."""
    if not sources:
        raise ArmrasError(f"{where}: the HEST needs at least one error source")
    if len(sources) > MAX_SOURCES:
        raise ArmrasError(f"{where}: {len(sources)} error sources; the board has room for {MAX_SOURCES}")
    seen: set[int] = set()
    events: dict[int, SourceSpec] = {}
    for s in sources:
        if s.source_id in seen:
            raise ArmrasError(f"{where}: source id {s.source_id} is given twice")
        seen.add(s.source_id)
        if s.notify is Notify.SDEI:
            # Linux registers each SDEI source's event with that source as its argument:
            # a second source on the same event would fail to register.
            if s.event in events:
                raise ArmrasError(f"{where}: SDEI event {s.event} is the notification of both "
                                  f"source {events[s.event].source_id} and source {s.source_id}")
            events[s.event] = s
    area = 16 * len(sources) + sum(s.block_length for s in sources)
    if area > HW_ERRORS_AREA:
        raise ArmrasError(f"{where}: the error status blocks and registers need {area} bytes; "
                          f"the firmware's area holds {HW_ERRORS_AREA}")
    return tuple(sources)


def parse_sources(entries: Any, where: str) -> tuple[SourceSpec, ...]:
    """The value of `hest.source` (a list of tables) as SourceSpecs, checked."""
    if not isinstance(entries, list):
        raise ArmrasError(f"{where}: hest.source must be a list of tables ([[hest.source]])")
    return check_sources([parse_source(e, f"{where}: source #{i + 1}") for i, e in enumerate(entries)], where)


__all__ = [
    "BOARD_SOURCES", "DEFAULT_SDEI_EVENT", "ERROR_BLOCK_SIZE", "NOTIFY_BY_NAME", "Notify", "SOURCE_GPIO",
    "SOURCE_POLLED", "SOURCE_SDEI", "SOURCE_SEA", "SdeiPriority", "SourceSpec", "check_sources",
    "notify_name", "parse_source", "parse_sources",
]
