"""The Python API: boot a guest, talk to it while it runs, check what it printed.

    import armras

    with armras.boot(kernel="debian:6.1", initrd="guest_images/build/linux/initramfs.cpio",
                     append="console=ttyAMA0 seatest") as vm:
        paddr = int(vm.wait_for(r"PADDR=(0x[0-9a-f]+)").group(1), 16)
        vm.poison(paddr)
        vm.expect(r"recovery action for dirty LRU page: Recovered")
        assert vm.wait_exit() == 0

The guest runs on a background thread, on the same run session as `armras run` and
`armras regress` (armras.drive.session: warm resets boot it again), and only while the
caller waits for it: `boot()` returns with the guest stopped before its first
instruction; `wait_for`, `expect` and `wait_exit` let it run and stop it again at the
first translation-block boundary after the matching console line (as `--pause-on`
does), so what the caller does next (`poison`, `inject`, reading `guest_time`) happens
at that point of the guest, not at some later one. While stopped, the guest's virtual
time is frozen. Everything that touches the board runs on its thread between slices
(Machine.defer), as control-socket commands do.

Timeouts of `wait_for`/`expect`/`wait_exit` are host (wall-clock) seconds. Console
patterns are Python regexes searched in each console line (as `on=` triggers), from
the end of the previous match on. Every failure is an ArmrasError subclass with one line.
"""
from __future__ import annotations

import collections
import itertools
import logging
import re
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from armras.errors import ArmrasError
from armras.events import KEEP_IN_MEMORY, EventLog

if TYPE_CHECKING:
    from armras.board.machine import Machine, RunResult
    from armras.drive.session import RunSession

log = logging.getLogger(__name__)

DEFAULT_WAIT = 120.0           # host seconds a wait_for/expect/wait_exit waits by default
CALL_TIMEOUT = 30.0            # host seconds for the board's thread to run one request
MAX_CONSOLE = 32 << 20         # console bytes vm.console keeps (the oldest go first)
MAX_LINES = 200_000            # console lines kept for matching
T = TypeVar("T")


class WaitTimeout(ArmrasError):
    """The guest did not print what a wait asked for within its timeout."""


class ExpectationFailed(ArmrasError):
    """vm.expect / vm.expect_not: the console did not say what the test expected."""


class GuestExited(ArmrasError):
    """The guest powered off (or the run ended) before what was asked could happen."""


@dataclass(frozen=True)
class AckState:
    """A GHES source's handshake state, read from guest memory (armras.ras.ghes)."""

    source_id: int
    notify: str
    read_ack: int | None           # the Read Ack register (v1: 1 once Block Status is cleared)
    acknowledged: bool | None      # the guest has consumed the last record: a new one may be written
    block_status: int | None       # Block Status of the error status block (0: empty)
    records_written: int


@dataclass
class _Waiter:
    regex: re.Pattern[str]
    match: re.Match[str] | None = None
    stopped: bool = False


class _ConsoleSink:
    """The stream the board's console writes to: kept in memory (bounded), copied to a file."""

    def __init__(self, copy: Any | None) -> None:
        self._copy = copy
        self._data = bytearray()
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self._lock:
            self._data += data
            if len(self._data) > MAX_CONSOLE:
                cut = len(self._data) - MAX_CONSOLE // 2
                del self._data[:cut]
                self.dropped += cut
        if self._copy is not None:
            self._copy.write(data)
        return len(data)

    def flush(self) -> None:
        if self._copy is not None:
            self._copy.flush()

    def text(self) -> str:
        with self._lock:
            return self._data.decode("utf-8", "replace")


