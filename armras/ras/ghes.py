"""GHES / GHESv2 error sources backed by the hardware-errors area in guest RAM.

The platform side of QEMU's ghes_record_cper_errors(): a new record may only be written
once the guest has consumed the previous one. For a GHESv2 source that is the Read Ack
register (Linux ghes_ack_error writes ``(val & READ_ACK_PRESERVE) | READ_ACK_WRITE``,
i.e. 1); a GHES (v1) source has no such register, and firmware waits for the OS to clear
the block's Block Status (Linux ghes_clear_estatus). All register values are read back
from guest memory every time, since the guest owns them.
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

from armras.errors import ArmrasError, GuestAddressError, NotAcknowledged
from armras.events import EventLog
from armras.board.memory import PhysicalMemory
from armras.ras import cper
from armras.ras.hw_errors import HardwareErrorsLayout
from armras.ras.sources import BOARD_SOURCES, Notify, SourceSpec, notify_name

log = logging.getLogger(__name__)


class GhesSource:
    """One error source: its registers and its error status block."""

    def __init__(self, mem: PhysicalMemory, layout: HardwareErrorsLayout, index: int, spec: SourceSpec,
                 events: EventLog | None = None) -> None:
        if not 0 <= index < layout.num_sources:
            raise ValueError(f"source index {index} outside the {layout.num_sources}-source layout")
        self._mem = mem
        self._layout = layout
        self.index = index
        self.spec = spec
        self.records_written = 0
        self._events = events or EventLog()
        self.awaiting_ack = False      # a record was written and its acknowledgement not yet observed

    @property
    def source_id(self) -> int:
        return self.spec.source_id

    @property
    def notify_type(self) -> Notify:
        return self.spec.notify

    @property
    def block_length(self) -> int:
        return self._layout.block_length(self.index)

    @property
    def read_ack_address(self) -> int:
        return self._layout.read_ack_reg(self.index)

    @property
    def error_status_address(self) -> int:
        return self._layout.error_status_address_reg(self.index)

    def _read_register(self, pa: int, what: str) -> int:
        try:
            return self._mem.read_u64(pa)
        except GuestAddressError as e:
            raise GuestAddressError(
                f"GHES source {self.source_id}: cannot read its {what} register: {e}"
            ) from None

    def read_ack(self) -> int:
        """The Read Ack register (GHESv2); a v1 source reads as acknowledged once its block is clear."""
        if self.spec.ghes_version == 1:
            return int(self.block_status() == 0)
        return self._read_register(self.read_ack_address, "read-ack")

    def acknowledged(self) -> bool:
        return self.read_ack() != 0

    def block_address(self) -> int:
        addr = self._read_register(self.error_status_address, "error status address")
        if not self._mem.contains(addr, self.block_length):
            raise GuestAddressError(
                f"GHES source {self.source_id}: error status address register at "
                f"{self.error_status_address:#x} holds {addr:#x}, which is not a "
                f"{self.block_length}-byte block inside guest memory"
            )
        return addr

    def block_status(self) -> int:
        return self._mem.read_u32(self.block_address())

    def observe_ack(self) -> bool:
        """Whether the guest has acknowledged the last record since we last looked (an event)."""
        if not self.awaiting_ack:
            return False
        try:
            value = self.read_ack()
        except ArmrasError:
            return False           # the guest broke its registers: record() reports that
        if not value:
            return False
        self.awaiting_ack = False
        self._events.emit("read_ack", source=self.source_id, notify=notify_name(self.notify_type).lower(),
                          read_ack=f"{value:#x}", records_written=self.records_written)
        return True

    def record(self, estatus: bytes) -> None:
        """Write one error status block, as QEMU's ghes_record_cper_errors does."""
        estatus = bytes(estatus)
        self.observe_ack()
        if len(estatus) > self.block_length:
            raise ArmrasError(
                f"GHES source {self.source_id}: CPER record is {len(estatus)} bytes, "
                f"the error status block holds {self.block_length}"
            )
        block = self.block_address()
        if not self.acknowledged():
            how = ("read-ack register {:#x}=0".format(self.read_ack_address) if self.spec.ghes_version == 2
                   else f"block status {self.block_status():#x} not cleared")
            raise NotAcknowledged(
                f"GHES source {self.source_id}: the guest has not acknowledged the previous "
                f"error record ({how}); refusing to overwrite it"
            )
        if self.spec.ghes_version == 2:
            self._mem.write_u64(self.read_ack_address, 0)
        self._mem.write(block, estatus + bytes(self.block_length - len(estatus)))
        self.records_written += 1
        self.awaiting_ack = self._events.enabled
        if self._events.enabled:
            self._events.emit("cper", source=self.source_id, notify=notify_name(self.notify_type).lower(),
                              block=f"{block:#x}", **_summary(estatus))
        if log.isEnabledFor(logging.INFO):
            log.info("GHES source %d (%s): wrote %d-byte record at %#x (record #%d)",
                     self.source_id, notify_name(self.notify_type), len(estatus), block, self.records_written)


