"""CPER parsing at the exact limits Linux checks, the cper_estatus_print-style description,
and the ARM processor record's defaults, byte by byte.

Layouts are ACPI 6.4 18.3.2.7 (Generic Error Status Block: block_status, raw data offset,
raw data length, data length, error severity, 5 x u32 = 20 bytes) and 18.3.2.7.1 (Generic
Error Data Entry: 64 bytes up to revision 0x02xx, 72 with the 0x0300 timestamp; the
revision is a u16 at byte 20, the error data length a u32 at byte 24), and UEFI 2.9
N.2.5 (Memory Error Section: validation bits u64 at 0, error status at 8, physical address
at 16, memory error type byte at 72; 80 bytes) and N.2.4.4 (ARM Processor Error Section:
validation u32, error-info count u16, context count u16, section length u32, affinity
level u8, 3 reserved, MPIDR u64, MIDR u64, running state u32, PSCI state u32).
The numbers below are the specs', written out, never taken from armras.
"""
from __future__ import annotations

import struct
import uuid

import pytest

from armras.errors import ArmrasError
from armras.ras.cper import (
    ArmContextInfo,
    ArmErrorInfo,
    Section,
    arm_processor_record,
    arm_processor_section,
    generic_error_status,
    memory_error_record,
    memory_error_section,
    parse_generic_error_status,
)

MEM_GUID = uuid.UUID("A5BC1114-6F64-4EDE-B863-3E83ED7C83B1")   # UEFI N.2.5
OTHER_GUID = uuid.UUID("12345678-1234-5678-9ABC-DEF012345678")
PA = 0x4012_3000


def estatus(block_status: int, data: bytes, *, raw_off: int = 0, raw_len: int = 0,
            data_length: int | None = None, severity: int = 0) -> bytes:
    """A Generic Error Status Block header (20 bytes) followed by `data`."""
    dl = len(data) if data_length is None else data_length
    return struct.pack("<IIIII", block_status, raw_off, raw_len, dl, severity) + data


def entry(revision: int, payload: bytes, *, guid: uuid.UUID = OTHER_GUID, severity: int = 0,
          err_len: int | None = None) -> bytes:
    """A Generic Error Data Entry: 72-byte header from revision 0x0300, else 64 bytes."""
    hdr = struct.pack("<16sIHBBI16s20s", guid.bytes_le, severity, revision, 0, 0,
                      len(payload) if err_len is None else err_len, bytes(16), bytes(20))
    if revision >> 8 >= 3:
        hdr += bytes(8)
    return hdr + payload


# --- the status block header: each check at its exact boundary ---------------------------

def test_a_bare_20_byte_header_is_a_complete_empty_record() -> None:
    st = parse_generic_error_status(estatus(1, b""))
    assert (st.block_status, st.data_length, st.length, st.entries) == (1, 0, 20, [])


def test_record_length_from_raw_data_below_the_header_is_refused_with_its_length() -> None:
    # raw data at offset 0, 4 bytes: the record "ends" at byte 4, inside its own header
    with pytest.raises(ArmrasError, match=r"^CPER truncated: record length 4 is below 20$"):
        parse_generic_error_status(estatus(1, b"", raw_off=0, raw_len=4))


def test_record_of_exactly_the_block_size_is_accepted_and_one_more_byte_is_not() -> None:
    payload = bytes(1024 - 20 - 72)
    rec = estatus(1, entry(0x0300, payload))
    assert len(rec) == 1024
    assert parse_generic_error_status(rec).length == 1024
    assert parse_generic_error_status(rec, max_length=1024).entries[0].payload == payload
    with pytest.raises(ArmrasError, match="record length 1024 exceeds the 1023-byte error status block"):
        parse_generic_error_status(rec, max_length=1023)


def test_data_length_of_exactly_one_revision_2_header_is_accepted() -> None:
    rec = estatus(1, entry(0x0201, b""))
    assert struct.unpack_from("<I", rec, 12)[0] == 64
    (e,) = parse_generic_error_status(rec).entries
    assert (e.header_size, e.payload, e.revision) == (64, b"", 0x0201)


def test_raw_data_may_start_right_after_the_data_entries() -> None:
    data = entry(0x0300, b"\x01\x02")
    end = 20 + len(data)
    rec = estatus(1, data, raw_off=end, raw_len=4) + b"RAWD"
    st = parse_generic_error_status(rec)
    assert (st.raw_data_offset, st.raw_data_length, st.length) == (end, 4, end + 4)
    with pytest.raises(ArmrasError, match=rf"^CPER raw data offset {end - 1} overlaps the data entries \(ends at {end}\)$"):
        parse_generic_error_status(estatus(1, data, raw_off=end - 1, raw_len=4) + b"RAWD")


