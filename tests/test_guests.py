"""The shipped bare-metal guests on the board: what they print and what is left in memory.

Each guest reports over the UART what it observed (ESR, CPER contents, ack values); the
tests assert those lines and cross-check the GHES registers in guest memory.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from armras.board.machine import Machine, MachineConfig
from armras.ras.sources import SOURCE_GPIO, SOURCE_SEA
from armras.drive.inject import parse_inject_spec, schedule, schedule_poison_on


def boot(image: Path, *injections: str, poison_on: str | None = None,
         native_exceptions: bool = True) -> tuple[Machine, int, str]:
    console = io.BytesIO()
    m = Machine(MachineConfig(console=console, timeout=30))
    if not native_exceptions:
        m.exceptions.state.enabled = 0     # every exception through Cpu.take_exception
    try:
        m.load_elf(image)
        for spec in injections:
            schedule(m, parse_inject_spec(spec))
        if poison_on:
            schedule_poison_on(m, poison_on)
        status = m.run().status
    finally:
        m.close()
    return m, status, console.getvalue().decode()


def test_reference_guest_reads_hest_and_acks_sea(guest_images: Path) -> None:
    m, status, out = boot(guest_images / "ras_ref.elf", "sea:pa=0x40fa6000,on=^READY")
    assert status == 0, out
    src = m.sources.by_id(SOURCE_SEA)
    # The guest found both HEST sources where the firmware put them.
    assert f"HEST source=0 type=10 notify=8 errsts_reg={src.error_status_address:#x}" in out
    assert "HEST source=1 type=10 notify=7" in out
    # It saw the SEA as an EL1 data abort: EC 0x25, DFSC 0x10, FnV.
    assert "SEA ESR=0x96000410 EC=0x25 DFSC=0x10 FnV=1" in out
    # It followed the error status address to the block and parsed the CPER.
    assert "CPER source=0 block_status=0x1 severity=0 sections=1" in out
    assert "CPER section=memory pa=0x0000000040fa6000" in out
    # It acknowledged as Linux does, and the registers in guest memory agree.
    assert "ACK source=0 read_ack=0x1 block_status=0x0" in out
    assert src.read_ack() == 1 and src.block_status() == 0 and src.records_written == 1
    assert "DONE sea=1 gpio=0" in out


def test_reference_guest_handles_gpio_notified_errors(guest_images: Path) -> None:
    m, status, out = boot(guest_images / "ras_ref.elf", "gpio:pa=0x41234000,on=^READY",
                          "arm:mpidr=0x80000000,type=cache,pa=0x40001000,va=0xffff0000,at=1.5")
    assert status == 0, out
    assert out.count("GED event=0x20 intid=41") == 2
    assert "CPER section=memory pa=0x0000000041234000" in out
    assert re.search(r"CPER section=arm-processor mpidr=0x80000000 errors=1 .*pa=0x40001000 va=0xffff0000", out), out
    assert out.count("ACK source=1 read_ack=0x1 block_status=0x0") == 2
    src = m.sources.by_id(SOURCE_GPIO)
    assert src.acknowledged() and src.records_written == 2
    assert "DONE sea=0 gpio=2" in out


def test_poisoned_page_touched_from_el0(guest_images: Path) -> None:
    m, status, out = boot(guest_images / "ras_el0.elf", poison_on=r"VICTIM pa=(0x[0-9a-f]+)")
    assert status == 0, out
    victim = int(re.search(r"VICTIM pa=(0x[0-9a-f]+)", out).group(1), 16)
    assert victim in m.poisoned
    assert "SEA from EL0 ESR=0x92000410 EC=0x24 DFSC=0x10 FnV=1" in out
    assert f"CPER source=0 section=memory pa={victim:#x}" in out
    assert "ACK source=0 read_ack=0x1" in out
    assert f"EL0 task killed: SIGBUS BUS_MCEERR_AR at pa={victim:#x}" in out
    assert m.sources.by_id(SOURCE_SEA).acknowledged()


def test_el0_guest_survives_without_poison(guest_images: Path) -> None:
    _, status, out = boot(guest_images / "ras_el0.elf")
    assert status == 1 and "EL0 task survived: page was not poisoned" in out


@pytest.mark.parametrize("native", [True, False], ids=["native-entry", "python-entry"])
def test_exception_entry_is_architectural(guest_images: Path, native: bool) -> None:
    m, status, out = boot(guest_images / "exc_test.elf", native_exceptions=native)
    assert status == 0, out
    # Both implementations of exception entry must be the one doing the work.
    assert (m.exceptions.entries > 0) == native
    # The guest compares every value with what it computed from its own code.
    lines = {m.group(1): m.group(0) for m in re.finditer(r"EXC (\S+) vec=.*", out)}
    assert set(lines) >= {"svc0", "dabt-el0", "dabt-el1", "brk7", "undef", "svc1-el1"}, out
    assert all(line.endswith("-> OK") for line in lines.values()), out
    assert "vec=0x400 ESR=0x56000042" in lines["svc0"]                    # SVC from EL0
    assert re.search(r"vec=0x400 ESR=0x92000047 ELR=0x\w+ SPSR=\S+ FAR=0x401ff010", lines["dabt-el0"])
    assert re.search(r"vec=0x200 ESR=0x96000005 .* FAR=0x7fdead0008", lines["dabt-el1"])
    assert "ESR=0xf2000007" in lines["brk7"] and "ESR=0x02000000" in lines["undef"]
    assert "EXC summary ok=6 fail=0" in out


def test_page_table_walk_follows_the_guests_tables(guest_images: Path) -> None:
    from armras.arch.mmu import translate

    m, status, out = boot(guest_images / "exc_test.elf")
    assert status == 0 and "MMU on: L3 hole 0x401ff000, L1 hole 0x7fdead0000" in out
    assert translate(m.cpu, m.mem, 0x40080123) == 0x40080123      # identity-mapped RAM
    assert translate(m.cpu, m.mem, 0x401FF010) is None             # level-3 hole
    assert translate(m.cpu, m.mem, 0x7FDEAD0008) is None           # level-1 hole
