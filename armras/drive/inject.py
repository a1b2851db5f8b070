"""Error injections as the user writes them, and their scheduling on a machine.

Spec grammar (the value of `armras run --inject`):

    KIND[:key=value[,key=value...]]

    KIND      sea    memory error in the SEA-notified source (0) + Synchronous External Abort
              gpio   memory error in the GPIO-notified source (1) + GED interrupt
              sdei   memory error in the SDEI-notified source (2) + its SDEI event
              polled memory error in the polled source (3); the guest finds it when it polls
              sei    memory error in an SEI-notified source (HEST notification type 9; none
                     on the default board: describe one with --hest) + an SError whose AET
                     grades it as the severity does (recoverable UER, fatal UC, corrected CE)
              arm    ARM processor error in the GPIO-notified source (1) + GED interrupt
              bert   a record in the Boot Error Region (the BERT): a memory error at pa=,
                     or with type= an ARM processor error; severity fatal by default. The
                     OS reads it at boot (Linux: late in boot), so inject it early
              serror asynchronous SError interrupt with a RAS syndrome (no CPER), taken
                     once PSTATE.A allows it
              aer    a native PCIe AER error at dev=: logged in that function's AER
                     registers and signalled to the root port (Root Error Status, Error
                     Source ID), which interrupts the OS (INTA, or an MSI once enabled)
              pcie   firmware-first PCIe error at dev=: a CPER PCIe error section with the
                     function's registers, in the GPIO-notified source (1) unless source=
    dev=BB:DD.F aer/pcie: the function (root ports 00:01.0 and 00:02.0; once the OS numbered
                the buses as Linux does: endpoint 01:00.0, switch ports 02:00.0 and 03:00.0)
    status=     aer/pcie: cor | uncor-nonfatal | uncor-fatal (Receiver Error, Completion
                Timeout, Data Link Protocol Error), or give raw AER status bits:
    cor=, uncor= aer/pcie: Correctable / Uncorrectable Error Status bits (PCIe Base 4.0 7.8.4)
    header=     aer/pcie with an uncorrectable error: the TLP header for the Header Log,
                four 32-bit words joined by ':' (e.g. 0x4a000001:0x0100000f:0x10000000:0)
    source=N  the HEST source id to use instead (sea/gpio/sdei/polled/sei: one notified
              that way; arm: any, notified as that source says)
    pa=       physical address, a symbol of the guest ELF, or $N / $name: a group of
              the `on=` match (e.g. on=PADDR=(0x[0-9a-f]+),pa=$1 is written pa=$1,on=...)
    severity= recoverable (default) | fatal | corrected | none (pcie: the record's severity,
              by default the error's class; the PCIe section always has the error's class,
              so status=uncor-fatal,severity=recoverable is a fatal AER error the OS may
              recover, while a fatal record makes Linux's GHES panic)
    mpidr=, type=, va=   ARM processor error fields (type: cache|tlb|bus|micro-arch)
    dimm=       memory errors: yes (the board's one DIMM, SMBIOS handle 0x1100) or an SMBIOS
                handle: the record's Module Handle, so the OS can name the DIMM (Linux:
                "DIMM location: BANK 0 DIMM 0"); QEMU's records never carry one
    aet=        serror only, required: the RAS error type in ESR_EL1.AET: uc | ue (UEU) |
                uer | ueo | ce (armras.arch.cpu.serror_syndrome)
    cpu=N       the CPU (0-based index) that takes the SEA / SError / SDEI event or reports
                the ARM processor error (its MPIDR_EL1 unless mpidr= is given); default: the
                running CPU
    at=SECONDS  guest time (virtual counter) at which to inject
    insn=N      after N guest instructions (enables instruction counting)
    on=REGEX    when a console line matches; must be the last key (takes the rest)

With no trigger the injection happens as soon as the guest starts running. Each key
may be given once. Numbers are checked as they are parsed (armras.limits): a numeric
pa= below 2^48 (and, for sea/gpio, inside guest RAM when performed), va=/mpidr= below
2^64, at= finite in [0, 1e9] s, insn= in [0, 2^63).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from armras import limits
from armras.errors import ArmrasError, GuestAddressError
from armras.events import hex_or_none
from armras.arch.cpu import MIDR_EL1, SERROR_AETS
from armras.board.vcpu import MPIDR_RES1
from armras.devices import pcie
from armras.firmware.smbios import HANDLE_MEMORY_DEVICE
from armras.ras import cper, pcie_errors
from armras.ras.ghes import GhesSource
from armras.ras.sources import NOTIFY_BY_NAME, Notify

if TYPE_CHECKING:
    from armras.board.machine import Machine

MEMORY_KINDS = ("sea", "gpio", "sdei", "polled", "sei")   # a memory error, notified as the kind says
PCIE_KINDS = ("aer", "pcie")
KINDS = (*MEMORY_KINDS, "arm", "bert", "serror", *PCIE_KINDS)
NO_CPU_KINDS = ("gpio", "polled")                   # nothing a CPU takes
SEVERITIES = {s.name.lower(): s for s in cper.Severity}
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InjectSpec:
    kind: str
    pa: str | None = None
    severity: cper.Severity = cper.Severity.RECOVERABLE
    mpidr: int | None = None
    error_type: str | None = None         # ARM processor error type (arm: default cache)
    cpu: int | None = None
    va: int | None = None
    at: float | None = None
    insn: int | None = None
    on: str | None = None
    source: int | None = None
    aet: str | None = None                   # serror: a key of SERROR_AETS
    dimm: int | None = None                  # memory errors: the DIMM's SMBIOS handle (Module Handle)
    dev: str | None = None                   # aer/pcie: BB:DD.F
    status: str | None = None                # aer/pcie: a key of pcie_errors.STATUS_NAMES
    cor: int | None = None                   # aer/pcie: raw Correctable Error Status bits
    uncor: int | None = None                 # aer/pcie: raw Uncorrectable Error Status bits
    severity_given: bool = False             # pcie: severity= overrides the error's class
    header: tuple[int, int, int, int] | None = None   # aer/pcie: the Header Log's four dwords

    def pcie_error(self) -> pcie_errors.PcieError:
        error = (pcie_errors.STATUS_NAMES[self.status] if self.status is not None
                 else pcie_errors.PcieError(cor=self.cor or 0, uncor=self.uncor or 0))
        return dataclasses.replace(error, header_log=self.header)

    def describe(self) -> str:
        what = f"inject {self.kind}" + (f" pa={self.pa}" if self.pa else "") + (f" aet={self.aet}" if self.aet else "")
        if self.kind == "arm":
            what += (f" mpidr={self.mpidr:#x}" if self.mpidr is not None else "") + f" type={self.error_type or 'cache'}"
        if self.dev is not None:
            what += f" dev={self.dev}" + (f" status={self.status}" if self.status else "")
            what += (f" cor={self.cor:#x}" if self.cor is not None else "") + (
                f" uncor={self.uncor:#x}" if self.uncor is not None else "")
        if self.cpu is not None:
            what += f" cpu={self.cpu}"
        if self.source is not None:
            what += f" source={self.source}"
        return what


def _int(text: str, key: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise ArmrasError(f"--inject {text!r}: {key}={value!r} is not a number") from None


def _checked(text: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except ArmrasError as e:
        raise ArmrasError(f"--inject {text!r}: {e}") from None


def _check_pa_text(text: str, value: str) -> None:
    """A numeric pa= is checked now; symbols and $groups when they are resolved."""
    try:
        pa = int(value, 0)
    except ValueError:
        return
    _checked(text, lambda: limits.check_pa(pa))


def parse_inject_spec(text: str) -> InjectSpec:
    """Parse one --inject SPEC (ArmrasError with one line on anything malformed)."""
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ArmrasError(f"--inject {text!r}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    fields: dict[str, object] = {}
    seen: set[str] = set()
    while rest:
        if rest.startswith("on="):
            fields["on"] = rest[3:]
            break
        item, _, rest = rest.partition(",")
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not value:
            raise ArmrasError(f"--inject {text!r}: expected key=value, got {item!r}")
        if key in seen:
            raise ArmrasError(f"--inject {text!r}: {key}= is given twice")
        seen.add(key)
        if key == "pa":
            _check_pa_text(text, value)
            fields["pa"] = value
        elif key == "severity":
            if value.lower() not in SEVERITIES:
                raise ArmrasError(f"--inject: unknown severity {value!r} (expected {', '.join(SEVERITIES)})")
            fields["severity"] = SEVERITIES[value.lower()]
        elif key == "at":
            try:
                seconds = float(value)
            except ValueError:
                raise ArmrasError(f"--inject: at={value!r} is not a number of seconds") from None
            fields["at"] = _checked(text, lambda: limits.check_guest_seconds(seconds, "at"))
        elif key == "insn":
            count = _int(text, key, value)
            fields["insn"] = _checked(text, lambda: limits.check_count(count, "insn"))
        elif key in ("mpidr", "va"):
            number = _int(text, key, value)
            fields[key] = _checked(text, lambda: limits.check_u64(number, key))
        elif key == "cpu":
            index = _int(text, key, value)
            fields["cpu"] = _checked(text, lambda: limits.check_cpu_index(index))
        elif key == "source":
            number = _int(text, key, value)
            fields["source"] = _checked(text, lambda: limits.check_source_id(number))
        elif key == "type":
            cper.arm_error_type(value)  # validates
            fields["error_type"] = value
        elif key == "dev":
            _checked(text, lambda: pcie_errors.parse_bdf(value))
            fields["dev"] = value
        elif key == "status":
            if value.lower() not in pcie_errors.STATUS_NAMES:
                raise ArmrasError(f"--inject {text!r}: unknown status {value!r} "
                                  f"(expected {' | '.join(pcie_errors.STATUS_NAMES)})")
            fields["status"] = value.lower()
        elif key in ("cor", "uncor"):
            number = _int(text, key, value)
            implemented = pcie.COR_IMPLEMENTED if key == "cor" else pcie.UNCOR_IMPLEMENTED
            if not 0 <= number <= 0xFFFF_FFFF:
                raise ArmrasError(f"--inject {text!r}: {key}={value} is not a 32-bit status mask")
            if number & ~implemented:
                raise ArmrasError(f"--inject {text!r}: {key}={value} sets bits {number & ~implemented:#x} that are "
                                  f"reserved or not implemented (implemented: {implemented:#x}, PCIe Base 4.0 7.8.4)")
            fields[key] = number
        elif key == "header":
            words = value.split(":")
            if len(words) != pcie.AER_HEADER_LOG_DWORDS:
                raise ArmrasError(f"--inject {text!r}: header= is four 32-bit words joined by ':'")
            numbers = tuple(_int(text, key, w) for w in words)
            if not all(0 <= n <= 0xFFFF_FFFF for n in numbers):
                raise ArmrasError(f"--inject {text!r}: header= words must be 32-bit")
            fields["header"] = numbers
        elif key == "dimm":
            if value.lower() == "yes":
                fields["dimm"] = HANDLE_MEMORY_DEVICE
            else:
                number = _int(text, key, value)
                if not 0 <= number <= 0xFFFE:
                    raise ArmrasError(f"--inject {text!r}: dimm={value} is not an SMBIOS handle (0-0xfffe) or yes")
                fields["dimm"] = number
        elif key == "aet":
            if value.lower() not in SERROR_AETS:
                raise ArmrasError(f"--inject {text!r}: unknown aet {value!r} (expected {' | '.join(SERROR_AETS)})")
            fields["aet"] = value.lower()
        else:
            raise ArmrasError(f"--inject {text!r}: unknown key {key!r}")
    spec = InjectSpec(kind, **fields)  # type: ignore[arg-type]
    if sum(x is not None for x in (spec.at, spec.insn, spec.on)) > 1:
        raise ArmrasError(f"--inject {text!r}: give at most one of at=, insn=, on=")
    if spec.kind in NO_CPU_KINDS and spec.cpu is not None:
        raise ArmrasError(f"--inject {text!r}: cpu= names the CPU that takes an SEA or SDEI event or reports "
                          f"an ARM processor error; a {spec.kind} memory error is not taken by a CPU")
    if spec.kind == "bert":
        if spec.source is not None:
            raise ArmrasError(f"--inject {text!r}: a BERT record is in no HEST source (no source=)")
        if "severity" not in seen:
            spec = dataclasses.replace(spec, severity=cper.Severity.FATAL)   # what ended the previous boot
        if spec.pa is None and spec.error_type is None:
            raise ArmrasError(f"--inject {text!r}: bert needs pa= (a memory error) or type= (an ARM processor error)")
        if spec.error_type is None and (spec.mpidr is not None or spec.va is not None or spec.cpu is not None):
            raise ArmrasError(f"--inject {text!r}: mpidr=/va=/cpu= go with type= (an ARM processor error)")
    if spec.kind in MEMORY_KINDS and spec.pa is None:
        raise ArmrasError(f"--inject {text!r}: {spec.kind} needs pa=")
    if spec.dimm is not None and not (spec.kind in MEMORY_KINDS or (spec.kind == "bert" and spec.error_type is None)):
        raise ArmrasError(f"--inject {text!r}: dimm= names the DIMM of a memory error (sea/gpio/sdei/polled/sei/bert)")
    _check_serror_keys(text, spec, seen)
    _check_pcie_keys(text, spec, seen)
    if spec.kind == "pcie" and "severity" in seen:
        spec = dataclasses.replace(spec, severity_given=True)
    if spec.pa and spec.pa.startswith("$") and spec.on is None:
        raise ArmrasError(f"--inject {text!r}: pa={spec.pa} refers to a match group but there is no on=")
    return spec


def _check_serror_keys(text: str, spec: InjectSpec, seen: set[str]) -> None:
    """aet= belongs to serror, which takes only aet=, cpu= and a trigger (it has no CPER)."""
    if spec.kind != "serror":
        if spec.aet is not None:
            raise ArmrasError(f"--inject {text!r}: aet= is the syndrome of an SError (serror:aet=...)")
        return
    if spec.aet is None:
        raise ArmrasError(f"--inject {text!r}: serror needs aet= ({' | '.join(SERROR_AETS)})")
    extra = sorted(seen - {"aet", "cpu", "at", "insn"})
    if extra:
        raise ArmrasError(f"--inject {text!r}: serror takes aet=, cpu= and a trigger, not {extra[0]}= "
                          "(an SError carries no error record)")


PCIE_KEYS = {"dev", "status", "cor", "uncor", "header"}


def _check_pcie_keys(text: str, spec: InjectSpec, seen: set[str]) -> None:
    """dev=/status=/cor=/uncor= belong to aer/pcie, which take them, a trigger, and (pcie) source=/severity=."""
    if spec.kind not in PCIE_KINDS:
        extra = sorted(seen & PCIE_KEYS)
        if extra:
            raise ArmrasError(f"--inject {text!r}: {extra[0]}= names a PCIe error (aer: or pcie:)")
        return
    allowed = PCIE_KEYS | {"at", "insn"} | ({"source", "severity"} if spec.kind == "pcie" else set())
    extra = sorted(seen - allowed)
    if extra:
        raise ArmrasError(f"--inject {text!r}: {spec.kind} takes {', '.join(sorted(k + '=' for k in allowed))} "
                          f"and on=, not {extra[0]}=")
    if spec.dev is None:
        raise ArmrasError(f"--inject {text!r}: {spec.kind} needs dev=BB:DD.F")
    if spec.status is not None and (spec.cor is not None or spec.uncor is not None):
        raise ArmrasError(f"--inject {text!r}: give status= or cor=/uncor=, not both")
    error = spec.pcie_error()
    if spec.header is not None and not error.uncor:
        raise ArmrasError(f"--inject {text!r}: header= goes with an uncorrectable error (the Header Log)")
    if not error.cor and not error.uncor:
        raise ArmrasError(f"--inject {text!r}: no error to inject: give status=({' | '.join(pcie_errors.STATUS_NAMES)}) "
                          f"or a non-zero cor=/uncor= (implemented bits: cor {pcie.COR_IMPLEMENTED:#x}, "
                          f"uncor {pcie.UNCOR_IMPLEMENTED:#x})")


def _perform_pcie(machine: Machine, spec: InjectSpec) -> GhesSource | None:
    assert spec.dev is not None
    if spec.kind == "aer":
        perform_aer(machine, spec)
        return None
    severity = spec.severity if spec.severity_given else None
    record = pcie_errors.firmware_first_record(machine.pcie, pcie_errors.parse_bdf(spec.dev), spec.pcie_error(),
                                               severity)
    return machine.report(record, notify=None if spec.source is not None else Notify.GPIO, source_id=spec.source)


def perform_aer(machine: Machine, spec: InjectSpec) -> pcie.AerLog:
    """A native AER error (`aer:`): logged at the function, its messages delivered to the root port."""
    assert spec.kind == "aer" and spec.dev is not None
    requester_id = pcie_errors.parse_bdf(spec.dev)
    error = spec.pcie_error()
    pcie_errors.function_at(machine.pcie, requester_id)
    result = machine.pcie.inject_aer(requester_id, error.cor, error.uncor, error.header_log)
    if result.unreported:
        log.warning("inject aer dev=%s: %s not sent: disabled in the function's Device Control register",
                    spec.dev, ", ".join(m.value for m in result.unreported))
    return result


def _resolve_pa(machine: Machine, spec: InjectSpec, match: re.Match[str] | None) -> int | None:
    if spec.pa is None:
        return None
    if spec.pa.startswith("$"):
        assert match is not None
        group = spec.pa[1:]
        try:
            text = match.group(int(group) if group.isdigit() else group)
        except IndexError:
            raise ArmrasError(f"--inject: pa={spec.pa}: no such group in {match.re.pattern!r}") from None
        if text is None:
            raise ArmrasError(f"--inject: pa={spec.pa} did not match anything in {match.string!r}")
        return machine.resolve_address(text)
    return machine.resolve_address(spec.pa)


def perform(machine: Machine, spec: InjectSpec, match: re.Match[str] | None = None) -> GhesSource | None:
    """Carry out one injection now (the CPU is stopped between slices); returns the source used
    (None for a BERT record, which is in no source).

    The run's event log (armras.events) gets an `inject` record first (the request, with
    pa= resolved), then what it caused, or an `inject_refused` record with the reason.
    A memory error must name guest RAM, as QEMU's memory-failure path only reports RAM;
    an ARM processor error's pa= only has to be a physical address.
    """
    fields = {k: v for k, v in (("kind", spec.kind), ("cpu", spec.cpu), ("source", spec.source),
                                ("severity", spec.severity.name.lower() if spec.kind != "serror" else None),
                                ("aet", spec.aet), ("type", spec.error_type), ("mpidr", hex_or_none(spec.mpidr)),
                                ("va", hex_or_none(spec.va))) if v is not None}
    try:
        pa = _resolve_pa(machine, spec, match)
        machine.events.emit("inject", **fields, **({"pa": f"{pa:#x}"} if pa is not None else {}))
        source = _perform(machine, spec, pa)
    except ArmrasError as e:
        machine.events.emit("inject_refused", kind=spec.kind, error=str(e).splitlines()[0])
        raise
    return source


def _perform(machine: Machine, spec: InjectSpec, pa: int | None) -> GhesSource | None:
    if pa is not None:
        limits.check_pa(pa, f"inject {spec.kind}: pa")
        if spec.kind in MEMORY_KINDS and not machine.ram.contains(pa):
            raise GuestAddressError(f"inject {spec.kind}: physical address {pa:#x} is outside guest RAM "
                                    f"({machine.ram.base:#x}-{machine.ram.end - 1:#x})")
    if spec.kind in MEMORY_KINDS:
        assert pa is not None
        return machine.report(cper.memory_error_record(pa, spec.severity, module_handle=spec.dimm),
                              notify=NOTIFY_BY_NAME[spec.kind],
                              source_id=spec.source, cpu=spec.cpu)
    if spec.kind in PCIE_KINDS:
        return _perform_pcie(machine, spec)
    if spec.kind == "serror":
        assert spec.aet is not None
        machine.inject_serror(SERROR_AETS[spec.aet], cpu=spec.cpu)
        return None
    if spec.kind == "bert" and spec.error_type is None:
        assert pa is not None
        record = cper.memory_error_record(pa, spec.severity, module_handle=spec.dimm)
    else:
        info = cper.ArmErrorInfo(spec.error_type or "cache", virt_addr=spec.va, phys_addr=pa)
        reporter = machine.vcpu(spec.cpu)     # the CPU that reports the error, as firmware would
        mpidr = spec.mpidr if spec.mpidr is not None else MPIDR_RES1 | reporter.mpidr
        midr = machine.cpu.sysreg(MIDR_EL1)   # every CPU of the board is the same part
        record = cper.arm_processor_record(mpidr, midr, errors=(info,), severity=spec.severity)
    if spec.kind == "bert":
        machine.bert.append(record)
        return None
    return machine.report(record, notify=None if spec.source is not None else Notify.GPIO,
                          source_id=spec.source, cpu=spec.cpu)


def schedule(machine: Machine, spec: InjectSpec) -> None:
    """Arrange for `spec` to be performed at its trigger."""
    description = spec.describe()
    if spec.on is not None:
        machine.on_console(spec.on, lambda m: perform(machine, spec, m), description)
    elif spec.insn is not None:
        machine.at_instruction(spec.insn, lambda: perform(machine, spec), f"{description} at instruction {spec.insn}")
    else:
        at = spec.at or 0.0
        machine.at_guest_time(at, lambda: perform(machine, spec), f"{description} at guest time {at:g} s")


def schedule_poison_on(machine: Machine, pattern: str) -> None:
    """Poison the page whose address is group 1 (or group `pa`) of a console match."""
    def action(m: re.Match[str]) -> None:
        text = m.groupdict().get("pa") or (m.group(1) if m.re.groups else None)
        if text is None:
            raise ArmrasError(f"--poison-on {pattern!r}: the pattern needs a group capturing the address")
        machine.poison(machine.resolve_address(text))

    machine.on_console(pattern, action, f"poison (trigger {pattern!r})")
