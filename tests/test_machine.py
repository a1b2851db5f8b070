"""CPU exception entry, IRQ delivery, WFI idle-skip, SEA injection and poisoning, limits.

Each test runs a small assembled guest on a real board and checks what the guest saw
(registers it captured in its handler) and what is in guest memory.
"""
from __future__ import annotations

import struct

import pytest

from armras.arch.cpu import GuestFault
from armras.errors import ArmrasError, NotAcknowledged
from armras.board.machine import RunawayGuest
from armras.ras import cper
from armras.ras.sources import SOURCE_SEA

POWER_OFF = """
 ldr x0, =0x84000008
 hvc #0
 b .
"""

# A vector table whose every synchronous slot records ESR/ELR/SPSR/FAR in x20-x23,
# the slot offset in x24, and PSTATE.{DAIF,CurrentEL,SPSel} in x25-x27, then returns
# past the faulting instruction (or to EL1h at the address in x28 if it is non-zero).
VECTORS = """
 .balign 0x800
vectors:
""" + "".join(f"""
 .balign 0x80
 mrs x20, esr_el1
 mrs x21, elr_el1
 mrs x22, spsr_el1
 mrs x23, far_el1
 mov x24, #{slot:#x}
 mrs x25, daif
 mrs x26, currentel
 mrs x27, spsel
 b handler_tail
""" for slot in range(0, 0x800, 0x80)) + """
handler_tail:
 cbz x28, 1f
 msr elr_el1, x28          // return to EL1h at x28
 mov x28, #0x3c5
 msr spsr_el1, x28
 mov x28, #0
 eret
1: mrs x29, elr_el1         // scratch: x29/x30 only, tests use the rest
 lsr x30, x20, #26
 cmp x30, #0x15       // SVC: ELR already points past it
 b.eq 2f
 add x29, x29, #4
 msr elr_el1, x29
2: eret
"""

PROLOGUE = """
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 ldr x3, =0x40300000
 msr sp_el0, x3
 mov x28, #0
"""


def guest(body: str, status: str = "0") -> str:
    return PROLOGUE + body + f"\n mov x1, #{status}\n" + POWER_OFF + VECTORS + "\n .ltorg\n"


def test_svc_from_el1_entry_registers(board):
    b = board(guest("""
 movz x5, #0x6000, lsl #16   // set N=0 Z=1 C=1 V=0
 msr nzcv, x5
svc_at:
 svc #0x42
 adr x6, svc_at
"""))
    r = b.run()
    assert r.status == 0 and r.reason == "PSCI SYSTEM_OFF"
    assert b.x(20) == 0x56000042                  # EC 0x15, IL, imm16
    assert b.x(21) == b.x(6) + 4                  # preferred return: after the SVC
    assert b.x(22) == 0x600003C5                  # SPSR: Z|C, DAIF masked, EL1h
    assert b.x(24) == 0x200                       # current EL with SP_ELx
    assert b.x(25) == 0x3C0                       # DAIF masked in the handler
    assert b.x(26) == 1 << 2 and b.x(27) == 1     # EL1, SPSel=1


def test_svc_from_el0_banks_stack_pointer_and_returns(board):
    b = board(guest("""
 adr x4, el0_code
 msr elr_el1, x4
 msr spsr_el1, xzr          // EL0t, interrupts unmasked
 eret
el0_code:
 mov x7, sp                 // SP_EL0 at EL0
 svc #0x7
 mov x8, sp                 // still SP_EL0 after the ERET back
 adr x28, el1_again         // the handler returns to EL1 through x28
 svc #0x1
el1_again:
 mov x9, sp
"""))
    r = b.run()
    assert r.status == 0
    assert b.x(7) == 0x40300000 and b.x(8) == 0x40300000   # EL0 stack survived the round trip
    assert b.x(9) == 0x40400000                            # back on SP_EL1 at EL1
    assert b.x(20) == 0x56000001
    assert b.x(22) & 0xF == 0                              # SPSR.M = EL0t
    assert b.x(24) == 0x400                                # lower EL, AArch64 slot


def test_undefined_and_brk_syndromes(board):
    b = board(guest("""
 brk #0x7
 mov x10, x20
 mov x11, x21
udf_at:
 .word 0x00000000
 adr x12, udf_at
"""))
    b.run()
    assert b.x(10) == 0xF2000007                  # EC 0x3C BRK, IL, comment 7
    assert b.x(20) == 0x02000000                  # EC 0 unknown, IL
    assert b.x(21) == b.x(12)                     # ELR = the undefined instruction


def test_unassigned_physical_address_gives_synchronous_external_abort(board):
    b = board(guest("""
 ldr x5, =0x0a000000        // nothing is mapped there on the board
 ldr x6, [x5]
"""))
    b.run()
    assert b.x(20) == 0x96000010                  # external abort from EL1, FAR valid (no FnV), DFSC 0x10
    assert b.x(23) == 0x0a000000                  # FAR: the address read (MMU off: VA = PA)


