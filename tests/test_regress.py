"""`armras regress`: the shipped scenarios pass, JUnit XML parses back with the right
counts, a wrong expectation fails naming it, bad scenario files are one-line errors, and
Linux scenarios skip cleanly where Linux cannot run."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from armras.drive import regress
from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
SCENARIOS = REPO / "scenarios"
BARE_METAL = sorted(p for p in SCENARIOS.glob("*.toml") if "kernel" not in p.read_text())


def regress_cli(*args: str, timeout: float = 300, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "armras", "regress", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_shipped_bare_metal_scenarios_pass_with_junit(tmp_path: Path, guest_images: Path) -> None:
    assert len(BARE_METAL) >= 6
    junit = tmp_path / "out.xml"
    logs = tmp_path / "logs"
    linux = sorted(set(SCENARIOS.glob("*.toml")) - set(BARE_METAL))
    assert len(linux) == 21
    # An empty kernel cache: the Linux scenarios must skip, not fetch or fail.
    proc = regress_cli(*map(str, BARE_METAL + linux), "--junit", str(junit), "--jobs", "4", "--log-dir", str(logs),
                       env={**ENV, "ARMRAS_CACHE": str(tmp_path / "empty-cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("ref-sea-ack", "ref-gpio-memory", "ref-arm-processor", "ref-refused-before-ack",
                 "el0-poison", "exception-entry"):
        assert f"[PASS] {name} (" in proc.stdout
        assert (logs / f"{name}.log").stat().st_size > 0
    for series in ("6.1", "6.12"):
        assert f"[SKIP] linux-{series}-sea: " in proc.stdout
        assert f"[SKIP] linux-{series}-smp: " in proc.stdout
        assert f"[SKIP] linux-{series}-firmware-first: " in proc.stdout
        assert f"[SKIP] linux-{series}-einj: " in proc.stdout
    assert "[SKIP] linux-6.1-serror-ce: " in proc.stdout and "[SKIP] linux-6.12-serror-uc: " in proc.stdout
    assert "[SKIP] linux-6.12-pcie-aer: " in proc.stdout
    assert f"{len(BARE_METAL)} passed, 0 failed, 21 skipped" in proc.stdout

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(BARE_METAL) + 21), "0", "21")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["linux-6.12-sea"].find("skipped") is not None
    assert cases["linux-6.12-smp"].find("skipped") is not None
    assert all(c.find("failure") is None for c in cases.values())
    assert float(cases["ref-sea-ack"].get("time", "0")) > 0
    # The refusal scenario's log ends with armras's own error line.
    assert "armras: error: GHES source 0: the guest has not acknowledged" in (logs / "ref-refused-before-ack.log").read_text()


def test_wrong_expectation_fails_naming_it(tmp_path: Path, guest_images: Path) -> None:
    bad = tmp_path / "wrong.toml"
    bad.write_text(f"""
