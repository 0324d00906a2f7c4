# shellcheck shell=bash
# tests/lab/lib.sh — the network-namespace lab every Knit end-to-end test and the demo stand on.
#
# Source it from a bash script that runs with `set -euo pipefail`, then call lab_init:
#
#     source "$(dirname "$0")/../lab/lib.sh"
#     lab_init                      # root, /dev/net/tun, tools; temp dir; cleanup trap
#     lab_ns_add a; lab_ns_add b
#     lab_veth "$(lab_ns a)" "$(lab_name a0)" 192.0.2.1/24 "$(lab_ns b)" "$(lab_name b0)" 192.0.2.2/24
#     lab_wg_start knitd "$(lab_ns a)" "$(lab_name wa)"
#     ...
#
# What it gives you, by section:
#   naming       lab_name LABEL, lab_ns LABEL — every name carries the run's random suffix
#   reporting    lab_log, lab_step, lab_pass, lab_fail (exit 1), lab_skip (exit 77),
#                lab_known_bug (a known failure outside the test's reach; fatal with LAB_STRICT=1)
#   needs        lab_require_root/_tun/_tools/_impl — skip only when the machine lacks something
#   waiting      lab_wait_for TIMEOUT WHAT CMD... — every wait in the lab is bounded
#   topology     lab_ns_add, lab_ns_del, lab_veth, lab_addr, lab_route, lab_router_add,
#                lab_uplink, lab_sysctl; kernel NAT: lab_nft, lab_masquerade,
#                lab_conntrack_udp_timeout
#   processes    lab_bg NAME NS CMD... — background helpers, logged and killed on exit
#   wireguard    lab_wg_start IMPL NS IF (IMPL: knitd | wggo), lab_wg_stop, lab_wg_argv,
#                lab_wg_keygen, lab_wg_setup, lab_wg_add_peer, lab_wg_link, lab_wg (runs `wg`),
#                lab_wg_field, lab_wg_wait_handshake
#   checks       lab_ping, lab_capture_*, lab_tcp_start/_finish/_exchange, lab_wg_check_*,
#                lab_pair_suite (the shared data-plane checks of the interop and pair tests)
#   cleanup      automatic on EXIT/INT/TERM: daemons stopped (and reaped), helpers killed,
#                namespaces deleted, stale UAPI sockets of our interfaces removed, logs printed
#                on failure.
#
# Environment:
#   KNIT_BIN           folder holding knitd (default: <repo>/build/bin, else <repo>/../build/bin)
#   LAB_KEEP_LOGS=1    keep the temp dir (logs, keys, captures) after the run and say where
#   LAB_WGGO_LOG_LEVEL  wireguard-go's LOG_LEVEL (default verbose; error for quiet runs)
#   LAB_SFX            force the run's name suffix (default: 6 random hex digits)
#   LAB_KNITD_STANDIN=wggo   development only: run wireguard-go wherever knitd is asked for
#                            (loudly announced; lets the scripts be proven before knitd exists)
#
# Conventions: functions that create state must run in the main shell (never inside $(...)),
# because they register what they create for cleanup. Functions that only compute a name
# (lab_name, lab_ns, lab_wg_pubkey, lab_wg_field...) are safe in $(...).

[[ -n "${LAB_LIB_LOADED:-}" ]] && return 0
LAB_LIB_LOADED=1

LAB_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO_ROOT=$(cd "$LAB_LIB_DIR/../.." && pwd)

# ---------------------------------------------------------------------------------------------
# naming
# ---------------------------------------------------------------------------------------------

# Six hex digits shared by every name this run creates, so concurrent runs never collide.
LAB_SFX=${LAB_SFX:-$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')}

# lab_name LABEL -> "LABEL-SFX", an interface name (at most 15 characters, so LABEL ≤ 8).
lab_name() {
  local n="$1-$LAB_SFX"
  if (( ${#n} > 15 )); then
    echo "lab_name: '$n' is longer than 15 characters (label '$1' too long)" >&2
    return 1
  fi
  printf '%s\n' "$n"
}

# lab_ns LABEL -> the namespace name for LABEL ("kn-LABEL-SFX").
lab_ns() { printf 'kn-%s-%s\n' "$1" "$LAB_SFX"; }

# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------

LAB_T0=${EPOCHREALTIME/./}
lab__elapsed() { local now=${EPOCHREALTIME/./}; printf '%d.%d' $(((now - LAB_T0) / 1000000)) $(((now - LAB_T0) / 100000 % 10)); }
lab_log()  { printf '[%6ss] %s\n' "$(lab__elapsed)" "$*"; }
lab_step() { printf '\n[%6ss] == %s\n' "$(lab__elapsed)" "$*"; }
lab_pass() { printf '[%6ss] ok: %s\n' "$(lab__elapsed)" "$*"; }
lab_fail() { printf '[%6ss] FAIL: %s\n' "$(lab__elapsed)" "$*" >&2; exit 1; }
lab_skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }
# lab_known_bug WHAT — a check that fails because of a known bug in code outside the test's
# reach (named in WHAT, with where the fix goes): printed as "KNOWN BUG", and fatal only with
# LAB_STRICT=1. Once the fix is in, the call becomes a lab_fail again.
LAB_KNOWN_BUGS=0
lab_known_bug() {
  printf '[%6ss] KNOWN BUG: %s\n' "$(lab__elapsed)" "$*" >&2
  LAB_KNOWN_BUGS=$((LAB_KNOWN_BUGS + 1))
  [[ "${LAB_STRICT:-0}" == 1 ]] && lab_fail "$* (LAB_STRICT=1)"
  return 0
}

# ---------------------------------------------------------------------------------------------
# needs
# ---------------------------------------------------------------------------------------------

lab_require_root() { [[ $EUID -eq 0 ]] || lab_skip "needs root (network namespaces, TUN devices)"; }

lab_require_tun() {
  [[ -c /dev/net/tun ]] || lab_skip "no /dev/net/tun on this machine"
  # Opening it proves the device is usable here (e.g. not blocked by a container's cgroup).
  { : <>/dev/net/tun; } 2>/dev/null || lab_skip "/dev/net/tun exists but cannot be opened"
}

lab_require_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || lab_skip "missing tool: $t"
  done
}

# knitd location: $KNIT_BIN, else the repo's build/bin, else a build folder next to the repo.
lab__find_knit_bin() {
  if [[ -n "${KNIT_BIN:-}" ]]; then return; fi
  if [[ -x "$LAB_REPO_ROOT/build/bin/knitd" ]]; then KNIT_BIN="$LAB_REPO_ROOT/build/bin"
  elif [[ -x "$LAB_REPO_ROOT/../build/bin/knitd" ]]; then KNIT_BIN=$(cd "$LAB_REPO_ROOT/../build/bin" && pwd)
  else KNIT_BIN="$LAB_REPO_ROOT/build/bin"
  fi
}

# lab_impl_available IMPL -> status only (no exit): is this implementation runnable here?
lab_impl_available() {
  case "$1" in
    wggo)  command -v wireguard-go >/dev/null 2>&1 ;;
    knitd) [[ "${LAB_KNITD_STANDIN:-}" == wggo ]] && { command -v wireguard-go >/dev/null 2>&1; return; }
           [[ -x "$KNIT_BIN/knitd" ]] ;;
    *) return 1 ;;
  esac
}

