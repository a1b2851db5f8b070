"""Mutation testing of one module against the tests written for it (a fast pass before mutmut's).

    python3 benchmarks/mutation/focus.py armras/devices/einj.py tests/test_einj.py [--jobs 2]
    python3 benchmarks/mutation/focus.py armras/devices/einj.py tests/test_einj.py --survivors

mutmut (`benchmarks/mutation.sh`) runs each mutant against every test that reaches the mutated
function: for a device every test that builds a board, minutes per surviving mutant. This runs
the mutants mutmut generated in ./mutants (any `benchmarks/mutation.sh` run generates all of
them first) against the module's own test files, two at a time, the way mutmut does
(MUTANT_UNDER_TEST, `pytest -x`; a run that hangs past --timeout counts as killed, as mutmut's
timeouts do). A mutant those tests kill is killed; the survivors are what new tests or
benchmarks/mutation-equivalent.md must answer. Verdicts are kept in
mutants/focus-<module>.json; --survivors reruns only the survivors (after tests were added),
copying the named test files into ./mutants first.

The last line is the module's score: killed (here or by mutmut) / (mutants - equivalent).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"
EQUIVALENT = ROOT / "benchmarks" / "mutation-equivalent.md"
MUTMUT_KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9}      # as score.py: killed, timeout, segfault


def module_mutants(module: str) -> dict[str, int | None]:
    """name -> mutmut's exit code (None: not run by mutmut) for every mutant of `module`."""
    meta = MUTANTS / (module + ".meta")
    if not meta.exists():
        sys.exit(f"focus.py: no {meta.relative_to(ROOT)}: run benchmarks/mutation.sh once to generate the mutants")
    return json.loads(meta.read_text())["exit_code_by_key"]


def equivalent_names() -> set[str]:
    return set(re.findall(r"`(armras\.[^`\s]+__mutmut_\d+)`", EQUIVALENT.read_text()))


def run_one(name: str, tests: list[str], timeout: float) -> str:
    env = {**os.environ, "MUTANT_UNDER_TEST": name}
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-m", "not kernel", *tests], cwd=MUTANTS, env=env, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed"
    return "survived" if proc.returncode == 0 else "killed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the module's path, e.g. armras/devices/einj.py")
    parser.add_argument("tests", nargs="+", help="test files (or node ids) to run against each mutant")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a mutant counts as a hang")
    parser.add_argument("--survivors", action="store_true", help="rerun only the survivors of an earlier pass")
    args = parser.parse_args()
    if not 1 <= args.jobs <= 64 or not 0 < args.timeout <= 86400:
        parser.error("--jobs is 1..64 and --timeout 0..86400 seconds")
    path = Path(args.module)
    if path.suffix != ".py" or not (ROOT / path).is_file():
        parser.error(f"{args.module} is not a module of the repository")
    module = str(path)
    prefix = ".".join(path.with_suffix("").parts) + "."
    for test in args.tests:
        file = test.split("::")[0]
        if not (ROOT / file).is_file():
            parser.error(f"{file} is not a test file of the repository")
        shutil.copy(ROOT / file, MUTANTS / file)

    mutmut = module_mutants(module)
    store = MUTANTS / f"focus-{module.replace('/', '.')}.json"
    verdicts: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    equivalent = equivalent_names()
    if args.survivors:
        todo = [n for n, v in verdicts.items() if v == "survived"]
    else:
        todo = [n for n, code in mutmut.items() if code not in MUTMUT_KILLED and n not in verdicts]
    print(f"{module}: {len(todo)} mutants to run against {' '.join(args.tests)}", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, verdict in zip(todo, pool.map(lambda n: run_one(n, args.tests, args.timeout), todo)):
            verdicts[name] = verdict
            store.write_text(json.dumps(verdicts, indent=0, sort_keys=True))
            if verdict == "survived" and name not in equivalent:
                print(f"survived: {name}", flush=True)

    names = [n for n in mutmut if n.startswith(prefix)] or list(mutmut)
    killed = sum(1 for n in names if mutmut[n] in MUTMUT_KILLED or verdicts.get(n) == "killed")
    equiv = sum(1 for n in names if n in equivalent and not (mutmut[n] in MUTMUT_KILLED or verdicts.get(n) == "killed"))
    survived = sum(1 for n in names if verdicts.get(n) == "survived" and n not in equivalent)
    not_run = len(names) - killed - equiv - survived
    score = killed / (len(names) - equiv) if len(names) > equiv else 1.0
    print(f"{module}: {len(names)} mutants, {killed} killed, {equiv} equivalent, {survived} survived, "
          f"{not_run} not run: {100 * score:.1f}%")
    return 0 if survived == 0 and not_run == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
