"""ACPI tables: checksums and pointers on the raw bytes, then iasl's view of every table,
then the HEST's source-0 entry against the disassembly of QEMU 7.2's `-M virt,ras=on` HEST."""
from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from armras.firmware.acpi import (
    AcpiPlatform,
    AcpiTables,
    board_platform,
    build_acpi_tables,
    format_acpi,
    format_hest,
)
from armras.firmware.acpi import aml
from armras.firmware.acpi.builder import TableBuilder
from armras.firmware.acpi.hest import build_hest, parse_hest_entries
from armras.errors import ArmrasError
from armras.board.memmap import DEFAULT_RAM_SIZE, VIRT_MEMMAP, FirmwareLayout, intid
from armras.ras.hw_errors import HardwareErrorsLayout
from armras.ras.sources import ERROR_BLOCK_SIZE, Notify, SourceSpec
from conftest import require_tool

RAM_BASE = VIRT_MEMMAP["ram"].base
# `iasl -d` of the HEST of QEMU 7.2 `virt,ras=on` (KVM), kept with the tests.
QEMU_HEST_DSL = Path(__file__).resolve().parent / "data" / "qemu-7.2-virt-ras-HEST.dsl"
IASL_HOW = "apt-get install acpica-tools"


def iasl() -> str:
    return require_tool("iasl", IASL_HOW)


SDT_HEADER = 36              # ACPI 6.4 table 5.29: the System Description Table Header
SDT_SIGNATURES = ("XSDT", "DSDT", "FACP", "APIC", "GTDT", "SPCR", "HEST", "BERT", "SDEI", "PPTT", "ERST", "EINJ",
                  "DBG2", "MCFG", "IORT")


@pytest.fixture(scope="module")
def platform() -> AcpiPlatform:
    return board_platform(RAM_BASE, DEFAULT_RAM_SIZE)


@pytest.fixture(scope="module")
def tables(platform: AcpiPlatform) -> AcpiTables:
    return build_acpi_tables(platform, FirmwareLayout(RAM_BASE, DEFAULT_RAM_SIZE).acpi_base)


def u16(data: bytes, off: int) -> int:
    return struct.unpack_from("<H", data, off)[0]


def u32(data: bytes, off: int) -> int:
    return struct.unpack_from("<I", data, off)[0]


def u64(data: bytes, off: int) -> int:
    return struct.unpack_from("<Q", data, off)[0]


# ------------------------------------------------------------ raw bytes


def test_board_platform_comes_from_memmap(platform: AcpiPlatform) -> None:
    layout = FirmwareLayout(RAM_BASE, DEFAULT_RAM_SIZE)
    assert platform.gic_dist_base == 0x0800_0000
    assert platform.gic_cpu_base == 0x0801_0000
    assert platform.uart_base == 0x0900_0000 and platform.uart_gsiv == intid("uart") == 33
    assert platform.ged_base == 0x0908_0000 and platform.ged_gsiv == intid("ged") == 41
    assert platform.hw_errors.base == layout.hw_errors_base
    # ACPI 6.4 table 18.14: SEA 8, GPIO 7 (QEMU's two, first), then SDEI 11 and polled 0
    assert [(s.source_id, int(s.notify)) for s in platform.sources] == [(0, 8), (1, 7), (2, 11), (3, 0)]


def test_blob_layout(tables: AcpiTables) -> None:
    assert tables.rsdp_address == tables.base
    assert tables.blob[:8] == b"RSD PTR "
    assert set(tables.tables) == set(SDT_SIGNATURES)
    spans = []
    for sig, (address, length) in tables.tables.items():
        assert address % 16 == 0, sig
        start = address - tables.base
        assert 0 < start and start + length <= len(tables.blob)
        assert tables.blob[start:start + 4] == sig.encode()
        assert u32(tables.blob, start + 4) == length
        spans.append((start, start + length))
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert len(tables.blob) <= 64 * 1024


def test_every_table_checksum(tables: AcpiTables) -> None:
    for sig in SDT_SIGNATURES:
        assert sum(tables.table(sig)) % 256 == 0, sig


def test_rsdp(tables: AcpiTables) -> None:
    rsdp = tables.rsdp
    assert len(rsdp) == 36
    assert sum(rsdp[:20]) % 256 == 0, "RSDP checksum (first 20 bytes)"
    assert sum(rsdp) % 256 == 0, "RSDP extended checksum"
    assert rsdp[9:15] == b"ARMRAS"
    assert rsdp[15] == 2                                   # revision
    assert u32(rsdp, 16) == 0                              # no RSDT
    assert u32(rsdp, 20) == 36                             # length
    assert u64(rsdp, 24) == tables.tables["XSDT"][0]


