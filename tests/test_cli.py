"""The command line as users meet it: guest runs, exit codes, and one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import assemble, make_elf


def armras(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("armras: error: ") or lines[0].startswith("usage:"), proc.stderr
    for n in needles:
        assert n in proc.stderr


def test_missing_and_malformed_images(tmp_path: Path) -> None:
    assert_one_line_error(armras("run", str(tmp_path / "nope.elf")), 1, "cannot read guest image")
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"\x7fELF" + b"\x02\x01\x01" + bytes(60))
    assert_one_line_error(armras("run", str(junk)), 1, "junk.elf")
    text = tmp_path / "text.elf"
    text.write_text("hello")
    assert_one_line_error(armras("run", str(text)), 1, "not an ELF file")
    # A real ELF for the wrong machine: the Python interpreter running this test.
    host = Path(sys.executable).resolve()
    assert_one_line_error(armras("run", str(host)), 1, "not a little-endian ELF64 AArch64 image")


def test_bad_options_are_one_line_errors(guest_images: Path) -> None:
    ref = str(guest_images / "ras_ref.elf")
    assert_one_line_error(armras("run", ref, "--poison", "0x1000"), 1, "outside guest RAM")
    assert_one_line_error(armras("run", ref, "--poison", "no_such_symbol"), 1, "neither an address nor a symbol")
    assert_one_line_error(armras("run", ref, "--inject", "mce:pa=0x40000000"), 1, "unknown kind")
    assert_one_line_error(armras("run", ref, "--inject", "sea"), 1, "needs pa=")
    assert_one_line_error(armras("run", ref, "--inject", "sea:pa=0x40000000,at=1,insn=5"), 1, "at most one")
    assert_one_line_error(armras("run", ref, "--inject", "sea:pa=0x40000000,on=(unclosed"), 1, "bad console pattern")
    assert_one_line_error(armras("run", ref, "--inject", "sea:pa=0x1,on=READY", "--timeout", "20"), 1,
                          "outside guest RAM")
    proc = armras("run", ref, "--memory", "lots")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_reference_guest_sea_via_cli(guest_images: Path) -> None:
    proc = armras("run", str(guest_images / "ras_ref.elf"), "--timeout", "30",
                  "--inject", "sea:pa=0x40fa6000,on=^READY")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "SEA ESR=0x96000410 EC=0x25 DFSC=0x10 FnV=1" in out
    assert "CPER section=memory pa=0x0000000040fa6000" in out
    assert "ACK source=0 read_ack=0x1 block_status=0x0" in out
    assert "DONE sea=1" in out


def test_injection_before_ack_is_refused(guest_images: Path) -> None:
    # Both fire at the same console line, before the guest can run its handler.
    proc = armras("run", str(guest_images / "ras_ref.elf"), "--timeout", "30",
                  "--inject", "sea:pa=0x41234000,on=^READY", "--inject", "sea:pa=0x41235000,on=^READY")
    assert_one_line_error(proc, 1, "GHES source 0: the guest has not acknowledged the previous error record")


def test_runaway_guest_limits(tmp_path: Path) -> None:
    spin = tmp_path / "spin.elf"
    spin.write_bytes(make_elf(assemble(" ldr x1, =0x09000000\n mov w2, #'S'\n str w2, [x1]\n"
                                       " mov w2, #10\n str w2, [x1]\nspin: b spin\n .ltorg\n")))
    proc = armras("run", str(spin), "--timeout", "0.5")
    assert proc.returncode == 124
    assert "did not power off within 0.5 s" in proc.stderr
    assert "--- last console lines ---" in proc.stderr and "  S" in proc.stderr
    assert "=> 0x" in proc.stderr and "Traceback" not in proc.stderr   # disassembly at the PC
    proc = armras("run", str(spin), "--max-insns", "100000")
    assert proc.returncode == 125 and "100000 instructions" in proc.stderr


def test_hest_command_lists_tables_and_sources() -> None:
    proc = armras("hest")
    assert proc.returncode == 0, proc.stderr
    for sig in ("RSDP", "XSDT", "FACP", "APIC", "GTDT", "SPCR", "DSDT", "HEST"):
        assert sig in proc.stdout
    assert "SEA" in proc.stdout and "GPIO" in proc.stdout


def test_bad_serror_injections_are_one_line_errors(guest_images: Path) -> None:
    ref = str(guest_images / "ras_ref.elf")
    assert_one_line_error(armras("run", ref, "--inject", "serror"), 1, "serror needs aet=")
    assert_one_line_error(armras("run", ref, "--inject", "serror:aet=fatal"), 1,
                          "unknown aet 'fatal' (expected uc | ue | uer | ueo | ce)")
    assert_one_line_error(armras("run", ref, "--inject", "serror:aet=ce,pa=0x40000000"), 1,
                          "serror takes aet=, cpu= and a trigger, not pa=")
    assert_one_line_error(armras("run", ref, "--inject", "sea:pa=0x40000000,aet=uc"), 1,
                          "aet= is the syndrome of an SError")
    assert_one_line_error(armras("run", ref, "--inject", "serror:aet=ce,cpu=8"), 1, "cpu=8 is not a CPU index")
    # A CPU the board does not have is refused when the injection happens, as for sea.
    assert_one_line_error(armras("run", ref, "--inject", "serror:aet=ce,cpu=1,on=^READY", "--timeout", "20"), 1,
                          "cpu=1: the board has 1 CPU(s)")
