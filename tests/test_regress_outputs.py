"""What `armras regress` writes: JUnit XML any parser accepts whatever the guest printed
or the scenario is called, one console log per scenario, and never over an input."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from armras.drive import regress
from conftest import REPO, assemble, make_elf

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
ALL_BYTES = bytes(range(256))


def regress_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "regress", *args], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


def printing_guest(path: Path, text: bytes) -> Path:
    """A guest that writes `text` to the UART, then a newline, then powers off with 0."""
    data = ", ".join(str(b) for b in text + b"\n")
    path.write_bytes(make_elf(assemble(f"""
 ldr x1, =0x09000000
 adr x3, msg
 mov x4, #{len(text) + 1}
1: ldrb w2, [x3], #1
 str w2, [x1]
 subs x4, x4, #1
 b.ne 1b
 ldr x0, =0x84000008
 mov x1, #0
 hvc #0
 .ltorg
msg: .byte {data}
""")))
    return path


def toml_string(text: str) -> str:
    """A TOML basic string for any text (control characters as \\uXXXX escapes)."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def test_junit_escapes_every_character_xml_cannot_carry(tmp_path: Path) -> None:
    name = "n" + "".join(map(chr, range(256)))
    log = tmp_path / "console.log"
    log.write_bytes(b"before\n" + ALL_BYTES + b"\nafter\x1b[0m\n")
    scenario = regress.Scenario(name=name, path=tmp_path / "s\x01.toml")
    results = [(scenario, regress.Outcome("fail", f"reason {name}", seconds=1.0, log=log)),
               (regress.Scenario(name="skip\x00me", path=tmp_path / "k.toml"),
                regress.Outcome("skip", "why\x07not"))]
    junit = tmp_path / "out.xml"
    regress.write_junit(junit, results, 1.5)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = list(suite.iter("testcase"))
    # Legal characters survive as they are; illegal ones as visible escapes.
    expected = "n\\x00\\x01" + "".join(f"\\x{i:02x}" for i in range(2, 9)) + "\t\n\\x0b\\x0c\r"
    assert cases[0].get("name", "").startswith(expected)
    assert "\\x1e\\x1f !\"#" in cases[0].get("name", "") and chr(0xFF) in cases[0].get("name", "")
    assert cases[0].get("file", "").endswith("s\\x01.toml")
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message", "").startswith("reason n\\x00")
    assert "\\x1b[0m" in (failure.text or "") and "after" in (failure.text or "")
    skipped = cases[1].find("skipped")
    assert cases[1].get("name") == "skip\\x00me" and skipped is not None and skipped.get("message") == "why\\x07not"


def test_guest_printing_all_bytes_under_a_name_with_all_characters(tmp_path: Path) -> None:
    guest = printing_guest(tmp_path / "bytes.elf", ALL_BYTES)
    name = "all" + "".join(map(chr, range(256)))
    scenario = tmp_path / "bytes.toml"
    scenario.write_text(f"name = {toml_string(name)}\nimage = \"bytes.elf\"\ntimeout = 30\n"
                        "[[step]]\nexpect = \"^NEVER PRINTED\"\n", encoding="utf-8")
    junit = tmp_path / "out.xml"
    proc = regress_cli(str(scenario), "--junit", str(junit), "--log-dir", str(tmp_path / "logs"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "0 passed, 1 failed" in proc.stdout
    logs = sorted((tmp_path / "logs").iterdir(), key=lambda p: p.name.endswith(".events.jsonl"))
    assert len(logs) == 2 and logs[0].read_bytes() == ALL_BYTES + b"\n"   # the console log, and
    assert logs[1].name == logs[0].name.removesuffix(".log") + ".events.jsonl"  # its event log next to it
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None and case.get("name", "").startswith("all\\x00\\x01")
    failure = case.find("failure")
    assert failure is not None and "expect = '^NEVER PRINTED') not found" in failure.get("message", "")
    text = failure.text or ""
    assert "--- last console lines ---" in text and "\\x1b" in text and " !\"#$%&" in text


def test_log_names_are_unique_and_readable() -> None:
    names = ["same log", "same_log", "same/log", "Same_Log", "ref-sea-ack", "", ".", "..", "x" * 300,
             "same_log-2"]
    logs = regress.log_names(names)
    assert logs[:5] == ["same_log.log", "same_log-2.log", "same_log-3.log", "Same_Log-4.log", "ref-sea-ack.log"]
    assert logs[5] == "_.log" and logs[6] == "_..log" and logs[7] == "_...log"
    assert logs[8] == "x" * 100 + ".log"
    assert logs[9] == "same_log-2-2.log"
    assert len({n.casefold() for n in logs}) == len(logs)


def test_scenarios_whose_names_map_to_one_file_keep_their_own_logs(tmp_path: Path) -> None:
    for word in ("ALPHA", "BETA"):
        printing_guest(tmp_path / f"{word}.elf", word.encode())
    (tmp_path / "a.toml").write_text('name = "same log"\nimage = "ALPHA.elf"\n[[step]]\nexpect = "^ALPHA$"\n')
    (tmp_path / "b.toml").write_text('name = "same_log"\nimage = "BETA.elf"\n[[step]]\nexpect = "^BETA$"\n')
    logs = tmp_path / "logs"
    proc = regress_cli(str(tmp_path / "a.toml"), str(tmp_path / "b.toml"), "--jobs", "2", "--log-dir", str(logs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed, 0 failed" in proc.stdout
    assert (logs / "same_log.log").read_text() == "ALPHA\n"
    assert (logs / "same_log-2.log").read_text() == "BETA\n"


def test_outputs_that_are_inputs_are_refused(tmp_path: Path) -> None:
    guest = printing_guest(tmp_path / "ok.elf", b"OK")
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "ok"\nimage = "ok.elf"\n')
    text = scenario.read_text()

    def refused(*args: str, needle: str) -> None:
        proc = regress_cli(str(scenario), *args, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("armras: error: "), proc.stderr
        assert needle in lines[0], proc.stderr
        assert proc.stdout == ""     # nothing ran

    refused("--junit", str(scenario), needle="--junit")
    refused("--junit", "./s.toml", needle="is the scenario")
    refused("--junit", str(guest), needle="is the guest image of")
    # A log that would land on an input: the scenario "ok" logs to LOGDIR/ok.log.
    victim = tmp_path / "ok.log"
    victim.write_text("precious")
    (tmp_path / "t.toml").write_text('name = "ok"\nimage = "ok.log"\n')
    proc = regress_cli(str(tmp_path / "t.toml"), "--log-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"armras: error: --log-dir {victim} is the guest image of")
    refused("--junit", str(tmp_path / "logs" / "ok.log"), "--log-dir", str(tmp_path / "logs"),
            needle="also a scenario's console log")
    assert scenario.read_text() == text and victim.read_text() == "precious"
    assert guest.read_bytes()[:4] == b"\x7fELF"