def test_require_active_message() -> None:
    with pytest.raises(ArmrasError) as exc:
        parse_generic_error_status(estatus(0, b""), require_active=True)
    assert str(exc.value) == "CPER block_status is 0: the guest treats the block as empty"


# --- data entries: the revision field and the bytes left --------------------------------

@pytest.mark.parametrize("left", [20, 21])
def test_fewer_bytes_than_reach_the_revision_field_are_refused(left: int) -> None:
    # The revision is bytes 20-21 of an entry: with only `left` bytes of data_length
    # remaining it cannot be read.
    rec = estatus(1, entry(0x0201, bytes(8)) + entry(0x0300, b"")[:left])
    with pytest.raises(ArmrasError, match=rf"^CPER entry 1: only {left} bytes left of data_length {72 + left}$"):
        parse_generic_error_status(rec)


def test_with_the_revision_readable_a_short_entry_is_a_header_overrun() -> None:
    # 22 bytes left: the revision (0x0300, a 72-byte header) is readable, the header is not
    rec = estatus(1, entry(0x0201, bytes(8)) + entry(0x0300, b"")[:22])
    with pytest.raises(ArmrasError, match=r"^CPER entry 1 \(revision 0x0300\): its 72-byte header overruns "
                                          r"data_length 94 by 50$"):
        parse_generic_error_status(rec)


def test_an_entry_that_is_exactly_its_header_is_accepted() -> None:
    rec = estatus(1, entry(0x0300, b""))
    (e,) = parse_generic_error_status(rec).entries
    assert (e.header_size, e.payload) == (72, b"")


def test_revision_with_the_top_bit_set_is_read_unsigned() -> None:
    # Linux: acpi_hest_get_version(gdata) >= 3 on the u16 revision -> 72-byte header.
    rec = estatus(1, entry(0x8000, b"\xAB"))
    (e,) = parse_generic_error_status(rec).entries
    assert (e.revision, e.header_size, e.payload) == (0x8000, 72, b"\xAB")


def test_memory_section_physical_address_is_unsigned() -> None:
    top = 0xFFFF_FFFF_FFFF_F000                     # the field is a u64
    (e,) = parse_generic_error_status(memory_error_record(top)).entries
    assert e.physical_address == top


# --- describe(): Linux cper_estatus_print / cper_print_mem style lines --------------------

def test_describe_memory_record() -> None:
    rec = generic_error_status([(MEM_GUID, memory_error_section(PA, error_type=2))], severity=2)
    assert parse_generic_error_status(rec).describe() == [
        "block_status: 0x2",
        "event severity: corrected",
        " Error 0, type: corrected",
        "  section_type: memory error",
        "  physical_address: 0x0000000040123000",
        "  error_type: 2, single-bit ECC",                   # UEFI N.2.5 Memory Error Type 2
    ]


@pytest.mark.parametrize("etype,name", [(0, "unknown"), (3, "multi-bit ECC"),
                                        (15, "physical memory map-out event"), (16, "unknown"),
                                        (255, "unknown")])
def test_describe_memory_error_types(etype: int, name: str) -> None:
    rec = generic_error_status([(MEM_GUID, memory_error_section(PA, error_type=etype))])
    assert parse_generic_error_status(rec).describe()[-1] == f"  error_type: {etype}, {name}"


@pytest.mark.parametrize("severity,label", [(0, "recoverable"), (1, "fatal"), (2, "corrected"),
                                            (3, "info"), (4, "unknown"), (0xFFFF_FFFF, "unknown")])
def test_describe_severities(severity: int, label: str) -> None:
    # UEFI N.2.1 / ACPI 18.3.2.7: 0 recoverable, 1 fatal, 2 corrected, 3 none (Linux: "info")
    rec = generic_error_status([Section(OTHER_GUID, b"", severity=severity)], severity=severity,
                               block_status=1)
    lines = parse_generic_error_status(rec).describe()
    assert lines[1] == f"event severity: {label}"
    assert lines[2] == f" Error 0, type: {label}"


