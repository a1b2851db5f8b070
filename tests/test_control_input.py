"""The control socket under hostile or heavy input: non-finite numbers, deep nesting,
out-of-range addresses, fifty clients connecting at once."""
from __future__ import annotations

import json
import math
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from armras.drive.control import ControlConfig, ControlServer
from conftest import Board


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ControlServer]:
    board = Board("1: b 1b\n")
    # No run loop here: commands that need the CPU run at once on the calling thread.
    board.machine.defer = lambda action, description: action()  # type: ignore[method-assign]
    srv = ControlServer(board.machine, ControlConfig(tmp_path / "ctl.sock", reply_timeout=5.0))
    srv.open()
    try:
        yield srv
    finally:
        srv.close()
        board.close()


def strict(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply as a client's strict JSON parser sees it."""
    def no_constants(name: str) -> None:
        raise AssertionError(f"reply contains {name}")

    return json.loads(json.dumps(reply, allow_nan=True), parse_constant=no_constants)


@pytest.mark.parametrize("line", [
    b'{"execute": "query-status", "id": NaN}',
    b'{"execute": "query-status", "id": Infinity}',
    b'{"execute": "query-status", "id": -Infinity}',
    b'{"execute": "query-status", "id": 1e400}',
    b'{"execute": "inject-sea", "arguments": {"pa": NaN}, "id": 3}',
    b'{"execute": "query-status", "arguments": {"x": [1, 2, -1e999]}}',
])
def test_non_finite_numbers_are_refused_and_replies_stay_json(server: ControlServer, line: bytes) -> None:
    reply = strict(server.handle_line(line))
    assert reply["error"]["class"] == "GenericError" and "JSON parse error" in reply["error"]["desc"]
    assert reply["id"] is None


@pytest.mark.parametrize("depth", [100_000, 2_000])
def test_deeply_nested_requests_get_an_error_reply(server: ControlServer, depth: int) -> None:
    for line in (b"[" * depth + b"]" * depth,
                 b'{"execute": "stop", "id": ' + b"[" * depth + b"]" * depth + b"}"):
        reply = strict(server.handle_line(line))
        assert reply["error"]["class"] == "GenericError", reply
        assert "nested too deeply" in reply["error"]["desc"]


def test_deep_ids_are_answered_over_the_socket(server: ControlServer) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(server.config.path))
        stream = s.makefile("rwb")
        json.loads(stream.readline())                          # greeting
        for depth in (900, 5_000, 500_000):
            stream.write(b'{"execute": "query-ack", "id": ' + b"[" * depth + b"]" * depth + b"}\n")
            stream.flush()
            reply = json.loads(stream.readline())
            assert "error" in reply or "return" in reply
        stream.write(b'{"execute": "qmp_capabilities", "id": 7}\n')   # the client thread is still alive
        stream.flush()
        assert json.loads(stream.readline()) == {"return": {}, "id": 7}


@pytest.mark.parametrize("command,arguments,needle", [
    ("inject-sea", {"pa": 2 ** 72 + 0x40FA6000}, "below 2^48"),
    ("inject-sea", {"pa": -1}, "below 2^48"),
    ("inject-sea", {"pa": "0x1000000000040fa6000"}, "below 2^48"),
    ("inject-gpio", {"pa": 0x1000}, "outside guest RAM"),
    ("inject-gpio", {"pa": "0x60000000"}, "outside guest RAM"),
    ("inject-arm-processor", {"mpidr": 2 ** 64, "type": "cache"}, "does not fit in 64 bits"),
    ("inject-arm-processor", {"mpidr": 0, "type": "cache", "va": -5}, "does not fit in 64 bits"),
    ("poison", {"pa": 2 ** 64 + 0x40001000}, "below 2^48"),
])
def test_out_of_range_addresses_are_refused(server: ControlServer, command: str, arguments: dict[str, Any],
                                            needle: str) -> None:
    line = json.dumps({"execute": command, "arguments": arguments, "id": 1}).encode()
    reply = strict(server.handle_line(line))
    assert "error" in reply and needle in reply["error"]["desc"], reply
    assert reply["error"]["class"] in ("InvalidParameter", "GuestAddressError", "GenericError")
    assert server.machine.sources.by_id(1).records_written == 0


def test_fifty_clients_connecting_at_once_all_get_replies(server: ControlServer) -> None:
    # Connect all fifty before reading anything, with a timeout set as `armras inject`
    # does, i.e. a non-blocking connect: a full listen backlog is EAGAIN at once.
    socks = []
    try:
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(s)
            s.settimeout(20)
            s.connect(str(server.config.path))
        replies: dict[int, Any] = {}

        def ask(i: int, s: socket.socket) -> None:
            stream = s.makefile("rwb")
            assert "QMP" in json.loads(stream.readline())
            stream.write(json.dumps({"execute": "qmp_capabilities", "id": i}).encode() + b"\n")
            stream.flush()
            replies[i] = json.loads(stream.readline())

        threads = [threading.Thread(target=ask, args=(i, s)) for i, s in enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert replies == {i: {"return": {}, "id": i} for i in range(50)}
    finally:
        for s in socks:
            s.close()


def test_query_status_reply_is_finite_json(server: ControlServer) -> None:
    reply = strict(server.handle_line(b'{"execute": "query-status", "id": 1.5}'))
    assert reply["id"] == 1.5 and reply["return"]["status"] == "running"
    assert math.isfinite(reply["return"]["guest_seconds"])


@pytest.mark.parametrize("arguments,needle", [
    ({}, "missing argument 'aet'"),
    ({"aet": "fatal"}, "unknown aet 'fatal' (expected uc | ue | uer | ueo | ce)"),
    ({"aet": 6}, "unknown aet 6"),
    ({"aet": "ce", "cpu": 8}, "cpu=8 is not a CPU index (0-7)"),
    ({"aet": "ce", "cpu": 1}, "cpu=1: the board has 1 CPU(s)"),
    ({"aet": "ce", "pa": "0x40000000"}, "unexpected argument 'pa'"),
])
def test_inject_serror_bad_arguments_are_refused(server: ControlServer, arguments: dict[str, Any],
                                                 needle: str) -> None:
    line = json.dumps({"execute": "inject-serror", "arguments": arguments, "id": 1}).encode()
    reply = strict(server.handle_line(line))
    assert "error" in reply and needle in reply["error"]["desc"], reply
    assert reply["error"]["class"] in ("InvalidParameter", "GenericError")
    assert server.machine.vcpus[0].serror is None


def test_inject_serror_pends_and_a_second_one_merges(server: ControlServer) -> None:
    # The board has not run: PSTATE.A is masked as out of reset, so both stay pending.
    first = strict(server.handle_line(b'{"execute": "inject-serror", "arguments": {"aet": "ueo"}, "id": 1}'))
    assert first["return"] == {"cpu": 0, "aet": "ueo", "esr": 0xBE000811, "merged": False}
    second = strict(server.handle_line(b'{"execute": "inject-serror", "arguments": {"aet": "UER", "cpu": 0}}'))
    assert second["return"] == {"cpu": 0, "aet": "uer", "esr": 0xBE000C11, "merged": True}
    status = strict(server.handle_line(b'{"execute": "query-status"}'))["return"]
    assert status["cpus"][0]["serror_pending"] == 0xBE000C11 and status["cpus"][0]["serrors_taken"] == 0
