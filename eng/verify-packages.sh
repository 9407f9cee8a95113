#!/usr/bin/env bash
# Packs the packages (the client and the dispatcher tool too) into a local folder feed, then restores, builds and runs eng/PackageConsumer against them by
# package id and version (not by project reference): the proof that a package user gets a working library.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version="0.1.0-verify.$(date +%s)"

for p in Dispatcher.Core Dispatcher.Transports.WebSocket Dispatcher.Transports.Http Dispatcher.Dashboard Dispatcher.Client Dispatcher.Cli; do
  dotnet pack "src/$p/$p.csproj" -c Release -o "$work/feed" -p:Version="$version" -v q -nologo
done
ls "$work/feed"

# The transports depend on Core by a minimum version (they use only its public API), not on an exact one.
for t in WebSocket Http; do
  python3 - "$work/feed/Dispatcher.Transports.$t.$version.nupkg" "$version" <<'PY'
import sys, zipfile, re
z = zipfile.ZipFile(sys.argv[1])
spec = z.read([n for n in z.namelist() if n.endswith('.nuspec')][0]).decode()
deps = re.findall(r'id="Dispatcher.Core" version="([^"]+)"', spec)
assert deps and all(d == sys.argv[2] for d in deps), f"{sys.argv[1]}: Dispatcher.Core dependency {deps}, expected >= {sys.argv[2]}"
PY
done

cat > "$work/NuGet.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
XML

cp -r eng/PackageConsumer "$work/consumer"
cd "$work/consumer"
dotnet restore --configfile "$work/NuGet.config" --packages "$work/packages" -p:DispatcherVersion="$version" -v q
dotnet build -c Release --no-restore -p:DispatcherVersion="$version" -v q -nologo
dotnet run -c Release --no-build -p:DispatcherVersion="$version" | tee "$work/out.txt"
grep -q "consumer: Succeeded, exit 0, output: hello from the package" "$work/out.txt"
grep -q "host class and channel: ok" "$work/out.txt"
grep -q "dashboard: 200 text/html" "$work/out.txt"
grep -q "health: Healthy" "$work/out.txt"
echo "package verification passed ($version)"
