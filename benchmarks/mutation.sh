#!/usr/bin/env bash
# Mutation testing as a quality benchmark (issue 14): mutmut over armras/ras, armras/devices,
# armras/arch/cpu.py, armras/timing and armras/drive/regress.py, one module group at a time,
# then the score table README.md shows. Not run by CI (it takes hours on 2 cores).
#
#   benchmarks/mutation.sh                 # every group, then the table
#   benchmarks/mutation.sh ras devices     # some groups (ras devices cpu timing regress)
#   benchmarks/mutation.sh armras/ras/erst.py   # one module (of those the groups cover)
#   benchmarks/mutation.sh score           # the table only, from the last run's results
#
# mutmut's configuration (which files are mutated, which tests run) is [tool.mutmut] in
# pyproject.toml. It works in ./mutants (git-ignored): a copy of armras, with the native
# extension, plus the tests, guest images and scenarios; results stay there between runs,
# and a rerun only tests what changed. MUTATION_JOBS=N runs N mutants at once (default 1).
# Stopping mutmut while it writes a mutated module ("Generating mutants") can leave that
# file empty in ./mutants; delete it there and mutmut writes it again, keeping its results.
# Equivalent mutants (no observable difference) are listed in
# benchmarks/mutation-equivalent.md and counted apart by benchmarks/mutation/score.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
JOBS=${MUTATION_JOBS:-1}
declare -A PATTERN=(
    [ras]='armras.ras.*'
    [devices]='armras.devices.*'
    [cpu]='armras.arch.cpu.*'
    [timing]='armras.timing.*'
    [regress]='armras.drive.regress.*'
)
ORDER=(ras devices cpu timing regress)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=("${ORDER[@]}")

# sitecustomize.py and the pytest plugin in benchmarks/mutation/ let tests that run armras
# in a child process count for the functions the child reaches (see sitecustomize.py).
export PYTHONPATH="$PWD/benchmarks/mutation"
"$PYTHON" -c "import mutmut" 2>/dev/null || {
    echo "benchmarks/mutation.sh: mutmut is missing: python3 -m pip install -e '.[dev]'" >&2; exit 1; }
mkdir -p mutants

# Tests that run armras in a child process and take seconds each (the scenario runner, the
# control socket client, CLI checks; 5-90 s apiece on a loaded 2-core host). Every device,
# timing, RAS, CPU and scenario-runner path they reach is also reached in-process by faster
# tests (regress.py by tests/test_regress_inprocess.py), so they only make a surviving
# mutant cost minutes: they are deselected (PYTEST_ADDOPTS, which mutmut's own
# configuration does not see). MUTATION_SLOW=1 keeps them for the regress group.
# Kernel tests (marker `kernel`) never run in mutation testing.
SLOW_TESTS=(
    tests/test_regress.py::test_shipped_bare_metal_scenarios_pass_with_junit
    tests/test_regress.py::test_wrong_expectation_fails_naming_it
    tests/test_regress.py::test_bad_scenario_files_are_one_line_errors
    tests/test_regress.py::test_each_kind_of_failure_is_reported_and_counted
    tests/test_regress_outputs.py::test_guest_printing_all_bytes_under_a_name_with_all_characters
    tests/test_regress_outputs.py::test_scenarios_whose_names_map_to_one_file_keep_their_own_logs
    tests/test_regress_outputs.py::test_outputs_that_are_inputs_are_refused
    tests/test_control.py
    tests/test_deterministic.py::test_deterministic_scenario_logs_are_identical
    tests/test_deterministic.py::test_two_deterministic_runs_print_identical_consoles
    tests/test_hest_sources.py::test_hest_file_from_the_command_line
    tests/test_sea.py::test_guest_crash_exits_126_from_the_cli
    tests/test_warm_reset.py::test_max_reboots_is_checked
    tests/test_limits.py::test_cli_rejections_are_single_lines_in_a_real_process
)
FAST_ONLY=""
for t in "${SLOW_TESTS[@]}"; do FAST_ONLY+=" --deselect $t"; done

for g in "${groups[@]}"; do
    [ "$g" = score ] && continue
    pattern=${PATTERN[$g]:-}
    if [ -z "$pattern" ] && [[ "$g" == armras/*.py ]] && [ -f "$g" ]; then
        pattern="$(echo "${g%.py}" | tr / .).*"
    fi
    [ -n "$pattern" ] || { echo "benchmarks/mutation.sh: unknown group or module $g (${ORDER[*]}, or armras/...py)" >&2; exit 2; }
    echo "== mutation: $g ($pattern)"
    # (mutmut.__main__ imported, not run with -m: mutmut warns that -m re-executes it)
    addopts=$FAST_ONLY
    [ "$g" = regress ] && [ "${MUTATION_SLOW:-0}" = 1 ] && addopts=""
    PYTEST_ADDOPTS="$addopts" \
        "$PYTHON" -c "from mutmut.__main__ import cli; cli()" run --max-children "$JOBS" "$pattern"
done

"$PYTHON" benchmarks/mutation/score.py
