#!/usr/bin/env bash
# Builds the solution and runs the whole test suite (slow tests included), then prints one summary line
# "N passed, N failed, N skipped". Extra arguments go to dotnet test (e.g. --filter "Category!=Slow").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet build FineTuning.Core.sln -c Release -nologo -v:q || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
dotnet test FineTuning.Core.sln -c Release --no-build -nologo --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# dotnet test ends with "Total tests: N" then "Passed: N", "Failed: N", "Skipped: N" lines (zero counts omitted).
count() { grep -E "^ +$1: +[0-9]+$" "$log" | tail -n1 | grep -oE '[0-9]+' || echo 0; }
total=$(grep -E '^Total tests: +[0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+' || true)
passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
rm -f "$log"
if [ -z "$total" ]; then echo "0 passed, 1 failed"; exit 1; fi
[ "$status" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
