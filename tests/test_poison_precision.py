"""A poisoned page faults exactly: the SEA's ELR is the accessing instruction, nothing after it ran.

Linux relies on that: its SEA handler returns to (or signals at) ELR, and `clear_page`
touches fresh pages with `DC ZVA`. Each case runs with the MMU on (RAM as Normal
memory, as Linux maps it; DC ZVA to Device memory would be an alignment fault), poisons
one page, performs one access to it, and checks what the guest's SEA handler saw.
"""
from __future__ import annotations

import pytest

POISONED = 0x40F0_0000

# Identity map with a 4 KiB granule, T0SZ=25 (39-bit VA), two level-1 blocks:
# 0x0000_0000 as Device-nGnRnE (MAIR attr 1), 0x4000_0000 as Normal WB (attr 0).
MMU_ON = """
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 adr x2, l1_table
 ldr x3, =0x00000000000000405      // block, AF, attr index 1 (device)
 str x3, [x2]
 ldr x3, =0x0000000040000401      // block, AF, attr index 0 (normal), RW at EL1
 str x3, [x2, #8]
 ldr x3, =0x0060000040000441      // VA 0x8000_0000 -> RAM again, RW at EL0 too, XN (for LDTR/STTR)
 str x3, [x2, #16]
 msr ttbr0_el1, x2
 ldr x3, =0x00ff                   // attr0 = 0xff (Normal WB), attr1 = 0x00 (Device-nGnRnE)
 msr mair_el1, x3
 ldr x3, =0x80803519               // T0SZ=25, IRGN0/ORGN0 WB, SH0 inner, TG0 4K, EPD1, IPS 32-bit
 msr tcr_el1, x3
 isb
 mrs x3, sctlr_el1
 orr x3, x3, #1                    // M
 orr x3, x3, #(1 << 2)             // C
 orr x3, x3, #(1 << 12)            // I
 msr sctlr_el1, x3
 isb
 ldr x5, ={poisoned:#x}
 mov x7, #0
 mov x20, #0
 hvc #0x99                         // the host poisons the page now
"""

TAIL = """
 mov x1, #0
 ldr x0, =0x84000008
 hvc #0
 b .

 .balign 0x800
vectors:
 .skip 0x200
 mrs x20, esr_el1                  // current EL, SPx, synchronous
 mrs x21, elr_el1
 mrs x22, far_el1
 mov x1, #0
 ldr x0, =0x84000008
 hvc #0
 b .
 .ltorg
 .balign 4096
l1_table:
 .skip 4096
"""

# (name, setup, access): `access` is the one instruction that touches the poisoned page;
# the `mov x7, #1` after it must never run. Page-crossing accesses start 4 bytes before.
ACCESSES = [
    ("ldr", "", "ldr x6, [x5]"),
    ("str", "", "str x6, [x5]"),
    ("strb", "", "strb w6, [x5, #0x7ff]"),
    ("ldp", "", "ldp x6, x8, [x5]"),
    ("stp", "", "stp x6, x8, [x5]"),
    ("str_postindex", "", "str x6, [x5], #16"),
    ("ldxr", "", "ldxr x6, [x5]"),
    ("stlr", "", "stlr x6, [x5]"),
    ("ldr_q", "", "ldr q0, [x5]"),
    ("str_q", "", "str q0, [x5]"),
    ("st1", "", "st1 {v0.16b, v1.16b}, [x5]"),
    ("ldtr", "mov x10, #0x40000000; add x5, x5, x10", "ldtr x6, [x5]"),   # through the EL0-accessible alias
    ("sttr", "mov x10, #0x40000000; add x5, x5, x10", "sttr x6, [x5]"),
    ("dc_zva", "", "dc zva, x5"),
    ("ldr_cross", "sub x5, x5, #4", "ldr x6, [x5]"),
    ("str_cross", "sub x5, x5, #4", "str x6, [x5]"),
    ("stp_cross", "sub x5, x5, #8", "stp x6, x8, [x5]"),
]


@pytest.mark.parametrize("name,setup,access", ACCESSES, ids=[a[0] for a in ACCESSES])
def test_poisoned_access_reports_the_exact_instruction(board, name, setup, access):
    source = MMU_ON.format(poisoned=POISONED) + f"""
 mov x6, #0x55
 {setup}
 mov x9, x5
access:
 {access}
 mov x7, #1                        // must not run before the SEA
 mov x7, #2
 adr x21, access                   // (only reached if no SEA was taken)
""" + TAIL
    b = board(source)
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: m.poison(POISONED)
    r = b.run()
    assert r.status == 0
    esr, elr = b.x(20), b.x(21)
    assert esr >> 26 == 0x25, f"{name}: expected a data abort from EL1, ESR {esr:#x}"
    assert esr & 0x3F == 0x10, f"{name}: DFSC must be a synchronous external abort, ESR {esr:#x}"
    assert b.x(7) == 0, f"{name}: instructions after the access ran before the SEA (x7={b.x(7)})"
    # ELR is the access itself: the instruction right after `mov x9, x5`.
    assert m.mem.read_u32(elr - 4) == 0xAA0503E9, f"{name}: ELR {elr:#x} is not the access"  # mov x9, x5
    assert b.x(5) == b.x(9), f"{name}: base register written back before the abort"


