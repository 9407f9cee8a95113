#!/usr/bin/env bash
# Builds everything and runs every test; prints "N passed, N failed" last.
#   1. the whole solution (libraries, samples, tests, benchmarks) in Release, warnings as errors;
#   2. every test project on net10.0;
#   3. the core and transport tests once more on net8.0, self-contained (only the .NET 10 runtime is installed);
#   4. the packages: packed into a local feed, then used by id and version from eng/PackageConsumer (counted as one test).
# Needs only the .NET 10 SDK (and the sh, sleep, setsid and env programs every Linux has).
set -uo pipefail
cd "$(dirname "$0")"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
extra_failed=0; extra_passed=0

dotnet build Dispatcher.sln -c Release -warnaserror -nologo -v q 2>&1 | tail -n 3
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test Dispatcher.sln -c Release --no-build -f net10.0 --logger "trx;LogFilePrefix=net10" --results-directory "$results" 2>&1 | grep -E 'Passed!|Failed!|^\s+Failed |Error Message' -A3
status=${PIPESTATUS[0]}

for p in Dispatcher.Core.Tests Dispatcher.Transports.Tests; do
  dotnet test "tests/$p" -c Release -f net8.0 -p:TestNet8=true -p:RuntimeIdentifier=linux-x64 -p:SelfContained=true -nologo \
    --logger "trx;LogFilePrefix=net8-$p" --results-directory "$results" 2>&1 | grep -E 'error|Passed!|Failed!|^\s+Failed |Error Message' -A3
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done

if eng/verify-packages.sh > "$results/packages.log" 2>&1; then
  extra_passed=$((extra_passed + 1)); tail -n 2 "$results/packages.log"
else
  extra_failed=$((extra_failed + 1)); echo "package verification failed:"; tail -n 30 "$results/packages.log"
fi

passed=$extra_passed; failed=$extra_failed
for f in "$results"/*.trx; do
  [ -e "$f" ] || continue
  p=$(grep -o 'passed="[0-9]*"' "$f" | head -1 | grep -o '[0-9]*')
  x=$(grep -o 'failed="[0-9]*"' "$f" | head -1 | grep -o '[0-9]*')
  passed=$((passed + ${p:-0})); failed=$((failed + ${x:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
