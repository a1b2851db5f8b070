"""A GDB remote-serial-protocol server: `armras run ... --gdb [HOST:]PORT [--gdb-wait]`.

`gdb-multiarch` attaches as it does to QEMU's `-s -S` (gdb/doc "Remote Protocol"; packet
names below are that appendix's). The server listens on TCP (localhost unless a host is
given), serves one client at a time (a second connection is closed at once) and speaks:

    qSupported, QStartNoAckMode, qXfer:features:read (the target description below),
    ?, g/G, p/P, m/M/X (guest virtual addresses, through the selected CPU's stage-1
    translation: armras.arch.mmu), Z0/Z1 (breakpoints), Z2/Z3/Z4 (write/read/access
    watchpoints), c, s, vCont (c, s), Ctrl-C (0x03), D, k, H, T, qfThreadInfo/
    qsThreadInfo, qC, qAttached, qThreadExtraInfo.

Each vCPU is a thread (id = CPU index + 1). A stopped guest is paused as by the control
socket's `stop` (virtual time frozen): every command runs on the CPU thread between
slices through `Machine.defer`, as control commands do.

Breakpoints are Unicorn code hooks bounded to their address (nothing is written into
guest memory); watchpoints are memory hooks bounded to their range, removed when
cleared (a memory hook on a RAM page sends every store to that page down Unicorn's slow
path). A watchpoint stops the CPU at the accessing instruction after its access (Unicorn
restarts that instruction on resume; gdb steps over it with the watchpoint removed, as
for AArch64's non-steppable watchpoints). A single step runs one instruction with IRQs
held back, as QEMU's default (SSTEP_NOIRQ).
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import queue
import select
import socket
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, Uc, UcError
from unicorn import arm64_const as A

from armras.arch.cpu import SCTLR_EL1, TCR_EL1, safe_hook
from armras.arch.mmu import translate
from armras.board.vcpu import VMPIDR_EL2, Power
from armras.errors import ArmrasError

if TYPE_CHECKING:
    from armras.board.machine import Machine
    from armras.drive.session import RunSession

log = logging.getLogger(__name__)

# --- the packet layer (gdb/doc "Overview", "Binary Data") -------------------------------
PACKET_SIZE = 0x4000             # what qSupported announces: the longest packet we accept
INTERRUPT = 0x03                 # Ctrl-C while the target runs
ESCAPE = ord("}")
ESCAPE_XOR = 0x20
NEEDS_ESCAPE = frozenset(b"$#}*")
DEFAULT_HOST = "127.0.0.1"
MAX_PORT = 65535
REPLY_TIMEOUT = 10.0             # seconds to wait for the CPU thread to run a command
POLL = 0.05                      # seconds between checks for a stop while the guest runs
MAX_MEMORY_XFER = (PACKET_SIZE - 8) // 2   # bytes of one m reply in hex
MAX_ACCESS = 64                  # widest single guest access Unicorn reports (DC ZVA: 64 bytes)

SIGINT, SIGTRAP, SIGKILL = 2, 5, 9


def checksum(data: bytes) -> int:
    """The packet checksum: the sum of the payload bytes modulo 256."""
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data in a packet: $ # } * become } followed by the byte XOR 0x20."""
    out = bytearray()
    for b in data:
        if b in NEEDS_ESCAPE:
            out += bytes((ESCAPE, b ^ ESCAPE_XOR))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                raise ValueError("escape character at the end of binary data")
            out.append(nxt ^ ESCAPE_XOR)
        else:
            out.append(b)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """A whole packet: $payload#checksum (the payload already escaped where binary)."""
    return b"$" + payload + b"#%02x" % checksum(payload)


@dataclass(frozen=True)
class Packet:
    payload: bytes            # as received (binary data still escaped: X and M differ)


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Ack:
    ok: bool                  # '+' or '-' (resend)


@dataclass(frozen=True)
class Corrupt:
    reason: str               # a bad checksum or an oversized packet: the reply is '-'


Event = Packet | Interrupt | Ack | Corrupt


