"""Mutation testing of one module against the tests written for it (a fast pass before mutmut's).

    python3 benchmarks/mutation/focus.py armras/devices/einj.py tests/test_einj.py [--jobs 2]
    python3 benchmarks/mutation/focus.py armras/devices/einj.py tests/test_einj.py --survivors
    python3 benchmarks/mutation/focus.py armras/ras/cper.py tests/test_cper.py --since 31028f9 --in-process

mutmut (`benchmarks/mutation.sh`) runs each mutant against every test that reaches the mutated
function: for a device every test that builds a board, minutes per surviving mutant. This runs
the mutants mutmut generated in ./mutants (any `benchmarks/mutation.sh` run generates all of
them first) against the module's own test files, two at a time, the way mutmut does
(MUTANT_UNDER_TEST, `pytest -x`; a run that hangs past --timeout counts as killed, as mutmut's
timeouts do). A mutant those tests kill is killed; the survivors are what new tests or
benchmarks/mutation-equivalent.md must answer. Verdicts are kept in
mutants/focus-<module>.json; --survivors reruns only the survivors (after tests were added),
copying the named test files into ./mutants first. --since COMMIT takes only the mutants of
functions whose source changed since COMMIT (the rest keep the verdicts of the run made then).
--in-process runs the mutants inside --jobs long-lived pytest processes (mutmut's trampoline
reads MUTANT_UNDER_TEST at every call), about ten times faster for small tests; a test that
starts armras in a child process gives that child the environment it copied at import, so
every survivor is then run again in a process of its own before it counts as survived.

The last line is the module's score: killed (here or by mutmut) / (mutants - equivalent).
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from score import KILLED as MUTMUT_KILLED, ROOT, equivalent_names     # (this script's directory)

MUTANTS = ROOT / "mutants"


def module_mutants(module: str) -> dict[str, int | None]:
    """name -> mutmut's exit code (None: not run by mutmut) for every mutant of `module`."""
    meta = MUTANTS / (module + ".meta")
    if not meta.exists():
        sys.exit(f"focus.py: no {meta.relative_to(ROOT)}: run benchmarks/mutation.sh once to generate the mutants")
    return json.loads(meta.read_text())["exit_code_by_key"]


def _functions(source: str) -> dict[str, str]:
    """mutmut's name for each top-level function and method ("x_f", "xǁClassǁf") -> its AST."""
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[f"x_{node.name}"] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"x\u01c1{node.name}\u01c1{sub.name}"] = ast.dump(sub)
    return out


