#!/usr/bin/env bash
# Install and daily use, as a new user meets it: the three packages this tree builds, installed
# into a freshly booted Debian 12 (systemd as PID 1, in a container), and the README's
# "Running as a service" block run line by line, exactly as written.
#
#   host   $KNIT_BIN/.. ──cpack -G DEB──► $TMP/debs/{knit,knit-coordinator,knit-relay}_*.deb
#          debootstrap --variant=minbase bookworm + systemd and the packages' Depends/Recommends
#            ──► $CACHE/rootfs-<hash of that list>   (kept: later runs boot in seconds)
#          overlayfs: the cached root (read-only) + $TMP/upper ──► $TMP/root
#
#   systemd-nspawn -b -D $TMP/root --private-network -M knit-inst-SFX   (loopback only)
#   ┌── container ────────────────────────────────────────────────────────────────────────────┐
#   │ systemd, journald; /srv/debs holds the .debs; alice: a user with sudo who types the     │
#   │ README's commands; coord.example.net and relay.example.net are 127.0.0.1 (/etc/hosts)   │
#   │   knit-coordinator  0.0.0.0:7443        (advertised as coord.example.net:7443)          │
#   │   knit-relay fra1   0.0.0.0:443, STUN 0.0.0.0:3478 (advertised as relay.example.net:443)│
#   │   knitd             knit0, joined through the relay and the coordinator above           │
#   └─────────────────────────────────────────────────────────────────────────────────────────┘
#   The test runs commands inside with nsenter (as root, or as alice through runuser -l).
#
# Checks, each with a name (the first that fails ends the run):
#   packages-install        the README's three `apt install ./...deb` lines, offline; knitd
#                           enabled and running, the servers installed but neither enabled nor
#                           started; group knit, users knit-coordinator and knit-relay
#   relay-unconfigured      `systemctl start knit-relay` with the packaged relay.conf fails and
#                           the log names KNIT_RELAY_NAME, then (name set) KNIT_RELAY_ADVERTISE
#   readme-service          every line of README's service block, in order (TOKEN and
#                           RELAY_TOKEN stand for the tokens printed above them; `sudoedit FILE
#                           # KEY=VALUE...` sets those keys, each of which FILE must have)
#   joined                  knit status: a name, a 100.64.0.0/10 address on knit0 (up), home
#                           relay fra1; the coordinator lists the node and the relay online; the
#                           node token carries coord.example.net:7443
#   no-secrets-in-journal   neither token appears in the journal (but in sudo's own log of
#                           `sudo knit up --token ...`, as the README warns)
#   relay-without-token     knit-relay restarted with the token line emptied serves again
#   coordinator-advertise   without KNIT_COORDINATOR_ADVERTISE, `token create` (no --advertise)
#                           fails naming it; with it back, tokens work again
#   restart-keeps-membership  systemctl restart knitd: same name and address, relay fra1
#   upgrade-keeps-running   apt install --reinstall knit: knitd restarted and still joined
#   unprivileged-status     alice, a member of group knit, runs knit status [--json] without
#                           root; bob, not a member, is refused; alice cannot `knit down`
#   down-up-rejoin          knit down (still down after systemctl restart knitd), then knit up
#                           without a token: back with the same address
#   purge-knit              apt purge knit: knitd stopped, knit0 gone, no link or
#                           deb-systemd-helper state left for knitd.service, /var/lib/knit kept
#   reinstall-rejoins       knit installed again rejoins by itself with the same address
#   start-afresh            README's "starting afresh" lines: the node is forgotten, and a new
#                           install is a new node that has not joined
#   purge-all               the other start-afresh lines and a last purge: no enablement link,
#                           mask or deb-systemd-helper state for any knit unit, no /etc/knit, no
#                           knit process, no knit0
#
# Skips (77) only when this machine cannot do it: not root, no systemd-nspawn/nsenter/overlayfs,
# no cached root filesystem and no way to debootstrap one (no debootstrap, archive unreachable),
# or a container that does not boot to a running systemd before anything of Knit is in it.
#
# Environment:
#   KNIT_BIN                    the build's bin folder (its build dir makes the packages)
#   KNIT_TEST_CACHE             where root filesystems are kept (default:
#                               $XDG_CACHE_HOME/knit-test, else /var/cache/knit-test)
#   KNIT_DEBIAN_MIRROR          default http://deb.debian.org/debian
#   LAB_KEEP_LOGS=1             keep $TMP (the container's journal is printed on failure anyway)
# Time: 1.5 min with a cached root filesystem (3.7 min on a busy machine), plus 3-4 min to
# debootstrap one on the first run (225 MB, kept in the cache).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"

