"""Command line: `armras run`, `armras hest`, `armras fetch-kernel`.

Exit codes of `armras run`:
  0-255  the guest's PSCI SYSTEM_OFF status (x1; Linux powers off with 0)
  1      an armras error: bad input, an injection the guest has not acknowledged
  2      command-line usage error
  124    the guest did not power off within --timeout seconds
  125    the guest did not power off within --max-insns instructions
  126    the guest crashed the platform (exception loop, exception before a vector
         table, an error it could not be told about); a crash report is printed
A warm reset (PSCI SYSTEM_RESET) boots the guest again (armras.drive.session), up to
--max-reboots times; the status is that of the last boot.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from armras import limits
from armras.drive import client as inject_client, control, gdbstub, regress
from armras.drive.session import DEFAULT_MAX_REBOOTS, parse_max_reboots
from armras.errors import ArmrasError
from armras.guests import userland
from armras.paths import refuse_overwriting_inputs

if TYPE_CHECKING:
    from armras.board.machine import Machine, MachineConfig

log = logging.getLogger("armras")

parse_size = limits.as_argument(limits.parse_size)
parse_memory = limits.as_argument(limits.parse_ram_size)   # 16M-16G, a multiple of 2M


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="armras", description="ARMv8 RAS guest platform emulator")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="boot a guest image headless")
    run.add_argument("image", type=Path, nargs="?", help="bare-metal guest: an ELF64 AArch64 executable")
    run.add_argument("--kernel", metavar="IMAGE",
                     help="boot an arm64 Linux Image through UEFI (a path, or debian:6.1 / debian:6.12)")
    run.add_argument("--initrd", type=Path, default=None, help="initramfs handed to the kernel's EFI stub")
    run.add_argument("--append", default="", metavar="ARGS", help="kernel command line")
    run.add_argument("-m", "--memory", type=parse_memory, default=None,
                     help="guest RAM size, 16M-16G in multiples of 2M (default 512M)")
    run.add_argument("--inject", action="append", default=[], metavar="SPEC",
                     help="schedule an error injection, e.g. sea:pa=0x40fa6000,at=0.5 or "
                          "sea:pa=$1,on=PADDR=(0x[0-9a-f]+) (see armras.drive.inject)")
    run.add_argument("--poison", action="append", default=[], metavar="ADDR",
                     help="poison the page at ADDR (address or guest symbol) before the guest starts")
    run.add_argument("--poison-on", action="append", default=[], metavar="REGEX",
                     help="poison the page whose address is group 1 of a console line matching REGEX")
    run.add_argument("--max-insns", type=limits.as_argument(limits.parse_insn_limit), default=None,
                     help="fail if the guest runs this many instructions (enables counting: slower)")
    run.add_argument("--timeout", type=limits.as_argument(limits.parse_timeout), default=None,
                     help="fail after this many wall-clock seconds (at most 1e6)")
    run.add_argument("--console", type=Path, default=None, help="write the guest console to FILE (default stdout)")
    run.add_argument("--events", type=Path, default=None, metavar="FILE",
                     help="write the run's events (injections, records, notifications, acks, power-off) to FILE "
                          "as JSON lines (see armras.events)")
    run.add_argument("--deterministic", action="store_true",
                     help="guest time from instruction counts: identical runs print identical consoles")
    run.add_argument("--smp", type=limits.as_argument(limits.parse_cpus), default=1, metavar="N",
                     help="number of CPUs, 1-8 (round-robin on one host thread; default 1)")
    run.add_argument("--max-reboots", type=limits.as_argument(parse_max_reboots), default=DEFAULT_MAX_REBOOTS,
                     metavar="N", help="warm resets (PSCI SYSTEM_RESET) that boot the guest again before the run "
                                       f"fails (default {DEFAULT_MAX_REBOOTS}, at most 1000)")
    run.add_argument("--keep-poison", action="store_true",
                     help="poisoned pages stay poisoned across a warm reset (default: the next boot has none)")
    run.add_argument("--hest", type=Path, default=None, metavar="FILE",
                     help="the board's error sources from a TOML file of [[hest.source]] tables (default: SEA 0, "
                          "GPIO 1, SDEI 2 (event 804), polled 3; see armras.drive.hestfile)")
    run.add_argument("--erst", type=Path, default=None, metavar="FILE",
                     help="keep the ERST's error records (Linux pstore) in FILE across reboots and runs "
                          "(created if absent; default: in memory for the run)")
    run.add_argument("--efivars", type=Path, default=None, metavar="FILE",
                     help="keep the guest's non-volatile UEFI variables in FILE (created if missing; a file "
                          "that is not an armras variable store is refused; default: variables last the run)")
    control.add_run_options(run)
    gdbstub.add_run_options(run)
    run.set_defaults(func=cmd_run)

    erst = sub.add_parser("erst", help="list and decode the records of an ERST store file (armras run --erst)")
    erst.add_argument("file", type=Path, help="the store file")
    erst.add_argument("--lines", type=limits.as_argument(_parse_lines), default=None, metavar="N",
                      help="print only the last N lines of each dmesg record")
    erst.set_defaults(func=cmd_erst)

    efivars = sub.add_parser("efivars", help="list the UEFI variables of a store file (armras run --efivars) "
                                              "and decode Linux efi-pstore dumps")
    efivars.add_argument("file", type=Path, help="the store file")
    efivars.add_argument("--lines", type=limits.as_argument(_parse_lines), default=None, metavar="N",
                         help="print only the last N lines of each dmesg dump")
    efivars.set_defaults(func=cmd_efivars)

    hest = sub.add_parser("hest", help="print the ACPI tables and HEST error sources the board installs")
    hest.add_argument("-m", "--memory", type=parse_memory, default=None)
    hest.add_argument("--hest", type=Path, default=None, metavar="FILE",
                      help="error sources from a TOML file of [[hest.source]] tables, as for run")
    hest.add_argument("--smp", type=limits.as_argument(limits.parse_cpus), default=1, metavar="N",
                      help="number of CPUs (MADT, PPTT), 1-8")
    hest.set_defaults(func=cmd_hest)

    fetch = sub.add_parser("fetch-kernel", help="download Debian's arm64 reference kernels into the cache",
                           description="apt-get download Debian's arm64 kernel packages and cache their Image. "
                                       "This needs apt to know arm64 packages; armras changes the host's apt "
                                       "configuration for that only with --setup-apt.")
    fetch.add_argument("series", nargs="*", default=["6.1"], help="kernel series: 6.1, 6.12 (default 6.1)")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    fetch.add_argument("--setup-apt", action="store_true",
                       help="allow changing the host's apt setup (as root): dpkg --add-architecture arm64, "
                            "apt-get update, a pinned bookworm-backports source for 6.12 if needed")
    fetch.set_defaults(func=cmd_fetch_kernel)
    inject_client.register(sub)
    regress.register(sub)
    userland.register(sub)
    return p


def _machine_config(args: argparse.Namespace, console: object = None) -> "MachineConfig":
    from armras.board.machine import MachineConfig
    from armras.board.memmap import DEFAULT_RAM_SIZE

    extra = {}
    if getattr(args, "hest", None) is not None:
        from armras.drive.hestfile import load_hest_file

        extra["hest"] = load_hest_file(args.hest)
    return MachineConfig(ram_size=DEFAULT_RAM_SIZE if args.memory is None else args.memory, console=console,  # type: ignore[arg-type]
                         timeout=getattr(args, "timeout", None), max_insns=getattr(args, "max_insns", None),
                         deterministic=getattr(args, "deterministic", False), cpus=getattr(args, "smp", 1),
                         **extra)


def cmd_run(args: argparse.Namespace) -> int:
    from armras.drive.inject import parse_inject_spec, schedule, schedule_poison_on
    from armras.drive.session import Guest, RunSession

    if (args.image is None) == (args.kernel is None):
        raise ArmrasError("give either a bare-metal IMAGE or --kernel (with --initrd/--append)")
    if args.kernel is None and (args.initrd or args.append):
        raise ArmrasError("--initrd and --append need --kernel")
    specs = [parse_inject_spec(s) for s in args.inject]   # validate before building anything
    kernel: Path | None = None
    if args.kernel:
        from armras.guests.linux import resolve_kernel

        kernel = resolve_kernel(args.kernel)
    inputs = [("guest image", args.image), ("kernel", kernel), ("initrd", args.initrd)]
    outputs = [(option, path) for option, path in (("--console", args.console), ("--events", args.events))
               if path is not None]
    refuse_overwriting_inputs(outputs, [(what, path) for what, path in inputs if path is not None])
    if args.console is not None and args.events is not None:
        refuse_overwriting_inputs([("--events", args.events)], [("--console file", args.console)])
    erst = None
    if args.erst is not None:
        from armras.ras.erst import ErstStore

        refuse_overwriting_inputs([("--erst", args.erst)], [(what, path) for what, path in inputs if path is not None]
                                  + [(f"{option[2:]} file", path) for option, path in outputs])
        erst = ErstStore.open(args.erst)
    config = _machine_config(args)
    console = None
    if args.console is not None:
        try:
            console = open(args.console, "wb")
        except OSError as e:
            raise ArmrasError(f"cannot write console file {args.console}: {e.strerror}") from None
    config.console = console
    from armras.drive.phases import BootPhases, ProgressLine
    from armras.events import EventLog

    config.events = EventLog.open(args.events) if args.events is not None else None
    progress = ProgressLine.for_stderr(sys.stderr, console_on_terminal=console is None and sys.stdout.isatty())
    phases = BootPhases(progress)

    def first_boot(machine: Machine) -> None:
        for addr in args.poison:
            machine.poison(machine.resolve_address(addr))
        for pattern in args.poison_on:
            schedule_poison_on(machine, pattern)
        for spec in specs:
            schedule(machine, spec)

    session = RunSession(config, Guest(args.image, kernel, args.initrd, args.append or ""),
                         max_reboots=args.max_reboots, keep_poison=args.keep_poison, erst=erst,
                         first_boot=[first_boot], every_boot=[phases.attach], efivars=args.efivars)
    try:
        with control.attach(session, args), gdbstub.attach(session, args):
            try:
                result = session.run()
            finally:
                progress.clear()
        linux = session.linux
        if linux is not None and linux.init_reached is not None:
            wall, guest = linux.init_reached
            print(f"armras: Linux reached /init after {wall:.2f} s (guest time {guest:.2f} s)", file=sys.stderr)
    finally:
        if console is not None:
            console.close()
        if config.events is not None:
            config.events.close()
    log.info("guest powered off (%s) with status %d after %.3f s wall, %.3f s guest time",
             result.reason, result.status, result.wall_seconds, result.guest_seconds)
    return result.status


def _parse_lines(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise ArmrasError(f"{text!r} is not a number of lines") from None
    if not 1 <= value <= 1_000_000:
        raise ArmrasError(f"{text!r} is not a number of lines in 1..1000000")
    return value


def cmd_erst(args: argparse.Namespace) -> int:
    from armras.ras.cper_record import describe
    from armras.ras.erst import ErstStore, read_store_file

    store = ErstStore.decode(read_store_file(args.file), str(args.file))
    print(f"{args.file}: {len(store)} record(s) of at most {store.record_size} bytes, capacity {store.capacity}")
    for record_id, record in store.records.items():
        print(describe(record_id, record, args.lines))
    return 0


def cmd_efivars(args: argparse.Namespace) -> int:
    from armras.firmware.efivars import VariableStore
    from armras.firmware.efivars_dump import describe_store

    if not args.file.exists():
        raise ArmrasError(f"{args.file} does not exist")
    print(describe_store(VariableStore.open(args.file), args.lines))
    return 0


def cmd_hest(args: argparse.Namespace) -> int:
    from armras.firmware.acpi import format_acpi
    from armras.board.machine import Machine

    machine = Machine(_machine_config(args))
    try:
        print(format_acpi(machine.acpi.blob, machine.acpi.base, machine.mem.read_u64))
    finally:
        machine.close()
    return 0


def cmd_fetch_kernel(args: argparse.Namespace) -> int:
    from armras.guests.kernels import fetch_kernel

    for series in args.series:
        print(fetch_kernel(series, force=args.force, setup_apt=args.setup_apt))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="armras: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ArmrasError as e:
        first, _, rest = str(e).partition("\n")
        print(f"armras: error: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("armras: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`armras erst FILE | head`): stop quietly, as `cat` does.
        # Point stdout at /dev/null so that the interpreter's final flush fails no more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141                                   # 128 + SIGPIPE, what a shell reports


if __name__ == "__main__":
    raise SystemExit(main())