def test_describe_other_sections_have_no_memory_fields() -> None:
    # a non-memory section as long as a memory one: no error_type line, no address
    rec = generic_error_status([(OTHER_GUID, memory_error_section(PA, error_type=2)),
                                Section(MEM_GUID, bytes(79))])
    assert parse_generic_error_status(rec).describe() == [
        "block_status: 0x1",
        "event severity: recoverable",
        " Error 0, type: recoverable",
        "  section_type: 12345678-1234-5678-9ABC-DEF012345678",
        " Error 1, type: recoverable",
        "  section_type: memory error",
    ]


# --- ARM processor record: its defaults in the section header ------------------------------

def test_arm_processor_record_defaults() -> None:
    rec = arm_processor_record(0x8000_0002)
    sec = rec[20 + 72:]
    valid, n_err, n_ctx, length, aff, rsvd, mpidr, midr, running, psci = struct.unpack_from(
        "<IHHIB3sQQII", sec, 0)
    assert valid == 0b111             # MPIDR, affinity level, running state valid; no vendor info
    assert (n_err, n_ctx, length) == (1, 0, 40 + 32)
    assert (aff, rsvd, mpidr, midr, running, psci) == (0, bytes(3), 0x8000_0002, 0, 1, 0)


def test_arm_processor_record_passes_its_arguments_through() -> None:
    rec = arm_processor_record(0x81, 0x410F_D083, [ArmErrorInfo("tlb")], 0, affinity_level=2,
                               psci_state=0x1234, vendor_data=b"\x55")
    valid, n_err, n_ctx, length, aff, _, mpidr, midr, running, psci = struct.unpack_from(
        "<IHHIB3sQQII", rec, 92)
    assert valid == 0b1111
    assert (n_err, length, aff, mpidr, midr, running, psci) == (1, 40 + 32 + 1, 2, 0x81, 0x410F_D083, 0, 0x1234)
    assert rec[92 + 40 + 4] == 1 << 2                        # error-info type: TLB
    assert rec[-1:] == b"\x55"


def test_arm_processor_record_carries_context_structures() -> None:
    # N.2.4.4.2 context info: version u16 0, register context type u16, array size u32, regs
    rec = arm_processor_record(0x81, contexts=[ArmContextInfo(5, bytes(range(16)))])
    n_err, n_ctx, length = struct.unpack_from("<HHI", rec, 92 + 4)
    assert (n_err, n_ctx, length) == (1, 1, 40 + 32 + 8 + 16)
    assert rec[92 + 72:] == struct.pack("<HHI", 0, 5, 16) + bytes(range(16))


def test_arm_processor_section_defaults_midr_to_zero() -> None:
    sec = arm_processor_section(0x8000_0001)
    assert struct.unpack_from("<QQ", sec, 16) == (0x8000_0001, 0)


def test_arm_processor_section_needs_an_error_info_record() -> None:
    with pytest.raises(ArmrasError) as exc:
        arm_processor_section(0x81, errors=[])
    assert str(exc.value) == "an ARM processor error section needs at least one error-info record"


# --- ARM error-info type byte (UEFI 2.9A errata bitmask: cache 1, TLB 2, bus 3, uarch 4) ----

def type_byte(value: str | int) -> int:
    return ArmErrorInfo(value).to_bytes()[4]      # N.2.4.4.1: version, length, valid u16, type


@pytest.mark.parametrize("name,bits", [
    ("cache", 0x02), ("cache-error", 0x02), ("TLB-Error", 0x04), (" bus ", 0x08),
    ("micro-arch", 0x10), ("Micro-Arch-ERROR", 0x10), ("cache, tlb,bus", 0x0E),
])
def test_arm_error_type_names(name: str, bits: int) -> None:
    assert type_byte(name) == bits


@pytest.mark.parametrize("raw", [0, 1, 0x80, 0xFF])
def test_arm_error_type_raw_bytes(raw: int) -> None:
    assert type_byte(raw) == raw


@pytest.mark.parametrize("raw,shown", [(0x100, "0x100"), (-1, "-0x1")])
def test_arm_error_type_outside_a_byte_is_refused(raw: int, shown: str) -> None:
    with pytest.raises(ArmrasError) as exc:
        type_byte(raw)
    assert str(exc.value) == f"ARM error type {shown} does not fit in a byte"


def test_arm_error_type_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ArmrasError) as exc:
        type_byte("cache,error-cache")
    assert str(exc.value) == "unknown ARM error type 'error-cache' (expected one of cache, tlb, bus, micro-arch)"


# --- builders: mutants of armras/ras/cper.py that survived -----------------------------

