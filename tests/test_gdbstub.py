"""The GDB remote-protocol server (`armras run --gdb`): real gdb-multiarch in batch mode
against the reference guest, a raw socket for malformed input, and the packet layer alone."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from armras.drive import gdbstub
from armras.errors import ArmrasError
from conftest import LOAD_ADDRESS, REPO, assemble, make_elf, require_tool

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
REF = REPO / "guest_images" / "build" / "ras_ref.elf"
LISTENING = re.compile(r"gdb server listening on ([0-9.]+):(\d+)")
SEA_PA = "0x40fa6000"


# --- the packet layer, without gdb ------------------------------------------------------
def test_checksum_and_framing_follow_the_protocol() -> None:
    # gdb/doc "Overview": $packet-data#checksum, the sum of the data bytes modulo 256.
    assert gdbstub.checksum(b"OK") == 0x9A
    assert gdbstub.frame(b"OK") == b"$OK#9a"
    assert gdbstub.frame(b"") == b"$#00"
    # "Binary Data": $ # } * are sent as } and the byte XOR 0x20.
    assert gdbstub.escape(b"a$b#c}d*") == b"a}\x04b}\x03c}]d}\x0a"
    data = bytes(range(256))
    assert gdbstub.unescape(gdbstub.escape(data)) == data
    with pytest.raises(ValueError):
        gdbstub.unescape(b"ab}")


def test_parser_splits_packets_acks_and_interrupts_across_reads() -> None:
    p = gdbstub.PacketParser()
    assert p.feed(b"+$qSupp") == [gdbstub.Ack(True)]
    assert p.feed(b"orted#37-") == [gdbstub.Packet(b"qSupported"), gdbstub.Ack(False)]
    assert p.feed(b"\x03") == [gdbstub.Interrupt()]
    # A '#' escaped inside binary data does not end the packet.
    body = b"X40080000,1:}\x03"
    assert p.feed(gdbstub.frame(body)) == [gdbstub.Packet(body)]
    bad = p.feed(b"$g#00")
    assert len(bad) == 1 and isinstance(bad[0], gdbstub.Corrupt)
    assert isinstance(p.feed(b"$g#zz")[0], gdbstub.Corrupt)
    assert p.feed(b"garbage") == []                              # noise between packets
    small = gdbstub.PacketParser(limit=8)
    assert isinstance(small.feed(b"$" + b"m" * 20)[0], gdbstub.Corrupt)
    assert small.feed(b"$g#67") == [gdbstub.Packet(b"g")]


def test_target_description_names_the_ras_system_registers() -> None:
    xml = gdbstub.target_xml().decode()
    assert '<feature name="org.gnu.gdb.aarch64.core">' in xml and '<feature name="org.gnu.gdb.aarch64.fpu">' in xml
    for name in ("x0", "x30", "sp", "pc", "cpsr", "v31", "fpsr", "fpcr",
                 "ESR_EL1", "FAR_EL1", "ELR_EL1", "SPSR_EL1", "VBAR_EL1", "DISR_EL1", "MPIDR_EL1"):
        assert f'name="{name}"' in xml
    assert re.search(r'name="pc" bitsize="64" type="code_ptr" regnum="32"', xml)
    assert re.search(r'name="cpsr" bitsize="32" type="int" regnum="33"', xml)


@pytest.mark.parametrize("text, expect", [
    ("1234", ("127.0.0.1", 1234)), ("0", ("127.0.0.1", 0)), ("0.0.0.0:77", ("0.0.0.0", 77)),
    ("[::1]:5", ("::1", 5)), ("localhost:65535", ("localhost", 65535)),
])
def test_gdb_address_parses(text: str, expect: tuple[str, int]) -> None:
    assert gdbstub.parse_address(text) == expect


@pytest.mark.parametrize("text", ["", "abc", "65536", "-1", ":5", "nan", "inf", "1e3", "9" * 40, "host:"])
def test_bad_gdb_address_is_refused(text: str) -> None:
    with pytest.raises(ArmrasError):
        gdbstub.parse_address(text)


def armras(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=REPO)


def test_gdb_options_errors_are_one_line() -> None:
    r = armras("run", str(REF), "--gdb-wait")
    assert r.returncode == 1 and r.stderr.strip() == "armras: error: --gdb-wait needs --gdb: nothing else could let the guest run"
    r = armras("run", str(REF), "--gdb", "99999")
    assert r.returncode == 2 and "port 99999 is outside 0-65535" in r.stderr and "Traceback" not in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = armras("run", str(REF), "--gdb", str(port), "--timeout", "20")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"armras: error: --gdb 127.0.0.1:{port}: cannot listen: Address already in use"]


# --- armras with a gdb server ---------------------------------------------------------------
class Served:
    """`armras run IMAGE --gdb 0 ...` in the background; `port` is where it listens."""

    def __init__(self, tmp_path: Path, image: Path | None, *extra: str) -> None:
        self.console = tmp_path / "console.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "armras", "run", *([str(image)] if image else []), "--gdb", "0", "--console", str(self.console),
             "--timeout", "90", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = LISTENING.search(line)
        assert m, line
        self.port = int(m.group(2))
        assert m.group(1) == "127.0.0.1"          # localhost unless a host is given

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def console_text(self) -> str:
        return self.console.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def gdb_path() -> str:
    return require_tool("gdb-multiarch", "apt-get install gdb-multiarch")


def gdb(gdb_path: str, port: int, *commands: str, image: Path | None = REF,
        timeout: float = 90) -> subprocess.CompletedProcess[str]:
    args = [gdb_path, "-batch", "-nx", "-ex", "set architecture aarch64"]
    if image is not None:
        args += ["-ex", f"file {image}"]
    args += ["-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        args += ["-ex", c]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def register(out: str, name: str) -> int:
    m = re.search(rf"^{name}\s+(0x[0-9a-f]+)", out, re.M)
    assert m, out
    return int(m.group(1), 16)


def test_break_step_and_esr_after_an_injected_sea(tmp_path: Path, gdb_path: str) -> None:
    run = Served(tmp_path, REF, "--gdb-wait", "--inject", f"sea:pa={SEA_PA},on=^READY")
    try:
        # ghes_process is where the guest reads the record after its SEA handler printed ESR.
        r = gdb(gdb_path, run.port, "info registers pc", "break ghes_process", "continue",
                "info registers ESR_EL1 FAR_EL1 ELR_EL1 SPSR_EL1 VBAR_EL1 pc", "stepi", "info registers pc",
                "delete", "continue")
        status, err = run.wait()
    finally:
        run.close()
    out = r.stdout
    assert r.returncode == 0, r.stderr
    # --gdb-wait: held at the ELF entry point, before the first instruction.
    assert re.search(r"^pc\s+0x40080000\s+0x40080000 <_start>", out, re.M), out
    assert "Breakpoint 1, ghes_process" in out
    console = run.console_text()
    m = re.search(r"^SEA ESR=(0x[0-9a-f]+) EC=0x25 DFSC=0x10 FnV=1 ELR=(0x[0-9a-f]+)$", console, re.M)
    assert m, console
    assert register(out, "ESR_EL1") == int(m.group(1), 16)          # what the guest printed
    assert register(out, "ELR_EL1") == int(m.group(2), 16)
    assert register(out, "VBAR_EL1") != 0
    pcs = [int(x, 16) for x in re.findall(r"^pc\s+(0x[0-9a-f]+)", out, re.M)]
    assert len(pcs) == 3 and pcs[1] != pcs[2]                        # stepi moved the PC
    assert "[Inferior 1 (Remote target) exited normally]" in out    # continue to power-off
    assert status == 0 and "POWEROFF status=0" in console and "DONE sea=1" in console
    assert "Traceback" not in err


def test_watchpoint_memory_write_and_time_frozen_while_stopped(tmp_path: Path, gdb_path: str) -> None:
    run = Served(tmp_path, REF, "--gdb-wait")
    try:
        r = gdb(gdb_path, run.port, "hbreak main", "continue", "next", "watch ticks", "continue", "delete",
                "print ticks", "shell sleep 1", "print ticks",       # 1 s stopped: no 10 ms tick counted
                "set var ticks = 295", "x/2gx &work",
                "rwatch sea_count", "continue", "info registers pc", "delete",   # read once: for the DONE line
                "detach")
        status, _ = run.wait()
    finally:
        run.close()
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert "Hardware assisted breakpoint 1 at" in out and "Breakpoint 1, main (" in out
    # `next` runs over the first printf (a call: gdb steps in, then runs to the return).
    assert re.search(r"^124\s+printf\(\"PSCI version=", out, re.M), out
    assert "Hardware watchpoint 2: ticks" in out
    assert re.search(r"Old value = 0\nNew value = 1\n", out), out
    values = re.findall(r"^\$\d+ = (\d+)$", out, re.M)
    assert values[:2] == ["1", "1"], out
    # work[1] = 1 * 0x9E3779B97F4A7C15, as the guest filled it (ras_ref.c main)
    assert re.search(r"<work>:\s+0x0000000000000000\s+0x9e3779b97f4a7c15", out), out
    assert re.search(r"Hardware read watchpoint 3: sea_count\n\nValue = 0\n", out), out
    assert "[Inferior 1 (Remote target) detached]" in out           # and the guest ran on alone
    assert status == 0
    # The guest counted on from the value gdb wrote to its 300 ticks (a loaded host may
    # deliver one late tick more between the loop's last check and its irq_disable()).
    console = run.console_text()
    done = re.search(r"^DONE sea=0 gpio=0 ticks=(\d+) invalid=0$", console, re.M)
    assert done and 300 <= int(done.group(1)) <= 301, console
    assert "POWEROFF status=0" in console


def spin_guest(tmp_path: Path) -> Path:
    """A guest that counts in x0 for ever: only Ctrl-C or kill ends it."""
    image = tmp_path / "spin.elf"
    image.write_bytes(make_elf(assemble("loop:\n add x0, x0, #1\n b loop")))
    return image


def test_smp_cpus_are_threads_and_ctrl_c_stops(tmp_path: Path, gdb_path: str) -> None:
    run = Served(tmp_path, spin_guest(tmp_path), "--smp", "2")
    try:
        args = [gdb_path, "-batch", "-nx", "-ex", "set architecture aarch64",
                "-ex", f"target remote 127.0.0.1:{run.port}", "-ex", "info registers x0", "-ex", "continue",
                "-ex", "info threads", "-ex", "info registers x0", "-ex", "thread 2", "-ex", "info registers pc",
                "-ex", "kill"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(4)
        proc.send_signal(signal.SIGINT)          # Ctrl-C: gdb sends 0x03 to the target
        out, err = proc.communicate(timeout=60)
        status, _ = run.wait()
    finally:
        run.close()
    assert "received signal SIGINT" in out, out + err
    assert re.search(r"^\*? *1\s+Thread 1 \(CPU0 MPIDR=0x0 on\)", out, re.M), out
    assert re.search(r"^\s+2\s+Thread 2 \(CPU1 MPIDR=0x1 off\)", out, re.M), out
    x0 = [int(v, 16) for v in re.findall(r"^x0\s+(0x[0-9a-f]+)", out, re.M)]
    assert len(x0) == 2 and x0[1] > x0[0]                  # it ran between attach and Ctrl-C
    assert re.search(r"^pc\s+0x0\s", out, re.M), out        # CPU1 was never started (PSCI CPU_ON)
    assert status == 0                           # gdb's kill powers the board off, as QEMU exits


def test_breakpoints_carry_over_a_warm_reset(tmp_path: Path, gdb_path: str) -> None:
    # Each boot resets unless x0 (loaded from `flag`, 0) is set: gdb sets it in boot 2.
    code = assemble("""
 ldr x0, flag
