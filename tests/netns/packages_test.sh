#!/usr/bin/env bash
# The Debian packages (cmake/Packaging.cmake): build them, look inside, install them into a
# scratch root and run what they carry.
#
#   $KNIT_BIN/.. (the build dir) ──cpack -G DEB──► $TMP/out/*.deb
#        │                                             │ dpkg-deb -I / -c: names, Depends,
#        │                                             │ conffiles, maintainer scripts, files
#        │                                             ▼
#        │                                   $TMP/root  (dpkg-deb -x of every package, plus a
#        │                                   copy of the host's systemd units so the targets
#        │                                   the units name exist)
#        │                                     ├─ systemd-analyze verify --root: no output
#        │                                     ├─ systemd-analyze security --offline: exposure
#        │                                     ├─ systemd-sysusers / systemd-tmpfiles --root:
#        │                                     │  the users and the 0700 state directories
#        │                                     └─ the binaries run: --help, --version, knit
#        │                                        version; ldd finds only the host's libraries
#   no namespaces and no daemons: nothing here touches the host outside $TMP.
#
# 1. cpack makes knit, knit-coordinator (and knit-relay when the build has it), each with the
#    version, Depends computed by dpkg-shlibdeps (libsodium23, libsqlite3-0...), Recommends
#    bash-completion (knit: Suggests wireguard-tools), conffiles in /etc/knit, postinst/prerm/
#    postrm that pass `sh -n` and use deb-systemd-helper/-invoke, and exactly the files expected
#    (manual pages, copyright, changelog, lintian overrides included).
#    1b. lintian: no error and no warning; the overrides (packaging/lintian/) are listed.
# 2. systemd-analyze verify prints nothing for every unit, with the packaged binaries in place.
# 3. The sysusers.d and tmpfiles.d files make the group knit, the users knit-coordinator and
#    knit-relay, and 0700 state dirs.
# 4. The extracted binaries run from the scratch root with the host's libraries only (no RPATH
#    into the build tree, nothing "not found").
# Prints each package's size. Label netns through the glob; runs as root in CI, needs no TUN.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"

for tool in cpack dpkg-deb dpkg-shlibdeps systemd-analyze systemd-sysusers systemd-tmpfiles \
            file readelf ldd lintian; do
  command -v "$tool" >/dev/null || lab_skip "needs $tool (scripts/setup.sh installs it)"
done
lab__find_knit_bin
BUILD=$(cd "$KNIT_BIN/.." && pwd)
[[ -f "$BUILD/CMakeCache.txt" ]] || lab_fail "$BUILD is not a CMake build directory (KNIT_BIN=$KNIT_BIN)"

