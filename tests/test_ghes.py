import struct

import pytest
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc

from armras.errors import ArmrasError, GuestAddressError, NotAcknowledged
from armras.board.memory import PhysicalMemory, Region
from armras.ras.cper import memory_error_record, parse_generic_error_status
from armras.ras.ghes import ErrorSources, GhesSource
from armras.ras.hw_errors import HardwareErrorsLayout
from armras.ras.sources import ERROR_BLOCK_SIZE, Notify, SourceSpec

RAM_BASE = 0x4000_0000
RAM_SIZE = 0x20_0000
BLOB = RAM_BASE + 0x10_0000
PA1 = 0x4012_3000
PA2 = 0x4045_6000


@pytest.fixture
def mem() -> PhysicalMemory:
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    return PhysicalMemory(uc, [Region("ram", RAM_BASE, RAM_SIZE)])


# QEMU virt's two sources (hw/acpi/ghes.c): SEA id 0, GPIO id 1, 1 KiB blocks.
QEMU_SOURCES = (SourceSpec(0, Notify.SEA), SourceSpec(1, Notify.GPIO))


@pytest.fixture
def layout() -> HardwareErrorsLayout:
    return HardwareErrorsLayout(BLOB, (1024, 1024))


@pytest.fixture
def sources(mem, layout) -> ErrorSources:
    s = ErrorSources(mem, layout, QEMU_SOURCES)
    s.install()
    return s


def guest_handles(mem: PhysicalMemory, source: GhesSource) -> None:
    """What Linux does after reading a record: ghes_clear_estatus, then ghes_ack_error."""
    block = mem.read_u64(source.error_status_address)
    mem.write_u32(block, 0)
    val = mem.read_u64(source.read_ack_address)
    mem.write_u64(source.read_ack_address, (val & ~1) | 1)   # QEMU ghes.c: preserve ~1, write 1


def test_install_writes_the_blob(mem, layout, sources):
    raw = mem.read(BLOB, layout.size)
    assert len(raw) == 2080
    assert struct.unpack_from("<4Q", raw, 0) == (BLOB + 32, BLOB + 32 + 1024, 1, 1)
    assert raw[32:] == bytes(2048)


def test_sources_by_id_and_iteration(sources):
    assert [(s.source_id, s.notify_type) for s in sources] == [(0, 8), (1, 7)]   # ACPI 6.4 table 18.14: SEA 8, GPIO 7
    assert len(sources) == 2
    assert sources.by_id(1).notify_type == 7
    with pytest.raises(ArmrasError, match="no GHES error source with id 8"):
        sources.by_id(8)


def test_initial_state_is_acknowledged(sources, layout):
    sea = sources.by_id(0)
    assert sea.read_ack() == 1 and sea.acknowledged()
    assert sea.block_address() == layout.error_block(0)
    assert sea.block_status() == 0
    assert sources.ack_state() == [
        {"source_id": 0, "notify": "SEA", "read_ack": 1, "acknowledged": True,
         "block_status": 0, "records_written": 0},
        {"source_id": 1, "notify": "GPIO", "read_ack": 1, "acknowledged": True,
         "block_status": 0, "records_written": 0},
    ]


def test_record_writes_block_and_clears_read_ack(mem, layout, sources):
    sea = sources.by_id(0)
    rec = memory_error_record(PA1)
    sea.record(rec)
    block = layout.error_block(0)
    assert mem.read(block, 172) == rec
    assert mem.read(block + 172, ERROR_BLOCK_SIZE - 172) == bytes(ERROR_BLOCK_SIZE - 172)
    assert mem.read_u64(layout.read_ack_reg(0)) == 0
    assert not sea.acknowledged()
    assert sea.block_status() == 1
    assert sea.records_written == 1
    # the other source is untouched
    assert mem.read_u64(layout.read_ack_reg(1)) == 1
    assert mem.read(layout.error_block(1), ERROR_BLOCK_SIZE) == bytes(ERROR_BLOCK_SIZE)
    # what the guest would read back parses
    st = parse_generic_error_status(mem.read(block, ERROR_BLOCK_SIZE))
    assert st.entries[0].physical_address == PA1


def test_second_record_before_ack_is_refused(mem, layout, sources):
    sea = sources.by_id(0)
    first = memory_error_record(PA1)
    sea.record(first)
    with pytest.raises(NotAcknowledged) as exc:
        sea.record(memory_error_record(PA2))
    msg = str(exc.value)
    assert msg == (
        f"GHES source 0: the guest has not acknowledged the previous error record "
        f"(read-ack register {layout.read_ack_reg(0):#x}=0); refusing to overwrite it"
    )
    assert mem.read(layout.error_block(0), 172) == first
    assert sea.records_written == 1
    assert sources.ack_state()[0]["acknowledged"] is False


def test_block_status_cleared_alone_is_not_an_ack(mem, layout, sources):
    sea = sources.by_id(0)
    sea.record(memory_error_record(PA1))
    mem.write_u32(layout.error_block(0), 0)
    with pytest.raises(NotAcknowledged):
        sea.record(memory_error_record(PA2))


def test_record_after_guest_ack_is_accepted(mem, layout, sources):
    sea = sources.by_id(0)
    sea.record(memory_error_record(PA1) + b"\xAA" * 100)
    guest_handles(mem, sea)
    assert mem.read_u64(layout.read_ack_reg(0)) == 1
    assert sea.acknowledged() and sea.block_status() == 0
    second = memory_error_record(PA2)
    sea.record(second)
    block = layout.error_block(0)
    assert mem.read(block, 172) == second
    assert mem.read(block + 172, 100) == bytes(100)      # stale tail of the first record cleared
    assert sea.records_written == 2
    assert parse_generic_error_status(mem.read(block, ERROR_BLOCK_SIZE)).entries[0].physical_address == PA2


