#!/usr/bin/env bash
# Configures and builds Knit into ./build (executables in ./build/bin), warnings as errors.
#
# Usage: scripts/build.sh [--debian-flags] [--no-debug-info]
#   (default)        CMAKE_BUILD_TYPE=RelWithDebInfo (-O2 -g), the development build
#   --debian-flags   the flags Debian's packages are built with: CMAKE_BUILD_TYPE=None and
#                    dpkg-buildflags with hardening=+all (-g -O2, -D_FORTIFY_SOURCE=2,
#                    -fstack-protector-strong, -Werror=format-security, -z relro -z now), as
#                    debhelper passes them. CI's main build (scripts/run-tests.sh) uses this, so
#                    the whole suite runs on what the packages ship.
#   --no-debug-info  no -g (-g0 after Debian's flags): the same machine code (GCC's -g never changes
#                    it), in about two thirds of the compile time and a fraction of the link
#                    time. scripts/run-tests.sh builds this way; debug with the default build.
# Switching between the two reconfigures ./build in place (the flags are given explicitly).
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
debian=0 debug_info=1
for arg in "$@"; do
  case "$arg" in
    --debian-flags) debian=1 ;;
    --no-debug-info) debug_info=0 ;;
    *) echo "usage: scripts/build.sh [--debian-flags] [--no-debug-info]" >&2; exit 2 ;;
  esac
done
extra=""
(( debug_info )) || extra=" -g0"
# RelWithDebInfo's own -O2 -g come after CMAKE_CXX_FLAGS, so -g0 goes there too.
relwithdebinfo="-O2 -g -DNDEBUG"
(( debug_info )) || relwithdebinfo="-O2 -DNDEBUG"
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS= -DCMAKE_C_FLAGS=
       "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=$relwithdebinfo" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=$relwithdebinfo"
       -DCMAKE_EXE_LINKER_FLAGS= -DCMAKE_SHARED_LINKER_FLAGS=)
if (( debian )); then
  command -v dpkg-buildflags >/dev/null || { echo "build.sh: --debian-flags needs dpkg-buildflags (dpkg-dev)" >&2; exit 1; }
  export DEB_BUILD_MAINT_OPTIONS=hardening=+all
  cppflags=$(dpkg-buildflags --get CPPFLAGS)
  flags=(-DCMAKE_BUILD_TYPE=None
         "-DCMAKE_CXX_FLAGS=$(dpkg-buildflags --get CXXFLAGS) $cppflags$extra"
         "-DCMAKE_C_FLAGS=$(dpkg-buildflags --get CFLAGS) $cppflags$extra"
         "-DCMAKE_EXE_LINKER_FLAGS=$(dpkg-buildflags --get LDFLAGS)"
         "-DCMAKE_SHARED_LINKER_FLAGS=$(dpkg-buildflags --get LDFLAGS)")
fi
cmake -S . -B build "${generator[@]}" "${flags[@]}" -DKNIT_WERROR=ON
grep -q '^KNIT_WERROR:BOOL=ON$' build/CMakeCache.txt || { echo "build.sh: KNIT_WERROR is not ON" >&2; exit 1; }
cmake --build build -j "$(nproc)"