class VM:
    """A booted guest (see the module docstring). Use boot() to make one."""

    def __init__(self, session: RunSession, console: _ConsoleSink, events: EventLog,
                 files: list[Any]) -> None:
        self._session = session
        self._sink = console
        self._events = events
        self._files = files
        self._cond = threading.Condition()
        self._lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._line_base = 0            # absolute index of self._lines[0]
        self._cursor = 0               # absolute index of the first line the next wait searches
        self._waiter: _Waiter | None = None
        self._run_wanted = False       # a wait is letting the guest run (a new boot runs on too)
        self._machine: Machine | None = None
        self._futures: set[Future[Any]] = set()
        self._started = threading.Event()
        self._finished = False
        self._result: RunResult | None = None
        self._error: ArmrasError | None = None
        self._crash: BaseException | None = None
        self._closed = False
        session.every_boot.append(self._attach)
        self._thread = threading.Thread(target=self._run, name="armras-vm", daemon=True)

    # --- the board's thread ------------------------------------------------------------------
    def _start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._crash is not None:
            raise self._crash
        if self._error is not None and self._result is None and self._machine is None:
            raise self._error          # the board could not even be built (bad image, ...)

    def _run(self) -> None:
        try:
            self._result = self._session.run()
        except ArmrasError as e:
            self._error = e
        except BaseException as e:     # an armras bug: re-raised in the caller's thread
            log.debug("armras VM thread failed", exc_info=True)
            self._crash = e
        finally:
            with self._cond:
                self._finished = True
                futures, self._futures = list(self._futures), set()
                self._cond.notify_all()
            for fut in futures:
                fut.cancel()
            self._started.set()

    def _attach(self, machine: Machine) -> None:
        """Every boot (the first, and each after a warm reset): follow this board."""
        with self._cond:
            old, self._machine = self._machine, machine
            futures, self._futures = list(self._futures), set()
            running = self._run_wanted
        for fut in futures:          # requests queued on the previous board: asked again
            fut.cancel()
        machine.control = self       # a guest idling with nothing armed waits for us (see Machine._idle)
        machine.console.watch(self._line)
        if old is None or not running:
            machine.defer(self._stopped_at_start, "armras API: stop before the guest's first instruction")

    def _stopped_at_start(self) -> None:
        assert self._machine is not None
        self._machine.pause()
        self._started.set()

    def _line(self, line: str) -> None:
        """A console line (on the board's thread, inside the UART write)."""
        with self._cond:
            if len(self._lines) == self._lines.maxlen:
                self._line_base += 1
            self._lines.append(line)
            waiter = self._waiter
            if waiter is None or waiter.match is not None:
                return
            m = waiter.regex.search(line)
            if m is None:
                return
            waiter.match = m
            self._cursor = self._line_base + len(self._lines)
            machine = self._machine
        assert machine is not None

        def stop() -> None:
            machine.pause()
            with self._cond:
                self._run_wanted = False
                waiter.stopped = True
                self._cond.notify_all()

        machine.defer(stop, f"armras API: stop after the line matching {waiter.regex.pattern!r}")

    # --- requests to the board ------------------------------------------------------------
    def _call(self, fn: Callable[[Machine], T], what: str, *, after_exit: bool = True) -> T:
        """Run fn(machine) on the board's thread between slices; directly once the run is over."""
        for _attempt in range(3):
            with self._cond:
                machine = self._machine
                if self._finished or machine is None:
                    if not after_exit:
                        raise GuestExited(f"{what}: {self._ended()}")
                    if machine is None:
                        raise GuestExited(f"{what}: the guest never started ({self._ended()})")
                    return fn(machine)
                fut: Future[T] = Future()
                self._futures.add(fut)

            def action(fut: Future[T] = fut, machine: Machine = machine) -> None:
                if not fut.set_running_or_notify_cancel():
                    return
                try:
                    fut.set_result(fn(machine))
                except BaseException as e:
                    fut.set_exception(e)

            machine.defer(action, f"armras API: {what}")
            try:
                return fut.result(CALL_TIMEOUT)
            except CancelledError:
                continue                 # the run ended or the board was replaced: look again
            except FutureTimeout:
                fut.cancel()
                raise ArmrasError(f"{what}: the guest's CPU did not stop within {CALL_TIMEOUT:g} s") from None
            finally:
                with self._cond:
                    self._futures.discard(fut)
        raise GuestExited(f"{what}: {self._ended()}")

    def _ended(self) -> str:
        if self._crash is not None:
            return f"the run failed: {type(self._crash).__name__}: {self._crash}"
        if self._error is not None:
            return f"the run ended with an error (exit {self._error.exit_code}): {str(self._error).splitlines()[0]}"
        if self._result is not None:
            return f"the guest powered off with status {self._result.status} ({self._result.reason})"
        return "the guest is not running"

    def _check_crash(self) -> None:
        if self._crash is not None:
            raise self._crash

    # --- waiting for the console ---------------------------------------------------------
    def _search_kept(self, regex: re.Pattern[str]) -> re.Match[str] | None:
        """Search the lines already printed after the cursor (holding self._cond)."""
        start = max(self._cursor, self._line_base) - self._line_base
        for i, line in enumerate(itertools.islice(self._lines, start, None), start):
            m = regex.search(line)
            if m is not None:
                self._cursor = self._line_base + i + 1
                return m
        return None

    def _wait(self, pattern: str | re.Pattern[str], timeout: float | None, what: str,
              error: type[ArmrasError]) -> re.Match[str]:
        regex = _compile(pattern, what)
        timeout = _check_timeout(timeout, what)
        self._check_crash()
        with self._cond:
            m = self._search_kept(regex)
            if m is not None:
                return m
            if self._finished:
                raise (GuestExited if error is WaitTimeout else error)(
                    f"{what}: no console line matches {regex.pattern!r} and {self._ended()}")
            waiter = self._waiter = _Waiter(regex)
        deadline = time.monotonic() + timeout
        try:
            self._resume()
            with self._cond:
                while not (waiter.match is not None and (waiter.stopped or self._finished)):
                    remaining = deadline - time.monotonic()
                    if self._finished and waiter.match is None:
                        break
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 1.0))
        finally:
            with self._cond:
                self._waiter = None
        if waiter.match is not None:
            return waiter.match
        self._check_crash()
        if self._finished:
            raise (GuestExited if error is WaitTimeout else error)(
                f"{what}: no console line matched {regex.pattern!r} before {self._ended()}")
        self._pause()
        last = self.last_line()
        raise error(f"{what}: no console line matched {regex.pattern!r} within {timeout:g} s (host time)"
                    + (f"; the last line was {last!r}" if last else ""))

    def _resume(self) -> None:
        with self._cond:
            self._run_wanted = True
        try:
            self._call(lambda m: m.resume(), "resume", after_exit=False)
        except GuestExited:
            pass                      # the run is over: the wait sees that

    def _pause(self) -> None:
        with self._cond:
            self._run_wanted = False
        try:
            self._call(lambda m: m.pause(), "pause", after_exit=False)
        except GuestExited:
            pass

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float | None = DEFAULT_WAIT) -> re.Match[str]:
        """Run the guest until a console line matches `pattern`; returns the match. The guest
        is stopped right after that line. `timeout`: host seconds (WaitTimeout after it;
        GuestExited if the run ends first)."""
        return self._wait(pattern, timeout, "wait_for", WaitTimeout)

    def expect(self, pattern: str | re.Pattern[str], timeout: float | None = DEFAULT_WAIT) -> re.Match[str]:
        """As wait_for, for an assertion: ExpectationFailed if the line never comes (timeout or
        the end of the run)."""
        return self._wait(pattern, timeout, "expect", ExpectationFailed)

    def expect_not(self, pattern: str | re.Pattern[str]) -> None:
        """ExpectationFailed if any console line printed so far matches `pattern`."""
        regex = _compile(pattern, "expect_not")
        with self._cond:
            lines = list(self._lines)
        partial = self.console.rsplit("\n", 1)[-1]
        for line in lines + ([partial] if partial else []):
            if regex.search(line):
                raise ExpectationFailed(f"expect_not: the console line {line.strip()!r} matches {regex.pattern!r}")

    def wait_exit(self, timeout: float | None = DEFAULT_WAIT) -> int:
        """Run the guest until the run ends; its exit status, as `armras run` exits: the
        guest's power-off status, or 124/125/126/1 for an armras error (see `error`)."""
        timeout = _check_timeout(timeout, "wait_exit")
        self._check_crash()
        deadline = time.monotonic() + timeout
        self._resume()
        with self._cond:
            while not self._finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 1.0))
            finished = self._finished
        if not finished:
            self._pause()
            raise WaitTimeout(f"wait_exit: the guest did not power off within {timeout:g} s (host time)")
        self._thread.join()
        self._check_crash()
        status = self.exit_status
        assert status is not None
        return status

    # --- acting on the board ---------------------------------------------------------------
    def inject(self, spec: str) -> int | None:
        """An injection in `armras run --inject` syntax (armras.drive.inject), e.g.
        "sea:pa=0x40fa6000" or "serror:aet=uc": performed now, or scheduled when it has
        at=/insn=/on=. Returns the id of the error source written (None for serror/bert
        and for scheduled injections)."""
        from armras.drive.inject import parse_inject_spec, perform, schedule

        parsed = parse_inject_spec(spec)

        def act(machine: Machine) -> int | None:
            if parsed.on is not None or parsed.at is not None or parsed.insn is not None:
                schedule(machine, parsed)
                return None
            source = perform(machine, parsed)
            return None if source is None else source.source_id

        return self._call(act, f"inject {spec!r}", after_exit=False)

    def poison(self, pa: int | str) -> int:
        """Take the 4 KiB page holding `pa` (an address, or a symbol of the guest ELF) away from
        the guest: its next access takes an SEA with a memory-error CPER. Returns the page."""
        if isinstance(pa, bool) or not isinstance(pa, (int, str)):
            raise ArmrasError(f"poison: {pa!r} is not an address")

        def act(machine: Machine) -> int:
            address = machine.resolve_address(pa) if isinstance(pa, str) else pa
            machine.poison(address)
            return address & ~0xFFF

        return self._call(act, f"poison {pa!r}", after_exit=False)

    def ack_state(self, source_id: int) -> AckState:
        """The read-ack state of HEST error source `source_id` (also after the guest powered off)."""
        def act(machine: Machine) -> AckState:
            machine.sources.by_id(source_id)      # one clear line for an unknown id
            entry = next(e for e in machine.sources.ack_state() if e["source_id"] == source_id)
            if "error" in entry:
                raise ArmrasError(entry["error"])
            return AckState(entry["source_id"], entry["notify"], entry["read_ack"], entry["acknowledged"],
                            entry["block_status"], entry["records_written"])

        return self._call(act, f"ack_state({source_id})")

    # --- what the caller reads --------------------------------------------------------------
    @property
    def console(self) -> str:
        """Everything the guest printed so far (the last 16-32 MiB of a longer console)."""
        return self._sink.text()

    def last_line(self) -> str:
        with self._cond:
            return self._lines[-1] if self._lines else ""

    @property
    def guest_time(self) -> float:
        """Seconds of guest (virtual counter) time since this boot started."""
        return self._call(lambda m: m.counter.guest_seconds(), "guest_time")

    @property
    def instructions(self) -> int:
        """Guest instructions executed in this boot."""
        return self._call(lambda m: m.instructions, "instructions")

    @property
    def boots(self) -> int:
        """Boots so far: 1, plus one per warm reset."""
        return self._session.boots + 1

    @property
    def events(self) -> list[dict[str, Any]]:
        """The run's event records so far (armras.events; the last 10,000)."""
        return list(self._events.records)

    @property
    def running(self) -> bool:
        return not self._finished

    @property
    def exit_status(self) -> int | None:
        """None while the run goes on; then as wait_exit returns it."""
        if not self._finished:
            return None
        if self._result is not None:
            return self._result.status
        if self._error is not None:
            return self._error.exit_code
        return None

    @property
    def error(self) -> ArmrasError | None:
        """The armras error that ended the run (a timeout, a guest crash, a refused injection...)."""
        return self._error if self._finished else None

    # --- the end ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Power the guest off if it still runs, wait for its thread, close the files."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                self._call(lambda m: m.power_off(0, "closed by the armras Python API"), "close", after_exit=False)
            except ArmrasError:
                pass
            self._thread.join(CALL_TIMEOUT)
            if self._thread.is_alive():
                log.warning("armras VM thread did not end within %g s", CALL_TIMEOUT)
        self._events.close()
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _compile(pattern: str | re.Pattern[str], what: str) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    if not isinstance(pattern, str) or not pattern:
        raise ArmrasError(f"{what}: the pattern must be a non-empty regex string")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ArmrasError(f"{what}: bad regex {pattern!r}: {e}") from None


