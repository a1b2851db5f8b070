"""The control socket of a running machine: JSON lines modelled on QMP.

`armras run ... --control PATH` listens on a Unix socket (mode 0600). On connect the
server sends a greeting line, then answers one request line with one reply line:

    -> {"execute": "inject-sea", "arguments": {"pa": "0x40fa6000"}, "id": 1}
    <- {"return": {"source_id": 0, ...}, "id": 1}
    <- {"error": {"class": "NotAcknowledged", "desc": "GHES source 0: ..."}, "id": 1}

Commands (arguments in braces, `?` optional; addresses are JSON numbers or strings:
"0x..." or a symbol of the guest ELF):

    inject-sea {pa, severity?, cpu?, source?}  memory-error CPER in the SEA source (0) + SEA on CPU `cpu`
    inject-gpio {cper (base64) | pa, severity?, source?}
                                                a CPER in the GPIO source (1) + GED interrupt
    inject-sdei {pa, severity?, cpu?, source?} memory-error CPER in the SDEI source (2) + its event
    inject-polled {pa, severity?, source?}     memory-error CPER in the polled source (3)
    inject-sei {pa, severity?, cpu?, source?}  memory-error CPER in an SEI source (HEST type 9) + an
                                                SError graded by the severity
    inject-arm-processor {mpidr | cpu, type, pa?, va?, severity?, source?}
    inject-serror {aet, cpu?}                   an SError with RAS syndrome `aet` (uc|ue|uer|ueo|ce),
                                                pending on CPU `cpu` until PSTATE.A allows it
    inject-aer {dev, status | cor?, uncor?, header?}  a native PCIe AER error at function dev ("01:00.0"),
                                                signalled to the root port (as --inject aer:...)
    inject-pcie {dev, status | cor?, uncor?, header?, severity?, source?}
                                                a firmware-first CPER PCIe error section (--inject pcie:...)
    poison {pa}                                 take the 4 KiB page away from the guest
    query-hest   query-ack   query-status       the error sources / their ack state / the run
    stop   cont   quit                          pause, resume, power off (exit status 0)
    qmp_capabilities                            accepted for QMP clients; does nothing

Error classes: GenericError (malformed request), CommandNotFound, InvalidParameter,
NotAcknowledged (the guest has not acked the previous record: nothing was written),
GuestAddressError, GuestFault, Timeout (the CPU did not reach a block boundary in time),
MachineExited.

Threading: one accept thread and one thread per client; the machine is only touched on
the CPU thread, between slices, through `Machine.defer`, whose result comes back through
a Future. The machine's `control` attribute is set while the socket is open, which keeps
a guest idling in WFI with nothing armed waiting for commands.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import errno
import json
import logging
import math
import os
import socket
import stat
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from armras import limits
from armras.errors import ArmrasError, GuestAddressError, NotAcknowledged
from armras.ras import cper, pcie_errors
from armras.ras.sources import Notify, notify_name
from armras.arch.cpu import SERROR_AETS
from armras.devices import pcie as pcie_dev
from armras.drive.inject import InjectSpec, parse_inject_spec, perform, perform_aer

if TYPE_CHECKING:
    from armras.board.machine import Machine
    from armras.drive.session import RunSession

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MAX_LINE = 1 << 20            # a base64 CPER of a whole 1 KiB block is ~1.4 KiB
LISTEN_BACKLOG = 128          # clients connecting at once (a CI job may start dozens)
SEVERITIES = {s.name.lower(): s for s in cper.Severity}


@dataclass(frozen=True)
class ControlConfig:
    path: Path
    reply_timeout: float = 10.0      # seconds to wait for the CPU thread to run a command


class CommandError(Exception):
    """A command failed: becomes an {"error": {"class", "desc"}} reply."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class = error_class
        self.desc = desc