def test_memory_error_section_validation_bits_with_error_status() -> None:
    # UEFI 2.9 N.2.5: Validation Bits bit 0 Error Status, 1 Physical Address, 2 PA Mask,
    # 14 Memory Error Type; Error Status (u64 at 8) and PA mask (u64 at 24) follow.
    section = memory_error_section(PA, error_status=0x0400)
    valid, status = struct.unpack_from("<QQ", section, 0)
    assert valid == 1 << 0 | 1 << 1 | 1 << 14 and status == 0x0400
    section = memory_error_section(PA, physical_address_mask=0xFFFF_FFFF_F000, error_status=0x1000)
    assert struct.unpack_from("<Q", section, 0)[0] == 1 << 0 | 1 << 1 | 1 << 2 | 1 << 14


def test_arm_processor_contexts_follow_each_other() -> None:
    # N.2.4.4.2: each context is an 8-byte header (version u16, register context type u16,
    # register array size u32) and its registers, one right after the other, after the
    # 40-byte header and the 32-byte error-info records.
    ctx1 = ArmContextInfo(type=5, registers=bytes(range(16)))
    ctx2 = ArmContextInfo(type=6, registers=b"\xAA" * 8)
    section = arm_processor_section(0x8000_0000, contexts=[ctx1, ctx2])
    assert len(section) == 40 + 32 + (8 + 16) + (8 + 8)
    second = 40 + 32 + 8 + 16
    assert struct.unpack_from("<HHI", section, second) == (0, 6, 8)
    assert section[second + 8:] == b"\xAA" * 8
    assert struct.unpack_from("<I", section, 8)[0] == len(section)      # section length


def test_fru_text_and_section_type_forms() -> None:
    # ACPI 6.4 18.3.2.7.1: FRU Text is 20 bytes (at 44, after the 16-byte FRU Id); the section type GUID is the
    # entry's first 16 bytes, little-endian fields as EFI_GUID.
    text = b"DIMM-A1 slot 3 chan0"
    assert len(text) == 20
    record = generic_error_status([Section(MEM_GUID, bytes(80), fru_text=text)])
    assert record[20 + 44:20 + 64] == text
    with pytest.raises(ArmrasError, match="FRU text is at most 20 bytes"):
        generic_error_status([Section(MEM_GUID, bytes(80), fru_text=text + b"!")])
    for form in (str(MEM_GUID), MEM_GUID.bytes_le, MEM_GUID):
        assert generic_error_status([(form, bytes(80))])[20:36] == MEM_GUID.bytes_le
    with pytest.raises(ArmrasError, match="a section type GUID is 16 bytes, got 15"):
        generic_error_status([(MEM_GUID.bytes_le[:15], bytes(80))])


def test_short_fru_text_is_zero_padded_after_it_and_block_status_can_be_given() -> None:
    record = generic_error_status([Section(MEM_GUID, bytes(80), fru_text=b"DIMM0")])
    assert record[20 + 44:20 + 64] == b"DIMM0" + bytes(15)
    # 18.3.2.7 Block Status, u32 at 0: as given (0 = no valid data), else from the severity.
    assert struct.unpack_from("<I", generic_error_status([(MEM_GUID, bytes(80))], block_status=0))[0] == 0
    assert struct.unpack_from("<I", generic_error_status([(MEM_GUID, bytes(80))], block_status=0x13))[0] == 0x13


def test_memory_section_module_handle_names_the_dimm() -> None:
    # UEFI 2.9 N.2.5 Memory Error Section: Validation Bits at 0 (bit 1 physical address, bit 14
    # memory error type, bit 17 module handle), Module Handle (u16) at 78; QEMU sets neither.
    from armras.ras.cper import memory_error_section

    plain = memory_error_section(0x4800_0000)
    named = memory_error_section(0x4800_0000, module_handle=0x1100)
    assert len(named) == 80 and int.from_bytes(plain[0:8], "little") == 0x4002
    assert int.from_bytes(named[0:8], "little") == 0x2_4002
    assert named[78:80] == b"\x00\x11" and plain[78:80] == b"\x00\x00"
    assert named[8:78] == plain[8:78]


@pytest.mark.parametrize("handle", [0x0000, 0xFFFF])
def test_memory_section_takes_every_16_bit_handle(handle: int) -> None:
    from armras.ras.cper import memory_error_section

    section = memory_error_section(0x4800_0000, module_handle=handle)
    assert int.from_bytes(section[0:8], "little") == 0x2_4002                  # bit 17 even for handle 0
    assert int.from_bytes(section[78:80], "little") == handle