def changed_functions(module: str, commit: str) -> set[str]:
    """Dotted mutmut prefixes of the functions of `module` whose source differs from `commit`'s."""
    proc = subprocess.run(["git", "show", f"{commit}:{module}"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 and "exists on disk, but not in" not in proc.stderr \
            and "does not exist in" not in proc.stderr:
        sys.exit(f"focus.py: --since {commit}: {proc.stderr.strip().splitlines()[-1]}")
    old = _functions(proc.stdout) if proc.returncode == 0 else {}
    dotted = ".".join(Path(module).with_suffix("").parts)
    return {f"{dotted}.{name}" for name, body in _functions((ROOT / module).read_text()).items()
            if old.get(name) != body}


def pytest_args(tests: list[str], deselect: list[str]) -> list[str]:
    return ["-x", "-q", "-p", "no:cacheprovider", "-m", "not kernel",
            *[arg for node in deselect for arg in ("--deselect", node)], *tests]


def run_one(name: str, tests: list[str], timeout: float, deselect: list[str] = []) -> str:
    env = {**os.environ, "MUTANT_UNDER_TEST": name}
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", *pytest_args(tests, deselect)], cwd=MUTANTS,
                              env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed"
    return "survived" if proc.returncode == 0 else "killed"


def worker(names_file: str, out_file: str, timeout: float, args: list[str]) -> int:
    """--in-process: run each named mutant with pytest.main in this process; verdicts as JSON lines."""
    import signal

    import pytest

    sys.path.insert(0, os.getcwd())

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError("mutant ran too long")

    signal.signal(signal.SIGALRM, hang)
    with open(out_file, "a", encoding="utf-8") as out:
        for name in Path(names_file).read_text().split():
            os.environ["MUTANT_UNDER_TEST"] = name
            signal.alarm(max(1, int(timeout)))
            try:
                with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                    code = pytest.main(list(args))
            except BaseException:          # a hang, or pytest itself broken by the mutant: caught
                code = 1
            finally:
                signal.alarm(0)
            out.write(json.dumps({name: "survived" if code == 0 else "killed"}) + "\n")
            out.flush()
    return 0


def run_in_process(todo: list[str], tests: list[str], deselect: list[str], jobs: int,
                   timeout: float) -> dict[str, str]:
    """Split `todo` over `jobs` worker processes; their verdicts (survivors not yet rechecked)."""
    verdicts: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="focus-") as tmp:
        procs = []
        for i in range(jobs):
            share = todo[i::jobs]
            if not share:
                continue
            names, out = Path(tmp) / f"names{i}", Path(tmp) / f"out{i}"
            names.write_text("\n".join(share))
            procs.append((subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(names),
                                            str(out), str(timeout), "--", *pytest_args(tests, deselect)],
                                           cwd=MUTANTS), out))
        for proc, out in procs:
            proc.wait()
            if out.exists():
                for line in out.read_text().splitlines():
                    verdicts.update(json.loads(line))
    return verdicts


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        names_file, out_file, timeout, dashdash, *args = sys.argv[2:]
        return worker(names_file, out_file, float(timeout), args)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the module's path, e.g. armras/devices/einj.py")
    parser.add_argument("tests", nargs="+", help="test files (or node ids) to run against each mutant")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a mutant counts as a hang")
    parser.add_argument("--survivors", action="store_true", help="rerun only the survivors of an earlier pass")
    parser.add_argument("--since", metavar="COMMIT",
                        help="only the mutants of functions whose source changed since COMMIT")
    parser.add_argument("--in-process", action="store_true",
                        help="run mutants inside --jobs pytest processes; survivors are rerun one process each")
    parser.add_argument("--deselect", action="append", default=[], metavar="NODEID",
                        help="leave a test out (e.g. one that takes long), as pytest's --deselect")
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
    if args.since:
        changed = changed_functions(module, args.since)
        todo = [n for n in todo if n.split("__mutmut_")[0] in changed]
    print(f"{module}: {len(todo)} mutants to run against {' '.join(args.tests)}", flush=True)
    if args.in_process and todo:
        first = run_in_process(todo, args.tests, args.deselect, args.jobs, args.timeout)
        for name, verdict in first.items():
            if verdict == "killed":
                verdicts[name] = verdict
        store.write_text(json.dumps(verdicts, indent=0, sort_keys=True))
        todo = [n for n in todo if n not in verdicts or verdicts[n] != "killed"]
        print(f"{module}: {len(todo)} survived in-process; each again in a process of its own", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, verdict in zip(todo, pool.map(lambda n: run_one(n, args.tests, args.timeout, args.deselect),
                                                todo)):
            verdicts[name] = verdict
            store.write_text(json.dumps(verdicts, indent=0, sort_keys=True))
            if verdict == "survived" and name not in equivalent:
                print(f"survived: {name}", flush=True)

    names = [n for n in mutmut if n.startswith(prefix)] or list(mutmut)
    if args.since:                # the score of what changed; the rest stands on the earlier run
        names = [n for n in names if n.split("__mutmut_")[0] in changed]
    killed = sum(1 for n in names if mutmut[n] in MUTMUT_KILLED or verdicts.get(n) == "killed")
    equiv = sum(1 for n in names if n in equivalent and not (mutmut[n] in MUTMUT_KILLED or verdicts.get(n) == "killed"))
    survived = sum(1 for n in names if verdicts.get(n) == "survived" and n not in equivalent)
    not_run = len(names) - killed - equiv - survived
    score = killed / (len(names) - equiv) if len(names) > equiv else 1.0
    print(f"{module}{f' (functions changed since {args.since})' if args.since else ''}: "
          f"{len(names)} mutants, {killed} killed, {equiv} equivalent, {survived} survived, "
          f"{not_run} not run: {100 * score:.1f}%")
    return 0 if survived == 0 and not_run == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
