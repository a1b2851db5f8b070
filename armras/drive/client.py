"""`armras inject`: send one command to a running `armras run --control PATH`.

    armras inject --control PATH sea --pa 0x40fa6000 [--severity fatal]
    armras inject --control PATH gpio --pa ADDR | --cper-file FILE
    armras inject --control PATH arm --mpidr 0x80000000 --type cache [--pa ADDR] [--va ADDR]
    armras inject --control PATH poison --pa ADDR
    armras inject --control PATH serror --aet uc|ue|uer|ueo|ce [--cpu N]
    armras inject --control PATH aer --dev 01:00.0 --status cor|uncor-nonfatal|uncor-fatal | --cor M | --uncor M
    armras inject --control PATH pcie --dev 01:00.0 --status ... [--severity S] [--source N]
    armras inject --control PATH query-ack | query-hest | query-status | stop | cont | quit

The reply's return value is printed as JSON; an error reply is one line
(`armras: error: <desc>`) and exit status 1. `--control` defaults to $ARMRAS_CONTROL.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armras import limits
from armras.arch.cpu import SERROR_AETS
from armras.errors import ArmrasError
from armras.ras import cper

SEVERITY_NAMES = tuple(s.name.lower() for s in cper.Severity)
QUERIES = ("query-ack", "query-hest", "query-status", "stop", "cont", "quit")


class ControlError(ArmrasError):
    """The server answered with an error reply."""

    def __init__(self, error_class: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class = error_class


@dataclass
class ControlClient:
    """A connection to a control socket: one request, one reply at a time."""

    path: Path
    timeout: float = 30.0

    def __post_init__(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise ArmrasError(f"control socket {self.path} does not exist (is `armras run --control` running?)") from None
        except ConnectionRefusedError:
            sock.close()
            raise ArmrasError(f"control socket {self.path}: connection refused (the armras run has exited)") from None
        except OSError as e:
            sock.close()
            raise ArmrasError(f"cannot connect to control socket {self.path}: {e.strerror or e}") from None
        self._sock = sock
        self._stream = sock.makefile("rwb")
        self.greeting = self._read()
        self._next_id = 1

    def _read(self) -> dict[str, Any]:
        try:
            line = self._stream.readline()
        except (OSError, socket.timeout) as e:
            raise ArmrasError(f"control socket {self.path}: no reply ({e or 'timed out'})") from None
        if not line:
            raise ArmrasError(f"control socket {self.path}: the server closed the connection")
        try:
            message = json.loads(line)
        except ValueError:
            raise ArmrasError(f"control socket {self.path}: malformed reply {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise ArmrasError(f"control socket {self.path}: malformed reply {line[:80]!r}")
        return message

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Send a command and return its "return" value (ControlError on an error reply)."""
        req_id = self._next_id
        self._next_id += 1
        request: dict[str, Any] = {"execute": command, "id": req_id}
        if arguments:
            request["arguments"] = arguments
        try:
            self._stream.write(json.dumps(request).encode() + b"\n")
            self._stream.flush()
        except OSError as e:
            raise ArmrasError(f"control socket {self.path}: cannot send: {e.strerror or e}") from None
        while True:
            reply = self._read()
            if "return" in reply or "error" in reply:   # anything else is an event or the greeting
                break
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise ControlError(str(err.get("class", "GenericError")), str(err.get("desc", reply["error"])))
        return reply["return"]

    def close(self) -> None:
        self._stream.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _address(text: str) -> int | str:
    """A number, or a guest symbol resolved by the server."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("inject", help="send a command to a running `armras run --control PATH`",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control", type=Path, default=os.environ.get("ARMRAS_CONTROL"), metavar="PATH",
                   help="the control socket (default $ARMRAS_CONTROL)")
    p.add_argument("--timeout", type=limits.as_argument(limits.parse_timeout), default=30.0,
                   help="seconds to wait for the reply (default 30, at most 1e6)")
    cmds = p.add_subparsers(dest="inject_command", required=True, metavar="COMMAND")

    sea = cmds.add_parser("sea", help="memory error in the SEA source (0) and a Synchronous External Abort")
    sea.add_argument("--pa", required=True, type=_address, help="physical address or guest symbol")
    sea.add_argument("--severity", choices=SEVERITY_NAMES)
    sea.add_argument("--cpu", type=_integer, help="the CPU that takes the SEA (default: the running one)")

    gpio = cmds.add_parser("gpio", help="a CPER in the GPIO source (1) and the GED interrupt")
    what = gpio.add_mutually_exclusive_group(required=True)
    what.add_argument("--pa", type=_address, help="memory error at this physical address")
    what.add_argument("--cper-file", type=Path, help="a raw Generic Error Status Block to send as is")
    gpio.add_argument("--severity", choices=SEVERITY_NAMES)

    arm = cmds.add_parser("arm", help="ARM processor error in the GPIO source (1)")
    who = arm.add_mutually_exclusive_group(required=True)
    who.add_argument("--mpidr", type=_integer, help="the MPIDR_EL1 value the record names")
    who.add_argument("--cpu", type=_integer, help="the reporting CPU (its MPIDR_EL1)")
    arm.add_argument("--type", required=True, help="cache|tlb|bus|micro-arch (comma-joined), or an integer")
    arm.add_argument("--pa", type=_address)
    arm.add_argument("--va", type=_integer)
    arm.add_argument("--severity", choices=SEVERITY_NAMES)

    poison = cmds.add_parser("poison", help="take the 4 KiB page holding ADDR away from the guest")
    poison.add_argument("--pa", required=True, type=_address)

    serror = cmds.add_parser("serror", help="an asynchronous SError with a RAS syndrome (ESR_EL1.AET)")
    serror.add_argument("--aet", required=True, choices=tuple(SERROR_AETS), help="uc, ue (UEU), uer, ueo or ce")
    serror.add_argument("--cpu", type=_integer, help="the CPU that takes the SError (default: the running one)")

    for name, text in (("aer", "a native PCIe AER error at a function, signalled to the root port"),
                       ("pcie", "a firmware-first CPER PCIe error section in the GPIO source (1)")):
        sub = cmds.add_parser(name, help=text)
        sub.add_argument("--dev", required=True, help="the function, BB:DD.F (00:01.0 root port, 01:00.0 endpoint)")
        sub.add_argument("--status", help="cor | uncor-nonfatal | uncor-fatal")
        sub.add_argument("--cor", type=_integer, help="Correctable Error Status bits")
        sub.add_argument("--uncor", type=_integer, help="Uncorrectable Error Status bits")
        sub.add_argument("--header", help="Header Log: four 32-bit words joined by ':'")
        if name == "pcie":
            sub.add_argument("--severity", choices=SEVERITY_NAMES, help="default: from the error's class")
            sub.add_argument("--source", type=_integer, help="the HEST source id (default: the GPIO one)")

    for name in QUERIES:
        cmds.add_parser(name, help={"query-ack": "GHES read-ack state of each source",
                                    "query-hest": "the HEST error sources and their addresses",
                                    "query-status": "running/paused, guest time, instructions, PC",
                                    "stop": "pause the guest", "cont": "resume the guest",
                                    "quit": "power the machine off (exit status 0)"}[name])
    p.set_defaults(func=cmd_inject)


def request_for(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The (command, arguments) a parsed `armras inject` command line stands for."""
    name = args.inject_command
    arguments: dict[str, Any] = {}
    if getattr(args, "severity", None):
        arguments["severity"] = args.severity
    if getattr(args, "cpu", None) is not None:
        arguments["cpu"] = args.cpu
    if name == "sea":
        return "inject-sea", {"pa": args.pa, **arguments}
    if name == "gpio":
        if args.cper_file is not None:
            try:
                data = args.cper_file.read_bytes()
            except OSError as e:
                raise ArmrasError(f"cannot read CPER file {args.cper_file}: {e.strerror}") from None
            return "inject-gpio", {"cper": base64.b64encode(data).decode(), **arguments}
        return "inject-gpio", {"pa": args.pa, **arguments}
    if name == "arm":
        if args.mpidr is not None:
            arguments["mpidr"] = args.mpidr
        arguments["type"] = _address(args.type) if args.type[:1].isdigit() else args.type
        if args.pa is not None:
            arguments["pa"] = args.pa
        if args.va is not None:
            arguments["va"] = args.va
        return "inject-arm-processor", arguments
    if name == "poison":
        return "poison", {"pa": args.pa}
    if name == "serror":
        return "inject-serror", {"aet": args.aet, **arguments}
    if name in ("aer", "pcie"):
        for key in ("dev", "status", "cor", "uncor", "header", "source"):
            if getattr(args, key, None) is not None:
                arguments[key] = getattr(args, key)
        return f"inject-{name}", arguments
    return name, {}


def cmd_inject(args: argparse.Namespace) -> int:
    if args.control is None:
        raise ArmrasError("armras inject needs --control PATH (or $ARMRAS_CONTROL)")
    command, arguments = request_for(args)
    with ControlClient(args.control, timeout=args.timeout) as client:
        result = client.execute(command, arguments)
    print(json.dumps(result, indent=2))
    return 0