def test_sources_are_independent(mem, layout, sources):
    sources.by_id(0).record(memory_error_record(PA1))
    sources.by_id(1).record(memory_error_record(PA2))
    assert mem.read_u64(layout.read_ack_reg(1)) == 0
    assert struct.unpack_from("<Q", mem.read(layout.error_block(1) + 92 + 16, 8))[0] == PA2
    assert [s["records_written"] for s in sources.ack_state()] == [1, 1]


def test_oversized_record_is_refused(mem, layout, sources):
    sea = sources.by_id(0)
    with pytest.raises(ArmrasError, match="1025 bytes, the error status block holds 1024"):
        sea.record(bytes(ERROR_BLOCK_SIZE + 1))
    assert sea.read_ack() == 1 and sea.records_written == 0
    sea.record(bytes([1]) + bytes(ERROR_BLOCK_SIZE - 1))      # exactly one block is fine


@pytest.mark.parametrize("bogus", [0, 0x1000, RAM_BASE + RAM_SIZE - 1000, 0xFFFF_FFFF_FFFF_FFF0])
def test_bogus_error_status_address(mem, layout, sources, bogus):
    sea = sources.by_id(0)
    mem.write_u64(layout.error_status_address_reg(0), bogus)
    with pytest.raises(GuestAddressError, match=f"holds {bogus:#x}, which is not a 1024-byte block"):
        sea.record(memory_error_record(PA1))
    # nothing was changed: the ack is still there, nothing written
    assert sea.read_ack() == 1 and sea.records_written == 0
    with pytest.raises(ArmrasError):
        sea.block_status()
    state = sources.ack_state()[0]
    assert state["read_ack"] == 1 and state["block_status"] is None
    assert "not a 1024-byte block" in state["error"]


def test_error_status_address_may_point_elsewhere_in_ram(mem, layout, sources):
    sea = sources.by_id(0)
    elsewhere = RAM_BASE + 0x8000
    mem.write_u64(layout.error_status_address_reg(0), elsewhere)
    sea.record(memory_error_record(PA1))
    assert mem.read(elsewhere, 172) == memory_error_record(PA1)


def test_layout_outside_ram_gives_clean_error():
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    mem = PhysicalMemory(uc, [Region("ram", RAM_BASE, RAM_SIZE)])
    sources = ErrorSources(mem, HardwareErrorsLayout(RAM_BASE + RAM_SIZE))
    with pytest.raises(GuestAddressError):
        sources.install()
    with pytest.raises(GuestAddressError, match="GHES source 0: cannot read its read-ack register"):
        sources.by_id(0).read_ack()


def test_sources_must_match_layout(mem, layout):
    with pytest.raises(ValueError):
        ErrorSources(mem, layout, sources=(SourceSpec(0, Notify.SEA),))


def test_record_events_name_each_section_and_an_invalid_record(mem, layout):
    from armras.events import EventLog
    from armras.ras.cper import arm_processor_record

    events = EventLog(keep=10)
    sources = ErrorSources(mem, layout, QEMU_SOURCES, events=events)
    sources.install()
    sea = sources.by_id(0)
    sea.record(arm_processor_record(0x8000_0001))
    guest_handles(mem, sea)
    sea.record(memory_error_record(PA1))
    cper_events = [r for r in events.records if r["event"] == "cper"]
    # An ARM processor section has no physical address field: no "pa" key at all.
    assert cper_events[0]["sections"] == [{"type": "ARM processor error"}]
    assert cper_events[1]["sections"] == [{"type": "memory error", "pa": f"{PA1:#x}"}]
    guest_handles(mem, sea)
    sea.record(b"\xff" * 20)                     # a block the guest would refuse (raw bytes from a user)
    last = [r for r in events.records if r["event"] == "cper"][-1]
    assert last["bytes"] == 20 and "sections" not in last
    assert isinstance(last["invalid"], str) and last["invalid"] and last["invalid"] != "None"


def test_read_ack_is_reported_once_per_acknowledged_record(mem, layout):
    from armras.events import EventLog

    events = EventLog(keep=20)
    sources = ErrorSources(mem, layout, QEMU_SOURCES, events=events)
    sources.install()
    sea = sources.by_id(0)
    assert sea.observe_ack() is False                  # nothing written yet (the installed ack is not news)
    sea.record(memory_error_record(PA1))
    assert sea.observe_ack() is False                  # written, not yet acknowledged
    guest_handles(mem, sea)
    assert sea.observe_ack() is True
    assert sea.observe_ack() is False                  # reported once
    acks = [r for r in events.records if r["event"] == "read_ack"]
    assert [{k: r[k] for k in ("source", "notify", "read_ack", "records_written")} for r in acks] == [
        {"source": 0, "notify": "sea", "read_ack": "0x1", "records_written": 1}]
    (cper,) = [r for r in events.records if r["event"] == "cper"]
    assert cper["block"] == f"{mem.read_u64(sea.error_status_address):#x}" == f"{BLOB + 32:#x}"


def test_observe_ack_of_a_source_whose_registers_the_guest_broke(mem, layout):
    from armras.events import EventLog

    events = EventLog(keep=20)
    sources = ErrorSources(mem, layout, (SourceSpec(0, Notify.SEA, ghes_version=1), SourceSpec(1, Notify.GPIO)),
                           events=events)
    sources.install()
    v1 = sources.by_id(0)
    v1.record(memory_error_record(PA1))
    mem.write_u64(v1.error_status_address, 0xDEAD_0000)      # the block's address now points nowhere
    assert v1.observe_ack() is False
    assert [r["event"] for r in events.records] == ["cper"]
