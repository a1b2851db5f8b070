"""pytest plugin for the mutmut run (benchmarks/mutation.sh, `-p mutation_stats_plugin`).

While mutmut collects stats, names a file for child processes to record the functions they
reach (see sitecustomize.py) and, after each test, adds them to the functions mutmut saw the
test reach in-process, so a mutant reached only through `armras regress` or `armras run`
in a child still gets the tests that can kill it.
"""
from __future__ import annotations

import os
import tempfile

import pytest

_hits_file: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _hits_file
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    fd, _hits_file = tempfile.mkstemp(prefix="armras-mutmut-hits-")
    os.close(fd)
    os.environ["ARMRAS_MUTMUT_CHILD_HITS"] = _hits_file


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _hits_file is None:
        return
    from mutmut.state import state

    with open(_hits_file, "r+") as f:
        names = {line.strip() for line in f if line.strip()}
        f.truncate(0)
    state()._stats.update(names)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _hits_file
    if _hits_file is not None:
        os.environ.pop("ARMRAS_MUTMUT_CHILD_HITS", None)
        os.unlink(_hits_file)
        _hits_file = None