def _check_timeout(timeout: float | None, what: str) -> float:
    if timeout is None:
        return float("inf")
    from armras import limits

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArmrasError(f"{what}: timeout must be a number of seconds, not {timeout!r}")
    return limits.check_timeout(float(timeout), f"{what}: timeout")


def boot(image: str | Path | None = None, *, kernel: str | Path | None = None, initrd: str | Path | None = None,
         append: str = "", memory: int | str | None = None, smp: int = 1, deterministic: bool = False,
         hest: str | Path | None = None, timeout: float | None = None, max_insns: int | None = None,
         max_reboots: int | None = None, keep_poison: bool = False, console: str | Path | None = None,
         events: str | Path | None = None) -> VM:
    """Boot a guest and return it stopped before its first instruction (see the module docstring).

    image: a bare-metal ELF; or kernel (a path, "debian:6.1", "debian:6.12") with initrd and
    append. memory: bytes or "512M"; smp: CPUs (1-8); hest: a [[hest.source]] TOML file;
    timeout (host seconds, counting stopped time too) and max_insns: limits for the whole
    run, as `armras run`'s; console/events: also write the console / the event log
    (JSON lines) to these files.
    """
    from armras import limits
    from armras.board.machine import MachineConfig
    from armras.board.memmap import DEFAULT_RAM_SIZE
    from armras.drive.phases import BootPhases
    from armras.drive.session import DEFAULT_MAX_REBOOTS, Guest, RunSession, check_max_reboots
    from armras.paths import refuse_overwriting_inputs

    if (image is None) == (kernel is None):
        raise ArmrasError("boot: give either a bare-metal image or kernel= (with initrd=/append=)")
    if kernel is None and (initrd is not None or append):
        raise ArmrasError("boot: initrd= and append= need kernel=")
    if not isinstance(append, str):
        raise ArmrasError("boot: append= must be a string")
    kernel_path: Path | None = None
    if kernel is not None:
        from armras.guests.linux import resolve_kernel

        kernel_path = resolve_kernel(str(kernel))
    if isinstance(memory, str):
        ram_size = limits.parse_ram_size(memory)
    elif memory is None:
        ram_size = DEFAULT_RAM_SIZE
    else:
        ram_size = limits.check_ram_size(memory, str(memory))
    extra: dict[str, Any] = {}
    if hest is not None:
        from armras.drive.hestfile import load_hest_file

        extra["hest"] = load_hest_file(Path(hest))
    inputs = [(what, Path(p)) for what, p in (("guest image", image), ("kernel", kernel_path), ("initrd", initrd))
              if p is not None]
    outputs = [(what, Path(p)) for what, p in (("console=", console), ("events=", events)) if p is not None]
    refuse_overwriting_inputs(outputs, inputs)
    if console is not None and events is not None:
        refuse_overwriting_inputs([("events=", Path(events))], [("console file", Path(console))])
    config = MachineConfig(
        ram_size=ram_size,
        timeout=None if timeout is None else limits.check_timeout(timeout),
        max_insns=None if max_insns is None else limits.check_count(max_insns, "max_insns"),
        deterministic=bool(deterministic), cpus=limits.check_cpus(smp, "smp"), **extra)
    files: list[Any] = []
    try:
        copy = None
        if console is not None:
            try:
                copy = open(console, "wb")
            except OSError as e:
                raise ArmrasError(f"cannot write console file {console}: {e.strerror}") from None
            files.append(copy)
        event_log = EventLog.open(Path(events), keep=KEEP_IN_MEMORY) if events is not None \
            else EventLog(keep=KEEP_IN_MEMORY)
    except BaseException:
        for f in files:
            f.close()
        raise
    sink = _ConsoleSink(copy)
    config.console = sink  # type: ignore[assignment]
    config.events = event_log
    guest = Guest(Path(image) if image is not None else None, kernel_path,
                  Path(initrd) if initrd is not None else None, append)
    session = RunSession(config, guest,
                         max_reboots=DEFAULT_MAX_REBOOTS if max_reboots is None else check_max_reboots(max_reboots),
                         keep_poison=bool(keep_poison), every_boot=[BootPhases().attach])
    vm = VM(session, sink, event_log, files)
    try:
        vm._start()
    except BaseException:
        vm.close()
        raise
    return vm


__all__ = ["AckState", "ExpectationFailed", "GuestExited", "VM", "WaitTimeout", "boot"]