# lab_require_impl IMPL... — wireguard-go missing is a machine gap (skip); knitd missing is a
# build problem (fail), because the netns tests run after the build.
lab_require_impl() {
  local impl
  for impl in "$@"; do
    case "$impl" in
      wggo)  lab_require_tools wireguard-go ;;
      knitd) lab_impl_available knitd || lab_fail "knitd not found or not executable at $KNIT_BIN/knitd (build it: cmake --build build, or set KNIT_BIN)" ;;
      *) lab_fail "unknown WireGuard implementation '$impl' (want knitd or wggo)" ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------
# setup and cleanup
# ---------------------------------------------------------------------------------------------

LAB_DIR=""
LAB_NAMESPACES=()          # in creation order
LAB_BG_PIDS=()             # helper processes (captures, nc, iperf3...)
declare -gA LAB_WG_PID=()   # ifname -> daemon pid
declare -gA LAB_WG_NS=()    # ifname -> namespace
declare -gA LAB_WG_IMPL=()  # ifname -> knitd | wggo (what was asked for)
declare -gA LAB_WG_REAL=()  # ifname -> knitd | wggo (what runs, after a stand-in)
declare -gA LAB_WG_PORT=()  # ifname -> listen port
declare -gA LAB_WG_ADDR=()  # ifname -> tunnel address (no prefix)
LAB_WG_EVER=()             # every interface name we started, for socket cleanup
LAB_CLEANING=0

# lab_init [TOOLS...] — checks the machine, makes the temp dir, installs the cleanup trap.
lab_init() {
  lab_require_root
  lab_require_tun
  lab_require_tools ip wg timeout sha256sum nc ss "$@"
  lab__find_knit_bin
  LAB_DIR=$(mktemp -d /tmp/knit-lab.XXXXXX)
  mkdir -p "$LAB_DIR/logs" "$LAB_DIR/keys" "$LAB_DIR/state" "$LAB_DIR/data"
  chmod 700 "$LAB_DIR/keys"
  trap lab__cleanup EXIT
  trap 'lab_log "interrupted"; exit 130' INT
  trap 'lab_log "terminated"; exit 143' TERM
  if [[ "${LAB_KNITD_STANDIN:-}" == wggo ]]; then
    lab_log "NOTE: LAB_KNITD_STANDIN=wggo — wireguard-go stands in for knitd; this run proves the script, not knitd"
  fi
  lab_log "lab suffix $LAB_SFX, work dir $LAB_DIR, KNIT_BIN=$KNIT_BIN"
}

# lab__alive PID — running and not a zombie.
lab__alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$st" != Z ]]
}

# lab__reap PID TIMEOUT_S SIGNAL — send SIGNAL, wait up to TIMEOUT_S, then SIGKILL; sets
# LAB_REAP_RC to the exit status (128+n when killed by signal n).
lab__reap() {
  local pid=$1 t=$2 sig=$3 i
  LAB_REAP_RC=0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    lab__alive "$pid" || break
    sleep 0.1
  done
  if lab__alive "$pid"; then
    lab_log "pid $pid ignored SIG$sig for ${t}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    LAB_REAP_FORCED=1
  else
    LAB_REAP_FORCED=0
  fi
  wait "$pid" 2>/dev/null && LAB_REAP_RC=0 || LAB_REAP_RC=$?
}

