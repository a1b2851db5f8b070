"""`armras regress`: run declarative TOML scenarios and report like a test suite.

A scenario file::

    name = "ref-sea-ack"                 # optional (default: the file name without .toml)
    image = "../guest_images/build/ras_ref.elf"   # bare-metal ELF, relative to this file
    # or Linux: kernel = "debian:6.1" | "path/to/Image", initrd = "...", append = "..."
    memory = "512M"                      # optional: 16M-16G, a multiple of 2M
    timeout = 30                         # wall-clock seconds (default 60, at most 1e6): exit 124 after
    deterministic = true                 # optional: instruction-driven guest time
    smp = 4                              # optional: number of CPUs (1-8, default 1)
    max_reboots = 1                      # optional: warm resets that boot the guest again (default 3)
    keep_poison = false                  # optional: poisoned pages survive a warm reset
    erst = "pstore.erst"                 # optional: the ERST's store file, relative to this file
                                         # (created if absent; default: in memory for the run)
    efivars = "vars.json"                # optional: the UEFI variable store's file, the same way
    [[hest.source]]                      # optional: the error sources (armras.drive.hestfile)
    id = 0
    notify = "sea"

    [[step]]
    wait = "^READY"                      # wait for a console line (regex)
    [[step]]
    inject = "sea:pa=0x40fa6000"         # --inject syntax; applied when the step is reached
    [[step]]
    poison = "$1"                        # an address, a guest symbol, or a group of the last wait
    [[step]]
    expect = "ACK source=0 read_ack=0x1" # must appear, after the previous expect's match
    [[step]]
    expect_not = "UNEXPECTED"            # must not appear anywhere in the log
    [[step]]
    exit = 0                             # expected exit status (default 0)

`wait`, `inject` and `poison` steps run in order while the guest runs: actions after a
`wait` happen at the next block boundary after the matching line, as `on=` triggers do
(`$1`/`$name` in an inject's pa= or a poison take a group of that line's match; an
inject with its own at=/insn=/on= trigger is scheduled). `expect`, `expect_not` and
`exit` are checked against the finished run. The log is the guest console followed by
any armras error, exactly as `armras run` would print it (`armras: error: ...`), so a
refused injection can be expected; exit statuses are those of `armras run`. Regexes
are Python `re` with MULTILINE (`^`/`$` match at console line boundaries).

Each scenario's console log (`--log-dir`/NAME.log) has its event log next to it
(NAME.events.jsonl, armras.events), and its JUnit test case names both.

Each scenario runs in its own `python -m armras.drive.regress --worker` process (in-process
Machine API there), so `--jobs N` runs N at once and a crash fails one scenario only.
Linux scenarios are skipped ("Linux boot not available") unless armras.guests.linux exists and
the kernel is cached (`armras fetch-kernel 6.1`).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from armras import limits
from armras.drive.hestfile import sources_from_document
from armras.drive.session import DEFAULT_MAX_REBOOTS, check_max_reboots
from armras.errors import ArmrasError
from armras.paths import refuse_overwriting_inputs, same_file
from armras.ras.sources import SourceSpec

if TYPE_CHECKING:
    from armras.board.machine import Machine

log = logging.getLogger(__name__)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STEP_KINDS = ("wait", "inject", "poison", "expect", "expect_not", "exit")
TOP_KEYS = ("name", "description", "image", "kernel", "initrd", "append", "memory", "timeout",
            "deterministic", "smp", "hest", "max_reboots", "keep_poison", "erst", "efivars", "step")
DEFAULT_TIMEOUT = 60.0
WORKER_GRACE = 60.0            # extra seconds a worker gets beyond the scenario's timeout
_GROUP_REF = re.compile(r"\$(\w+)")


@dataclass(frozen=True)
class Step:
    index: int                 # 1-based, as the user counts [[step]] tables
    kind: str
    value: Any

    def describe(self) -> str:
        return f"step {self.index} ({self.kind} = {self.value!r})"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    image: Path | None = None
    kernel: str | None = None
    initrd: Path | None = None
    append: str = ""
    memory: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    deterministic: bool = False
    smp: int = 1
    hest: tuple[SourceSpec, ...] | None = None
    max_reboots: int = DEFAULT_MAX_REBOOTS
    keep_poison: bool = False
    erst: Path | None = None
    efivars: Path | None = None
    steps: tuple[Step, ...] = ()

    @property
    def expected_exit(self) -> int:
        exits = [s.value for s in self.steps if s.kind == "exit"]
        return exits[-1] if exits else 0


@dataclass
class Outcome:
    outcome: str               # "pass" | "fail" | "skip"
    reason: str = ""
    status: int | None = None
    guest_seconds: float | None = None
    seconds: float = 0.0
    log: Path | None = None
    events: Path | None = None     # the run's event log (JSON lines, armras.events), next to `log`


@dataclass(frozen=True)
class RegressConfig:
    scenarios: tuple[Path, ...]
    junit: Path | None = None
    jobs: int = 1
    log_dir: Path = Path("regress-logs")


# --- loading ----------------------------------------------------------------------------------
def _compile(where: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ArmrasError(f"{where}: expected a non-empty regex string")
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise ArmrasError(f"{where}: bad regex {pattern!r}: {e}") from None


def _check_step(where: str, kind: str, value: Any, seen_wait: bool) -> Any:
    from armras.drive.inject import parse_inject_spec

    if kind in ("wait", "expect", "expect_not"):
        _compile(where, value)
        return value
    if kind == "exit":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise ArmrasError(f"{where}: exit must be an integer 0-255")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ArmrasError(f"{where}: {kind} must be a non-empty string")
    own_trigger = kind == "inject" and "on=" in value
    if _GROUP_REF.search(value) and not own_trigger and not seen_wait:
        raise ArmrasError(f"{where}: {value!r} refers to a match group but no wait step comes before it")
    if kind == "inject":
        try:
            parse_inject_spec(value if own_trigger else _GROUP_REF.sub("0x40000000", value))
        except ArmrasError as e:
            raise ArmrasError(f"{where}: {e}") from None
    return value


def load_scenario(path: Path) -> Scenario:
    """Parse and check a scenario file (ArmrasError naming the file on any problem)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ArmrasError(f"cannot read scenario {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:   # TOMLDecodeError, or an integer of > 4300 digits
        raise ArmrasError(f"{path}: not valid TOML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ArmrasError(f"{path}: unknown key {unknown[0]!r} (expected {', '.join(TOP_KEYS)})")
    if ("image" in data) == ("kernel" in data):
        raise ArmrasError(f"{path}: give exactly one of image (bare-metal ELF) and kernel (Linux)")
    for key in ("initrd", "append"):
        if key in data and "kernel" not in data:
            raise ArmrasError(f"{path}: {key} needs kernel")
    for key in ("name", "description", "image", "kernel", "initrd", "append", "erst", "efivars"):
        if key in data and not isinstance(data[key], str):
            raise ArmrasError(f"{path}: {key} must be a string")
    base = path.parent
    fields: dict[str, Any] = {"name": data.get("name") or path.stem, "path": path}
    if "image" in data:
        fields["image"] = base / data["image"]
    if "kernel" in data:
        kernel = data["kernel"]
        fields["kernel"] = kernel if kernel.startswith("debian:") else str(base / kernel)
        if "initrd" in data:
            fields["initrd"] = base / data["initrd"]
        fields["append"] = data.get("append", "")
    if "memory" in data:
        memory = data["memory"]
        try:
            if isinstance(memory, int) and not isinstance(memory, bool):
                fields["memory"] = limits.check_ram_size(memory, str(memory))
            else:
                fields["memory"] = limits.parse_ram_size(str(memory))
        except ArmrasError as e:
            raise ArmrasError(f"{path}: memory: {e}") from None
    if "timeout" in data:
        timeout = data["timeout"]
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise ArmrasError(f"{path}: timeout must be a positive number of seconds")
        try:
            fields["timeout"] = limits.check_timeout(timeout)
        except ArmrasError as e:
            raise ArmrasError(f"{path}: {e}") from None
    if "smp" in data:
        fields["smp"] = limits.check_cpus(data["smp"], f"{path}: smp")
    if "hest" in data:
        fields["hest"] = sources_from_document(data, f"{path}: hest", allow_other_keys=True)
    if "max_reboots" in data:
        fields["max_reboots"] = check_max_reboots(data["max_reboots"], f"{path}: max_reboots")
    if "erst" in data:
        fields["erst"] = base / data["erst"]
    if "efivars" in data:
        fields["efivars"] = base / data["efivars"]
    if "keep_poison" in data:
        if not isinstance(data["keep_poison"], bool):
            raise ArmrasError(f"{path}: keep_poison must be true or false")
        fields["keep_poison"] = data["keep_poison"]
    if "deterministic" in data:
        if not isinstance(data["deterministic"], bool):
            raise ArmrasError(f"{path}: deterministic must be true or false")
        fields["deterministic"] = data["deterministic"]
    raw_steps = data.get("step", [])
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise ArmrasError(f"{path}: steps are [[step]] tables")
    steps = []
    seen_wait = False
    for i, raw in enumerate(raw_steps, 1):
        where = f"{path}: step {i}"
        keys = [k for k in raw if k in STEP_KINDS]
        other = sorted(set(raw) - set(STEP_KINDS))
        if other:
            raise ArmrasError(f"{where}: unknown key {other[0]!r} (expected one of {', '.join(STEP_KINDS)})")
        if len(keys) != 1:
            raise ArmrasError(f"{where}: give exactly one of {', '.join(STEP_KINDS)}")
        kind = keys[0]
        steps.append(Step(i, kind, _check_step(where, kind, raw[kind], seen_wait)))
        seen_wait = seen_wait or kind == "wait"
    fields["steps"] = tuple(steps)
    return Scenario(**fields)


# --- running one scenario (in the worker process) -------------------------------------------
class StepDriver:
    """Carries out wait/inject/poison steps in order while the guest runs."""

    def __init__(self, machine: Machine | None, steps: Sequence[Step]) -> None:
        self.machine: Machine = machine  # type: ignore[assignment]   # set by attach() on every boot
        self.steps = [s for s in steps if s.kind in ("wait", "inject", "poison")]
        self.cursor = 0
        self.match: re.Match[str] | None = None
        self._patterns = {s.index: re.compile(s.value) for s in self.steps if s.kind == "wait"}

    def start(self) -> None:
        self.machine.console.watch(self._line)
        self._advance()

    def attach(self, machine: Machine) -> None:
        """A (new) boot of the run session: steps go on where they were, on this board."""
        self.machine = machine
        self.start()

    def pending_wait(self) -> Step | None:
        return self.steps[self.cursor] if self.cursor < len(self.steps) else None

    def _line(self, line: str) -> None:
        step = self.pending_wait()
        if step is None or step.kind != "wait":
            return
        m = self._patterns[step.index].search(line)
        if m:
            self.match = m
            self.cursor += 1
            self._advance()

    def _advance(self) -> None:
        while self.cursor < len(self.steps) and self.steps[self.cursor].kind != "wait":
            step = self.steps[self.cursor]
            self.cursor += 1
            match = self.match
            self.machine.defer(lambda s=step, m=match: self._perform(s, m), f"scenario {step.describe()}")

    def _substitute(self, step: Step, text: str, match: re.Match[str] | None) -> str:
        def group(ref: re.Match[str]) -> str:
            name = ref.group(1)
            try:
                value = match.group(int(name) if name.isdigit() else name) if match else None
            except IndexError:
                raise ArmrasError(f"{step.describe()}: no group ${name} in the last wait's regex") from None
            if value is None:
                raise ArmrasError(f"{step.describe()}: group ${name} did not match anything")
            return value

        return _GROUP_REF.sub(group, text)

    def _perform(self, step: Step, match: re.Match[str] | None) -> None:
        from armras.drive.inject import parse_inject_spec, perform, schedule

        machine = self.machine
        if step.kind == "poison":
            machine.poison(machine.resolve_address(self._substitute(step, step.value, match)))
            return
        text = step.value if "on=" in step.value else self._substitute(step, step.value, match)
        spec = parse_inject_spec(text)
        if spec.on is not None or spec.at is not None or spec.insn is not None:
            schedule(machine, spec)
        else:
            perform(machine, spec)


def _linux_unavailable(scenario: Scenario) -> str | None:
    """Why a Linux scenario cannot run here, or None."""
    if importlib.util.find_spec("armras.guests.linux") is None:
        return "Linux boot not available"
    assert scenario.kernel is not None
    if scenario.kernel.startswith("debian:"):
        from armras.guests.kernels import cached_kernel

        series = scenario.kernel.split(":", 1)[1]
        if cached_kernel(series) is None:
            return f"kernel {scenario.kernel} is not cached (armras fetch-kernel {series})"
    return None


def check_log(scenario: Scenario, text: str, status: int | None, driver_wait: Step | None) -> list[str]:
    """Everything the finished run got wrong, expectation by expectation."""
    problems: list[str] = []
    if status != scenario.expected_exit:
        last = [line for line in text.splitlines() if line.startswith("armras: error:")]
        problems.append(f"exit status {status}, expected {scenario.expected_exit}"
                        + (f" ({last[-1]})" if last else ""))
    if driver_wait is not None:
        problems.append(f"{driver_wait.describe()}: no console line matched")
    pos = 0
    previous: Step | None = None
    for step in scenario.steps:
        if step.kind == "expect":
            m = re.compile(step.value, re.MULTILINE).search(text, pos)
            if m is None:
                where = f" after {previous.describe()}" if previous else ""
                found_earlier = previous is not None and re.search(step.value, text, re.MULTILINE)
                problems.append(f"{step.describe()} not found{where}"
                                + (" (it appears earlier: out of order)" if found_earlier else ""))
                continue
            pos, previous = m.end(), step
        elif step.kind == "expect_not":
            m = re.compile(step.value, re.MULTILINE).search(text)
            if m is not None:
                line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
                problems.append(f"{step.describe()} matched: {line.strip()!r}")
    return problems


def events_path_for(log_path: Path) -> Path:
    """Where a scenario's event log goes: next to its console log, `NAME.events.jsonl`."""
    return log_path.with_name(log_path.name.removesuffix(".log") + ".events.jsonl")


def run_scenario(scenario: Scenario, log_path: Path, events_path: Path | None = None) -> Outcome:
    """Run one scenario in this process, writing its console log (and event log); never raises."""
    from armras.board.machine import MachineConfig
    from armras.board.memmap import DEFAULT_RAM_SIZE
    from armras.drive.phases import BootPhases
    from armras.drive.session import Guest, RunSession
    from armras.events import EventLog

    if scenario.kernel is not None:
        why = _linux_unavailable(scenario)
        if why:
            return Outcome("skip", why)
    elif scenario.image is not None and not scenario.image.exists():
        return Outcome("fail", f"guest image {scenario.image} not found (make guests)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    status: int | None = None
    guest_seconds: float | None = None
    diagnostics = ""
    driver: StepDriver | None = None
    events: EventLog | None = None
    with open(log_path, "wb") as console:
        session = None
        try:
            if events_path is not None:
                events = EventLog.open(events_path)
            ram_size = DEFAULT_RAM_SIZE if scenario.memory is None else scenario.memory
            config = MachineConfig(ram_size=ram_size, console=console, timeout=scenario.timeout,
                                   deterministic=scenario.deterministic, cpus=scenario.smp, events=events,
                                   **({"hest": scenario.hest} if scenario.hest is not None else {}))
            if scenario.kernel is not None:
                from armras.guests.linux import resolve_kernel

                guest = Guest(kernel=resolve_kernel(scenario.kernel), initrd=scenario.initrd, append=scenario.append)
            else:
                guest = Guest(image=scenario.image)
            driver = StepDriver(None, scenario.steps)
            erst = None
            if scenario.erst is not None:
                from armras.ras.erst import ErstStore

                erst = ErstStore.open(scenario.erst)
            session = RunSession(config, guest, max_reboots=scenario.max_reboots, keep_poison=scenario.keep_poison,
                                 erst=erst, efivars=scenario.efivars, every_boot=[BootPhases().attach, driver.attach])
            result = session.run()
            status, guest_seconds = result.status, result.guest_seconds
        except ArmrasError as e:
            status = e.exit_code
            first, _, rest = str(e).partition("\n")
            diagnostics = f"armras: error: {first}\n" + (rest + "\n" if rest else "")
        except Exception as e:  # an armras bug: report it as this scenario's failure
            log.debug("scenario %s crashed", scenario.name, exc_info=True)
            return Outcome("fail", f"internal error: {type(e).__name__}: {e}", log=log_path)
        finally:
            if session is not None and session.machine is not None and guest_seconds is None:
                guest_seconds = session.machine.counter.guest_seconds()
            console.flush()
            if diagnostics:
                console.write(diagnostics.encode())
            if events is not None:
                events.close()
    # Line-oriented matching: a serial console's CRLF ends a line like LF does.
    text = log_path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
    wait = driver.pending_wait() if driver is not None else None
    problems = check_log(scenario, text, status, wait if wait is not None and wait.kind == "wait" else None)
    return Outcome("fail" if problems else "pass", "; ".join(problems), status, guest_seconds, log=log_path,
                   events=events_path if events is not None else None)


# --- the parent: workers, progress, summary, JUnit -------------------------------------------
def _worker_env() -> dict[str, str]:
    """Workers import the same armras as this process, wherever it was started from."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_in_worker(scenario: Scenario, log_path: Path, events_path: Path | None = None) -> Outcome:
    cmd = [sys.executable, "-m", "armras.drive.regress", "--worker", str(scenario.path), "--log", str(log_path)]
    if events_path is not None:
        cmd += ["--events", str(events_path)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_worker_env(),
                              timeout=scenario.timeout + WORKER_GRACE)
    except subprocess.TimeoutExpired:
        return Outcome("fail", f"worker did not finish within {scenario.timeout + WORKER_GRACE:g} s",
                       seconds=time.monotonic() - start, log=log_path)
    elapsed = time.monotonic() - start
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
        outcome = Outcome(**{k: v for k, v in data.items() if k in ("outcome", "reason", "status", "guest_seconds")})
    except (IndexError, ValueError, TypeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome("fail", f"worker crashed (exit status {proc.returncode}): {tail}", seconds=elapsed,
                       log=log_path)
    outcome.seconds = elapsed
    outcome.log = log_path if log_path.exists() else None
    outcome.events = events_path if events_path is not None and events_path.exists() else None
    return outcome


MAX_LOG_STEM = 100             # characters of a scenario name kept in its log file name


def _log_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:MAX_LOG_STEM]
    return "_" + stem if stem.strip(".") == "" else stem    # never "." or ".." + ".log" tricks


def log_names(names: Sequence[str]) -> list[str]:
    """A log file name per scenario name: readable, and unique even when two names differ
    only in characters a file name cannot keep ("same log" / "same_log") or in case (on
    case-insensitive file systems): later ones get -2, -3, ... in the order given."""
    used: set[str] = set()
    result = []
    for name in names:
        stem = _log_stem(name)
        candidate, n = stem, 1
        while candidate.casefold() in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate.casefold())
        result.append(candidate + ".log")
    return result


# Characters XML 1.0 cannot carry at all, even as character references.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    r"""`text` with XML-illegal characters written as \xNN / \uNNNN (a console's ESC, NUL...)."""
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", text)


def _xml_safe(element: ET.Element) -> None:
    for e in element.iter():
        e.attrib = {xml_text(k): xml_text(v) for k, v in e.attrib.items()}
        if e.text:
            e.text = xml_text(e.text)
        if e.tail:
            e.tail = xml_text(e.tail)


def write_junit(path: Path, results: list[tuple[Scenario, Outcome]], total_seconds: float) -> None:
    failures = sum(o.outcome == "fail" for _, o in results)
    skipped = sum(o.outcome == "skip" for _, o in results)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0", "skipped": str(skipped),
              "time": f"{total_seconds:.3f}"}
    root = ET.Element("testsuites", name="armras regress", **counts)
    suite = ET.SubElement(root, "testsuite", name="armras-regress", **counts,
                          timestamp=datetime.datetime.now().isoformat(timespec="seconds"))
    for scenario, outcome in results:
        case = ET.SubElement(suite, "testcase", classname="armras.drive.regress", name=scenario.name,
                             file=str(scenario.path), time=f"{outcome.seconds:.3f}")
        if outcome.outcome == "fail":
            failure = ET.SubElement(case, "failure", message=outcome.reason, type="ScenarioFailure")
            failure.text = outcome.reason + _log_tail(outcome.log)
        elif outcome.outcome == "skip":
            ET.SubElement(case, "skipped", message=outcome.reason)
        files = [(what, f) for what, f in (("console_log", outcome.log), ("events", outcome.events)) if f is not None]
        if files:
            # Properties for tools that read them; the text and its [[ATTACHMENT|...]] lines for
            # people and for CI plugins that attach files named that way (Jenkins junit-attachments).
            properties = ET.Element("properties")
            for what, f in files:
                ET.SubElement(properties, "property", name=f"armras.{what}", value=str(f))
            case.insert(0, properties)
            ET.SubElement(case, "system-out").text = "".join(
                f"{what.replace('_', ' ')}: {f}\n" for what, f in files) + "".join(
                f"[[ATTACHMENT|{f.resolve()}]]\n" for _, f in files)
    ET.indent(root)
    _xml_safe(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as e:
        raise ArmrasError(f"cannot write JUnit XML {path}: {e.strerror}") from None


def _log_tail(log_path: Path | None, lines: int = 20) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last console lines ---\n" + "\n".join(tail)


def run_all(config: RegressConfig) -> int:
    scenarios = [load_scenario(p) for p in config.scenarios]   # all checked before any runs
    names: dict[str, Path] = {}
    for s in scenarios:
        if s.name in names:
            raise ArmrasError(f"two scenarios are named {s.name!r}: {names[s.name]} and {s.path}")
        names[s.name] = s.path
    logs = [config.log_dir / n for n in log_names([s.name for s in scenarios])]
    _refuse_overwriting_inputs(config, scenarios, logs + [events_path_for(log) for log in logs])
    try:
        config.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArmrasError(f"cannot create log directory {config.log_dir}: {e.strerror}") from None
    start = time.monotonic()
    lock = threading.Lock()
    results: dict[int, Outcome] = {}

    def one(i: int, scenario: Scenario) -> None:
        outcome = run_in_worker(scenario, logs[i], events_path_for(logs[i]))
        results[i] = outcome
        with lock:
            if outcome.outcome == "pass":
                print(f"[PASS] {scenario.name} ({outcome.seconds:.2f} s)", flush=True)
            else:
                print(f"[{outcome.outcome.upper()}] {scenario.name}: {outcome.reason}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, config.jobs)) as pool:
        for f in [pool.submit(one, i, s) for i, s in enumerate(scenarios)]:
            f.result()
    total = time.monotonic() - start
    ordered = [(s, results[i]) for i, s in enumerate(scenarios)]
    _print_summary(ordered, total)
    if config.junit is not None:
        write_junit(config.junit, ordered, total)
    return 1 if any(o.outcome == "fail" for _, o in ordered) else 0


def _refuse_overwriting_inputs(config: RegressConfig, scenarios: Sequence[Scenario], logs: Sequence[Path]) -> None:
    """--junit and the console logs must not land on a scenario or a file it boots."""
    inputs: list[tuple[str, Path]] = []
    for s in scenarios:
        inputs.append(("scenario", s.path))
        for what, path in (("guest image", s.image), ("initrd", s.initrd)):
            if path is not None:
                inputs.append((f"{what} of {s.path}", path))
        if s.kernel is not None and not s.kernel.startswith("debian:"):
            inputs.append((f"kernel of {s.path}", Path(s.kernel)))
    outputs = [("--log-dir", log) for log in logs]
    outputs += [(f"erst of {s.path}", s.erst) for s in scenarios if s.erst is not None]
    outputs += [(f"efivars of {s.path}", s.efivars) for s in scenarios if s.efivars is not None]
    if config.junit is not None:
        outputs.insert(0, ("--junit", config.junit))
        clash = next((log for log in logs if same_file(config.junit, log)), None)
        if clash is not None:
            raise ArmrasError(f"--junit {config.junit} is also a scenario's console log or event log; "
                              "choose another file")
    refuse_overwriting_inputs(outputs, inputs)


def _print_summary(results: list[tuple[Scenario, Outcome]], total: float) -> None:
    width = max([len(s.name) for s, _ in results] + [8])
    print()
    print(f"{'scenario':<{width}}  result  time      detail")
    for s, o in results:
        detail = o.reason if len(o.reason) <= 100 else o.reason[:97] + "..."
        print(f"{s.name:<{width}}  {o.outcome.upper():<6}  {o.seconds:6.2f} s  {detail}".rstrip())
    counts = {k: sum(o.outcome == k for _, o in results) for k in ("pass", "fail", "skip")}
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped in {total:.2f} s")


# --- command line -------------------------------------------------------------------------------
def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("regress", help="run TOML scenarios as a regression suite (JUnit XML)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO", help="scenario .toml files")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE", help="write JUnit XML here")
    p.add_argument("-j", "--jobs", type=_jobs, default=1, help="run N scenarios at once (default 1)")
    p.add_argument("--log-dir", type=Path, default=Path("regress-logs"), metavar="DIR",
                   help="keep each scenario's console log (NAME.log) and event log (NAME.events.jsonl) here "
                        "(default regress-logs/)")
    p.set_defaults(func=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    return run_all(RegressConfig(tuple(args.scenarios), args.junit, args.jobs, args.log_dir))


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m armras.drive.regress --worker SCENARIO --log FILE`: one JSON line on stdout."""
    p = argparse.ArgumentParser(prog="armras.drive.regress")
    p.add_argument("--worker", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--events", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="armras: %(message)s", stream=sys.stderr)
    try:
        outcome = run_scenario(load_scenario(args.worker), args.log, args.events)
    except ArmrasError as e:
        outcome = Outcome("fail", str(e).splitlines()[0])
    data = dataclasses.asdict(outcome)
    data["log"] = str(outcome.log) if outcome.log else None
    data["events"] = str(outcome.events) if outcome.events else None
    print(json.dumps(data), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
