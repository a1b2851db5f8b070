"""The event log (`armras run --events`, armras.events): what a run with an SEA records, in
order; refused injections; the bound; `armras regress` keeping one per scenario and the
JUnit XML linking both files; the boot-phase progress line.

Expected values come from the platform contract: QEMU's memory-error record is 172 bytes
(UEFI N.2 Generic Error Status Block 20 + Generic Error Data Entry v3 72 + Memory Error
Section 80), kvm_inject_arm_sea's syndrome from EL1 is 0x96000410, the GED interrupt is
INTID 41 (QEMU virt a15irqmap VIRT_ACPI_GED 9 + 32), and Linux/ras_ref write 1 to the
read-ack register (ghes_ack_error).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from armras.drive.phases import ProgressLine
from armras.events import EventLog
from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def armras(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True, timeout=300,
                          env=ENV, cwd=cwd)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sea_run_records_injection_cper_notification_ack_power_off(guest_images: Path, tmp_path: Path) -> None:
    events = tmp_path / "run.events.jsonl"
    proc = armras("run", str(guest_images / "ras_ref.elf"), "--inject", "sea:pa=0x40fa6000,on=^READY",
                  "--events", str(events), "--console", str(tmp_path / "console.log"))
    assert proc.returncode == 0, proc.stderr
    log = records(events)
    kinds = [r["event"] for r in log]
    assert kinds == ["boot", "inject", "cper", "notify", "read_ack", "power_off"], kinds
    boot, inject, cper, notify, ack, off = log
    assert inject["kind"] == "sea" and inject["pa"] == "0x40fa6000"
    assert cper["source"] == 0 and cper["notify"] == "sea" and cper["bytes"] == 20 + 72 + 80
    assert cper["block_status"] == "0x1" and cper["sections"] == [{"type": "memory error", "pa": "0x40fa6000"}]
    assert notify["kind"] == "sea" and notify["esr"] == "0x96000410" and notify["cpu"] == 0 and notify["el"] == 1
    assert ack["source"] == 0 and ack["read_ack"] == "0x1"
    assert off["status"] == 0 and off["reason"] == "PSCI SYSTEM_OFF"
    # In order, every record stamped; guest time and instructions never go back.
    assert [r["seq"] for r in log] == list(range(len(log)))
    times = [r["guest_time"] for r in log]
    insns = [r["instructions"] for r in log]
    assert times == sorted(times) and insns == sorted(insns) and all(r["boot"] == 1 for r in log)
    assert boot["guest_time"] == 0 and off["guest_time"] > 1.0 and off["instructions"] > 1_000_000
    # The console says the guest acknowledged after the abort: the log agrees.
    console = (tmp_path / "console.log").read_text()
    assert console.index("SEA ESR=0x96000410") < console.index("ACK source=0 read_ack=0x1")


def test_gpio_and_refused_injections(guest_images: Path, tmp_path: Path) -> None:
    events = tmp_path / "ev.jsonl"
    # Two GPIO records back to back: the second is refused (the guest has not acked the first).
    proc = armras("run", str(guest_images / "ras_ref.elf"), "--inject", "gpio:pa=0x41234000,on=^READY",
                  "--inject", "gpio:pa=0x41235000,on=^READY", "--events", str(events),
                  "--console", str(tmp_path / "c.log"))
    assert proc.returncode == 1 and "has not acknowledged" in proc.stderr
    log = records(events)
    kinds = [r["event"] for r in log]
    assert kinds == ["boot", "inject", "cper", "notify", "inject", "inject_refused", "error"], kinds
    notify = log[3]
    assert notify["kind"] == "gpio" and notify["source"] == 1 and notify["intid"] == 41
    assert log[5]["kind"] == "gpio" and "has not acknowledged" in log[5]["error"]
    assert log[6]["exit_code"] == 1 and "has not acknowledged" in log[6]["message"]


def test_event_log_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "bounded.jsonl"
    log = EventLog.open(path)
    log.bind_clock(lambda: (1.5, 42))
    log._max_records = 3
    for i in range(10):
        log.emit("notify", kind="sea", n=i)
    log.close()
    log.emit("late")                    # after close: nothing
    lines = records(path)
    assert [r.get("n") for r in lines[:3]] == [0, 1, 2]
    assert lines[3] == {"seq": 10, "event": "dropped", "boot": 0, "count": 7}
    assert lines[0]["guest_time"] == 1.5 and lines[0]["instructions"] == 42 and len(lines) == 4


def test_events_file_is_never_an_input(guest_images: Path, tmp_path: Path) -> None:
    image = tmp_path / "ref.elf"
    image.write_bytes((guest_images / "ras_ref.elf").read_bytes())
    proc = armras("run", str(image), "--events", str(image))
    assert proc.returncode == 1 and "--events" in proc.stderr and "refusing to overwrite" in proc.stderr
    assert image.read_bytes() == (guest_images / "ras_ref.elf").read_bytes()
    log = tmp_path / "same"
    proc = armras("run", str(image), "--events", str(log), "--console", str(log))
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    proc = armras("run", str(image), "--events", str(tmp_path / "no" / "dir" / "x.jsonl"))
    assert proc.returncode == 1 and proc.stderr.startswith("armras: error: cannot write the event log")
    assert "Traceback" not in proc.stderr


def test_regress_keeps_events_next_to_the_console_log_and_links_both(guest_images: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'name = "sea ack"\nimage = "{guest_images / "ras_ref.elf"}"\n'
                        '[[step]]\nwait = "^READY"\n[[step]]\ninject = "sea:pa=0x40fa6000"\n'
                        '[[step]]\nexpect = "ACK source=0 read_ack=0x1"\n')
    failing = tmp_path / "f.toml"
    failing.write_text(f'name = "fails"\nimage = "{guest_images / "ras_ref.elf"}"\n[[step]]\nexpect = "NEVER"\n')
    logs, junit = tmp_path / "logs", tmp_path / "out.xml"
    proc = armras("regress", str(scenario), str(failing), "--log-dir", str(logs), "--junit", str(junit))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    events = logs / "sea_ack.events.jsonl"
    kinds = [r["event"] for r in records(events)]
    assert kinds == ["boot", "inject", "cper", "notify", "read_ack", "power_off"], kinds
    assert [r["event"] for r in records(logs / "fails.events.jsonl")] == ["boot", "power_off"]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    for name, stem in (("sea ack", "sea_ack"), ("fails", "fails")):
        case = cases[name]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props == {"armras.console_log": str(logs / f"{stem}.log"),
                         "armras.events": str(logs / f"{stem}.events.jsonl")}
        out = case.findtext("system-out") or ""
        assert f"console log: {logs / f'{stem}.log'}" in out and f"events: {logs / f'{stem}.events.jsonl'}" in out
        assert f"[[ATTACHMENT|{(logs / f'{stem}.events.jsonl').resolve()}]]" in out
    assert cases["fails"].find("failure") is not None


def test_regress_refuses_an_events_file_over_an_input(guest_images: Path, tmp_path: Path) -> None:
    # The scenario "victim" writes LOGDIR/victim.events.jsonl: here that is its guest image.
    image = tmp_path / "victim.events.jsonl"
    image.write_bytes((guest_images / "ras_ref.elf").read_bytes())
    (tmp_path / "v.toml").write_text('name = "victim"\nimage = "victim.events.jsonl"\n')
    proc = armras("regress", str(tmp_path / "v.toml"), "--log-dir", str(tmp_path))
    assert proc.returncode == 1 and "refusing to overwrite an input" in proc.stderr
    assert image.read_bytes() == (guest_images / "ras_ref.elf").read_bytes()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal() -> None:
    tty = _Tty()
    line = ProgressLine.for_stderr(tty, console_on_terminal=False)
    line.show("armras: boot 1: EFI stub 0.1 s")
    line.show("armras: boot 1: EFI stub 0.1 s > kernel 0.3 s")
    line.clear()
    assert tty.getvalue() == ("\rarmras: boot 1: EFI stub 0.1 s\x1b[K\rarmras: boot 1: EFI stub 0.1 s > "
                              "kernel 0.3 s\x1b[K\r\x1b[K")
    for stream, console_on_terminal in ((io.StringIO(), False), (_Tty(), True)):
        line = ProgressLine.for_stderr(stream, console_on_terminal)
        line.show("x")
        line.clear()
        assert stream.getvalue() == ""


def test_sdei_notification_through_the_api(guest_images: Path) -> None:
    import armras

    with armras.boot(guest_images / "sdei_ref.elf") as vm:
        vm.wait_for("^SDEI WAIT basic")
        assert vm.inject("sdei:pa=0x40fa6000") == 2
        handler = vm.expect(r"^SDEI event 804 on CPU 0: x0=0x\w+ x1=0x\w+ x2=0x(\w+)")
        vm.expect("ACK source=2 read_ack=0x1 block_status=0x0")
        vm.wait_for("^SDEI WAIT resume")          # the read-ack is observed by the next stop
        log = vm.events
    kinds = [r["event"] for r in log]
    start = kinds.index("inject")
    assert kinds[start:start + 4] == ["inject", "cper", "notify", "read_ack"], kinds
    notify = log[start + 2]
    # The handler ran with x2 = the interrupted PC: the event's pc field is that PC.
    assert notify["kind"] == "sdei" and notify["sdei_event"] == 804 and notify["cpu"] == 0
    assert int(notify["pc"], 16) == int(handler.group(1), 16)
    assert log[start + 1]["source"] == 2 and log[start + 3]["source"] == 2


def test_serror_notification_names_its_syndrome(board) -> None:
    from armras.drive.inject import parse_inject_spec, schedule
    from test_serror import guest

    log = EventLog(keep=100)
    b = board(guest(" msr daifclr, #4\n1: cbz x19, 1b\n"), events=log)
    schedule(b.machine, parse_inject_spec("serror:aet=uer,insn=5000"))
    assert b.run().status == 0
    inject, notify, off = [r for r in log.records if r["event"] != "boot"]
    assert inject["event"] == "inject" and inject["kind"] == "serror" and inject["aet"] == "uer"
    # EC 0x2F (SError), IL, AET 0b011 (UER) in bits [12:10], DFSC 0x11: what the guest read.
    assert notify["kind"] == "serror" and notify["esr"] == "0xbe000c11" == f"{b.x(10):#010x}"
    assert inject["instructions"] >= 5000 and off["event"] == "power_off"


def test_sei_record_then_serror_notification(board) -> None:
    from armras.drive.inject import parse_inject_spec, schedule
    from test_serror import SEI_HEST, guest

    log = EventLog(keep=100)
    b = board(guest(" msr daifclr, #4\n1: cbz x19, 1b\n"), hest=SEI_HEST, events=log)
    schedule(b.machine, parse_inject_spec("sei:pa=0x40500000,severity=fatal,insn=5000"))
    assert b.run().status == 0
    kinds = [r["event"] for r in log.records]
    assert kinds == ["inject", "cper", "notify", "power_off"], kinds
    _, cper, notify, _ = log.records
    # The record first (source 7, fatal: Block Status bit 0), then the SError graded UC
    # (AET 0b000, DFSC 0x11) that the guest read.
    assert cper["source"] == 7 and cper["severity"] == "fatal" and cper["block_status"] == "0x1"
    assert notify["kind"] == "serror" and notify["esr"] == "0xbe000011" == f"{b.x(10):#010x}"