@pytest.mark.parametrize("handle", [-1, 0x1_0000])
def test_memory_section_refuses_a_handle_that_is_not_16_bits(handle: int) -> None:
    from armras.ras.cper import memory_error_section

    with pytest.raises(ArmrasError, match=f"^memory error section: module handle {handle:#x} is not a 16-bit "
                                          "SMBIOS handle$"):
        memory_error_section(0x4800_0000, module_handle=handle)


def _pcie_info(**fields: object) -> object:
    from armras.ras.cper import PcieErrorInfo

    base: dict[str, object] = dict(port_type=4, command=0x0547, status=0x4010, vendor_id=0x1B36, device_id=0x000C,
                                   class_code=0x060400, segment=1, bus=0, device=2, function=0, secondary_bus=2)
    return PcieErrorInfo(**{**base, **fields})  # type: ignore[arg-type]


def test_pcie_section_with_every_optional_field() -> None:
    # UEFI 2.9 N.2.7: Validation Bits (u64) at 0: port type 0, version 1, command/status 2, device
    # ID 3, serial number 4, bridge control/status 5, capability 6, AER info 7; Port Type u32 at 8;
    # Version at 12 (minor, major, 2 reserved); Command, Status at 16; reserved u32 at 20; Device
    # ID at 24 (vendor, device, class code 3 bytes, function, device, segment u16, bus, secondary
    # bus, slot u16, reserved); serial number lower/upper u32 at 40; bridge secondary status and
    # bridge control at 48; capability (60 bytes) at 52; AER info (96 bytes) at 112.
    from armras.ras.cper import pcie_error_section

    section = pcie_error_section(_pcie_info(capability=b"\x10\x80\x42", aer=bytes(range(1, 97)),
                                            bridge_secondary_status=0x4000, bridge_control=0x0002,
                                            serial_number=0x8765_4321_0FED_CBA9))
    assert len(section) == 208
    assert struct.unpack_from("<QIBBHHHI", section, 0) == (0xFF, 4, 0, 4, 0, 0x0547, 0x4010, 0)
    assert struct.unpack_from("<HH", section, 24) == (0x1B36, 0x000C)
    assert section[28:31] == b"\x00\x04\x06"
    assert struct.unpack_from("<BBHBBHB", section, 31) == (0, 2, 1, 0, 2, 0, 0)
    assert struct.unpack_from("<IIHH", section, 40) == (0x0FED_CBA9, 0x8765_4321, 0x4000, 0x0002)
    assert section[52:112] == b"\x10\x80\x42" + bytes(57)                       # zero padded after it
    assert section[112:208] == bytes(range(1, 97))                              # exactly 96 bytes fit


def test_pcie_section_without_the_optional_fields_leaves_their_bits_clear() -> None:
    from armras.ras.cper import pcie_error_section

    section = pcie_error_section(_pcie_info())
    assert struct.unpack_from("<Q", section, 0) == (0x0F,)
    assert section[40:208] == bytes(168)
    serial_only = pcie_error_section(_pcie_info(serial_number=0))
    assert struct.unpack_from("<Q", serial_only, 0) == (0x1F,)


@pytest.mark.parametrize("capability, aer", [(bytes(61), b""), (b"", bytes(97)), (bytes(61), bytes(97))])
def test_pcie_section_refuses_capabilities_that_do_not_fit(capability: bytes, aer: bytes) -> None:
    from armras.ras.cper import pcie_error_section

    with pytest.raises(ArmrasError, match="^PCIe section: capability is at most 60 bytes and AER info at most 96$"):
        pcie_error_section(_pcie_info(capability=capability, aer=aer))


def test_memory_error_record_carries_the_module_handle() -> None:
    from armras.ras.cper import memory_error_record

    # Generic Error Status Block (20 bytes), one Generic Error Data Entry (72), the section (80).
    record = memory_error_record(0x4800_0000, module_handle=0x1100)
    assert len(record) == 172
    section = record[92:172]
    assert int.from_bytes(section[0:8], "little") == 0x2_4002 and section[78:80] == b"\x00\x11"


def test_estatus_severity_reads_the_field_as_unsigned() -> None:
    from armras.ras.cper import estatus_severity

    # ACPI 6.4 18.3.2.7.1: Block Status, Raw Data Offset, Raw Data Length, Data Length, Error Severity.
    block = struct.pack("<5I", 0x10, 0, 0, 0, 0xFFFF_FFFF)
    assert estatus_severity(block) == 0xFFFF_FFFF
    assert estatus_severity(block[:19]) is None
