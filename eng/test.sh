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
summary=$(grep -E '(Passed|Failed)!? +- +Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -n1)
failed=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")
passed=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")
skipped=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")
rm -f "$log"
if [ -z "$summary" ]; then echo "0 passed, 1 failed"; exit 1; fi
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
