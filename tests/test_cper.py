import struct
import uuid

import pytest

from armras.errors import ArmrasError
from armras.ras import cper
from armras.ras.cper import (
    ARM_PROCESSOR_ERROR_GUID,
    MEMORY_ERROR_GUID,
    ArmContextInfo,
    ArmErrorInfo,
    Section,
    Severity,
    arm_processor_record,
    arm_processor_section,
    generic_error_status,
    memory_error_record,
    memory_error_section,
    parse_generic_error_status,
)

MEM_GUID_LE = bytes.fromhex("1411BCA5646FDE4EB8633E83ED7C83B1")
ARM_GUID_LE = bytes.fromhex("163D9EE111BCE4119CAAC2051D5D46B0")
PA = 0x4012_3000


def test_guid_bytes_little_endian():
    assert cper.guid_bytes("A5BC1114-6F64-4EDE-B863-3E83ED7C83B1") == MEM_GUID_LE
    assert MEMORY_ERROR_GUID.bytes_le == MEM_GUID_LE
    assert ARM_PROCESSOR_ERROR_GUID.bytes_le == ARM_GUID_LE


def test_severity_values():
    assert [int(s) for s in (Severity.RECOVERABLE, Severity.FATAL, Severity.CORRECTED, Severity.NONE)] == [0, 1, 2, 3]


def test_memory_error_section_layout():
    sec = memory_error_section(PA)
    assert len(sec) == 80
    assert struct.unpack_from("<Q", sec, 0)[0] == 0x4002
    assert struct.unpack_from("<Q", sec, 8)[0] == 0
    assert struct.unpack_from("<Q", sec, 16)[0] == PA
    assert sec[24:80] == bytes(56)          # mask, location, ids, error_type 0, rest zero


def test_memory_error_section_optional_fields():
    sec = memory_error_section(PA, error_type=3, physical_address_mask=0xFFFF_FFFF_FFFF_F000)
    assert struct.unpack_from("<Q", sec, 0)[0] == 0x4002 | 0x4
    assert struct.unpack_from("<Q", sec, 24)[0] == 0xFFFF_FFFF_FFFF_F000
    assert sec[72] == 3


def test_memory_error_record_is_qemus_172_bytes():
    rec = memory_error_record(PA)
    assert len(rec) == 172
    # Generic Error Status Block
    assert struct.unpack_from("<IIIII", rec, 0) == (1, 0, 0, 152, 0)
    # Generic Error Data Entry
    e = 20
    assert rec[e:e + 16] == MEM_GUID_LE
    assert rec[e:e + 16] == bytes([0x14, 0x11, 0xBC, 0xA5, 0x64, 0x6F, 0xDE, 0x4E,
                                   0xB8, 0x63, 0x3E, 0x83, 0xED, 0x7C, 0x83, 0xB1])
    assert struct.unpack_from("<I", rec, e + 16)[0] == 0          # section severity
    assert struct.unpack_from("<H", rec, e + 20)[0] == 0x0300     # revision
    assert rec[e + 22] == 0 and rec[e + 23] == 0                  # validation, flags
    assert struct.unpack_from("<I", rec, e + 24)[0] == 80
    assert rec[e + 28:e + 72] == bytes(44)                        # FRU id, FRU text, timestamp
    # Memory Error Section
    s = e + 72
    assert s == 92
    assert struct.unpack_from("<Q", rec, s)[0] == 0x4002
    assert struct.unpack_from("<Q", rec, s + 16)[0] == PA
    assert rec[s:] == memory_error_section(PA)


def test_memory_error_record_severities():
    fatal = memory_error_record(PA, Severity.FATAL)
    assert struct.unpack_from("<I", fatal, 0)[0] == 1
    assert struct.unpack_from("<I", fatal, 16)[0] == 1
    assert struct.unpack_from("<I", fatal, 36)[0] == 1
    corrected = memory_error_record(PA, Severity.CORRECTED)
    assert struct.unpack_from("<I", corrected, 0)[0] == 1 << 1
    assert struct.unpack_from("<I", corrected, 16)[0] == 2
    # entry count bits 4-13 left 0, like QEMU
    for rec in (fatal, corrected, memory_error_record(PA)):
        assert struct.unpack_from("<I", rec, 0)[0] & (0x3FF << 4) == 0