# --- argument checking ----------------------------------------------------------------
class _Args:
    """A command's arguments, checked: unknown names and wrong types are refused."""

    def __init__(self, command: str, raw: dict[str, Any], allowed: tuple[str, ...]) -> None:
        extra = sorted(set(raw) - set(allowed))
        if extra:
            raise CommandError("InvalidParameter",
                               f"{command}: unexpected argument {extra[0]!r} (accepted: {', '.join(allowed) or 'none'})")
        self.command = command
        self.raw = raw

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def _missing(self, name: str) -> CommandError:
        return CommandError("InvalidParameter", f"{self.command}: missing argument {name!r}")

    def address(self, name: str) -> int | str | None:
        """An int, or a string to resolve on the CPU thread (number or guest symbol)."""
        value = self.raw.get(name)
        if value is None:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return self._bounded(name, value, limits.check_pa)
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise CommandError("InvalidParameter", f"{self.command}: {name} must be an address (number or string)")

    def integer(self, name: str, required: bool = False) -> int | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                raise self._missing(name)
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return self._bounded(name, value, limits.check_u64)
        if isinstance(value, str):
            try:
                number = int(value, 0)
            except ValueError:
                pass
            else:
                return self._bounded(name, number, limits.check_u64)
        raise CommandError("InvalidParameter", f"{self.command}: {name}={value!r} is not an integer")

    def _bounded(self, name: str, value: int, check: Callable[[int, str], int]) -> int:
        try:
            return check(value, name)
        except ArmrasError as e:
            raise CommandError("InvalidParameter", f"{self.command}: {e}") from None

    def severity(self) -> cper.Severity:
        value = self.raw.get("severity")
        if value is None:
            return cper.Severity.RECOVERABLE
        if isinstance(value, str) and value.lower() in SEVERITIES:
            return SEVERITIES[value.lower()]
        if isinstance(value, int) and not isinstance(value, bool) and value in {s.value for s in cper.Severity}:
            return cper.Severity(value)
        raise CommandError("InvalidParameter",
                           f"{self.command}: unknown severity {value!r} (expected {', '.join(SEVERITIES)})")


def _resolve(machine: Machine, value: int | str) -> int:
    return value if isinstance(value, int) else machine.resolve_address(value)


def _error_class(error: BaseException) -> str:
    if isinstance(error, NotAcknowledged):
        return "NotAcknowledged"
    if isinstance(error, GuestAddressError):
        return "GuestAddressError"
    if type(error).__name__ == "GuestFault":
        return "GuestFault"
    return "GenericError"