def test_xsdt_points_at_tables(tables: AcpiTables) -> None:
    xsdt = tables.table("XSDT")
    entries = struct.unpack_from(f"<{(len(xsdt) - SDT_HEADER) // 8}Q", xsdt, SDT_HEADER)
    pointed = {}
    for address in entries:
        start = address - tables.base
        pointed[tables.blob[start:start + 4].decode()] = address
    assert pointed == {sig: tables.tables[sig][0] for sig in ("FACP", "APIC", "GTDT", "SPCR", "HEST", "BERT", "SDEI",
                                                             "PPTT", "ERST", "EINJ", "DBG2", "MCFG", "IORT")}


def test_fadt_fields(tables: AcpiTables) -> None:
    fadt = tables.table("FACP")
    assert len(fadt) == 276 and fadt[8] == 6               # ACPI 6.0 layout, revision 6
    assert fadt[131] == 0                                  # minor revision
    assert u32(fadt, 112) == 1 << 20                       # HW_REDUCED_ACPI
    assert u16(fadt, 129) == 0b11                          # PSCI_COMPLIANT | PSCI_USE_HVC
    assert u64(fadt, 140) == tables.tables["DSDT"][0]      # X_DSDT
    assert u32(fadt, 40) == 0 and u64(fadt, 132) == 0      # no 32-bit DSDT, no FACS


def test_madt_fields(tables: AcpiTables, platform: AcpiPlatform) -> None:
    madt = tables.table("APIC")
    off = SDT_HEADER + 8
    seen = {}
    while off < len(madt):
        seen[madt[off]] = madt[off:off + madt[off + 1]]
        off += madt[off + 1]
    assert off == len(madt)
    gicc, gicd = seen[0x0B], seen[0x0C]
    assert len(gicc) == 80
    assert u32(gicc, 4) == 0 and u32(gicc, 8) == 0          # CPU interface number, UID
    assert u32(gicc, 12) == 1                              # Enabled
    assert u32(gicc, 20) == 23                             # PMU PPI
    assert u64(gicc, 32) == platform.gic_cpu_base == 0x0801_0000
    assert u64(gicc, 68) == 0                              # MPIDR
    assert len(gicd) == 24
    assert u64(gicd, 8) == platform.gic_dist_base == 0x0800_0000
    assert gicd[20] == 2                                   # GICv2


def test_gtdt_fields(tables: AcpiTables) -> None:
    gtdt = tables.table("GTDT")
    assert gtdt[8] == 2 and len(gtdt) == 96
    assert u64(gtdt, 36) == u64(gtdt, 80) == 0xFFFF_FFFF_FFFF_FFFF
    timers = struct.unpack_from("<8I", gtdt, 48)
    assert timers == (29, 0, 30, 4, 27, 0, 26, 0)           # level, active high; NS EL1 always-on


def test_spcr_fields(tables: AcpiTables) -> None:
    spcr = tables.table("SPCR")
    assert spcr[8] == 2 and spcr[36] == 3                  # rev 2, ARM PL011
    assert spcr[40] == 0 and u64(spcr, 44) == 0x0900_0000   # SystemMemory GAS
    assert spcr[52] == 8 and u32(spcr, 54) == 33           # GIC, GSIV 33
    assert spcr[58] == 3 and spcr[62] == 3                 # 9600 baud, ANSI
    assert u16(spcr, 64) == u16(spcr, 66) == 0xFFFF


