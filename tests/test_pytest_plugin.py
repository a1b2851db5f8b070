"""The pytest plugin (armras/pytest_plugin.py): the armras_boot fixture boots, tears down,
and keeps the console and event logs of a failed test; tested with pytest's pytester.

The inner runs load the plugin with `-p armras.pytest_plugin`, the name its pytest11 entry
point has, so an installed armras (which registers the entry point) loads it only once.
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "armras.pytest_plugin")


def _inner(pytester: pytest.Pytester, guest_images: Path, body: str) -> None:
    pytester.makepyfile(test_guest=f"REF = {str(guest_images / 'ras_ref.elf')!r}\n{body}")


def test_failed_test_keeps_console_and_events(pytester: pytest.Pytester, guest_images: Path) -> None:
    _inner(pytester, guest_images, """
def test_passes(armras_boot):
    vm = armras_boot(REF)
    vm.wait_for("^READY")

def test_fails(armras_boot):
    vm = armras_boot(REF)
    vm.wait_for("^READY")
    vm.inject("sea:pa=0x40fa6000")
    vm.expect("ACK source=0")
    assert "the guest" == "something else"
""")
    result = pytester.runpytest(*PLUGIN, "--junitxml", "out.xml")
    result.assert_outcomes(passed=1, failed=1)
    kept = pytester.path / "armras-artifacts" / "test_guest.py_test_fails"
    assert sorted(p.name for p in kept.iterdir()) == ["console.log", "events.jsonl"]
    assert "ACK source=0 read_ack=0x1" in (kept / "console.log").read_text()
    events = (kept / "events.jsonl").read_text()
    assert '"event": "read_ack"' in events and events.rstrip().endswith(
        '"reason": "closed by the armras Python API"}')
    # Nothing kept for the passing test.
    assert [p.name for p in (pytester.path / "armras-artifacts").iterdir()] == ["test_guest.py_test_fails"]
    # The failure report says where the logs are and shows the last console lines.
    result.stdout.fnmatch_lines(["*armras guest logs*", f"console log: {kept / 'console.log'}",
                                 f"events: {kept / 'events.jsonl'}", "*last console lines*", "ACK source=0*"])
    case = next(c for c in ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
                if c.get("name") == "test_fails")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {"armras_console_log": str(kept / "console.log"), "armras_events": str(kept / "events.jsonl")}


def test_artifact_dir_option_and_several_guests(pytester: pytest.Pytester, guest_images: Path,
                                                tmp_path: Path) -> None:
    _inner(pytester, guest_images, """
def test_two(armras_boot):
    a, b = armras_boot(REF), armras_boot(REF)
    a.wait_for("^READY")
    b.wait_for("^HEST source=0")
    raise RuntimeError("boom")
""")
    result = pytester.runpytest(*PLUGIN, "--armras-artifacts", str(tmp_path / "kept"))
    result.assert_outcomes(failed=1)
    kept = tmp_path / "kept" / "test_guest.py_test_two"
    assert sorted(p.name for p in kept.iterdir()) == ["console.log", "events.jsonl", "vm2.console.log",
                                                      "vm2.events.jsonl"]
    assert "READY" in (kept / "console.log").read_text()
    assert "READY" not in (kept / "vm2.console.log").read_text()


def test_fixture_tears_the_guest_down(pytester: pytest.Pytester, guest_images: Path) -> None:
    _inner(pytester, guest_images, """
kept = []

def test_leaves_it_running(armras_boot):
    vm = armras_boot(REF)
    vm.wait_for("^READY")
    kept.append(vm)

def test_it_is_off():
    vm = kept[0]
    assert not vm.running and vm.exit_status == 0
    assert vm._thread.is_alive() is False
    assert vm.events[-1]["event"] == "power_off"
""")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)
    assert not (pytester.path / "armras-artifacts").exists()


def test_a_boot_error_fails_the_test_with_one_line(pytester: pytest.Pytester, guest_images: Path) -> None:
    _inner(pytester, guest_images, """
def test_bad(armras_boot):
    armras_boot(REF, memory="3M")
""")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ArmrasError*3M*"])


def test_entry_point_is_registered_under_the_module_name() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"armras.pytest_plugin": "armras.pytest_plugin"}


def test_plugin_given_twice_is_one_plugin(pytester: pytest.Pytester) -> None:
    # As when the entry point is installed and a user also passes -p: no "already registered".
    pytester.makepyfile(test_x="def test_x(armras_boot):\n    assert callable(armras_boot)\n")
    pytester.runpytest(*PLUGIN, *PLUGIN).assert_outcomes(passed=1)