# --- the server -------------------------------------------------------------------------
class ControlServer:
    """A Unix-socket command server for one machine (see the module docstring)."""

    def __init__(self, machine: Machine | None, config: ControlConfig) -> None:
        self.machine: Machine = machine  # type: ignore[assignment]   # None until rebind() on a session
        self.config = config
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._futures: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "qmp_capabilities": lambda a: self._no_args("qmp_capabilities", a, {}),
            "inject-sea": self._inject_sea,
            "inject-gpio": self._inject_gpio,
            "inject-sdei": lambda a: self._inject_memory("sdei", a),
            "inject-polled": lambda a: self._inject_memory("polled", a),
            "inject-sei": lambda a: self._inject_memory("sei", a),
            "inject-arm-processor": self._inject_arm,
            "inject-serror": self._inject_serror,
            "inject-aer": lambda a: self._inject_pcie("aer", a),
            "inject-pcie": lambda a: self._inject_pcie("pcie", a),
            "poison": self._poison,
            "query-hest": self._query_hest,
            "query-ack": self._query_ack,
            "query-status": self._query_status,
            "stop": self._stop,
            "cont": self._cont,
            "quit": self._quit,
        }

    # --- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        path = self.config.path
        _remove_stale_socket(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)          # the socket file is created 0600
        try:
            listener.bind(str(path))
        except OSError as e:
            listener.close()
            raise ArmrasError(f"--control {path}: cannot create the socket: {e.strerror or e}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        listener.listen(LISTEN_BACKLOG)
        self._listener = listener
        self._inode = os.stat(path).st_ino
        if self.machine is not None:
            self.machine.control = self
        thread = threading.Thread(target=self._accept_loop, name="armras-control", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("control socket listening on %s", path)

    def rebind(self, machine: Machine) -> None:
        """Serve `machine` from now on (the next boot of a run session, after a warm reset).
        Commands still waiting for the previous board's CPU are answered MachineExited."""
        with self._lock:
            futures, self._futures = list(self._futures), set()
            old, self.machine = self.machine, machine
        for fut in futures:
            fut.cancel()
        if old is not None and old.control is self:
            old.control = None
        machine.control = self

    def close(self) -> None:
        """Stop serving: no new commands, waiting clients get an error, the file is removed."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self.machine is not None and self.machine.control is self:
            self.machine.control = None
        with self._lock:
            futures, self._futures = list(self._futures), set()
            clients = list(self._clients)
        for fut in futures:
            fut.cancel()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            with contextlib.suppress(OSError):
                if os.stat(self.config.path).st_ino == self._inode:
                    os.unlink(self.config.path)
        # Shut the read side only: a reply in flight (e.g. to `quit`) is still delivered.
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        for thread in self._threads:
            thread.join(timeout=1)

    def __enter__(self) -> ControlServer:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connections ---------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._clients.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="armras-control-client", daemon=True)
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rwb") as stream:
                self._send(stream, {"QMP": {"version": {"armras": VERSION}, "capabilities": [],
                                            "commands": sorted(self._commands)}})
                while not self._closed.is_set():
                    line = stream.readline(MAX_LINE + 1)
                    if not line:
                        return
                    if len(line) > MAX_LINE and not line.endswith(b"\n"):
                        self._send(stream, _error(None, "GenericError", f"request longer than {MAX_LINE} bytes"))
                        return
                    if not line.strip():
                        continue
                    self._send(stream, self.handle_line(line))
        except OSError as e:
            log.debug("control client went away: %s", e)
        finally:
            with self._lock:
                self._clients.discard(conn)

    @staticmethod
    def _send(stream: Any, message: dict[str, Any]) -> None:
        stream.write(_encode(message) + b"\n")
        stream.flush()

    # --- requests ---------------------------------------------------------------------------
    def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply (never raises)."""
        try:
            request = json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, UnicodeDecodeError) as e:
            return _error(None, "GenericError", f"JSON parse error: {e}")
        except RecursionError:
            return _error(None, "GenericError", "JSON parse error: the request is nested too deeply")
        if not isinstance(request, dict):
            return _error(None, "GenericError", "a request must be a JSON object with \"execute\"")
        req_id = request.get("id")
        command = request.get("execute")
        arguments = request.get("arguments", {})
        extra = sorted(set(request) - {"execute", "arguments", "id"})
        if not isinstance(command, str):
            return _error(req_id, "GenericError", "the request has no \"execute\" string")
        if extra:
            return _error(req_id, "GenericError", f"unexpected request member {extra[0]!r}")
        if not isinstance(arguments, dict):
            return _error(req_id, "GenericError", "\"arguments\" must be a JSON object")
        handler = self._commands.get(command)
        if handler is None:
            return _error(req_id, "CommandNotFound", f"the command {command} has not been found")
        try:
            return {"return": handler(arguments), "id": req_id}
        except CommandError as e:
            return _error(req_id, e.error_class, e.desc)
        except ArmrasError as e:
            return _error(req_id, _error_class(e), str(e).splitlines()[0])
        except Exception as e:   # a bug must not take the server down with it
            log.exception("control command %s failed", command)
            return _error(req_id, "GenericError", f"internal error: {type(e).__name__}: {e}")

    def on_cpu(self, fn: Callable[[], Any], description: str) -> Any:
        """Run `fn` on the CPU thread between slices and return its result."""
        if self.machine is None or self.machine.exit_status is not None or self._closed.is_set():
            raise CommandError("MachineExited", "the machine has powered off")
        fut: Future[Any] = Future()
        with self._lock:
            self._futures.add(fut)

        def action() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except Exception as e:
                fut.set_exception(e)

        self.machine.defer(action, f"control: {description}")
        try:
            return fut.result(self.config.reply_timeout)
        except FutureTimeout:
            fut.cancel()
            raise CommandError("Timeout", f"{description}: the CPU did not stop within "
                                          f"{self.config.reply_timeout:g} s") from None
        except CancelledError:
            raise CommandError("MachineExited", f"{description}: the machine stopped before running it") from None
        except ArmrasError as e:
            raise CommandError(_error_class(e), str(e).splitlines()[0]) from None
        finally:
            with self._lock:
                self._futures.discard(fut)

    def _no_args(self, command: str, raw: dict[str, Any], value: Any) -> Any:
        _Args(command, raw, ())
        return value

    # --- commands -----------------------------------------------------------------------------
    def _inject(self, spec: InjectSpec, extra: dict[str, Any]) -> dict[str, Any]:
        m = self.machine

        def act() -> dict[str, Any]:
            source = perform(m, spec)
            assert source is not None          # every control inject kind goes to a HEST source
            return {"source_id": source.source_id, **extra, "severity": spec.severity.name.lower(),
                    "records_written": source.records_written}

        return self.on_cpu(act, spec.describe())

    def _inject_sea(self, raw: dict[str, Any]) -> dict[str, Any]:
        return self._inject_memory("sea", raw)

    def _inject_memory(self, kind: str, raw: dict[str, Any]) -> dict[str, Any]:
        """inject-sea / inject-sdei / inject-polled / inject-sei: a memory error at pa, notified as the kind says."""
        takes_cpu = kind != "polled"
        args = _Args(f"inject-{kind}", raw, ("pa", "severity", "source") + (("cpu",) if takes_cpu else ()))
        pa = args.address("pa")
        if pa is None:
            raise args._missing("pa")
        cpu = self._cpu(args)
        spec = InjectSpec(kind, pa=_text(pa), severity=args.severity(), cpu=cpu, source=self._source(args))
        return self._inject(spec, {"pa": pa, **({"cpu": cpu} if takes_cpu else {})})

    @staticmethod
    def _source(args: _Args) -> int | None:
        source = args.integer("source")
        if source is not None:
            try:
                limits.check_source_id(source)
            except ArmrasError as e:
                raise CommandError("InvalidParameter", f"{args.command}: {e}") from None
        return source

    @staticmethod
    def _cpu(args: _Args) -> int | None:
        cpu = args.integer("cpu")
        if cpu is not None:
            try:
                limits.check_cpu_index(cpu)
            except ArmrasError as e:
                raise CommandError("InvalidParameter", f"{args.command}: {e}") from None
        return cpu

    def _inject_gpio(self, raw: dict[str, Any]) -> dict[str, Any]:
        args = _Args("inject-gpio", raw, ("cper", "pa", "severity", "source"))
        if args.has("cper") == args.has("pa"):
            raise CommandError("InvalidParameter", "inject-gpio: give exactly one of 'cper' (base64) and 'pa'")
        if args.has("pa"):
            pa = args.address("pa")
            assert pa is not None
            return self._inject(InjectSpec("gpio", pa=_text(pa), severity=args.severity(), source=self._source(args)),
                                {"pa": pa})
        if args.has("severity"):
            raise CommandError("InvalidParameter", "inject-gpio: 'severity' goes with 'pa'; a CPER carries its own")
        record = _decode_cper(raw["cper"])
        source_id = self._source(args)
        m = self.machine

        def act() -> dict[str, Any]:
            m.events.emit("inject", kind="gpio", cper_bytes=len(record),
                          **({"source": source_id} if source_id is not None else {}))
            source = m.report(record, notify=Notify.GPIO, source_id=source_id)
            return {"source_id": source.source_id, "record_bytes": len(record),
                    "records_written": source.records_written}

        return self.on_cpu(act, f"inject-gpio with a {len(record)}-byte CPER")

    def _inject_pcie(self, kind: str, raw: dict[str, Any]) -> dict[str, Any]:
        """inject-aer / inject-pcie: the arguments are the keys of `--inject aer:` / `pcie:` (one grammar)."""
        keys = ("dev", "status", "cor", "uncor", "header") + (("severity", "source") if kind == "pcie" else ())
        command = f"inject-{kind}"
        _Args(command, raw, keys)
        parts = []
        for key in keys:
            value = raw.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)) or (
                    isinstance(value, str) and (not value.strip() or any(c in value for c in ",="))):
                raise CommandError("InvalidParameter", f"{command}: {key} must be a number or a plain string")
            parts.append(f"{key}={value}")
        try:
            spec = parse_inject_spec(f"{kind}:" + ",".join(parts))
        except ArmrasError as e:
            raise CommandError("InvalidParameter", f"{command}: {e}") from None
        m = self.machine

        def act() -> dict[str, Any]:
            if kind == "pcie":
                source = perform(m, spec)
                assert source is not None
                return {"source_id": source.source_id, "dev": spec.dev, "records_written": source.records_written}
            result = perform_aer(m, spec)
            fn = m.pcie.find(pcie_errors.parse_bdf(spec.dev))
            assert fn is not None
            rp = m.pcie.root_port_of(fn)
            return {"dev": spec.dev, "sent": [msg.value for msg in result.messages],
                    "not_sent": [msg.value for msg in result.unreported],
                    "root_error_status": rp.reg(pcie_dev.AER_CAP + pcie_dev.AER_ROOT_STATUS),
                    "error_source_id": rp.reg(pcie_dev.AER_CAP + pcie_dev.AER_ERROR_SOURCE)}

        return self.on_cpu(act, spec.describe())

    def _inject_arm(self, raw: dict[str, Any]) -> dict[str, Any]:
        args = _Args("inject-arm-processor", raw, ("mpidr", "cpu", "type", "pa", "va", "severity", "source"))
        cpu = self._cpu(args)
        mpidr = args.integer("mpidr", required=cpu is None)   # or that of `cpu`
        error_type = raw.get("type")
        if error_type is None:
            raise args._missing("type")
        if not isinstance(error_type, (str, int)) or isinstance(error_type, bool):
            raise CommandError("InvalidParameter", "inject-arm-processor: type must be a name or an integer")
        try:
            cper.arm_error_type(error_type)
        except ArmrasError as e:
            raise CommandError("InvalidParameter", f"inject-arm-processor: {e}") from None
        pa = args.address("pa")
        va = args.integer("va")
        spec = InjectSpec("arm", pa=_text(pa) if pa is not None else None, severity=args.severity(),
                          mpidr=mpidr, error_type=error_type, va=va, cpu=cpu,  # type: ignore[arg-type]
                          source=self._source(args))
        return self._inject(spec, {"mpidr": mpidr, "cpu": cpu, "type": error_type, "pa": pa, "va": va})

    def _inject_serror(self, raw: dict[str, Any]) -> dict[str, Any]:
        args = _Args("inject-serror", raw, ("aet", "cpu"))
        aet = raw.get("aet")
        if aet is None:
            raise args._missing("aet")
        if not isinstance(aet, str) or aet.lower() not in SERROR_AETS:
            raise CommandError("InvalidParameter",
                               f"inject-serror: unknown aet {aet!r} (expected {' | '.join(SERROR_AETS)})")
        spec = InjectSpec("serror", aet=aet.lower(), cpu=self._cpu(args))
        m = self.machine

        def act() -> dict[str, Any]:
            m.events.emit("inject", kind="serror", aet=spec.aet, **({"cpu": spec.cpu} if spec.cpu is not None else {}))
            target, merged = m.inject_serror(SERROR_AETS[spec.aet], cpu=spec.cpu)
            assert target.serror is not None
            return {"cpu": target.index, "aet": spec.aet, "esr": target.serror, "merged": merged}

        return self.on_cpu(act, spec.describe())

    def _poison(self, raw: dict[str, Any]) -> dict[str, Any]:
        args = _Args("poison", raw, ("pa",))
        pa_arg = args.address("pa")
        if pa_arg is None:
            raise args._missing("pa")
        m = self.machine

        def act() -> dict[str, Any]:
            pa = _resolve(m, pa_arg)
            m.poison(pa)
            return {"page": pa & ~0xFFF, "poisoned_pages": sorted(m.poisoned)}

        return self.on_cpu(act, f"poison pa={pa_arg}")

    def _query_hest(self, raw: dict[str, Any]) -> dict[str, Any]:
        _Args("query-hest", raw, ())
        m = self.machine

        def act() -> dict[str, Any]:
            sources = []
            for s in m.sources:
                entry: dict[str, Any] = {
                    "source_id": s.source_id, "notify": notify_name(s.notify_type), "notify_type": int(s.notify_type),
                    "ghes_version": s.spec.ghes_version,
                    "error_status_address_register": s.error_status_address,
                    "read_ack_register": s.read_ack_address if s.spec.ghes_version == 2 else None,
                    "error_status_block": None, "error_status_block_length": s.block_length,
                }
                if s.notify_type is Notify.SDEI:
                    entry.update(sdei_event=s.spec.event, sdei_priority=s.spec.priority.name.lower())
                elif s.notify_type is Notify.POLLED:
                    entry["poll_interval_ms"] = s.spec.poll_interval_ms
                try:
                    entry["error_status_block"] = s.block_address()
                except ArmrasError as e:
                    entry["error"] = str(e)
                sources.append(entry)
            hest = m.acpi.tables.get("HEST")
            return {"hest_address": hest[0] if hest else None, "hest_length": hest[1] if hest else None,
                    "rsdp_address": m.acpi.rsdp_address, "sources": sources}

        return self.on_cpu(act, "query-hest")

    def _query_ack(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        _Args("query-ack", raw, ())
        return self.on_cpu(self.machine.sources.ack_state, "query-ack")

    def _query_status(self, raw: dict[str, Any]) -> dict[str, Any]:
        _Args("query-status", raw, ())
        m = self.machine

        def act() -> dict[str, Any]:
            status = "shutdown" if m.exit_status is not None else "paused" if m.paused else "running"
            return {"status": status, "running": status == "running",
                    "guest_seconds": m.counter.guest_seconds(), "instructions": m.instructions,
                    "pc": m.cpu.pc, "exit_status": m.exit_status, "exit_reason": m.exit_reason or None,
                    "deterministic": m.config.deterministic, "current_cpu": m.current,
                    "cpus": [{"cpu": v.index, "mpidr": v.mpidr, "power": v.power.name.lower(),
                              "waiting": v.waiting, "seas_taken": v.seas_taken,
                              "serror_pending": v.serror, "serrors_taken": v.serrors_taken} for v in m.vcpus]}

        return self.on_cpu(act, "query-status")

    def _stop(self, raw: dict[str, Any]) -> dict[str, Any]:
        _Args("stop", raw, ())
        self.on_cpu(self.machine.pause, "stop")
        return {}

    def _cont(self, raw: dict[str, Any]) -> dict[str, Any]:
        _Args("cont", raw, ())
        self.on_cpu(self.machine.resume, "cont")
        return {}

    def _quit(self, raw: dict[str, Any]) -> dict[str, Any]:
        _Args("quit", raw, ())
        self.on_cpu(lambda: self.machine.power_off(0, "quit via control socket"), "quit")
        return {}


def _text(address: int | str) -> str:
    """An address as armras.drive.inject takes it: a number in hex, or a symbol."""
    return hex(address) if isinstance(address, int) else address


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} does not fit in a double")
    return value