def test_arm_processor_section_default_layout():
    sec = arm_processor_section(mpidr=0x8000_0001, midr=0x410F_D034)
    assert len(sec) == 40 + 32
    valid, n_err, n_ctx, length, aff, rsvd, mpidr, midr, running, psci = struct.unpack_from(
        "<IHHIB3sQQII", sec, 0)
    assert valid == 0b111                     # MPIDR, affinity level, running state
    assert (n_err, n_ctx, length) == (1, 0, 72)
    assert (aff, rsvd) == (0, bytes(3))
    assert (mpidr, midr, running, psci) == (0x8000_0001, 0x410F_D034, 1, 0)
    ver, ln, ivalid, etype, mult, flags, info, va, pa = struct.unpack_from("<BBHBHBQQQ", sec, 40)
    assert (ver, ln) == (0, 32)
    assert ivalid == 0b00111                  # multiple-error, flags, error-info; no VA/PA
    assert etype == 1 << 1                    # cache
    assert (mult, flags, info, va, pa) == (0, 0x3, 0x0091000F, 0, 0)


def test_arm_processor_section_multiple_records_and_addresses():
    errors = [
        ArmErrorInfo("cache", phys_addr=0xABBA0BAD),
        ArmErrorInfo("tlb", virt_addr=0xDEADBEEF, error_info=0x0054007F),
        ArmErrorInfo("bus", multiple_error=1),
        ArmErrorInfo("tlb,micro-arch"),
        ArmErrorInfo(0x7),
    ]
    sec = arm_processor_section(0x444, errors=errors, running_state=0, affinity_level=None,
                                contexts=[ArmContextInfo(5, bytes(16))], vendor_data=b"\x13\x7b")
    assert len(sec) == 40 + 5 * 32 + (8 + 16) + 2
    valid, n_err, n_ctx, length = struct.unpack_from("<IHHI", sec, 0)
    assert valid == 0b1101                    # MPIDR, running state, vendor info; no affinity
    assert (n_err, n_ctx, length) == (5, 1, len(sec))
    recs = [struct.unpack_from("<BBHBHBQQQ", sec, 40 + 32 * i) for i in range(5)]
    assert [r[3] for r in recs] == [0x2, 0x4, 0x8, 0x14, 0x7]
    assert recs[0][2] == 0b10111 and recs[0][8] == 0xABBA0BAD and recs[0][7] == 0
    assert recs[1][2] == 0b01111 and recs[1][7] == 0xDEADBEEF and recs[1][6] == 0x0054007F
    assert recs[2][4] == 1
    ctx = 40 + 5 * 32
    assert struct.unpack_from("<HHI", sec, ctx) == (0, 5, 16)
    assert sec[-2:] == b"\x13\x7b"


def test_arm_error_type_rejects_unknown_name():
    with pytest.raises(ArmrasError, match="unknown ARM error type"):
        arm_processor_section(0, errors=[ArmErrorInfo("cache-ish")])


def test_arm_processor_record_round_trip():
    rec = arm_processor_record(0x81, errors=[ArmErrorInfo("cache"), ArmErrorInfo("bus")],
                               severity=Severity.CORRECTED)
    assert len(rec) == 20 + 72 + 40 + 64
    st = parse_generic_error_status(rec)
    assert st.block_status == 2 and st.severity == Severity.CORRECTED
    assert st.data_length == 72 + 104
    (entry,) = st.entries
    assert entry.section_type == ARM_PROCESSOR_ERROR_GUID
    assert entry.section_name == "ARM processor error"
    assert entry.revision == 0x0300 and entry.severity == 2
    assert entry.physical_address is None
    assert entry.payload == rec[92:]


def test_parse_memory_record_round_trip():
    st = parse_generic_error_status(memory_error_record(PA))
    assert (st.block_status, st.severity, st.data_length, st.length) == (1, 0, 152, 172)
    (entry,) = st.entries
    assert entry.section_type == MEMORY_ERROR_GUID
    assert entry.section_name == "memory error"
    assert entry.physical_address == PA
    assert entry.revision == 0x0300 and len(entry.payload) == 80
    assert "  physical_address: 0x0000000040123000" in st.describe()


def test_parse_accepts_a_whole_block_and_multiple_sections():
    other = uuid.UUID("12345678-1234-5678-9ABC-DEF012345678")
    rec = generic_error_status([
        (MEMORY_ERROR_GUID, memory_error_section(PA)),
        Section(other, b"\x01\x02\x03", severity=Severity.CORRECTED),
    ])
    st = parse_generic_error_status(rec + bytes(1024 - len(rec)))
    assert [e.section_name for e in st.entries] == ["memory error", "12345678-1234-5678-9ABC-DEF012345678"]
    assert st.entries[1].severity == 2 and st.entries[1].payload == b"\x01\x02\x03"


def test_parse_memory_section_without_pa_valid():
    sec = bytearray(memory_error_section(PA))
    sec[0:8] = struct.pack("<Q", 0x4000)
    st = parse_generic_error_status(generic_error_status([(MEMORY_ERROR_GUID, bytes(sec))]))
    assert st.entries[0].physical_address is None


