#!/usr/bin/env bash
# Knit demo: three hosts on a small routed "internet", joined by WireGuard tunnels.
#
#                       [kn-core-SFX]  router (forwards, no NAT)
#                 .1 /        | .1         \ .1
#   192.0.2.0/24    /  198.51.100.0/24      \  203.0.113.0/24
#                .2/          | .2           \ .2
#   [kn-alpha-SFX]      [kn-beta-SFX]        [kn-gamma-SFX]
#    knitd                knitd                wireguard-go
#    10.77.0.1            10.77.0.2            10.77.0.3        (tunnel addresses, wg0-like TUNs)
#
# Every host is a peer of the other two (a full mesh), configured with the stock `wg` tool over
# each daemon's UAPI socket, exactly as one would configure wireguard-go. The demo pings across
# every tunnel, shows `wg show`, and cleans up; with --keep it stays up until Ctrl-C.
#
# Usage: sudo scripts/demo.sh [--keep]
# Environment: KNIT_BIN — folder holding knitd (default: build/bin under the repo root)
set -euo pipefail

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done

LAB_WGGO_LOG_LEVEL=${LAB_WGGO_LOG_LEVEL:-error}
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/lib.sh"
lab_init ping
if ! lab_impl_available knitd; then
  echo "knitd was not found at $KNIT_BIN/knitd." >&2
  echo "Build it first (cmake -S . -B build && cmake --build build) or point KNIT_BIN at its folder." >&2
  exit 1
fi
lab_require_impl wggo

say() { printf '\n>>> %s\n' "$*"; }

say "Building a small internet: a core router and three hosts, each in its own network namespace."
lab_router_add core; CORE=$(lab_ns core)
declare -A NS UNDERLAY IMPL WG TUN_ADDR
i=0
for host in alpha beta gamma; do
  i=$((i + 1))
  case "$host" in
    alpha) net=192.0.2 ;;
    beta)  net=198.51.100 ;;
    gamma) net=203.0.113 ;;
  esac
  lab_ns_add "$host"
  NS[$host]=$(lab_ns "$host")
  UNDERLAY[$host]=$net.2
  lab_uplink "${NS[$host]}" "$(lab_name "${host:0:1}0")" "$net.2/24" "$CORE" "$(lab_name "r$i")" "$net.1/24"
  echo "    $host (${NS[$host]}) has address $net.2 behind the core router"
done

say "Starting the WireGuard daemons: knitd on alpha and beta, stock wireguard-go on gamma."
IMPL=([alpha]=knitd [beta]=knitd [gamma]=wggo)
declare -A SHOWN=([knitd]=knitd [wggo]=wireguard-go)
i=0
for host in alpha beta gamma; do
  i=$((i + 1))
  WG[$host]=$(lab_name "wg${host:0:1}")
  TUN_ADDR[$host]=10.77.0.$i
  lab_wg_start "${IMPL[$host]}" "${NS[$host]}" "${WG[$host]}"
  lab_wg_setup "${WG[$host]}" 51820 "10.77.0.$i/24"
  echo "    $host: ${SHOWN[${IMPL[$host]}]} owns TUN ${WG[$host]} (10.77.0.$i), UAPI socket /var/run/wireguard/${WG[$host]}.sock"
done

say "Introducing the peers to each other with \`wg set\` (public key, allowed IPs, endpoint)."
lab_wg_link "${WG[alpha]}" "${UNDERLAY[alpha]}" "${WG[beta]}" "${UNDERLAY[beta]}"
lab_wg_link "${WG[alpha]}" "${UNDERLAY[alpha]}" "${WG[gamma]}" "${UNDERLAY[gamma]}"
lab_wg_link "${WG[beta]}" "${UNDERLAY[beta]}" "${WG[gamma]}" "${UNDERLAY[gamma]}"
echo "    alpha <-> beta (knitd <-> knitd), alpha <-> gamma and beta <-> gamma (knitd <-> wireguard-go)"

ping_demo() {
  local from=$1 to=$2
  printf '    %-6s -> %-6s (%s -> %s): ' "$from" "$to" "${SHOWN[${IMPL[$from]}]}" "${SHOWN[${IMPL[$to]}]}"
  lab_ping "${NS[$from]}" "${TUN_ADDR[$to]}" 10 >/dev/null
  ip netns exec "${NS[$from]}" ping -c 3 -i 0.2 -W 2 -q "${TUN_ADDR[$to]}" | awk -F'/' '/^rtt/ { print "ok, rtt avg " $5 " ms" }'
}

say "Pinging across every tunnel (the first packet triggers the WireGuard handshake)."
ping_demo alpha beta
ping_demo beta alpha
ping_demo alpha gamma
ping_demo gamma alpha
ping_demo beta gamma
ping_demo gamma beta

for host in alpha beta gamma; do
  say "wg show on $host (${SHOWN[${IMPL[$host]}]}):"
  lab_wg "${WG[$host]}" show | sed 's/^/    /'
done

if (( KEEP )); then
  say "The mesh stays up. Try, in another terminal:"
  echo "    ip netns exec ${NS[alpha]} ping 10.77.0.2"
  echo "    ip netns exec ${NS[alpha]} wg show ${WG[alpha]}"
  echo "    ip netns exec ${NS[gamma]} wg show ${WG[gamma]}"
  echo "Press Ctrl-C to tear everything down."
  trap 'echo; say "Ctrl-C: cleaning up."; exit 0' INT
  trap 'say "Terminated: cleaning up."; exit 0' TERM
  while :; do sleep 1; done
fi

say "Done. Cleaning up: stopping the daemons and deleting the namespaces."