TMP=$(mktemp -d /tmp/knit-packages.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
OUT=$TMP/out
mkdir -p "$ROOT" "$OUT"

lab_step "1. cpack -G DEB in $BUILD"
# A build configured before packaging existed gets CPackConfig.cmake from a re-configure.
[[ -f "$BUILD/CPackConfig.cmake" ]] || cmake "$BUILD" >/dev/null
targets=(knitd knit knit-coordinator)
has_relay=0
# (grep without -q reads to the end: an early exit would kill the writer and, under pipefail,
# fail the pipeline.)
if cmake --build "$BUILD" --target help 2>/dev/null | grep '^knit-relay:' >/dev/null; then
  has_relay=1
  targets+=(knit-relay)
fi
# Only what is missing is built: KNIT_BIN's binaries are the ones under test.
missing=()
for t in "${targets[@]}"; do [[ -x "$KNIT_BIN/$t" ]] || missing+=("$t"); done
# The manual pages are made from the binaries' --help at build time (help2man).
for t in "${targets[@]}"; do
  page=$(ls "$BUILD"/packaging/man/"$t".[18].gz 2>/dev/null || true)
  [[ -n "$page" ]] || missing+=("${t}_manpage")
done
((${#missing[@]} == 0)) || cmake --build "$BUILD" --target "${missing[@]}" >/dev/null
(cd "$BUILD" && timeout 300 cpack -G DEB -B "$OUT" >"$TMP/cpack.log" 2>&1) || {
  cat "$TMP/cpack.log" >&2
  lab_fail "cpack -G DEB failed"
}
packages=(knit knit-coordinator)
((has_relay)) && packages+=(knit-relay)
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD/CMakeCache.txt")
for p in "${packages[@]}"; do
  deb=$(ls "$OUT"/"${p}"_*.deb 2>/dev/null | head -n 1)
  [[ -n "$deb" ]] || lab_fail "no ${p}_*.deb in $OUT: $(ls "$OUT")"
  eval "deb_${p//-/_}=\$deb"
done
extra=$(ls "$OUT"/*.deb | grep -v -E '/(knit|knit-coordinator|knit-relay)_' || true)
[[ -z "$extra" ]] || lab_fail "unexpected packages: $extra"
lab_pass "packages: ${packages[*]}"

# field DEB NAME — a control field.
field() { dpkg-deb -f "$1" "$2"; }

# expect_files DEB PATH... — the package holds exactly these files (directories aside).
expect_files() {
  local deb=$1; shift
  local got want
  got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' | sort)
  want=$(printf '%s\n' "$@" | sort)
  [[ "$got" == "$want" ]] || lab_fail "$(basename "$deb") holds:
$got
but should hold:
$want"
}

# check_package DEB NAME DEPENDS_REGEX... — control fields, maintainer scripts, conffiles.
check_package() {
  local deb=$1 name=$2; shift 2
  [[ "$(field "$deb" Package)" == "$name" ]] || lab_fail "$deb: Package is $(field "$deb" Package)"
  [[ "$(field "$deb" Version)" == "$version"-* ]] \
    || lab_fail "$name: Version $(field "$deb" Version), want $version-N"
  local depends
  depends=$(field "$deb" Depends)
  for want in "$@"; do
    grep -qE "(^|, )$want( |,|$)" <<<"$depends" || lab_fail "$name: Depends lacks $want: $depends"
  done
  dpkg-deb -e "$deb" "$TMP/control-$name"
  for script in postinst prerm postrm; do
    [[ -x "$TMP/control-$name/$script" ]] || lab_fail "$name: no executable $script"
    sh -n "$TMP/control-$name/$script" || lab_fail "$name: $script is not valid sh"
    if grep -q '@[A-Z_]*@' "$TMP/control-$name/$script"; then
      lab_fail "$name: $script has unexpanded @VARIABLES@"
    fi
  done
  # Units registered and cleaned up the Debian way (issue 20: purge left enablement links).
  grep -q 'deb-systemd-helper update-state\|deb-systemd-helper enable' "$TMP/control-$name/postinst" \
    || lab_fail "$name: postinst does not register its unit with deb-systemd-helper"
  grep -q 'deb-systemd-helper purge' "$TMP/control-$name/postrm" \
    || lab_fail "$name: postrm does not purge its unit's links with deb-systemd-helper"
  grep -q 'deb-systemd-invoke stop' "$TMP/control-$name/prerm" \
    || lab_fail "$name: prerm does not stop its unit with deb-systemd-invoke"
  [[ "$(field "$deb" Recommends)" == *bash-completion* ]] || lab_fail "$name: does not recommend bash-completion"
  lab_log "$name: Depends: $depends; Recommends: $(field "$deb" Recommends); Suggests: $(field "$deb" Suggests)"
}

# docs P — what every package P carries besides its programs: copyright, changelog, lintian
# overrides.
docs() { echo /usr/share/doc/"$1"/copyright /usr/share/doc/"$1"/changelog.Debian.gz /usr/share/lintian/overrides/"$1"; }

check_package "$deb_knit" knit 'libsodium23' 'libc6'
expect_files "$deb_knit" /usr/sbin/knitd /usr/bin/knit /lib/systemd/system/knitd.service \
  /usr/lib/sysusers.d/knit.conf /usr/lib/tmpfiles.d/knit.conf /etc/knit/knitd.conf \
  /usr/share/bash-completion/completions/knit /usr/share/bash-completion/completions/knitd \
  /usr/share/man/man8/knitd.8.gz /usr/share/man/man1/knit.1.gz $(docs knit)
# wireguard-tools only suggested: recommending it pulls a kernel into containers through
# wireguard-modules (issue 20).
[[ "$(field "$deb_knit" Suggests)" == wireguard-tools ]] || lab_fail "knit: Suggests is '$(field "$deb_knit" Suggests)'"
[[ "$(field "$deb_knit" Recommends)" == bash-completion ]] || lab_fail "knit: Recommends is '$(field "$deb_knit" Recommends)'"
[[ "$(cat "$TMP/control-knit/conffiles")" == /etc/knit/knitd.conf ]] \
  || lab_fail "knit: conffiles is $(cat "$TMP/control-knit/conffiles")"
grep -q 'start_on_install=yes' "$TMP/control-knit/postinst" || lab_fail "knit: knitd not started on install"

check_package "$deb_knit_coordinator" knit-coordinator 'libsodium23' 'libsqlite3-0' 'libc6'
expect_files "$deb_knit_coordinator" /usr/bin/knit-coordinator \
  /lib/systemd/system/knit-coordinator.service /usr/lib/sysusers.d/knit-coordinator.conf \
  /usr/lib/tmpfiles.d/knit-coordinator.conf /etc/knit/coordinator.conf \
  /usr/share/bash-completion/completions/knit-coordinator /usr/share/man/man1/knit-coordinator.1.gz \
  $(docs knit-coordinator)
[[ "$(cat "$TMP/control-knit-coordinator/conffiles")" == /etc/knit/coordinator.conf ]] \
  || lab_fail "knit-coordinator: conffiles is $(cat "$TMP/control-knit-coordinator/conffiles")"
grep -q 'start_on_install=no' "$TMP/control-knit-coordinator/postinst" \
  || lab_fail "knit-coordinator: would start on install"

if ((has_relay)); then
  check_package "$deb_knit_relay" knit-relay 'libsodium23' 'libssl3' 'libc6'
  expect_files "$deb_knit_relay" /usr/bin/knit-relay /lib/systemd/system/knit-relay.service \
    /usr/lib/sysusers.d/knit-relay.conf /usr/lib/tmpfiles.d/knit-relay.conf \
    /etc/knit/relay.conf /usr/share/bash-completion/completions/knit-relay \
    /usr/share/man/man1/knit-relay.1.gz $(docs knit-relay)
  [[ "$(cat "$TMP/control-knit-relay/conffiles")" == /etc/knit/relay.conf ]] \
    || lab_fail "knit-relay: conffiles is $(cat "$TMP/control-knit-relay/conffiles")"
  dpkg-deb -c "$deb_knit_relay" | grep -E '^-rw------- root/root .* \./etc/knit/relay\.conf$' >/dev/null \
    || lab_fail "knit-relay: /etc/knit/relay.conf is not 0600 root (it holds the token)"
else
  lab_log "no knit-relay target in this build: knit-relay package not expected"
fi
for p in "${packages[@]}"; do
  deb_var="deb_${p//-/_}"
  lab_log "size: $(basename "${!deb_var}") $(stat -c %s "${!deb_var}") bytes" \
          "(installed $(field "${!deb_var}" Installed-Size) KiB)"
done
lab_pass "control fields, Depends, conffiles, maintainer scripts and file lists"

lab_step "1b. lintian: no error and no warning (overrides, each justified, in packaging/lintian/)"
debs=()
for p in "${packages[@]}"; do deb_var="deb_${p//-/_}"; debs+=("${!deb_var}"); done
t0=$SECONDS
# Informational tags are printed too (advice, cheap to read), but only errors and warnings
# fail; --show-overrides lists what the override files silence (with it, --fail-on would count
# the overridden tags too, so the E:/W: lines are counted here).
timeout 300 lintian --display-info --show-overrides "${debs[@]}" >"$TMP/lintian.log" 2>&1 || {
  cat "$TMP/lintian.log" >&2
  lab_fail "lintian itself failed"
}
sed 's/^/    /' "$TMP/lintian.log"
if grep -qE '^[EW]: ' "$TMP/lintian.log"; then
  lab_fail "lintian reports errors or warnings: $(grep -E '^[EW]: ' "$TMP/lintian.log")"
fi
lab_pass "lintian: $(grep -c '^E:' "$TMP/lintian.log" || true) errors, $(grep -c '^W:' "$TMP/lintian.log" || true) warnings, $(grep -c '^I:' "$TMP/lintian.log" || true) info, $(grep -c '^O:' "$TMP/lintian.log" || true) overridden ($((SECONDS - t0)) s)"

lab_step "2. systemd-analyze verify, in a scratch root holding the packages"
for p in "${packages[@]}"; do
  deb_var="deb_${p//-/_}"
  dpkg-deb -x "${!deb_var}" "$ROOT"
done
# The units name targets (multi-user, network-online, sysinit): the host's units provide them.
mkdir -p "$ROOT/lib/systemd/system"
cp -an /lib/systemd/system/. "$ROOT/lib/systemd/system/"
units=(knitd.service knit-coordinator.service)
((has_relay)) && units+=(knit-relay.service)
for unit in "${units[@]}"; do
  # --man=no: the Documentation= pages are in the scratch root, where man(1) does not look.
  out=$(cd "$ROOT" && systemd-analyze verify --man=no --root="$ROOT" "lib/systemd/system/$unit" 2>&1) \
    || lab_fail "systemd-analyze verify $unit failed: $out"
  [[ -z "$out" ]] || lab_fail "systemd-analyze verify $unit complains: $out"
  exposure=$(cd "$ROOT" && systemd-analyze security --offline=yes --root="$ROOT" \
               "lib/systemd/system/$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  lab_log "$unit: verify clean; systemd-analyze security exposure ${exposure:-?} (0 best, 10 worst)"
  [[ -n "$exposure" ]] && awk -v e="$exposure" 'BEGIN { exit !(e < 4.0) }' \
    || lab_fail "$unit: exposure ${exposure:-unknown}, want under 4.0"
done
grep -q '^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$' "$ROOT/lib/systemd/system/knitd.service" \
  || lab_fail "knitd.service: capabilities are not exactly CAP_NET_ADMIN CAP_NET_RAW"
grep -q '^CapabilityBoundingSet=$' "$ROOT/lib/systemd/system/knit-coordinator.service" \
  || lab_fail "knit-coordinator.service: has capabilities"
grep -q 'ExecStart=/usr/sbin/knitd --state-dir /var/lib/knit --socket /run/knit/knitd.sock' \
  "$ROOT/lib/systemd/system/knitd.service" || lab_fail "knitd.service: ExecStart lost the contract flags"
lab_pass "every unit verifies clean"

lab_step "3. system users and directories (sysusers.d, tmpfiles.d) in the scratch root"
mkdir -p "$ROOT/etc"
touch "$ROOT/etc/passwd" "$ROOT/etc/group"
servers=(knit-coordinator)
((has_relay)) && servers+=(knit-relay)
systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/knit.conf" >/dev/null 2>&1 \
  || lab_fail "systemd-sysusers knit.conf failed"
grep -q '^knit:x:[0-9]*:$' "$ROOT/etc/group" || lab_fail "no group knit: $(cat "$ROOT/etc/group")"
for user in "${servers[@]}"; do
  systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/$user.conf" >/dev/null 2>&1 \
    || lab_fail "systemd-sysusers $user.conf failed"
  grep -q "^$user:x:[0-9]*:[0-9]*:[^:]*:/var/lib/$user:/usr/sbin/nologin$" "$ROOT/etc/passwd" \
    || lab_fail "no system user $user: $(cat "$ROOT/etc/passwd")"
done
for conf in "$ROOT"/usr/lib/tmpfiles.d/*.conf; do
  systemd-tmpfiles --root="$ROOT" --create "$conf" 2>"$TMP/tmpfiles.err" \
    || lab_fail "systemd-tmpfiles $(basename "$conf"): $(cat "$TMP/tmpfiles.err")"
done
for dir in /var/lib/knit "${servers[@]/#//var/lib/}"; do
  [[ "$(stat -c %a "$ROOT$dir")" == 700 ]] || lab_fail "$dir has mode $(stat -c %a "$ROOT$dir"), want 700"
done
[[ "$(stat -c %a "$ROOT/run/knit")" == 755 ]] || lab_fail "/run/knit not created"
uid=$(awk -F: '$1 == "knit-coordinator" {print $3}' "$ROOT/etc/passwd")
[[ "$(stat -c %u "$ROOT/var/lib/knit-coordinator")" == "$uid" ]] \
  || lab_fail "/var/lib/knit-coordinator not owned by knit-coordinator"
lab_pass "group knit; users ${servers[*]}; /var/lib/knit and server state dirs 0700; /run/knit"

lab_step "4. the packaged binaries run from the scratch root, on the host's libraries"
binaries=("$ROOT/usr/sbin/knitd" "$ROOT/usr/bin/knit" "$ROOT/usr/bin/knit-coordinator")
((has_relay)) && binaries+=("$ROOT/usr/bin/knit-relay")
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  file -b "$bin" | grep -q ', stripped' || lab_fail "$name is not stripped: $(file -b "$bin")"
  if readelf -d "$bin" | grep -qE 'RPATH|RUNPATH'; then
    lab_fail "$name carries an RPATH: $(readelf -d "$bin" | grep -E 'RPATH|RUNPATH')"
  fi
  libs=$(ldd "$bin")
  if grep -q 'not found' <<<"$libs"; then lab_fail "$name: missing libraries: $libs"; fi
  if grep -q "$BUILD" <<<"$libs"; then lab_fail "$name loads from the build tree: $libs"; fi
  timeout 10 "$bin" --help >"$TMP/help.out" 2>&1 || lab_fail "$name --help failed: $(cat "$TMP/help.out")"
  grep -q "Usage: " "$TMP/help.out" || lab_fail "$name --help prints no usage"
  lab_log "$name: $(stat -c %s "$bin") bytes, $(grep -c '=>' <<<"$libs") shared libraries, --help ok"
done
timeout 10 "$ROOT/usr/sbin/knitd" --version | grep -qx "knitd $version" || lab_fail "knitd --version"
timeout 10 "$ROOT/usr/bin/knit-coordinator" --version | grep -qx "knit-coordinator $version" \
  || lab_fail "knit-coordinator --version"
# `knit version` with no knitd at that socket: knit's own version, and a line saying what to do.
set +e
out=$(timeout 10 "$ROOT/usr/bin/knit" --socket "$TMP/none.sock" version 2>&1)
set -e
grep -q "$version" <<<"$out" || lab_fail "knit version does not show $version: $out"
lab_log "knit version (no daemon): $(tr '\n' ' ' <<<"$out")"
# The coordinator's admin CLI works from the package: a token for a fresh mesh.
token=$(timeout 10 "$ROOT/usr/bin/knit-coordinator" --state-dir "$TMP/coord" \
          token create --advertise 192.0.2.1:7443 | tail -n 1)
[[ "$token" == knit* ]] || lab_fail "knit-coordinator token create printed: $token"
lab_pass "knitd, knit, knit-coordinator$( ((has_relay)) && echo ", knit-relay") run from the packages"

lab_log "PASS packages_test"