def test_parse_accepts_revision_2_entries_with_64_byte_headers():
    rec = bytearray(memory_error_record(PA))
    entry = rec[20:20 + 64] + rec[92:]                       # drop the timestamp
    entry[20:22] = struct.pack("<H", 0x0201)
    rec = rec[:20] + entry
    rec[12:16] = struct.pack("<I", 64 + 80)
    st = parse_generic_error_status(bytes(rec))
    assert st.entries[0].header_size == 64 and st.entries[0].physical_address == PA


@pytest.mark.parametrize("cut", [0, 10, 19])
def test_parse_rejects_truncated_header(cut):
    with pytest.raises(ArmrasError, match="truncated"):
        parse_generic_error_status(memory_error_record(PA)[:cut])


def test_parse_rejects_truncated_body():
    with pytest.raises(ArmrasError, match="truncated: 100 bytes, the header says 172"):
        parse_generic_error_status(memory_error_record(PA)[:100])


@pytest.mark.parametrize("data_length,reason", [
    (151, "overrun data_length 151"),
    (153, "only 1 bytes left"),
    (160, "entry 1: only 8 bytes left"),
    (182, "entry 1 \\(revision 0x0000\\): its 64-byte header overruns data_length 182"),
    (30, "smaller than a Generic Error Data Entry"),
    (2000, "exceeds the 1024-byte error status block"),
])
def test_parse_rejects_bad_data_length(data_length, reason):
    rec = bytearray(memory_error_record(PA)) + bytes(32)
    rec[12:16] = struct.pack("<I", data_length)
    with pytest.raises(ArmrasError, match=reason):
        parse_generic_error_status(bytes(rec))


def test_parse_rejects_revision_0x0200_entry_with_72_byte_layout():
    rec = bytearray(memory_error_record(PA))
    rec[40:42] = struct.pack("<H", 0x0200)
    with pytest.raises(ArmrasError, match="entry 1: only 8 bytes left"):
        parse_generic_error_status(bytes(rec))


def test_parse_rejects_raw_data_overlapping_entries():
    rec = bytearray(memory_error_record(PA)) + bytes(8)
    rec[4:12] = struct.pack("<II", 100, 8)
    with pytest.raises(ArmrasError, match="raw data offset 100 overlaps"):
        parse_generic_error_status(bytes(rec))


def test_parse_require_active():
    rec = bytearray(memory_error_record(PA))
    rec[0:4] = bytes(4)
    assert parse_generic_error_status(bytes(rec)).block_status == 0
    with pytest.raises(ArmrasError, match="block_status is 0"):
        parse_generic_error_status(bytes(rec), require_active=True)


def test_parse_errors_are_one_line():
    with pytest.raises(ArmrasError) as exc:
        parse_generic_error_status(b"\x01" * 5)
    assert "\n" not in str(exc.value)


def test_record_length_includes_raw_data():
    # ACPI 6.4 table 18.11 Generic Error Status Block: raw data offset at byte 4, raw
    # data length at 8, data length at 12.  Linux's cper_estatus_len: with raw data the
    # record ends at raw_data_offset + raw_data_length, else at 20 + data_length.
    rec = bytearray(memory_error_record(PA)) + bytes(range(40))
    rec[4:12] = struct.pack("<II", 180, 32)          # raw data at 180..211, past 8 bytes of gap
    st = parse_generic_error_status(bytes(rec))
    assert (st.data_length, st.raw_data_offset, st.raw_data_length) == (152, 180, 32)
    assert st.length == 212
    # Without raw data the length is header + data entries.
    assert parse_generic_error_status(memory_error_record(PA)).length == 172
    # The whole record, raw data included, must be present and fit the 1 KiB block.
    with pytest.raises(ArmrasError, match="truncated: 200 bytes, the header says 212"):
        parse_generic_error_status(bytes(rec[:200]))
    rec[8:12] = struct.pack("<I", 1024 - 180 + 1)
    with pytest.raises(ArmrasError, match="record length 1025 exceeds the 1024-byte"):
        parse_generic_error_status(bytes(rec) + bytes(1024))


def test_estatus_severity_reads_the_field_or_nothing():
    # Error Severity is the fifth u32 of the Generic Error Status Block (ACPI 6.4
    # Table 18.11); UEFI 2.9 N.2.2: 0 recoverable, 1 fatal, 2 corrected.
    assert cper.estatus_severity(cper.memory_error_record(0x4100_0000, cper.Severity.FATAL)) == 1
    assert cper.estatus_severity(cper.memory_error_record(0x4100_0000, cper.Severity.CORRECTED)) == 2
    assert cper.estatus_severity(bytes(16) + b"\x01\x00\x00") is None     # one byte short
    assert cper.estatus_severity(bytes(16) + b"\x01\x00\x00\x00") == 1