BUS_ERROR_PROLOGUE = """
 adr x2, vectors
 msr vbar_el1, x2
 ldr x3, =0x40400000
 mov sp, x3
 mov x7, #0
"""


@pytest.mark.parametrize("name,access,esr", [
    # A store to the read-only flash: data abort from EL1 (EC 0x25), IL, WnR (bit 6), FAR
    # valid (FnV clear), DFSC 0x10 synchronous external abort: as QEMU TCG reports a bus error.
    ("flash_store", "mov x5, #0x1000\naccess:\n str x6, [x5]", 0x96000050),
    # A branch into a device: the fetch itself aborts (instruction abort, same EL, IFSC 0x10).
    ("mmio_fetch", "ldr x5, =0x09000000\n adr x30, access\n br x5\naccess:", 0x86000010),
])
def test_bus_errors_are_external_aborts_in_the_guest(board, name, access, esr):
    b = board(BUS_ERROR_PROLOGUE + access + "\n mov x7, #1\n" + TAIL)
    r = b.run()
    assert r.status == 0, f"{name}: the guest must survive to power off from its handler"
    assert b.x(20) == esr, f"{name}: ESR {b.x(20):#x}"
    assert b.x(7) == 0, f"{name}: the instruction after the abort ran"
    if name == "mmio_fetch":
        assert b.x(21) == 0x0900_0000                 # ELR: the address that could not be fetched
        assert b.x(22) == 0x0900_0000                 # FAR: the same, the fetch's address
    else:
        assert m32(b, b.x(21)) == 0xF90000A6          # ELR: the `str x6, [x5]` itself
        assert b.x(22) == 0x1000                      # FAR: the address written


def m32(b, pa: int) -> int:
    return b.machine.mem.read_u32(pa)


# With the MMU on, VA 0xC000_0000 maps PA 0 (device): VA 0xCA00_0000 is PA 0x0A00_0000, where
# nothing answers. FAR must report the virtual address, whatever the addressing mode.
UNASSIGNED_ALIAS = """
 ldr x3, =0x0000000000000405      // VA 0xC000_0000 -> PA 0 (device), a block at level 1
 adr x2, l1_table
 str x3, [x2, #24]
 dsb sy
 tlbi vmalle1
 dsb sy
 isb
 ldr x5, =0xCA000000
 mov x7, #3
 mov x29, x5
 mov x30, x5
"""


@pytest.mark.parametrize("name,access,esr,far", [
    ("load_offset", "ldr x6, [x5, #8]", 0x96000010, 0xCA00_0008),
    ("store_preindex", "str x6, [x5, #16]!", 0x96000050, 0xCA00_0010),
    ("load_postindex", "ldr x6, [x5], #16", 0x96000010, 0xCA00_0000),
    ("load_register_offset", "ldr x6, [x5, x7, lsl #3]", 0x96000010, 0xCA00_0018),
    ("store_pair", "stp x6, x8, [x5, #32]", 0x96000050, 0xCA00_0020),
    ("load_simd", "ldr q0, [x5, #48]", 0x96000010, 0xCA00_0030),
    ("load_frame_pointer_base", "ldr x6, [x29, #64]", 0x96000010, 0xCA00_0040),   # X29/X30 are
    ("store_link_register_base", "str x6, [x30, #72]", 0x96000050, 0xCA00_0048),  # numbered apart
])
def test_bus_error_reports_the_virtual_address(board, name, access, esr, far):
    source = MMU_ON.format(poisoned=POISONED) + UNASSIGNED_ALIAS + f"""
 mov x9, x5
access:
 {access}
 mov x7, #1
""" + TAIL
    b = board(source)
    m = b.machine
    m.hvc_handlers[0x99] = lambda cpu: None          # nothing is poisoned here
    assert b.run().status == 0
    assert b.x(20) == esr, f"{name}: ESR {b.x(20):#x}"
    assert b.x(22) == far, f"{name}: FAR {b.x(22):#x}"
    assert m.mem.read_u32(b.x(21) - 4) == 0xAA0503E9, f"{name}: ELR is not the access"   # mov x9, x5
    assert b.x(5) == b.x(9), f"{name}: base register written back before the abort"


def test_bus_error_syndromes_from_el0_and_el1():
    # Arm ARM D17.2.37: EC 0x24/0x25 data abort from a lower/the same EL, 0x20/0x21
    # instruction abort; IL (bit 25); WnR (bit 6) for writes; FnV (bit 10) only when FAR is
    # not valid; DFSC/IFSC 0x10 synchronous external abort.
    from armras.arch.cpu import bus_error_syndrome

    assert bus_error_syndrome(0, instruction=False, write=False, far_valid=True) == 0x92000010
    assert bus_error_syndrome(0, instruction=False, write=True, far_valid=True) == 0x92000050
    assert bus_error_syndrome(1, instruction=False, write=True, far_valid=True) == 0x96000050
    assert bus_error_syndrome(0, instruction=True, write=False, far_valid=True) == 0x82000010
    assert bus_error_syndrome(1, instruction=True, write=False, far_valid=True) == 0x86000010
    assert bus_error_syndrome(1, instruction=False, write=False, far_valid=False) == 0x96000410