@dataclass
class PacketParser:
    """Splits the byte stream from gdb into packets, acks and interrupts."""

    limit: int = PACKET_SIZE
    _buf: bytearray = field(default_factory=bytearray)
    _in_packet: bool = False

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for b in data:
            if not self._in_packet:
                if b == ord("$"):
                    self._in_packet = True
                    self._buf.clear()
                elif b == INTERRUPT:
                    events.append(Interrupt())
                elif b in b"+-":
                    events.append(Ack(b == ord("+")))
                # anything else between packets is noise: ignored, as gdbserver does
                continue
            self._buf.append(b)
            hash_at = len(self._buf) - 3
            if hash_at >= 0 and self._buf[hash_at] == ord("#") and not self._escaped(hash_at):
                payload, sent = bytes(self._buf[:hash_at]), bytes(self._buf[hash_at + 1:])
                self._in_packet = False
                self._buf.clear()
                try:
                    ok = int(sent, 16) == checksum(payload)
                except ValueError:
                    ok = False
                events.append(Packet(payload) if ok else Corrupt(f"bad checksum {sent!r}"))
            elif len(self._buf) > self.limit + 3:
                self._in_packet = False
                self._buf.clear()
                events.append(Corrupt(f"packet longer than {self.limit} bytes"))
        return events

    def _escaped(self, index: int) -> bool:
        """Whether the byte at `index` follows an (unescaped) escape character."""
        n = 0
        while index - 1 - n >= 0 and self._buf[index - 1 - n] == ESCAPE:
            n += 1
        return n % 2 == 1


# --- registers: the target description ------------------------------------------------
@dataclass(frozen=True)
class Reg:
    name: str
    bits: int
    read: Callable[["Machine", int], int]            # (machine, cpu index) with that CPU on the core
    write: Callable[["Machine", int, int], None] | None
    type: str = "int"
    group: str = ""


def _uc(regid: int) -> tuple[Callable[["Machine", int], int], Callable[["Machine", int, int], None]]:
    return (lambda m, _i: m.uc.reg_read(regid)), (lambda m, _i, v: m.uc.reg_write(regid, v))


def _cp(enc: tuple[int, int, int, int, int]) -> tuple[Callable[["Machine", int], int],
                                                       Callable[["Machine", int, int], None]]:
    return (lambda m, _i: m.uc.cpr_read(*enc)), (lambda m, _i, v: m.uc.cpr_write(*enc, v))


def _disr(m: "Machine", index: int) -> int:
    return m.sysregs.disr if index == m.current else m.vcpus[index].disr


def _registers() -> list[Reg]:
    regs = [Reg(f"x{n}", 64, *_uc(A.UC_ARM64_REG_X0 + n)) for n in range(29)]
    regs += [Reg("x29", 64, *_uc(A.UC_ARM64_REG_X29)), Reg("x30", 64, *_uc(A.UC_ARM64_REG_X30)),
             Reg("sp", 64, *_uc(A.UC_ARM64_REG_SP), type="data_ptr"),
             Reg("pc", 64, *_uc(A.UC_ARM64_REG_PC), type="code_ptr"),
             Reg("cpsr", 32, *_uc(A.UC_ARM64_REG_PSTATE))]
    regs += [Reg(f"v{n}", 128, *_uc(A.UC_ARM64_REG_V0 + n), type="aarch64v") for n in range(32)]
    regs += [Reg("fpsr", 32, *_uc(A.UC_ARM64_REG_FPSR)), Reg("fpcr", 32, *_uc(A.UC_ARM64_REG_FPCR))]
    # What a RAS engineer reads after an error: the exception syndrome and its context.
    system = [("ESR_EL1", _uc(A.UC_ARM64_REG_ESR_EL1)), ("FAR_EL1", _uc(A.UC_ARM64_REG_FAR_EL1)),
              ("ELR_EL1", _uc(A.UC_ARM64_REG_ELR_EL1)), ("SPSR_EL1", _cp((3, 0, 4, 0, 0))),
              ("VBAR_EL1", _uc(A.UC_ARM64_REG_VBAR_EL1)), ("SCTLR_EL1", _cp(SCTLR_EL1)),
              ("TCR_EL1", _cp(TCR_EL1)), ("TTBR0_EL1", _uc(A.UC_ARM64_REG_TTBR0_EL1)),
              ("TTBR1_EL1", _uc(A.UC_ARM64_REG_TTBR1_EL1)), ("MAIR_EL1", _uc(A.UC_ARM64_REG_MAIR_EL1)),
              ("SP_EL0", _uc(A.UC_ARM64_REG_SP_EL0)), ("SP_EL1", _uc(A.UC_ARM64_REG_SP_EL1)),
              ("TPIDR_EL1", _uc(A.UC_ARM64_REG_TPIDR_EL1))]
    regs += [Reg(name, 64, *rw, type="uint64", group="system") for name, rw in system]
    regs.append(Reg("DISR_EL1", 64, _disr, None, type="uint64", group="system"))   # RAS (FEAT_RAS): deferred SError
    # EL1 reads of MPIDR_EL1 return VMPIDR_EL2 (armras.board.vcpu): which CPU this is.
    regs.append(Reg("MPIDR_EL1", 64, lambda m, _i: m.uc.cpr_read(*VMPIDR_EL2), None, type="uint64", group="system"))
    return regs


