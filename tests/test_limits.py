"""Edge values get one clear line and a non-zero exit: infinities, NaN, sizes of 0 or
100G, counts above 2^63, 72-bit addresses, duplicate keys, outputs that are inputs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from unicorn.arm64_const import UC_ARM64_REG_VBAR_EL1

from armras import cli
from armras.errors import ArmrasError
from armras.drive.inject import parse_inject_spec
from armras.drive.regress import load_scenario
from conftest import Board, assemble, make_elf

REF_PA = "0x40fa6000"


def main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`armras ARGV` in this process: (exit status, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:          # argparse's usage errors
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    last = lines[-1]
    assert last.startswith("armras: error: ") or last.startswith("armras run: error: ") \
        or "error: argument" in last, err
    for n in needles:
        assert n in err, err


@pytest.fixture
def spin(tmp_path: Path) -> Path:
    path = tmp_path / "spin.elf"
    path.write_bytes(make_elf(assemble("1: b 1b\n")))
    return path


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e12", "0", "-1"])
def test_run_timeout_must_be_finite_and_sane(value: str, spin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main(["run", str(spin), f"--timeout={value}"], capsys)
    assert_one_line(code, err, 2, "--timeout")


@pytest.mark.parametrize("value,needle", [
    ("0", "not a RAM size"), ("100G", "not a RAM size"), ("99999999999G", "not a RAM size"),
    ("3M", "not a RAM size"), ("513M", "not a RAM size"), ("8M", "not a RAM size"), ("lots", "not a size"),
])
def test_memory_sizes_outside_16M_16G_or_unaligned_are_refused(value: str, needle: str, spin: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main(["run", str(spin), "--memory", value], capsys)
    assert_one_line(code, err, 2, needle)
    code, err = main(["hest", "--memory", value], capsys)
    assert_one_line(code, err, 2, needle)


def test_memory_limits_accept_the_ends_of_the_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hest", "--memory", "16M"], capsys)[0] == 0
    assert cli.parse_memory("16G") == 16 << 30
    assert cli.parse_memory("514M") == 514 << 20


@pytest.mark.parametrize("value", [str(2 ** 64 + 1), str(2 ** 63), "0", "-5", "0x10000000000000000"])
def test_max_insns_must_fit_the_native_counter(value: str, spin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main(["run", str(spin), f"--max-insns={value}"], capsys)
    assert_one_line(code, err, 2, "--max-insns")


@pytest.mark.parametrize("spec,needle", [
    (f"sea:pa={REF_PA},at=inf", "at: inf"),
    (f"sea:pa={REF_PA},at=nan", "at: nan"),
    (f"sea:pa={REF_PA},at=-0.5", "at: -0.5"),
    (f"sea:pa={REF_PA},at=1e300", "at: 1e+300"),
    (f"sea:pa={REF_PA},insn={2 ** 64 + 1}", "insn: 0x10000000000000001 is out of range"),
    (f"sea:pa={REF_PA},insn=-1", "insn: -1 is out of range"),
    (f"sea:pa={REF_PA},pa=0x40000000", "pa= is given twice"),
    (f"sea:pa={REF_PA},severity=fatal,severity=corrected", "severity= is given twice"),
    ("sea:pa=0x1000000000040fa6000", "must be below 2^48"),       # a 72-bit address
    ("sea:pa=0x1000040fa6000", "must be below 2^48"),             # 49 bits
    ("gpio:pa=-0x1000", "not a physical address"),
    ("arm:mpidr=0x10000000000000000", "mpidr: 0x10000000000000000 does not fit in 64 bits"),
    ("arm:va=-1", "va: -1 does not fit"),
])
def test_inject_spec_edge_values(spec: str, needle: str, spin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ArmrasError, match=None) as info:
        parse_inject_spec(spec)
    assert needle in str(info.value)
    code, err = main(["run", str(spin), "--inject", spec], capsys)
    assert_one_line(code, err, 1, needle)


def test_inject_spec_values_at_the_limits_are_accepted() -> None:
    assert parse_inject_spec("sea:pa=0xffffffffffff").pa == "0xffffffffffff"
    assert parse_inject_spec(f"sea:pa={REF_PA},insn={2 ** 63 - 1}").insn == 2 ** 63 - 1
    assert parse_inject_spec(f"sea:pa={REF_PA},at=0").at == 0.0
    assert parse_inject_spec("arm:va=0xffffffffffffffff").va == 2 ** 64 - 1


@pytest.mark.parametrize("kind", ["sea", "gpio"])
@pytest.mark.parametrize("pa", ["0x1000", "0x3fffffff", "0x60000000", "0xffffffffffff"])
def test_memory_errors_outside_ram_are_refused_for_both_sources(kind: str, pa: str) -> None:
    from armras.drive.inject import perform

    board = Board("1: b 1b\n")
    board.machine.uc.reg_write(UC_ARM64_REG_VBAR_EL1, 0x4010_0000)   # somewhere for the SEA to go
    source = board.machine.sources.by_id(0 if kind == "sea" else 1)
    try:
        with pytest.raises(ArmrasError, match=f"physical address {pa} is outside guest RAM"):
            perform(board.machine, parse_inject_spec(f"{kind}:pa={pa}"))
        assert source.records_written == 0
        perform(board.machine, parse_inject_spec(f"{kind}:pa={REF_PA}"))
        assert source.records_written == 1
    finally:
        board.close()


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0", "1e12"])
def test_inject_client_timeout_must_be_positive_and_finite(value: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main(["inject", "--control", str(tmp_path / "none.sock"), f"--timeout={value}", "query-status"],
                     capsys)
    assert_one_line(code, err, 2, "--timeout")


@pytest.mark.parametrize("line,needle", [
    ("timeout = inf", "timeout: inf"),
    ("timeout = nan", "timeout: nan"),
    ("timeout = -inf", "timeout: -inf"),
    ("timeout = 1e300", "timeout: 1e+300"),
    ("timeout = 0", "timeout: 0"),
    ("memory = 0", "memory: "),
    ("memory = \"100G\"", "memory: "),
    ("memory = 3", "memory: "),
    ("memory = 9223372036854775807", "memory: "),
    (f"timeout = 1{'0' * 5000}", "not valid TOML"),
])
def test_scenario_edge_values(line: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f'image = "x.elf"\n{line}\n')
    with pytest.raises(ArmrasError) as info:
        load_scenario(path)
    message = str(info.value)
    assert needle in message and "edge.toml" in message and "\n" not in message


def test_console_file_that_is_the_image_is_refused(spin: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = spin.read_bytes()
    code, err = main(["run", str(spin), "--console", str(spin)], capsys)
    assert_one_line(code, err, 1, "--console", "is the guest image", "refusing to overwrite an input")
    # The same file through another name (a symlink, a path with ..) is caught too.
    link = tmp_path / "link.elf"
    link.symlink_to(spin)
    code, err = main(["run", str(spin), "--console", str(tmp_path / "sub" / ".." / "link.elf")], capsys)
    assert_one_line(code, err, 1, "is the guest image")
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"not a kernel")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd")
    code, err = main(["run", "--kernel", str(kernel), "--initrd", str(initrd), "--console", str(initrd)], capsys)
    assert_one_line(code, err, 1, "is the initrd")
    code, err = main(["run", "--kernel", str(kernel), "--console", str(kernel)], capsys)
    assert_one_line(code, err, 1, "is the kernel")
    assert spin.read_bytes() == before and kernel.read_bytes() == b"not a kernel" and initrd.read_bytes() == b"initrd"


def test_cli_rejections_are_single_lines_in_a_real_process(spin: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "armras", "run", str(spin), "--inject", "sea:pa=1,at=nan"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("armras: error: --inject 'sea:pa=1,at=nan': at: nan")