SUITE=bookworm
MIRROR=${KNIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${KNIT_TEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/knit-test}
README=$LAB_REPO_ROOT/README.md
MACHINE=knit-inst-$LAB_SFX

lab_require_root
for tool in systemd-nspawn nsenter runuser mount cpack dpkg-deb jq flock sha256sum; do
  command -v "$tool" >/dev/null || lab_skip "needs $tool (scripts/setup.sh installs it)"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || lab_skip "this kernel has no overlayfs"
lab__find_knit_bin
BUILD=$(cd "$KNIT_BIN/.." && pwd)
[[ -f "$BUILD/CMakeCache.txt" ]] || lab_fail "$BUILD is not a CMake build directory (KNIT_BIN=$KNIT_BIN)"

TMP=$(mktemp -d /tmp/knit-install.XXXXXX)
ROOT=$TMP/root
NSPAWN_PID=
LEADER=

cleanup() {
  local rc=$?
  set +e
  if ((rc != 0 && rc != 77)) && [[ -n "$LEADER" ]] && kill -0 "$LEADER" 2>/dev/null; then
    echo "---- the container's journal (last 120 lines) ----" >&2
    ct journalctl -b --no-pager -n 120 -o short-monotonic >&2
    echo "---- end of journal ----" >&2
  fi
  if [[ -n "$NSPAWN_PID" ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID"  # nspawn asks the container's systemd to power off
    for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN_PID" 2>/dev/null
    wait "$NSPAWN_PID" 2>/dev/null
  fi
  if mountpoint -q "$ROOT" 2>/dev/null; then umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; fi
  # nspawn leaves this behind when /run is not a tmpfs (it refuses to rm -rf a disk there).
  rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
  if [[ -n "${LAB_KEEP_LOGS:-}" ]]; then
    echo "kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ct CMD... — runs CMD in the container as root, with a clean environment.
ct() {
  nsenter -t "$LEADER" -a -r -w -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 "$@"
}
# as_user USER LINE — a login shell of USER runs LINE (fresh groups, USER's PATH, HOME).
as_user() { ct runuser -l "$1" -c "$2"; }

# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------

# A check runs in a subshell with errexit on: any command that fails ends it. `why MESSAGE`
# fails with the reason (use it as `test || why "..."`); `keep VAR...` hands variables back
# to the checks that follow.
why() { printf '%s' "$*" >"$TMP/why"; return 1; }
keep() { local v; for v in "$@"; do printf '%s=%q\n' "$v" "${!v}" >>"$TMP/vars"; done; }

# check NAME FUNCTION — runs one check. A failure ends the test.
check() {
  local name=$1 fn=$2 t0=${EPOCHREALTIME/./} rc=0 reason ms
  lab_step "$name"
  : >"$TMP/why"
  set +e
  (
    set -eE
    trap '[[ $BASH_COMMAND == why* || $BASH_COMMAND == return* ]] || echo "    failed: $BASH_COMMAND" >&2' ERR
    "$fn"
  )
  rc=$?
  set -e
  [[ ! -f "$TMP/vars" ]] || source "$TMP/vars"
  reason=$(cat "$TMP/why")
  ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
  if ((rc == 0)); then
    lab_pass "$name (${ms} ms)"
  else
    lab_fail "$name: ${reason:-a command failed (above)}"
  fi
}

# ---------------------------------------------------------------------------------------------
# the packages
# ---------------------------------------------------------------------------------------------

lab_step "packages: cpack -G DEB in $BUILD"
targets=(knitd knit knit-coordinator knit-relay)
missing=()
for t in "${targets[@]}"; do [[ -x "$KNIT_BIN/$t" ]] || missing+=("$t"); done
((${#missing[@]} == 0)) || cmake --build "$BUILD" --target "${missing[@]}" >/dev/null
[[ -f "$BUILD/CPackConfig.cmake" ]] || cmake "$BUILD" >/dev/null
mkdir -p "$TMP/debs"
(cd "$BUILD" && timeout 300 cpack -G DEB -B "$TMP/cpack" >"$TMP/cpack.log" 2>&1) || {
  cat "$TMP/cpack.log" >&2
  lab_fail "cpack -G DEB failed"
}
for p in knit knit-coordinator knit-relay; do
  deb=$(ls "$TMP/cpack/${p}"_*.deb 2>/dev/null | head -n 1)
  [[ -n "$deb" ]] || lab_fail "cpack made no ${p}_*.deb"
  cp "$deb" "$TMP/debs/"
done
chmod 0644 "$TMP"/debs/*.deb
lab_pass "$(cd "$TMP/debs" && echo *.deb)"

# ---------------------------------------------------------------------------------------------
# the root filesystem: debootstrap once, then cached
# ---------------------------------------------------------------------------------------------

# What the container has before the packages: systemd to boot, sudo and the shadow tools for
# the README's user, iproute2 to look at knit0, and every Depends/Recommends of the packages,
# so that `apt install ./x.deb` needs no network inside.
include=(systemd systemd-sysv dbus sudo passwd iproute2 procps)
for deb in "$TMP"/debs/*.deb; do
  for field in Depends Recommends; do
    while read -r dep; do
      [[ -z "$dep" || "$dep" == knit* ]] || include+=("$dep")
    done < <(dpkg-deb -f "$deb" "$field" | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g')
  done
done
mapfile -t include < <(printf '%s\n' "${include[@]}" | sort -u)
key=$(printf '%s\n' "$SUITE" minbase "$MIRROR" "${include[@]}" | sha256sum | cut -c1-16)
CACHED=$CACHE/rootfs-$SUITE-$key

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one debootstrap at a time per cache
if [[ ! -x "$CACHED/sbin/init" ]]; then
  lab_step "root filesystem: debootstrap $SUITE (minbase + ${#include[@]} packages) into $CACHE"
  command -v debootstrap >/dev/null || lab_skip "no cached root filesystem and no debootstrap (scripts/setup.sh installs it)"
  host=${MIRROR#*://}; host=${host%%/*}
  timeout 15 bash -c "exec 3<>/dev/tcp/$host/80" 2>/dev/null \
    || lab_skip "no cached root filesystem, and $host is unreachable from here"
  rm -rf "$CACHE"/rootfs-*.partial
  t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${include[*]}")" \
       "$SUITE" "$CACHED.partial" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
    tail -n 30 "$TMP/debootstrap.log" >&2
    rm -rf "$CACHED.partial"
    lab_fail "debootstrap failed (log above)"
  fi
  rm -f "$CACHED.partial"/var/cache/apt/archives/*.deb
  mv "$CACHED.partial" "$CACHED"
  lab_pass "debootstrap took $((SECONDS - t0)) s; $(du -sh "$CACHED" | cut -f1)"
  # Root filesystems of older package lists, unused for 30 days, go.
  find "$CACHE" -maxdepth 1 -name 'rootfs-*' -not -name "rootfs-$SUITE-$key" -mtime +30 \
    -exec rm -rf {} +
else
  lab_log "cached root filesystem $CACHED"
fi
touch "$CACHED"
exec 9>&-

# ---------------------------------------------------------------------------------------------
# boot
# ---------------------------------------------------------------------------------------------

lab_step "boot: systemd-nspawn -b, machine $MACHINE"
mkdir -p "$ROOT" "$TMP/upper" "$TMP/work"
mount -t overlay overlay -o "lowerdir=$CACHED,upperdir=$TMP/upper,workdir=$TMP/work" "$ROOT" \
  || lab_skip "cannot mount an overlayfs here"
install -d -m 0755 "$ROOT/srv/debs"
cp "$TMP"/debs/*.deb "$ROOT/srv/debs/"
# debootstrap copied this machine's name: the container gets its own.
printf '%s\n' "$MACHINE" >"$ROOT/etc/hostname"
printf '127.0.0.1 coord.example.net relay.example.net\n127.0.1.1 %s\n' "$MACHINE" >>"$ROOT/etc/hosts"
chroot "$ROOT" useradd --create-home --shell /bin/bash alice
chroot "$ROOT" useradd --create-home --shell /bin/bash bob
printf 'alice ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$ROOT/etc/sudoers.d/alice"
chmod 0440 "$ROOT/etc/sudoers.d/alice"

nspawn_args=(-D "$ROOT" -b --private-network -M "$MACHINE" --register=no --console=pipe)
# Without systemd on the host there is no manager to ask for a scope: stay in our own cgroup.
[[ -d /run/systemd/system ]] || nspawn_args+=(--keep-unit)
systemd-nspawn "${nspawn_args[@]}" </dev/null >"$TMP/console.log" 2>&1 &
NSPAWN_PID=$!
# The container's PID 1 is a child of nspawn, once nspawn's own short-lived helper children are
# gone: the one whose pid namespace is not ours and that runs systemd.
leader() {
  local pid
  kill -0 "$NSPAWN_PID" 2>/dev/null || return 1
  for pid in $(ps -o pid= --ppid "$NSPAWN_PID"); do
    [[ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" != "$(readlink /proc/self/ns/pid)" ]] || continue
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == systemd ]] || continue
    LEADER=$pid
    return 0
  done
  return 1
}
lab_poll 20 leader || lab_skip "this machine cannot boot a container: $(tail -n 5 "$TMP/console.log")"
booted() {
  local state
  state=$(ct systemctl is-system-running 2>/dev/null) || true
  [[ "$state" == running || "$state" == degraded ]]
}
if ! lab_poll 60 booted; then
  lab_skip "the container did not boot to a running systemd within 60 s ($(ct systemctl is-system-running 2>&1)): $(tail -n 5 "$TMP/console.log")"
fi
[[ "$(ct systemctl is-system-running)" == running ]] \
  || lab_log "booted degraded: $(ct systemctl --failed --no-legend --plain | tr '\n' ' ')"
lab_pass "systemd $(ct systemctl --version | head -n 1 | cut -d' ' -f2) runs as PID 1 (leader $LEADER)"

# ---------------------------------------------------------------------------------------------
# helpers for the README
# ---------------------------------------------------------------------------------------------

# readme_block HEADING_REGEX — the first ```sh block after the line matching HEADING_REGEX.
readme_block() {
  awk -v h="$1" '$0 ~ h {s = 1} s && /^```sh/ {b = 1; next} b && /^```/ {exit} b {print}' "$README"
}
# readme_cmds HEADING_REGEX — the commands of that block: comments ("  # ...") and comment-only
# lines dropped, blanks trimmed.
readme_cmds() {
  readme_block "$1" | sed -E 's/  +#.*$//; s/^[[:space:]]+//; s/[[:space:]]+$//' | grep -v -E '^(#|$)' || true
}
# The command of one README line (before "  #"), trimmed; its comment.
line_cmd() { sed -E 's/  +#.*$//; s/^[[:space:]]+//; s/[[:space:]]+$//' <<<"$1"; }
line_comment() { [[ "$1" != *"  #"* ]] || printf '%s' "${1#*  # }"; }

# fill TEXT — the placeholders TOKEN and RELAY_TOKEN (whole words) replaced by the tokens the
# README's commands printed so far.
fill() {
  if grep -qE '(^|[^A-Z_])RELAY_TOKEN([^A-Z_]|$)' <<<"$1" && [[ -z "${RELAY_TOKEN:-}" ]]; then return 1; fi
  if grep -qE '(^|[^A-Z_])TOKEN([^A-Z_]|$)' <<<"$1" && [[ -z "${TOKEN:-}" ]]; then return 1; fi
  sed -E "s/(^|[^A-Z_])RELAY_TOKEN([^A-Z_]|$)/\1${RELAY_TOKEN:-}\2/g; s/(^|[^A-Z_])TOKEN([^A-Z_]|$)/\1${TOKEN:-}\2/g" <<<"$1"
}

# set_conf FILE KEY VALUE — what a person does in sudoedit; KEY must already be in FILE.
set_conf() {
  ct grep -q "^$2=" "$1" || why "$1 has no $2= line"
  ct sed -i "s|^$2=.*|$2=$3|" "$1"
}

status_json() { ct knit status --json 2>/dev/null; }
self_field() { status_json | jq -r ".self.$1 // empty"; }
# joined_as IPV4 — knit status shows this node with IPV4 (any mesh address when empty) and the
# home relay fra1.
joined_as() {
  local json
  json=$(status_json) || return 1
  [[ "$(jq -r '.self.ipv4 // empty' <<<"$json")" == ${1:-100.*} ]] || return 1
  [[ "$(jq -r '.self.relay // empty' <<<"$json")" == fra1 ]]
}
coordinator() { ct runuser -u knit-coordinator -- knit-coordinator "$@"; }
relay_online() { coordinator relays list --json | jq -e '.[] | select(.name == "fra1" and .online)'; }
# no_unit_links UNIT — nothing under /etc/systemd nor in deb-systemd-helper's state names UNIT.
no_unit_links() {
  local left
  left=$(ct find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled \
              /var/lib/systemd/deb-systemd-helper-masked -name "$1*" 2>/dev/null || true)
  [[ -z "$left" ]] || why "left behind for $1: $(tr '\n' ' ' <<<"$left")"
}
no_knit_link() { ! ct ip link show knit0 >/dev/null 2>&1; }
install_deb() {  # install_deb PACKAGE [apt-get options] — as root, from /srv/debs
  local deb
  deb=$(cd "$TMP/debs" && echo "$1"_*.deb)
  ct sh -c "cd /srv/debs && apt-get install -y ${*:2} ./$deb" </dev/null >"$TMP/apt.log" 2>&1 \
    || { cat "$TMP/apt.log"; why "apt-get install ${*:2} ./$deb failed"; }
}

# ---------------------------------------------------------------------------------------------
# the checks, in order
# ---------------------------------------------------------------------------------------------

check_packages_install() {
  local line n=0
  while IFS= read -r line <&3; do
    [[ "$line" == "sudo apt install ./"* ]] || continue
    local file=${line#sudo apt install ./}
    [[ -f "$TMP/debs/$file" ]] || why "README installs $file, but this build made $(cd "$TMP/debs" && echo *.deb)"
    lab_log "alice\$ $line"
    # No answer on stdin: apt must not need to ask (nothing to download).
    as_user alice "cd /srv/debs && $line" </dev/null >"$TMP/apt.log" 2>&1 \
      || { cat "$TMP/apt.log"; why "$line failed"; }
    n=$((n + 1))
  done 3< <(readme_cmds '^## Install from packages')
  ((n == 3)) || why "README's 'Install from packages' has $n 'sudo apt install ./' lines, want 3"
  lab_poll 10 ct systemctl is-active --quiet knitd || why "knitd.service is not active after install"
  ct systemctl is-enabled --quiet knitd || why "knitd.service is not enabled"
  local unit
  for unit in knit-coordinator knit-relay; do
    [[ "$(ct systemctl is-enabled "$unit" 2>&1)" == disabled ]] \
      || why "$unit is $(ct systemctl is-enabled "$unit" 2>&1) after install, want disabled"
    ! ct systemctl is-active --quiet "$unit" || why "$unit runs before it is configured"
    # Registered with deb-systemd-helper, so that purge removes an admin's enablement.
    ct test -e "/var/lib/systemd/deb-systemd-helper-enabled/$unit.service.dsh-also" \
      || why "$unit.service is not registered with deb-systemd-helper"
  done
  ct getent group knit >/dev/null || why "no group knit"
  ct getent passwd knit-coordinator knit-relay >/dev/null || why "no users knit-coordinator, knit-relay"
  [[ "$(ct stat -c %a /etc/knit/relay.conf)" == 600 ]] || why "/etc/knit/relay.conf is not 0600"
  lab_log "knitd active and enabled; knit-coordinator and knit-relay installed, disabled; group knit"
}

check_relay_unconfigured() {
  local log
  ct cp -p /etc/knit/relay.conf /root/relay.conf.packaged
  ! ct systemctl start knit-relay 2>/dev/null || why "knit-relay started with the packaged relay.conf"
  log=$(ct journalctl -u knit-relay --no-pager -o cat)
  grep -q KNIT_RELAY_NAME <<<"$log" || why "the relay's log does not name KNIT_RELAY_NAME: $log"
  lab_log "no name: $(grep KNIT_RELAY_NAME <<<"$log" | tail -n 1)"
  set_conf /etc/knit/relay.conf KNIT_RELAY_NAME probe
  ct systemctl reset-failed knit-relay 2>/dev/null || true
  ! ct systemctl start knit-relay 2>/dev/null || why "knit-relay started without an address to advertise"
  log=$(ct journalctl -u knit-relay --no-pager -o cat)
  grep -q KNIT_RELAY_ADVERTISE <<<"$log" || why "the relay's log does not name KNIT_RELAY_ADVERTISE: $log"
  lab_log "no address: $(grep KNIT_RELAY_ADVERTISE <<<"$log" | tail -n 1)"
  ct systemctl stop knit-relay
  ct systemctl reset-failed knit-relay 2>/dev/null || true  # only a failed unit has a state to reset
  ct cp -p /root/relay.conf.packaged /etc/knit/relay.conf
}

check_readme_service() {
  local raw cmd comment filled n=0 rc out
  TOKEN= RELAY_TOKEN=
  while IFS= read -r raw <&3; do
    cmd=$(line_cmd "$raw")
    [[ -z "$cmd" || "$cmd" == "#"* ]] && continue
    comment=$(line_comment "$raw")
    n=$((n + 1))
    if [[ "$cmd" == "sudoedit "* ]]; then
      local file=${cmd#sudoedit } pair
      [[ "$comment" == *=* ]] || why "README: '$cmd' names no KEY=VALUE to set"
      for pair in $comment; do
        [[ "$pair" == [A-Z]*=* ]] || continue
        filled=$(fill "${pair#*=}") || why "README: $pair comes before the command that prints it"
        if [[ "${pair#*=}" == *TOKEN ]]; then
          lab_log "alice\$ sudoedit $file: ${pair%%=*}=<the ${pair#*=} printed above>"
        else
          lab_log "alice\$ sudoedit $file: ${pair%%=*}=$filled"
        fi
        set_conf "$file" "${pair%%=*}" "$filled"
      done
      continue
    fi
    filled=$(fill "$cmd") || why "README: '$cmd' comes before the command that prints its token"
    lab_log "alice\$ $cmd"
    rc=0
    if [[ "$cmd" == *" -f" ]]; then
      # Following a log never ends: look for a few seconds.
      as_user alice "timeout 3 $filled" </dev/null >"$TMP/out" 2>&1 || rc=$?
      ((rc != 124)) || rc=0
      JOURNAL_OUT=$(cat "$TMP/out")
      keep JOURNAL_OUT
    else
      as_user alice "$filled" </dev/null >"$TMP/out" 2>&1 || rc=$?
    fi
    out=$(cat "$TMP/out")
    ((rc == 0)) || { sed 's/^/    /' <<<"$out"; why "'$cmd' exited $rc"; }
    if [[ "$cmd" == *"token create"* ]]; then
      local token
      token=$(tail -n 1 <<<"$out")
      [[ "$token" == knit1-* ]] || why "'$cmd' did not print a token last: $out"
      if [[ "$cmd" == *--relay* ]]; then
        RELAY_TOKEN=$token
      else
        TOKEN=$token
        NODE_TOKEN_SUMMARY=$(head -n 1 <<<"$out")
      fi
      keep TOKEN RELAY_TOKEN NODE_TOKEN_SUMMARY
      lab_log "  $(head -n 1 <<<"$out")"
    elif [[ -n "$out" ]]; then
      head -n 12 <<<"$out" | sed 's/^/    /'
    fi
  done 3< <(readme_block '^## Running as a service')
  ((n >= 8)) || why "README's service block has only $n commands"
  [[ -n "$TOKEN" && -n "$RELAY_TOKEN" ]] || why "the README's block made no node token or no relay token"
}

check_joined() {
  lab_poll 20 joined_as "" || why "not joined with home relay fra1 within 20 s: $(status_json | jq -c .self)"
  NAME=$(self_field name)
  IPV4=$(self_field ipv4)
  keep NAME IPV4
  ct ip -br link show knit0 | grep -qE '\b(UP|UNKNOWN)\b' || why "knit0 is not up: $(ct ip -br link show knit0)"
  ct ip -br addr show knit0 | grep -qF "$IPV4/" || why "knit0 lacks $IPV4: $(ct ip -br addr show knit0)"
  grep -q 'for coord.example.net:7443' <<<"$NODE_TOKEN_SUMMARY" \
    || why "the node token is not for coord.example.net:7443: $NODE_TOKEN_SUMMARY"
  local nodes relays
  nodes=$(coordinator nodes list --json)
  jq -e --arg n "$NAME" '.[] | select(.name == $n and .online)' <<<"$nodes" >/dev/null \
    || why "the coordinator does not list $NAME online: $nodes"
  relays=$(coordinator relays list --json)
  jq -e '.[] | select(.name == "fra1" and .online and (.addresses | index("relay.example.net:443")))' \
    <<<"$relays" >/dev/null || why "the coordinator does not list relay fra1 online at relay.example.net:443: $relays"
  lab_log "joined as $NAME $IPV4, home relay fra1, knit0 up"
}

check_no_secrets() {
  local journal sudo_lines
  # sudo itself logs every command line it runs, `knit up --token ...` included (the README
  # says so); nothing else may show a token: not our services, not systemd, not apt.
  journal=$(ct journalctl -b --no-pager -o short | grep -v ' sudo\[[0-9]*\]: ' || true)
  sudo_lines=$(ct journalctl -b --no-pager -o short | grep -c -F "$TOKEN" || true)
  ! grep -qF "$TOKEN" <<<"$journal$JOURNAL_OUT" || why "the node token is in the journal: $(grep -F "$TOKEN" <<<"$journal")"
  ! grep -qF "$RELAY_TOKEN" <<<"$journal$JOURNAL_OUT" || why "the relay token is in the journal"
  lab_log "the node token is only in sudo's own log of the command line ($sudo_lines lines)"
  ! ct ps -eo args | grep -qF "$RELAY_TOKEN" || why "the relay token is on a command line"
  [[ -n "$JOURNAL_OUT" ]] || why "the README's journalctl line showed nothing"
}

check_relay_without_token() {
  ct grep -qx 'KNIT_RELAY_TOKEN=' /etc/knit/relay.conf || why "relay.conf still holds the token"
  ct systemctl restart knit-relay || why "knit-relay does not restart without its token"
  lab_poll 20 relay_online || why "relay fra1 is not online again"
  lab_poll 20 joined_as "$IPV4" || why "knitd is not back on relay fra1"
}

check_coordinator_advertise() {
  local out rc=0
  set_conf /etc/knit/coordinator.conf KNIT_COORDINATOR_ADVERTISE ""
  ct systemctl restart knit-coordinator || why "the coordinator does not restart"
  out=$(coordinator token create 2>&1) || rc=$?
  ((rc == 1)) || why "token create with no address exited $rc: $out"
  grep -q KNIT_COORDINATOR_ADVERTISE <<<"$out" || why "token create does not name KNIT_COORDINATOR_ADVERTISE: $out"
  lab_log "no address: $out"
  set_conf /etc/knit/coordinator.conf KNIT_COORDINATOR_ADVERTISE coord.example.net:7443
  ct systemctl restart knit-coordinator || why "the coordinator does not restart"
  out=$(coordinator token create 2>&1) || why "token create fails with the address back: $out"
  grep -q 'for coord.example.net:7443' <<<"$out" || why "token create: $out"
  lab_poll 20 joined_as "$IPV4" || why "knitd did not reconnect to the restarted coordinator"
}

check_restart_keeps_membership() {
  ct systemctl restart knitd || why "systemctl restart knitd failed"
  lab_poll 20 joined_as "$IPV4" || why "after the restart: $(status_json | jq -c .self)"
  [[ "$(self_field name)" == "$NAME" ]] || why "the name changed: $(self_field name), was $NAME"
}

check_upgrade_keeps_running() {
  local before after
  before=$(ct systemctl show -p MainPID --value knitd)
  install_deb knit --reinstall
  after=$(ct systemctl show -p MainPID --value knitd)
  [[ "$after" != 0 && "$after" != "$before" ]] || why "knitd was not restarted (MainPID $before, then $after)"
  lab_poll 20 joined_as "$IPV4" || why "after the upgrade: $(status_json | jq -c .self)"
}

check_unprivileged_status() {
  local out down_rc=0
  ct usermod -a -G knit alice
  out=$(as_user alice "knit status" 2>&1) || why "alice (group knit) cannot run knit status: $out"
  grep -qF "$NAME" <<<"$out" || why "alice's knit status does not show $NAME: $out"
  out=$(as_user alice "knit status --json" 2>&1) || why "alice's knit status --json: $out"
  [[ "$(jq -r .self.ipv4 <<<"$out")" == "$IPV4" ]] || why "alice's knit status --json: $out"
  ! out=$(as_user bob "knit status" 2>&1) || why "bob, not in group knit, may read the status: $out"
  grep -q "group knit" <<<"$out" || why "bob's refusal does not say how to read the status: $out"
  out=$(as_user alice "knit down" 2>&1) || down_rc=$?
  if ! joined_as "$IPV4"; then  # back in for the checks that follow
    ct knit up --token "$TOKEN" >/dev/null 2>&1 || true
    lab_poll 20 joined_as "$IPV4" || true
  fi
  ((down_rc != 0)) || why "alice, in group knit but no operator, could run knit down: $out"
  grep -q "root or the operator" <<<"$out" || why "alice's refused knit down does not say who may: $out"
}

check_down_up_rejoin() {
  local out rc=0
  out=$(ct knit down 2>&1) || why "knit down failed: $out"
  # Down survives a restart of the service: still a member, still disconnected.
  ct systemctl restart knitd
  sleep 2
  ! joined_as "$IPV4" || why "knitd reconnected by itself after knit down and a restart"
  out=$(ct knit up 2>&1) || rc=$?
  if ((rc == 0)) && lab_poll 20 joined_as "$IPV4"; then return 0; fi
  ct knit up --token "$TOKEN" >/dev/null 2>&1 || true  # back in for the checks that follow
  lab_poll 20 joined_as "$IPV4" || true
  why "knit up without a token after knit down (exit $rc): $out"
}

check_purge_knit() {
  ct apt-get purge -y knit </dev/null >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log"; why "apt-get purge knit failed"; }
  ! ct pgrep -x knitd >/dev/null || why "knitd still runs"
  no_knit_link || why "knit0 is still there"
  no_unit_links knitd.service
  ! ct test -e /etc/knit/knitd.conf || why "/etc/knit/knitd.conf survived the purge"
  ct test -d /var/lib/knit || why "/var/lib/knit is gone, though the README says purge keeps it"
  ct getent group knit >/dev/null || why "the group knit is gone"
}

check_reinstall_rejoins() {
  install_deb knit
  lab_poll 20 joined_as "$IPV4" || why "the reinstalled knit did not rejoin: $(status_json | jq -c .self)"
  [[ "$(self_field name)" == "$NAME" ]] || why "rejoined as $(self_field name), was $NAME"
}

# run_afresh TEXT — runs the line of README's "starting afresh" block that contains TEXT, with
# NAME standing for this node's name; apt's question is answered yes.
run_afresh() {
  local line
  line=$(readme_cmds '^\*\*Removing and starting afresh' | grep -F -- "$1" | head -n 1)
  [[ -n "$line" ]] || why "README's starting-afresh block has no line with '$1'"
  line=${line//NAME/$NAME}
  lab_log "alice\$ $line"
  as_user alice "$line" <<<"$(printf 'y\n%.0s' {1..10})" >"$TMP/out" 2>&1 \
    || { cat "$TMP/out"; why "'$line' failed"; }
}

check_start_afresh() {
  local out
  run_afresh 'apt purge knit &&'
  ! ct test -e /var/lib/knit || why "/var/lib/knit is still there"
  run_afresh 'nodes remove'
  ! coordinator nodes list --json | jq -e --arg n "$NAME" '.[] | select(.name == $n)' >/dev/null \
    || why "the coordinator still lists $NAME"
  install_deb knit
  lab_poll 10 ct systemctl is-active --quiet knitd || why "knitd does not run after a fresh install"
  sleep 2  # the time it would take to rejoin, wrongly
  ! out=$(ct knit status 2>&1) || why "a fresh node reports a status as if joined: $out"
  grep -q 'knit up' <<<"$out" || why "knit status on a fresh node does not say to run knit up: $out"
  [[ -z "$(ct ip -4 -o addr show dev knit0 2>/dev/null)" ]] || why "a fresh node has an address on knit0"
  lab_log "fresh node: $out"
}

check_purge_all() {
  run_afresh 'apt purge knit-coordinator'
  run_afresh 'apt purge knit-relay'
  ct apt-get purge -y knit </dev/null >"$TMP/apt.log" 2>&1 || { cat "$TMP/apt.log"; why "apt-get purge knit failed"; }
  local unit procs
  for unit in knitd.service knit-coordinator.service knit-relay.service; do
    no_unit_links "$unit"
  done
  procs=$(ct pgrep -a knit || true)
  [[ -z "$procs" ]] || why "still running: $procs"
  no_knit_link || why "knit0 is still there"
  ! ct test -e /etc/knit || why "/etc/knit is left: $(ct ls -la /etc/knit)"
  ! ct test -e /var/lib/knit-coordinator || why "/var/lib/knit-coordinator is left"
  ! ct test -e /var/lib/knit-relay || why "/var/lib/knit-relay is left"
  out=$(ct dpkg -l 'knit*' 2>/dev/null | awk '/^[a-z][a-z] / && $1 != "un" && $1 != "pn"' || true)
  [[ -z "$out" ]] || why "dpkg still has: $out"
}

check packages-install check_packages_install
check relay-unconfigured check_relay_unconfigured
check readme-service check_readme_service
check joined check_joined
check no-secrets-in-journal check_no_secrets
check relay-without-token check_relay_without_token
check coordinator-advertise check_coordinator_advertise
check restart-keeps-membership check_restart_keeps_membership
check upgrade-keeps-running check_upgrade_keeps_running
check unprivileged-status check_unprivileged_status
check down-up-rejoin check_down_up_rejoin
check purge-knit check_purge_knit
check reinstall-rejoins check_reinstall_rejoins
check start-afresh check_start_afresh
check purge-all check_purge_all

lab_step "summary"
lab_log "PASS install_test"
