"""Error sources as data: HEST descriptions, GHES v1/v2 entries, and one record-then-notify path.

Layouts from ACPI 6.4 18.3.2.7 (GHES, 64 bytes) / 18.3.2.8 (GHESv2, 92 bytes) and Table
18.14 (notification structure: type, length 28, config write enable, poll interval at 4,
vector at 8); iasl (acpica-tools) must accept every combination.
"""
from __future__ import annotations

import itertools
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from armras.board.machine import Machine, MachineConfig
from armras.drive.hestfile import load_hest_file
from armras.drive.inject import parse_inject_spec, perform
from armras.errors import ArmrasError, NotAcknowledged
from armras.firmware.acpi import board_platform, build_acpi_tables
from armras.firmware.acpi.hest import parse_hest_entries
from armras.ras import cper
from armras.ras.sources import Notify, SdeiPriority, SourceSpec, parse_sources
from conftest import require_tool

RAM_BASE, RAM_SIZE = 0x4000_0000, 512 << 20


def _tables(sources: tuple[SourceSpec, ...]):
    platform = board_platform(RAM_BASE, RAM_SIZE, (0,), sources)
    return platform, build_acpi_tables(platform, RAM_BASE + RAM_SIZE - (2 << 20))


# --- parsing a description -----------------------------------------------------------------
def test_parse_sources_reads_every_key() -> None:
    specs = parse_sources([
        {"id": 7, "notify": "sdei", "event": 805, "priority": "critical", "shared": True},
        {"id": 9, "notify": "polled", "poll_interval_ms": 250, "ghes": "v1", "block_length": 4096},
        {"id": 3, "notify": "SEA"},
    ], "t")
    assert specs == (
        SourceSpec(7, Notify.SDEI, event=805, priority=SdeiPriority.CRITICAL, shared=True),
        SourceSpec(9, Notify.POLLED, ghes_version=1, block_length=4096, poll_interval_ms=250),
        SourceSpec(3, Notify.SEA),
    )