def test_injected_sea_writes_cper_and_follows_ack_handshake(board):
    b = board(guest("""
 mov x15, #0
 hvc #0x99                 // ready: vectors installed
1: add x15, x15, #1
 cmp x20, #0               // loop until the handler has run
 b.eq 1b
"""))
    m = b.machine
    source = m.sources.by_id(SOURCE_SEA)
    m.hvc_handlers[0x99] = lambda cpu: m.defer(lambda: m.inject_sea(0x40fa6123), "test injection")
    b.run()
    assert b.x(20) == 0x96000410
    # The record in the guest's error status block is QEMU's 172-byte memory error.
    block = source.block_address()
    record = m.mem.read(block, 172)
    assert record == cper.memory_error_record(0x40fa6123)
    assert struct.unpack_from("<Q", record, 20 + 72 + 16)[0] == 0x40fa6123
    # Nobody acknowledged it: the next record is refused and the first one kept.
    assert source.read_ack() == 0
    with pytest.raises(NotAcknowledged):
        m.inject_sea(0x40001000)
    assert m.mem.read(block, 172) == record
    # The guest acks as ghes_ack_error does; then a new record is accepted.
    m.mem.write_u32(block, 0)
    m.mem.write_u64(source.read_ack_address, (source.read_ack() & ~1) | 1)
    m.record_error(SOURCE_SEA, cper.memory_error_record(0x40001000))
    assert struct.unpack_from("<Q", m.mem.read(block, 172), 108)[0] == 0x40001000


def test_guest_acknowledges_and_second_sea_is_accepted(board):
    # The handler clears block_status and writes the read-ack register itself, then the
    # second injection (scheduled later) must be accepted.
    b = board("""
 adr x2, vectors2
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 mov x19, #0
 hvc #0x99                 // ready: vectors installed
1: cmp x19, #2
 b.lo 1b
 mov x1, #0
""" + POWER_OFF + """
 .balign 0x800
vectors2:
 .skip 0x200
 ldr x9, [x13]             // error status address register -> block address
 str wzr, [x9]             // block_status = 0
 ldr x10, [x14]            // read-ack: (val & preserve) | write
 and x10, x10, #~1
 orr x10, x10, #1
 str x10, [x14]
 add x19, x19, #1
 mrs x20, esr_el1
 eret
 .ltorg
""")
    m = b.machine
    src = m.sources.by_id(SOURCE_SEA)
    m.cpu.set_x(13, src.error_status_address)
    m.cpu.set_x(14, src.read_ack_address)
    m.hvc_handlers[0x99] = lambda cpu: m.defer(lambda: m.inject_sea(0x40100000), "first")
    m.at_guest_time(0.05, lambda: m.inject_sea(0x40200000), "second")
    r = b.run()
    assert r.status == 0 and b.x(19) == 2
    assert src.read_ack() == 1 and src.block_status() == 0 and src.records_written == 2


def test_poisoned_page_raises_sea_with_cper_on_access(board):
    b = board(guest("""
 ldr x5, =0x40f00000
 str x5, [x5, #0x10]       // before poisoning: ordinary memory
 hvc #0x99                 // let the host poison the page now
 ldr x6, [x5, #0x18]       // touch the poisoned page
"""))
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: m.poison(0x40f00010)
    b.run()
    assert b.x(20) == 0x96000410
    block = m.sources.by_id(SOURCE_SEA).block_address()
    parsed = cper.parse_generic_error_status(m.mem.read(block, 1024))
    assert parsed.entries[0].physical_address == 0x40f00000   # the page, as KVM reports it
    assert 0x40f00000 in m.poisoned
    # Neighbouring pages are still ordinary memory.
    assert m.mem.read_u64(0x40eff000) == 0 and m.mem.read(0x40f01000, 8) == bytes(8)


def test_second_poison_touch_without_ack_is_a_clear_failure(board):
    b = board(guest("""
 ldr x5, =0x40f00000
 ldr x6, [x5]
 ldr x6, [x5]
"""))
    b.machine.poison(0x40f00000)
    with pytest.raises(GuestFault, match="unacknowledged record"):
        b.run()


def test_poison_outside_ram_and_in_firmware_memory_is_refused(board):
    m = board(guest("")).machine
    with pytest.raises(ArmrasError, match="outside guest RAM"):
        m.poison(0x1000)
    with pytest.raises(ArmrasError, match="firmware-reserved"):
        m.poison(m.hw_errors.base)
    with pytest.raises(ArmrasError, match="outside guest RAM"):
        m.inject_sea(0x8000_0000_0000)