check:
 cbnz x0, off
 ldr x0, =0x84000009        // PSCI SYSTEM_RESET
 hvc #0
 b .
off:
 ldr x0, =0x84000008        // PSCI SYSTEM_OFF, status in x1
 mov x1, #7
 hvc #0
 b .
 .balign 8
flag: .quad 0
 .ltorg
""")
    image = tmp_path / "reset.elf"
    image.write_bytes(make_elf(code))
    check = LOAD_ADDRESS + 4
    run = Served(tmp_path, image, "--gdb-wait", "--max-reboots", "2")
    try:
        r = gdb(gdb_path, run.port, f"break *{check:#x}", "continue", "info registers x0", "continue",
                "info registers x0", "set $x0 = 1", "continue", image=None)
        status, err = run.wait()
    finally:
        run.close()
    out = r.stdout
    assert r.returncode == 0, r.stderr
    assert out.count(f"Breakpoint 1, {check:#018x} in ?? ()") == 2, out   # boot 1, then boot 2
    assert "warm reset (PSCI SYSTEM_RESET): boot 2" in err
    assert "[Inferior 1 (Remote target) exited with code 07]" in out
    assert status == 7


def elf_bytes(path: Path, addr: int, size: int) -> bytes:
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr < seg["p_vaddr"] + seg["p_filesz"]:
                return seg.data()[addr - seg["p_vaddr"]:][:size]
    raise AssertionError(f"{addr:#x} is not in {path}")


def elf_symbol(path: Path, name: str) -> int:
    with open(path, "rb") as f:
        symbols = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        assert symbols, name
        return symbols[0]["st_value"]


def _packet(conn: socket.socket, payload: bytes) -> bytes:
    conn.sendall(gdbstub.frame(payload))
    data = b""
    while not re.search(rb"\$([^#]*)#[0-9a-f]{2}$", data):
        chunk = conn.recv(65536)
        assert chunk, data
        data += chunk
    return re.search(rb"\$([^#]*)#[0-9a-f]{2}$", data).group(1)  # type: ignore[union-attr]


def test_malformed_packets_get_errors_and_one_client_at_a_time(tmp_path: Path) -> None:
    run = Served(tmp_path, REF, "--gdb-wait")
    try:
        with socket.create_connection(("127.0.0.1", run.port), timeout=20) as conn:
            assert _packet(conn, b"?") == b"T05thread:1;"
            conn.sendall(b"-")                                         # damaged: sent again
            assert conn.recv(64) == gdbstub.frame(b"T05thread:1;")
            conn.sendall(b"$g#00")                                     # bad checksum
            assert conn.recv(1) == b"-"
            assert _packet(conn, b"mzz,4") == b"E01"
            assert _packet(conn, b"m0,") == b"E01"
            assert _packet(conn, b"m9000000,4") == b"E01"              # the UART: no device reads from gdb
            assert _packet(conn, b"mfffffffffffffffc,8") == b"E01"     # past the top of the address space
            assert _packet(conn, b"p1000") == b"E01"
            assert _packet(conn, b"P20=00") == b"E01"                  # pc is 8 bytes
            assert _packet(conn, b"Z9,0,4") == b"E01"
            assert _packet(conn, b"Hg63") == b"E01"                    # no such thread
            assert _packet(conn, b"vCont;x") == b"E01"
            assert _packet(conn, b"vCont;r40080008,40080004:1") == b"E01"  # an empty range
            assert _packet(conn, b"vCont?") == b"vCont;c;C;s;S;r"
            assert _packet(conn, b"qNoSuchThing") == b""               # unsupported: empty reply
            for junk in (b"m", b"M", b"X", b"Z", b"z0,", b"p", b"P", b"H", b"T", b"G00", b"Gzz", b"c\xff",
                         b"qXfer:features:read:target.xml:zz", b"qThreadExtraInfo,zz", b"vCont;s:zz", b"Hgzz",
                         b"M40080000,2:zz", b"M40080000,9:00", b"X40080000,5:ab", b"p\xff\xfe", b"Tzz",
                         b"m" + b"f" * 3000 + b",4", b"Z0,40080000,ffffffffffffffffff"):
                assert _packet(conn, junk) in (b"", b"E01"), junk
            assert _packet(conn, b"qXfer:features:read:other.xml:0,10") == b"E00"
            xml = _packet(conn, b"qXfer:features:read:target.xml:0,3fff")
            assert xml.startswith(b"l<?xml") and b"ESR_EL1" in xml
            assert _packet(conn, b"p20") == b"0000084000000000"        # pc = 0x40080000, little-endian
            assert _packet(conn, b"m40080000,8") == elf_bytes(REF, 0x4008_0000, 8).hex().encode()
            # Range stepping (vCont;r): on through _start's straight-line code, which sets
            # VBAR_EL1 to the guest's `vectors` at 0x40080020, to the first PC outside the range.
            assert _packet(conn, b"vCont;r40080000,40080024:1") == b"T05thread:1;"
            assert _packet(conn, b"p20") == (0x4008_0024).to_bytes(8, "little").hex().encode()
            vbar = gdbstub.REGISTERS.index(next(r for r in gdbstub.REGISTERS if r.name == "VBAR_EL1"))
            assert _packet(conn, b"p%x" % vbar) == elf_symbol(REF, "vectors").to_bytes(8, "little").hex().encode()
            # A second debugger is turned away while the first is attached.
            with socket.create_connection(("127.0.0.1", run.port), timeout=20) as second:
                second.settimeout(20)
                assert second.recv(16) == b""
            assert _packet(conn, b"qAttached") == b"1"
            conn.sendall(gdbstub.frame(b"k"))
        status, err = run.wait()
    finally:
        run.close()
    assert status == 0 and "Traceback" not in err
    assert "refused a second client" in err


# --- Linux ------------------------------------------------------------------------------------
@pytest.mark.kernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_linux_registers_and_kernel_memory_through_its_translation(series: str, tmp_path: Path,
                                                                   gdb_path: str) -> None:
    from conftest import debian_kernel
    from test_smp import INITRAMFS

    kernel = debian_kernel(series)
    if not INITRAMFS.exists():
        subprocess.run(["make", "-C", str(REPO / "guest_images" / "linux"), f"PYTHON={sys.executable}"], check=True)
    sock = tmp_path / "ctl.sock"
    # The control socket pauses Linux once /init runs; gdb attaches to the paused guest.
    run = Served(tmp_path, None, "--kernel", str(kernel), "--initrd", str(INITRAMFS), "--append", "console=ttyAMA0",
                 "--control", str(sock), "--pause-on", "^INIT-OK", "--smp", "2")
    try:
        deadline = time.monotonic() + 120
        while "INIT-OK" not in (run.console.read_text() if run.console.exists() else ""):
            assert run.proc.poll() is None and time.monotonic() < deadline, "Linux did not reach /init"
            time.sleep(0.5)
        r = gdb(gdb_path, run.port, "info threads", "thread 1", "info registers SCTLR_EL1 VBAR_EL1 TTBR1_EL1",
                "x/i $VBAR_EL1+0x200", "x/i $VBAR_EL1+0x400", "thread 2", "info registers VBAR_EL1 MPIDR_EL1",
                "x/i $VBAR_EL1+0x200", "continue", image=None)
        status, err = run.wait(120)
    finally:
        run.close()
    out = r.stdout
    assert r.returncode == 0, r.stderr
    # Both CPUs are threads, both brought up by the kernel (PSCI CPU_ON).
    assert re.search(r"^\*?\s*1\s+Thread 1 \(CPU0 MPIDR=0x0 (on|in WFI)\)", out, re.M), out
    assert re.search(r"^\*?\s*2\s+Thread 2 \(CPU1 MPIDR=0x1 (on|in WFI)\)", out, re.M), out
    assert register(out, "SCTLR_EL1") & 1                      # the kernel's MMU is on
    vbar = register(out, "VBAR_EL1")
    # CPU1's registers (read from its saved context when CPU0 is on the core): the same vectors.
    assert [int(v, 16) for v in re.findall(r"^VBAR_EL1\s+(0x[0-9a-f]+)", out, re.M)] == [vbar, vbar]
    assert len(re.findall(rf"{vbar + 0x200:#x}:\s+sub\s+sp, sp, #0x", out)) == 2, out
    assert register(out, "MPIDR_EL1") == 0x8000_0001          # RES1 bit 31, Aff0 = 1 (Linux's "CPU1 ... 0x1")
    assert vbar >> 48 == 0xFFFF and vbar & 0x7FF == 0             # kernel half, 2 KiB aligned
    # Read through the kernel's TTBR1 tables: arch/arm64/kernel/entry.S kernel_ventry, whose
    # EL1h entry starts by making room for pt_regs and whose EL0 entries start with a branch.
    assert re.search(rf"{vbar + 0x200:#x}:\s+sub\s+sp, sp, #0x[0-9a-f]+", out), out
    assert re.search(rf"{vbar + 0x400:#x}:\s+b\s+0x", out), out
    assert "[Inferior 1 (Remote target) exited normally]" in out
    assert status == 0 and "Traceback" not in err
