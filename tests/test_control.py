"""The control socket as users drive it: `armras run --control` in one process, `armras
inject` (or a raw socket) in another; the guest's console and GHES ack state show what
happened."""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from armras.ras import cper
from conftest import REPO, assemble, make_elf

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def armras(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=REPO)


class Run:
    """`armras run --control SOCK --console LOG ...` in the background."""

    def __init__(self, tmp_path: Path, image: Path, *extra: str) -> None:
        self.sock = tmp_path / "ctl.sock"
        self.console = tmp_path / "console.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "armras", "run", str(image), "--control", str(self.sock),
             "--console", str(self.console), "--timeout", "60", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_console(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if re.search(pattern, text, re.MULTILINE):
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"console never matched {pattern!r}:\n{self.text()}\n{self.stderr()}")

    def inject(self, *args: str) -> subprocess.CompletedProcess[str]:
        return armras("inject", "--control", str(self.sock), *args)

    def ok(self, *args: str) -> object:
        proc = self.inject(*args)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def wait_status(self, status: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.ok("query-status")
            if reply["status"] == status:
                return reply
            time.sleep(0.02)
        raise AssertionError(f"machine never reached {status!r}")

    def stderr(self) -> str:
        return "" if self.proc.poll() is None else (self.proc.stderr.read() if self.proc.stderr else "")

    def finish(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run(tmp_path: Path):
    runs: list[Run] = []

    def start(image: Path, *extra: str) -> Run:
        r = Run(tmp_path, image, *extra)
        runs.append(r)
        deadline = time.monotonic() + 30
        while not r.sock.exists():
            assert r.proc.poll() is None, r.proc.stderr.read() if r.proc.stderr else ""
            assert time.monotonic() < deadline, "control socket never appeared"
            time.sleep(0.01)
        return r

    yield start
    for r in runs:
        r.kill()


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("armras: error: "), proc.stderr
    for n in needles:
        assert n in lines[0], proc.stderr


def test_inject_sea_refuse_before_ack_then_ack(run, guest_images: Path) -> None:
    r = run(guest_images / "ras_ref.elf", "--pause-on", "^READY", "--pause-on", "^ACK source=0")
    mode = os.stat(r.sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    r.wait_console("^READY$")
    status = r.wait_status("paused")
    assert status["exit_status"] is None and status["instructions"] > 0

    reply = r.ok("sea", "--pa", "0x40fa6000")
    assert reply["source_id"] == 0 and reply["records_written"] == 1
    ack = {s["source_id"]: s for s in r.ok("query-ack")}
    assert ack[0]["acknowledged"] is False and ack[0]["block_status"] == 1

    # The guest is stopped, so it cannot ack: a second record must be refused, not written.
    assert r.ok("stop") == {}
    one_line_error(r.inject("sea", "--pa", "0x40fa7000"),
                   "GHES source 0: the guest has not acknowledged the previous error record")
    assert r.ok("cont") == {}

    text = r.wait_console("^ACK source=0 ")
    assert "SEA ESR=0x96000410 EC=0x25 DFSC=0x10 FnV=1" in text
    assert "CPER source=0 block_status=0x1 severity=0 sections=1" in text
    assert "CPER section=memory pa=0x0000000040fa6000" in text
    assert "ACK source=0 read_ack=0x1 block_status=0x0" in text
    assert "40fa7000" not in text

    r.wait_status("paused")          # --pause-on ^ACK: the ack is in guest memory now
    ack = {s["source_id"]: s for s in r.ok("query-ack")}
    assert ack[0] == {"source_id": 0, "notify": "SEA", "read_ack": 1, "acknowledged": True,
                      "block_status": 0, "records_written": 1}
    hest = r.ok("query-hest")
    assert [(s["source_id"], s["notify"], s["notify_type"]) for s in hest["sources"]] == [
        (0, "SEA", 8), (1, "GPIO", 7), (2, "SDEI", 11), (3, "polled", 0)]
    # QEMU layout: N address registers, N read-ack registers, then the blocks (N = 4 here)
    assert hest["sources"][0]["error_status_block"] == hest["sources"][0]["error_status_address_register"] + 16 * 4

    assert r.ok("quit") == {}
    assert r.finish() == 0
    assert not r.sock.exists()


def _raw(sock_path: Path) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(sock_path))
    f = s.makefile("rwb")
    greeting = json.loads(f.readline())
    assert "QMP" in greeting
    return s, f


def _ask(f: object, line: bytes) -> dict:
    f.write(line + b"\n")  # type: ignore[attr-defined]
    f.flush()  # type: ignore[attr-defined]
    return json.loads(f.readline())  # type: ignore[attr-defined]


def test_malformed_requests_get_error_replies(run, guest_images: Path, tmp_path: Path) -> None:
    r = run(guest_images / "ras_ref.elf", "--pause-on", "^READY")
    r.wait_console("^READY$")
    a, fa = _raw(r.sock)
    b, fb = _raw(r.sock)          # several clients at once
    try:
        assert _ask(fa, b"garbage{")["error"]["class"] == "GenericError"
        assert "JSON parse error" in _ask(fa, b"{\"execute\": ")["error"]["desc"]
        assert _ask(fa, b"[1, 2]")["error"]["class"] == "GenericError"
        assert _ask(fa, b'{"execute": "no-such", "id": 3}') == {
            "error": {"class": "CommandNotFound", "desc": "the command no-such has not been found"}, "id": 3}
        bad = _ask(fa, b'{"execute": "inject-sea", "arguments": {"pa": "0x40fa6000", "bogus": 1}}')
        assert bad["error"]["class"] == "InvalidParameter" and "bogus" in bad["error"]["desc"]
        assert _ask(fa, b'{"execute": "inject-sea", "arguments": {}}')["error"]["class"] == "InvalidParameter"
        outside = _ask(fa, b'{"execute": "inject-sea", "arguments": {"pa": 4096}}')
        assert outside["error"]["class"] == "GuestAddressError" and "outside guest RAM" in outside["error"]["desc"]
        assert _ask(fa, b'{"execute": "inject-gpio", "arguments": {"cper": "!!"}}')["error"]["class"] == "InvalidParameter"
        broken = base64.b64encode(cper.memory_error_record(0x41234000)[:30]).decode()
        reply = _ask(fa, json.dumps({"execute": "inject-gpio", "arguments": {"cper": broken}}).encode())
        assert reply["error"]["class"] == "InvalidParameter" and "invalid CPER" in reply["error"]["desc"]
        # Nothing was written by any of those; the connection is still usable, from both clients.
        assert _ask(fa, b'{"execute": "query-status", "id": "x"}')["return"]["status"] == "paused"
        ack = _ask(fb, b'{"execute": "query-ack", "id": 9}')
        assert ack["id"] == 9 and [s["records_written"] for s in ack["return"]] == [0, 0, 0, 0]
    finally:
        a.close()
        b.close()

    # A raw CPER from a file, through the client; then let the guest handle it and finish.
    record = tmp_path / "mem.cper"
    record.write_bytes(cper.memory_error_record(0x41234000))
    assert r.ok("gpio", "--cper-file", str(record))["record_bytes"] == len(record.read_bytes())
    assert r.ok("cont") == {}
    text = r.wait_console("^POWEROFF")
    assert "GED event=0x20 intid=41: hardware error" in text
    assert "CPER section=memory pa=0x0000000041234000" in text
    assert "ACK source=1 read_ack=0x1 block_status=0x0" in text
    assert r.finish() == 0
    assert not r.sock.exists()


def test_idle_guest_waits_for_commands_and_quits(run, tmp_path: Path) -> None:
    idle = tmp_path / "idle.elf"
    idle.write_bytes(make_elf(assemble(" msr daifset, #2\n1: wfi\n b 1b\n")))
    r = run(idle)
    time.sleep(0.3)
    status = r.ok("query-status")
    assert status["status"] == "running" and r.proc.poll() is None   # no "WFI with nothing armed" fault
    assert r.ok("quit") == {}
    assert r.finish() == 0


def test_control_path_checks(tmp_path: Path, guest_images: Path) -> None:
    ref = str(guest_images / "ras_ref.elf")
    taken = tmp_path / "file"
    taken.write_text("not a socket")
    one_line_error(armras("run", ref, "--control", str(taken)), "not a socket")
    assert taken.read_text() == "not a socket"
    # A stale socket (nobody listening) is replaced, and removed at exit.
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    proc = armras("run", ref, "--control", str(stale), "--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    one_line_error(armras("inject", "--control", str(tmp_path / "none.sock"), "query-status"), "does not exist")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    one_line_error(armras("inject", "--control", str(stale), "query-ack"), "connection refused")
    proc = armras("inject", "query-ack")
    assert proc.returncode == 1 and "needs --control" in proc.stderr
    one_line_error(armras("run", ref, "--pause-on", "^READY"), "--pause-on needs --control")


def test_inject_serror_from_the_command_line_client(run, tmp_path: Path) -> None:
    from test_serror import guest

    # The guest unmasks SErrors, says READY and spins until its SError handler ran; it
    # then powers off with the AET of the ESR_EL1 it saw as its exit status (CE = 0b110).
    elf = tmp_path / "serror.elf"
    elf.write_bytes(make_elf(assemble(guest("""
 ldr x2, =0x09000000
 adr x3, ready
2: ldrb w4, [x3], #1
 cbz w4, 3f
 strb w4, [x2]
 b 2b
3: msr daifclr, #4
1: cbz x19, 1b
 ubfx x1, x10, #10, #3
 b power_off
ready:
 .asciz "READY\\n"
 .balign 4
"""))))
    r = run(elf)
    r.wait_console("^READY$")
    one_line_error(r.inject("serror", "--aet", "ce", "--cpu", "3"), "cpu=3: the board has 1 CPU(s)")
    bad = r.inject("serror", "--aet", "fatal")
    assert bad.returncode == 2 and "invalid choice: 'fatal'" in bad.stderr
    reply = r.ok("serror", "--aet", "ce")
    assert reply == {"cpu": 0, "aet": "ce", "esr": 0xBE001811, "merged": False}
    assert r.finish() == 0b110
