"""GHESv2 record writes stay inside their own 1 KiB error status block, and each write is
logged naming the source, its notification, the size, the block and the record count.

The hardware-errors blob is QEMU's etc/hardware_errors for two sources: two u64 error
status address registers, two u64 read-ack registers, then two 1024-byte blocks
(hw/acpi/ghes.c: ACPI_GHES_MAX_RAW_DATA_LENGTH); the offsets below are written out.
"""
from __future__ import annotations

import logging

import pytest
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

from armras.board.memory import PhysicalMemory, Region
from armras.ras.cper import memory_error_record
from armras.ras.ghes import ErrorSources
from armras.ras.hw_errors import HardwareErrorsLayout
from armras.ras.sources import Notify, SourceSpec

RAM_BASE = 0x4000_0000
RAM_SIZE = 0x20_0000
BLOB = RAM_BASE + 0x10_0000
BLOCK0 = BLOB + 32
BLOCK1 = BLOB + 32 + 1024
ACK1 = BLOB + 24


@pytest.fixture
def mem() -> PhysicalMemory:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    return PhysicalMemory(uc, [Region("ram", RAM_BASE, RAM_SIZE)])


@pytest.fixture
def sources(mem: PhysicalMemory) -> ErrorSources:
    s = ErrorSources(mem, HardwareErrorsLayout(BLOB, (1024, 1024)),
                     (SourceSpec(0, Notify.SEA), SourceSpec(1, Notify.GPIO)))
    s.install()
    return s


def test_a_record_leaves_the_next_sources_block_alone(mem: PhysicalMemory, sources: ErrorSources) -> None:
    gpio_record = memory_error_record(0x4045_6000)
    sources.by_id(1).record(gpio_record)
    after_blob = mem.read(BLOCK1 + 1024, 256)
    sources.by_id(0).record(memory_error_record(0x4012_3000))
    assert mem.read(BLOCK1, 1024) == gpio_record + bytes(1024 - len(gpio_record))
    assert mem.read(BLOCK1 + 1024, 256) == after_blob
    assert mem.read_u64(ACK1) == 0                  # source 1 still waits for its guest ack


def test_a_full_block_record_ends_at_the_block(mem: PhysicalMemory, sources: ErrorSources) -> None:
    mem.write(BLOCK1 + 1024, b"\x5A" * 64)           # whatever follows the blob in RAM
    sources.by_id(1).record(b"\x01" + bytes(1023))
    assert mem.read(BLOCK1 + 1024, 64) == b"\x5A" * 64


def test_each_record_is_logged(sources: ErrorSources, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="armras.ras.ghes"):
        sources.by_id(0).record(memory_error_record(0x4012_3000))
        sources.by_id(1).record(bytes(100))
    assert caplog.messages == [
        f"GHES source 0 (SEA): wrote 172-byte record at {BLOCK0:#x} (record #1)",
        f"GHES source 1 (GPIO): wrote 100-byte record at {BLOCK1:#x} (record #1)",
    ]


def test_unknown_source_ids_and_unreadable_registers_are_named(sources: ErrorSources, mem: PhysicalMemory) -> None:
    from armras.errors import ArmrasError
    from armras.ras.report import ErrorReporter

    with pytest.raises(ArmrasError) as e:
        sources.by_id(9)
    assert str(e.value) == "no GHES error source with id 9 (the board has 0 (SEA), 1 (GPIO))"
    with pytest.raises(ArmrasError) as e:
        ErrorReporter(sources, {Notify.SEA: None, Notify.GPIO: None}).source()  # type: ignore[dict-item]
    assert str(e.value) == "an error report needs a source id or a notification kind"
    # A hardware-errors blob outside RAM: the error status address register cannot be read.
    outside = ErrorSources(mem, HardwareErrorsLayout(0x1000_0000, (1024,)), (SourceSpec(0, Notify.SEA),))
    with pytest.raises(ArmrasError, match="GHES source 0: cannot read its error status address register"):
        outside.by_id(0).block_address()


def test_reports_check_and_notify_on_the_cpu_given(sources: ErrorSources, mem: PhysicalMemory) -> None:
    from armras.errors import ArmrasError
    from armras.ras.ghes import GhesSource
    from armras.ras.report import ErrorReporter

    calls: list[tuple[str, int, int | None]] = []

    class Recording:
        def check(self, spec: SourceSpec, cpu: int | None) -> None:
            calls.append(("check", spec.source_id, cpu))

        def notify(self, spec: SourceSpec, cpu: int | None) -> None:
            calls.append(("notify", spec.source_id, cpu))

    reporter = ErrorReporter(sources, {Notify.SEA: Recording(), Notify.GPIO: Recording()})
    reporter.report(reporter.source(notify=Notify.GPIO), memory_error_record(0x4045_6000), cpu=1)
    assert calls == [("check", 1, 1), ("notify", 1, 1)]
    with pytest.raises(ArmrasError) as e:
        ErrorReporter(sources, {Notify.SEA: Recording()})
    assert str(e.value) == "error source 1: the board cannot deliver GPIO notifications"
    layout = HardwareErrorsLayout(BLOB, (1024, 1024))
    with pytest.raises(ValueError, match="source index 2 outside the 2-source layout"):
        GhesSource(mem, layout, 2, SourceSpec(2, Notify.SEA))


def test_source_lists_that_do_not_match_the_layout_are_refused(mem: PhysicalMemory) -> None:
    layout = HardwareErrorsLayout(BLOB, (1024, 1024))
    with pytest.raises(ValueError, match="1 error sources given but the layout has 2"):
        ErrorSources(mem, layout, (SourceSpec(0, Notify.SEA),))
    with pytest.raises(ValueError, match=r"duplicate GHES source ids in \[3, 3\]"):
        ErrorSources(mem, layout, (SourceSpec(3, Notify.SEA), SourceSpec(3, Notify.GPIO)))