@pytest.mark.parametrize("entries, message", [
    ([], "at least one error source"),
    ([{"notify": "sea"}], "needs id and notify"),
    ([{"id": 1, "notify": "nmi"}], "notify = 'nmi' is not one of"),
    ([{"id": 65535, "notify": "sea"}], "id = 65535 is outside 0..65534"),
    ([{"id": 1, "notify": "sea"}, {"id": 1, "notify": "gpio"}], "source id 1 is given twice"),
    ([{"id": 1, "notify": "sdei"}], "needs event"),
    ([{"id": 1, "notify": "sdei", "event": 0}], "event = 0 is outside 1..2147483647"),
    ([{"id": 1, "notify": "sdei", "event": 804}, {"id": 2, "notify": "sdei", "event": 804}],
     "SDEI event 804 is the notification of both source 1 and source 2"),
    ([{"id": 1, "notify": "sdei", "event": 5, "priority": "urgent"}], "must be \"normal\" or \"critical\""),
    ([{"id": 1, "notify": "polled", "poll_interval_ms": 0}], "poll_interval_ms = 0 is outside"),
    ([{"id": 1, "notify": "polled", "poll_interval_ms": float("inf")}], "is not an integer"),
    ([{"id": 1, "notify": "sea", "event": 3}], "event does not apply to a sea source"),
    ([{"id": 1, "notify": "gpio", "ghes": "v3"}], "ghes = 'v3'"),
    ([{"id": 1, "notify": "gpio", "block_length": 100}], "block_length = 100 is outside"),
    ([{"id": 1, "notify": "gpio", "block_length": 1028}], "multiple of 8"),
    ([{"id": 1, "notify": "gpio", "colour": "red"}], "unknown key 'colour'"),
    ([{"id": i, "notify": "gpio"} for i in range(17)], "17 error sources; the board has room for 16"),
    ([{"id": i, "notify": "gpio", "block_length": 32768} for i in range(2)], "need 65568 bytes"),
    ("sea", "must be a list of tables"),
    ([True], "expected a table"),
])
def test_bad_descriptions_get_one_clear_line(entries, message: str) -> None:
    with pytest.raises(ArmrasError, match=None) as e:
        parse_sources(entries, "hest.toml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_hest_file_from_the_command_line(tmp_path: Path) -> None:
    good = tmp_path / "hest.toml"
    good.write_text('[[hest.source]]\nid = 4\nnotify = "polled"\npoll_interval_ms = 50\n')
    assert load_hest_file(good) == (SourceSpec(4, Notify.POLLED, poll_interval_ms=50),)
    bad = tmp_path / "bad.toml"
    for text, message in [("[[source]]\nid = 1\n", "expected [[hest.source]]"),
                          ("[hest]\nsource = []\nx = 1\n", "unknown key hest.x"),
                          ("[[hest.source\n", "not valid TOML")]:
        bad.write_text(text)
        with pytest.raises(ArmrasError, match=re_escape(message)):
            load_hest_file(bad)
    proc = subprocess.run([sys.executable, "-m", "armras", "run", "--hest", str(bad), "x.elf"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "not valid TOML" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "armras", "hest", "--hest", str(good)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Source 4: GHESv2 (type 10)" in proc.stdout
    assert "0 [Polled] (structure length 28, poll interval 50 ms, vector 0)" in proc.stdout


# --- the HEST built from a description -----------------------------------------------------
def test_ghes_v1_and_v2_entries_byte_for_byte() -> None:
    sources = (SourceSpec(5, Notify.SDEI, event=0x1234, priority=SdeiPriority.CRITICAL),
               SourceSpec(6, Notify.POLLED, ghes_version=1, poll_interval_ms=100, block_length=2048))
    platform, tables = _tables(sources)
    hest = tables.table("HEST")
    assert len(hest) == 36 + 4 + 92 + 64
    assert struct.unpack_from("<I", hest, 36)[0] == 2
    v2, v1 = hest[40:132], hest[132:196]
    assert struct.unpack_from("<HHH", v2) == (10, 5, 0xFFFF)
    assert struct.unpack_from("<HHH", v1) == (9, 6, 0xFFFF)
    # notification structure at entry offset 32: type, length, cwe, poll interval, vector
    assert struct.unpack_from("<BBHII", v2, 32) == (11, 28, 0, 0, 0x1234)
    assert struct.unpack_from("<BBHII", v1, 32) == (0, 28, 0, 100, 0)
    assert struct.unpack_from("<I", v1, 60)[0] == 2048                 # error status block length
    assert struct.unpack_from("<I", v1, 16)[0] == 2048                 # max raw data length
    hw = platform.hw_errors
    # The area: 2 address registers, 2 read-ack registers, then block 0 (1 KiB) and block 1.
    assert hw.error_block(0) == hw.base + 32 and hw.error_block(1) == hw.base + 32 + 1024
    assert hw.size == 32 + 1024 + 2048
    entries = parse_hest_entries(hest)
    assert [e.size for e in entries] == [92, 64] and entries[1].read_ack_register is None


def _combinations() -> list[tuple[SourceSpec, ...]]:
    kinds = [SourceSpec(0, Notify.SEA), SourceSpec(0, Notify.GPIO),
             SourceSpec(0, Notify.SDEI, event=77, priority=SdeiPriority.CRITICAL, shared=True),
             SourceSpec(0, Notify.POLLED, poll_interval_ms=10), SourceSpec(0, Notify.SEI)]
    combos = []
    for n in (1, 2, 5):
        for chosen in itertools.combinations(kinds, n):
            for version in (1, 2):
                combos.append(tuple(SourceSpec(i + 10, s.notify, version, 1024 + 8 * i, s.poll_interval_ms,
                                               s.event, s.priority, s.shared) for i, s in enumerate(chosen)))
    return combos


def test_iasl_accepts_every_combination(tmp_path: Path) -> None:
    iasl = require_tool("iasl", "apt-get install acpica-tools")
    for n, sources in enumerate(_combinations()):
        _, tables = _tables(sources)
        data = tmp_path / f"hest{n}.dat"
        data.write_bytes(tables.table("HEST"))
        proc = subprocess.run([iasl, "-d", str(data)], capture_output=True, text=True, timeout=60)
        dsl = data.with_suffix(".dsl").read_text()
        assert proc.returncode == 0 and "Error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert dsl.count("Subtable Type") == len(sources)
        assert dsl.count("Notify Type : 09 [SEI]") == sum(s.notify is Notify.SEI for s in sources)
        assert dsl.count("Generic Hardware Error Source V2") == sum(s.ghes_version == 2 for s in sources)


# --- record, then notify --------------------------------------------------------------------
def _machine(sources: tuple[SourceSpec, ...]) -> Machine:
    return Machine(MachineConfig(hest=sources))


def test_v1_source_waits_for_block_status_to_clear() -> None:
    m = _machine((SourceSpec(8, Notify.POLLED, ghes_version=1, poll_interval_ms=5),))
    try:
        spec = parse_inject_spec("polled:pa=0x41000000")
        source = perform(m, spec)
        assert source.source_id == 8 and source.records_written == 1
        block = source.block_address()
        st = cper.parse_generic_error_status(m.mem.read(block, 1024))
        assert st.entries[0].physical_address == 0x4100_0000
        with pytest.raises(NotAcknowledged, match="block status 0x[0-9a-f]+ not cleared"):
            perform(m, spec)
        m.mem.write_u32(block, 0)          # what Linux's ghes_clear_estatus does
        perform(m, spec)
        assert source.records_written == 2
    finally:
        m.close()


def test_injection_kinds_pick_their_sources_and_check_source_ids() -> None:
    m = _machine((SourceSpec(0, Notify.SEA), SourceSpec(1, Notify.GPIO), SourceSpec(4, Notify.POLLED),
                  SourceSpec(9, Notify.POLLED, poll_interval_ms=20)))
    try:
        assert perform(m, parse_inject_spec("polled:pa=0x41000000")).source_id == 4
        assert perform(m, parse_inject_spec("polled:pa=0x41000000,source=9")).source_id == 9
        with pytest.raises(ArmrasError, match="error source 1 is GPIO-notified, not polled"):
            perform(m, parse_inject_spec("polled:pa=0x41000000,source=1"))
        with pytest.raises(ArmrasError, match="no GHES error source with id 5"):
            perform(m, parse_inject_spec("gpio:pa=0x41000000,source=5"))
        with pytest.raises(ArmrasError, match="has no SDEI-notified error source"):
            perform(m, parse_inject_spec("sdei:pa=0x41000000"))
        # An ARM processor error may go to any source, notified as that source says (once
        # the guest has acknowledged the source's last record, as Linux's ghes_ack_error does).
        m.mem.write_u64(m.sources.by_id(9).read_ack_address, 1)
        assert perform(m, parse_inject_spec("arm:type=cache,source=9")).source_id == 9
        assert m.sources.by_id(9).records_written == 2 and m.sources.by_id(4).records_written == 1
    finally:
        m.close()


def test_refused_sdei_notification_writes_no_record() -> None:
    m = _machine((SourceSpec(2, Notify.SDEI, event=804),))
    try:
        with pytest.raises(ArmrasError, match="SDEI event 804 is not registered by the guest on CPU 0"):
            perform(m, parse_inject_spec("sdei:pa=0x41000000"))
        source = m.sources.by_id(2)
        assert source.records_written == 0 and m.mem.read_u64(source.read_ack_address) == 1
        assert m.mem.read_u32(source.block_address()) == 0
    finally:
        m.close()


@pytest.mark.parametrize("text, message", [
    ("polled:pa=0x41000000,cpu=1", "a polled memory error is not taken by a CPU"),
    ("sdei:cpu=0", "sdei needs pa="),
    ("sdei:pa=0x41000000,source=65535", "source=0xffff is not a HEST source id (0-65534)"),
    ("sdei:pa=0x41000000,source=-1", "source=-1 is not a HEST source id"),
    ("polled:pa=0x41000000,source=x", "source='x' is not a number"),
])
def test_inject_grammar_for_the_new_kinds(text: str, message: str) -> None:
    with pytest.raises(ArmrasError, match=re_escape(message)):
        parse_inject_spec(text)


def re_escape(text: str) -> str:
    import re
    return re.escape(text)


# --- the control socket ---------------------------------------------------------------------
def test_control_commands_for_polled_and_sdei(tmp_path: Path) -> None:
    from armras.drive.control import ControlConfig, ControlServer

    m = _machine((SourceSpec(0, Notify.SEA), SourceSpec(3, Notify.POLLED, poll_interval_ms=10),
                  SourceSpec(6, Notify.SDEI, event=900)))
    m.defer = lambda action, description: action()  # type: ignore[method-assign]   # no run loop here
    srv = ControlServer(m, ControlConfig(tmp_path / "ctl.sock", reply_timeout=5.0))
    srv.open()
    try:
        ok = srv.handle_line(b'{"execute": "inject-polled", "arguments": {"pa": "0x41000000"}}')["return"]
        assert ok["source_id"] == 3 and ok["records_written"] == 1 and ok["pa"] == "0x41000000"
        refused = srv.handle_line(b'{"execute": "inject-polled", "arguments": {"pa": "0x41000000", "cpu": 0}}')
        assert refused["error"]["class"] == "InvalidParameter"
        sdei = srv.handle_line(b'{"execute": "inject-sdei", "arguments": {"pa": "0x41000000", "source": 6}}')
        assert "SDEI event 900 is not registered by the guest" in sdei["error"]["desc"]
        wrong = srv.handle_line(b'{"execute": "inject-sea", "arguments": {"pa": "0x41000000", "source": 3}}')
        assert "error source 3 is polled-notified, not SEA" in wrong["error"]["desc"]
        hest = srv.handle_line(b'{"execute": "query-hest"}')["return"]["sources"]
        assert [(s["source_id"], s["notify"]) for s in hest] == [(0, "SEA"), (3, "polled"), (6, "SDEI")]
        assert hest[1]["poll_interval_ms"] == 10 and hest[2]["sdei_event"] == 900
        assert hest[2]["sdei_priority"] == "normal"
    finally:
        srv.close()
        m.close()


# --- parsing and describing sources: mutants of armras/ras/sources.py ---------------

def test_source_descriptions_name_kind_event_interval_and_version() -> None:
    # Notification types are ACPI 6.4 Table 18.14's (3 = SCI, 7 = GPIO, 8 = SEA, 11 = SDEI).
    from armras.ras.sources import notify_name

    assert SourceSpec(3, Notify.POLLED, poll_interval_ms=250).describe() == "source 3 (polled every 250 ms)"
    assert (SourceSpec(2, Notify.SDEI, event=805, priority=SdeiPriority.CRITICAL).describe()
            == "source 2 (SDEI event 805, critical)")
    assert SourceSpec(6, Notify.SDEI, event=9).describe() == "source 6 (SDEI event 9, normal)"
    assert SourceSpec(0, Notify.SEA, ghes_version=1).describe() == "source 0 (SEA, GHES v1)"
    assert SourceSpec(1, Notify.GPIO).describe() == "source 1 (GPIO)"
    assert notify_name(3) == "SCI" and notify_name(7) == "GPIO" and notify_name(99) == "notify-99"


def test_source_defaults_and_accepted_edges() -> None:
    (sdei, polled, gpio) = parse_sources([
        {"id": 2, "notify": "sdei", "event": 1},
        {"id": 4, "notify": "polled", "poll_interval_ms": 1},
        {"id": 1, "notify": "GPIO"},
    ], "hest.toml")
    assert sdei.priority is SdeiPriority.NORMAL and sdei.shared is False and sdei.event == 1
    assert polled.poll_interval_ms == 1
    assert gpio.block_length == 1024 and gpio.ghes_version == 2   # QEMU's 1 KiB, GHESv2
    (default_poll,) = parse_sources([{"id": 4, "notify": "polled"}], "hest.toml")
    assert default_poll.poll_interval_ms == 1000


def test_sixteen_sources_filling_the_64_kib_area_exactly_fit() -> None:
    # 16 sources (README), each 16 bytes of registers plus its block: 16 * (16 + 4080) = 64 KiB.
    full = [{"id": i, "notify": "polled", "block_length": 4080} for i in range(16)]
    assert len(parse_sources(full, "hest.toml")) == 16
    over = full[:15] + [{"id": 15, "notify": "polled", "block_length": 4088}]
    with pytest.raises(ArmrasError, match="need 65544 bytes"):
        parse_sources(over, "hest.toml")
    with pytest.raises(ArmrasError, match="17 error sources"):
        parse_sources(full + [{"id": 16, "notify": "sea"}], "hest.toml")


@pytest.mark.parametrize("entry, message", [
    ({"id": 1, "notify": "gpio", "colour": 1},
     "hest.toml: source #2: unknown key 'colour' (expected block_length, event, ghes, id, notify, "
     "poll_interval_ms, priority, shared)"),
    ({"id": 1, "notify": "nmi"}, "hest.toml: source #2: notify = 'nmi' is not one of polled, gpio, sea, sdei, sei"),
    ({"id": 0x10000, "notify": "gpio"}, "hest.toml: source #2: id = 65536 is outside 0..65534"),
    ({"id": 1, "notify": "gpio", "block_length": 64}, "hest.toml: source #2: block_length = 64 is outside 128..32768"),
    ({"id": 1, "notify": "gpio", "poll_interval_ms": 5}, "hest.toml: source #2: poll_interval_ms does not apply to a gpio source"),
    ({"id": 1, "notify": "sea", "event": 5}, "hest.toml: source #2: event does not apply to a sea source"),
    ({"id": 1, "notify": "sea", "priority": "normal"}, "hest.toml: source #2: priority does not apply to a sea source"),
    ({"id": 1, "notify": "sei", "shared": False}, "hest.toml: source #2: shared does not apply to a sei source"),
    ({"id": 1, "notify": "polled", "poll_interval_ms": 0}, "hest.toml: source #2: poll_interval_ms = 0 is outside 1..3600000"),
    ({"id": 1, "notify": "sdei", "event": 0}, "hest.toml: source #2: event = 0 is outside 1..2147483647"),
    ({"id": 1, "notify": "sdei", "event": 7, "shared": "yes"}, "hest.toml: source #2: shared = 'yes' must be true or false"),
])
def test_source_mistakes_are_one_line_naming_file_and_source(entry: dict, message: str) -> None:
    with pytest.raises(ArmrasError) as e:
        parse_sources([{"id": 0, "notify": "sea"}, entry], "hest.toml")
    assert str(e.value) == message


def test_source_list_mistakes_name_the_file() -> None:
    with pytest.raises(ArmrasError) as e:
        parse_sources([{"id": 1, "notify": "sea"}, {"id": 1, "notify": "gpio"}], "hest.toml")
    assert str(e.value) == "hest.toml: source id 1 is given twice"