REGISTERS = _registers()
SYSREG_FEATURE = "org.armras.aarch64.sysregs"

# The vector type of gdb's own features/aarch64-fpu.xml.
_FPU_TYPES = """  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v2u" type="uint64" count="2"/>
  <vector id="v2i" type="int64" count="2"/>
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v4u" type="uint32" count="4"/>
  <vector id="v4i" type="int32" count="4"/>
  <vector id="v8f" type="ieee_half" count="8"/>
  <vector id="v8u" type="uint16" count="8"/>
  <vector id="v8i" type="int16" count="8"/>
  <vector id="v16u" type="uint8" count="16"/>
  <vector id="v16i" type="int8" count="16"/>
  <vector id="v1u" type="uint128" count="1"/>
  <vector id="v1i" type="int128" count="1"/>
  <union id="vnd"><field name="f" type="v2d"/><field name="u" type="v2u"/><field name="s" type="v2i"/></union>
  <union id="vns"><field name="f" type="v4f"/><field name="u" type="v4u"/><field name="s" type="v4i"/></union>
  <union id="vnh"><field name="f" type="v8f"/><field name="u" type="v8u"/><field name="s" type="v8i"/></union>
  <union id="vnb"><field name="u" type="v16u"/><field name="s" type="v16i"/></union>
  <union id="vnq"><field name="u" type="v1u"/><field name="s" type="v1i"/></union>
  <union id="aarch64v"><field name="d" type="vnd"/><field name="s" type="vns"/><field name="h" type="vnh"/>
    <field name="b" type="vnb"/><field name="q" type="vnq"/></union>
"""


def target_xml() -> bytes:
    """The target description (gdb/doc "Target Descriptions", "AArch64 Features")."""
    def reg(n: int, r: Reg) -> str:
        group = f' group="{r.group}"' if r.group else ""
        return f'  <reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" regnum="{n}"{group}/>\n'

    feature = {"x": "org.gnu.gdb.aarch64.core", "s": "org.gnu.gdb.aarch64.core", "p": "org.gnu.gdb.aarch64.core",
               "c": "org.gnu.gdb.aarch64.core", "v": "org.gnu.gdb.aarch64.fpu", "f": "org.gnu.gdb.aarch64.fpu"}
    parts = ['<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target>\n'
             '<architecture>aarch64</architecture>\n']
    current = None
    for n, r in enumerate(REGISTERS):
        name = SYSREG_FEATURE if r.group == "system" else feature[r.name[0]]
        if name != current:
            if current is not None:
                parts.append("</feature>\n")
            parts.append(f'<feature name="{name}">\n')
            if name.endswith(".fpu"):
                parts.append(_FPU_TYPES)
            current = name
        parts.append(reg(n, r))
    parts.append("</feature>\n</target>\n")
    return "".join(parts).encode()


# --- command line -----------------------------------------------------------------------
@dataclass(frozen=True)
class GdbConfig:
    host: str = DEFAULT_HOST
    port: int = 1234
    wait: bool = False               # hold the CPU at the first instruction until gdb continues