def _summary(estatus: bytes) -> dict[str, object]:
    """What an event log says about a record: its size, status, severity and sections."""
    summary: dict[str, object] = {"bytes": len(estatus)}
    try:
        st = cper.parse_generic_error_status(estatus)
    except ArmrasError as e:
        summary["invalid"] = str(e)      # a raw record from the control socket is checked, but be safe
        return summary
    summary.update(block_status=f"{st.block_status:#x}", severity=cper.severity_label(st.severity),
                   sections=[{"type": e.section_name, **({"pa": f"{e.physical_address:#x}"}
                                                          if e.physical_address is not None else {})}
                             for e in st.entries])
    return summary


class ErrorSources:
    """The board's error sources, indexed as in the hardware-errors area."""

    def __init__(self, mem: PhysicalMemory, layout: HardwareErrorsLayout,
                 sources: Sequence[SourceSpec] = BOARD_SOURCES, events: EventLog | None = None) -> None:
        if len(sources) != layout.num_sources:
            raise ValueError(
                f"{len(sources)} error sources given but the layout has {layout.num_sources}"
            )
        ids = [s.source_id for s in sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate GHES source ids in {ids}")
        self._mem = mem
        self.layout = layout
        self._sources = tuple(GhesSource(mem, layout, i, spec, events) for i, spec in enumerate(sources))

    def __iter__(self) -> Iterator[GhesSource]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def _known(self) -> str:
        return ", ".join(f"{s.source_id} ({notify_name(s.notify_type)})" for s in self._sources)

    def by_id(self, source_id: int) -> GhesSource:
        for s in self._sources:
            if s.source_id == source_id:
                return s
        raise ArmrasError(f"no GHES error source with id {source_id} (the board has {self._known()})")

    def first(self, notify: Notify) -> GhesSource:
        """The first source notified by `notify` (the one an injection of that kind uses)."""
        for s in self._sources:
            if s.notify_type is notify:
                return s
        raise ArmrasError(f"the board has no {notify_name(notify)}-notified error source "
                          f"(it has {self._known()}); describe one with --hest")

    def observe_acks(self) -> None:
        """Emit a read_ack event for each source whose waiting record the guest acknowledged."""
        for s in self._sources:
            if s.awaiting_ack:
                s.observe_ack()

    def install(self) -> None:
        """Lay the area out in guest RAM as firmware does at boot: every source acknowledged."""
        self._mem.write(self.layout.base, self.layout.initial_bytes())
        log.debug("hardware errors area installed at %#x (%d bytes)", self.layout.base, self.layout.size)

    def ack_state(self) -> list[dict]:
        state = []
        for s in self._sources:
            entry: dict = {
                "source_id": s.source_id,
                "notify": notify_name(s.notify_type),
                "read_ack": None,
                "acknowledged": None,
                "block_status": None,
                "records_written": s.records_written,
            }
            try:
                entry["read_ack"] = s.read_ack()
                entry["acknowledged"] = entry["read_ack"] != 0
                entry["block_status"] = s.block_status()
            except ArmrasError as e:
                entry["error"] = str(e)
            state.append(entry)
        return state
