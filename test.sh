#!/usr/bin/env bash
# Builds everything and runs every test; prints one line per test run, the failures (test and message), and
# "N passed, N failed" last.
#   1. the whole solution (libraries, samples, tests, benchmarks) in Release, warnings as errors;
#   2. every test project on net10.0;
#   3. the core and transport tests once more on net8.0 (-p:TestNet8=true adds it), self-contained (only the .NET 10
#      runtime is installed);
#   4. the packages: packed into a local feed, then used by id and version from eng/PackageConsumer (counted as one test).
#   5. the dashboard in headless Chromium (each browser test counted), when Chromium and its npm packages are installed.
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

# The dashboard in headless Chromium (tests/Dispatcher.Dashboard.Tests/e2e, node's test runner): every browser test counts.
# .ci/run installs Chromium and the suite's npm packages; without them the suite is skipped, or fails with DISPATCHER_BROWSER_TESTS=1.
e2e=tests/Dispatcher.Dashboard.Tests/e2e; skipped=0
if [ -x /usr/bin/chromium ] && [ -d "$e2e/node_modules/playwright-core" ]; then
  (cd "$e2e" && npm test --silent) > "$results/e2e.log" 2>&1; e2e_status=$?
  count() { grep -E "^# $1 [0-9]+$" "$results/e2e.log" | tail -1 | grep -o '[0-9]*'; }
  e2e_passed=$(count pass); e2e_failed=$(count fail); e2e_skipped=$(count skipped)
  grep -E '^not ok|# SKIP|^# (pass|fail|skipped) ' "$results/e2e.log" | sed 's/^/browser: /'
  if [ "$e2e_status" -ne 0 ] && [ "${e2e_failed:-0}" -eq 0 ]; then e2e_failed=1; tail -n 40 "$results/e2e.log"; fi
  [ "${e2e_failed:-0}" -eq 0 ] || grep -E -A12 '^not ok' "$results/e2e.log" | head -n 80
  extra_passed=$((extra_passed + ${e2e_passed:-0})); extra_failed=$((extra_failed + ${e2e_failed:-0})); skipped=${e2e_skipped:-0}
elif [ "${DISPATCHER_BROWSER_TESTS:-0}" = 1 ]; then
  extra_failed=$((extra_failed + 1)); echo "browser tests cannot run: /usr/bin/chromium or $e2e/node_modules is missing"
else
  echo "browser tests skipped: install chromium and run 'npm ci' in $e2e (.ci/run does both)"
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
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
