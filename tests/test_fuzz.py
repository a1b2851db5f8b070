"""Property tests for everything that parses user input: the injection grammar, scenario
files and the control protocol. The only outcomes allowed are a parsed value or
ArmrasError (an {"error": ...} reply on the socket) -- never another exception."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armras.drive.control import ControlConfig, ControlServer
from armras.errors import ArmrasError
from armras.drive.inject import InjectSpec, parse_inject_spec
from armras.drive.regress import Scenario, load_scenario
from conftest import Board

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

NUMBERS = st.one_of(
    st.integers(min_value=-(2 ** 80), max_value=2 ** 80).map(str),
    st.integers(min_value=0, max_value=2 ** 80).map(hex),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e400", "0x", "-0", "1_000", "0b101", "0o17", " 1", "$1", "$name"]),
)
VALUES = st.one_of(NUMBERS, st.text(max_size=12), st.sampled_from(["fatal", "cache", "tlb,bus", "^READY", "("]))
KEYS = st.sampled_from(["pa", "severity", "at", "insn", "on", "mpidr", "va", "type", "bogus", "", " pa"])


@st.composite
def inject_specs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["sea", "gpio", "arm", "SEA", "mce", ""]))
    items = draw(st.lists(st.tuples(KEYS, VALUES), max_size=5))
    body = ",".join(f"{k}={v}" for k, v in items)
    return f"{kind}:{body}" if draw(st.booleans()) or body else kind


@FUZZ
@given(st.one_of(inject_specs(), st.text(max_size=60)))
def test_inject_grammar_parses_or_refuses(text: str) -> None:
    try:
        spec = parse_inject_spec(text)
    except ArmrasError as e:
        assert str(e) and "\n" not in str(e).strip()
        return
    assert isinstance(spec, InjectSpec)
    if spec.at is not None:
        assert math.isfinite(spec.at) and 0 <= spec.at
    if spec.insn is not None:
        assert 0 <= spec.insn < 2 ** 63
    for field in (spec.va, spec.mpidr):
        assert field is None or 0 <= field < 2 ** 64


# --- scenario files ----------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf"}.get(repr(value), "nan" if math.isnan(value) else repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


SCALARS = st.one_of(st.booleans(), st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["512M", "0", "100G", "x.elf", "debian:6.1", "sea:pa=0x40000000",
                                     "sea:pa=$1,on=PADDR=(0x[0-9a-f]+)", "^READY", "$1", "(", "[", "16M"]))
TOML_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
TOP = st.sampled_from(["name", "description", "image", "kernel", "initrd", "append", "memory", "timeout",
                       "deterministic", "bogus"])
STEP = st.sampled_from(["wait", "inject", "poison", "expect", "expect_not", "exit", "wiat"])


@st.composite
def scenario_texts(draw: st.DrawFn) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in draw(st.dictionaries(TOP, TOML_VALUES, max_size=6)).items()]
    for step in draw(st.lists(st.dictionaries(STEP, TOML_VALUES, max_size=2), max_size=4)):
        lines.append("[[step]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in step.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.toml"


@FUZZ
@given(st.one_of(scenario_texts(), st.text(max_size=200), st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_scenario_loader_parses_or_refuses(scenario_file: Path, text: str) -> None:
    scenario_file.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        scenario = load_scenario(scenario_file)
    except ArmrasError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(scenario, Scenario)
    assert math.isfinite(scenario.timeout) and 0 < scenario.timeout <= 1e6
    assert scenario.memory is None or (16 << 20 <= scenario.memory <= 16 << 30 and scenario.memory % (2 << 20) == 0)


# --- the control protocol -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlServer]:
    board = Board("1: b 1b\n")
    board.machine.defer = lambda action, description: action()  # type: ignore[method-assign]
    srv = ControlServer(board.machine, ControlConfig(tmp_path_factory.mktemp("ctl") / "s", reply_timeout=2.0))
    try:
        yield srv
    finally:
        board.close()


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
              st.sampled_from(["0x40fa6000", "0x1000", "fatal", "cache", "AAAA", "_start"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children,
                                                                               max_size=3)),
    max_leaves=10,
)
COMMANDS = st.sampled_from(["inject-sea", "inject-gpio", "inject-arm-processor", "poison", "query-hest", "query-ack",
                            "query-status", "stop", "cont", "qmp_capabilities", "nope"])
ARG_NAMES = st.sampled_from(["pa", "severity", "cper", "mpidr", "type", "va", "bogus"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    request: dict[str, Any] = {"execute": draw(st.one_of(COMMANDS, JSON))}
    if draw(st.booleans()):
        request["arguments"] = draw(st.one_of(st.dictionaries(ARG_NAMES, JSON, max_size=4), JSON))
    if draw(st.booleans()):
        request["id"] = draw(JSON)
    if draw(st.integers(0, 9)) == 0:
        request[draw(st.text(max_size=4))] = draw(JSON)
    return json.dumps(request, allow_nan=True).encode()


@FUZZ
@given(st.one_of(requests(), st.binary(max_size=80), JSON.map(lambda v: json.dumps(v, allow_nan=True).encode())))
def test_control_protocol_replies_to_anything(server: ControlServer, line: bytes) -> None:
    reply = server.handle_line(line)
    assert isinstance(reply, dict) and ("return" in reply) != ("error" in reply), reply
    json.dumps(reply, allow_nan=False)                 # strict JSON, whatever came in
    if "error" in reply:
        assert set(reply["error"]) == {"class", "desc"}
        assert "internal error" not in reply["error"]["desc"], reply
