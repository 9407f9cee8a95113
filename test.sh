#!/usr/bin/env bash
# Builds everything and runs every test; prints one line per test run, the failures (test and message), and
# "N passed, N failed" last.
#   1. the whole solution (libraries, samples, tests, benchmarks) in Release, warnings as errors;
#   2. every test project on net10.0;
#   3. the core and transport tests once more on net8.0 (-p:TestNet8=true adds it), self-contained (only the .NET 10
#      runtime is installed);
#   4. the packages: packed into a local feed, then used by id and version from eng/PackageConsumer (counted as one test).
# Needs only the .NET 10 SDK (and the sh, sleep, setsid, env and curl programs every Linux has).
set -uo pipefail
cd "$(dirname "$0")"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
extra_failed=0; extra_passed=0

# The per-run summary lines, then each failed test with its message (stack traces are in the .trx files).
report() {
  grep -E '^\s*(Passed!|Failed!)' "$1"
  awk '/^  Failed /{show=1} /^  Stack Trace:/{show=0} /^(Passed!|Failed!)/{show=0} show' "$1"
  grep -E ': error ' "$1" | sort -u
}

if ! dotnet build Dispatcher.sln -c Release -warnaserror -nologo -v q > "$results/build.log" 2>&1; then
  grep -E ': (error|warning) ' "$results/build.log" | sort -u
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test Dispatcher.sln -c Release --no-build -f net10.0 --logger "trx;LogFilePrefix=net10" --results-directory "$results" > "$results/net10.log" 2>&1
status=$?
report "$results/net10.log"

for p in Dispatcher.Core.Tests Dispatcher.Transports.Tests; do
  dotnet test "tests/$p" -c Release -f net8.0 -p:TestNet8=true -p:RuntimeIdentifier=linux-x64 -p:SelfContained=true -nologo \
    --logger "trx;LogFilePrefix=net8-$p" --results-directory "$results" > "$results/net8-$p.log" 2>&1 || status=1
  report "$results/net8-$p.log"
done

if eng/verify-packages.sh > "$results/packages.log" 2>&1; then
  extra_passed=$((extra_passed + 1)); tail -n 1 "$results/packages.log"
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
