#!/usr/bin/env bash
# Restores, builds and runs every test project; prints "N passed, N failed" last.
# Needs only the .NET 10 SDK (and the sh, sleep, setsid and env programs every Linux has).
set -uo pipefail
cd "$(dirname "$0")"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

dotnet build Dispatcher.sln -c Release -warnaserror 2>&1 | tail -n 3
build=${PIPESTATUS[0]}
if [ "$build" -ne 0 ]; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

dotnet test Dispatcher.sln -c Release --no-build --logger "trx;LogFilePrefix=r" --results-directory "$results" 2>&1 | grep -Ev '^\s*$'
status=${PIPESTATUS[0]}

passed=0; failed=0
for f in "$results"/*.trx; do
  [ -e "$f" ] || continue
  p=$(grep -o 'passed="[0-9]*"' "$f" | head -1 | grep -o '[0-9]*')
  x=$(grep -o 'failed="[0-9]*"' "$f" | head -1 | grep -o '[0-9]*')
  passed=$((passed + ${p:-0})); failed=$((failed + ${x:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
