"""The mutation score table (README.md, "Mutation testing") from mutmut's results in ./mutants.

    python3 benchmarks/mutation/score.py [--survivors]

Per module group: mutants, killed (a test failed, or the run timed out or crashed), equivalent
(listed with the reason in benchmarks/mutation-equivalent.md: no test can tell them apart from
the original), survived (every test passed, or no test reached the mutant), not yet run, and
score = killed / (mutants - equivalent). --survivors lists the surviving mutants: name,
file:line and the mutated line before/after (run from the repository root).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = ROOT / "benchmarks" / "mutation-equivalent.md"
GROUPS = {   # group -> the files mutated (as in benchmarks/mutation.sh)
    "armras/ras": ["armras/ras/*.py"],
    "armras/devices": ["armras/devices/*.py"],
    "armras/arch/cpu.py": ["armras/arch/cpu.py"],
    "armras/timing": ["armras/timing/*.py"],
    "armras/drive/regress.py": ["armras/drive/regress.py"],
}
KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9}    # mutmut: killed, timeout, segfault
SURVIVED = {0, 5, 33}                               # mutmut: survived, no tests


def equivalent_names() -> set[str]:
    if not EQUIVALENT.exists():
        return set()
    return set(re.findall(r"`(armras\.[^`\s]+__mutmut_\d+)`", EQUIVALENT.read_text()))


def results(pattern: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants").glob(pattern + ".meta")):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def _function_lines(source: str, name: str) -> tuple[int, int]:
    """First and last line of the function a mutant name ("x_f" or "xǁClassǁf") is in."""
    import ast

    key = name.split("__mutmut_")[0].rsplit(".", 1)[-1]
    cls, func = (key.split("ǁ")[1:3] if key.startswith("xǁ") else (None, key[2:]))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls or cls is None and isinstance(node, ast.Module):
            for f in node.body:
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == func:
                    start = min([f.lineno] + [d.lineno for d in f.decorator_list])
                    return start, f.end_lineno or start
    return 1, len(source.splitlines())


def describe(name: str) -> str:
    """`name  file:line` and the diff's changed lines (mutmut's own diff of the function)."""
    import os

    from mutmut.mutation.diff_apply import get_diff_for_mutant
    module = name.split("__mutmut_")[0]
    parts = module.split(".")
    path = None
    for i in range(len(parts), 0, -1):
        candidate = Path(*parts[:i]).with_suffix(".py")
        if (ROOT / candidate).exists():
            path = candidate
            break
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        diff = get_diff_for_mutant(name, path=path)
    finally:
        os.chdir(cwd)
    changed = [line for line in diff.splitlines() if line[:1] in "-+" and line[:3] not in ("---", "+++")]
    source = (ROOT / path).read_text() if path else ""
    first, last = _function_lines(source, name)
    lines = source.splitlines()
    removed = [line[1:] for line in changed if line.startswith("-")]
    lineno = next((i + 1 for i in range(first - 1, min(last, len(lines)))
                   if removed and lines[i].strip() == removed[0].strip()), "?")
    return f"{name}  {path}:{lineno}\n" + "\n".join("    " + line for line in changed)


def main() -> int:
    equivalent = equivalent_names()
    rows, survivors = [], []
    for group, patterns in GROUPS.items():
        codes: dict[str, int | None] = {}
        for p in patterns:
            codes.update(results(p))
        eq = {k for k in codes if k in equivalent}
        killed = sum(1 for k, c in codes.items() if k not in eq and c in KILLED)
        surv = [k for k, c in codes.items() if k not in eq and c in SURVIVED]
        not_run = sum(1 for k, c in codes.items() if k not in eq and c not in KILLED and c not in SURVIVED)
        survivors += surv
        n = len(codes)
        score = killed / (n - len(eq)) if n - len(eq) else 0.0
        rows.append((group, n, killed, len(eq), len(surv), not_run, score))
    print("| module group | mutants | killed | equivalent | survived | not run | score |")
    print("|---|---|---|---|---|---|---|")
    for group, n, killed, eq, surv, not_run, score in rows:
        print(f"| `{group}` | {n} | {killed} | {eq} | {surv} | {not_run} | {score:.1%} |")
    tot = [sum(r[i] for r in rows) for i in range(1, 6)]
    score = tot[1] / (tot[0] - tot[2]) if tot[0] - tot[2] else 0.0
    print(f"| all | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} | {tot[4]} | {score:.1%} |")
    if "--survivors" in sys.argv[1:]:
        print("\nsurviving mutants:")
        for name in sorted(survivors):
            print(describe(name))
    stale = equivalent - {k for p in GROUPS.values() for pat in p for k in results(pat)}
    if stale:
        print(f"\nbenchmarks/mutation-equivalent.md names {len(stale)} mutants mutmut no longer makes "
              f"(the code changed): {', '.join(sorted(stale)[:5])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
