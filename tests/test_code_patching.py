"""Code written through another mapping runs once the guest invalidates its instruction cache.

Linux patches its own text through the linear map (alternatives), not through the
executable mapping, then issues IC IALLUIS (CTR_EL0.DIC is 0 here, so the architecture
requires it: Arm ARM B2.4.4). Unicorn 2.1.4 stops watching a page for stores after the
first store through such an alias (cputlb.c notdirty_write; tlb_protect_code is a stub),
so the second patch in a page left the old translation running: Linux 6.12 kept taking
the "no FPSIMD" branch of fpsimd_thread_switch, never tracked which CPU held a task's FP
state, and oopsed in fpsimd_save_state once the translations were rebuilt.

Each case runs two functions `f` and `g` in one code page, rewrites both through an alias
of RAM (VA + 1 GiB, execute-never): g first, so that f's store is the second one, then
does the maintenance and calls them again. The expected values are the new
instructions' (`mov x0, #10`, `mov x0, #20`), as on hardware.
"""
from __future__ import annotations

import pytest

ALIAS = 0x4000_0000                  # VA + ALIAS maps the same RAM, EL0/EL1 RW, execute-never
MOV_X0_10 = 0xD2800140               # movz x0, #10
MOV_X0_20 = 0xD2800280               # movz x0, #20

# Identity map (4 KiB granule, T0SZ=25): 0x4000_0000 as Normal memory, executable at EL1;
# 0x8000_0000 -> the same RAM, XN (as Linux's linear map is to its text).
SOURCE = """
 ldr x3, =0x40400000
 mov sp, x3
 adr x2, l1_table
 ldr x3, =0x00000000000000405
 str x3, [x2]
 ldr x3, =0x0000000040000401
 str x3, [x2, #8]
 ldr x3, =0x0060000040000441
 str x3, [x2, #16]
 msr ttbr0_el1, x2
 ldr x3, =0x00ff
 msr mair_el1, x3
 ldr x3, =0x80803519
 msr tcr_el1, x3
 isb
 mrs x3, sctlr_el1
 orr x3, x3, #1
 orr x3, x3, #(1 << 2)
 orr x3, x3, #(1 << 12)
 msr sctlr_el1, x3
 isb
 bl f                              // translate both
 bl g
 mov x10, #{alias:#x}
 adr x11, f
 adr x12, g
 add x13, x11, x10                 // f and g through the alias
 add x14, x12, x10
 ldr w2, ={mov20:#x}
 str w2, [x14]                     // first store to the page through the alias
 ldr w2, ={mov10:#x}
 str w2, [x13]                     // second one
 dc cvau, x11
 dc cvau, x12
 dsb ish
 {maintenance}
 dsb ish
 isb
 bl f
 mov x20, x0
 bl g
 mov x21, x0
 mov x1, #0
 ldr x0, =0x84000008
 hvc #0
 b .
 .ltorg
 .balign 4096
f:
 mov x0, #1
 ret
 .skip 64
g:
 mov x0, #2
 ret
 .balign 4096
l1_table:
 .skip 4096
"""

MAINTENANCE = [
    ("ic_ivau", "ic ivau, x11\n ic ivau, x12"),               # by the executable VA
    ("ic_ivau_alias", "ic ivau, x13\n ic ivau, x14"),         # by the execute-never alias (Linux's linear map)
    ("ic_iallu", "ic iallu"),
    ("ic_ialluis", "ic ialluis"),                             # what Linux does after patching alternatives
]


def run(board, maintenance: str):
    b = board(SOURCE.format(alias=ALIAS, mov10=MOV_X0_10, mov20=MOV_X0_20, maintenance=maintenance))
    r = b.run()
    assert r.status == 0, b.output
    return b.x(20), b.x(21), b.machine


@pytest.mark.parametrize("name,maintenance", MAINTENANCE, ids=[c[0] for c in MAINTENANCE])
def test_patched_code_runs_after_ic_invalidation(board, hooks_kind, name, maintenance):
    f, g, m = run(board, maintenance)
    assert m.icache.native == (hooks_kind == "native")
    assert (f, g) == (10, 20), f"{name}: f returned {f}, g {g}; the old instructions still ran"
    # IC IVAU drops one line's translations, through the execute-never alias too (by its
    # physical address); only IC IALLU[IS] drops them all.
    assert m.tb_flushes == (1 if name.startswith("ic_iallu") else 0), name


def test_ivau_by_alias_in_a_loop_over_a_page(board, hooks_kind):
    """Linux's sync of a new user code page: IC IVAU over every line of it through the
    linear map. The page's translations go, the others stay, and nothing is flushed whole."""
    loop = """ mov x15, x13
 bic x15, x15, #0xfff
 add x16, x15, #4096
1: ic ivau, x15
 add x15, x15, #64
 cmp x15, x16
 b.lo 1b"""
    f, g, m = run(board, loop)
    assert (f, g) == (10, 20)
    assert m.tb_flushes == 0
    assert m.icache.lines >= 4096 // 64


def test_unicorn_misses_the_second_store_without_maintenance(board):
    """The emulator hole the maintenance covers: if this starts failing, Unicorn sees such
    stores again and ICacheMaintenance may no longer be needed (the case above still must pass)."""
    f, g, m = run(board, "nop")
    assert g == 20                   # the first store through the alias was seen
    assert f == 1, "Unicorn now invalidates on the second store through an alias too"
    assert m.tb_flushes == 0