TIMER_GUEST = """
 ldr x6, =0x08000000
 mov w7, #1
 str w7, [x6]               // GICD_CTLR
 mov w7, #(1<<27)
 str w7, [x6, #0x100]       // enable PPI 27 (virtual timer)
 ldr x8, =0x08010000
 mov w7, #1
 str w7, [x8]               // GICC_CTLR
 mov w7, #0xff
 str w7, [x8, #4]           // GICC_PMR
 mov x19, #0
 ldr x9, =625000            // 10 ms at 62.5 MHz
 msr cntv_tval_el0, x9
 mov x7, #1
 msr cntv_ctl_el0, x7
 msr daifclr, #2
1: wfi
 cmp x19, #100
 b.lo 1b
 mrs x18, cntvct_el0
"""

IRQ_VECTORS = """
 .balign 0x800
vectors:
 .skip 0x280
 ldr w10, [x8, #0xc]        // GICC_IAR
 mov x17, x10
 mrs x16, spsr_el1
 add x19, x19, #1
 msr cntv_tval_el0, x9
 str w10, [x8, #0x10]       // GICC_EOIR
 eret
 .ltorg
"""


def test_timer_interrupts_and_wfi_skips_idle_time(board):
    b = board("""
 adr x2, vectors
 msr vbar_el1, x2
""" + TIMER_GUEST + "\n mov x1, #0\n" + POWER_OFF + IRQ_VECTORS)
    r = b.run()
    assert r.status == 0
    assert b.x(19) == 100 and b.x(17) == 27           # 100 virtual-timer IRQs acknowledged
    assert b.x(16) & 0x80 == 0                        # taken with PSTATE.I clear
    guest_seconds = b.x(18) / 62.5e6
    assert guest_seconds >= 1.0                       # 100 x 10 ms of guest time passed...
    assert r.wall_seconds < guest_seconds / 4         # ...much faster than real time


def test_exception_loop_is_reported_not_hung(board):
    b = board("""
 adr x2, vectors
 msr vbar_el1, x2
 .word 0
 .balign 0x800
vectors:
 .rept 16
 .balign 0x80
 .word 0                    // the handler itself is undefined
 .endr
""")
    with pytest.raises(GuestFault, match="exception loop"):
        b.run()


def test_exception_before_vector_table_is_reported(board):
    b = board(" .word 0\n")
    with pytest.raises(GuestFault, match="before installing a vector table"):
        b.run()


def test_wfi_with_nothing_to_wake_is_reported(board):
    b = board(" msr daifset, #2\n wfi\n b .\n")
    with pytest.raises(GuestFault, match="WFI"):
        b.run()


def test_timeout_and_instruction_limit(board):
    b = board(" b .\n", timeout=0.3)
    with pytest.raises(RunawayGuest, match="within 0.3 s") as exc:
        b.run()
    assert exc.value.exit_code == 124                 # README: --timeout
    b = board("1: add x1, x1, #1\n b 1b\n", max_insns=200_000)
    with pytest.raises(RunawayGuest, match="200000 instructions") as exc:
        b.run()
    assert exc.value.exit_code == 125                 # README: --max-insns
    assert 200_000 <= b.machine.instructions < 300_000


def test_psci_calls(board):
    b = board("""
 ldr x0, =0x84000000
 hvc #0
 mov x10, x0                 // PSCI_VERSION
 ldr x0, =0xc4000003
 mov x1, #1                  // CPU_ON for MPIDR 1: the board has one CPU
 hvc #0
 mov x11, x0
 ldr x0, =0x8400000a
 ldr x1, =0x84000008         // PSCI_FEATURES(SYSTEM_OFF)
 hvc #0
 mov x12, x0
 ldr x0, =0x12345678         // unknown function
 .inst 0xd4000003         // smc #0
 mov x13, x0
 hvc #0x77                   // no firmware service behind this immediate
 mov x14, x0
 ldr x0, =0x84000008
 mov x1, #42
 hvc #0
""")
    r = b.run()
    assert r.status == 42
    assert b.x(10) == 0x10001
    assert b.x(11) == 2**64 - 2                      # INVALID_PARAMETERS
    assert b.x(12) == 0
    assert b.x(13) == 2**64 - 1 and b.x(14) == 2**64 - 1   # NOT_SUPPORTED


def test_frequent_stops_never_repeat_an_mmio_access(board, monkeypatch):
    # Unicorn 2.1.4 executes an MMIO store twice when a stop arrives from another
    # thread next to it; the block hook must make every stop land on a block boundary.
    import armras.board.scheduler

    monkeypatch.setattr(armras.board.scheduler, "POLL_QUANTUM", 0.0002)
    b = board("""
 ldr x1, =0x09000000
 mov x2, #0
1: and x3, x2, #0x3f
 add x3, x3, #0x30
 str w3, [x1]
 add x2, x2, #1
 ldr x4, =30000
 cmp x2, x4
 b.lo 1b
 mov x1, #0
""" + POWER_OFF)
    b.run()
    assert b.console.getvalue() == bytes((i & 0x3F) + 0x30 for i in range(30000))
    assert b.machine.instructions >= 30000 * 7
