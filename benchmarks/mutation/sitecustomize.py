"""Imported by every Python process that benchmarks/mutation.sh starts (it is on PYTHONPATH).

mutmut 3 learns which tests reach which function ("stats") inside its own process only,
but many armras tests run armras in a child process (`armras regress`, `armras run
--control`, the CLI). In a child started while mutmut collects stats, record each
function the trampolines reach in the file named by ARMRAS_MUTMUT_CHILD_HITS instead;
mutation_stats_plugin.py (in the parent) adds them to the test that started the child.
Anywhere else this does nothing.
"""
import os

_hits_file = os.environ.get("ARMRAS_MUTMUT_CHILD_HITS")

if _hits_file and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    import mutmut.mutation.trampoline as _trampoline

    _seen: set = set()

    def _record_in_file(name: str, caller: object = None) -> None:
        if name not in _seen:
            _seen.add(name)
            with open(_hits_file, "a") as f:
                f.write(name + "\n")

    _trampoline.record_trampoline_hit = _record_in_file
