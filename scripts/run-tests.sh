#!/usr/bin/env bash
# Builds the solution once, runs every test project with dotnet test (TRX results),
# prints each failed test with its message and, as the very last line,
# `N passed, M failed` (`, K skipped` when K > 0).
# Exits non-zero when a test failed, the build or the test run broke, or no test ran.
#
#   scripts/run-tests.sh [dotnet test arguments, e.g. --filter Category!=Slow]
#
# KUMO_TEST_TARGET overrides the solution or project to test (used to test this script).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RESULTS_DIR="${KUMO_TEST_RESULTS:-$KUMO_REPO/artifacts/test-results}"
summary_printed=0

find_target() {
    if [[ -n "${KUMO_TEST_TARGET:-}" ]]; then
        printf '%s\n' "$KUMO_TEST_TARGET"
        return 0
    fi
    local candidate
    for candidate in "$KUMO_REPO/Kumo.slnx" "$KUMO_REPO/Kumo.sln"; do
        if [[ -f "$candidate" ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# Prints the failures and the closing count line; its status says whether tests passed.
summarize() {
    summary_printed=1
    python3 "$KUMO_REPO/scripts/trx-summary.py" "$RESULTS_DIR"
}

# Whatever went wrong, the last line is still the count line.
on_exit() {
    local rc=$?
    if ((!summary_printed)); then
        printf '0 passed, 0 failed\n'
    fi
    exit "$rc"
}

main() {
    trap on_exit EXIT
    command -v python3 >/dev/null || kumo_die "python3 is needed to read test results (scripts/install-deps.sh --test installs it)"
    kumo_require_dotnet

    local target
    target="$(find_target)" || kumo_die "no Kumo.slnx or Kumo.sln at $KUMO_REPO: nothing to test"

    rm -rf "$RESULTS_DIR"
    mkdir -p "$RESULTS_DIR"

    kumo_log "building $(basename "$target") (Release)"
    if ! dotnet build "$target" -c Release -nologo; then
        kumo_log "build failed: no tests were run"
        summarize || true
        return 1
    fi

    kumo_log "running tests"
    local test_rc=0
    dotnet test "$target" -c Release --no-build -nologo \
        --logger trx --results-directory "$RESULTS_DIR" \
        --blame-hang-timeout 10m "$@" || test_rc=$?

    if ((test_rc != 0)); then
        kumo_log "dotnet test exited with status $test_rc (failed tests, or a test run aborted: see 'Test Run Aborted' above)"
    fi
    local summary_rc=0
    summarize || summary_rc=$?
    if ((test_rc != 0 || summary_rc != 0)); then
        return 1
    fi
}

main "$@"