def _encode(message: dict[str, Any]) -> bytes:
    """A reply as strict JSON; one that cannot be (an id nested too deeply) becomes an error reply."""
    try:
        return json.dumps(message, allow_nan=False).encode()
    except (ValueError, RecursionError) as e:
        return json.dumps(_error(None, "GenericError", f"the reply cannot be encoded: {type(e).__name__}")).encode()


def _error(req_id: Any, error_class: str, desc: str) -> dict[str, Any]:
    return {"error": {"class": error_class, "desc": desc}, "id": req_id}


def _decode_cper(value: Any) -> bytes:
    """A base64 Generic Error Status Block, checked as Linux checks it before use."""
    if not isinstance(value, str):
        raise CommandError("InvalidParameter", "inject-gpio: cper must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CommandError("InvalidParameter", f"inject-gpio: cper is not valid base64: {e}") from None
    try:
        status = cper.parse_generic_error_status(data)
    except ArmrasError as e:
        raise CommandError("InvalidParameter", f"inject-gpio: invalid CPER: {e}") from None
    return data[:status.length]


def _remove_stale_socket(path: Path) -> None:
    """Refuse a path that is in use or not a socket; remove a socket nobody listens on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ArmrasError(f"--control {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ArmrasError(f"--control {path}: the path exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        log.info("removing stale control socket %s", path)
        os.unlink(path)
        return
    except OSError as e:
        if e.errno != errno.ECONNREFUSED:
            raise ArmrasError(f"--control {path}: cannot check the existing socket: {e.strerror}") from None
    finally:
        probe.close()
    raise ArmrasError(f"--control {path}: another process is listening on this socket")


# --- `armras run` integration ---------------------------------------------------------------
def add_run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--control", type=Path, default=None, metavar="PATH",
                     help="accept commands (JSON lines, QMP-like) on a Unix socket; see `armras inject`")
    run.add_argument("--pause-on", action="append", default=[], metavar="REGEX",
                     help="pause the guest (as the control command `stop`) when a console line matches; "
                          "resume with `armras inject ... cont`")


@contextlib.contextmanager
def attach(session: RunSession, args: argparse.Namespace) -> Iterator[ControlServer | None]:
    """The control socket and --pause-on triggers of one `armras run`, on every boot of it."""
    path = getattr(args, "control", None)
    patterns = getattr(args, "pause_on", None) or []
    if patterns and path is None:
        raise ArmrasError("--pause-on needs --control: nothing else could resume the guest")
    server: ControlServer | None = None

    def each_boot(machine: Machine) -> None:
        for pattern in patterns:
            machine.on_console(pattern, lambda _m: machine.pause(), f"pause (--pause-on {pattern!r})")
        if server is not None:
            server.rebind(machine)

    session.every_boot.append(each_boot)
    if path is None:
        yield None
        return
    server = ControlServer(None, ControlConfig(Path(path)))
    server.open()
    try:
        yield server
    finally:
        server.close()
