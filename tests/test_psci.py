"""PSCI 1.1 and SMCCC 1.1 discovery as a guest sees them over HVC and SMC.

Function IDs and return codes are Arm DEN 0022D (PSCI) section 5.1 / table 6 and
DEN 0028 (SMCCC) section 7; negative codes are returned sign-extended in x0, as QEMU
does (NOT_SUPPORTED -1, INVALID_PARAMETERS -2, ALREADY_ON -4).
"""
from __future__ import annotations

import pytest

from test_machine import POWER_OFF

NOT_SUPPORTED = 2**64 - 1
INVALID_PARAMETERS = 2**64 - 2
ALREADY_ON = 2**64 - 4


def call(fid: int, x1: int = 0, x2: int = 0, conduit: str = "hvc #0") -> str:
    return f"""
 ldr x0, ={fid:#x}
 ldr x1, ={x1:#x}
 ldr x2, ={x2:#x}
 {conduit}
 str x0, [x19], #8
"""


QUERIES = [
    # (what, function id, x1, x2, expected x0)
    ("PSCI_VERSION", 0x8400_0000, 0, 0, 0x0001_0001),                        # 1.1: major 1, minor 1
    ("SMCCC_VERSION", 0x8000_0000, 0, 0, 0x0001_0001),                       # SMCCC 1.1
    ("FEATURES(PSCI_VERSION)", 0x8400_000A, 0x8400_0000, 0, 0),
    ("FEATURES(CPU_SUSPEND64)", 0x8400_000A, 0xC400_0001, 0, 0),
    ("FEATURES(CPU_OFF)", 0x8400_000A, 0x8400_0002, 0, 0),
    ("FEATURES(CPU_ON64)", 0x8400_000A, 0xC400_0003, 0, 0),
    ("FEATURES(AFFINITY_INFO64)", 0x8400_000A, 0xC400_0004, 0, 0),
    ("FEATURES(MIGRATE_INFO_TYPE)", 0x8400_000A, 0x8400_0006, 0, 0),
    ("FEATURES(SYSTEM_OFF)", 0x8400_000A, 0x8400_0008, 0, 0),
    ("FEATURES(SYSTEM_RESET)", 0x8400_000A, 0x8400_0009, 0, 0),
    ("FEATURES(PSCI_FEATURES)", 0x8400_000A, 0x8400_000A, 0, 0),
    ("FEATURES(SMCCC_VERSION)", 0x8400_000A, 0x8000_0000, 0, 0),              # SMCCC 1.1 7.2.1
    ("FEATURES(MIGRATE)", 0x8400_000A, 0x8400_0005, 0, NOT_SUPPORTED),
    ("FEATURES(SYSTEM_SUSPEND)", 0x8400_000A, 0x8400_000E, 0, NOT_SUPPORTED),
    ("FEATURES(unknown)", 0x8400_000A, 0x8400_001F, 0, NOT_SUPPORTED),
    ("FEATURES(SYSTEM_OFF SMC64 id)", 0x8400_000A, 0xC400_0008, 0, NOT_SUPPORTED),   # SMC32 only
    ("FEATURES(PSCI_VERSION SMC64 id)", 0x8400_000A, 0xC400_0000, 0, NOT_SUPPORTED),
    ("PSCI_VERSION SMC64 id", 0xC400_0000, 0, 0, NOT_SUPPORTED),
    ("SYSTEM_RESET SMC64 id", 0xC400_0009, 0, 0, NOT_SUPPORTED),     # not a reset
    ("ARCH_FEATURES(WORKAROUND_1)", 0x8000_0001, 0x8000_8000, 0, NOT_SUPPORTED),
    ("CPU_ON(self)", 0xC400_0003, 0, 0x4008_0000, ALREADY_ON),
    ("CPU_ON(MPIDR 1)", 0xC400_0003, 1, 0x4008_0000, INVALID_PARAMETERS),
    ("CPU_ON(MPIDR 0x100)", 0x8400_0003, 0x100, 0x4008_0000, INVALID_PARAMETERS),
    ("AFFINITY_INFO(self)", 0xC400_0004, 0, 0, 0),                           # 0 = ON
    ("AFFINITY_INFO(MPIDR 1)", 0xC400_0004, 1, 0, INVALID_PARAMETERS),
    ("MIGRATE_INFO_TYPE", 0x8400_0006, 0, 0, 2),                             # 2: no Trusted OS to migrate
    ("MIGRATE", 0x8400_0005, 0, 0, NOT_SUPPORTED),
    ("MIGRATE_INFO_UP_CPU", 0x8400_0007, 0, 0, NOT_SUPPORTED),
    ("unknown PSCI id", 0x8400_001F, 0, 0, NOT_SUPPORTED),
    ("unknown SiP id", 0x8200_0001, 0, 0, NOT_SUPPORTED),
]