def test_hest_entries_point_into_hw_errors(tables: AcpiTables, platform: AcpiPlatform) -> None:
    hest = tables.table("HEST")
    hw = platform.hw_errors
    assert len(hest) == 36 + 4 + 4 * 92 == 408            # ACPI 6.4 table 18.17: GHESv2 is 92 bytes
    entries = parse_hest_entries(hest)
    assert [(e.source_id, e.notify_type) for e in entries] == [(0, 8), (1, 7), (2, 11), (3, 0)]
    # Notification structure: poll interval (offset 4) for the polled source, vector
    # (offset 8) = the SDEI event number (Arm RD-N2's 804) for the SDEI source.
    assert [(e.poll_interval, e.vector) for e in entries] == [(0, 0), (0, 0), (0, 804), (1000, 0)]
    for i, e in enumerate(entries):
        assert e.type == 10 and e.related_source_id == 0xFFFF and e.enabled == 1
        assert e.error_status_address.address == hw.error_status_address_reg(i)
        assert e.read_ack_register.address == hw.read_ack_reg(i)
        for gas in (e.error_status_address, e.read_ack_register):
            assert (gas.space_id, gas.bit_width, gas.bit_offset, gas.access_size) == (0, 64, 0, 4)
        assert e.error_status_block_length == ERROR_BLOCK_SIZE == 1024
        assert e.max_raw_data_length == 1024 and e.notify_length == 28
        assert e.read_ack_preserve == 0xFFFF_FFFF_FFFF_FFFE and e.read_ack_write == 1
        notify = hest[e.offset + 32:e.offset + 60]
        assert notify[1] == 28 and notify[2:4] == bytes(2) and notify[12:] == bytes(16)
    # the blob as firmware installs it: register i holds block i's address
    blob = hw.initial_bytes()
    for i in range(2):
        assert u64(blob, hw.error_status_address_reg(i) - hw.base) == hw.error_block(i)


def test_too_small_or_misaligned_is_a_user_error(platform: AcpiPlatform) -> None:
    with pytest.raises(ArmrasError):
        build_acpi_tables(platform, 0x4000_0000, max_size=512)
    with pytest.raises(ArmrasError):
        build_acpi_tables(platform, 0x4000_0008)


def test_hest_source_count_must_match_blob() -> None:
    with pytest.raises(ValueError):
        build_hest((SourceSpec(0, Notify.SEA),), HardwareErrorsLayout(0x5000_0000), b"ARMRAS", b"ARMRASVT")


# ------------------------------------------------------------------- AML


@pytest.mark.parametrize("length, encoded", [
    (0, b"\x01"),
    (62, b"\x3f"),                             # 62 + 1 byte = 63: still one byte
    (63, b"\x41\x04"),                         # 63 + 2 = 65 = 0x041
    (4093, b"\x4f\xff"),                       # 4093 + 2 = 4095, the 2-byte maximum
    (4094, b"\x81\x00\x01"),                   # 4094 + 3 = 4097 = 0x01001
    (0x10_0000, b"\xc4\x00\x00\x01"),          # + 4 = 0x100004
])
def test_pkg_length_encoding(length: int, encoded: bytes) -> None:
    assert aml.pkg_length(length) == encoded
    value, nbytes = aml.decode_pkg_length(encoded)
    assert nbytes == len(encoded) and value == length + nbytes


def test_pkg_length_roundtrip_all_sizes() -> None:
    for length in [*range(0, 5000), 0xFFFF0, 0xFFFFC, 0xFFFFD, 0x0FFF_FFF0]:
        enc = aml.pkg_length(length)
        assert aml.decode_pkg_length(enc) == (length + len(enc), len(enc))


def test_aml_primitives() -> None:
    assert aml.integer(0) == b"\x00" and aml.integer(1) == b"\x01"
    assert aml.integer(0x20) == b"\x0a\x20"
    assert aml.integer(0x1234) == b"\x0b\x34\x12"
    assert aml.integer(0x0908_0000) == b"\x0c\x00\x00\x08\x09"
    assert aml.integer(1 << 40) == b"\x0e" + (1 << 40).to_bytes(8, "little")
    assert aml.name_string("\\_SB") == b"\\_SB_"
    assert aml.name_string("\\_SB.GED") == b"\\\x2e_SB_GED_"
    assert aml.name_string("\\_SB.PCI0.GED") == b"\\\x2f\x03_SB_PCI0GED_"
    assert aml.string("GED") == b"\x0dGED\x00"
    assert aml.memory32_fixed(0x0900_0000, 0x1000) == bytes.fromhex("860900 01 00000009 00100000")
    assert aml.interrupt([33]) == bytes.fromhex("890600 01 01 21000000")
    assert aml.interrupt([41], trigger=aml.Trigger.EDGE) == bytes.fromhex("890600 03 01 29000000")
    assert aml.resource_template(aml.interrupt([41]))[-2:] == b"\x79\x00"


