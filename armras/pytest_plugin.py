"""pytest plugin (entry point `pytest11`): the `armras_boot` fixture.

    def test_recovers(armras_boot):
        vm = armras_boot(kernel="debian:6.1", initrd="initramfs.cpio", append="console=ttyAMA0 seatest")
        vm.poison(int(vm.wait_for(r"PADDR=(0x[0-9a-f]+)").group(1), 16))
        vm.expect(r"Recovered")

`armras_boot(**kwargs)` is armras.boot (armras.api) with the console and the event log
written under the test's temporary directory. Every guest the test booted is powered off
when the test ends. When the test fails, its console logs and event logs are kept in
`--armras-artifacts DIR` (ini `armras_artifacts`, default `armras-artifacts` under the
rootdir), one directory per test, named after the test's node id, and the report says
where, with the last console lines; the JUnit XML (`--junitxml`) gets them as properties
`armras_console_log` / `armras_events`. A passing test leaves nothing there.

Importing this module imports nothing heavy: the emulator loads when a test boots.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from armras.api import VM

DEFAULT_ARTIFACTS = "armras-artifacts"
TAIL_LINES = 20
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("armras", "armras guests (armras_boot fixture)")
    group.addoption("--armras-artifacts", default=None, metavar="DIR",
                    help=f"keep the console and event logs of failed tests' guests here "
                         f"(default: ini armras_artifacts, else {DEFAULT_ARTIFACTS}/ under the rootdir)")
    parser.addini("armras_artifacts", "where the armras_boot fixture keeps failed tests' logs",
                  default=DEFAULT_ARTIFACTS)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()   # type: ignore[attr-defined]
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _artifact_root(config: pytest.Config) -> Path:
    value = config.getoption("armras_artifacts") or config.getini("armras_artifacts") or DEFAULT_ARTIFACTS
    path = Path(value)
    return path if path.is_absolute() else config.rootpath / path


def _test_dir_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_.")[:150] or "test"


@pytest.fixture
def armras_boot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., VM]]:
    """Boot armras guests (armras.boot's arguments); each is powered off after the test."""
    from armras.api import boot

    booted: list[tuple[VM, Path, Path]] = []

    def make(*args: Any, **kwargs: Any) -> VM:
        n = len(booted) + 1
        prefix = "" if n == 1 else f"vm{n}."
        console, events = tmp_path / f"{prefix}console.log", tmp_path / f"{prefix}events.jsonl"
        kwargs.setdefault("console", console)
        kwargs.setdefault("events", events)
        vm = boot(*args, **kwargs)
        booted.append((vm, Path(kwargs["console"]), Path(kwargs["events"])))
        return vm

    yield make
    for vm, _, _ in booted:
        vm.close()
    reports = request.node.stash.get(_REPORTS, {})
    if not any(r.failed for r in reports.values()) or not booted:
        return
    dest = _artifact_root(request.config) / _test_dir_name(request.node.nodeid)
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for vm, console, events in booted:
        for what, src in (("console_log", console), ("events", events)):
            if not src.exists():
                continue
            kept = dest / src.name
            shutil.copyfile(src, kept)
            request.node.user_properties.append((f"armras_{what}", str(kept)))
            lines.append(f"{what.replace('_', ' ')}: {kept}")
        tail = vm.console.splitlines()[-TAIL_LINES:]
        lines += ["--- last console lines ---", *tail]
    report = reports.get("call") or reports.get("setup")
    if report is not None:
        report.sections.append(("armras guest logs", "\n".join(lines)))


__all__ = ["armras_boot"]
