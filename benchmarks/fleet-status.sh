#!/usr/bin/env bash
# Measures `dispatcher status` across a fleet: starts N sample hosts (default 10) on this machine, gives each a few jobs,
# then times `dispatcher status --json` with one --url per host, and with a single --url for comparison (the tool's own
# start-up cost), R rounds each (default 20). Prints medians and the spread; the hosts are stopped on exit.
#   benchmarks/fleet-status.sh [HOSTS] [ROUNDS] [FIRST_PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-10}; rounds=${2:-20}; first_port=${3:-12160}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

dotnet build samples/Dispatcher.SampleHost -c Release -v q -nologo > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
dotnet build src/Dispatcher.Cli -c Release -v q -nologo > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
host_dll=samples/Dispatcher.SampleHost/bin/Release/net10.0/Dispatcher.SampleHost.dll
tool=(dotnet src/Dispatcher.Cli/bin/Release/net8.0/dispatcher.dll)
export DISPATCHER_PASSWORD=bench-pass DISPATCHER_USER=bench

urls=()
for i in $(seq 0 $((hosts - 1))); do
  port=$((first_port + i))
  Users__0__Name=bench Users__0__Password=bench-pass Users__0__FullAccess=true \
    dotnet "$host_dll" --urls "http://127.0.0.1:$port" --Logging:LogLevel:Default=Warning > "$work/host$i.log" 2>&1 &
  pids+=($!)
  urls+=(--url "http://127.0.0.1:$port")
done
for i in $(seq 0 $((hosts - 1))); do
  for _ in $(seq 1 600); do grep -q "Press Ctrl+C" "$work/host$i.log" && break; sleep 0.1; done
  grep -q "Press Ctrl+C" "$work/host$i.log" || { echo "host $i did not start:"; cat "$work/host$i.log"; exit 1; }
done

# Each host: one running and four pending jobs, so every answer has rows.
for i in $(seq 0 $((hosts - 1))); do
  for j in 1 2 3 4 5; do
    "${tool[@]}" add --url "http://127.0.0.1:$((first_port + i))" --queue pkg_queue --id "bench-$j" "sleep 600" > /dev/null
  done
done

measure() { # prints the wall time of each run in ms
  for _ in $(seq 1 "$rounds"); do
    start=$(date +%s%N)
    "${tool[@]}" status "$@" --json > "$work/out.json"
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
  done
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "median %d ms, min %d ms, max %d ms (%d runs)", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

"${tool[@]}" status "${urls[@]}" --json > "$work/out.json"
rows=$(grep -o '"id":"bench-' "$work/out.json" | wc -l)
[ "$rows" -eq $((hosts * 5)) ] || { echo "expected $((hosts * 5)) jobs, got $rows"; cat "$work/out.json"; exit 1; }

one=$(measure --url "http://127.0.0.1:$first_port" | stats)
all=$(measure "${urls[@]}" | stats)
echo "dispatcher status, 1 host ($((5)) jobs):        $one"
echo "dispatcher status, $hosts hosts ($rows jobs merged): $all"
echo "machine: $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME"), .NET $(dotnet --version)"
