#!/usr/bin/env bash
# Makes TorchSharp 0.107's native library load where the system libstdc++ predates GLIBCXX_3.4.32
# (Debian 12, Ubuntu 22.04). libLibTorchSharp.so needs that version for a single symbol,
# std::ios_base_library_init(); we provide it from a tiny shim library and relax the version need.
#
# Usage: torchsharp-compat.sh <folder>   patches every libLibTorchSharp.so under <folder>.
# Does nothing where the system libstdc++ already has GLIBCXX_3.4.32. Idempotent.
set -euo pipefail

target_dir="${1:?usage: torchsharp-compat.sh <output-folder>}"
[ "$(uname -s)" = "Linux" ] || exit 0

libstdcxx=$( (ldconfig -p 2>/dev/null || true) | awk '/libstdc\+\+\.so\.6 .*x86-64|libstdc\+\+\.so\.6 .*AArch64/ {print $NF; exit}')
[ -n "$libstdcxx" ] || libstdcxx=$(ls /usr/lib/*/libstdc++.so.6 2>/dev/null | head -n1 || true)
if [ -n "$libstdcxx" ] && grep -aq 'GLIBCXX_3\.4\.32' "$libstdcxx"; then
  exit 0 # new enough: nothing to do
fi

mapfile -t libs < <(find "$target_dir" -name 'libLibTorchSharp.so' -type f 2>/dev/null)
[ "${#libs[@]}" -gt 0 ] || exit 0

shim_name=libftcore_glibcxx_shim.so
needs_patch=()
for lib in "${libs[@]}"; do
  if [ -f "$(dirname "$lib")/$shim_name" ] && grep -aq "$shim_name" "$lib"; then continue; fi
  needs_patch+=("$lib")
done
[ "${#needs_patch[@]}" -gt 0 ] || exit 0

# Projects build in parallel: one installer and patcher at a time.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/ftcore-torchsharp-compat.lock"
  flock 9
fi

if ! command -v patchelf >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "torchsharp-compat: installing patchelf (system libstdc++ lacks GLIBCXX_3.4.32)" >&2
    (apt-get -o DPkg::Lock::Timeout=300 install -y -qq patchelf >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get -o DPkg::Lock::Timeout=300 install -y -qq patchelf >/dev/null; })
  else
    echo "torchsharp-compat: the system libstdc++ lacks GLIBCXX_3.4.32 and patchelf is not installed." >&2
    echo "Install patchelf (apt-get install patchelf) or a libstdc++ from GCC 13 or later, then build again." >&2
    exit 1
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/shim.cpp" <<'CPP'
#include <ios>
namespace std {
// Defined by libstdc++ 13+ (GLIBCXX_3.4.32); older ones initialise iostreams themselves.
void ios_base_library_init() { static std::ios_base::Init init; }
}
CPP
g++ -shared -fPIC -O2 -o "$work/$shim_name" "$work/shim.cpp"
g++ -O2 -o "$work/set-weak-version" "$(dirname "${BASH_SOURCE[0]}")/set-weak-version.cpp"

for lib in "${needs_patch[@]}"; do
  dir=$(dirname "$lib")
  cp "$work/$shim_name" "$dir/$shim_name"
  tmp="$lib.compat-tmp"
  cp "$lib" "$tmp"
  patchelf --clear-symbol-version _ZSt21ios_base_library_initv "$tmp"
  if ! patchelf --print-needed "$tmp" | grep -qx "$shim_name"; then
    patchelf --add-needed "$shim_name" "$tmp"
  fi
  "$work/set-weak-version" "$tmp" GLIBCXX_3.4.32
  mv -f "$tmp" "$lib"
  echo "torchsharp-compat: patched $lib for a libstdc++ without GLIBCXX_3.4.32" >&2
done
