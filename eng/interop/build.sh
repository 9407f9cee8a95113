#!/usr/bin/env bash
# Builds the real sysadm Qt clients used by the interoperability tests, once: the command-line client (`sysadm`) and a console
# harness that links the GUI's connection class (`sysadm-harness`). Sources: ../shared/interop (or $SYSADM_INTEROP_SRC).
# Output: $DISPATCHER_INTEROP_DIR (default: artifacts/interop, ignored by git). A stamp of the sources' hash skips the build
# when nothing changed. Needs Debian's qtbase5-dev, libqt5websockets5-dev, qt5-qmake, g++, make and libssl-dev.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
src="${SYSADM_INTEROP_SRC:-}"
if [ -z "$src" ]; then
  for candidate in "$root/../shared/interop" "/work/shared/interop"; do
    if [ -d "$candidate/sysadm-ui-qt/src-qt5" ]; then src="$candidate"; break; fi
  done
fi
out="${DISPATCHER_INTEROP_DIR:-$root/artifacts/interop}"
qt="$src/sysadm-ui-qt/src-qt5"
if [ ! -d "$qt" ]; then echo "interop: no sysadm-ui-qt sources (set SYSADM_INTEROP_SRC)" >&2; exit 1; fi
if ! command -v qmake >/dev/null; then
  echo "interop: qmake not found; install qtbase5-dev libqt5websockets5-dev qt5-qmake g++ make libssl-dev" >&2; exit 1
fi

stamp=$(cat "$0" "$root/eng/interop/harness/main.cpp" "$root/eng/interop/harness/harness.pro" \
  "$qt/Core/sysadm-client.cpp" "$qt/Core/sysadm-client.h" "$qt"/cli_client/*.cpp "$qt"/cli_client/*.h | sha256sum | cut -c1-16)
if [ -x "$out/sysadm" ] && [ -x "$out/sysadm-harness" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "interop: clients up to date in $out"; exit 0
fi

mkdir -p "$out/build-cli" "$out/build-harness"
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$out/build-cli" && qmake "$qt/cli_client/cli_client.pro" >/dev/null && make -s -j"$jobs" >/dev/null 2>make.log || { cat make.log >&2; exit 1; })
(cd "$out/build-harness" && SYSADM_QT="$qt" qmake "$root/eng/interop/harness/harness.pro" >/dev/null \
  && SYSADM_QT="$qt" make -s -j"$jobs" >/dev/null 2>make.log || { cat make.log >&2; exit 1; })
cp "$out/build-cli/sysadm" "$out/sysadm"
cp "$out/build-harness/sysadm-harness" "$out/sysadm-harness"
echo "$stamp" > "$out/stamp"
echo "interop: built sysadm and sysadm-harness in $out"