@pytest.mark.parametrize("conduit", ["hvc #0", ".inst 0xd4000003  // smc #0"])
def test_psci_queries_and_error_codes(board, conduit: str) -> None:
    body = "".join(call(fid, x1, x2, conduit) for _, fid, x1, x2, _ in QUERIES)
    b = board(" ldr x19, =0x40200000\n" + body + """
 mrs x20, mpidr_el1
 ldr x0, =0x84000008          // SYSTEM_OFF, armras extension: status in x1
 mov x1, #42
 hvc #0
 b .
 .ltorg
""")
    r = b.run()
    assert r.status == 42 and r.reason == "PSCI SYSTEM_OFF"
    results = [b.machine.mem.read_u64(0x4020_0000 + 8 * i) for i in range(len(QUERIES))]
    assert {what: got for (what, *_), got in zip(QUERIES, results)} == {what: want for what, *_, want in QUERIES}
    # CPU_ON(self) used MPIDR 0: the boot CPU's affinity fields (MPIDR_EL1 Aff0-3).
    assert b.x(20) & 0xFF_00FF_FFFF == 0


def test_cpu_on_and_affinity_info_use_the_affinity_fields_of_mpidr(board) -> None:
    # Linux passes MPIDR_EL1 values with bit 31 (RES1) set; only Aff3..Aff0 identify a CPU.
    b = board(" ldr x19, =0x40200000\n" + call(0xC400_0003, 0x8000_0000, 0x4008_0000)
              + call(0xC400_0004, 0x8000_0000) + POWER_OFF)
    assert b.run().status == 0
    assert b.machine.mem.read_u64(0x4020_0000) == ALREADY_ON
    assert b.machine.mem.read_u64(0x4020_0008) == 0


@pytest.mark.parametrize("fid,reason", [(0x8400_0009, "SYSTEM_RESET"), (0x8400_0002, "CPU_OFF")])
def test_system_reset_and_cpu_off_end_the_run_with_status_0(board, fid: int, reason: str) -> None:
    # One CPU: switching it off, or resetting (armras does not reboot), ends the run.
    b = board(f"""
 ldr x0, ={fid:#x}
 mov x1, #42                  // ignored: only SYSTEM_OFF takes a status
 hvc #0
 mov x7, #1                   // never reached
 ldr x0, =0x84000008
 mov x1, #3
 hvc #0
 .ltorg
""")
    r = b.run()
    assert r.status == 0 and reason in r.reason
    assert b.x(7) == 0


def test_system_off_status_from_x1(board) -> None:
    # armras extension (README): SYSTEM_OFF's x1 is the exit status, low 8 bits.
    b = board(" ldr x0, =0x84000008\n ldr x1, =0x1ff\n hvc #0\n b .\n .ltorg\n")
    assert b.run().status == 0xFF


def test_cpu_suspend_waits_for_an_interrupt(board) -> None:
    # CPU_SUSPEND (standby) returns SUCCESS once a wake-up event (the virtual timer's
    # interrupt, here still masked at PSTATE) arrives.
    b = board("""
 ldr x6, =0x08000000
 ldr x8, =0x08010000
 mov w7, #1
 str w7, [x6]                 // GICD_CTLR
 str w7, [x8]                 // GICC_CTLR
 mov w7, #0xff
 str w7, [x8, #4]             // GICC_PMR
 mov w7, #(1 << 27)
 str w7, [x6, #0x100]         // enable PPI 27
 ldr x9, =625000              // 10 ms
 msr cntv_tval_el0, x9
 mov x7, #1
 msr cntv_ctl_el0, x7
 mrs x20, cntvct_el0
 ldr x0, =0xc4000001          // CPU_SUSPEND64, standby power state 0
 mov x1, #0
 hvc #0
 mov x21, x0
 mrs x22, cntvct_el0
 mrs x23, cntv_ctl_el0
""" + POWER_OFF + " .ltorg\n", deterministic=True)
    r = b.run()
    assert r.status == 0
    assert b.x(21) == 0                               # SUCCESS
    assert b.x(22) >= 625000 > b.x(20)                # it slept until the deadline
    assert b.x(23) == 0b101                           # ENABLE | ISTATUS: woken by the timer