def parse_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` (an IPv6 host in brackets): localhost unless a host is given."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if sep and not host:
        raise ArmrasError(f"--gdb {text!r}: empty host (give PORT or HOST:PORT)")
    try:
        port = int(port_text, 10)
    except ValueError:
        raise ArmrasError(f"--gdb {text!r}: {port_text!r} is not a TCP port number") from None
    if not 0 <= port <= MAX_PORT:
        raise ArmrasError(f"--gdb {text!r}: port {port} is outside 0-{MAX_PORT}")
    return host, port


def add_run_options(run: argparse.ArgumentParser) -> None:
    def address(text: str) -> tuple[str, int]:
        try:
            return parse_address(text)
        except ArmrasError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    run.add_argument("--gdb", type=address, default=None, metavar="[HOST:]PORT",
                     help="serve the GDB remote protocol (gdb-multiarch: target remote :PORT); "
                          "localhost unless HOST is given; port 0 picks a free one")
    run.add_argument("--gdb-wait", action="store_true",
                     help="hold the CPU at the first instruction until gdb continues (as QEMU -S)")


# --- the server -------------------------------------------------------------------------
class _Closed(Exception):
    """The machine is gone (powered off, reset): the command cannot run."""


@dataclass
class _Hook:
    kind: int                  # Z type: 0/1 breakpoint, 2 write, 3 read, 4 access watchpoint
    addr: int
    length: int
    handle: int | None = None


class GdbServer:
    """One GDB remote-protocol endpoint for a run session (see the module docstring)."""

    def __init__(self, config: GdbConfig) -> None:
        self.config = config
        self.machine: Machine | None = None
        self.address: tuple[str, int] | None = None   # where it listens (the port when 0 was asked)
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stops: queue.Queue[bytes] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()   # a stop reply is queued: wake the client thread
        self._wake_r.setblocking(False)
        self._futures: set[Future[Any]] = set()
        self._bound = threading.Event()          # a board is being served
        self._finished = threading.Event()       # the run is over
        self._hooks: dict[tuple[int, int, int], _Hook] = {}
        self._boots = 0
        self._reason: bytes = b""            # the stop reply of the current stop
        self._resume: tuple[int, int, int] | None = None   # (cpu, pc, instructions) at the last resume
        self._thread_g = 0                    # CPU index selected by Hg (0: the current one)
        self._thread_c = 0
        self._no_ack = False
        self._swbreak = False
        self._running = False                 # gdb waits for a stop reply
        self._last_sent = b""                 # resent on '-' (ack mode)

    # --- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        host, port = self.config.host, self.config.port
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ArmrasError(f"--gdb {host}:{port}: cannot resolve the host: {e.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(sockaddr)
        except OSError as e:
            listener.close()
            raise ArmrasError(f"--gdb {host}:{port}: cannot listen: {e.strerror or e}") from None
        listener.listen(2)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        thread = threading.Thread(target=self._accept_loop, name="armras-gdb", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.warning("gdb server listening on %s:%d", *self.address)
        if not ipaddress.ip_address(self.address[0]).is_loopback:
            log.warning("gdb server: %s is not a loopback address; whoever reaches it controls the guest",
                        self.address[0])

    def rebind(self, machine: Machine) -> None:
        """Serve `machine` (each boot of a session): breakpoints and watchpoints carry over."""
        self._cancel_calls()
        self.machine = machine
        self._bound.set()
        machine.scheduler.debug_stopped = self._debug_stopped
        for hook in self._hooks.values():
            hook.handle = None
            self._install(hook)
        if self._boots == 0 and self.config.wait:
            self._reason = self._stop_reply(SIGTRAP)
            machine.defer(machine.scheduler.pause, "gdb: hold the CPU at the first instruction (--gdb-wait)")
        self._boots += 1

    def finish(self, status: int | None) -> None:
        """The run is over: a waiting gdb hears that the process exited (W) or was killed (X)."""
        self._finished.set()
        self.machine = None
        self._cancel_calls()
        self._post(b"W%02x" % (status & 0xFF) if status is not None else b"X%02x" % SIGKILL)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)
        with self._lock:
            client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._wake_r.close()
        self._wake_w.close()

    # --- connections ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with self._lock:
                busy = self._client is not None
                if not busy:
                    self._client = conn
            if busy:
                log.warning("gdb: refused a second client from %s (one debugger at a time)", peer[0])
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="armras-gdb-client", daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve(self, conn: socket.socket) -> None:
        parser = PacketParser()
        self._no_ack, self._swbreak, self._running = False, False, False
        self._thread_g = self._thread_c = 0
        detach = True
        try:
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with contextlib.suppress(_Closed, FutureTimeout):
                    self._call(self._halt)              # gdb expects a stopped target
                while True:
                    if self._running:
                        with contextlib.suppress(queue.Empty):
                            reply = self._stops.get_nowait()
                            self._running = False
                            self._send(conn, reply)
                            if reply[:1] in b"WX":
                                detach = False
                                return
                    try:
                        readable, _, _ = select.select([conn, self._wake_r], [], [], POLL)
                    except (OSError, ValueError):       # the server closed under us
                        return
                    if self._wake_r in readable:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    if self._closed.is_set() and not self._running:
                        return
                    if conn not in readable:
                        continue
                    data = conn.recv(65536)
                    if not data:
                        return
                    for event in parser.feed(data):
                        if isinstance(event, Interrupt):
                            if self._running:
                                self._interrupt()
                        elif isinstance(event, Ack) and not event.ok and self._last_sent and not self._no_ack:
                            conn.sendall(self._last_sent)          # '-': the last packet arrived damaged
                        elif isinstance(event, Corrupt):
                            log.info("gdb: %s", event.reason)
                            if not self._no_ack:
                                conn.sendall(b"-")
                        elif isinstance(event, Packet):
                            log.debug("gdb -> %r", event.payload[:200])
                            if not self._no_ack:
                                conn.sendall(b"+")
                            reply = self._dispatch(event.payload)
                            if reply is _DETACH or reply is _KILL:
                                detach = reply is _DETACH
                                if reply is _DETACH:
                                    self._send(conn, b"OK")
                                return
                            if reply is not None:
                                self._send(conn, reply)
        except OSError as e:
            log.info("gdb client went away: %s", e)
        except Exception:
            log.exception("gdb: the client thread failed")
            raise
        finally:
            if detach:
                with contextlib.suppress(_Closed, FutureTimeout):
                    self._call(self._detach)
            with self._lock:
                self._client = None
            # drop stop replies meant for this client
            while not self._stops.empty():
                with contextlib.suppress(queue.Empty):
                    self._stops.get_nowait()

    def _send(self, conn: socket.socket, payload: bytes) -> None:
        log.debug("gdb <- %r", payload[:200])
        self._last_sent = frame(payload)
        conn.sendall(self._last_sent)

    # --- running commands on the CPU thread ------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        machine = self._m()
        if machine.exit_status is not None:
            raise _Closed()
        fut: Future[Any] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the client thread
                fut.set_exception(e)

        with self._lock:
            self._futures.add(fut)
        machine.defer(run, "gdb command")
        try:
            return fut.result(REPLY_TIMEOUT)
        except CancelledError:
            raise _Closed() from None
        except FutureTimeout:
            fut.cancel()
            if self.machine is not machine:
                raise _Closed() from None
            raise
        finally:
            with self._lock:
                self._futures.discard(fut)

    def _cancel_calls(self) -> None:
        """Commands still waiting for a board that will not run them again (it ended)."""
        with self._lock:
            futures, self._futures = list(self._futures), set()
        for fut in futures:
            fut.cancel()

    def _m(self) -> Machine:
        machine = self.machine
        if machine is None and not self._finished.is_set():
            self._bound.wait(REPLY_TIMEOUT)      # gdb connected before the first board was built
            machine = self.machine
        if machine is None:
            raise _Closed()
        return machine

    def _stop_reply(self, signal: int, extra: str = "") -> bytes:
        return f"T{signal:02x}{extra}thread:{self._m().current + 1:x};".encode()

    def _halt(self) -> None:
        m = self._m()
        if not m.paused:
            m.pause()
            self._reason = self._stop_reply(SIGINT)
        elif not self._reason:
            self._reason = self._stop_reply(SIGTRAP)

    def _interrupt(self) -> None:
        machine = self.machine
        if machine is None:
            return

        def stop() -> None:
            if not machine.paused:
                machine.pause()
                self._reason = self._stop_reply(SIGINT)
                self._post(self._reason)

        machine.defer(stop, "gdb: interrupt (Ctrl-C)")

    def _debug_stopped(self) -> None:
        """The scheduler paused after a step or a breakpoint/watchpoint hit (CPU thread)."""
        if not self._reason:
            self._reason = self._stop_reply(SIGTRAP)
        self._post(self._reason)

    def _post(self, reply: bytes) -> None:
        self._stops.put(reply)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"!")

    def _detach(self) -> None:
        m = self._m()
        for hook in list(self._hooks.values()):
            self._remove(hook)
        self._hooks.clear()
        m.scheduler.single_step = False
        m.scheduler.drop_translations()
        m.resume()

    def _resume_cpu(self, step: bool, thread: int, step_range: tuple[int, int] | None = None) -> None:
        m = self._m()
        s = m.scheduler
        if step and thread > 0:
            s.focus(thread - 1)
        self._reason = b""
        self._resume = (m.current, m.cpu.pc, m.instructions)
        s.single_step = step
        s.step_range = step_range
        m.resume()

    # --- breakpoints and watchpoints ------------------------------------------------------
    def _install(self, hook: _Hook) -> None:
        m = self._m()
        end = hook.addr + max(hook.length, 1) - 1
        if hook.kind in (0, 1):
            cb = safe_hook(self._on_code, m.scheduler.hook_failed)
            hook.handle = m.uc.hook_add(UC_HOOK_CODE, cb, hook, begin=hook.addr, end=hook.addr)
        else:
            types = {2: UC_HOOK_MEM_WRITE, 3: UC_HOOK_MEM_READ, 4: UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}[hook.kind]
            cb = safe_hook(self._on_memory, m.scheduler.hook_failed)
            # Unicorn bounds a memory hook by the access's first byte: a wider access that
            # starts just below the range and overlaps it is caught too (filtered in _on_memory).
            begin = max(0, hook.addr - (MAX_ACCESS - 1))
            hook.handle = m.uc.hook_add(types, cb, hook, begin=begin, end=end)
        m.scheduler.drop_translations()

    def _remove(self, hook: _Hook) -> None:
        m = self._m()
        if hook.handle is not None:
            m.uc.hook_del(hook.handle)
            hook.handle = None
            m.scheduler.drop_translations()

    def _resuming_at(self, pc: int) -> bool:
        """Whether the CPU is at the instruction it resumed at, not yet run (do not stop again)."""
        m = self._m()
        return self._resume == (m.current, pc, m.blocks.executed(pc))

    def _on_code(self, uc: Uc, address: int, size: int, hook: _Hook) -> None:
        if self._resuming_at(address):
            return
        extra = ("swbreak:;" if hook.kind == 0 else "hwbreak:;") if self._swbreak else ""
        self._reason = self._stop_reply(SIGTRAP, extra)
        self._m().scheduler.stop_before(address)

    def _on_memory(self, uc: Uc, access: int, address: int, size: int, value: int, hook: _Hook) -> None:
        if address + size <= hook.addr or address >= hook.addr + hook.length:
            return
        pc = uc.reg_read(A.UC_ARM64_REG_PC)
        if self._resuming_at(pc) or self._reason:
            return
        name = {2: "watch", 3: "rwatch", 4: "awatch"}[hook.kind]
        self._reason = self._stop_reply(SIGTRAP, f"{name}:{max(address, hook.addr):x};")
        self._m().scheduler.stop_before(pc)

    # --- CPU state of a thread --------------------------------------------------------------
    def _thread_index(self, tid: int) -> int:
        """CPU index of a gdb thread id (0 or -1: any, meaning the one on the core)."""
        m = self._m()
        if tid <= 0:
            return m.current
        if tid > len(m.vcpus):
            raise _BadRequest()
        return tid - 1

    def _on_cpu(self, index: int, fn: Callable[[], Any], writes: bool = False) -> Any:
        """Run `fn` with CPU `index`'s registers on the core (CPU thread; stopped guest)."""
        m = self._m()
        if index == m.current:
            return fn()
        uc = m.uc
        saved = uc.context_save()
        context = m.scheduler.context_of(index)
        uc.context_restore(context)
        try:
            result = fn()
            if writes and m.vcpus[index].context is not None:
                uc.context_update(m.vcpus[index].context)
            return result
        finally:
            uc.context_restore(saved)

    def _read_regs(self, index: int, numbers: list[int]) -> bytes:
        m = self._m()

        def read() -> bytes:
            return b"".join(_le_hex(REGISTERS[n].read(m, index), REGISTERS[n].bits) for n in numbers)

        return self._on_cpu(index, read)

    def _write_regs(self, index: int, values: list[tuple[int, int]]) -> None:
        m = self._m()

        def write() -> None:
            for n, value in values:
                reg = REGISTERS[n]
                if reg.write is not None:
                    reg.write(m, index, value)

        self._on_cpu(index, write, writes=True)

    def _memory(self, index: int, addr: int, length: int, data: bytes | None = None) -> bytes:
        """Read (or write `data` to) guest virtual memory as CPU `index` sees it now."""
        m = self._m()

        def access() -> bytes:
            out = bytearray()
            va, left = addr, length
            while left > 0:
                chunk = min(left, 0x1000 - (va & 0xFFF))
                pa = translate(m.cpu, m.mem, va)
                if pa is None:
                    raise _BadRequest()
                if data is None:
                    out += m.mem.read(pa, chunk)
                else:
                    m.mem.write(pa, data[length - left:length - left + chunk])
                va, left = va + chunk, left - chunk
            return bytes(out)

        result = self._on_cpu(index, access)
        if data is not None:
            m.scheduler.drop_translations()   # gdb may have written code
        return result

    # --- packets ----------------------------------------------------------------------------
    def _dispatch(self, payload: bytes) -> bytes | object | None:
        try:
            return self._handle(payload)
        except (_BadRequest, ValueError, IndexError, ArmrasError, UcError):
            return b"E01"
        except (_Closed, FutureTimeout):
            return b"E02"

    def _handle(self, p: bytes) -> bytes | object | None:
        cmd = p[:1]
        if p.startswith(b"qSupported"):
            self._swbreak = b"swbreak+" in p
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;QStartNoAckMode+;"
                    "swbreak+;hwbreak+;vContSupported+").encode()
        if p == b"QStartNoAckMode":
            self._no_ack = True
            return b"OK"
        if p.startswith(b"qXfer:features:read:"):
            return self._xfer(p[len(b"qXfer:features:read:"):])
        if p == b"qAttached":
            return b"1"
        if p == b"qC":
            return b"QC%x" % (self._call(lambda: self._m().current) + 1)
        if p == b"qfThreadInfo":
            n = len(self._m().vcpus)
            return b"m" + b",".join(b"%x" % (i + 1) for i in range(n))
        if p == b"qsThreadInfo":
            return b"l"
        if p.startswith(b"qThreadExtraInfo,"):
            index = self._thread_index(int(p.split(b",", 1)[1], 16))
            return self._call(lambda: self._describe(index)).encode().hex().encode()
        if p == b"?":
            return self._call(self._query_stop)
        if cmd == b"H":
            tid = _thread_id(p[2:])
            self._call(lambda: self._thread_index(tid))     # validates
            if p[1:2] == b"g":
                self._thread_g = tid
            else:
                self._thread_c = tid
            return b"OK"
        if cmd == b"T":
            tid = _thread_id(p[1:])
            return b"OK" if 0 < tid <= len(self._m().vcpus) else b"E01"
        if p == b"g":
            return self._call(lambda: self._read_regs(self._thread_index(self._thread_g), list(range(len(REGISTERS)))))
        if cmd == b"G":
            values = _split_regs(bytes.fromhex(p[1:].decode()))
            self._call(lambda: self._write_regs(self._thread_index(self._thread_g), values))
            return b"OK"
        if cmd == b"p":
            n = int(p[1:], 16)
            if not 0 <= n < len(REGISTERS):
                return b"E01"
            return self._call(lambda: self._read_regs(self._thread_index(self._thread_g), [n]))
        if cmd == b"P":
            num, _, value = p[1:].partition(b"=")
            n = int(num, 16)
            if not 0 <= n < len(REGISTERS) or len(value) != REGISTERS[n].bits // 4:
                return b"E01"
            v = int.from_bytes(bytes.fromhex(value.decode()), "little")
            self._call(lambda: self._write_regs(self._thread_index(self._thread_g), [(n, v)]))
            return b"OK"
        if cmd == b"m":
            addr, length = _addr_len(p[1:])
            length = min(length, MAX_MEMORY_XFER)
            return self._call(lambda: self._memory(self._thread_index(self._thread_g), addr, length)).hex().encode()
        if cmd in (b"M", b"X"):
            head, sep, body = p[1:].partition(b":")
            if not sep:
                return b"E01"
            addr, length = _addr_len(head)
            data = bytes.fromhex(body.decode()) if cmd == b"M" else unescape(body)
            if len(data) != length:
                return b"E01"
            if length:
                self._call(lambda: self._memory(self._thread_index(self._thread_g), addr, length, data))
            return b"OK"
        if cmd in (b"Z", b"z"):
            return self._breakpoint(cmd == b"Z", p[1:])
        if cmd in (b"c", b"s", b"C", b"S"):
            # c/s [ADDR] resume at ADDR, C/S SIG[;ADDR] with a signal: gdb sends neither
            # argument to a vCont server; a signal number is accepted (and dropped).
            arg = p[1:]
            if cmd in (b"C", b"S"):
                int(arg, 16)              # a signal number, or ValueError -> E01
            elif arg:
                return b"E01"
            return self._go(cmd.lower() == b"s", self._thread_c)
        if p == b"vCont?":
            return b"vCont;c;C;s;S;r"
        if p.startswith(b"vCont;"):
            return self._vcont(p[len(b"vCont;"):])
        if cmd == b"D":
            return _DETACH
        if p == b"k" or p.startswith(b"vKill"):
            machine = self.machine
            if machine is not None:
                with contextlib.suppress(_Closed, FutureTimeout):
                    self._call(lambda: self._kill(machine))
            return _KILL
        return b""     # not supported: the empty reply

    def _kill(self, machine: Machine) -> None:
        machine.power_off(0, "killed by the debugger (gdb kill)")
        machine.resume()

    def _describe(self, index: int) -> str:
        v = self._m().vcpus[index]
        state = "off" if v.power is not Power.ON else ("in WFI" if v.waiting else "on")
        return f"CPU{index} MPIDR={v.mpidr:#x} {state}"

    def _query_stop(self) -> bytes:
        self._halt()
        return self._reason

    def _xfer(self, args: bytes) -> bytes:
        annex, _, span = args.partition(b":")
        if annex != b"target.xml":
            return b"E00"
        offset, length = _addr_len(span)
        xml = target_xml()
        chunk = xml[offset:offset + min(length, PACKET_SIZE // 2)]
        return (b"l" if offset + len(chunk) >= len(xml) else b"m") + escape(chunk)

    def _breakpoint(self, insert: bool, args: bytes) -> bytes:
        parts = args.split(b";", 1)[0].split(b",")
        if len(parts) != 3:
            return b"E01"
        kind, addr, length = int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
        if not 0 <= kind <= 4 or not 0 <= addr < 1 << 64 or not 0 < length <= 0x1000:
            return b"E01"
        key = (kind, addr, length)

        def change() -> None:
            if insert and key not in self._hooks:
                hook = _Hook(kind, addr, length)
                self._install(hook)
                self._hooks[key] = hook
            elif not insert and key in self._hooks:
                self._remove(self._hooks.pop(key))

        self._call(change)
        return b"OK"

    def _go(self, step: bool, thread: int, step_range: tuple[int, int] | None = None) -> None:
        while not self._stops.empty():          # a stop gdb has already heard of (Ctrl-C racing a hit)
            with contextlib.suppress(queue.Empty):
                self._stops.get_nowait()
        self._call(lambda: self._resume_cpu(step, thread, step_range))
        self._running = True
        return None

    def _vcont(self, actions: bytes) -> bytes | None:
        step_thread: int | None = None
        step_range: tuple[int, int] | None = None
        cont = False
        for action in actions.split(b";"):
            name, _, tid = action.partition(b":")
            if name[:1] == b"r":                # range stepping: rSTART,END (gdb/doc "vCont")
                step_range = _range(name[1:])
            if name[:1] in (b"s", b"S", b"r"):
                step_thread = _thread_id(tid) if tid else 0
            elif name[:1] in (b"c", b"C"):
                cont = True
            else:
                return b"E01"
        if step_thread is not None:
            return self._go(True, step_thread, step_range)
        if cont:
            return self._go(False, 0)
        return b"E01"


class _BadRequest(Exception):
    """A packet with bad arguments: the reply is E01."""


_DETACH = object()
_KILL = object()


def _le_hex(value: int, bits: int) -> bytes:
    return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little").hex().encode()


def _split_regs(data: bytes) -> list[tuple[int, int]]:
    values, pos = [], 0
    for n, reg in enumerate(REGISTERS):
        size = reg.bits // 8
        if pos + size > len(data):
            break
        values.append((n, int.from_bytes(data[pos:pos + size], "little")))
        pos += size
    if pos != len(data):
        raise _BadRequest()
    return values


def _addr_len(text: bytes) -> tuple[int, int]:
    addr, sep, length = text.partition(b",")
    if not sep:
        raise _BadRequest()
    a, n = int(addr, 16), int(length, 16)
    if not 0 <= a < 1 << 64 or n < 0 or a + n > 1 << 64:
        raise _BadRequest()
    return a, n


def _range(text: bytes) -> tuple[int, int]:
    """START,END of a range step: [START, END), both 64-bit addresses."""
    begin, sep, end = text.partition(b",")
    if not sep:
        raise _BadRequest()
    b, e = int(begin, 16), int(end, 16)
    if not 0 <= b < e <= 1 << 64:
        raise _BadRequest()
    return b, e


def _thread_id(text: bytes) -> int:
    """A thread id: hex, or -1 (all), or 0 (any)."""
    if text == b"-1":
        return -1
    tid = int(text, 16)
    if tid < 0:
        raise _BadRequest()
    return tid


@contextlib.contextmanager
def attach(session: RunSession, args: argparse.Namespace) -> Iterator[GdbServer | None]:
    """The gdb server of one `armras run`, serving every boot of it."""
    address = getattr(args, "gdb", None)
    wait = getattr(args, "gdb_wait", False)
    if address is None:
        if wait:
            raise ArmrasError("--gdb-wait needs --gdb: nothing else could let the guest run")
        yield None
        return
    server = GdbServer(GdbConfig(address[0], address[1], wait))
    server.open()
    session.every_boot.append(server.rebind)
    try:
        yield server
    except BaseException:
        server.finish(None)               # a crash, a limit, a reboot loop: gdb hears "killed"
        raise
    else:
        machine = session.machine
        server.finish(machine.exit_status if machine is not None else None)
    finally:
        server.close()


__all__ = ["GdbConfig", "GdbServer", "PacketParser", "REGISTERS", "add_run_options", "attach", "checksum",
           "escape", "frame", "parse_address", "target_xml", "unescape"]
