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
grep -q "dashboard: 200 text/html" "$work/out.txt"
grep -q "health: Healthy" "$work/out.txt"
echo "package verification passed ($version)"