def _iasl(tmp_path: Path, name: str, data: bytes, *args: str) -> str:
    dat = tmp_path / f"{name}.dat"
    dat.write_bytes(data)
    proc = subprocess.run([iasl(), *args, "-d", dat.name], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (tmp_path / f"{name}.dsl").read_text()


def _iasl_compile(tmp_path: Path, dsl: str, name: str) -> bytes:
    src = tmp_path / f"{name}.asl"
    src.write_text(dsl)
    proc = subprocess.run([iasl(), "-oa", "-p", name, src.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (tmp_path / f"{name}.aml").read_bytes()


def test_dsdt_roundtrips_through_iasl(tables: AcpiTables, tmp_path: Path) -> None:
    """iasl -d then iasl -oa (no optimisation) gives back our AML byte for byte."""
    dsdt = tables.table("DSDT")
    dsl = _iasl(tmp_path, "dsdt", dsdt)
    assert _iasl_compile(tmp_path, dsl, "recompiled")[SDT_HEADER:] == dsdt[SDT_HEADER:]


def test_multibyte_pkg_lengths_through_iasl(tmp_path: Path) -> None:
    """A scope > 4 KiB (3-byte PkgLength) around a > 63-byte buffer (2-byte PkgLength)."""
    big = aml.name("BIG0", aml.buffer(bytes(range(256)) * 20))          # 5120 bytes
    small = aml.name("SMAL", aml.buffer(bytes(100)))
    body = aml.scope("\\_SB", [aml.device("DEV0", [big, small])])
    assert (body[1] >> 6) == 2                                        # 3-byte PkgLength
    table = TableBuilder(b"SSDT", 2, b"ARMRAS", b"PKGTEST").raw(body).finish()
    dsl = _iasl(tmp_path, "ssdt", table)
    assert "Name (BIG0, Buffer (0x1400)" in dsl
    assert _iasl_compile(tmp_path, dsl, "ssdt2")[SDT_HEADER:] == table[SDT_HEADER:]


# ------------------------------------------------------------ iasl -d


@dataclass
class DataTable:
    """One `iasl -d` data-table disassembly: header fields and subtables {name: value}."""

    header: dict[str, str] = field(default_factory=dict)
    subtables: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


FIELD_RE = re.compile(
    r"^\[(?P<hex>[0-9A-F]+)h (?P<off>\d+)\s+(?P<len>\d+)\]\s+(?P<name>.+?) : (?P<value>.*?)\s*$")


def parse_data_table(text: str) -> DataTable:
    """Fields keyed by name; fields inside a structure (GAS, Notify) are keyed 'Struct/Field',
    a repeated name gets '#2', '#3', ..."""
    out = DataTable()
    current = out.header
    group, group_end = "", -1
    for line in text.splitlines():
        if "Incorrect checksum" in line or line.lstrip().startswith("/****"):
            out.problems.append(line.strip())
        m = FIELD_RE.match(line)
        if not m:
            continue
        name, value = m["name"].strip(), m["value"]
        off, length = int(m["off"]), int(m["len"])
        if name == "Subtable Type":
            current = {}
            out.subtables.append(current)
            group, group_end = "", -1
        if value.startswith("[") and value.endswith("]") and length > 1:
            group, group_end = name, off + length
            current[name] = value
            continue
        key = f"{group}/{name}" if off < group_end else name
        base_key, n = key, 1
        while key in current:                # e.g. the FADT's 32- and 64-bit "DSDT Address"
            n += 1
            key = f"{base_key}#{n}"
        current[key] = value
    return out


def _disassemble_all(tables: AcpiTables, tmp_path: Path) -> dict[str, DataTable | str]:
    out: dict[str, DataTable | str] = {}
    for sig in SDT_SIGNATURES:
        text = _iasl(tmp_path, sig.lower(), tables.table(sig))
        out[sig] = text if sig == "DSDT" else parse_data_table(text)
    return out


@pytest.fixture(scope="module")
def disassembled(tables: AcpiTables, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, DataTable | str]:
    iasl()
    return _disassemble_all(tables, tmp_path_factory.mktemp("iasl"))


def _hexaddr(address: int) -> str:
    return f"{address:016X}"


def test_iasl_reports_no_problems(disassembled: dict[str, DataTable | str]) -> None:
    for sig, parsed in disassembled.items():
        if isinstance(parsed, str):
            assert "Incorrect checksum" not in parsed and "/****" not in parsed
            continue
        assert parsed.problems == [], sig
        assert parsed.header["Signature"].startswith(f'"{sig}"')


def test_iasl_hest(disassembled: dict[str, DataTable | str], platform: AcpiPlatform) -> None:
    hest = disassembled["HEST"]
    assert isinstance(hest, DataTable)
    hw = platform.hw_errors
    assert hest.header["Error Source Count"] == "00000004"
    assert hest.header["Table Length"] == "00000198"
    assert len(hest.subtables) == 4
    notifies = ("08 [SEA]", "07 [GPIO]", "0B [Software Delegated Exception]", "00 [Polled]")
    assert [sub["Notify/PollInterval"] for sub in hest.subtables] == ["00000000"] * 3 + ["000003E8"]
    assert [sub["Notify/Vector"] for sub in hest.subtables] == ["00000000"] * 2 + ["00000324", "00000000"]
    for i, (sub, notify) in enumerate(zip(hest.subtables, notifies)):
        assert sub["Subtable Type"] == "000A [Generic Hardware Error Source V2]"
        assert sub["Source Id"] == f"{i:04X}"
        assert sub["Related Source Id"] == "FFFF"
        assert sub["Enabled"] == "01"
        assert sub["Notify/Notify Type"] == notify
        assert sub["Notify/Notify Length"] == "1C"
        assert sub["Error Status Address/Address"] == _hexaddr(hw.error_status_address_reg(i))
        assert sub["Error Status Address/Encoded Access Width"] == "04 [QWord Access:64]"
        assert sub["Read Ack Register/Address"] == _hexaddr(hw.read_ack_reg(i))
        assert sub["Read Ack Preserve"] == "FFFFFFFFFFFFFFFE"
        assert sub["Read Ack Write"] == "0000000000000001"
        assert sub["Error Status Block Length"] == "00000400"
        assert sub["Max Raw Data Length"] == "00000400"


def test_iasl_dsdt(disassembled: dict[str, DataTable | str]) -> None:
    dsl = disassembled["DSDT"]
    assert isinstance(dsl, str)
    for needle in ('Device (CPU0)', '"ACPI0007"', 'Device (COM0)', '"ARMH0011"',
                   'Device (GED)', '"ACPI0013"', 'Name (_UID, "GED")', 'Device (GEDD)',
                   '"PNP0C33"', 'Method (_EVT, 1, Serialized)',
                   'OperationRegion (EREG, SystemMemory, 0x09080000, 0x04)',
                   'Field (EREG, DWordAcc, NoLock, WriteAsZeros)', 'ESEL,   32',
                   'Local0 = ESEL', 'If (((Local0 & 0x20) == 0x20))', 'Notify (GEDD, 0x80)'):
        assert needle in dsl, needle
    assert re.search(r"Memory32Fixed \(ReadWrite,\s+0x09000000,[^\n]*\n\s+0x00001000", dsl)
    assert re.search(r"Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)"
                     r"\s*\{\s*0x00000021,", dsl)
    assert re.search(r"Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)"
                     r"\s*\{\s*0x00000029,", dsl)


def test_iasl_pci_host_bridge(disassembled: dict[str, DataTable | str]) -> None:
    """QEMU virt's PCIe host bridge (hw/arm/virt.c base_memmap, hw/pci-host/gpex-acpi.c): ECAM
    0x3f000000 (16 MiB, buses 0-15), 32-bit window 0x10000000-0x3efeffff, I/O 0x3eff0000, INTx
    on SPIs 3..6 (GSIV 35..38) swizzled by slot, and the _OSC that grants the OS five controls."""
    mcfg = disassembled["MCFG"]
    assert isinstance(mcfg, DataTable)
    h = mcfg.header
    assert (h["Revision"], h["Table Length"]) == ("01", "0000003C")
    assert h["Base Address"] == "000000003F000000" and h["Segment Group Number"] == "0000"
    assert (h["Start Bus Number"], h["End Bus Number"]) == ("00", "0F")
    dsl = disassembled["DSDT"]
    assert isinstance(dsl, str)
    pci0 = dsl[dsl.index("Device (PCI0)"):]
    for needle in ('Name (_HID, "PNP0A08"', 'Name (_CID, "PNP0A03"', "Name (_SEG, Zero)", "Name (_CCA, One)",
                   "Method (_OSC, 4, NotSerialized)", "CreateDWordField (Arg3, Zero, CDW1)",
                   'ToUUID ("33db4d5b-1ff7-401c-9657-7441c03dd766")', "CTRL &= 0x1F", "CDW1 |= 0x10",
                   "CDW1 |= 0x04", "Device (RES0)", '"PNP0C02"'):
        assert needle in pci0, needle
    assert re.search(r"WordBusNumber \(ResourceProducer, MinFixed, MaxFixed, PosDecode,\s+0x0000,[^\n]*\n"
                     r"\s+0x0000,[^\n]*\n\s+0x000F,", pci0)
    assert re.search(r"DWordMemory \(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,"
                     r"\s+0x00000000,[^\n]*\n\s+0x10000000,[^\n]*\n\s+0x3EFEFFFF,", pci0)
    assert re.search(r"DWordIO \(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,"
                     r"\s+0x00000000,[^\n]*\n\s+0x00000000,[^\n]*\n\s+0x0000FFFF,[^\n]*\n\s+0x3EFF0000,", pci0)
    assert re.search(r"Memory32Fixed \(ReadWrite,\s+0x3F000000,[^\n]*\n\s+0x01000000", pci0)
    prt = re.findall(r"Package \(0x04\)\s*\{\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\}", pci0)
    assert len(prt) == 32 * 4
    assert prt[0] == ("0xFFFF", "Zero", "Zero", "0x23")            # slot 0 INTA -> SPI 3
    assert prt[4] == ("0x0001FFFF", "Zero", "Zero", "0x24")        # slot 1 INTA -> SPI 4 (the root port)
    assert prt[7] == ("0x0001FFFF", "0x03", "Zero", "0x23")        # slot 1 INTD wraps to SPI 3


def test_iasl_fadt(disassembled: dict[str, DataTable | str], tables: AcpiTables) -> None:
    fadt = disassembled["FACP"]
    assert isinstance(fadt, DataTable)
    h = fadt.header
    assert h["Revision"] == "06" and h["Table Length"] == "00000114"
    assert h["FADT Minor Revision"] == "00"
    assert h["Flags (decoded below)"] == "00100000"
    assert h["ARM Flags (decoded below)"] == "0003"
    assert h["DSDT Address"] == "00000000"                 # 32-bit field unused
    assert h["DSDT Address#2"] == _hexaddr(tables.tables["DSDT"][0])   # X_DSDT


def test_iasl_madt_gtdt_spcr(disassembled: dict[str, DataTable | str]) -> None:
    madt, gtdt, spcr = disassembled["APIC"], disassembled["GTDT"], disassembled["SPCR"]
    assert isinstance(madt, DataTable) and isinstance(gtdt, DataTable)
    assert isinstance(spcr, DataTable)
    gicd, gicc, msi_frame = madt.subtables
    assert gicd["Subtable Type"] == "0C [Generic Interrupt Distributor]"
    assert gicd["Base Address"] == "0000000008000000" and gicd["Version"] == "02"
    assert gicc["Subtable Type"] == "0B [Generic Interrupt Controller]"
    assert gicc["Length"] == "50" and gicc["CPU Interface Number"] == "00000000"
    assert gicc["Processor UID"] == "00000000" and gicc["Flags (decoded below)"] == "00000001"
    assert gicc["Base Address"] == "0000000008010000" and gicc["ARM MPIDR"] == "0000000000000000"
    assert gicc["Performance Interrupt"] == "00000017"
    # ACPI 6.0 5.2.12.16 GIC MSI Frame, as QEMU virt with gic-version=2: the GICv2m frame at
    # 0x08020000, SPI count/base from the structure (flag 1), 64 SPIs from INTID 80 (SPI 48).
    assert msi_frame["Subtable Type"] == "0D [Generic MSI Frame]"
    assert msi_frame["Length"] == "18" and msi_frame["MSI Frame ID"] == "00000000"
    assert msi_frame["Base Address"] == "0000000008020000"
    assert msi_frame["Flags (decoded below)"] == "00000001"
    assert (msi_frame["SPI Count"], msi_frame["SPI Base"]) == ("0040", "0050")

    g = gtdt.header
    assert g["Revision"] == "02"
    assert g["Counter Block Address"] == g["Counter Read Block Address"] == "FFFFFFFFFFFFFFFF"
    assert (g["Secure EL1 Interrupt"], g["EL1 Flags (decoded below)"]) == ("0000001D", "00000000")
    assert (g["Non-Secure EL1 Interrupt"], g["NEL1 Flags (decoded below)"]) == ("0000001E", "00000004")
    assert (g["Virtual Timer Interrupt"], g["VT Flags (decoded below)"]) == ("0000001B", "00000000")
    assert (g["Non-Secure EL2 Interrupt"], g["NEL2 Flags (decoded below)"]) == ("0000001A", "00000000")

    s = spcr.header
    assert s["Revision"] == "02" and s["Interface Type"] == "03"
    assert s["Serial Port Register/Address"] == "0000000009000000"
    assert s["Serial Port Register/Space ID"] == "00 [SystemMemory]"
    assert s["Interrupt Type"] == "08" and s["Interrupt"] == "00000021"
    assert s["Baud Rate"] == "03" and s["Terminal Type"] == "03"
    assert s["PCI Device ID"] == s["PCI Vendor ID"] == "FFFF"


def test_iasl_dbg2(disassembled: dict[str, DataTable | str]) -> None:
    """DBG2 (Microsoft Debug Port Table 2) as QEMU's build_dbg2: one PL011 serial debug port
    at the UART's address, 32-bit accesses, its 4 KiB frame, named by its DSDT path."""
    dbg2 = disassembled["DBG2"]
    assert isinstance(dbg2, DataTable)
    d = dbg2.header
    assert d["Revision"] == "00"
    assert d["Info Offset"] == "0000002C" and d["Info Count"] == "00000001"
    assert d["Register Count"] == "01"
    assert d["Port Type"] == "8000" and d["Port Subtype"] == "0003"     # serial, ARM PL011
    assert d["Base Address Offset"] == "0016" and d["Address Size Offset"] == "0022"
    assert d["Base Address Register/Space ID"] == "00 [SystemMemory]"
    assert d["Base Address Register/Bit Width"] == "20"
    assert d["Base Address Register/Encoded Access Width"] == "03 [DWord Access:32]"
    assert d["Base Address Register/Address"] == "0000000009000000"
    assert d["Address Size"] == "00001000"
    assert d["Namepath"] == '"\\_SB.COM0"'
    assert int(d["Length"], 16) == int(d["Namepath Offset"], 16) + int(d["Namepath Length"], 16)


# ------------------------------------------------------- QEMU reference


# Fields that legitimately differ from QEMU's table: identity, size and checksum.
HEADER_FIELDS_ALLOWED_TO_DIFFER = {
    "Table Length", "Checksum", "Oem ID", "Oem Table ID", "Oem Revision",
    "Asl Compiler ID", "Asl Compiler Revision", "Error Source Count",
}
ADDRESS_FIELDS = {"Error Status Address/Address", "Read Ack Register/Address"}


def test_source0_matches_qemu_reference(disassembled: dict[str, DataTable | str]) -> None:
    ref = parse_data_table(QEMU_HEST_DSL.read_text())
    ours = disassembled["HEST"]
    assert isinstance(ours, DataTable)
    assert ref.problems == [] and len(ref.subtables) == 1
    assert set(ours.header) == set(ref.header)
    for key, value in ref.header.items():
        if key not in HEADER_FIELDS_ALLOWED_TO_DIFFER:
            assert ours.header[key] == value, key
    ref0, ours0 = ref.subtables[0], ours.subtables[0]
    assert set(ours0) == set(ref0)
    assert len(ref0) > 25                                  # really compared field by field
    for key, value in ref0.items():
        if key not in ADDRESS_FIELDS:
            assert ours0[key] == value, key


def test_source0_matches_qemu_reference_bytes(tables: AcpiTables) -> None:
    """Same check without iasl: the raw dump in the reference, addresses masked."""
    raw = QEMU_HEST_DSL.read_text().split("Raw Table Data")[1]
    ref = b"".join(bytes.fromhex(m[1]) for m in
                   re.finditer(r"^\s+[0-9A-F]{4}: ((?:[0-9A-F]{2} )+)", raw, re.M))
    assert len(ref) == u32(ref, 4) == 132 and sum(ref) % 256 == 0

    def masked_entry(hest: bytes) -> bytes:
        entry = bytearray(hest[40:40 + 92])
        entry[24:32] = bytes(8)                           # Error Status Address GAS address
        entry[68:76] = bytes(8)                           # Read Ack Register GAS address
        return bytes(entry)

    assert masked_entry(tables.table("HEST")) == masked_entry(ref)


# -------------------------------------------------------------- decoder


def test_format_hest(tables: AcpiTables, platform: AcpiPlatform) -> None:
    hw = platform.hw_errors
    mem = hw.initial_bytes()

    def read_u64(address: int) -> int:
        off = address - hw.base
        if not 0 <= off <= len(mem) - 8:
            raise ArmrasError(f"{address:#x} outside the blob")
        return u64(mem, off)

    text = format_hest(tables.table("HEST"), read_u64)
    assert "4 error source(s)" in text and "checksum OK" in text
    assert "Source 0:" in text and "Source 1:" in text and "Source 3:" in text
    assert "8 [SEA]" in text and "7 [GPIO-Signal]" in text and "11 [Software Delegated Exception]" in text and "0 [Polled]" in text
    assert "vector 804" in text and "poll interval 1000 ms" in text
    for i in range(4):
        assert f"{hw.error_status_address_reg(i):#018x}" in text
        assert f"error status block at {hw.error_block(i):#018x}" in text
        assert f"{hw.read_ack_reg(i):#018x}" in text
    assert text.count("current value 0x1 (acknowledged)") == 4
    assert text.count("0xfffffffffffffffe") == 4

    offline = format_hest(tables.table("HEST"))
    assert "Source 1:" in offline and "not available" in offline


def test_format_acpi_lists_tables(tables: AcpiTables) -> None:
    text = format_acpi(tables.blob, tables.base)
    for sig, (address, length) in tables.tables.items():
        assert re.search(rf"{sig} at {address:#014x} length\s+{length}\s+checksum OK", text), sig
    assert "RSDP" in text and "Source 0:" in text
    corrupt = bytearray(tables.blob)
    corrupt[tables.tables["GTDT"][0] - tables.base + 20] ^= 0xFF
    assert re.search(r"GTDT .* checksum BAD", format_acpi(bytes(corrupt), tables.base))
    assert format_acpi(tables.table("HEST"), 0).startswith("HEST:")


def test_iasl_madt_and_pptt_describe_every_cpu(tmp_path: Path) -> None:
    """Four CPUs: four GICCs (CPU interface and UID = index, MPIDR as QEMU virt numbers
    GICv2 CPUs: Aff0 = index), and a PPTT with one package and four leaf cores whose
    ACPI Processor IDs are those UIDs (ACPI 6.3 5.2.29.1)."""
    from armras.firmware.acpi.tables import board_platform

    quad = build_acpi_tables(board_platform(RAM_BASE, DEFAULT_RAM_SIZE, (0, 1, 2, 3)),
                             FirmwareLayout(RAM_BASE, DEFAULT_RAM_SIZE).acpi_base)
    iasl()
    madt = parse_data_table(_iasl(tmp_path, "apic", quad.table("APIC")))
    pptt = parse_data_table(_iasl(tmp_path, "pptt", quad.table("PPTT")))
    assert madt.problems == [] and pptt.problems == []
    giccs = [s for s in madt.subtables if s["Subtable Type"].startswith("0B ")]
    assert [g["CPU Interface Number"] for g in giccs] == ["00000000", "00000001", "00000002", "00000003"]
    assert [g["Processor UID"] for g in giccs] == ["00000000", "00000001", "00000002", "00000003"]
    assert [g["ARM MPIDR"] for g in giccs] == [f"000000000000000{i}" for i in range(4)]
    assert all(g["Base Address"] == "0000000008010000" and g["Flags (decoded below)"] == "00000001"
               for g in giccs)
    package, *cores = pptt.subtables
    assert package["Subtable Type"] == "00 [Processor Hierarchy Node]"
    assert package["Flags (decoded below)"] == "00000001" and package["Parent"] == "00000000"
    assert len(cores) == 4
    assert all(c["Flags (decoded below)"] == "0000000A" and c["Parent"] == "00000024" for c in cores)
    assert [c["ACPI Processor ID"] for c in cores] == ["00000000", "00000001", "00000002", "00000003"]


def test_iasl_iort(disassembled: dict[str, DataTable | str]) -> None:
    """IORT (DEN 0049E.b, revision 3 as QEMU 7.2) with one PCI Root Complex node and no ID mapping:
    the board's GICv2m has no ITS for a mapping to point at."""
    iort = disassembled["IORT"]
    assert isinstance(iort, DataTable)
    h = iort.header
    assert h["Revision"] == "03" and h["Table Length"] == "00000054"
    assert (h["Node Count"], h["Node Offset"]) == ("00000001", "00000030")
    assert h["Type"] == "02" and h["Length"] == "0024" and h["Revision#2"] == "03"
    assert (h["Mapping Count"], h["Mapping Offset"]) == ("00000000", "00000024")
    assert h["Memory Properties/Cache Coherency"] == "00000001"
    assert h["Memory Properties/Memory Flags (decoded below)"] == "03"
    assert h["ATS Attribute"] == "00000000" and h["PCI Segment Number"] == "00000000"
    assert h["Memory Size Limit"] == "40"                 # 64 bits