lab__print_logs() {
  local f
  [[ -d "$LAB_DIR/logs" ]] || return 0
  for f in "$LAB_DIR"/logs/*.log; do
    [[ -s "$f" ]] || continue
    printf '\n----- %s (last 80 lines) -----\n' "$(basename "$f")" >&2
    tail -n 80 "$f" >&2
  done
  printf -- '----- end of logs -----\n' >&2
}

lab__cleanup() {
  local rc=$? ifn pid ns i
  (( LAB_CLEANING )) && return
  LAB_CLEANING=1
  set +e
  trap "" INT TERM   # a second Ctrl-C must not cut the cleanup short
  # Daemons first, gracefully, so they remove their sockets and TUNs themselves. One that is
  # already gone crashed or quit during the test: say so, it is often the cause of a failure.
  for ifn in "${!LAB_WG_PID[@]}"; do
    pid=${LAB_WG_PID[$ifn]}
    if ! lab__alive "$pid"; then
      wait "$pid" 2>/dev/null && i=0 || i=$?
      lab_log "NOTE: ${LAB_WG_IMPL[$ifn]} on $ifn (pid $pid) had already exited with status $i" >&2
      continue
    fi
    lab__reap "$pid" 5 TERM
  done
  for pid in "${LAB_BG_PIDS[@]}"; do
    lab__alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${LAB_BG_PIDS[@]}"; do
    lab__reap "$pid" 2 TERM >/dev/null
  done
  # Anything still running inside our namespaces was started by this run.
  for ((i = ${#LAB_NAMESPACES[@]} - 1; i >= 0; i--)); do
    ns=${LAB_NAMESPACES[$i]}
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
    # Files a test gave the namespace (`ip netns exec` bind-mounts /etc/netns/NS/*) go with it.
    [[ -d "/etc/netns/$ns" ]] && rm -rf "/etc/netns/$ns"
  done
  for ifn in "${LAB_WG_EVER[@]}"; do
    [[ -S "/var/run/wireguard/$ifn.sock" ]] && rm -f "/var/run/wireguard/$ifn.sock"
  done
  # Secrets: no log of this run may hold a key or token secret it made (lab_secrets_check).
  if (( rc != 77 )) && [[ -n "$LAB_DIR" && -d "$LAB_DIR/logs" ]]; then
    lab_secrets_check || { (( rc == 0 )) && rc=1; }
  fi
  if (( rc != 0 && rc != 77 )); then
    lab__print_logs
    lab_log "exit status $rc"
  fi
  if [[ -n "$LAB_DIR" && -d "$LAB_DIR" ]]; then
    if [[ "${LAB_KEEP_LOGS:-}" == 1 ]]; then
      lab_log "kept $LAB_DIR"
    else
      rm -rf "$LAB_DIR"
    fi
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------------------------
#
# Every netns test ends (lab__cleanup) by scanning the logs of everything it ran (logs/*.log:
# daemons, helpers, captures) for the secrets it made: every private key in a *.key file under
# the run's directory (wg genkey keys, knitd's node.key and disco.key, relay.key,
# coordinator.key) and every join token registered with lab_secret_add (mesh.sh registers the
# tokens it creates). Each is looked for in every spelling a program might print: base64
# (padded or not, standard or URL alphabet) and hex (either case); for a token, the whole
# token and its 32-byte secret. A hit fails the test, naming the log and the kind of secret
# (never the secret itself).

# lab_secret_add KIND VALUE — a secret this run made: KIND "key" (base64 of 32 bytes) or
# "token" (knit1-...). Safe in $(...): it appends to a file.
lab_secret_add() {
  [[ -n "$LAB_DIR" ]] || return 0
  printf '%s %s\n' "$1" "$2" >>"$LAB_DIR/secrets.list"
}

# lab__spellings_of_bytes HEXBYTES — base64 (padded, unpadded, URL-safe) and hex (both cases).
lab__spellings_of_bytes() {
  local hex=$1 b64
  b64=$(printf '%s' "$hex" | xxd -r -p | base64 -w0)
  printf '%s\n' "$b64" "${b64%%=*}" "$(printf '%s' "${b64%%=*}" | tr '+/' '-_')" \
    "${hex,,}" "${hex^^}"
}

# lab__secret_patterns KIND VALUE — every spelling to look for, one per line.
lab__secret_patterns() {
  local kind=$1 value=$2 hex payload
  case "$kind" in
    key)
      hex=$(printf '%s' "$value" | base64 -d 2>/dev/null | od -An -tx1 | tr -d ' \n')
      (( ${#hex} == 64 )) || return 0
      lab__spellings_of_bytes "$hex" ;;
    token)
      [[ "$value" == knit1-* ]] || return 0
      printf '%s\n' "$value"
      payload=${value#knit1-}
      while (( ${#payload} % 4 )); do payload+="="; done
      # Bytes 41..72 of the token are its secret (control/token.hpp).
      hex=$(printf '%s' "$payload" | basenc -d --base64url 2>/dev/null | od -An -tx1 -j41 -N32 | tr -d ' \n')
      (( ${#hex} == 64 )) && lab__spellings_of_bytes "$hex" ;;
  esac
  return 0
}

# lab_secrets_check — status 1 (and one line per hit) when a log holds a secret of this run.
lab_secrets_check() {
  local patterns="$LAB_DIR/secrets.patterns" f kind value n=0 hits=0 log p
  : >"$patterns"
  declare -A what=()
  while IFS= read -r -d '' f; do
    value=$(head -c 64 "$f" | tr -d ' \r\n')
    while IFS= read -r p; do [[ -n "$p" ]] && what[$p]="private key $(basename "$f")"; done \
      < <(lab__secret_patterns key "$value")
  done < <(find "$LAB_DIR" -name '*.key' -type f -print0 2>/dev/null)
  if [[ -f "$LAB_DIR/secrets.list" ]]; then
    while read -r kind value; do
      while IFS= read -r p; do [[ -n "$p" ]] && what[$p]="$kind secret"; done \
        < <(lab__secret_patterns "$kind" "$value")
    done <"$LAB_DIR/secrets.list"
  fi
  for p in "${!what[@]}"; do printf '%s\n' "$p" >>"$patterns"; n=$((n + 1)); done
  (( n > 0 )) || return 0
  for log in "$LAB_DIR"/logs/*.log; do
    [[ -f "$log" ]] || continue
    while IFS= read -r p; do
      printf '[%6ss] SECRET LEAK: %s appears in %s\n' "$(lab__elapsed)" "${what[$p]}" "$(basename "$log")" >&2
      hits=$((hits + 1))
    done < <(grep -o -F -f "$patterns" "$log" | sort -u)
  done
  if (( hits > 0 )); then
    return 1
  fi
  lab_log "secrets: none of $n spellings of this run's keys and token secrets appears in $(ls "$LAB_DIR"/logs/*.log 2>/dev/null | wc -l) logs"
  return 0
}

# ---------------------------------------------------------------------------------------------
# waiting
# ---------------------------------------------------------------------------------------------

# lab_wait_for TIMEOUT_S WHAT CMD... — retries CMD every 0.1 s; fails the test naming WHAT.
lab_wait_for() {
  local t=$1 what=$2
  shift 2
  lab_poll "$t" "$@" || lab_fail "timed out after ${t}s waiting for $what"
}

# lab_poll TIMEOUT_S CMD... — like lab_wait_for but returns 1 instead of failing.
lab_poll() {
  local t=$1
  shift
  local deadline=$(( ${EPOCHREALTIME/./} + t * 1000000 ))
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    (( ${EPOCHREALTIME/./} >= deadline )) && return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------
# topology
# ---------------------------------------------------------------------------------------------

# lab_ns_add LABEL — creates namespace $(lab_ns LABEL) with lo up; registered for deletion.
lab_ns_add() {
  local ns
  ns=$(lab_ns "$1")
  ip netns list | awk '{print $1}' | grep -qxF "$ns" && lab_fail "namespace $ns already exists"
  ip netns add "$ns" || lab_fail "cannot create namespace $ns"
  LAB_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
  # Deterministic behaviour regardless of the host's defaults (rp_filter breaks asymmetric
  # routing in roaming and NAT topologies; DAD delays IPv6 addresses).
  lab_sysctl "$ns" net.ipv4.conf.all.rp_filter 0
  lab_sysctl "$ns" net.ipv4.conf.default.rp_filter 0
  lab_sysctl "$ns" net.ipv6.conf.all.accept_dad 0
  lab_sysctl "$ns" net.ipv6.conf.default.accept_dad 0
}

# lab_ns_del LABEL — deletes a namespace before the end of the run (its processes are killed;
# stop daemons in it with lab_wg_stop first to check their shutdown).
lab_ns_del() {
  local ns pid i keep=()
  ns=$(lab_ns "$1")
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$ns" || lab_fail "cannot delete namespace $ns"
  for i in "${LAB_NAMESPACES[@]}"; do [[ "$i" != "$ns" ]] && keep+=("$i"); done
  LAB_NAMESPACES=("${keep[@]}")
}

# lab_sysctl NS KEY VALUE
lab_sysctl() { ip netns exec "$1" sysctl -qw "$2=$3" >/dev/null || lab_fail "sysctl $2=$3 in $1"; }

# lab_addr NS IF CIDR — adds an address (IPv6 without DAD).
lab_addr() {
  if [[ "$3" == *:* ]]; then
    ip -n "$1" addr add "$3" dev "$2" nodad || lab_fail "adding $3 to $2 in $1"
  else
    ip -n "$1" addr add "$3" dev "$2" || lab_fail "adding $3 to $2 in $1"
  fi
}

# lab_veth NS1 IF1 CIDR1 NS2 IF2 CIDR2 — a veth pair between two namespaces, both ends up.
# A CIDR may be "-" for no address. Deleting either namespace deletes the pair.
lab_veth() {
  local ns1=$1 if1=$2 a1=$3 ns2=$4 if2=$5 a2=$6
  ip link add "$if1" netns "$ns1" type veth peer name "$if2" netns "$ns2" \
    || lab_fail "cannot create veth $if1($ns1) <-> $if2($ns2)"
  [[ "$a1" != - ]] && lab_addr "$ns1" "$if1" "$a1"
  [[ "$a2" != - ]] && lab_addr "$ns2" "$if2" "$a2"
  ip -n "$ns1" link set "$if1" up
  ip -n "$ns2" link set "$if2" up
}

# lab_route NS DEST VIA [DEV] — DEST may be "default".
lab_route() {
  local ns=$1 dest=$2 via=$3 dev=${4:-}
  ip -n "$ns" route replace "$dest" via "$via" ${dev:+dev "$dev"} || lab_fail "route $dest via $via in $ns"
}

# lab_router_add LABEL — a namespace that forwards IPv4 and IPv6 (an "internet core" or a
# home router; NAT rules are added on top by the caller).
lab_router_add() {
  lab_ns_add "$1"
  lab_sysctl "$(lab_ns "$1")" net.ipv4.ip_forward 1
  lab_sysctl "$(lab_ns "$1")" net.ipv6.conf.all.forwarding 1
}

# lab_uplink HOST_NS HOST_IF HOST_CIDR ROUTER_NS ROUTER_IF ROUTER_CIDR
# Connects a host to a router with a veth and makes the router the host's default gateway:
#     [HOST_NS] HOST_IF HOST_CIDR ----- ROUTER_CIDR ROUTER_IF [ROUTER_NS]
lab_uplink() {
  local hns=$1 hif=$2 hcidr=$3 rns=$4 rif=$5 rcidr=$6
  lab_veth "$hns" "$hif" "$hcidr" "$rns" "$rif" "$rcidr"
  lab_route "$hns" default "${rcidr%/*}"
}

# lab_nft NS — loads the nftables ruleset read from stdin into NS.
lab_nft() {
  lab_require_tools nft
  ip netns exec "$1" nft -f - || lab_fail "nftables rejected the ruleset for $1"
}

# lab_masquerade ROUTER_NS WAN_IF [FLAGS] — kernel NAT on a router: masquerade what leaves
# WAN_IF. No FLAGS: endpoint-independent mapping, port-preserving, address-and-port-dependent
# filtering (port-restricted cone); "random", "fully-random" or "random,persistent": a port per
# flow (symmetric). See NAT.md, "Linux netfilter in a router namespace".
lab_masquerade() {
  local ns=$1 wan=$2 flags=${3:-}
  lab_nft "$ns" <<EOF
table ip knit_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "$wan" masquerade $flags
  }
}
EOF
}

# lab_conntrack_udp_timeout NS SECONDS — how long an idle UDP mapping lives in NS (namespace
# default 30 s; short to test keepalives, long to model RFC 4787's 2 minutes and more).
lab_conntrack_udp_timeout() {
  lab_sysctl "$1" net.netfilter.nf_conntrack_udp_timeout "$2"
  lab_sysctl "$1" net.netfilter.nf_conntrack_udp_timeout_stream "$2"
}

# ---------------------------------------------------------------------------------------------
# background helpers
# ---------------------------------------------------------------------------------------------

# lab_bg NAME NS CMD... — runs CMD in NS in the background ("-" for the host namespace),
# output to logs/NAME.log, registered for cleanup. The pid is left in LAB_BG_LAST.
lab_bg() {
  local name=$1 ns=$2
  shift 2
  if [[ "$ns" == - ]]; then
    "$@" >"$LAB_DIR/logs/$name.log" 2>&1 &
  else
    ip netns exec "$ns" "$@" >"$LAB_DIR/logs/$name.log" 2>&1 &
  fi
  LAB_BG_LAST=$!
  LAB_BG_PIDS+=("$LAB_BG_LAST")
}

# lab_bg_wait PID TIMEOUT_S — waits for a background helper; sets LAB_BG_RC. Kills it at the
# deadline (and then LAB_BG_RC is 124).
lab_bg_wait() {
  local pid=$1 t=$2
  if lab_poll "$t" lab__not_alive "$pid"; then
    wait "$pid" 2>/dev/null && LAB_BG_RC=0 || LAB_BG_RC=$?
  else
    lab__reap "$pid" 2 TERM
    LAB_BG_RC=124
  fi
}
lab__not_alive() { ! lab__alive "$1"; }

# ---------------------------------------------------------------------------------------------
# wireguard
# ---------------------------------------------------------------------------------------------

# lab_wg_start IMPL NS IFNAME [KNITD_ARGS...] — starts a WireGuard implementation serving
# /var/run/wireguard/IFNAME.sock and owning TUN IFNAME inside NS; waits (10 s) for both.
#   knitd: $KNIT_BIN/knitd --tun IFNAME --state-dir <tmp> --socket <tmp> [KNITD_ARGS...]
#   wggo:  wireguard-go -f IFNAME
lab_wg_start() {
  local impl=$1 ns=$2 ifn=$3 real pid log
  shift 3
  (( ${#ifn} <= 15 )) || lab_fail "interface name '$ifn' longer than 15 characters"
  real=$impl
  [[ "$impl" == knitd && "${LAB_KNITD_STANDIN:-}" == wggo ]] && real=wggo
  [[ -n "${LAB_WG_PID[$ifn]:-}" ]] && lab_fail "lab_wg_start: $ifn is already running"
  if [[ -e "/var/run/wireguard/$ifn.sock" ]]; then
    lab_fail "a UAPI socket /var/run/wireguard/$ifn.sock already exists before starting $impl"
  fi
  log="$LAB_DIR/logs/$impl-$ifn.log"
  [[ -e "$log" ]] && log="$LAB_DIR/logs/$impl-$ifn.$(date +%s%N).log"
  lab_wg_argv "$real" "$ifn" "$@"
  # Background jobs of a script start with SIGINT ignored; give the daemon the default back so
  # SIGINT means what it means at a terminal.
  ip netns exec "$ns" env --default-signal=INT,QUIT "${LAB_ARGV[@]}" >"$log" 2>&1 &
  pid=$!
  LAB_WG_PID[$ifn]=$pid
  LAB_WG_NS[$ifn]=$ns
  LAB_WG_IMPL[$ifn]=$impl
  LAB_WG_REAL[$ifn]=$real
  LAB_WG_EVER+=("$ifn")
  if ! lab_poll 10 lab__wg_ready "$ifn"; then
    if lab__alive "$pid"; then
      lab_fail "$impl on $ifn in $ns: no UAPI socket /var/run/wireguard/$ifn.sock and TUN after 10 s"
    fi
    wait "$pid" 2>/dev/null && LAB_REAP_RC=0 || LAB_REAP_RC=$?
    unset "LAB_WG_PID[$ifn]"
    lab_fail "$impl on $ifn in $ns exited with status $LAB_REAP_RC before its UAPI socket appeared: $(tail -n 3 "$log" | tr '\n' ' ')"
  fi
  if [[ "$real" != "$impl" ]]; then
    lab_log "started $impl (stand-in: $real) on $ifn in $ns (pid $pid)"
  else
    lab_log "started $impl on $ifn in $ns (pid $pid)"
  fi
}

# lab_wg_argv IMPL IFNAME [KNITD_ARGS...] — the command line lab_wg_start runs, in LAB_ARGV
# (for tests that run a daemon by hand, e.g. to watch it fail). Honours LAB_KNITD_STANDIN.
lab_wg_argv() {
  local impl=$1 ifn=$2
  shift 2
  [[ "$impl" == knitd && "${LAB_KNITD_STANDIN:-}" == wggo ]] && impl=wggo
  case "$impl" in
    knitd)
      mkdir -p "$LAB_DIR/state/$ifn"
      LAB_ARGV=("$KNIT_BIN/knitd" --tun "$ifn" --state-dir "$LAB_DIR/state/$ifn"
                --socket "$LAB_DIR/state/$ifn/knitd.sock" "$@") ;;
    # WG_PROCESS_FOREGROUND=1 also silences its "use the kernel module" banner.
    wggo) LAB_ARGV=(env WG_PROCESS_FOREGROUND=1 LOG_LEVEL="${LAB_WGGO_LOG_LEVEL:-verbose}" wireguard-go -f "$ifn") ;;
    *) lab_fail "unknown WireGuard implementation '$impl'" ;;
  esac
}

lab__wg_ready() {
  local ifn=$1
  lab__alive "${LAB_WG_PID[$ifn]}" || return 1
  [[ -S "/var/run/wireguard/$ifn.sock" ]] || return 1
  ip -n "${LAB_WG_NS[$ifn]}" link show "$ifn" >/dev/null 2>&1
}

# lab_wg_pid IFNAME
lab_wg_pid() { printf '%s\n' "${LAB_WG_PID[$1]}"; }

# lab_wg_stop IFNAME [SIGNAL] — stops the daemon (TERM by default), reaps it and checks that it
# went within 10 s and removed its UAPI socket and its TUN. Sets LAB_REAP_RC to its exit status.
lab_wg_stop() {
  local ifn=$1 sig=${2:-TERM} pid ns impl
  pid=${LAB_WG_PID[$ifn]:-}
  [[ -n "$pid" ]] || lab_fail "lab_wg_stop: $ifn is not running"
  ns=${LAB_WG_NS[$ifn]}
  impl=${LAB_WG_IMPL[$ifn]}
  lab__reap "$pid" 10 "$sig"
  unset "LAB_WG_PID[$ifn]"
  (( LAB_REAP_FORCED )) && lab_fail "$impl on $ifn did not exit within 10 s of SIG$sig"
  [[ -e "/var/run/wireguard/$ifn.sock" ]] && lab_fail "$impl on $ifn left /var/run/wireguard/$ifn.sock behind after SIG$sig"
  # The TUN goes when its last fd closes; give the kernel a moment.
  lab_poll 3 lab__link_gone "$ns" "$ifn" || lab_fail "$impl on $ifn left its TUN $ifn behind in $ns after SIG$sig"
  lab_log "stopped $impl on $ifn with SIG$sig (exit status $LAB_REAP_RC; socket and TUN gone)"
}
lab__link_gone() { ! ip -n "$1" link show "$2" >/dev/null 2>&1; }

# lab_wg IFNAME SUBCOMMAND [ARGS...] — runs `wg SUBCOMMAND IFNAME ARGS...` in IFNAME's namespace.
lab_wg() {
  local ifn=$1 sub=$2
  shift 2
  ip netns exec "${LAB_WG_NS[$ifn]}" wg "$sub" "$ifn" "$@"
}

# lab_wg_keygen NAME — a key pair in keys/NAME.{key,pub}, made once and reused (so a restarted
# daemon keeps its identity).
lab_wg_keygen() {
  local k="$LAB_DIR/keys/$1"
  [[ -s "$k.key" ]] && return 0
  (umask 077 && wg genkey >"$k.key") || lab_fail "wg genkey"
  wg pubkey <"$k.key" >"$k.pub" || lab_fail "wg pubkey"
}
lab_wg_pubkey()  { cat "$LAB_DIR/keys/$1.pub"; }
lab_wg_privkey() { cat "$LAB_DIR/keys/$1.key"; }

# lab_wg_setup IFNAME PORT TUNNEL_CIDR — private key (keys/IFNAME), listen port, the tunnel
# address on the TUN and link up.
lab_wg_setup() {
  local ifn=$1 port=$2 cidr=$3 ns
  ns=${LAB_WG_NS[$ifn]}
  lab_wg_keygen "$ifn"
  lab_wg "$ifn" set private-key "$LAB_DIR/keys/$ifn.key" listen-port "$port" \
    || lab_fail "wg set $ifn private-key/listen-port $port (${LAB_WG_IMPL[$ifn]})"
  LAB_WG_PORT[$ifn]=$port
  LAB_WG_ADDR[$ifn]=${cidr%/*}
  lab_addr "$ns" "$ifn" "$cidr"
  ip -n "$ns" link set "$ifn" up || lab_fail "link up $ifn in $ns"
}

# lab_wg_add_peer IFNAME PEER_IFNAME ALLOWED_IPS [ENDPOINT|-] [KEEPALIVE]
lab_wg_add_peer() {
  local ifn=$1 peer=$2 allowed=$3 ep=${4:--} ka=${5:-}
  local args=(peer "$(lab_wg_pubkey "$peer")" allowed-ips "$allowed")
  [[ "$ep" != - ]] && args+=(endpoint "$ep")
  [[ -n "$ka" ]] && args+=(persistent-keepalive "$ka")
  lab_wg "$ifn" set "${args[@]}" || lab_fail "wg set $ifn ${args[*]}"
}

# lab_wg_link IF_A UNDERLAY_A IF_B UNDERLAY_B [KEEPALIVE] — each side a peer of the other:
# allowed-ips = the other's tunnel address /32, endpoint = its underlay address and port
# (UNDERLAY "-" leaves that side without an endpoint, so it cannot initiate).
lab_wg_link() {
  local a=$1 ua=$2 b=$3 ub=$4 ka=${5:-}
  local ea=- eb=-
  [[ "$ua" != - ]] && ea="$ua:${LAB_WG_PORT[$a]}"
  [[ "$ub" != - ]] && eb="$ub:${LAB_WG_PORT[$b]}"
  lab_wg_add_peer "$a" "$b" "${LAB_WG_ADDR[$b]}/32" "$eb" "$ka"
  lab_wg_add_peer "$b" "$a" "${LAB_WG_ADDR[$a]}/32" "$ea" "$ka"
}

# lab_wg_field IFNAME PEER_IFNAME FIELD — one field of the peer's line in `wg show IF dump`:
# endpoint, allowed-ips, latest-handshake, rx, tx, keepalive.
lab_wg_field() {
  local ifn=$1 pub col
  pub=$(lab_wg_pubkey "$2")
  case "$3" in
    endpoint) col=3 ;; allowed-ips) col=4 ;; latest-handshake) col=5 ;;
    rx) col=6 ;; tx) col=7 ;; keepalive) col=8 ;;
    *) echo "lab_wg_field: unknown field $3" >&2; return 1 ;;
  esac
  lab_wg "$ifn" show dump | awk -F'\t' -v k="$pub" -v c="$col" 'NR > 1 && $1 == k { print $c; found = 1 } END { exit !found }'
}

lab__has_handshake() { local t; t=$(lab_wg_field "$1" "$2" latest-handshake) && [[ "$t" =~ ^[0-9]+$ ]] && (( t > 0 )); }

# lab_wg_wait_handshake IFNAME PEER_IFNAME [TIMEOUT_S]
lab_wg_wait_handshake() {
  lab_wait_for "${3:-10}" "a handshake with $2 in \`wg show $1\` (${LAB_WG_IMPL[$1]})" lab__has_handshake "$1" "$2"
}

# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------

# lab_ping NS ADDR [TIMEOUT_S] [PING_ARGS...] — succeeds once a ping is answered.
lab_ping() {
  local ns=$1 addr=$2 t=${3:-10}
  shift 3 || shift $#
  local args=(-c 1 -W 1 -n "$@")
  [[ "$addr" == *:* ]] && args=(-6 "${args[@]}")
  lab_poll "$t" ip netns exec "$ns" ping "${args[@]}" "$addr" \
    || lab_fail "ping ${*:+($*) }from $ns to $addr got no answer within ${t}s"
}

# lab_capture_start NAME NS IF FILTER — tcpdump in the background (text, one line per packet,
# both directions) to logs/NAME.log; waits until it is listening.
lab_capture_start() {
  local name=$1 ns=$2 dev=$3 filter=$4
  lab_bg "$name" "$ns" timeout 300 tcpdump -n -l -i "$dev" "$filter"
  LAB_CAPTURE_PID[$name]=$LAB_BG_LAST
  lab_wait_for 10 "tcpdump $name on $dev in $ns to start" grep -q "listening on" "$LAB_DIR/logs/$name.log"
}
declare -gA LAB_CAPTURE_PID=()

# lab_capture_stop NAME — stops it; the lines stay in logs/NAME.log (see lab_capture_lines).
lab_capture_stop() {
  local pid=${LAB_CAPTURE_PID[$1]}
  sleep 0.3 # let tcpdump flush the last packets
  lab__reap "$pid" 3 TERM
}

# lab_capture_lines NAME — the packet lines captured so far.
lab_capture_lines() { grep -E '^[0-9]{2}:[0-9]{2}:[0-9]{2}' "$LAB_DIR/logs/$1.log" || true; }

# WireGuard messages are told apart in a capture by their UDP length: an initiation is 148
# bytes, a response 92, a cookie reply 64, and data 32 + 16k (never 148 or 92). Capture plain
# "udp": a filter on payload bytes (udp[8:4] = ...) was seen to miss a packet that had waited
# in the ARP queue.

# lab_data_file MB -> path of MB MiB of random data (made once per run).
lab_data_file() {
  local f="$LAB_DIR/data/random-$1M.bin"
  [[ -s "$f" ]] || head -c $(( $1 * 1048576 )) /dev/urandom >"$f"
  printf '%s\n' "$f"
}

# lab_paced_cat FILE CHUNK_KIB DELAY_S — writes FILE in chunks with a pause after each, so a
# transfer lasts long enough for something to happen during it.
lab_paced_cat() {
  local f=$1 kib=$2 d=$3 size n i
  size=$(stat -c %s "$f")
  n=$(( (size + kib * 1024 - 1) / (kib * 1024) ))
  for ((i = 0; i < n; i++)); do
    dd if="$f" bs="${kib}K" skip="$i" count=1 status=none || return 1
    sleep "$d"
  done
}

declare -gA LAB_TCP_RPID=() LAB_TCP_SPID=() LAB_TCP_FILE=() LAB_TCP_DESC=() LAB_TCP_T0=()

# lab_tcp_start NAME SRC_NS DST_NS DST_ADDR PORT FILE [CHUNK_KIB DELAY_S]
# Starts a one-shot TCP transfer of FILE from SRC_NS to DST_ADDR:PORT (a listener in DST_NS),
# in the background; paced when CHUNK_KIB and DELAY_S are given. Finish with lab_tcp_finish.
lab_tcp_start() {
  local name=$1 sns=$2 dns=$3 addr=$4 port=$5 file=$6 kib=${7:-} d=${8:-}
  local out="$LAB_DIR/data/recv-$name.bin"
  rm -f "$out"
  lab_bg "$name-recv" "$dns" timeout 300 sh -c 'exec nc -l -s "$1" -p "$2" </dev/null >"$3"' nc "$addr" "$port" "$out"
  LAB_TCP_RPID[$name]=$LAB_BG_LAST
  lab_wait_for 10 "a TCP listener on $addr:$port in $dns" lab__listening "$dns" "$port"
  if [[ -n "$kib" ]]; then
    # The pacing loop runs here; nc runs in the namespace (killed on cleanup with the namespace).
    ( lab_paced_cat "$file" "$kib" "$d" | ip netns exec "$sns" timeout 300 nc -N "$addr" "$port" ) \
      >"$LAB_DIR/logs/$name-send.log" 2>&1 &
    LAB_BG_LAST=$!
    LAB_BG_PIDS+=("$LAB_BG_LAST")
  else
    lab_bg "$name-send" "$sns" timeout 300 sh -c 'exec nc -N "$1" "$2" <"$3"' nc "$addr" "$port" "$file"
  fi
  LAB_TCP_SPID[$name]=$LAB_BG_LAST
  LAB_TCP_FILE[$name]=$file
  LAB_TCP_DESC[$name]="$(( $(stat -c %s "$file") / 1048576 )) MiB from $sns to $addr:$port"
  LAB_TCP_T0[$name]=${EPOCHREALTIME/./}
}
lab__listening() { [[ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2")" ]]; }

# lab_tcp_finish NAME [TIMEOUT_S] — waits for both ends, compares sha256 sums; fails loudly.
lab_tcp_finish() {
  local name=$1 t=${2:-120} src dst us
  lab_bg_wait "${LAB_TCP_SPID[$name]}" "$t"
  (( LAB_BG_RC == 0 )) || lab_fail "TCP transfer $name (${LAB_TCP_DESC[$name]}): sender ended with status $LAB_BG_RC (124 = timed out)"
  lab_bg_wait "${LAB_TCP_RPID[$name]}" 20
  (( LAB_BG_RC == 0 )) || lab_fail "TCP transfer $name (${LAB_TCP_DESC[$name]}): receiver ended with status $LAB_BG_RC (124 = timed out)"
  us=$(( ${EPOCHREALTIME/./} - LAB_TCP_T0[$name] ))
  src=$(sha256sum <"${LAB_TCP_FILE[$name]}" | cut -d' ' -f1)
  dst=$(sha256sum <"$LAB_DIR/data/recv-$name.bin" | cut -d' ' -f1)
  if [[ "$src" != "$dst" ]]; then
    lab_fail "TCP transfer $name (${LAB_TCP_DESC[$name]}): sha256 mismatch (sent $src, received $dst, $(stat -c %s "$LAB_DIR/data/recv-$name.bin") bytes)"
  fi
  rm -f "$LAB_DIR/data/recv-$name.bin"
  LAB_TCP_MBPS=$(awk -v b="$(stat -c %s "${LAB_TCP_FILE[$name]}")" -v us="$us" 'BEGIN { printf "%.0f", b * 8 / us }')
  lab_pass "TCP $name: ${LAB_TCP_DESC[$name]}, sha256 matches ($(awk -v us="$us" 'BEGIN{printf "%.1f", us/1e6}') s, ~$LAB_TCP_MBPS Mbit/s)"
}

# lab_tcp_exchange NS_A ADDR_A NS_B ADDR_B MB — MB MiB of random data each way at the same
# time, both checked by sha256.
lab_tcp_exchange() {
  local nsa=$1 aa=$2 nsb=$3 ab=$4 mb=$5 f
  f=$(lab_data_file "$mb")
  lab_tcp_start a2b "$nsa" "$nsb" "$ab" 5001 "$f"
  lab_tcp_start b2a "$nsb" "$nsa" "$aa" 5002 "$f"
  lab_tcp_finish a2b 240
  lab_tcp_finish b2a 240
}

# lab_wg_check_counters IF PEER MIN_MB — rx and tx for PEER in `wg show IF` are both at least
# MIN_MB MiB and at most 1.5 x MIN_MB + 4 MiB (WireGuard and TCP overhead and resends under
# load, but not a double count).
lab_wg_check_counters() {
  local ifn=$1 peer=$2 mb=$3 rx tx lo hi
  rx=$(lab_wg_field "$ifn" "$peer" rx) || lab_fail "no peer $peer in \`wg show $ifn dump\`"
  tx=$(lab_wg_field "$ifn" "$peer" tx)
  lo=$(( mb * 1048576 ))
  hi=$(( mb * 1048576 * 3 / 2 + 4 * 1048576 ))
  for v in "rx:$rx" "tx:$tx"; do
    local k=${v%%:*} n=${v#*:}
    [[ "$n" =~ ^[0-9]+$ ]] || lab_fail "wg show $ifn: $k counter '$n' is not a number"
    (( n >= lo )) || lab_fail "wg show $ifn (${LAB_WG_IMPL[$ifn]}): $k = $n bytes, less than the $mb MiB that went through"
    (( n <= hi )) || lab_fail "wg show $ifn (${LAB_WG_IMPL[$ifn]}): $k = $n bytes, far more than the $mb MiB that went through"
  done
  lab_pass "wg show $ifn (${LAB_WG_IMPL[$ifn]}): rx $(lab__mib "$rx") MiB, tx $(lab__mib "$tx") MiB for peer $peer"
}
lab__mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# lab_wg_check_counters_agree IF_A IF_B — neither side counts more received bytes than the
# other counts sent (+1 %): both count whole WireGuard messages. Fewer is allowed: a busy
# receiver drops datagrams from a full socket buffer, and TCP resends them.
lab_wg_check_counters_agree() {
  local a=$1 b=$2 atx brx btx arx
  atx=$(lab_wg_field "$a" "$b" tx); brx=$(lab_wg_field "$b" "$a" rx)
  btx=$(lab_wg_field "$b" "$a" tx); arx=$(lab_wg_field "$a" "$b" rx)
  (( brx * 100 <= atx * 101 )) || lab_fail "$b (${LAB_WG_IMPL[$b]}) counts rx $brx bytes, more than $a (${LAB_WG_IMPL[$a]}) counts tx ($atx)"
  (( arx * 100 <= btx * 101 )) || lab_fail "$a (${LAB_WG_IMPL[$a]}) counts rx $arx bytes, more than $b (${LAB_WG_IMPL[$b]}) counts tx ($btx)"
  lab_pass "counters consistent: $a tx $atx >= $b rx $brx; $b tx $btx >= $a rx $arx"
}

# lab_wg_check_handshake_recent IF PEER — latest handshake within the last 3 minutes.
lab_wg_check_handshake_recent() {
  local ifn=$1 peer=$2 t now
  t=$(lab_wg_field "$ifn" "$peer" latest-handshake) || lab_fail "no peer $peer in \`wg show $ifn dump\`"
  now=$(date +%s)
  [[ "$t" =~ ^[0-9]+$ ]] && (( t > 0 && t <= now + 5 && now - t < 180 )) \
    || lab_fail "wg show $ifn (${LAB_WG_IMPL[$ifn]}): latest handshake with $peer is '$t' (now $now)"
  lab_pass "wg show $ifn (${LAB_WG_IMPL[$ifn]}): latest handshake $((now - t)) s ago"
}

# lab_wg_check_endpoint IF PEER ADDR:PORT — `wg show IF endpoints` shows that endpoint for PEER.
lab_wg_check_endpoint() {
  local ep
  ep=$(lab_wg_field "$1" "$2" endpoint) || lab_fail "no peer $2 in \`wg show $1 dump\`"
  [[ "$ep" == "$3" ]] || lab_fail "wg show $1 (${LAB_WG_IMPL[$1]}): endpoint of $2 is '$ep', expected '$3'"
  lab_pass "wg show $1 (${LAB_WG_IMPL[$1]}): endpoint of $2 is $3"
}

# lab_wg_check_showconf IF PEER ALLOWED_CSV ENDPOINT — `wg showconf IF` holds exactly the
# interface's private key and port and one peer with its public key, allowed IPs (as a set) and
# endpoint; feeding it back with `wg setconf` changes nothing.
lab_wg_check_showconf() {
  local ifn=$1 peer=$2 allowed=$3 ep=$4 conf conf2 got want what
  what="wg showconf $ifn (${LAB_WG_IMPL[$ifn]})"
  conf=$(lab_wg "$ifn" showconf) || lab_fail "$what failed"
  lab__conf_has "$conf" "PrivateKey = $(lab_wg_privkey "$ifn")" || lab_fail "$what: no or wrong PrivateKey"$'\n'"$conf"
  lab__conf_has "$conf" "ListenPort = ${LAB_WG_PORT[$ifn]}" || lab_fail "$what: ListenPort is not ${LAB_WG_PORT[$ifn]}"$'\n'"$conf"
  [[ $(grep -cxF '[Peer]' <<<"$conf") == 1 ]] || lab_fail "$what: expected exactly one [Peer]"$'\n'"$conf"
  lab__conf_has "$conf" "PublicKey = $(lab_wg_pubkey "$peer")" || lab_fail "$what: peer PublicKey is not $peer's"$'\n'"$conf"
  lab__conf_has "$conf" "Endpoint = $ep" || lab_fail "$what: peer Endpoint is not $ep"$'\n'"$conf"
  got=$(sed -n 's/^AllowedIPs = //p' <<<"$conf" | tr ',' '\n' | tr -d ' ' | sort | paste -sd, -)
  want=$(tr ',' '\n' <<<"$allowed" | tr -d ' ' | sort | paste -sd, -)
  [[ "$got" == "$want" ]] || lab_fail "$what: AllowedIPs are '$got', expected '$want'"$'\n'"$conf"
  printf '%s\n' "$conf" >"$LAB_DIR/state/$ifn.showconf"
  lab_wg "$ifn" setconf "$LAB_DIR/state/$ifn.showconf" || lab_fail "wg setconf $ifn with its own showconf failed"
  conf2=$(lab_wg "$ifn" showconf) || lab_fail "$what failed after setconf"
  lab__conf_norm "$conf" >"$LAB_DIR/state/$ifn.showconf.1"
  lab__conf_norm "$conf2" >"$LAB_DIR/state/$ifn.showconf.2"
  diff -u "$LAB_DIR/state/$ifn.showconf.1" "$LAB_DIR/state/$ifn.showconf.2" >&2 \
    || lab_fail "$what: configuration changed after \`wg setconf\` of its own showconf"
  lab_pass "$what reproduces key, port, peer, allowed IPs, endpoint; setconf round-trips"
}
lab__conf_has() { grep -qxF "$2" <<<"$1"; }
# AllowedIPs order is the implementation's choice; compare as sets.
lab__conf_norm() {
  awk -F' = ' '$1 == "AllowedIPs" { n = split($2, a, ", "); for (i = 1; i <= n; i++) print "AllowedIPs = " a[i]; next } { print }' <<<"$1" | sort
}

# ---------------------------------------------------------------------------------------------
# shared data-plane checks (wg_interop_test.sh, knitd_pair_test.sh)
# ---------------------------------------------------------------------------------------------
#
#   [kn-a-SFX]                                            [kn-b-SFX]
#    IMPL_A on wa-SFX 10.77.0.1/24                        IMPL_B on wb-SFX 10.77.0.2/24
#    udp 51820                                            udp 51821
#    a0-SFX 192.0.2.1/24 ---------------- veth ---------- b0-SFX 192.0.2.2/24
#
# lab_pair_suite IMPL_A IMPL_B [MB]
#   round 1: both started fresh, configured only with `wg set`; A pings first. A capture on each
#            veth proves the first handshake initiation left A and the response left B; B pings
#            A; full-size (1420-byte, DF) pings both ways. Both daemons stopped with SIGTERM:
#            their sockets and TUNs must be gone.
#   round 2: both restarted under the same names; B pings first, and the capture proves B
#            initiated. MB MiB (default 50) of random data each way over TCP, sha256 checked;
#            `wg show` on each side: latest handshake, rx/tx at least MB MiB and agreeing with
#            the other side; `wg showconf` reproduces the configuration and round-trips through
#            `wg setconf`; the tunnel still carries pings afterwards.
lab_pair_suite() {
  local impl_a=$1 impl_b=$2 mb=${3:-50}
  local A B va vb wa wb round
  lab_require_impl "$impl_a" "$impl_b"
  lab_require_tools ping tcpdump
  lab_ns_add a; A=$(lab_ns a)
  lab_ns_add b; B=$(lab_ns b)
  va=$(lab_name a0); vb=$(lab_name b0)
  wa=$(lab_name wa); wb=$(lab_name wb)
  lab_veth "$A" "$va" 192.0.2.1/24 "$B" "$vb" 192.0.2.2/24
  lab_ping "$A" 192.0.2.2 5
  lab_log "topology: $A ($impl_a on $wa, 192.0.2.1:51820) <-> $B ($impl_b on $wb, 192.0.2.2:51821)"

  for round in 1 2; do
    local first=$wa first_ns=$A second=$wb second_ns=$B first_ul=192.0.2.1 second_ul=192.0.2.2
    if (( round == 2 )); then
      first=$wb first_ns=$B second=$wa second_ns=$A first_ul=192.0.2.2 second_ul=192.0.2.1
    fi
    if (( round == 1 )); then lab_step "round 1: $impl_a on $wa sends first"
    else lab_step "round 2 (both restarted): $impl_b on $wb sends first"; fi
    lab_wg_start "$impl_a" "$A" "$wa"
    lab_wg_start "$impl_b" "$B" "$wb"
    lab_wg_setup "$wa" 51820 10.77.0.1/24
    lab_wg_setup "$wb" 51821 10.77.0.2/24
    # Both sides know each other's endpoint, so either could initiate; who does is decided by
    # who sends first. B's peer entry carries an extra prefix so showconf has two allowed IPs.
    lab_wg_add_peer "$wa" "$wb" "10.77.0.2/32,10.78.2.0/24" 192.0.2.2:51821
    lab_wg_add_peer "$wb" "$wa" "10.77.0.1/32" 192.0.2.1:51820
    lab_capture_start "r$round-cap" "$A" "$va" "udp"
    lab__has_handshake "$wa" "$wb" && lab_fail "$wa reports a handshake before any traffic"
    lab__has_handshake "$wb" "$wa" && lab_fail "$wb reports a handshake before any traffic"

    lab_ping "$first_ns" "${LAB_WG_ADDR[$second]}" 10
    lab_pass "ping $first -> $second through the tunnel (${LAB_WG_IMPL[$first]} -> ${LAB_WG_IMPL[$second]})"
    lab_wg_wait_handshake "$second" "$first" 5
    lab_wg_wait_handshake "$first" "$second" 5
    lab_capture_stop "r$round-cap"
    lab__check_initiator "r$round-cap" "$first" "$first_ul" "$second" "$second_ul"

    lab_ping "$second_ns" "${LAB_WG_ADDR[$first]}" 10
    lab_pass "ping $second -> $first through the tunnel"
    lab_ping "$A" 10.77.0.2 5 -M "do" -s 1392
    lab_ping "$B" 10.77.0.1 5 -M "do" -s 1392
    lab_pass "full-size 1420-byte packets (DF) both ways"
    lab_wg_check_endpoint "$second" "$first" "$first_ul:${LAB_WG_PORT[$first]}"
    lab_wg_check_endpoint "$first" "$second" "$second_ul:${LAB_WG_PORT[$second]}"
    (( round == 2 )) && break
    lab_wg_stop "$wa" TERM
    lab_wg_stop "$wb" TERM
    lab_pass "round 1 daemons shut down cleanly on SIGTERM"
  done

  lab_step "$mb MiB each way over TCP through the tunnel"
  lab_tcp_exchange "$A" 10.77.0.1 "$B" 10.77.0.2 "$mb"

  lab_step "wg show after the transfer"
  lab_wg "$wa" show >&2 || true
  lab_wg "$wb" show >&2 || true
  lab_wg_check_handshake_recent "$wa" "$wb"
  lab_wg_check_handshake_recent "$wb" "$wa"
  lab_wg_check_counters "$wa" "$wb" "$mb"
  lab_wg_check_counters "$wb" "$wa" "$mb"
  lab_wg_check_counters_agree "$wa" "$wb"

  lab_step "wg showconf"
  lab_wg_check_showconf "$wa" "$wb" "10.77.0.2/32,10.78.2.0/24" 192.0.2.2:51821
  lab_wg_check_showconf "$wb" "$wa" "10.77.0.1/32" 192.0.2.1:51820
  lab_ping "$A" 10.77.0.2 10
  lab_ping "$B" 10.77.0.1 10
  lab_pass "tunnel still up after setconf on both sides"
}

# lab__check_initiator CAPTURE FIRST_IF FIRST_UL SECOND_IF SECOND_UL — in CAPTURE (taken on the
# link between them) the first handshake initiation went from FIRST to SECOND, none went the other
# way, and the first response came back from SECOND.
lab__check_initiator() {
  local cap=$1 first=$2 ful=$3 second=$4 sul=$5 lines line
  local fport=${LAB_WG_PORT[$first]} sport=${LAB_WG_PORT[$second]}
  lines=$(lab_capture_lines "$cap")
  line=$(grep -m1 'length 148$' <<<"$lines" || true)
  [[ -n "$line" ]] || lab_fail "$cap: no handshake initiation (148 bytes) captured; got: $lines"
  [[ "$line" == *" IP $ful.$fport > $sul.$sport: UDP, length 148" ]] \
    || lab_fail "$cap: the first handshake initiation was not from $first ($ful.$fport) to $second ($sul.$sport): $line"
  line=$(grep -m1 " IP $sul.$sport > $ful.$fport: UDP, length 148\$" <<<"$lines" || true)
  [[ -z "$line" ]] || lab_fail "$cap: $second also sent a handshake initiation: $line"
  line=$(grep -m1 'length 92$' <<<"$lines" || true)
  [[ "$line" == *" IP $sul.$sport > $ful.$fport: UDP, length 92" ]] \
    || lab_fail "$cap: the first handshake response was not from $second ($sul.$sport) to $first ($ful.$fport); got: $lines"
  lab_pass "$cap: $first (${LAB_WG_IMPL[$first]}) initiated the handshake, $second (${LAB_WG_IMPL[$second]}) responded"
}

# lab_check_offloads — stops the knitd daemons still running (SIGTERM, checked as lab_wg_stop
# does), then every knitd log of this lab must say which offload mode it ran in: "off" when
# KNIT_OFFLOADS=off, else "on"; with offloads on, the knitd daemons together split
# super-packets read from their TUNs and coalesced segments before writing them (the counters
# of their shutdown lines); with offloads off, neither. Also the crypto threads (knitd
# --crypto-threads, KNIT_CRYPTO_THREADS): on one thread no batch is shared with a worker; on
# several (the default on a machine with more than one core) the bulk transfers these tests make
# share some.
lab_check_offloads() {
  local want=on log split=0 merged=0 n=0 v ifn shared=0 on_workers=0 threads=1
  [[ "${KNIT_OFFLOADS:-}" == off ]] && want=off
  for ifn in "${!LAB_WG_PID[@]}"; do
    [[ "${LAB_WG_REAL[$ifn]:-}" == knitd ]] && lab_wg_stop "$ifn"
  done
  for log in "$LAB_DIR"/logs/knitd-*.log; do
    [[ -e "$log" ]] || continue
    n=$((n + 1))
    grep -q "TUN offloads $want" "$log" || lab_fail "$log: expected 'TUN offloads $want': $(grep -m1 'TUN offloads' "$log" || true)"
    v=$(grep -o 'tun_super_packets=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true); split=$((split + ${v:-0}))
    v=$(grep -o 'tun_coalesced=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true); merged=$((merged + ${v:-0}))
    v=$(grep -o 'crypto_parallel_batches=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true); shared=$((shared + ${v:-0}))
    v=$(grep -o 'crypto_jobs_on_workers=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true); on_workers=$((on_workers + ${v:-0}))
    v=$(grep -o 'crypto_threads=[0-9]*' "$log" | tail -n1 | cut -d= -f2 || true); (( ${v:-1} > threads )) && threads=${v:-1}
  done
  (( n > 0 )) || lab_fail "no knitd log found in $LAB_DIR/logs"
  if [[ "$want" == on ]]; then
    (( split > 0 && merged > 0 )) || lab_fail "offloads on, but knitd split $split super-packets and coalesced $merged segments"
  else
    (( split == 0 && merged == 0 )) || lab_fail "offloads forced off, but knitd split $split super-packets and coalesced $merged segments"
  fi
  lab_log "offloads $want: knitd split $split super-packets, coalesced $merged segments ($n logs)"
  if (( threads == 1 )); then
    (( shared == 0 )) || lab_fail "knitd ran on one crypto thread, but shared $shared batches with workers"
  else
    (( shared > 0 )) || lab_fail "knitd ran on $threads crypto threads, but shared no batch with a worker"
  fi
  lab_log "crypto on up to $threads threads: $shared batches shared, $on_workers packets sealed or opened by workers"
}