name = "wrong-expectation"
image = "{guest_images / 'ras_ref.elf'}"
deterministic = true
[[step]]
wait = "^READY"
[[step]]
inject = "sea:pa=0x40fa6000"
[[step]]
expect = "^DONE sea=2 "
""")
    good = SCENARIOS / "exc_entry.toml"
    junit = tmp_path / "out.xml"
    proc = regress_cli(str(bad), str(good), "--junit", str(junit), "--log-dir", str(tmp_path / "logs"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[FAIL] wrong-expectation: step 3 (expect = '^DONE sea=2 ') not found" in proc.stdout
    assert "[PASS] exception-entry" in proc.stdout
    assert "1 passed, 1 failed, 0 skipped" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = next(c for c in suite.iter("testcase") if c.get("name") == "wrong-expectation").find("failure")
    assert failure is not None and "expect = '^DONE sea=2 '" in failure.get("message", "")
    assert "DONE sea=1" in (failure.text or "")        # the log tail shows what happened instead


def test_bad_scenario_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        "typo.toml": ('image = "x.elf"\n[[step]]\nwiat = "READY"\n', "step 1: unknown key 'wiat'"),
        "both.toml": ('image = "x.elf"\nkernel = "debian:6.1"\n', "exactly one of image"),
        "regex.toml": ('image = "x.elf"\n[[step]]\nexpect = "(oops"\n', "bad regex"),
        "spec.toml": ('image = "x.elf"\n[[step]]\ninject = "mce:pa=1"\n', "unknown kind"),
        "group.toml": ('image = "x.elf"\n[[step]]\npoison = "$1"\n', "no wait step comes before"),
        "toml.toml": ('image = \n', "not valid TOML"),
    }
    for name, (text, needle) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        proc = regress_cli(str(path), "--log-dir", str(tmp_path / "logs"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("armras: error: "), proc.stderr
        assert needle in lines[0] and name in lines[0], proc.stderr
    proc = regress_cli(str(tmp_path / "missing.toml"))
    assert proc.returncode == 1 and "cannot read scenario" in proc.stderr


def test_linux_scenarios_parse_and_skip_without_linux_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for series in ("6_1", "6_12"):
        scenario = regress.load_scenario(SCENARIOS / f"linux_{series}_sea.toml")
        assert scenario.kernel == f"debian:{series.replace('_', '.')}" and scenario.image is None
        assert [s.kind for s in scenario.steps][:2] == ["wait", "poison"]
        real_find_spec = regress.importlib.util.find_spec
        monkeypatch.setattr(regress.importlib.util, "find_spec",
                            lambda name, *a: None if name == "armras.guests.linux" else real_find_spec(name, *a))
        outcome = regress.run_scenario(scenario, tmp_path / "linux.log")
        assert (outcome.outcome, outcome.reason) == ("skip", "Linux boot not available")


FAILING = {
    # name: (steps, the problem armras regress must report)
    "fires-expect-not": ('wait = "^READY"\n[[step]]\ninject = "sea:pa=0x40fa6000"\n[[step]]\n'
                         'expect_not = "^CPER section=memory"',
                         "step 3 (expect_not = '^CPER section=memory') matched: "
                         "'CPER section=memory pa=0x0000000040fa6000'"),
    "wrong-exit": ('wait = "^READY"\n[[step]]\nexpect = "^DONE sea=0 "\n[[step]]\nexit = 3',
                   "exit status 0, expected 3"),
    "out-of-order": ('wait = "^READY"\n[[step]]\ninject = "sea:pa=0x40fa6000"\n[[step]]\n'
                     'expect = "^ACK source=0"\n[[step]]\nexpect = "^SEA ESR="',
                     "step 4 (expect = '^SEA ESR=') not found after step 3 (expect = '^ACK source=0') "
                     "(it appears earlier: out of order)"),
    "never-matches": ('wait = "^NO SUCH LINE"\n[[step]]\ninject = "sea:pa=0x40fa6000"',
                      "step 1 (wait = '^NO SUCH LINE'): no console line matched"),
}


def test_each_kind_of_failure_is_reported_and_counted(tmp_path: Path, guest_images: Path) -> None:
    paths = []
    for name, (steps, _) in FAILING.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(f'name = "{name}"\nimage = "{guest_images / "ras_ref.elf"}"\ndeterministic = true\n'
                        f'timeout = 30\n[[step]]\n{steps}\n')
        paths.append(str(path))
    junit = tmp_path / "out.xml"
    proc = regress_cli(*paths, str(SCENARIOS / "ref_sea_ack.toml"), "--junit", str(junit), "--jobs", "2",
                       "--log-dir", str(tmp_path / "logs"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name, (_, problem) in FAILING.items():
        assert f"[FAIL] {name}: {problem}\n" in proc.stdout, proc.stdout
    assert "[PASS] ref-sea-ack (" in proc.stdout
    assert "1 passed, 4 failed, 0 skipped" in proc.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "4", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    for name, (_, problem) in FAILING.items():
        failure = cases[name].find("failure")
        assert failure is not None and failure.get("message") == problem
    assert cases["ref-sea-ack"].find("failure") is None
    # The refused wait never injected: the guest ran to DONE without an SEA.
    assert "DONE sea=0 " in (tmp_path / "logs" / "never-matches.log").read_text()


def test_exit_status_mismatch_alone_fails_the_scenario(tmp_path: Path) -> None:
    # check_log directly: every expectation met but the exit status differs.
    scenario = tmp_path / "s.toml"
    scenario.write_text('image = "x.elf"\n[[step]]\nexpect = "^OK$"\n[[step]]\nexit = 7\n')
    s = regress.load_scenario(scenario)
    assert regress.check_log(s, "OK\n", 7, None) == []
    assert regress.check_log(s, "OK\n", 0, None) == ["exit status 0, expected 7"]
    assert regress.check_log(s, "OK\narmras: error: boom\n", 1, None) == \
        ["exit status 1, expected 7 (armras: error: boom)"]
